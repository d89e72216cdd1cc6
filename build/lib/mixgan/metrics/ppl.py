"""Perceptual path length (StyleGAN, Karras et al., 2019) and MixDL's interpolation uniformity.

Both draw pairs of latents z0, z1 ~ N(0, I) (optionally mapped to endpoints by ``endpoints``,
e.g. the mapping network for W space) and walk the segment between them with ``slerp`` (Z
space in StyleGAN) or ``lerp`` (W space). ``generate(latents) -> images`` must be deterministic
given the latents (for StyleGAN2: ``noise_mode='const'``), so that two images differ only by
their latents; ``distance(images_a, images_b)`` returns one value per pair (LPIPS-VGG in the
protocols, ``functools.partial(lpips_pairs, module)``). Images are optionally cropped to the
face region as StyleGAN does for FFHQ (rows 3/8 to 7/8, columns 2/8 to 6/8) and area-averaged
down to at most 256² before the distance, as stylegan2-ada-pytorch does.

* ``path_length``: t ~ U(0, 1), distance between the images at t and t + epsilon divided by
  epsilon², the values outside the [1st, 99th] percentiles dropped (lower / higher
  interpolation, as StyleGAN), the rest averaged.
* ``interval_uniformity``: the segment cut into ``intervals`` equal parts; per pair the mean and
  standard deviation (ddof = 0) of the parts' end-point distances, and the distance between the
  segment's two ends; each averaged over pairs.

Latents and t come from a ``torch.Generator`` seeded with ``seed``: runs are reproducible and
the global RNG is untouched (a generator that draws noise from it is the caller's business).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

Generate = Callable[[Tensor], Tensor]
Distance = Callable[[Tensor, Tensor], Tensor]


def lerp(a: Tensor, b: Tensor, t: Tensor) -> Tensor:
    """a + t (b - a), t of shape [N] broadcast over the latents' trailing dimensions."""
    return a + _expand(t, a) * (b - a)


def slerp(a: Tensor, b: Tensor, t: Tensor) -> Tensor:
    """Spherical interpolation of the directions of a and b (unit-norm result, as StyleGAN)."""
    a = a / a.norm(dim=-1, keepdim=True)
    b = b / b.norm(dim=-1, keepdim=True)
    cos = (a * b).sum(dim=-1, keepdim=True)
    angle = _expand(t, a) * torch.acos(cos.clamp(-1, 1))
    ortho = b - cos * a
    ortho = ortho / ortho.norm(dim=-1, keepdim=True)
    result = a * torch.cos(angle) + ortho * torch.sin(angle)
    return result / result.norm(dim=-1, keepdim=True)


INTERPOLATIONS = {"lerp": lerp, "slerp": slerp}


def _expand(t: Tensor, like: Tensor) -> Tensor:
    return t.reshape(-1, *[1] * (like.ndim - 1)).to(like)


def prepare_images(images: Tensor, crop: bool, max_resolution: int = 256) -> Tensor:
    """StyleGAN's face crop (optional), then area downsampling to at most ``max_resolution``."""
    if crop:
        c = images.shape[2] // 8
        images = images[:, :, c * 3 : c * 7, c * 2 : c * 6]
    factor = images.shape[2] // max_resolution
    if factor > 1:
        n, channels, height, width = images.shape
        images = images.reshape(n, channels, height // factor, factor, width // factor, factor)
        images = images.mean(dim=(3, 5))
    return images


def _endpoints(
    z0: Tensor, z1: Tensor, endpoints: Callable[[Tensor], Tensor] | None, device: torch.device
) -> tuple[Tensor, Tensor]:
    """The segments' ends: ``endpoints`` applied to the latents in one batch [z0; z1]."""
    z = torch.cat([z0, z1]).to(device)
    latents = endpoints(z) if endpoints is not None else z
    return latents[: len(z0)], latents[len(z0) :]


@dataclass(frozen=True)
class PathLength:
    value: float  # mean of the distances within the [1st, 99th] percentiles
    distances: np.ndarray  # [num_samples] distance / epsilon², before the percentile filter
    kept: int  # how many distances the filter kept


def path_length(
    generate: Generate,
    distance: Distance,
    latent_dim: int,
    num_samples: int,
    *,
    interpolation: str = "slerp",
    endpoints: Callable[[Tensor], Tensor] | None = None,
    epsilon: float = 1e-4,
    crop: bool = False,
    batch_size: int = 16,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> PathLength:
    """StyleGAN's perceptual path length over ``num_samples`` latent pairs."""
    interpolate = INTERPOLATIONS[interpolation]
    rng = torch.Generator().manual_seed(seed)
    device = torch.device(device)
    # Drawn up front, so that the values do not depend on the batch size.
    z0, z1 = torch.randn(2, num_samples, latent_dim, generator=rng)
    ts = torch.rand(num_samples, generator=rng, dtype=torch.float64)
    values = []
    with torch.no_grad():
        for start in range(0, num_samples, batch_size):
            batch = slice(start, start + batch_size)
            a, b = _endpoints(z0[batch], z1[batch], endpoints, device)
            t, count = ts[batch].to(device), len(a)
            latents = torch.cat([interpolate(a, b, t), interpolate(a, b, t + epsilon)])
            images = prepare_images(generate(latents), crop)
            values.append(distance(images[:count], images[count:]).double().cpu() / epsilon**2)
    distances = torch.cat(values).numpy()
    low = np.percentile(distances, 1, method="lower")
    high = np.percentile(distances, 99, method="higher")
    kept = distances[(distances >= low) & (distances <= high)]
    return PathLength(float(kept.mean()), distances, int(kept.size))


@dataclass(frozen=True)
class IntervalUniformity:
    mean: float  # mean over pairs of the mean sub-interval distance
    std: float  # mean over pairs of the sub-intervals' standard deviation (ddof = 0)
    end_to_end: float  # mean over pairs of the distance between the segment's ends
    intervals: np.ndarray  # [pairs, intervals] the sub-interval distances


def interval_uniformity(
    generate: Generate,
    distance: Distance,
    latent_dim: int,
    num_pairs: int,
    *,
    intervals: int = 10,
    interpolation: str = "lerp",
    endpoints: Callable[[Tensor], Tensor] | None = None,
    crop: bool = False,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> IntervalUniformity:
    """MixDL's uniformity of interpolation: ``intervals`` equal steps between latent pairs."""
    interpolate = INTERPOLATIONS[interpolation]
    rng = torch.Generator().manual_seed(seed)
    device = torch.device(device)
    steps = torch.linspace(0, 1, intervals + 1, dtype=torch.float64)
    parts, ends = [], []
    with torch.no_grad():
        for _ in range(num_pairs):
            z0, z1 = torch.randn(2, 1, latent_dim, generator=rng)
            a, b = _endpoints(z0, z1, endpoints, device)
            n = len(steps)
            path = interpolate(a.expand(n, *a.shape[1:]), b.expand(n, *b.shape[1:]), steps)
            images = prepare_images(generate(path), crop)
            parts.append(distance(images[:-1], images[1:]).double().cpu())
            ends.append(float(distance(images[:1], images[-1:])))
    table = torch.stack(parts).numpy()
    return IntervalUniformity(
        mean=float(table.mean(axis=1).mean()),
        std=float(table.std(axis=1).mean()),
        end_to_end=float(np.mean(ends)),
        intervals=table,
    )
