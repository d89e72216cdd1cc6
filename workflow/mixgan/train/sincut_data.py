"""SinCUT's data path: the training patches of one source and one target image, and the
test-time translation of the full-resolution source image.

Source: taesungp/contrastive-unpaired-translation at commit b3ac297, ``dataset_mode
singleimage`` with ``preprocess=zoom_and_patch`` in training and ``none`` at test time
(models/sincut_model.py:35-52; data/singleimage_dataset.py; data/base_dataset.py). Images are
float tensors [3, H, W] in [-1, 1] (the official ``Normalize((0.5,) * 3, (0.5,) * 3)``).

Resizing uses PIL's BILINEAR in the official code (singleimage_dataset.py:90, 96, 100), which
is antialiased when it shrinks; here ``F.interpolate(..., mode="bilinear", antialias=True)``,
torchvision's match for it, on float tensors (PIL resizes 8-bit images and rounds).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from mixgan.nets.sincut import SCOREMIX_PATCH_SIZE, SinCUTGenerator

#: ``--random_scale_max`` (options/base_options.py:60)
RANDOM_SCALE_MAX = 3.0
#: ScoreMix §4.6: 16 crops per step, SinCUT's ``batch_size`` (sincut_model.py:41)
PATCHES_PER_STEP = 16


def _check_image(image: Tensor) -> None:
    if image.ndim != 3:
        raise ValueError(f"expected one image [C, H, W], got shape {tuple(image.shape)}")


def resize(image: Tensor, height: int, width: int) -> Tensor:
    """Bilinear, antialiased resize of one [C, H, W] image (PIL's BILINEAR); no-op if the size
    is already (height, width)."""
    if tuple(image.shape[-2:]) == (height, width):
        return image
    out = F.interpolate(
        image[None], size=(height, width), mode="bilinear", align_corners=False, antialias=True
    )
    return out[0]


def zoomed_size(width: int, height: int, zoom: tuple[float, float], crop: int) -> tuple[int, int]:
    """The size an image is zoomed to before cropping (base_dataset.py ``__random_zoom``,
    :144-153): ``round(max(crop, side * factor))`` per axis, width first."""
    return round(max(crop, width * zoom[0])), round(max(crop, height * zoom[1]))


def grid_crop_origin(
    width: int, height: int, crop: int, generator: torch.Generator | None = None
) -> tuple[int, int]:
    """Top-left corner of one crop (base_dataset.py ``__patch``, :201-214): a random cell of the
    grid of ``crop``-sized cells laid from a random offset in the leftover margin, (x, y)."""
    cells_x, cells_y = width // crop, height // crop
    room_x, room_y = width - cells_x * crop, height - cells_y * crop
    start_x = int(torch.randint(room_x + 1, (), generator=generator))
    start_y = int(torch.randint(room_y + 1, (), generator=generator))
    cell = int(torch.randint(cells_x * cells_y, (), generator=generator))
    return start_x + (cell // cells_y) * crop, start_y + (cell % cells_y) * crop


def sample_patches(
    image: Tensor,
    count: int = PATCHES_PER_STEP,
    patch_size: int = SCOREMIX_PATCH_SIZE,
    generator: torch.Generator | None = None,
    random_scale_max: float = RANDOM_SCALE_MAX,
    flip: bool = True,
    output_size: int | None = None,
) -> Tensor:
    """``count`` training patches [count, C, S, S] of one image (``zoom_and_patch``).

    Each patch (singleimage_dataset.py:47-97, base_dataset.py:82-131): the image is zoomed by
    two independent factors U(1 / ``random_scale_max``, 1) for width and height (at least
    ``patch_size`` per side), a ``patch_size`` cell of a randomly offset grid is cut out, and it
    is mirrored left-right with probability 0.5 (``--no_flip`` off). The official loader tiles
    one zoom per block of ``batch_size`` indices but shuffles the indices, so the patches of a
    batch carry independent zooms, as here; its cell index (a shuffled index modulo the number
    of cells) is drawn uniformly here. ``output_size`` (default ``patch_size``) resizes each
    patch afterwards: ScoreMix's "16 patches ... resized to 128x128" (§4.6) is read as SinCUT's
    loader with ``crop_size`` 128, i.e. ``patch_size`` 128 and no further resize.
    """
    _check_image(image)
    if count < 1:
        raise ValueError("count must be positive")
    if random_scale_max < 1:
        raise ValueError("random_scale_max must be at least 1")
    height, width = image.shape[-2:]
    low = 1.0 / random_scale_max
    zooms = low + (1.0 - low) * torch.rand(count, 2, generator=generator, dtype=torch.float64)
    patches = []
    for zoom in zooms.tolist():
        zoomed_w, zoomed_h = zoomed_size(width, height, (zoom[0], zoom[1]), patch_size)
        zoomed = resize(image, zoomed_h, zoomed_w)
        x, y = grid_crop_origin(zoomed_w, zoomed_h, patch_size, generator)
        patch = zoomed[:, y : y + patch_size, x : x + patch_size]
        if flip and float(torch.rand((), generator=generator)) > 0.5:
            patch = patch.flip(-1)
        if output_size is not None:
            patch = resize(patch, output_size, output_size)
        patches.append(patch)
    return torch.stack(patches)


def power_of_2_size(height: int, width: int, base: int = 4) -> tuple[int, int]:
    """The test-time size (base_dataset.py ``__make_power_2``, :134-141, ``base=4``): each side
    rounded to the nearest multiple of ``base`` (Python's round, halves to even)."""
    new_h, new_w = round(height / base) * base, round(width / base) * base
    if new_h < base or new_w < base:
        raise ValueError(f"an image of {height}x{width} is too small")
    return new_h, new_w


@torch.no_grad()
def translate(
    generator: SinCUTGenerator, image: Tensor, noise_generator: torch.Generator | None = None
) -> Tensor:
    """Translate the full-resolution source ``image`` [C, H, W] as SinCUT's test path does
    (``preprocess=none``, sincut_model.py:49-52; test.py): the image is resized to the nearest
    multiple of 4 per side (bilinear, no flip, no crop), G runs on it whole (its noise drawn from
    ``noise_generator``), and the output is clamped to [-1, 1] as ``tensor2im`` saves it
    (util/util.py:56). Returns [C, H', W'] at that rounded size, on G's device."""
    _check_image(image)
    device = next(generator.parameters()).device
    height, width = power_of_2_size(*image.shape[-2:])
    x = resize(image.to(device), height, width)
    return generator(x[None], noise_generator)[0].clamp(-1.0, 1.0)
