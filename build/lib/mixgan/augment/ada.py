"""ADA: the adaptive discriminator augmentation of StyleGAN2-ADA (Karras et al., 2020).

:func:`ada_augment` is the "bgc" pipeline (blit, geometric, color), differentiable with
respect to the images, every operation applied to each image independently with probability
``p``. Parameter distributions are the paper's:

* blit: x-flip, rotation by a multiple of 90°, integer translation up to 0.125 of the size;
* geometric: isotropic scaling 2^N(0, 0.2²), arbitrary rotation U(-180°, 180°) (applied before
  and after the anisotropic scaling, each with probability 1 - sqrt(1 - p) so that some
  rotation happens with probability p), anisotropic scaling 2^N(0, 0.2²), fractional
  translation N(0, 0.125²) of the size;
* color: brightness N(0, 0.2²), contrast 2^N(0, 0.5²), luma flip, hue rotation U(-180°, 180°),
  saturation 2^N(0, 1²) — as one 4×4 affine color matrix about the luma axis.

The geometric transforms compose into one affine matrix per image, applied with bilinear
``grid_sample`` and reflection padding. (The reference implementation resamples with a
wavelet filter at 2× resolution; this simplification changes the interpolation kernel, not the
distribution of transforms.) Images are NCHW in [-1, 1].

:class:`AdaController` holds ``p``: every ``interval`` D steps,
``p += sign(r_t - target) · (images in the interval) / (speed_kimg · 1000)``, clamped to
[0, 1], where ``r_t = E[sign(D(real))]`` over the interval.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

SCALE_STD, ANISO_STD, XFRAC_STD, XINT_MAX = 0.2, 0.2, 0.125, 0.125
BRIGHTNESS_STD, CONTRAST_STD, SATURATION_STD = 0.2, 0.5, 1.0
LUMA_AXIS = torch.tensor([1.0, 1.0, 1.0, 0.0]) / math.sqrt(3)


def _draw(n: int, p: float, device: torch.device, generator: torch.Generator | None) -> Tensor:
    """Per-image mask: which images get an operation applied with probability ``p``."""
    return torch.rand(n, device=device, generator=generator) < p


def _uniform(n: int, device: torch.device, generator: torch.Generator | None) -> Tensor:
    return torch.rand(n, device=device, generator=generator)


def _normal(n: int, device: torch.device, generator: torch.Generator | None) -> Tensor:
    return torch.randn(n, device=device, generator=generator)


def _matrix3(rows: list[list[Tensor | float]], n: int, device: torch.device) -> Tensor:
    out = torch.zeros(n, 3, 3, device=device)
    for i, row in enumerate(rows):
        for j, value in enumerate(row):
            out[:, i, j] = value
    return out


def _scale2d(sx: Tensor, sy: Tensor) -> Tensor:
    return _matrix3([[sx, 0, 0], [0, sy, 0], [0, 0, 1]], len(sx), sx.device)


def _translate2d(tx: Tensor, ty: Tensor) -> Tensor:
    return _matrix3([[1, 0, tx], [0, 1, ty], [0, 0, 1]], len(tx), tx.device)


def _rotate2d(theta: Tensor) -> Tensor:
    c, s = torch.cos(theta), torch.sin(theta)
    return _matrix3([[c, -s, 0], [s, c, 0], [0, 0, 1]], len(theta), theta.device)


def geometric_matrices(
    n: int, size: int, p: float, device: torch.device, generator: torch.Generator | None = None
) -> Tensor:
    """``[n, 3, 3]`` affine maps from output to input coordinates, in grid_sample's [-1, 1]."""

    def masked(mask: Tensor, value: Tensor, neutral: float) -> Tensor:
        return torch.where(mask, value, torch.full_like(value, neutral))

    g = torch.eye(3, device=device).repeat(n, 1, 1)
    flip = torch.floor(_uniform(n, device, generator) * 2)
    g = g @ _scale2d(
        1 - 2 * masked(_draw(n, p, device, generator), flip, 0), torch.ones(n, device=device)
    )
    quarter = torch.floor(_uniform(n, device, generator) * 4)
    g = g @ _rotate2d(-math.pi / 2 * masked(_draw(n, p, device, generator), quarter, 0))
    # integer translation: whole pixels, in normalised units (2 / size per pixel)
    shift = (torch.rand(n, 2, device=device, generator=generator) * 2 - 1) * XINT_MAX
    shift = torch.round(shift * size) * 2 / size
    mask = _draw(n, p, device, generator)
    g = g @ _translate2d(masked(mask, shift[:, 0], 0), masked(mask, shift[:, 1], 0))
    scale = torch.exp2(_normal(n, device, generator) * SCALE_STD)
    scale = masked(_draw(n, p, device, generator), scale, 1)
    g = g @ _scale2d(1 / scale, 1 / scale)
    p_rot = 1 - math.sqrt(max(1 - p, 0))
    theta = (_uniform(n, device, generator) * 2 - 1) * math.pi
    g = g @ _rotate2d(-masked(_draw(n, p_rot, device, generator), theta, 0))
    aniso = torch.exp2(_normal(n, device, generator) * ANISO_STD)
    aniso = masked(_draw(n, p, device, generator), aniso, 1)
    g = g @ _scale2d(1 / aniso, aniso)
    theta = (_uniform(n, device, generator) * 2 - 1) * math.pi
    g = g @ _rotate2d(-masked(_draw(n, p_rot, device, generator), theta, 0))
    frac = torch.randn(n, 2, device=device, generator=generator) * XFRAC_STD * 2
    mask = _draw(n, p, device, generator)
    return g @ _translate2d(masked(mask, frac[:, 0], 0), masked(mask, frac[:, 1], 0))


def color_matrices(
    n: int, p: float, device: torch.device, generator: torch.Generator | None = None
) -> Tensor:
    """``[n, 4, 4]`` affine color transforms of RGB in [-1, 1] (homogeneous coordinates)."""
    eye = torch.eye(4, device=device)
    v = LUMA_AXIS.to(device)
    vv = torch.outer(v, v)

    def select(mask: Tensor, matrices: Tensor) -> Tensor:
        return torch.where(mask[:, None, None], matrices, eye)

    c = eye.repeat(n, 1, 1)
    brightness = _normal(n, device, generator) * BRIGHTNESS_STD
    translate = eye.repeat(n, 1, 1)
    translate[:, :3, 3] = brightness[:, None]
    c = select(_draw(n, p, device, generator), translate) @ c
    contrast = torch.exp2(_normal(n, device, generator) * CONTRAST_STD)
    scale = torch.diag_embed(torch.stack([contrast] * 3 + [torch.ones_like(contrast)], dim=1))
    c = select(_draw(n, p, device, generator), scale) @ c
    luma_flip = torch.floor(_uniform(n, device, generator) * 2)
    c = select(_draw(n, p, device, generator), eye - 2 * vv * luma_flip[:, None, None]) @ c
    theta = (_uniform(n, device, generator) * 2 - 1) * math.pi
    c = select(_draw(n, p, device, generator), _rotate_about_luma(theta)) @ c
    saturation = torch.exp2(_normal(n, device, generator) * SATURATION_STD)
    saturate = vv + (eye - vv) * saturation[:, None, None]
    saturate[:, 3, 3] = 1
    return select(_draw(n, p, device, generator), saturate) @ c


def _rotate_about_luma(theta: Tensor) -> Tensor:
    """Rodrigues' rotation by ``theta`` about the (1, 1, 1) axis, as 4×4 matrices."""
    axis = LUMA_AXIS[:3].to(theta.device)
    cross = torch.tensor(
        [[0.0, -axis[2], axis[1]], [axis[2], 0.0, -axis[0]], [-axis[1], axis[0], 0.0]],
        device=theta.device,
    )
    cos, sin = torch.cos(theta)[:, None, None], torch.sin(theta)[:, None, None]
    rotation = cos * torch.eye(3, device=theta.device) + sin * cross
    rotation = rotation + (1 - cos) * torch.outer(axis, axis)
    out = torch.eye(4, device=theta.device).repeat(len(theta), 1, 1)
    out[:, :3, :3] = rotation
    return out


def ada_augment(images: Tensor, p: float, generator: torch.Generator | None = None) -> Tensor:
    """Apply the bgc pipeline with per-operation probability ``p`` (``p = 0``: unchanged)."""
    if p <= 0:
        return images
    n, channels, height, width = images.shape
    if height != width:
        raise ValueError("ADA here expects square images")
    device = images.device
    g = geometric_matrices(n, height, p, device, generator)
    grid = F.affine_grid(g[:, :2, :].to(images.dtype), list(images.shape), align_corners=False)
    images = F.grid_sample(
        images, grid, mode="bilinear", padding_mode="reflection", align_corners=False
    )
    if channels != 3:
        return images
    c = color_matrices(n, p, device, generator).to(images.dtype)
    flat = images.reshape(n, 3, height * width)
    flat = c[:, :3, :3] @ flat + c[:, :3, 3:]
    return flat.reshape(n, 3, height, width)


class AdaController:
    """The adaptive ``p`` of ADA, driven by the sign of D's outputs on real images."""

    def __init__(self, target: float = 0.6, interval: int = 4, speed_kimg: float = 500):
        self.target, self.interval, self.speed_kimg = target, interval, speed_kimg
        self.p = 0.0
        self.signs: Tensor | float = 0.0  # summed on D's device: no host sync per step
        self.count = 0
        self.steps = 0
        self.last_rt = math.nan

    def update(self, logits_real: Tensor) -> None:
        """Record one D step's outputs on (augmented) reals; adjust ``p`` every interval."""
        self.signs = self.signs + torch.sign(logits_real.detach()).sum()
        self.count += logits_real.numel()
        self.steps += 1
        if self.steps % self.interval == 0:
            self.last_rt = float(self.signs) / self.count
            adjust = math.copysign(1.0, self.last_rt - self.target) * self.count
            if self.last_rt == self.target:
                adjust = 0.0
            self.p = min(max(self.p + adjust / (self.speed_kimg * 1000), 0.0), 1.0)
            self.signs, self.count = 0.0, 0

    def state_dict(self) -> dict[str, float]:
        return {
            "p": self.p,
            "signs": float(self.signs),
            "count": self.count,
            "steps": self.steps,
            "last_rt": self.last_rt,
        }

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.p, self.signs = float(state["p"]), float(state["signs"])
        self.count, self.steps = int(state["count"]), int(state["steps"])
        self.last_rt = float(state.get("last_rt", math.nan))
