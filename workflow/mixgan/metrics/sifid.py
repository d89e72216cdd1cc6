"""Single-image FID (SinGAN, Shaham et al., 2019).

The Fréchet distance between Gaussians fitted to the per-position features of one real and one
generated image: each spatial position of the feature map is one sample (192-d ``conv_4``
features of Inception, ``mixgan.metrics.inception_layers.sifid_features``). Images of a pair
may differ in size; a set of pairs is summarised by the mean SIFID, as in SinGAN.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mixgan.metrics.fid_kid import feature_statistics, frechet_distance


def sifid(real_positions: np.ndarray, fake_positions: np.ndarray) -> float:
    """SIFID of one pair, from positions x channels feature matrices of the two images."""
    return frechet_distance(
        *feature_statistics(real_positions), *feature_statistics(fake_positions)
    )


def image_sifid(layers: Any, real: np.ndarray, fake: np.ndarray) -> float:
    """SIFID of two HWC uint8 images (any sizes) on the ``layers`` of the TF Inception."""
    import torch

    from mixgan.metrics.inception_layers import normalise, sifid_features

    device = next(layers.parameters()).device

    def positions(image: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float()
        with torch.no_grad():
            return sifid_features(layers, normalise(x.to(device)))[0].double().cpu().numpy()

    return sifid(positions(real), positions(fake))
