"""Padded batches of variable-length clips. Clips are grouped by length so that padding stays small; the
model's pooling and losses only ever look at each clip's own frames."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch


def pad(clips: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T_max, F) zero-padded float tensor and the (B,) lengths."""
    lengths = torch.tensor([len(c) for c in clips])
    out = torch.zeros(len(clips), int(lengths.max()), clips[0].shape[1])
    for i, c in enumerate(clips):
        out[i, : len(c)] = torch.from_numpy(np.ascontiguousarray(c, dtype=np.float32))
    return out, lengths


def length_batches(
    lengths: Sequence[int], batch_size: int, rng: np.random.Generator | None
) -> Iterator[np.ndarray]:
    """Index batches of similar length, in random order when `rng` is given (else in length order)."""
    keys = np.asarray(lengths, dtype=np.float64)
    if rng is not None:  # jitter the lengths so that batches differ from epoch to epoch
        keys = keys * (1.0 + 0.1 * rng.random(len(keys)))
    order = np.argsort(keys, kind="stable")
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    for k in rng.permutation(len(batches)) if rng is not None else range(len(batches)):
        yield batches[k]


def epoch_batches(lengths: Sequence[int], batch_size: int, seed: int, epoch: int) -> list[np.ndarray]:
    """The global batches of one epoch: length-grouped, in an order drawn from (seed, epoch) alone, so that
    every process of a distributed run (and a resumed run) gets the same list without talking to the others."""
    return list(length_batches(lengths, batch_size, np.random.default_rng([seed, epoch])))
