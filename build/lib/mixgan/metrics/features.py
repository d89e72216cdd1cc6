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


def load_features(path: str | Path) -> tuple[np.ndarray, dict[str, Any]]:
    with np.load(path, allow_pickle=False) as data:
        return data["features"], json.loads(str(data["meta"]))
