"""Prepare a dataset once: centre-crop, resize to the declared resolution, store as a zip.

The output is ``prepared.zip`` (PNGs ``img00000000.png``… and a ``dataset.json`` with
labels and domains) plus ``prepared.json``, the manifest: one entry per image with its
source file, label, domain and the SHA-256 of the stored PNG.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import zipfile
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from mixgan import registry
from mixgan.data import procedural
from mixgan.data.imagezip import encode_png
from mixgan.data.pairs import prepare_pairs
from mixgan.data.sources import SourceImage, class_folder_problems, list_source_images
from mixgan.errors import DataError
from mixgan.io import atomic_path, sha256_bytes, write_json
from mixgan.provenance import provenance

log = logging.getLogger(__name__)


def centre_crop_resize(image: Image.Image, resolution: int) -> np.ndarray:
    """Largest centred square, resized with Lanczos (box filter when shrinking a lot)."""
    width, height = image.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    square = image.crop((left, top, left + side, top + side))
    if side != resolution:
        square = square.resize((resolution, resolution), Image.Resampling.LANCZOS)
    return np.asarray(square, dtype=np.uint8)


def load_rgb(
    source: SourceImage, archive: zipfile.ZipFile | None = None
) -> tuple[Image.Image, str]:
    """Decode one source image as RGB; returns the image and its original mode."""
    try:
        with Image.open(io.BytesIO(source.read(archive))) as image:
            image.load()
            mode = image.mode
            if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in image.info):
                # Composite transparent pixels onto white rather than on undefined colours.
                background = Image.new("RGBA", image.size, (255, 255, 255, 255))
                rgb = Image.alpha_composite(background, image.convert("RGBA")).convert("RGB")
            else:
                rgb = image.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
        raise DataError(f"{source.location}: cannot read image ({error})") from error
    return rgb, mode


def prepare_dataset(name: str, dataset: dict[str, Any], out_zip: Path, out_manifest: Path) -> dict:
    """Write the prepared zip and manifest of one configured dataset; return the manifest
    (a ``pairs`` dataset: its one-shot tasks, ``mixgan.data.pairs``)."""
    if dataset.get("format") == "pairs":
        return prepare_pairs(name, dataset, out_zip, out_manifest)
    resolution = dataset["resolution"]
    if dataset.get("format") == "procedural":
        settings = dataset["procedural"]
        images, labels, domains = procedural.generate_shapes(
            settings["count"],
            resolution,
            settings["classes"],
            settings["domains"],
            settings["seed"],
        )
        class_names = list(procedural.CLASS_NAMES[: settings["classes"]])
        domain_names = list(procedural.DOMAIN_NAMES[: settings["domains"]])
        entries = [
            {"source": f"procedural:{i}", "label": int(c), "domain": int(d)}
            for i, (c, d) in enumerate(zip(labels, domains, strict=True))
        ]
        modes: Counter = Counter({"RGB": len(images)})
        sizes: Counter = Counter({f"{resolution}x{resolution}": len(images)})
        stand_in = registry.PROCEDURAL_DATA
        pixels: Iterable[np.ndarray] = images
    else:
        if dataset.get("classes"):
            problems = class_folder_problems(
                dataset["path"], dataset["classes"], dataset.get("subdir"),
                dataset.get("format", "auto"),
            )  # fmt: skip
            if problems:
                raise DataError(f"datasets.{name}.classes: " + "; ".join(problems))
        sources = list_source_images(
            dataset["path"], dataset.get("format", "auto"), dataset["labels"], dataset.get("subdir")
        )
        class_names = sorted({s.label for s in sources if s.label is not None})
        domain_names = class_names if dataset["domains"] == "labels" else []
        class_index = {c: i for i, c in enumerate(class_names)}
        entries = [
            {
                "source": s.location,
                "label": class_index[s.label] if s.label is not None else None,
                "domain": class_index[s.label] if domain_names else None,
            }
            for s in sources
        ]
        modes, sizes = Counter(), Counter()
        stand_in = None
        pixels = _decoded(sources, resolution, modes, sizes)

    with atomic_path(out_zip) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as archive:
        for index, (entry, image) in enumerate(zip(entries, pixels, strict=True)):
            png = encode_png(image)
            entry["name"] = f"img{index:08d}.png"
            entry["sha256"] = sha256_bytes(png)
            archive.writestr(entry["name"], png)
            if (index + 1) % 5000 == 0:
                log.info("prepared %d / %d images", index + 1, len(entries))
        archive.writestr("dataset.json", _dataset_json(entries, class_names, domain_names))

    manifest = {
        "dataset": name,
        "settings": dataset,
        "resolution": resolution,
        "count": len(entries),
        "class_names": class_names,
        "domain_names": domain_names,
        "source_modes": dict(modes),
        "source_sizes": dict(sizes.most_common(10)),
        "stand_in": stand_in,
        "content_hash": sha256_bytes("".join(e["sha256"] for e in entries).encode()),
        "images": entries,
        "provenance": provenance(),
    }
    converted = {m: n for m, n in modes.items() if m != "RGB"}
    if converted:
        log.warning("%s: converted to RGB from other modes: %s", name, converted)
    write_json(out_manifest, manifest)
    return manifest


def _decoded(
    sources: list[SourceImage], resolution: int, modes: Counter, sizes: Counter
) -> Iterable[np.ndarray]:
    container = sources[0].container
    with contextlib.ExitStack() as stack:
        archive = None if container.is_dir() else stack.enter_context(zipfile.ZipFile(container))
        for source in sources:
            image, mode = load_rgb(source, archive)
            modes[mode] += 1
            sizes[f"{image.size[0]}x{image.size[1]}"] += 1
            yield centre_crop_resize(image, resolution)


def _dataset_json(entries: list[dict], class_names: list[str], domain_names: list[str]) -> str:
    data: dict[str, Any] = {"class_names": class_names, "domain_names": domain_names}
    data["labels"] = [[e["name"], e["label"]] for e in entries] if class_names else None
    if domain_names:
        data["domains"] = [[e["name"], e["domain"]] for e in entries]
    return json.dumps(data)
