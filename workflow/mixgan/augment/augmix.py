"""AugMix (Hendrycks et al., ICLR 2020) on a whole batch, on the batch's device, with the
semantics of torchvision's ``transforms.v2.AugMix`` (``_auto_augment.py``, class ``AugMix``).

Per image, as torchvision's ``AugMix.forward``: a Beta weight m ~ Dir(alpha, alpha) between the
original and the augmented mixture, chain weights w ~ Dir(alpha, ..., alpha) (``width`` chains)
scaled by m[1], and for each chain a depth (``depth``, or uniform in 1-3 when ``depth`` <= 0)
and, per step, an operation drawn uniformly from the 13 of ``_AUGMENTATION_SPACE`` (``all_ops``;
9 without), a magnitude bin uniform in [0, severity) of its 10-bin range and, for the signed
operations, a sign (negative with probability 1/2). The result is
``uint8(m[0] x + sum_i w_i chain_i(x))`` (float32 sums, truncated as torchvision's ``.to``).

Images are uint8 NCHW (AugMix is defined on uint8 pixels). Each chain step applies, for every
operation drawn in it, that operation to the images that drew it: the affine ones (shear,
translation, rotation) as one batched ``grid_sample`` with a matrix per image, built exactly as
torchvision's ``affine_image``/``rotate_image`` build theirs (bilinear, zeros outside, rounded
back to uint8); the pixel operations through torchvision's own functional kernels, called on
the images that share a magnitude (these kernels treat every image of a batch on its own). So
an image's result equals torchvision's AugMix of that image with the same draws
(``tests/test_augmix.py``); the draws come from a ``torch.Generator`` in another order than
torchvision's global-RNG calls, with the same distribution.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

NUM_BINS = 10  # torchvision's _PARAMETER_MAX
GEOMETRIC = ("ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate")
#: torchvision's ``_AUGMENTATION_SPACE`` in its order: ``_PARTIAL_AUGMENTATION_SPACE`` (the 9
#: ops of ``all_ops=False``), then Brightness, Color, Contrast, Sharpness.
OPS = (*GEOMETRIC, "Posterize", "Solarize", "AutoContrast", "Equalize",
       "Brightness", "Color", "Contrast", "Sharpness")  # fmt: skip
PARTIAL_OPS = 9
SIGNED = frozenset({*GEOMETRIC, "Brightness", "Color", "Contrast", "Sharpness"})


def magnitudes(op: str, height: int, width: int) -> Tensor | None:
    """The 10 magnitude bins of ``op`` (torchvision's ``_AUGMENTATION_SPACE`` lambdas)."""
    ranges: dict[str, Callable[[], Tensor | None]] = {
        "ShearX": lambda: torch.linspace(0.0, 0.3, NUM_BINS),
        "ShearY": lambda: torch.linspace(0.0, 0.3, NUM_BINS),
        "TranslateX": lambda: torch.linspace(0.0, width / 3.0, NUM_BINS),
        "TranslateY": lambda: torch.linspace(0.0, height / 3.0, NUM_BINS),
        "Rotate": lambda: torch.linspace(0.0, 30.0, NUM_BINS),
        "Posterize": lambda: (4 - (torch.arange(NUM_BINS) / ((NUM_BINS - 1) / 4))).round().int(),
        "Solarize": lambda: torch.linspace(1.0, 0.0, NUM_BINS),
        "AutoContrast": lambda: None,
        "Equalize": lambda: None,
        "Brightness": lambda: torch.linspace(0.0, 0.9, NUM_BINS),
        "Color": lambda: torch.linspace(0.0, 0.9, NUM_BINS),
        "Contrast": lambda: torch.linspace(0.0, 0.9, NUM_BINS),
        "Sharpness": lambda: torch.linspace(0.0, 0.9, NUM_BINS),
    }
    return ranges[op]()


def magnitude(op: str, level: int, negative: bool, height: int, width: int) -> float:
    """The magnitude torchvision's AugMix applies for bin ``level`` (0.0 for the ops without
    one); ``negative`` flips the sign of the signed ops."""
    bins = magnitudes(op, height, width)
    if bins is None:
        return 0.0
    value = float(bins[level])
    return -value if negative and op in SIGNED else value


@dataclass
class AugMixDraws:
    """Every random choice of one AugMix call on N images with ``width`` chains.

    ``mix`` [N, 2]: the Beta weights (original, augmented); ``weights`` [N, width]: each chain's
    weight (already times ``mix[:, 1]``); ``depth`` [width, N]; ``ops``, ``levels``,
    ``negative`` [width, max depth, N]: operation index into :data:`OPS`, magnitude bin, sign.
    """

    mix: Tensor
    weights: Tensor
    depth: Tensor
    ops: Tensor
    levels: Tensor
    negative: Tensor

    def select(self, start: int, stop: int) -> AugMixDraws:
        """The draws of images ``start`` to ``stop``."""
        return AugMixDraws(
            self.mix[start:stop], self.weights[start:stop], self.depth[:, start:stop],
            self.ops[..., start:stop], self.levels[..., start:stop],
            self.negative[..., start:stop],
        )  # fmt: skip


def draw(
    count: int,
    severity: int = 3,
    width: int = 3,
    depth: int = -1,
    alpha: float = 1.0,
    all_ops: bool = True,
    generator: torch.Generator | None = None,
) -> AugMixDraws:
    """AugMix's random choices for ``count`` images, from ``generator`` (on the CPU)."""
    if not 1 <= severity <= NUM_BINS:
        raise ValueError(f"AugMix severity must be in [1, {NUM_BINS}], not {severity}")
    mix = torch._sample_dirichlet(torch.full((count, 2), float(alpha)), generator=generator)
    chains = torch._sample_dirichlet(torch.full((count, width), float(alpha)), generator=generator)
    weights = chains * mix[:, 1:2]
    max_depth = depth if depth > 0 else 3
    if depth > 0:
        depths = torch.full((width, count), depth, dtype=torch.long)
    else:
        depths = torch.randint(1, 4, (width, count), generator=generator)
    shape = (width, max_depth, count)
    num_ops = len(OPS) if all_ops else PARTIAL_OPS
    ops = torch.randint(num_ops, shape, generator=generator)
    levels = torch.randint(severity, shape, generator=generator)
    negative = torch.rand(shape, generator=generator) <= 0.5
    return AugMixDraws(mix, weights, depths, ops, levels, negative)


#: images per call on a CPU, where batch-sized float intermediates fall out of the cache (64
#: images at 256²: 0.63 s in one call, 0.39 s in chunks of 8, 0.28-0.4 s per image through
#: torchvision, one thread); a GPU takes the whole batch
CPU_CHUNK = 8


def augmix(images: Tensor, draws: AugMixDraws) -> Tensor:
    """AugMix of uint8 ``images`` [N, C, H, W] with the given draws, on their device."""
    if images.dtype != torch.uint8:
        raise TypeError(f"AugMix works on uint8 images, not {images.dtype}")
    if images.device.type == "cpu" and len(images) > CPU_CHUNK:
        return torch.cat(
            [
                augmix(images[start : start + CPU_CHUNK], draws.select(start, start + CPU_CHUNK))
                for start in range(0, len(images), CPU_CHUNK)
            ]
        )
    device = images.device
    shape = (-1, 1, 1, 1)
    mix = draws.mix[:, 0].to(device).reshape(shape) * images
    for chain in range(draws.weights.shape[1]):
        aug = images
        for step in range(draws.ops.shape[1]):
            active = draws.depth[chain] > step
            if not active.any():
                break
            aug = apply_step(
                aug, draws.ops[chain, step], draws.levels[chain, step],
                draws.negative[chain, step], active,
            )  # fmt: skip
        mix.add_(draws.weights[:, chain].to(device).reshape(shape) * aug)
    return mix.to(torch.uint8)


def apply_step(
    images: Tensor, ops: Tensor, levels: Tensor, negative: Tensor, active: Tensor
) -> Tensor:
    """One chain step: each ``active`` image gets its operation ``ops`` at bin ``levels``
    (signs ``negative``); the others pass through. The index tensors live on the CPU."""
    out = images.clone()
    height, width = images.shape[-2:]
    geometric: list[tuple[int, list[list[float]]]] = []
    groups: dict[tuple[str, float], list[int]] = {}
    for index in torch.nonzero(active).flatten().tolist():
        op = OPS[int(ops[index])]
        value = magnitude(op, int(levels[index]), bool(negative[index]), height, width)
        if op not in GEOMETRIC:
            groups.setdefault((op, value), []).append(index)
        elif not (op == "Rotate" and value % 360 == 0):  # torchvision returns a copy
            geometric.append((index, affine_matrix(op, value, height, width)))
    if geometric:
        index = torch.tensor([i for i, _ in geometric], device=images.device)
        thetas = torch.tensor([theta for _, theta in geometric], dtype=torch.float32)
        out[index] = warp(images[index], thetas)
    for (op, value), members in groups.items():
        index = torch.tensor(members, device=images.device)
        out[index] = pixel_op(op, value, images[index])
    return out


def pixel_op(op: str, value: float, images: Tensor) -> Tensor:
    """A non-geometric AugMix operation through torchvision's kernel, with the arguments of
    ``_AutoAugmentBase._apply_image_or_video_transform``."""
    import torchvision.transforms.v2.functional as TF

    if op == "Brightness":
        return TF.adjust_brightness(images, brightness_factor=1.0 + value)
    if op == "Color":
        return TF.adjust_saturation(images, saturation_factor=1.0 + value)
    if op == "Contrast":
        return TF.adjust_contrast(images, contrast_factor=1.0 + value)
    if op == "Sharpness":
        return TF.adjust_sharpness(images, sharpness_factor=1.0 + value)
    if op == "Posterize":
        return TF.posterize(images, bits=int(value))
    if op == "Solarize":
        return TF.solarize(images, threshold=255 * value)  # uint8's bound x magnitude
    if op == "AutoContrast":
        return TF.autocontrast(images)
    if op == "Equalize":
        return TF.equalize(images)
    raise ValueError(f"no pixel operation {op!r}")


def affine_matrix(op: str, value: float, height: int, width: int) -> list[list[float]]:
    """The 2x3 inverse affine matrix torchvision's ``affine_image``/``rotate_image`` build for
    a geometric AugMix operation (pixel units about the image centre)."""
    if op == "Rotate":
        angle = value % 360  # rotate_image: shift to [0, 360), then -angle
        matrix = inverse_affine([0.0, 0.0], -angle, [0.0, 0.0], 1.0, [0.0, 0.0])
    elif op in ("ShearX", "ShearY"):
        degrees = math.degrees(math.atan(value))
        shear = [degrees, 0.0] if op == "ShearX" else [0.0, degrees]
        centre = [0.0 - width * 0.5, 0.0 - height * 0.5]  # center=[0, 0]: the top-left corner
        matrix = inverse_affine(centre, 0.0, [0.0, 0.0], 1.0, shear)
    else:
        shift = [float(int(value)), 0.0] if op == "TranslateX" else [0.0, float(int(value))]
        matrix = inverse_affine([0.0, 0.0], 0.0, shift, 1.0, [0.0, 0.0])
    return [matrix[:3], matrix[3:]]


def inverse_affine(
    center: list[float], angle: float, translate: list[float], scale: float, shear: list[float]
) -> list[float]:
    """torchvision's ``_get_inverse_affine_matrix`` (inverted), the same float operations in
    the same order: C RSS^-1 C^-1 T^-1 as six numbers."""
    rot = math.radians(angle)
    sx, sy = math.radians(shear[0]), math.radians(shear[1])
    cx, cy = center
    tx, ty = translate
    cos_sy, tan_sx, rot_minus_sy = math.cos(sy), math.tan(sx), rot - sy
    cx_plus_tx, cy_plus_ty = cx + tx, cy + ty
    a = math.cos(rot_minus_sy) / cos_sy
    b = -(a * tan_sx + math.sin(rot))
    c = math.sin(rot_minus_sy) / cos_sy
    d = math.cos(rot) - c * tan_sx
    matrix = [d / scale, -b / scale, 0.0, -c / scale, a / scale, 0.0]
    matrix[2] += cx - matrix[0] * cx_plus_tx - matrix[1] * cy_plus_ty
    matrix[5] += cy - matrix[3] * cx_plus_tx - matrix[4] * cy_plus_ty
    return matrix


def warp(images: Tensor, thetas: Tensor) -> Tensor:
    """uint8 images resampled bilinearly by one matrix each (torchvision's ``_affine_grid`` and
    ``_apply_grid_transform`` without fill: zeros outside, rounded back to uint8)."""
    count, _, height, width = images.shape
    device = images.device
    base = torch.empty(1, height, width, 3, device=device)
    base[..., 0].copy_(
        torch.linspace((1.0 - width) * 0.5, (width - 1.0) * 0.5, width, device=device)
    )
    rows = torch.linspace((1.0 - height) * 0.5, (height - 1.0) * 0.5, height, device=device)
    base[..., 1].copy_(rows.unsqueeze_(-1))
    base[..., 2].fill_(1)
    scale = torch.tensor([0.5 * width, 0.5 * height], device=device)
    rescaled = thetas.to(device).transpose(1, 2).div_(scale)
    grid = base.view(1, height * width, 3).expand(count, -1, -1).bmm(rescaled)
    grid = grid.view(count, height, width, 2)
    out = F.grid_sample(
        images.float(), grid, mode="bilinear", padding_mode="zeros", align_corners=False
    )
    return out.round_().to(images.dtype)
