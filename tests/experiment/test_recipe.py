"""The recipe options of fine-tuning: class-balanced loss."""

from __future__ import annotations

import pytest
import torch

from edge_emo.train.finetune import weighted_mse


def test_weighted_mse_weights_only_present_cells():
    target = torch.tensor([[0.0, 2.0], [0.4, 0.5]])
    pred = torch.tensor([[1.0, 1.0], [0.0, 0.0]])
    assert weighted_mse(pred, target, 1.0) == pytest.approx(torch.nn.functional.mse_loss(pred, target).item())
    # Present (>= 0.5): (0,1) error 1 and (1,1) error 0.25, weighted 4; absent: 1 and 0.16.
    assert weighted_mse(pred, target, 4.0).item() == pytest.approx((1 + 0.16 + 4 * (1 + 0.25)) / 4)
