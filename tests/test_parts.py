"""ADA, LeCam, mixup/CutMix for D and AugMix on reals as method parts."""

from __future__ import annotations

import math

import pytest
import torch

from mixgan.augment.ada import (
    AdaController,
    _rotate_about_luma,
    ada_augment,
    color_matrices,
    geometric_matrices,
)
from mixgan.train.augment_parts import ADA, AugMixReal, BatchMixing
from mixgan.train.lecam import LeCam, lecam_penalty
from mixgan.train.parts import PART_BUILDERS


def images(n: int = 8, size: int = 16, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=generator) * 2 - 1


def test_ada_with_p_zero_is_the_identity_and_with_p_one_changes_every_image():
    x = images()
    assert torch.equal(ada_augment(x, 0.0), x)
    assert torch.equal(geometric_matrices(8, 16, 16, 0.0, x.device), torch.eye(3).repeat(8, 1, 1))
    assert torch.equal(color_matrices(8, 0.0, x.device), torch.eye(4).repeat(8, 1, 1))
    out = ada_augment(x, 1.0, torch.Generator().manual_seed(1))
    assert out.shape == x.shape and torch.isfinite(out).all()
    assert ((out - x).abs().flatten(1).amax(1) > 1e-3).all()
    again = ada_augment(x, 1.0, torch.Generator().manual_seed(1))
    assert torch.equal(out, again)


def test_ada_is_differentiable_with_respect_to_the_images():
    x = images().requires_grad_(True)
    out = ada_augment(x, 0.8, torch.Generator().manual_seed(2))
    (grad,) = torch.autograd.grad(out.square().sum(), x)
    assert grad.shape == x.shape and torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_ada_color_ops_keep_grey_grey():
    # hue rotation and saturation act orthogonally to the grey (luma) axis
    grey = torch.tensor([0.3, 0.3, 0.3, 1.0])
    rotation = _rotate_about_luma(torch.tensor([0.7, -2.0]))
    torch.testing.assert_close(rotation @ grey, grey.expand(2, 4))
    red = torch.tensor([1.0, -1.0, -1.0, 1.0])
    assert not torch.allclose(rotation[0] @ red, red)
    torch.testing.assert_close((rotation[0] @ red)[:3].norm(), red[:3].norm())


def test_ada_p_rises_when_d_is_confident_on_reals_and_falls_otherwise():
    controller = AdaController(target=0.6, interval=4, speed_kimg=500)
    overfit = torch.full((64,), 3.0)  # sign +1 everywhere: r_t = 1 > 0.6
    for _ in range(40):
        controller.update(overfit)
    assert controller.p == pytest.approx(10 * 4 * 64 / 500_000)
    assert controller.last_rt == 1.0
    healthy = torch.cat([torch.full((32,), 1.0), torch.full((32,), -1.0)])  # r_t = 0 < 0.6
    for _ in range(8):
        controller.update(healthy)
    assert controller.p == pytest.approx(8 * 4 * 64 / 500_000)
    for _ in range(400):
        controller.update(healthy)
    assert controller.p == 0.0  # clamped
    state = controller.state_dict()
    other = AdaController()
    other.load_state_dict(state)
    assert other.state_dict() == state


def test_ada_part_logs_p_and_augments_with_it():
    part = ADA("ada", {"target": 0.6, "interval": 1, "speed_kimg": 0.001})
    x = images()
    assert torch.equal(part.augment_d_input(x), x)  # p starts at 0
    part.after_d_step(torch.ones(8))
    assert part.stats()["ada_p"] == 8.0  # one big step: NVIDIA clamps p below only
    assert not torch.equal(part.augment_d_input(x), x)


def test_lecam_penalty_matches_its_formula_on_given_numbers():
    real, fake = torch.tensor([1.0, -1.0, 3.0]), torch.tensor([0.0, 2.0])
    # relu(real - 0.25)² = [0.5625, 0, 7.5625]; relu(0.5 - fake)² = [0.25, 0]
    expected = (0.5625 + 7.5625) / 3 + 0.25 / 2
    assert lecam_penalty(real, fake, 0.5, 0.25).item() == pytest.approx(expected)


def test_lecam_part_tracks_ema_anchors_and_weights_the_penalty():
    part = LeCam("lc", {"weight": 0.3, "ema_decay": 0.9})
    assert math.isnan(part.stats()["lecam_anchor_real"])
    real, fake = torch.tensor([2.0, 4.0]), torch.tensor([-1.0, -3.0])
    first = part.d_regularizer(real, fake)
    assert part.stats() == {"lecam_anchor_real": 3.0, "lecam_anchor_fake": -2.0}
    assert first.item() == pytest.approx(0.3 * lecam_penalty(real, fake, 3.0, -2.0).item())
    part.d_regularizer(torch.tensor([0.0]), torch.tensor([0.0]))
    assert part.stats()["lecam_anchor_real"] == pytest.approx(0.9 * 3.0)
    assert part.stats()["lecam_anchor_fake"] == pytest.approx(0.9 * -2.0)
    restored = LeCam("lc", {"weight": 0.3, "ema_decay": 0.9})
    restored.load_state_dict(part.state_dict())
    assert restored.stats() == pytest.approx(part.stats())


@pytest.mark.parametrize("kind", ["mixup", "cutmix"])
def test_batch_mixing_mixes_within_the_batch_and_stays_differentiable(kind):
    torch.manual_seed(0)
    part = PART_BUILDERS[kind](kind, {"alpha": 0.2 if kind == "mixup" else 1.0}, None)
    assert isinstance(part, BatchMixing)
    x = images(6, 8, seed=5).requires_grad_(True)
    out = part.augment_d_input(x)
    assert out.shape == x.shape
    low, high = x.detach().amin(0), x.detach().amax(0)
    assert (out.detach() >= low - 1e-6).all() and (out.detach() <= high + 1e-6).all()
    if kind == "cutmix":  # every pixel comes from one image of the same batch
        pixels = out.detach().permute(0, 2, 3, 1)
        sources = x.detach().permute(0, 2, 3, 1)
        match = (pixels[:, None] == sources[None]).all(-1).any(1)
        assert match.all()
    (grad,) = torch.autograd.grad(out.sum(), x)
    assert grad.abs().sum() > 0


def test_augmix_part_transforms_reals_and_keeps_range():
    torch.manual_seed(0)
    part = AugMixReal("augmix", {"severity": 3, "width": 3, "depth": -1, "alpha": 1.0})
    x = images(4, 16, seed=6)
    out = part.augment_real(x)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert out.min() >= -1 and out.max() <= 1
    assert not torch.allclose(out, x, atol=0.02)
