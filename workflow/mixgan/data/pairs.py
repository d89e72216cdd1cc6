"""The ``pairs`` dataset format: one-shot translation tasks, a source and a target image each.

A pairs dataset is a folder with two sub-folders (``pairs: {source: input, target: style}``,
the layout of luanfujun/deep-photo-styletransfer's ``examples/``: ``input/in7.png`` and
``style/tar7.png`` are task ``7``). Files are matched by the number in their name, or by the
whole name (stem) when it holds no number or more than one. Every source needs exactly one
target and vice versa: unmatched, duplicated, missing or unreadable files are errors naming
them, found when the config is checked (:func:`pair_problems`, names only) and when the
dataset is prepared (:func:`prepare_pairs`, which also decodes every image), before any
training. ``procedural: {count, seed}`` instead of a path makes the demo's pairs.

Prepared pairs keep their aspect ratio (SinCUT translates the whole image): an image whose
longer side exceeds ``resolution`` is shrunk to it (Lanczos), a smaller one is kept as it is.
``pairs.zip`` holds ``source/<task>.png`` and ``target/<task>.png``; the manifest lists the
tasks with their files, sizes and SHA-256. This module imports no image library at import
time (the Snakefile calls :func:`pair_problems`).
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path
from typing import Any

from mixgan.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
ROLES = ("source", "target")
_NUMBER = re.compile(r"\d+")
_TASK_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def task_key(path: Path) -> str:
    """The task a file belongs to: the number in its stem without leading zeros, or the stem."""
    numbers = _NUMBER.findall(path.stem)
    return str(int(numbers[0])) if len(numbers) == 1 else path.stem


def _sort_key(task: str) -> tuple[int, int | str]:
    return (0, int(task)) if task.isdigit() else (1, task)


def _folder_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def match_pairs(dataset: dict[str, Any]) -> tuple[dict[str, dict[str, Path]], list[str]]:
    """Tasks ``{task: {"source": path, "target": path}}`` of a pairs folder, and the problems
    (each naming its files) that stop it from being used."""
    root = Path(dataset["path"])
    folders = {role: root / dataset["pairs"][role] for role in ROLES}
    missing = [f"{role} folder {path} does not exist" for role, path in folders.items()
               if not path.is_dir()]  # fmt: skip
    if missing:
        return {}, [f"datasets pairs: {m}" for m in missing]
    problems: list[str] = []
    found: dict[str, dict[str, Path]] = {}
    for role, folder in folders.items():
        files = _folder_images(folder)
        if not files:
            problems.append(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)})")
        for path in files:
            key = task_key(path)
            if not _TASK_ID.match(key):
                problems.append(f"{path}: its task name {key!r} must match {_TASK_ID.pattern}")
            elif role in found.get(key, {}):
                other = found[key][role]
                problems.append(f"{other} and {path}: two {role} images of task {key}")
            else:
                found.setdefault(key, {})[role] = path
    for key, files in sorted(found.items(), key=lambda item: _sort_key(item[0])):
        for role in ROLES:
            if role not in files:
                other = next(iter(files.values()))
                problems.append(f"{other}: no {role} image of task {key} in {folders[role]}")
    tasks = {k: v for k, v in found.items() if set(v) == set(ROLES)}
    return dict(sorted(tasks.items(), key=lambda item: _sort_key(item[0]))), problems


def pair_problems(name: str, dataset: dict[str, Any]) -> list[str]:
    """What stops a configured pairs folder from being prepared (no image is decoded)."""
    if "procedural" in dataset:
        return []
    return [f"datasets.{name}: {problem}" for problem in match_pairs(dataset)[1]]


def _fit(image: Any, longest: int) -> Any:
    from PIL import Image

    width, height = image.size
    scale = longest / max(width, height)
    if scale >= 1:
        return image
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return image.resize(size, Image.Resampling.LANCZOS)


def _procedural_pairs(settings: dict[str, Any], resolution: int) -> dict[str, dict[str, Any]]:
    """The demo's pairs: a shape on a light gradient to translate into the style of another
    shape on a dark or striped background, cropped to 4:3 (SinCUT takes any aspect)."""
    import numpy as np
    from PIL import Image

    from mixgan.data.procedural import generate_shapes

    count, seed = settings["count"], settings["seed"]
    sources, _, _ = generate_shapes(count, resolution, classes=3, domains=1, seed=seed)
    styles, _, domains = generate_shapes(3 * count, resolution, classes=1, domains=3, seed=seed + 1)
    targets = styles[domains != 0][:count]
    height = resolution * 3 // 4 // 4 * 4
    top = (resolution - height) // 2

    def crop(image: np.ndarray) -> Image.Image:
        return Image.fromarray(image[top : top + height])

    return {
        str(i + 1): {"source": crop(s), "target": crop(t)}
        for i, (s, t) in enumerate(zip(sources, targets, strict=True))
    }


def _decode_pairs(tasks: dict[str, dict[str, Path]]) -> dict[str, dict[str, Any]]:
    from mixgan.data.prepare import load_rgb
    from mixgan.data.sources import SourceImage

    images: dict[str, dict[str, Any]] = {}
    unreadable: list[str] = []
    for task, files in tasks.items():
        for role, path in files.items():
            try:
                images.setdefault(task, {})[role] = load_rgb(SourceImage(path.name, path.parent))[0]
            except DataError as error:
                unreadable.append(str(error))
    if unreadable:
        raise DataError("unreadable pair images:\n" + "\n".join(f"  - {u}" for u in unreadable))
    return images


def prepare_pairs(
    name: str, dataset: dict[str, Any], out_zip: Path, out_manifest: Path
) -> dict[str, Any]:
    """Check, decode and store every pair (``pairs.zip``) with its manifest; return it."""
    import numpy as np

    from mixgan import registry
    from mixgan.data.imagezip import encode_png
    from mixgan.io import atomic_path, sha256_bytes, write_json
    from mixgan.provenance import provenance

    resolution = dataset["resolution"]
    if "procedural" in dataset:
        images = _procedural_pairs(dataset["procedural"], resolution)
        files: dict[str, dict[str, Path]] = {}
    else:
        files, problems = match_pairs(dataset)
        if problems:
            raise DataError(
                f"datasets.{name}: {len(problems)} problem(s) with the pairs in "
                f"{dataset['path']}:\n" + "\n".join(f"  - {p}" for p in problems)
            )
        images = _decode_pairs(files)
    entries = []
    with atomic_path(out_zip) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as archive:
        for task, pair in images.items():
            entry: dict[str, Any] = {"id": task}
            for role in ROLES:
                image = _fit(pair[role], resolution)
                png = encode_png(np.asarray(image, dtype=np.uint8))
                member = f"{role}/{task}.png"
                archive.writestr(member, png)
                entry[role] = {
                    "name": member,
                    "file": str(files[task][role]) if files else f"procedural:{task}:{role}",
                    "size": list(image.size),
                    "original_size": list(pair[role].size),
                    "sha256": sha256_bytes(png),
                }
            entries.append(entry)
    manifest = {
        "dataset": name,
        "format": "pairs",
        "settings": dataset,
        "resolution": resolution,
        "count": len(entries),
        "stand_in": registry.PROCEDURAL_DATA if "procedural" in dataset else None,
        "content_hash": sha256_bytes(
            "".join(e[r]["sha256"] for e in entries for r in ROLES).encode()
        ),
        "tasks": entries,
        "provenance": provenance(),
    }
    write_json(out_manifest, manifest)
    return manifest


def read_pair(pairs_zip: str | Path, task: str) -> tuple[Any, Any]:
    """The prepared source and target of ``task`` as HWC uint8 arrays."""
    from mixgan.data.imagezip import decode_image

    with zipfile.ZipFile(pairs_zip) as archive:
        try:
            return tuple(decode_image(archive.read(f"{role}/{task}.png")) for role in ROLES)
        except KeyError as error:
            raise DataError(f"{pairs_zip}: no task {task!r} ({error})") from error
