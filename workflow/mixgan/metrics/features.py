"""Cached feature files: ``.npz`` with float32 features, image names and a JSON meta block.

Kept free of torch so that metric jobs, which only read features, start in a fraction of a
second.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mixgan.io import atomic_path


def save_features(
    path: str | Path, features: np.ndarray, names: Sequence[str], meta: dict[str, Any]
) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, features=features, names=np.array(names), meta=json.dumps(meta))


def require_resize(meta: dict[str, Any], path: str | Path, resize: str, wanted_by: str) -> None:
    """Refuse cached features made under another resize convention than ``resize``: comparing
    them with others would measure the resize. ``wanted_by`` names the config key asking for
    it, as the error's words before the value ("the backbone's train.eval_resize is")."""
    if meta.get("resize") != resize:
        raise ValueError(
            f"{path} holds features computed with resize {meta.get('resize')!r}, but "
            f"{wanted_by} {resize!r}"
        )


def load_features(path: str | Path, head: str | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """The cached features and their meta block; with ``head``, only that head's columns of a
    cache holding several (``meta["heads"]``: name and width, in column order)."""
    with np.load(path, allow_pickle=False) as data:
        features, meta = data["features"], json.loads(str(data["meta"]))
    if head is None or "heads" not in meta:
        return features, meta
    start = 0
    for name, width in meta["heads"]:
        if name == head:
            return features[:, start : start + width], meta
        start += width
    held = ", ".join(name for name, _ in meta["heads"])
    raise ValueError(f"{path} holds the Inception heads {held}, not {head}")
