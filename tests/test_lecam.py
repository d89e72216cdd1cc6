"""LeCam's anchors and schedule as google/lecam-gan's two implementations: the StyleGAN2 one's
zero-debiased averages, the BigGAN one's start delay; both resume exactly."""

from __future__ import annotations

import copy

import pytest
import torch

from mixgan.train.lecam import LeCam, lecam_penalty


def feed(part: LeCam, means: list[tuple[float, float]]) -> list[torch.Tensor | None]:
    """One D step per (real, fake) pair: batches of two logits with those means."""
    out = []
    for real, fake in means:
        out.append(
            part.d_regularizer(
                torch.tensor([real - 1.0, real + 1.0]), torch.tensor([fake - 1.0, fake + 1.0])
            )
        )
    return out


def test_zero_debiased_anchors_follow_tensorflows_assign_moving_average():
    """lecam-gan's stylegan2/lecam_loss.py: EMA from 0 with decay 0.99, divided by 1 - 0.99^t;
    the penalty from the first step."""
    part = LeCam("lc", {"weight": 3e-7, "ema_decay": 0.99, "zero_debias": True})
    penalties = feed(part, [(2.0, -1.0), (4.0, -3.0), (0.0, 5.0)])
    d = 0.99
    # t=2: (d (1-d) x1 + (1-d) x2) / (1 - d²) = (d x1 + x2) / (1 + d)
    # t=3: (d² x1 + d x2 + x3) / (1 + d + d²)
    expected_real = (d * d * 2.0 + d * 4.0 + 0.0) / (1 + d + d * d)
    expected_fake = (d * d * -1.0 + d * -3.0 + 5.0) / (1 + d + d * d)
    assert part.stats()["lecam_anchor_real"] == pytest.approx(expected_real, rel=1e-6)
    assert part.stats()["lecam_anchor_fake"] == pytest.approx(expected_fake, rel=1e-6)
    assert all(p is not None for p in penalties)
    real, fake = torch.tensor([-1.0, 1.0]), torch.tensor([4.0, 6.0])
    assert penalties[2].item() == pytest.approx(
        3e-7 * lecam_penalty(real, fake, expected_real, expected_fake).item(), rel=1e-5
    )
    # after two steps: (0.99 x 2 + 4) / 1.99 = 3.005 debiased; a plain average started at the
    # first batch gives 0.99 x 2 + 0.01 x 4 = 2.02
    two = {}
    for debias in (True, False):
        two[debias] = LeCam("lc", {"weight": 3e-7, "ema_decay": 0.99, "zero_debias": debias})
        feed(two[debias], [(2.0, -1.0), (4.0, -3.0)])
    assert two[True].stats()["lecam_anchor_real"] == pytest.approx((d * 2 + 4) / (1 + d))
    assert two[False].stats()["lecam_anchor_real"] == pytest.approx(2.02)


def test_start_delay_follows_the_batches_then_averages_and_only_then_penalises():
    """lecam-gan's BigGAN: decay 0 while itr < start_itr, the penalty when itr > start_itr
    (itr counted from 1)."""
    part = LeCam("lc", {"weight": 0.3, "ema_decay": 0.9, "ema_start": 3})
    penalties = feed(part, [(1.0, 0.0), (2.0, 0.0)])
    assert penalties == [None, None]
    assert part.stats()["lecam_anchor_real"] == pytest.approx(2.0)  # the batch itself
    penalties = feed(part, [(12.0, 0.0)])  # itr 3: averaging starts, no penalty yet
    assert penalties == [None]
    assert part.stats()["lecam_anchor_real"] == pytest.approx(0.9 * 2.0 + 0.1 * 12.0)
    (penalty,) = feed(part, [(0.0, 0.0)])  # itr 4 > start: penalised
    anchor = 0.9 * (0.9 * 2.0 + 0.1 * 12.0)
    assert part.stats()["lecam_anchor_real"] == pytest.approx(anchor)
    real, fake = torch.tensor([-1.0, 1.0]), torch.tensor([-1.0, 1.0])
    assert penalty.item() == pytest.approx(0.3 * lecam_penalty(real, fake, anchor, 0.0).item())


@pytest.mark.parametrize(
    "settings",
    [
        {"weight": 3e-7, "ema_decay": 0.99, "zero_debias": True},
        {"weight": 0.3, "ema_decay": 0.9, "ema_start": 2},
    ],
)
def test_anchors_resume_exactly_from_the_state_dict(settings):
    steps = [(2.0, -1.0), (4.0, -3.0), (0.5, 5.0), (3.0, 1.0), (-2.0, 0.5)]
    whole = LeCam("lc", settings)
    expected = feed(whole, steps)
    first = LeCam("lc", settings)
    feed(first, steps[:3])
    resumed = LeCam("lc", settings)
    resumed.load_state_dict(copy.deepcopy(first.state_dict()))
    got = feed(resumed, steps[3:])
    assert resumed.stats() == whole.stats()
    assert all(torch.equal(a, b) for a, b in zip(got, expected[3:], strict=True))
