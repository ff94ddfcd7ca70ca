"""Which personalization helps? Speaker-held-out measurement of the candidates, one rerunnable command.

    EDGE_EMO_CACHE=/work/cache python -m benchmarks.personalization BUNDLE DATA_DIR... [--split val] \
        --raw raw.json --out summary.json
    python -m benchmarks.personalization - - --summarize --raw raw0.json raw1.json ... --out pooled.json

For every speaker of every DATA_DIR (pseudo-speakers whose name contains "unknown" pool many people and are
left out; speakers with fewer than budget + --min-test clips are left out of that budget) and every draw:
the speaker's clips are shuffled; the first clips up to --unlabeled-s seconds of audio (at least the
labeled ones, at most all but --min-test) are the speaker's unlabeled speech (what `listen --log-features`
would have logged); the first n of them are also labeled; the clips after the pool are the test clips.
Every candidate is scored on the test clips against the shipped bundle on the same clips:

- input normalisation (--norms): the bundle's (`global`), or the speaker's own mean (`spk_mean`) or mean
  and std (`spk_full`) from the unlabeled pool (edge_emo/personalize/adapt.py; `spk_half` too);
- head: shipped; ridge toward the shipped head with leave-one-out strength (`ridge_loo`, the old default) or
  a fixed relative strength (`ridge_S`); bias only toward the shipped bias (`bias_L`); per-emotion scale and
  offset of the shipped outputs (`calib_L`); a kernel-weighted correction by the nearest labeled clips'
  residuals in embedding space (`knn_W`, not a head; see `knn_correction`); each optionally behind the
  leave-one-out guard (`+guard`, as `personalize` runs it; `+errguard`: without its macro-F1 condition).

A bundle that adapts to its speaker on its own (manifest `speaker_adaptation`; --estimate auto) is scored
as the device runs it instead: the device's estimate (its RunningNorm) after hearing the pool, i.e. the
speaker's first --unlabeled-s of speech with the labeled clips among them (never a test clip, no label),
standardises the test clips, for the shipped head (the reference) and every personalized head alike. The
heads are fitted on the labeled clips heard with that estimate (`estimate/H`: `personalize --labels
--unlabeled LOG`) or with the estimate from the labeled clips alone (`labeled_estimate/H`: `personalize
--labels`); `first_words/H` scores the `estimate/H` heads on test clips standardised by the prior (a
stranger's first words) against the shipped head on the same; budget 0 has `estimate_vs_first_words`, what
the built-in adaptation does without labels. `shipped_absolute` / `first_words_absolute`: the references.

Every head aims where `personalize` aims it (edge_emo/personalize/method.py `aim`): present emotions at the
label lowered by the bundle's cue margin (manifest `cue_margin`), absent ones below -margin. `--targets
margin,margin-two-sided,labels` also measures, on the same draws, absent emotions aimed at exactly -margin
and the labels themselves (how `personalize` fitted before 2026-12-02), in rows `VARIANT@AIM/HEAD`.

Fixed strengths are not chosen on the test speaker: `*_heldout` rows pick, for each speaker, the strength
whose mean macro-F1 change is best over all OTHER speakers (of every DATA_DIR) at that budget.

Reported per budget (0 = unlabeled only): mean change of macro-F1, MAE and the false-cue rate on neutral
clips (a cue >= 0.5 on a clip labeled all zeros), with 95% intervals by bootstrap over speakers and then
draws; per DATA_DIR and pooled. Speakers the bundle was trained on (its provenance's training_speakers) are
left out: for a model trained on every speaker, measure one trained with its recipe on --split train and
pass --split val (same --split-seed).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np

from edge_emo.data.corpus import SpeechCut, load_corpus
from edge_emo.features.normalization import NormStats, RunningNorm
from edge_emo.metrics import false_cues, scores
from edge_emo.personalize.adapt import speaker_norm
from edge_emo.personalize.guard import accept
from edge_emo.personalize.method import HeadFit, Method, aim, fit
from edge_emo.personalize.ridge import fit_head, predict
from edge_emo.personalize.wearer import read_head
from edge_emo.runtime.bundle import Bundle, BundleStream, load_bundle

BUDGETS = (0, 5, 10, 20)
NORMS = ("global", "spk_mean", "spk_full")
RIDGE = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0)
BIAS = (1.0, 3.0, 10.0, 30.0, 100.0)
CALIB = (1.0, 3.0, 10.0, 30.0, 100.0)
KNN = (0.25, 0.5, 1.0)  # kernel widths, relative to the labeled clips' median distance
KNN_PRIOR = 0.5  # kernel weight of "no correction": a test clip far from every labeled clip keeps its output
METRICS = ("macro_f1", "mae", "false_cues")


def embed(bundle: Bundle, norm: NormStats, features: list[np.ndarray], session) -> np.ndarray:
    """Utterance embeddings of the bundle's graph with other input normalisation statistics, chunk by chunk
    as on the device (int8 graphs quantise each call's activations: whole-clip calls differ slightly)."""
    stream = BundleStream(dataclasses.replace(bundle, norm=norm), session)
    out = np.zeros((len(features), bundle.hidden), np.float32)
    for i, frames in enumerate(features):
        stream.reset()
        for start in range(0, len(frames), bundle.chunk_frames):
            stream.run_chunk(frames[start : start + bundle.chunk_frames])
        out[i] = stream.utterance_embedding()
    return out


def metrics(y: np.ndarray, pred: np.ndarray, emotions) -> dict[str, float]:
    s = scores(y, pred, emotions)
    cues = false_cues(y, pred)
    return {"macro_f1": s["macro_f1"], "mae": s["mae"], "false_cues": np.nan if cues is None else cues}


def heads(
    x_lab, y_lab, x_test, w0, b0, margin: float, one_sided: bool
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Every labeled candidate: name -> (test predictions, leave-one-out predictions on the labeled clips).
    Every head aims at `method.aim(labels, shipped outputs, margin, one_sided)`."""
    out = {}
    old = fit_head(x_lab, aim(y_lab, predict(x_lab, w0, b0), margin, one_sided), w0, b0)
    out["ridge_loo"] = (predict(x_test, old.weight, old.bias), None)
    for kind, strengths in ((HeadFit.ridge, RIDGE), (HeadFit.bias, BIAS), (HeadFit.calib, CALIB)):
        for strength in strengths:
            method = Method(head=kind, strength=strength)
            weight, bias, held = fit(method, x_lab, y_lab, w0, b0, margin, one_sided)
            out[f"{kind.value}_{strength:g}"] = (predict(x_test, weight, bias), held)
    current, current_test = predict(x_lab, w0, b0), predict(x_test, w0, b0)
    residual = aim(y_lab, current, margin, one_sided) - current
    for width in KNN:
        test = current_test + knn_correction(x_lab, residual, x_test, width)
        held = current + knn_correction(x_lab, residual, x_lab, width, leave_one_out=True)
        out[f"knn_{width:g}"] = (test, held)
    return out


def knn_correction(
    x_lab: np.ndarray, residual: np.ndarray, x: np.ndarray, width: float, leave_one_out: bool = False
) -> np.ndarray:
    """A nonlinear candidate (not a head: a device would need the utterance embedding): each clip's outputs
    move by the kernel-weighted residuals (aim - current output) of the labeled clips near it in embedding
    space, sum_i k_i r_i / (sum_i k_i + KNN_PRIOR), Gaussian kernel of `width` x the labeled clips' median
    distance. With leave_one_out, x is x_lab and each clip's own residual is left out (for the guard)."""

    def sq(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.maximum((a**2).sum(1)[:, None] + (b**2).sum(1)[None] - 2 * a @ b.T, 0.0)

    among = sq(x_lab, x_lab)
    scale = np.median(among[~np.eye(len(x_lab), dtype=bool)]) if len(x_lab) > 1 else 1.0
    k = np.exp(-sq(x, x_lab) / (2 * width**2 * max(scale, 1e-12)))
    if leave_one_out:
        np.fill_diagonal(k, 0.0)
    return (k @ residual) / (k.sum(1, keepdims=True) + KNN_PRIOR)


def bootstrap(deltas: dict[str, np.ndarray], rng: np.random.Generator, n_boot: int = 2000) -> list[float]:
    """95% interval of the mean over speakers of each speaker's mean delta; speakers resampled, then each
    speaker's draws (one resample of a speaker's draws per replicate, shared if it is picked twice)."""
    values = [v[np.isfinite(v)] for v in deltas.values()]
    values = [v for v in values if len(v)]
    if not values:  # e.g. false cues where no test clip is neutral
        return [float("nan"), float("nan")]
    per_speaker = np.stack([rng.choice(v, (n_boot, len(v))).mean(1) for v in values], 1)  # (B, S)
    chosen = rng.integers(0, len(values), (n_boot, len(values)))
    means = np.take_along_axis(per_speaker, chosen, 1).mean(1)
    return [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))]


def device_estimate(bundle: Bundle, frames: list[np.ndarray]) -> NormStats:
    """The adapting device's statistics after hearing `frames` (utterances, in order): its own RunningNorm,
    the prior plus that speech, forgetting included."""
    running = RunningNorm(bundle.norm, bundle.adaptation, bundle.spec.hop_s)
    for f in frames:
        running.add(f)
    return running.stats()


def score_heads(
    out, n, variant, y, labeled, test, x_fit, x_test, current, emotions, w0, b0, aim_margins
) -> None:
    """Every head fitted on the labeled rows of `x_fit`, scored on the test rows of `x_test` against the
    current bundle as the device has it: `current` = (its predictions on all clips as the guard sees the
    labeled ones, its predictions on the test clips). `aim_margins`: row-name suffix -> the cue margin the heads
    aim below the labels (see `aims`). Appends the deltas to out[n]."""
    on_labeled, on_test = current
    base = metrics(y[test], on_test, emotions)
    for suffix, (margin, one_sided) in aim_margins.items():
        preds = {"shipped": predict(x_test[test], w0, b0)}
        if n:
            for name, (pred, held) in heads(
                x_fit[labeled], y[labeled], x_test[test], w0, b0, margin, one_sided
            ).items():
                preds[name] = pred
                if held is not None:
                    ok = accept(y[labeled], on_labeled[labeled], held, emotions, margin, one_sided)
                    preds[name + "+guard"] = pred if ok else on_test
                    ok = accept(y[labeled], on_labeled[labeled], held, emotions, margin, one_sided, False)
                    preds[name + "+errguard"] = pred if ok else on_test
        for name, pred in preds.items():
            m = metrics(y[test], pred, emotions)
            rows = out[n].setdefault(f"{variant}{suffix}/{name}", {k: [] for k in METRICS})
            for k in METRICS:
                rows[k].append(m[k] - base[k])


AIMS = ("margin", "margin-two-sided", "labels")


def aims(targets: str, bundle: Bundle) -> dict[str, tuple[float, bool]]:
    """--targets as row-name suffix -> (margin, one_sided) for method.aim: `margin` as `personalize` fits,
    `margin-two-sided` with absent emotions aimed at exactly -margin, `labels` the labels themselves with
    absent emotions at exactly 0 (how `personalize` fitted before 2026-12-02). The first aim's rows carry
    the plain names, the others' their name after "@" (e.g. `estimate@labels/ridge_3`), on the same draws."""
    table = {
        "margin": (bundle.cue_margin, True),
        "margin-two-sided": (bundle.cue_margin, False),
        "labels": (0.0, False),
    }
    names = targets.split(",")
    return {("" if i == 0 else f"@{name}"): table[name] for i, name in enumerate(names)}


def add_absolute(out, n, name, values) -> None:
    rows = out[n].setdefault(name, {k: [] for k in METRICS})
    for k in METRICS:
        rows[k].append(values[k])


def run_speaker(bundle, session, feats, y, seconds, w0, b0, args, rng) -> dict:
    """deltas[budget][method][metric] -> list over draws, and the unlabeled seconds the draws used. One pool
    per draw (the same test clips for every budget): --unlabeled-s of audio, at least the largest budget
    the speaker can afford, at most all clips but --min-test."""
    out: dict = {n: {} for n in BUDGETS}
    used_s = []
    budgets = [n for n in BUDGETS if n + args.min_test <= len(feats)]
    x_global = embed(bundle, bundle.norm, feats, session)
    aim_margins = aims(args.targets, bundle)
    for _ in range(args.draws):
        perm = rng.permutation(len(feats))
        enough = int(np.searchsorted(np.cumsum(seconds[perm]), args.unlabeled_s)) + 1
        pool = min(max(enough, budgets[-1]), len(feats) - args.min_test)
        unlabeled, test = perm[:pool], perm[pool:]
        used_s.append(float(seconds[unlabeled].sum()))
        if args.estimate:
            run_adapting(out, bundle, session, feats, y, perm, pool, budgets, x_global, w0, b0, aim_margins)
            continue
        xs = {
            name: x_global
            if name == "global"
            else embed(bundle, speaker_norm(bundle.norm, [feats[i] for i in unlabeled], name), feats, session)
            for name in args.norms.split(",")
        }
        current = (predict(x_global, w0, b0), predict(x_global[test], w0, b0))
        for n in budgets:
            add_absolute(out, n, "shipped_absolute", metrics(y[test], current[1], bundle.emotions))
            for norm_name, x in xs.items():
                score_heads(
                    out, n, norm_name, y, perm[:n], test, x, x, current, bundle.emotions, w0, b0, aim_margins
                )
    return {"deltas": out, "unlabeled_s": float(np.mean(used_s)), "test_clips": len(feats) - pool}


def run_adapting(out, bundle, session, feats, y, perm, pool, budgets, x_prior, w0, b0, aim_margins) -> None:
    """One draw for a speaker-adapting bundle. The device's estimate comes from the pool (the speaker's
    first --unlabeled-s of speech, labeled clips included; never a test clip, never a label); every head is
    scored on the test clips embedded with it, against the shipped head with the same estimate:
    - `estimate/H`: H fitted on the labeled clips embedded with the same estimate (`personalize --labels
      --unlabeled LOG`: the logged speech and the labeled clips make the estimate);
    - `labeled_estimate/H`: H fitted with the estimate from the labeled clips alone (`personalize --labels`
      without a log), scored with the pool's estimate (what the device has later);
    - `first_words/H`: the `estimate/H` heads scored on the test clips standardised by the prior (a device
      that has not heard the speaker yet), against the shipped head on the same.
    Absolute rows: `shipped_absolute` (with the estimate), `first_words_absolute` (prior)."""
    unlabeled, test = perm[:pool], perm[pool:]
    x_est = embed(bundle, device_estimate(bundle, [feats[i] for i in unlabeled]), feats, session)
    emotions = bundle.emotions
    now, first = predict(x_est, w0, b0), predict(x_prior, w0, b0)
    for n in budgets:
        add_absolute(out, n, "shipped_absolute", metrics(y[test], now[test], emotions))
        add_absolute(out, n, "first_words_absolute", metrics(y[test], first[test], emotions))
        if not n:  # what the adaptation itself does: the estimate against the prior on the same clips
            m_now, m_first = metrics(y[test], now[test], emotions), metrics(y[test], first[test], emotions)
            add_absolute(out, n, "estimate_vs_first_words", {k: m_now[k] - m_first[k] for k in METRICS})
        labeled = perm[:n]
        score_heads(
            out,
            n,
            "estimate",
            y,
            labeled,
            test,
            x_est,
            x_est,
            (now, now[test]),
            emotions,
            w0,
            b0,
            aim_margins,
        )
        if not n:
            continue
        x_lab = np.array(x_est)
        own = device_estimate(bundle, [feats[i] for i in labeled])
        x_lab[labeled] = embed(bundle, own, [feats[i] for i in labeled], session)
        current = (predict(x_lab, w0, b0), now[test])
        score_heads(
            out, n, "labeled_estimate", y, labeled, test, x_lab, x_est, current, emotions, w0, b0, aim_margins
        )
        score_heads(
            out,
            n,
            "first_words",
            y,
            labeled,
            test,
            x_est,
            x_prior,
            (now, first[test]),
            emotions,
            w0,
            b0,
            aim_margins,
        )


def family(method: str) -> str | None:
    """'spk_mean/ridge_0.3+guard' -> 'spk_mean/ridge_S+guard'; None for methods without a strength."""
    norm, head = method.split("/")
    kind, _, rest = head.partition("_")
    if kind not in ("ridge", "bias", "calib", "knn") or rest == "loo":
        return None
    guard = next((g for g in ("+guard", "+errguard") if rest.endswith(g)), "")
    return f"{norm}/{kind}_heldout{guard}"


def add_heldout(budget: dict[str, dict[str, dict[str, np.ndarray]]]) -> None:
    """For each family of fixed strengths, a row whose strength for each speaker is the one with the best
    mean macro-F1 change over all other speakers."""
    families: dict[str, list[str]] = {}
    for method in budget:
        if "/" in method and family(method):
            families.setdefault(family(method), []).append(method)
    for fam, methods in families.items():
        speakers = list(budget[methods[0]])
        rows: dict[str, dict[str, np.ndarray]] = {}
        chosen = {}
        for s in speakers:

            def others(m: str, s: str = s, speakers: list[str] = speakers) -> float:
                return float(np.mean([np.nanmean(budget[m][o]["macro_f1"]) for o in speakers if o != s]))

            best = max(methods, key=others)
            chosen[s] = best.split("_")[-1]
            rows[s] = budget[best][s]
        budget[fam] = rows
        budget[fam]["_chosen"] = chosen  # type: ignore[assignment]


def summarize(per_speaker: dict, groups: dict[str, list[str]], rng: np.random.Generator) -> dict:
    """budget -> method -> group -> metric -> {delta, delta_95}."""
    out: dict = {}
    for n in BUDGETS:
        budget: dict = {}
        for s, r in per_speaker.items():
            for method, rows in r["deltas"].get(n, r["deltas"].get(str(n), {})).items():
                budget.setdefault(method, {})[s] = {k: np.asarray(v, float) for k, v in rows.items()}
        add_heldout(budget)
        out[n] = {}
        for method, by_speaker in budget.items():
            chosen = by_speaker.pop("_chosen", None)
            out[n][method] = {"chosen_strength": chosen} if chosen else {}
            for group, members in groups.items():
                present = [s for s in members if s in by_speaker]
                if not present:
                    continue
                out[n][method][group] = {
                    "speakers": len(present),
                    **{
                        k: {
                            "delta": float(np.mean([np.nanmean(by_speaker[s][k]) for s in present])),
                            "delta_95": bootstrap({s: by_speaker[s][k] for s in present}, rng),
                        }
                        for k in METRICS
                    },
                }
    return out


def pool_raw(paths: list[Path]) -> dict:
    """Several runs' draws as one (e.g. each cross-validation fold's model on its own held-out speakers, so
    every speaker is unseen by the model that measured it). A speaker in two runs is refused."""
    runs = [json.loads(p.read_text()) for p in paths]
    if len(runs) == 1:
        return runs[0]
    pooled = {
        **runs[0],
        "bundle": [r["bundle"] for r in runs],
        "bundle_version": [r["bundle_version"] for r in runs],
    }
    pooled["per_speaker"], pooled["speakers"], pooled["groups"] = {}, {}, {}
    for path, run in zip(paths, runs):
        for speaker, draws in run["per_speaker"].items():
            if speaker in pooled["per_speaker"]:
                raise SystemExit(f"{path}: speaker {speaker} is in another --raw file too")
            pooled["per_speaker"][speaker] = draws
            pooled["speakers"][speaker] = run["speakers"][speaker]
        for group, members in run["groups"].items():
            pooled["groups"].setdefault(group, []).extend(members)
    if len(pooled["groups"]) > 1:  # every run's "all" group, rebuilt over the pooled corpora
        pooled["groups"]["all"] = [
            s for g, members in pooled["groups"].items() if g != "all" for s in members
        ]
    return pooled


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("data", type=Path, nargs="+")
    parser.add_argument("--split", default="all", help="Speakers the bundle did not see (e.g. val).")
    parser.add_argument("--split-seed", type=int, default=0)
    parser.add_argument("--draws", type=int, default=30, help="Random draws per speaker.")
    parser.add_argument("--unlabeled-s", type=float, default=60.0, help="Seconds of unlabeled speech.")
    parser.add_argument("--min-test", type=int, default=5, help="Test clips a speaker keeps at least.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--norms", default=",".join(NORMS), help=f"Input normalisations to try (of {', '.join(NORMS)})."
    )
    parser.add_argument(
        "--estimate",
        choices=("auto", "on", "off"),
        default="auto",
        help="Score with the device's speaker estimate (auto: when the bundle has speaker_adaptation).",
    )
    parser.add_argument(
        "--cut", default="speech", choices=[c.value for c in SpeechCut], help="What of each clip is scored."
    )
    parser.add_argument(
        "--targets",
        default="margin",
        help=f"What the heads aim at, comma-separated, measured on the same draws (of {', '.join(AIMS)}; "
        "see `aims`).",
    )
    parser.add_argument("--out", type=Path, default=Path("benchmarks/personalization.json"))
    parser.add_argument(
        "--raw",
        type=Path,
        nargs="+",
        help="Also write every draw's deltas here (JSON), or with --summarize read them (several: pooled).",
    )
    parser.add_argument("--summarize", action="store_true", help="Only summarize --raw (no measuring).")
    args = parser.parse_args()
    unknown = [a for a in args.targets.split(",") if a not in AIMS]
    if unknown:
        parser.error(f"--targets: unknown aim {', '.join(unknown)} (known: {', '.join(AIMS)})")
    if args.raw and len(args.raw) > 1 and not args.summarize:
        parser.error("--raw takes several files only with --summarize (they are pooled)")
    if args.summarize:
        if not args.raw:
            parser.error("--summarize needs --raw")
        raw = pool_raw(args.raw)
        raw["budgets"] = summarize(raw.pop("per_speaker"), raw["groups"], np.random.default_rng(args.seed))
        args.out.write_text(json.dumps(raw, indent=1) + "\n")
        print_tables(raw)
        return

    bundle = load_bundle(args.bundle)
    args.estimate = bundle.adaptation is not None if args.estimate == "auto" else args.estimate == "on"
    if args.estimate and bundle.adaptation is None:
        parser.error(f"{args.bundle} has no speaker_adaptation: --estimate on needs an adapting bundle")
    w0, b0 = read_head(bundle)
    session = bundle.session()
    rng = np.random.default_rng(args.seed)
    per_speaker: dict = {}
    groups: dict[str, list[str]] = {}
    seen = [str(d) for d in bundle.provenance.get("data") or []]
    # A speaker the bundle was trained on is not unseen: left out (the provenance names them).
    trained_on, skipped = set(bundle.provenance.get("training_speakers") or []), []
    for data in args.data:
        clips = load_corpus(data, bundle.spec, args.split, args.split_seed, cut=args.cut)
        order = [clips.emotions.index(e) for e in bundle.emotions]
        speakers = sorted(s for s in set(clips.speakers) if "unknown" not in s and s not in trained_on)
        skipped += sorted(s for s in set(clips.speakers) if s in trained_on)
        groups[data.name] = []
        for speaker in speakers:
            idx = [i for i, s in enumerate(clips.speakers) if s == speaker]
            if len(idx) < BUDGETS[1] + args.min_test:
                continue
            feats = [clips.features[i] for i in idx]
            seconds = np.array([len(f) * bundle.spec.hop_s for f in feats])
            y = clips.labels[idx][:, order]
            per_speaker[speaker] = run_speaker(bundle, session, feats, y, seconds, w0, b0, args, rng)
            per_speaker[speaker]["clips"] = len(idx)
            groups[data.name].append(speaker)
            print(f"{speaker}: {len(idx)} clips", flush=True)
    if len(groups) > 1:
        groups["all"] = [s for g in groups.values() for s in g]
    if skipped:
        print(f"left out {len(skipped)} speakers the bundle was trained on", flush=True)
    if not any(groups.values()):
        raise SystemExit(
            f"{args.bundle} was trained on every speaker here: measure a bundle trained with the same "
            "recipe on `--split train` and pass --split val"
        )
    results = {
        "bundle": str(args.bundle),
        "bundle_version": bundle.version,
        "bundle_training_data": seen,
        "speakers_left_out_as_seen_in_training": skipped,
        "split": {"split": args.split, "seed": args.split_seed},
        "draws": args.draws,
        "speaker_estimate": args.estimate,
        "cut": args.cut,
        "targets": {
            name: dict(zip(("cue_margin", "one_sided"), aims(name, bundle)[""]))
            for name in args.targets.split(",")
        },
        "norms": ["estimate", "labeled_estimate", "first_words"] if args.estimate else args.norms.split(","),
        "unlabeled_s": args.unlabeled_s,
        "min_test": args.min_test,
        "groups": groups,
        "speakers": {
            s: {k: r[k] for k in ("clips", "unlabeled_s", "test_clips")} for s, r in per_speaker.items()
        },
    }
    if args.raw:
        args.raw[0].write_text(json.dumps({**results, "per_speaker": per_speaker}) + "\n")
    results["budgets"] = summarize(per_speaker, groups, rng)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print_tables(results)
    print(f"wrote {args.out}")


def print_tables(results: dict, top: int = 12) -> None:
    """For each budget and group, the shipped bundle and the best candidates by macro-F1 change."""
    for n, methods in results["budgets"].items():
        for group in results["groups"]:
            rows = [(m, r[group]) for m, r in methods.items() if group in r and not m.endswith("_absolute")]
            if not rows:
                continue
            base = methods["shipped_absolute"][group]
            print(
                f"\n### {n} labeled clips, {group} ({rows[0][1]['speakers']} speakers): shipped macro-F1 "
                f"{base['macro_f1']['delta']:.3f}, false cues on neutral {base['false_cues']['delta']:.0%}"
            )
            if "first_words_absolute" in methods:
                cold = methods["first_words_absolute"][group]
                print(
                    f"(with the speaker estimate; as a stranger's first words: macro-F1 "
                    f"{cold['macro_f1']['delta']:.3f}, false cues on neutral {cold['false_cues']['delta']:.0%})"
                )
            print("| method | macro-F1 change [95% CI] | MAE change [95% CI] | false cues change [95% CI] |")
            print("|---|---|---|---|")
            rows.sort(key=lambda r: -r[1]["macro_f1"]["delta"])
            keep = rows[:top] + [
                r for r in rows[top:] if r[0] in ("global/ridge_loo", "global/shipped", "estimate/ridge_loo")
            ]
            for m, r in keep:
                cells = " | ".join(
                    f"{r[k]['delta']:+.3f} [{r[k]['delta_95'][0]:+.3f}, {r[k]['delta_95'][1]:+.3f}]"
                    for k in METRICS
                )
                print(f"| {m} | {cells} |")


if __name__ == "__main__":
    main()
