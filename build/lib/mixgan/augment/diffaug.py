"""DiffAugment (Zhao et al., 2020): differentiable augmentations for data-efficient GANs.

The same random augmentation policy is applied to real and generated images before the
discriminator, and gradients flow through it to the generator. Images are NCHW in [-1, 1].

Ops (each draws independent parameters per image):

- ``color``: brightness + U(-0.5, 0.5), then saturation (deviation from the per-pixel channel
  mean) x U(0, 2), then contrast (deviation from the per-image mean) x U(0.5, 1.5), as in the
  reference implementation.
- ``translation``: integer shift of up to 1/8 of the image size along each axis, zero padded.
- ``cutout``: a zeroed rectangle of half the image size whose centre is uniform over the image
  (0..H for even H, as the reference draws it), clipped at the border like the reference.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

DIFFAUG_OPS = ("color", "translation", "cutout")


def _uniform(x: Tensor, low: float, high: float, generator: torch.Generator | None) -> Tensor:
    """Per-image uniform samples in [low, high), shaped [N, 1, 1, 1] for broadcasting."""
    u = torch.rand((x.shape[0], 1, 1, 1), generator=generator, device=x.device, dtype=x.dtype)
    return low + (high - low) * u


def _randint(n: int, low: int, high: int, x: Tensor, generator: torch.Generator | None) -> Tensor:
    """``n`` integers uniform in [low, high], shaped [n, 1]."""
    return torch.randint(low, high + 1, (n, 1), generator=generator, device=x.device)


def _color(x: Tensor, generator: torch.Generator | None) -> Tensor:
    x = x + _uniform(x, -0.5, 0.5, generator)
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * _uniform(x, 0.0, 2.0, generator) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * _uniform(x, 0.5, 1.5, generator) + mean


def shift_images(x: Tensor, dy: Tensor, dx: Tensor, max_dy: int, max_dx: int) -> Tensor:
    """Move the content of image i by (``dy[i]``, ``dx[i]``) pixels (down, right), filling the
    uncovered area with zeros. Shifts are integer tensors of shape [N, 1] bounded by
    ``max_dy`` and ``max_dx`` in absolute value."""
    n, c, h, w = x.shape
    padded = F.pad(x, (max_dx, max_dx, max_dy, max_dy))
    # Output pixel (i, j) reads input pixel (i - dy, j - dx), i.e. padded (i - dy + max_dy, ...).
    rows = torch.arange(h, device=x.device) - dy + max_dy  # [N, H]
    cols = torch.arange(w, device=x.device) - dx + max_dx  # [N, W]
    x = padded.gather(2, rows[:, None, :, None].expand(n, c, h, padded.shape[3]))
    return x.gather(3, cols[:, None, None, :].expand(n, c, h, w))


def _translation(x: Tensor, generator: torch.Generator | None) -> Tensor:
    n, _, h, w = x.shape
    max_dy, max_dx = h // 8, w // 8
    dy = _randint(n, -max_dy, max_dy, x, generator)
    dx = _randint(n, -max_dx, max_dx, x, generator)
    return shift_images(x, dy, dx, max_dy, max_dx)


def _cutout(x: Tensor, generator: torch.Generator | None) -> Tensor:
    n, _, h, w = x.shape
    size_y, size_x = int(h * 0.5 + 0.5), int(w * 0.5 + 0.5)
    # The reference draws the centre in [0, H + (1 - H % 2)) and clips the square at the border.
    top = _randint(n, 0, h - h % 2, x, generator) - size_y // 2
    left = _randint(n, 0, w - w % 2, x, generator) - size_x // 2
    rows = torch.arange(h, device=x.device)
    cols = torch.arange(w, device=x.device)
    in_rows = (rows >= top) & (rows < top + size_y)  # [N, H]
    in_cols = (cols >= left) & (cols < left + size_x)  # [N, W]
    keep = ~(in_rows[:, :, None] & in_cols[:, None, :])
    return x * keep[:, None].to(x.dtype)


_OPS: dict[str, Callable[[Tensor, torch.Generator | None], Tensor]] = {
    "color": _color,
    "translation": _translation,
    "cutout": _cutout,
}


def parse_policy(policy: Sequence[str] | str) -> list[str]:
    """Op names of a policy given as "color,translation,cutout" or a sequence of names."""
    names = policy.split(",") if isinstance(policy, str) else list(policy)
    names = [name.strip() for name in names if name.strip()]
    for name in names:
        if name not in _OPS:
            raise ValueError(
                f"unknown DiffAugment op {name!r}; known ops: {', '.join(DIFFAUG_OPS)}"
            )
    return names


def diff_augment(
    x: Tensor,
    policy: Sequence[str] | str = DIFFAUG_OPS,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Apply the ops of ``policy`` in order to the NCHW batch ``x``.

    Random parameters come from ``generator`` (which must live on ``x``'s device) or, if None,
    from the global RNG. The result has the shape and dtype of ``x`` and is differentiable
    with respect to it.
    """
    names = parse_policy(policy)
    if x.ndim != 4:
        raise ValueError(f"expected an NCHW batch, got shape {tuple(x.shape)}")
    for name in names:
        x = _OPS[name](x, generator)
    return x
