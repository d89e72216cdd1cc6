"""Improved precision and recall (Kynkäänniemi et al., 2019).

Each feature set spans a manifold: the union of balls centred on its points, the radius of a
point's ball being the distance to its k-th nearest neighbour in the same set, the point itself
excluded (k = 3 in the paper). Precision is the fraction of generated points inside the real
manifold, recall the fraction of real points inside the generated one. A point lies inside when
its distance to some centre is at most that centre's radius (``<=``, as in the reference code).
Distances are exact (float64, ``mixgan.metrics.distances``); the features are the caller's
(VGG-16 fc2 features in the paper).
"""

from __future__ import annotations

import numpy as np
import torch

from mixgan.metrics.distances import distance_blocks


def manifold_radii(
    features: np.ndarray, k: int = 3, batch_size: int = 512, device: str = "cpu"
) -> torch.Tensor:
    """Distance of each point to its k-th nearest other point of the same set (float64)."""
    if len(features) <= k:
        raise ValueError(f"k = {k} nearest neighbours need more than {k} points")
    # The point itself is at distance 0, the smallest: its k-th neighbour is the (k+1)-th value.
    return torch.cat(
        [
            block.kthvalue(k + 1, dim=1).values
            for _, block in distance_blocks(features, features, batch_size, device)
        ]
    )


def manifold_coverage(
    queries: np.ndarray,
    centres: np.ndarray,
    radii: torch.Tensor,
    batch_size: int = 512,
    device: str = "cpu",
) -> float:
    """Fraction of ``queries`` within ``radii[j]`` of some ``centres[j]``."""
    radii = radii.to(device)
    inside = sum(
        int((block <= radii).any(dim=1).sum())
        for _, block in distance_blocks(queries, centres, batch_size, device)
    )
    return inside / len(queries)


def precision_recall(
    real: np.ndarray, fake: np.ndarray, k: int = 3, batch_size: int = 512, device: str = "cpu"
) -> tuple[float, float]:
    """(precision, recall) of ``fake`` features against ``real`` features, both N x D."""
    real_radii = manifold_radii(real, k, batch_size, device)
    fake_radii = manifold_radii(fake, k, batch_size, device)
    precision = manifold_coverage(fake, real, real_radii, batch_size, device)
    recall = manifold_coverage(real, fake, fake_radii, batch_size, device)
    return precision, recall
