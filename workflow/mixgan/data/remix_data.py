"""The paired data of ReMix Tables 2–3, prepared once into one ``.npz`` per dataset.

* **Cityscapes** (``format: cityscapes``): ``gtFine/<split>/<city>/*_gtFine_labelIds.png``
  (+ ``*_instanceIds.png``) → ``leftImg8bit/<split>/<city>/*_leftImg8bit.png``; the official
  train split (2,975 pairs) trains, val (500) is scored, as SPADE. Photos resized bicubic and
  label/instance maps nearest to ``resolution`` × ``resolution / 2`` (512×256 at 512).
* **CASIA NIR-VIS 2.0, fold 1** (``format: casia_nir_vis``): the four protocol files
  (``datasets.<name>.protocols``: nir_train, vis_train, nir_probe, vis_gallery; one image path
  per line, relative to ``path``, Windows separators accepted; the identity is the image's
  parent folder). Images are read as grey, resized to ``resolution``² (aligned crops as
  LightCNN's are expected). Reading of ReMix §4.2 / Fig. 5: Table 2 trains on *all* fold-1
  training images of the 357 training identities, each NIR image paired with a VIS image of
  its identity ("not strictly paired"), drawn per step; ``options.pairing: one_per_identity``
  gives Fig. 5's extreme setting (the first NIR and VIS image of each identity, 357 pairs).
* **Procedural stand-ins** (``procedural: {count, seed}``, labelled "procedural demo data"):
  label maps of 1–3 shapes (class ids 1..4 on background 0) rendered into photos with a
  per-class palette and texture; and ``count`` identities, each a face-like shape with its own
  colours, seen as VIS (colour) and NIR (grey, inverted contrast curve, noise) images.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from mixgan.errors import DataError

SHAPE_CLASSES = 5  # background + the four procedural shapes
IDENTITY_IMAGES = 4  # per procedural identity and domain


def _draw_shape(
    draw: ImageDraw.ImageDraw, kind: int, centre: np.ndarray, radius: float, angle: float, fill: Any
) -> None:
    if kind == 0:
        x, y = centre
        draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=fill)
        return
    corners = {1: 4, 2: 3, 3: 12}[kind]
    points = []
    for k in range(corners):
        r = radius * (0.45 if kind == 3 and k % 3 == 1 else 1.0)
        a = angle + 2 * math.pi * k / corners
        points.append((centre[0] + r * math.cos(a), centre[1] + r * math.sin(a)))
    draw.polygon(points, fill=fill)


def procedural_label_maps(count: int, resolution: int, seed: int) -> dict[str, np.ndarray]:
    """``count`` label maps (class ids 0..4) and the photos rendered from them."""
    rng = np.random.default_rng(seed)
    palette = rng.integers(30, 226, size=(SHAPE_CLASSES, 3))
    labels = np.zeros((count, resolution, resolution), np.uint8)
    images = np.zeros((count, resolution, resolution, 3), np.uint8)
    yy, xx = np.mgrid[0:resolution, 0:resolution] / resolution
    for i in range(count):
        canvas = Image.new("L", (resolution, resolution), 0)
        draw = ImageDraw.Draw(canvas)
        for _ in range(int(rng.integers(1, 4))):
            radius = resolution * rng.uniform(0.12, 0.3)
            centre = rng.uniform(radius, resolution - radius, size=2)
            kind = int(rng.integers(0, 4))
            _draw_shape(draw, kind, centre, radius, rng.uniform(0, 2 * math.pi), kind + 1)
        label = np.asarray(canvas)
        shade = 0.75 + 0.25 * np.sin(2 * math.pi * (xx * rng.uniform(1, 3) + yy))
        photo = palette[label] * shade[..., None] + rng.normal(0, 6, (resolution, resolution, 3))
        labels[i], images[i] = label, np.clip(photo, 0, 255).astype(np.uint8)
    train = np.arange(count) < max(1, count * 3 // 4)
    return {"labels": labels, "images": images, "instances": labels.copy(), "train": train}


def procedural_identities(count: int, resolution: int, seed: int) -> dict[str, np.ndarray]:
    """``count`` identities × :data:`IDENTITY_IMAGES` NIR and VIS images (stand-in for CASIA):
    the first 3/4 of the identities train, the rest are probes (NIR) against the gallery
    (the first VIS image of every test identity), as the fold-1 protocol."""
    rng = np.random.default_rng(seed)
    nir, vis, ids = [], [], []
    for identity in range(count):
        kind = int(rng.integers(0, 4))
        colour = rng.integers(40, 216, size=3)
        background = rng.integers(0, 255, size=3)
        angle0 = rng.uniform(0, 2 * math.pi)
        for _ in range(IDENTITY_IMAGES):
            size = resolution * 4
            canvas = Image.new("RGB", (size, size), tuple(int(v) for v in background))
            centre = size / 2 + rng.normal(0, size * 0.03, 2)
            angle = angle0 + rng.normal(0, 0.15)
            _draw_shape(
                ImageDraw.Draw(canvas),
                kind,
                centre,
                size * 0.3,
                angle,
                tuple(int(v) for v in colour),
            )
            image = np.asarray(canvas.resize((resolution, resolution), Image.Resampling.BOX))
            grey = image.astype(np.float64).mean(-1) / 255
            near_ir = 255 * (1 - grey) ** 0.7 + rng.normal(0, 8, grey.shape)
            vis.append(image)
            nir.append(np.repeat(np.clip(near_ir, 0, 255).astype(np.uint8)[..., None], 3, -1))
            ids.append(identity)
    ids_a = np.asarray(ids)
    train_ids = ids_a < max(1, count * 3 // 4)
    first = np.arange(len(ids_a)) % IDENTITY_IMAGES == 0
    return {
        "nir": np.stack(nir),
        "vis": np.stack(vis),
        "ids": ids_a,
        "nir_train": train_ids,
        "vis_train": train_ids,
        "nir_probe": ~train_ids,
        "vis_gallery": ~train_ids & first,
    }


def _read(path: Path, size: tuple[int, int], mode: str, resample: Image.Resampling) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert(mode).resize(size, resample))


def read_cityscapes(root: Path, resolution: int) -> dict[str, np.ndarray]:
    """The train and val pairs of a Cityscapes folder at ``resolution`` × ``resolution/2``."""
    size = (resolution, resolution // 2)
    labels, instances, images, train = [], [], [], []
    for split in ("train", "val"):
        found = sorted((root / "gtFine" / split).glob("*/*_gtFine_labelIds.png"))
        if not found:
            raise DataError(f"{root}/gtFine/{split}: no *_gtFine_labelIds.png files")
        for label_path in found:
            stem = label_path.name.removesuffix("_gtFine_labelIds.png")
            photo = (
                root / "leftImg8bit" / split / label_path.parent.name / f"{stem}_leftImg8bit.png"
            )
            if not photo.exists():
                raise DataError(f"{label_path}: its photo {photo} does not exist")
            instance = label_path.with_name(f"{stem}_gtFine_instanceIds.png")
            nearest = Image.Resampling.NEAREST
            labels.append(_read(label_path, size, "L", nearest))
            instances.append(
                _read(instance, size, "I", nearest) if instance.exists() else labels[-1]
            )
            images.append(_read(photo, size, "RGB", Image.Resampling.BICUBIC))
            train.append(split == "train")
    return {
        "labels": np.stack(labels),
        "instances": np.stack(instances).astype(np.int32),
        "images": np.stack(images),
        "train": np.asarray(train),
    }


_IDENTITY = re.compile(r"[\\/]")


def read_casia(root: Path, protocols: dict[str, str], resolution: int) -> dict[str, np.ndarray]:
    """The images of the four fold-1 protocol files, grey as RGB, with identity ids."""
    entries: dict[str, list[tuple[str, str]]] = {}
    for key in ("nir_train", "vis_train", "nir_probe", "vis_gallery"):
        listing = Path(protocols[key])
        listing = listing if listing.is_absolute() else root / listing
        lines = [ln.split()[0] for ln in listing.read_text().splitlines() if ln.strip()]
        entries[key] = [(ln, _IDENTITY.split(ln)[-2]) for ln in lines]
    out: dict[str, Any] = {"nir": [], "vis": [], "ids": []}
    masks: dict[str, list[bool]] = {key: [] for key in entries}
    for domain in ("nir", "vis"):
        keys = [k for k in entries if k.startswith(domain)]
        for key in keys:
            for rel, identity in entries[key]:
                path = root / rel.replace("\\", "/")
                if not path.exists():
                    raise DataError(f"datasets: {rel} of {protocols[key]} does not exist")
                grey = _read(path, (resolution, resolution), "L", Image.Resampling.BICUBIC)
                out[domain].append(np.repeat(grey[..., None], 3, -1))
                if domain == "nir":
                    out["ids"].append(identity)
                for k in masks:
                    if k.startswith(domain):
                        masks[k].append(k == key)
    vis_ids = [identity for key in ("vis_train", "vis_gallery") for _, identity in entries[key]]
    return {
        "nir": np.stack(out["nir"]),
        "vis": np.stack(out["vis"]),
        "ids": np.asarray(out["ids"]),
        "vis_ids": np.asarray(vis_ids),
        **{k: np.asarray(v) for k, v in masks.items()},
    }


def prepare_remix_data(name: str, dataset: dict[str, Any], out: Path) -> dict[str, Any]:
    """Read (or generate) the dataset, store it as ``out`` (.npz); return a summary."""
    resolution = dataset["resolution"]
    kind = dataset["format"]
    if "procedural" in dataset:
        settings = dataset["procedural"]
        make = procedural_label_maps if kind == "cityscapes" else procedural_identities
        arrays = make(settings.get("count", 40), resolution, settings.get("seed", 0))
    elif kind == "cityscapes":
        arrays = read_cityscapes(Path(dataset["path"]), resolution)
    else:
        arrays = read_casia(Path(dataset["path"]), dataset["protocols"], resolution)
    if "nir" in arrays and "vis_ids" not in arrays:
        arrays["vis_ids"] = arrays["ids"]
    with open(out, "wb") as handle:
        np.savez(handle, **arrays)
    return {
        "dataset": name,
        "format": kind,
        "procedural": "procedural" in dataset,
        **{key: list(value.shape) for key, value in arrays.items()},
    }


def load_remix_data(path: str | Path) -> dict[str, np.ndarray]:
    with np.load(path) as data:
        return {key: data[key] for key in data.files}


def training_subset(
    train: np.ndarray, subset: str, fraction: float | None, seed: int = 0
) -> np.ndarray:
    """Indices of the training items of ``subset`` (``full``, or a seeded ``fraction``)."""
    index = np.flatnonzero(train)
    if subset == "full" or fraction is None:
        return index
    keep = max(1, round(len(index) * fraction))
    return np.sort(np.random.default_rng(seed).permutation(index)[:keep])
