"""Which bundle a device command uses: the wearer's personalized one when it was made from the shipped model,
else the shipped one, never a silent fallback; and where `personalize` writes."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

from edge_emo.personalize.wearer import personal_bundle_path, recover
from edge_emo.runtime.bundle import Bundle, BundleError, load_bundle
from edge_emo.runtime.shipped import is_installed_model, model_bundle


def listen_bundle(model: Path | None) -> Bundle:
    """As model_bundle, but without --model: the wearer's personalized bundle (written by `edge-emo
    personalize`) if it was made from the shipped model, else the shipped model. Says on stderr why."""
    shipped = model_bundle(model)
    personal = personal_bundle_path()
    previous = personal.with_name(personal.name + ".prev")
    if model is None and not personal.exists() and previous.exists():  # never a silent fallback
        print(f"warning: your personalized model {personal} is missing but {previous.name} is there "
              "(`edge-emo personalize --rollback` restores it); using the shipped model", file=sys.stderr)  # fmt: skip
    if model is not None or not personal.exists():
        return shipped
    try:
        bundle = load_bundle(personal)
    except BundleError as err:
        # The wearer keeps a working device; the message says how to get the previous bundle back.
        print(f"warning: not using your personalized model: {err} (`edge-emo personalize --rollback` "
              "restores the one before it); using the shipped model", file=sys.stderr)  # fmt: skip
        return shipped
    if bundle.base_version != shipped.base_version:
        print(f"warning: your personalized model {personal} was made from {bundle.base_version}, not from "
              f"the shipped {shipped.version}: using the shipped model; run `edge-emo personalize` again "
              "to personalize it", file=sys.stderr)  # fmt: skip
        return shipped
    print(f"model: your personalized bundle {personal} (--model shipped: the shipped one)", file=sys.stderr)
    return bundle


def recovered(bundles: list[Path], labels: Path | None = None) -> Iterator[str]:
    """Finish or undo what a killed personalize/record left (the wearer's bundle, `bundles`, beside
    `labels`): one line per thing done."""
    yield from recover([personal_bundle_path(), *bundles], labels)


def personalize_out(model: Path | None, out: Path | None) -> Path:
    """Where `personalize` writes: --out, else --model itself if it is the wearer's own bundle, else the
    wearer's personal bundle."""
    if out is not None:
        return out
    return model if model is not None and not is_installed_model(model) else personal_bundle_path()
