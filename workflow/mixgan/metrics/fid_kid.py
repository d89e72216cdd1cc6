"""FID and KID from Inception features, with clean-fid's own formulas.

* FID: Fréchet distance between Gaussians fitted to the two feature sets
  (``cleanfid.fid.frechet_distance``).
* KID: unbiased MMD² with the cubic polynomial kernel k(x, y) = (x·y / d + 1)³ averaged over
  ``num_subsets`` random subsets of size min(n, m, max_subset_size)
  (``cleanfid.fid.kernel_distance``). clean-fid draws subsets from NumPy's global RNG, so it
  is seeded here and the seed recorded.
"""

from __future__ import annotations

import numpy as np
from cleanfid.fid import frechet_distance, kernel_distance


def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance (float64) of N x D features."""
    features = np.asarray(features, dtype=np.float64)
    if features.shape[0] < 2:
        raise ValueError("FID needs at least two feature vectors per set")
    return features.mean(axis=0), np.cov(features, rowvar=False)


def fid_from_features(features_a: np.ndarray, features_b: np.ndarray) -> float:
    mu_a, sigma_a = feature_statistics(features_a)
    mu_b, sigma_b = feature_statistics(features_b)
    return float(frechet_distance(mu_a, sigma_a, mu_b, sigma_b))


def kid_from_features(
    features_a: np.ndarray,
    features_b: np.ndarray,
    num_subsets: int = 100,
    max_subset_size: int = 1000,
    seed: int = 0,
) -> float:
    state = np.random.get_state()  # noqa: NPY002 - the legacy global RNG is the state we manage
    np.random.seed(seed)  # noqa: NPY002 - the legacy global RNG is the state we manage
    try:
        return kernel_distance(
            np.asarray(features_a, dtype=np.float64),
            np.asarray(features_b, dtype=np.float64),
            num_subsets=num_subsets,
            max_subset_size=max_subset_size,
        )
    finally:
        np.random.set_state(state)  # noqa: NPY002 - the legacy global RNG is the state we manage
