"""Tests of DiffAugment (color, translation, cutout)."""

from __future__ import annotations

import pytest
import torch

from mixgan.augment.diffaug import DIFFAUG_OPS, diff_augment, shift_images


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_known_ops() -> None:
    assert DIFFAUG_OPS == ("color", "translation", "cutout")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("policy", ["color", "translation", "cutout", "color,translation,cutout"])
@pytest.mark.parametrize("n", [1, 5])
def test_shape_dtype_and_gradient(dtype: torch.dtype, policy: str, n: int) -> None:
    x = (torch.rand(n, 3, 16, 16, generator=seeded(0)) * 2 - 1).to(dtype).requires_grad_()
    y = diff_augment(x, policy, generator=seeded(1))
    assert y.shape == x.shape and y.dtype == dtype
    (y.float() * torch.randn(y.shape, generator=seeded(2))).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad.float()).all()
    assert x.grad.abs().sum() > 0


def test_reproducible_with_generator_and_leaves_global_rng_alone() -> None:
    x = torch.rand(4, 3, 32, 32) * 2 - 1
    state = torch.get_rng_state()
    a = diff_augment(x, generator=seeded(7))
    b = diff_augment(x, generator=seeded(7))
    c = diff_augment(x, generator=seeded(8))
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    # Without a generator the global RNG is used.
    torch.manual_seed(3)
    d = diff_augment(x)
    torch.manual_seed(3)
    assert torch.equal(diff_augment(x), d)


def test_policy_string_and_sequence_are_equivalent() -> None:
    x = torch.rand(3, 3, 16, 16)
    a = diff_augment(x, "color, translation,cutout", generator=seeded(0))
    b = diff_augment(x, ["color", "translation", "cutout"], generator=seeded(0))
    assert torch.equal(a, b)
    assert torch.equal(diff_augment(x, ""), x)
    assert torch.equal(diff_augment(x, []), x)


@pytest.mark.parametrize("policy", ["color,flip", ["translation", "flip"]])
def test_unknown_op_raises(policy: str | list[str]) -> None:
    with pytest.raises(ValueError, match="'flip'"):
        diff_augment(torch.zeros(1, 3, 8, 8), policy)


@pytest.mark.parametrize(("h", "w"), [(16, 16), (32, 32), (15, 15), (12, 20)])
def test_cutout_zeroes_one_half_size_square_clipped_at_the_border(h: int, w: int) -> None:
    n = 400
    y = diff_augment(torch.ones(n, 3, h, w), "cutout", generator=seeded(0))
    zero = y == 0
    assert torch.equal(zero, zero[:, :1].expand_as(zero))  # same mask for every channel
    zero = zero[:, 0]
    assert torch.equal(y[~zero[:, None].expand_as(y)], torch.ones(int((~zero).sum()) * 3))
    size_y, size_x = int(h * 0.5 + 0.5), int(w * 0.5 + 0.5)
    clipped = 0
    for mask in zero:  # the zeros fill their bounding box: one rectangle
        rows = mask.any(dim=1).nonzero().flatten()
        cols = mask.any(dim=0).nonzero().flatten()
        height, width = int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1)
        assert int(mask.sum()) == height * width
        assert height <= size_y and width <= size_x
        touches = rows[0] == 0 or rows[-1] == h - 1 or cols[0] == 0 or cols[-1] == w - 1
        if (height, width) != (size_y, size_x):
            assert touches  # only the border clips the square
            clipped += 1
    # The reference's centre is uniform over the image, so about half the squares are clipped.
    assert 0.3 * n < clipped < 0.9 * n
    # A centre on the first/last row gives a half-height rectangle at the border.
    heights = zero.any(dim=2).sum(dim=1)
    assert int(heights.min()) == size_y - size_y // 2


def zero_filled_shift(img: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """Reference: roll a CHW image by (dy, dx) and zero what wrapped around."""
    _, h, w = img.shape
    valid = torch.zeros(h, w, dtype=torch.bool)
    valid[max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = True
    return torch.where(valid, img.roll((dy, dx), dims=(1, 2)), torch.zeros((), dtype=img.dtype))


def test_translation_is_a_zero_filled_integer_shift() -> None:
    n, size = 200, 16
    x = torch.arange(1, size * size + 1, dtype=torch.float32).reshape(1, 1, size, size)
    x = x.expand(n, 2, size, size).contiguous()
    y = diff_augment(x, "translation", generator=seeded(0))
    shifts = set()
    for img_in, img_out in zip(x, y, strict=True):
        # Every pixel value is unique: locate a surviving one to read off the shift.
        value = img_out[0][img_out[0] > 0][0]
        r_out, c_out = (img_out[0] == value).nonzero()[0].tolist()
        r_in, c_in = (img_in[0] == value).nonzero()[0].tolist()
        dy, dx = r_out - r_in, c_out - c_in
        assert torch.equal(img_out, zero_filled_shift(img_in, dy, dx))
        shifts.add((dy, dx))
    limit = size // 8
    dys, dxs = zip(*shifts, strict=True)
    assert set(dys) == set(dxs) == set(range(-limit, limit + 1))  # within +-size/8, all reached


def test_shift_images_matches_reference() -> None:
    x = torch.randn(3, 2, 8, 8, generator=seeded(0))
    dy, dx = [1, 0, -2], [-1, 2, 0]
    y = shift_images(x, torch.tensor(dy)[:, None], torch.tensor(dx)[:, None], 2, 2)
    for i in range(3):
        assert torch.equal(y[i], zero_filled_shift(x[i], dy[i], dx[i]))


def test_color_parameter_ranges_match_reference() -> None:
    # x = g(i, j) + o_c with a zero-mean grey pattern g and zero-mean channel offsets o.
    # The reference ops give out = k * (s * o_c + g) + b with brightness b ~ U(-0.5, 0.5),
    # saturation s ~ U(0, 2) and contrast k ~ U(0.5, 1.5), so all three can be read back.
    n, size = 2000, 8
    grey = torch.tensor([[0.3, -0.3], [-0.3, 0.3]]).repeat(size // 2, size // 2)
    offset = torch.tensor([0.2, -0.2, 0.0]).reshape(3, 1, 1)
    x = (grey + offset).expand(n, 3, size, size).double()
    out = diff_augment(x, "color", generator=seeded(0))
    b = out.mean(dim=(1, 2, 3))
    k = ((out.mean(dim=1) - b[:, None, None]) / grey).mean(dim=(1, 2))
    colour = out - out.mean(dim=1, keepdim=True)  # = k * s * o_c
    s = (colour[:, :2] / offset[:2]).mean(dim=(1, 2, 3)) / k
    for name, value, (low, high) in [
        ("brightness", b, (-0.5, 0.5)),
        ("saturation", s, (0.0, 2.0)),
        ("contrast", k, (0.5, 1.5)),
    ]:
        span = high - low
        assert low <= value.min() and value.max() <= high, name
        assert value.min() < low + 0.01 * span and value.max() > high - 0.01 * span, name
        assert value.mean().item() == pytest.approx((low + high) / 2, abs=0.03 * span), name
    # The model is exact: rebuilding the output from (b, s, k) reproduces it.
    b, s, k = (v.reshape(n, 1, 1, 1) for v in (b, s, k))
    torch.testing.assert_close(out, k * (s * offset + grey) + b)


def test_color_on_constant_image_is_a_brightness_shift() -> None:
    x = torch.full((500, 3, 4, 4), 0.25)
    shift = diff_augment(x, "color", generator=seeded(0)) - x
    assert torch.allclose(shift, shift[:, :1, :1, :1].expand_as(shift), atol=1e-6)
    assert shift.min() >= -0.5 and shift.max() <= 0.5
