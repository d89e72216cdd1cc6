"""ADA's geometric resampling as NVIDIA's AugmentPipe (sym6 filter at 2x, reflection padding),
its color matrices on grey images, and the p controller's bit-exact resume."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mixgan.augment.ada import (
    SYM6,
    AdaController,
    ada_augment,
    apply_color,
    color_matrices,
    geometric_matrices,
    geometric_resample,
)
from mixgan.train.augment_parts import ADA

CPU = torch.device("cpu")


def images(n: int = 4, height: int = 16, width: int = 16, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, height, width, generator=generator) * 2 - 1


def translation(n: int, dx: float, dy: float) -> torch.Tensor:
    """Inverse maps of a shift by (dx, dy) pixels: output pixel p reads input p - (dx, dy)."""
    g = torch.eye(3).repeat(n, 1, 1)
    g[:, 0, 2], g[:, 1, 2] = -dx, -dy
    return g


def test_sym6_taps_are_an_orthonormal_wavelet_filter_with_six_vanishing_moments():
    h = torch.tensor(SYM6, dtype=torch.float64)
    assert len(h) == 12  # sym6: 2 x 6 taps
    assert float(h.sum()) == pytest.approx(math.sqrt(2), abs=1e-12)
    for shift in range(0, 12, 2):  # orthonormal to its own even shifts
        expected = 1.0 if shift == 0 else 0.0
        assert float((h[: 12 - shift] * h[shift:]).sum()) == pytest.approx(expected, abs=1e-12)
    k = torch.arange(12, dtype=torch.float64)
    high = (-1) ** k * h  # the high-pass filter's moments vanish up to order 5
    moments = [abs(float((high * k**order).sum())) for order in range(7)]
    assert max(moments[:6]) < 1e-8 and moments[6] > 100  # exactly six vanish


@pytest.mark.parametrize("shape", [(16, 16), (12, 20)])
def test_the_identity_matrix_gives_the_image_back_after_the_filter_round_trip(shape):
    x = images(3, *shape)
    out = geometric_resample(x, torch.eye(3).repeat(3, 1, 1))
    assert out.shape == x.shape
    torch.testing.assert_close(out, x, atol=1e-5, rtol=0)


def test_an_integer_translation_is_a_shift_of_the_reflection_padded_image():
    x = images(2, 16, 20)
    out = geometric_resample(x, translation(2, 3, -2))
    padded = F.pad(x, [4, 4, 4, 4], mode="reflect")
    expected = padded[:, :, 4 + 2 : 4 + 2 + 16, 4 - 3 : 4 - 3 + 20]  # out[y, x] = in[y+2, x-3]
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)  # the borders too: reflected


def test_any_warp_keeps_a_constant_image_constant_and_each_image_its_own():
    # the padding covers every sample point and the filter's support: no zeros come in
    g = geometric_matrices(8, 16, 16, 1.0, CPU, torch.Generator().manual_seed(3))
    constant = torch.full((8, 3, 16, 16), 0.3)
    torch.testing.assert_close(geometric_resample(constant, g), constant, atol=1e-5, rtol=0)
    # the batch shares one padding margin, which leaves each image's result unchanged
    x = images(8)
    together = geometric_resample(x, g)
    alone = torch.cat([geometric_resample(x[i : i + 1], g[i : i + 1]) for i in range(8)])
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=0)


def test_geometric_matrices_are_inverse_maps_in_pixels_and_p_zero_draws_the_identity():
    assert torch.equal(geometric_matrices(5, 16, 16, 0.0, CPU), torch.eye(3).repeat(5, 1, 1))
    g = geometric_matrices(512, 32, 32, 1.0, CPU, torch.Generator().manual_seed(0))
    assert torch.equal(g[:, 2], torch.tensor([0.0, 0.0, 1.0]).expand(512, 3))
    # scalings 2^N(0, 0.2²) and flips: |det| = 1 / s², s isotropic (anisotropy cancels)
    log_det = torch.log2(torch.linalg.det(g).abs())
    assert float(log_det.std()) == pytest.approx(2 * 0.2, rel=0.15)
    # translations are in pixels: integer (up to 0.125 x 32 = 4 px) plus N(0, (0.125 x 32)²)
    assert 2.0 < float(g[:, :2, 2].std()) < 8.0


def test_ada_is_twice_differentiable_with_respect_to_the_images():
    x = images().requires_grad_(True)
    out = ada_augment(x, 0.8, torch.Generator().manual_seed(2))
    (grad,) = torch.autograd.grad(out.square().sum(), x, create_graph=True)  # R1 through ADA
    (second,) = torch.autograd.grad(grad.square().sum(), x)
    assert torch.isfinite(second).all() and second.abs().sum() > 0


def test_grey_images_take_the_mean_of_the_color_rows_and_skip_hue_and_saturation():
    c = color_matrices(6, 1.0, CPU, torch.Generator().manual_seed(1))
    grey = torch.rand(6, 1, 8, 8) * 2 - 1
    as_rgb = apply_color(grey.repeat(1, 3, 1, 1), c).mean(dim=1, keepdim=True)
    torch.testing.assert_close(apply_color(grey, c), as_rgb)
    # one channel: the same brightness, contrast and luma flip without hue and saturation,
    # which leave the luma row alone (v^T H = v^T S = v^T) and change the rest
    grey_c = color_matrices(6, 1.0, CPU, torch.Generator().manual_seed(5), channels=1)
    rgb_c = color_matrices(6, 1.0, CPU, torch.Generator().manual_seed(5), channels=3)
    luma = torch.tensor([1.0, 1.0, 1.0, 0.0]) / math.sqrt(3)
    torch.testing.assert_close(luma @ grey_c, luma @ rgb_c)
    assert not torch.allclose(grey_c, rgb_c)


def test_p_is_not_clamped_above_one_and_the_controller_resumes_bit_exactly():
    confident, unsure = torch.full((8,), 2.0), torch.tensor([1.0, -1.0] * 4)
    controller = AdaController(target=0.6, interval=2, speed_kimg=0.004)
    for _ in range(6):
        controller.update(confident)
    assert controller.p == pytest.approx(3 * 16 / 4)  # NVIDIA clamps p at 0 only
    trace, restored = [], None
    for step in range(40):
        if step == 17:
            restored = AdaController(target=0.6, interval=2, speed_kimg=0.004)
            restored.load_state_dict(controller.state_dict())
        controller.update(unsure if step % 3 else confident)
        if restored is not None:
            restored.update(unsure if step % 3 else confident)
            trace.append((controller.p, restored.p, controller.last_rt, restored.last_rt))
    assert all(a == b and c == d for a, b, c, d in trace)
    assert controller.p == 0.0  # D is unsure: p falls back to 0


def test_the_ada_part_augments_identically_after_a_restart():
    part = ADA("ada", {"target": 0.6, "interval": 1, "speed_kimg": 0.01})
    part.after_d_step(torch.ones(4))
    assert part.stats()["ada_p"] == pytest.approx(0.4)
    x = images()
    torch.manual_seed(11)
    first = part.augment_d_input(x)
    resumed = ADA("ada", {"target": 0.6, "interval": 1, "speed_kimg": 0.01})
    resumed.load_state_dict(part.state_dict())
    torch.manual_seed(11)
    assert torch.equal(resumed.augment_d_input(x), first)
    assert not torch.equal(first, x)


def test_the_resampling_gradients_are_the_adjoint_maps_to_any_order():
    from mixgan.augment.ada import _downsample2x, _upsample2x, sym6_filter

    taps = sym6_filter().double()
    for resample, shape in ((_upsample2x, (1, 2, 5, 7)), (_downsample2x, (1, 2, 19, 16))):
        x = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(lambda t, f=resample: f(t, taps), (x,))
        assert torch.autograd.gradgradcheck(lambda t, f=resample: f(t, taps), (x,))
