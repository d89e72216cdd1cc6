"""ADA: the adaptive discriminator augmentation of StyleGAN2-ADA (Karras et al., 2020).

:func:`ada_augment` is the "bgc" pipeline (blit, geometric, color) of NVIDIA's
``training/augment.py`` (NVlabs/stylegan2-ada-pytorch, ``AugmentPipe`` with
``augpipe_specs['bgc']`` of ``train.py``), differentiable with respect to the images, every
operation applied to each image independently with probability ``p``. The random draws come in
the order of ``AugmentPipe.forward`` (with ``generator=None``, from the global RNG exactly as
theirs), and the transforms compose the same way:

* blit: x-flip, rotation by a multiple of 90°, integer translation up to 0.125 of the size;
* geometric: isotropic scaling 2^N(0, 0.2²), arbitrary rotation U(-180°, 180°) (applied before
  and after the anisotropic scaling, each with probability 1 - sqrt(1 - p) so that some
  rotation happens with probability p), anisotropic scaling 2^N(0, 0.2²), fractional
  translation N(0, 0.125²) of the size;
* color: brightness N(0, 0.2²), contrast 2^N(0, 0.5²), luma flip, hue rotation U(-180°, 180°),
  saturation 2^N(0, 1²), as one 4×4 affine color matrix about the luma axis.

The blit and geometric transforms compose into one inverse affine matrix per image (pixel
units, origin at the image centre), executed as NVIDIA's code does (``augment.py`` lines
272-301): reflection padding by the margin the batch's transformed corners need plus the
filter's support, 2× upsampling with the sym6 wavelet low-pass filter, a bilinear
``grid_sample`` (zeros outside) at 2×, and 2× downsampling with the same filter (correlation)
that crops the padding. The filter is orthogonal, so the identity matrix gives back the image
up to float rounding. The resampling runs the filter as one-dimensional (transposed)
convolutions per axis whose gradients are the adjoint maps, so R1 can differentiate through it
twice; against NVIDIA's ``AugmentPipe`` on the same draws it differs by float rounding (3.5e-5
at most in our CPU comparison). Images are NCHW in [-1, 1].

``p = 0`` returns the images untouched (NVIDIA's pipeline still resamples them, which is the
identity up to float rounding, and draws its random numbers).

:class:`AdaController` holds ``p``: every ``interval`` D steps,
``p += sign(r_t - target) · (images in the interval) / (speed_kimg · 1000)``, clamped below at
0 and not above (``training_loop.py`` line 315), where ``r_t = E[sign(D(real))]`` over the
interval; a ``p`` above 1 applies every operation.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

SCALE_STD, ANISO_STD, XFRAC_STD, XINT_MAX = 0.2, 0.2, 0.125, 0.125
BRIGHTNESS_STD, CONTRAST_STD, SATURATION_STD = 0.2, 0.5, 1.0
LUMA_AXIS = torch.tensor([1.0, 1.0, 1.0, 0.0]) / math.sqrt(3)

#: The sym6 wavelet's low-pass filter, NVIDIA's ``wavelets['sym6']`` (augment.py line 35),
#: their ``Hz_geom`` (normalised to unit DC gain like ``upfirdn2d.setup_filter``).
SYM6 = (
    0.015404109327027373, 0.0034907120842174702, -0.11799011114819057, -0.048311742585633,
    0.4910559419267466, 0.787641141030194, 0.3379294217276218, -0.07263752278646252,
    -0.021060292512300564, 0.04472490177066578, 0.0017677118642428036, -0.007800708325034148,
)  # fmt: skip
FILTER_PAD = len(SYM6) // 4  # NVIDIA's Hz_pad


def sym6_filter() -> Tensor:
    """The sym6 taps in float32 divided by their sum: ``upfirdn2d.setup_filter``'s Hz_geom."""
    taps = torch.tensor(SYM6, dtype=torch.float32)
    return taps / taps.sum()


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
    n: int,
    height: int,
    width: int,
    p: float,
    device: torch.device,
    generator: torch.Generator | None = None,
) -> Tensor:
    """``[n, 3, 3]`` inverse affine maps (output pixel -> input pixel, origin at the image
    centre), NVIDIA's ``G_inv``: each factor is theirs (``*_inv`` of the drawn transform)."""

    def masked(mask: Tensor, value: Tensor, neutral: float) -> Tensor:
        return torch.where(mask, value, torch.full_like(value, neutral))

    ones = torch.ones(n, device=device)
    g = torch.eye(3, device=device).repeat(n, 1, 1)
    flip = torch.floor(_uniform(n, device, generator) * 2)
    flip = masked(_draw(n, p, device, generator), flip, 0)
    g = g @ _scale2d(1 / (1 - 2 * flip), ones)  # scale2d_inv(1 - 2i, 1)
    quarter = torch.floor(_uniform(n, device, generator) * 4)
    quarter = masked(_draw(n, p, device, generator), quarter, 0)
    g = g @ _rotate2d(math.pi / 2 * quarter)  # rotate2d_inv(-pi/2 i)
    shift = (torch.rand(n, 2, device=device, generator=generator) * 2 - 1) * XINT_MAX
    mask = _draw(n, p, device, generator)
    shift = torch.where(mask[:, None], shift, torch.zeros_like(shift))
    g = g @ _translate2d(-torch.round(shift[:, 0] * width), -torch.round(shift[:, 1] * height))
    scale = torch.exp2(_normal(n, device, generator) * SCALE_STD)
    scale = masked(_draw(n, p, device, generator), scale, 1)
    g = g @ _scale2d(1 / scale, 1 / scale)
    p_rot = 1 - math.sqrt(min(max(1 - p, 0.0), 1.0))  # P(pre or post rotation) = p
    theta = (_uniform(n, device, generator) * 2 - 1) * math.pi
    theta = masked(_draw(n, p_rot, device, generator), theta, 0)
    g = g @ _rotate2d(theta)  # rotate2d_inv(-theta), before the anisotropic scaling
    aniso = torch.exp2(_normal(n, device, generator) * ANISO_STD)
    aniso = masked(_draw(n, p, device, generator), aniso, 1)
    g = g @ _scale2d(1 / aniso, aniso)
    theta = (_uniform(n, device, generator) * 2 - 1) * math.pi
    theta = masked(_draw(n, p_rot, device, generator), theta, 0)
    g = g @ _rotate2d(theta)  # after the anisotropic scaling
    frac = torch.randn(n, 2, device=device, generator=generator) * XFRAC_STD
    mask = _draw(n, p, device, generator)
    frac = torch.where(mask[:, None], frac, torch.zeros_like(frac))
    return g @ _translate2d(-frac[:, 0] * width, -frac[:, 1] * height)


def _affine(rows: list, device: torch.device) -> Tensor:
    """A float32 constant (NVIDIA's ``misc.constant`` of a nested list)."""
    return torch.tensor(rows, dtype=torch.float32, device=device)


def _scale(sx: float, sy: float, device: torch.device) -> Tensor:
    return _affine([[sx, 0, 0], [0, sy, 0], [0, 0, 1]], device)


def _translate(tx: float, ty: float, device: torch.device) -> Tensor:
    return _affine([[1, 0, tx], [0, 1, ty], [0, 0, 1]], device)


def geometric_resample(images: Tensor, g_inv: Tensor) -> Tensor:
    """Warp ``images`` [N, C, H, W] by the inverse affine maps ``g_inv`` [N, 3, 3] as NVIDIA's
    ``AugmentPipe``: reflection padding (one margin for the batch), sym6 2× upsampling,
    bilinear sampling, sym6 2× downsampling (their lines 272-301, in the same order)."""
    n, channels, height, width = images.shape
    device = images.device
    taps = sym6_filter().to(device, images.dtype)
    g_inv = g_inv.to(device, torch.float32)
    cx, cy = (width - 1) / 2, (height - 1) / 2
    corners = _affine([[-cx, -cy, 1], [cx, -cy, 1], [cx, cy, 1], [-cx, cy, 1]], device)
    corners = g_inv @ corners.t()  # [n, xyz, corner]
    margin = corners[:, :2, :].permute(1, 0, 2).flatten(1)  # [xy, n * corner]
    margin = torch.cat([-margin, margin]).max(dim=1).values  # [x0, y0, x1, y1]
    margin = margin + _affine([FILTER_PAD * 2 - cx, FILTER_PAD * 2 - cy] * 2, device)
    margin = margin.max(_affine([0, 0] * 2, device))
    margin = margin.min(_affine([width - 1, height - 1] * 2, device))
    mx0, my0, mx1, my1 = (int(m) for m in margin.ceil().to(torch.int32).tolist())

    images = F.pad(images, [mx0, mx1, my0, my1], mode="reflect")
    g = _translate((mx0 - mx1) / 2, (my0 - my1) / 2, device) @ g_inv
    images = _upsample2x(images, taps)
    g = _scale(2, 2, device) @ g @ _scale(1 / 2, 1 / 2, device)
    g = _translate(-0.5, -0.5, device) @ g @ _translate(0.5, 0.5, device)
    out_h, out_w = (height + FILTER_PAD * 2) * 2, (width + FILTER_PAD * 2) * 2
    g = _scale(2 / images.shape[3], 2 / images.shape[2], device) @ g
    g = g @ _scale(out_w / 2, out_h / 2, device)
    grid = F.affine_grid(g[:, :2, :].to(images.dtype), [n, channels, out_h, out_w], False)
    images = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return _downsample2x(images, taps)


def _upsample2x(images: Tensor, taps: Tensor) -> Tensor:
    """NVIDIA's ``upsample2d(x, f, up=2)``: zero insertion, the separable filter with gain 2
    per axis, padding ((k + 1) // 2, (k - 2) // 2) (a transposed convolution per axis)."""
    return _SeparableFIR.apply(images, taps, "up", tuple(images.shape[2:]))


def _downsample2x(images: Tensor, taps: Tensor) -> Tensor:
    """NVIDIA's ``downsample2d(x, f, down=2, padding=-2 Hz_pad, flip_filter=True)``: the
    separable filter as a correlation, every other sample, cropping the 2 Hz_pad-sample margin
    (their padding -2 Hz_pad plus downsample2d's own ((k - 1) // 2, (k - 2) // 2))."""
    return _SeparableFIR.apply(images, taps, "down", tuple(images.shape[2:]))


def _fir(x: Tensor, taps: Tensor, op: str, size: tuple[int, int]) -> Tensor:
    """The four linear maps of the 2× resampling on [N, C, H, W]: ``up`` and ``down`` and
    their adjoints ``up_t`` and ``down_t``; ``size`` is the spatial size of ``up``'s and
    ``down``'s input (the adjoints' output)."""
    n, channels, height, width = x.shape
    k = len(taps)
    x = x.reshape(n * channels, 1, height, width)
    row, column = taps.view(1, 1, 1, k), taps.view(1, 1, k, 1)
    up_crop = k - 1 - (k + 1) // 2  # the full convolution's samples before upsample2d's first
    crop = (2 * FILTER_PAD - (k - 1) // 2, 2 * FILTER_PAD - (k - 2) // 2)  # down's, per side
    if op == "up":
        x = F.conv_transpose2d(x, 2 * row, stride=(1, 2), padding=(0, up_crop))
        x = F.conv_transpose2d(x, 2 * column, stride=(2, 1), padding=(up_crop, 0))
    elif op == "up_t":
        x = F.conv2d(x, 2 * column, stride=(2, 1), padding=(up_crop, 0))
        x = F.conv2d(x, 2 * row, stride=(1, 2), padding=(0, up_crop))
    elif op == "down":
        x = F.pad(x, [-crop[0], -crop[1], -crop[0], -crop[1]])
        x = F.conv2d(x, row, stride=(1, 2))
        x = F.conv2d(x, column, stride=(2, 1))
    else:  # down_t: transposed convolutions back to the cropped size, then the crop undone
        inner = (size[0] - sum(crop), size[1] - sum(crop))
        extra_h = inner[0] - ((x.shape[2] - 1) * 2 + k)
        extra_w = inner[1] - ((x.shape[3] - 1) * 2 + k)
        x = F.conv_transpose2d(x, column, stride=(2, 1), output_padding=(extra_h, 0))
        x = F.conv_transpose2d(x, row, stride=(1, 2), output_padding=(0, extra_w))
        x = F.pad(x, [crop[0], crop[1], crop[0], crop[1]])
    return x.reshape(n, channels, x.shape[2], x.shape[3])


class _SeparableFIR(torch.autograd.Function):
    """A resampling map whose backward pass is its adjoint, itself a ``_SeparableFIR``, so it
    differentiates any number of times without PyTorch's costlier double backward of
    (transposed) convolutions (R1 through ADA takes the second derivative)."""

    ADJOINT = {"up": "up_t", "up_t": "up", "down": "down_t", "down_t": "down"}

    @staticmethod
    def forward(ctx: Any, x: Tensor, taps: Tensor, op: str, size: tuple[int, int]) -> Tensor:
        ctx.save_for_backward(taps)
        ctx.op, ctx.size = op, size
        return _fir(x, taps, op, size)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None, None]:
        (taps,) = ctx.saved_tensors
        adjoint = _SeparableFIR.ADJOINT[ctx.op]
        return _SeparableFIR.apply(grad, taps, adjoint, ctx.size), None, None, None


def color_matrices(
    n: int,
    p: float,
    device: torch.device,
    generator: torch.Generator | None = None,
    channels: int = 3,
) -> Tensor:
    """``[n, 4, 4]`` affine color transforms (homogeneous coordinates), NVIDIA's ``C``; hue and
    saturation (and their draws) only for more than one channel, as theirs."""
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
    if channels == 1:
        return c
    theta = (_uniform(n, device, generator) * 2 - 1) * math.pi
    c = select(_draw(n, p, device, generator), _rotate_about_luma(theta)) @ c
    saturation = torch.exp2(_normal(n, device, generator) * SATURATION_STD)
    saturate = vv + (eye - vv) * saturation[:, None, None]
    return select(_draw(n, p, device, generator), saturate) @ c


def _rotate_about_luma(theta: Tensor) -> Tensor:
    """Rodrigues' rotation by ``theta`` about the (1, 1, 1) axis, as 4×4 matrices (NVIDIA's
    ``rotate3d(v, theta)``)."""
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


def apply_color(images: Tensor, c: Tensor) -> Tensor:
    """Apply the color transforms ``c`` [N, 4, 4] to RGB or single-channel images (NVIDIA's
    lines 357-366: a grey image takes the mean of the three color rows)."""
    n, channels, height, width = images.shape
    flat = images.reshape(n, channels, height * width)
    c = c.to(images.dtype)
    if channels == 3:
        flat = c[:, :3, :3] @ flat + c[:, :3, 3:]
    elif channels == 1:
        c = c[:, :3, :].mean(dim=1, keepdim=True)
        flat = flat * c[:, :, :3].sum(dim=2, keepdim=True) + c[:, :, 3:]
    else:
        raise ValueError(f"ADA's color transforms need 1 or 3 channels, not {channels}")
    return flat.reshape(n, channels, height, width)


def ada_augment(images: Tensor, p: float, generator: torch.Generator | None = None) -> Tensor:
    """Apply the bgc pipeline with per-operation probability ``p`` (``p = 0``: unchanged)."""
    if p <= 0:
        return images
    n, channels, height, width = images.shape
    g_inv = geometric_matrices(n, height, width, p, images.device, generator)
    images = geometric_resample(images, g_inv)
    return apply_color(images, color_matrices(n, p, images.device, generator, channels))


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
            self.p = max(self.p + adjust / (self.speed_kimg * 1000), 0.0)
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
