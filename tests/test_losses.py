"""Weighted cross-entropy and the APP's MSE against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from segcore.losses import app_mse, weighted_cross_entropy

# Two pixels of one image, logits (background, foreground):
# pixel 1: (0, 0), target 0, p(target) = 1/2;
# pixel 2: (0, ln 3), target 1, p(target) = 3/4.
LOGITS = torch.tensor([[[[0.0, 0.0]], [[0.0, math.log(3.0)]]]])  # (B=1, C=2, H=1, W=2)
TARGETS = torch.tensor([[[0, 1]]])  # (B=1, H=1, W=2)


def test_cross_entropy_weighted_mean():
    weights = torch.tensor([1.0, 3.0])
    expected = (1.0 * math.log(2.0) + 3.0 * -math.log(3 / 4)) / (1.0 + 3.0)
    assert weighted_cross_entropy(LOGITS, TARGETS, weights).item() == pytest.approx(expected)


def test_cross_entropy_scale_invariant():
    small = weighted_cross_entropy(LOGITS, TARGETS, torch.tensor([0.2, 0.8]))
    large = weighted_cross_entropy(LOGITS, TARGETS, torch.tensor([2.0, 8.0]))
    assert small.item() == pytest.approx(large.item())


def test_cross_entropy_uniform_is_plain_mean():
    expected = (math.log(2.0) - math.log(3 / 4)) / 2
    assert weighted_cross_entropy(LOGITS, TARGETS, torch.tensor([1.0, 1.0])).item() == pytest.approx(expected)


def test_cross_entropy_swapped_weights_differ():
    dedl = weighted_cross_entropy(LOGITS, TARGETS, torch.tensor([0.8, 0.2]))
    cdw = weighted_cross_entropy(LOGITS, TARGETS, torch.tensor([0.2, 0.8]))
    assert dedl.item() == pytest.approx((0.8 * math.log(2.0) + 0.2 * -math.log(3 / 4)) / 1.0)
    assert cdw.item() == pytest.approx((0.2 * math.log(2.0) + 0.8 * -math.log(3 / 4)) / 1.0)


def test_app_mse_compares_foreground_probability_with_mask():
    # With an identity head the MSE compares p(foreground) = (1/2, 3/4) with the mask (0, 1).
    expected = ((0.5 - 0.0) ** 2 + (0.75 - 1.0) ** 2) / 2
    assert app_mse(LOGITS, TARGETS, lambda probabilities: probabilities).item() == pytest.approx(expected)


def test_app_mse_head_sees_width_last():
    seen = []

    def record(probabilities: torch.Tensor) -> torch.Tensor:
        seen.append(probabilities.shape)
        return probabilities

    app_mse(torch.zeros(2, 2, 3, 5), torch.zeros(2, 3, 5, dtype=torch.long), record)
    assert seen == [torch.Size([2, 3, 5])]


def test_app_mse_gradient_reaches_logits():
    logits = LOGITS.clone().requires_grad_(True)
    app_mse(logits, TARGETS, lambda probabilities: probabilities).backward()
    assert logits.grad is not None
    assert logits.grad.abs().sum().item() > 0


def test_app_mse_matches_torch_mse():
    logits = torch.randn(2, 2, 4, 6, generator=torch.Generator().manual_seed(0))
    targets = torch.randint(0, 2, (2, 4, 6), generator=torch.Generator().manual_seed(1))
    expected = F.mse_loss(logits.softmax(dim=1)[:, 1].sigmoid(), targets.float())
    assert app_mse(logits, targets, torch.sigmoid).item() == pytest.approx(expected.item())
