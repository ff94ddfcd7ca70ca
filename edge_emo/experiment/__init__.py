"""`edge-emo experiment`: the paper's few-shot protocol (SSL head vs baseline across label budgets) with
statistics over many label draws, a classic eGeMAPS-functionals + ridge reference, plots and tables.

runner (plan, train, resume) -> results.csv -> report (summary.json, tables, plots); stats and reference are
used by both. Training code comes from edge_emo.train; nothing here is on the device path.
"""
