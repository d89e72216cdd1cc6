"""Diversity during training (MixDL, Fig. 8): how spread out G's samples stay, and how many
training images they cover, at fixed points of early training.

At each point the probe draws ``diversity_samples`` images from G_ema with fixed latents and
records

* ``lpips``: their mean LPIPS (AlexNet) over every unordered pair, the distance of the LPIPS
  diversity metric (which averages seeded random pairs of a run's final samples); left empty
  when the run has no AlexNet weights;
* ``distinct_neighbours``: how many different training images (the run's subset, not the
  parts' extra data) are the nearest, in Inception pool features, to some sample; the
  ``distinct_neighbours`` metric's definition. MixDL counts "unique NN training samples" and
  names no feature space; we read it as this metric's.

A collapsed generator scores an LPIPS near 0 and a count near 1. The probe's random draws
use a forked RNG, so probing does not change the training trajectory.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mixgan.data.imagezip import to_tensor
from mixgan.metrics import lpips_network, perceptual_distance
from mixgan.metrics.inception import InceptionFeatures
from mixgan.metrics.lpips_distance import mean_over_pairs
from mixgan.metrics.memorization import nearest_training
from mixgan.nets.stylegan2 import Generator
from mixgan.sample import generate_images

PROBE_SEED = 2**31 - 2  # the fixed latents of every probe of every run
COLUMNS = ("lpips", "distinct_neighbours")


class DiversityProbe:
    """Pairwise LPIPS of G's samples and the distinct training images nearest to them
    (``training_features``: the training images' Inception pool features)."""

    def __init__(
        self,
        training_features: np.ndarray,
        lpips_weights: str | Path | None,
        inception: InceptionFeatures,
        count: int,
        device: str = "auto",
    ):
        self.module, self.network = (
            lpips_network("alex", lpips_weights, device) if lpips_weights else (None, None)
        )
        self.inception = inception
        self.training_features = training_features
        self.count = count

    @property
    def networks(self) -> dict[str, Any]:
        """Records of the two networks behind the probe's values (stand-in flags, SHA-256)."""
        return {"lpips": self.network, "inception": self.inception.record}

    def __call__(self, generator: Generator) -> dict[str, float]:
        images = generate_images(generator, self.count, PROBE_SEED, batch_size=64)
        return measure_diversity(images, self.module, self.inception, self.training_features)


def measure_diversity(
    images: np.ndarray,
    lpips_module: torch.nn.Module | None,
    inception: InceptionFeatures,
    training_features: np.ndarray,
) -> dict[str, float]:
    """The probe's values for NHWC uint8 ``images`` (at least two); no ``lpips`` without an
    LPIPS module."""
    if len(images) < 2:
        raise ValueError("the diversity probe needs at least two samples")
    nearest = nearest_training(inception.of_arrays(images), training_features)
    values = {"distinct_neighbours": float(nearest.distinct)}
    if lpips_module is not None:
        tensors = to_tensor(images).float() / 127.5 - 1
        first, second = np.triu_indices(len(images), k=1)
        distance = functools.partial(perceptual_distance, lpips_module)
        values["lpips"] = mean_over_pairs(distance, tensors, first, second)
    return values
