"""Nested, seeded training subsets recorded as manifests.

A dataset gets one ordering (file order or a seeded shuffle); with ``stratify: labels``
the classes are interleaved in proportion. ``count`` and ``fraction`` subsets are prefixes
of that ordering, so a smaller one is always contained in a larger one (the 1 % subset lies
inside the 10 % subset); ``per_class`` subsets take a prefix of each class's own order and
are nested among themselves. Every method of a table trains on exactly the same images.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from mixgan.errors import DataError
from mixgan.io import sha256_bytes
from mixgan.provenance import provenance


def dataset_order(
    labels: Sequence[int | None], order: str, seed: int, stratify: bool
) -> np.ndarray:
    """The ordering every subset of the dataset is a per-class prefix of.

    Stratified, items are interleaved by their relative rank within their class, so a
    prefix of length N holds about N * n_c / n images of class c.
    """
    count = len(labels)
    base = np.arange(count) if order == "first" else np.random.default_rng(seed).permutation(count)
    if not stratify:
        return base
    classes = np.array([labels[i] for i in base])
    sizes = {c: int((classes == c).sum()) for c in set(classes.tolist())}
    rank = np.zeros(count)
    seen: dict[int, int] = {}
    for position, label in enumerate(classes.tolist()):
        rank[position] = (seen.get(label, 0) + 0.5) / sizes[label]
        seen[label] = seen.get(label, 0) + 1
    return base[np.lexsort((classes, rank))]


def select_subset(
    labels: Sequence[int | None],
    size: dict[str, Any],
    *,
    order: str = "random",
    seed: int = 0,
    stratify: bool = False,
    where: str = "subset",
) -> np.ndarray:
    """Sorted indices of the subset ``size`` ({count|fraction|per_class: value}).

    ``where`` is the config key named in errors (e.g. ``datasets.ffhq.subsets.sizes.1k``).
    """
    total = len(labels)
    ordered = dataset_order(labels, order, seed, stratify)
    ((kind, value),) = size.items()
    if kind in ("count", "fraction"):
        count = value if kind == "count" else max(1, round(value * total))
        if count > total:
            raise DataError(f"{where}.count: {count} images asked, the dataset has {total}")
        return np.sort(ordered[:count])
    if any(label is None for label in labels):
        raise DataError(f"{where}.per_class: needs class labels, the dataset has none")
    ordered_labels = np.array([labels[i] for i in ordered])
    chosen = []
    for label in sorted(set(ordered_labels.tolist())):
        members = ordered[ordered_labels == label]
        if value > len(members):
            raise DataError(
                f"{where}.per_class: {value} images of class {label} asked, it has {len(members)}"
            )
        chosen.append(members[:value])
    return np.sort(np.concatenate(chosen))


def make_subset_manifest(
    prepared: dict[str, Any], subset: str, settings: dict[str, Any]
) -> dict[str, Any]:
    """The manifest of subset ``subset`` of a prepared dataset (``settings`` = dataset.subsets)."""
    images = prepared["images"]
    labels = [image["label"] for image in images]
    if subset == "full":
        indices = np.arange(len(images))
        size: dict[str, Any] = {"fraction": 1.0}
    else:
        size = settings["sizes"][subset]
        indices = select_subset(
            labels,
            size,
            order=settings["order"],
            seed=settings["seed"],
            stratify=settings["stratify"] == "labels",
            where=f"datasets.{prepared['dataset']}.subsets.sizes.{subset}",
        )
    chosen = [images[i] for i in indices]
    return {
        "dataset": prepared["dataset"],
        "subset": subset,
        "size": size,
        "order": settings["order"],
        "seed": settings["seed"],
        "stratify": settings["stratify"],
        "count": len(chosen),
        "prepared_hash": prepared["content_hash"],
        "content_hash": sha256_bytes("".join(i["name"] + i["sha256"] for i in chosen).encode()),
        "stand_in": prepared.get("stand_in"),
        "images": [
            {k: image[k] for k in ("name", "sha256", "label", "domain", "source")}
            for image in chosen
        ],
        "provenance": provenance(),
    }
