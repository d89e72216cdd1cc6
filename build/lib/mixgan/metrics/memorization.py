"""Memorisation check: the nearest training image of each generated sample (MixDL, Figure 8).

In a feature space (Inception pool features in the study), each sample's nearest training
image by Euclidean distance, exact and in row blocks (``mixgan.metrics.distances``). A
generator that copies its few training images has small distances and few distinct nearest
images; ties go to the lowest training index.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from mixgan.metrics.distances import distance_blocks


@dataclass(frozen=True)
class NearestTraining:
    distances: np.ndarray  # [samples] float64, distance to the nearest training image
    indices: np.ndarray  # [samples] int64, index of that training image

    @property
    def mean_distance(self) -> float:
        return float(self.distances.mean())

    @property
    def distinct(self) -> int:
        """How many different training images are someone's nearest."""
        return int(np.unique(self.indices).size)


def nearest_training(
    samples: np.ndarray, training: np.ndarray, batch_size: int = 512, device: str = "cpu"
) -> NearestTraining:
    """Nearest ``training`` feature of every ``samples`` feature (both N x D)."""
    distances, indices = [], []
    for _, block in distance_blocks(samples, training, batch_size, device):
        nearest = block.min(dim=1)
        distances.append(nearest.values.cpu())
        indices.append(nearest.indices.cpu())
    return NearestTraining(torch.cat(distances).numpy(), torch.cat(indices).numpy())
