"""Image sets as uncompressed zips of PNGs (StyleGAN2-ADA's dataset layout).

A zip is one file per set: atomic to write, cheap on cluster file systems, and readable by
any tool. Optional ``dataset.json`` inside holds labels as ``[[name, label], ...]``.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from mixgan.io import atomic_path

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


def encode_png(image: np.ndarray) -> bytes:
    """PNG bytes of one HWC uint8 RGB image."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def decode_image(data: bytes) -> np.ndarray:
    """HWC uint8 RGB array of encoded image bytes."""
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))


def write_image_zip(
    path: str | Path,
    images: Iterable[np.ndarray],
    names: Sequence[str] | None = None,
    metadata: dict | None = None,
) -> list[str]:
    """Write HWC uint8 images as PNGs into a zip (atomically); return the member names."""
    written = []
    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as archive:
        for index, image in enumerate(images):
            name = names[index] if names is not None else f"img{index:08d}.png"
            archive.writestr(name, encode_png(image))
            written.append(name)
        if metadata is not None:
            archive.writestr("dataset.json", json.dumps(metadata))
    return written


def image_names(path: str | Path) -> list[str]:
    """Sorted image member names of a zip."""
    with zipfile.ZipFile(path) as archive:
        return sorted(n for n in archive.namelist() if n.lower().endswith(IMAGE_SUFFIXES))


def read_image_zip(path: str | Path, names: Sequence[str] | None = None) -> np.ndarray:
    """NHWC uint8 array of the named images of a zip (all images, sorted, by default)."""
    with zipfile.ZipFile(path) as archive:
        names = names if names is not None else image_names(path)
        images = [decode_image(archive.read(name)) for name in names]
    if not images:
        raise ValueError(f"{path}: no images")
    return np.stack(images)


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """NHWC uint8 array -> NCHW uint8 tensor."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).contiguous()


def to_numpy(images: torch.Tensor) -> np.ndarray:
    """NCHW float tensor in [-1, 1] -> NHWC uint8 array (round to nearest, clamp)."""
    scaled = (images.detach().float().cpu() * 127.5 + 128).clamp(0, 255).to(torch.uint8)
    return scaled.permute(0, 2, 3, 1).numpy()
