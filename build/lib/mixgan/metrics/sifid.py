"""Single-image FID (SinGAN, Shaham et al., 2019).

The Fréchet distance between Gaussians fitted to the per-position features of one real and one
generated image: each spatial position of the feature map is one sample (192-d ``conv_4``
features of Inception, ``mixgan.metrics.inception_layers.sifid_features``). Images of a pair
may differ in size; a set of pairs is summarised by the mean SIFID, as in SinGAN.
"""

from __future__ import annotations

import numpy as np

from mixgan.metrics.fid_kid import feature_statistics, frechet_distance


def sifid(real_positions: np.ndarray, fake_positions: np.ndarray) -> float:
    """SIFID of one pair, from positions x channels feature matrices of the two images."""
    return frechet_distance(
        *feature_statistics(real_positions), *feature_statistics(fake_positions)
    )
