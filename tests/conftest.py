from __future__ import annotations

import os

import pytest

# One math thread per process: tests and the subprocesses they start share two cores, and oversubscribed
# torch/BLAS threads slow small models down by an order of magnitude.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session", autouse=True)
def private_feature_cache(tmp_path_factory):
    """The whole test run uses its own feature cache (subprocesses inherit it), never a developer's."""
    os.environ["EDGE_EMO_CACHE"] = str(tmp_path_factory.mktemp("cache"))
