"""The mode-collapse regularizers MixDL compares with in its Table 2, as losses on a batch of
latents z and the generator's images G(z) ([-1, 1]): MSGAN, N-Div and DistanceGAN.

The MixDL paper implements them "on StyleGAN2" without details; here each is the added term
of G's loss that its own paper and official code define, with the input latent z as the
"input" domain (these methods were written for conditional or translation models). Their
official code has no style mixing, so a method with one of these parts makes the images of
its regularized G steps from z alone (``Part.regularizes_g``): the distances in z are those
of the latents the images come from. Where a choice was ours, the function says so.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import Tensor

from mixgan.train.part_api import Part


def mode_seeking_loss(z: Tensor, images: Tensor, eps: float = 1e-5) -> Tensor:
    """MSGAN (Mao et al., CVPR 2019): the batch's first half is paired with its second half,
    r = mean|G(z1) - G(z2)| / mean|z1 - z2| (means over all pairs and elements), and the loss
    is 1 / (r + eps), eps = 1e-5: HelenMao/MSGAN, ``DCGAN-Mode-Seeking/model.py``,
    ``update_G`` (``lz``, ``eps = 1 * 1e-5``, ``loss_lz = 1 / (lz + eps)``)."""
    half = len(z) // 2
    if half == 0:
        raise ValueError("the mode-seeking loss needs a batch of at least 2")
    images, z = images.float(), z.float()
    image_gap = (images[:half] - images[half : 2 * half]).abs().mean()
    latent_gap = (z[:half] - z[half : 2 * half]).abs().mean()
    return 1 / (image_gap / latent_gap + eps)


def euclidean_distances(x: Tensor, eps: float = 1e-12) -> Tensor:
    """``[N, N]`` Euclidean distances between the flattened rows of ``x``, differentiable
    everywhere (the squares are clamped at ``eps`` before the root; the diagonal is 0)."""
    flat = x.flatten(1).float()
    squares = flat.square().sum(1)
    gram = flat @ flat.t()
    distances = (squares[:, None] + squares[None, :] - 2 * gram).clamp_min(eps).sqrt()
    return distances * (1 - torch.eye(len(x), device=x.device))


def normalized_distances(x: Tensor) -> Tensor:
    """N-Div's D_ij = d(x_i, x_j) / sum_k d(x_i, x_k): Euclidean distances normalised per row,
    the normaliser (plus 1e-12) detached, as the official code (B1ueber2y/NDiv,
    ``ndiv_pytorch.py``, ``compute_norm_pairwise_distance``: ``/ (normalizer + 1e-12).detach()``),
    so the gradient pushes each distance alone, the row's scale held fixed."""
    distances = euclidean_distances(x)
    return distances / (distances.sum(1, keepdim=True) + 1e-12).detach()


def normalized_diversity_loss(z: Tensor, images: Tensor, alpha: float = 0.8) -> Tensor:
    """N-Div (Liu et al., CVPR 2019): (1 / (N^2 - N)) sum_{i != j} max(alpha D^z_ij - D^y_ij, 0)
    with row-normalised pairwise distances of the latents (D^z) and of the images (D^y):
    the images must be at least ``alpha`` times as far apart, relatively, as their latents
    (official ``NDiv_loss``; alpha 0.8 is its default)."""
    count = len(z)
    if count < 2:
        raise ValueError("the normalized diversity loss needs a batch of at least 2")
    gaps = torch.relu(alpha * normalized_distances(z) - normalized_distances(images))
    off_diagonal = 1 - torch.eye(count, device=gaps.device)
    return (gaps * off_diagonal).sum() / (count * (count - 1))


def pairwise_mean_abs(x: Tensor) -> Tensor:
    """``[N, N]`` mean absolute differences mean|x_i - x_j| between flattened rows (DistanceGAN's
    distance, an L1 distance divided by the number of elements)."""
    flat = x.flatten(1).float()
    return torch.cdist(flat[None], flat[None], p=1)[0] / flat.shape[1]


def _upper_pairs(matrix: Tensor) -> Tensor:
    rows, cols = torch.triu_indices(len(matrix), len(matrix), offset=1, device=matrix.device)
    return matrix[rows, cols]


def distance_statistics(x: Tensor) -> tuple[float, float]:
    """Mean and (population) standard deviation of mean|x_i - x_j| over all pairs i < j, the
    statistics DistanceGAN standardises a domain's distances with."""
    if len(x) < 2:
        raise ValueError("distance statistics need at least 2 samples")
    pairs = _upper_pairs(pairwise_mean_abs(x)).double()
    return float(pairs.mean()), float(pairs.std(unbiased=False))


def gaussian_distance_statistics(dim: int) -> tuple[float, float]:
    """Mean and standard deviation of mean|z_1 - z_2| for independent z ~ N(0, I_dim), in
    closed form: each |z_1k - z_2k| is half-normal with scale sqrt(2), of mean 2 / sqrt(pi)
    and variance 2 - 4 / pi; the mean of ``dim`` of them has variance (2 - 4 / pi) / dim."""
    return 2 / math.sqrt(math.pi), math.sqrt((2 - 4 / math.pi) / dim)


def distance_preservation_loss(
    z: Tensor,
    images: Tensor,
    latent_statistics: tuple[float, float],
    image_statistics: tuple[float, float],
) -> Tensor:
    """DistanceGAN (Benaim and Wolf, NeurIPS 2017): over all pairs i < j of the batch, the mean
    of |(d(z_i, z_j) - mu_z) / sigma_z - (d(G(z_i), G(z_j)) - mu_y) / sigma_y|, d the mean
    absolute difference and (mu, sigma) each domain's pair-distance statistics
    (sagiebenaim/DistanceGAN, ``cyclegan_arch/distance_gan_model.py``: ``distance``,
    ``get_individual_distance_loss``, ``get_distance_losses``). The authors take the
    statistics of the two datasets (``set_expectation_and_std``, population deviation over
    all pairs); here the latents' are those of N(0, I) (``gaussian_distance_statistics``) and
    the images' those of the training images."""
    if len(z) < 2:
        raise ValueError("the distance-preservation loss needs a batch of at least 2")
    (mu_z, sigma_z), (mu_y, sigma_y) = latent_statistics, image_statistics
    latent = (_upper_pairs(pairwise_mean_abs(z)) - mu_z) / sigma_z
    image = (_upper_pairs(pairwise_mean_abs(images)) - mu_y) / max(sigma_y, 1e-8)
    return (latent - image).abs().mean()


# -- the parts -----------------------------------------------------------------------------


class GeneratorRegularizer(Part):
    """A mode-collapse regularizer of G (MixDL's Table 2 baselines): ``weight`` x a loss of
    the batch's latents and images, added to G's loss on standard steps, whose images the
    trainer makes from z alone (``regularizes_g``: no style mixing). The unweighted loss of
    the latest step is logged as ``<kind>_loss``."""

    stage = 4
    regularizes_g = True  # its G steps' images come from z alone (no style mixing)
    kind: ClassVar[str]

    def __init__(self, name: str, settings: dict[str, Any]):
        super().__init__(name, settings)
        self.last: torch.Tensor | float = math.nan  # a tensor: no device sync per step

    def loss(self, latents: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def g_regularizer(self, latents: torch.Tensor, images: torch.Tensor) -> torch.Tensor | None:
        value = self.loss(latents, images)
        self.last = value.detach()
        return self.settings["weight"] * value

    def stats(self) -> dict[str, float]:
        return {f"{self.kind}_loss": float(self.last)}

    def state_dict(self) -> dict[str, Any]:
        return {"last": float(self.last)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.last = state.get("last", math.nan)


class ModeSeeking(GeneratorRegularizer):
    """MSGAN's mode-seeking loss (:func:`mode_seeking_loss`)."""

    kind = "msgan"

    def loss(self, latents: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        return mode_seeking_loss(latents, images)


class NormalizedDiversity(GeneratorRegularizer):
    """N-Div's normalized diversity loss with margin ``alpha``
    (:func:`normalized_diversity_loss`)."""

    kind = "ndiv"

    def loss(self, latents: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        return normalized_diversity_loss(latents, images, self.settings["alpha"])


class DistancePreservation(GeneratorRegularizer):
    """DistanceGAN's distance-preservation loss (:func:`distance_preservation_loss`),
    standardised with N(0, I)'s statistics for z and the pair-distance statistics of the
    first ``statistics_images`` training images (all pairs) for G(z)."""

    kind = "distancegan"

    def __init__(self, name: str, settings: dict[str, Any]):
        super().__init__(name, settings)
        self.image_statistics: tuple[float, float] | None = None

    def set_training_images(self, images: torch.Tensor) -> None:
        if len(images) < 2:
            raise ValueError(f"part {self.name}: DistanceGAN needs at least 2 training images")
        chosen = images[: self.settings["statistics_images"]].float() / 127.5 - 1
        self.image_statistics = distance_statistics(chosen)

    def loss(self, latents: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        if self.image_statistics is None:
            raise RuntimeError(f"part {self.name}: set_training_images was not called")
        latent_statistics = gaussian_distance_statistics(latents.shape[1])
        return distance_preservation_loss(latents, images, latent_statistics, self.image_statistics)
