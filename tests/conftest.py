"""Shared fixtures: the repository paths and a minimal valid study config."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]

MINIMAL_CONFIG: dict[str, Any] = {
    "study": "tiny",
    "scale": "demo",
    "seeds": [0],
    "device": "cpu",
    "datasets": {
        "shapes": {
            "format": "procedural",
            "resolution": 16,
            "procedural": {"count": 48, "classes": 3, "domains": 2, "seed": 0},
            "subsets": {"order": "random", "stratify": "labels", "sizes": {"n12": {"count": 12}}},
        }
    },
    "scorenets": {"tiny": {"ngf": 8, "iterations": 2}},
    "backbones": {"sg2": {"arch": "stylegan2", "task": "unconditional"}},
    "parts": {"scoremix": {"kind": "scoremix", "scorenet": "tiny", "mu": 1}},
    "methods": {"none": [], "scoremix": ["scoremix"]},
    "tables": {
        "scoremix_table1": {
            "paper": "scoremix",
            "title": "tiny",
            "defaults": {"dataset": "shapes", "subset": "n12", "backbone": "sg2"},
            "rows": [{"method": "none"}, {"method": "scoremix"}],
            "metrics": ["fid"],
        }
    },
}


@pytest.fixture
def minimal_config() -> dict[str, Any]:
    return copy.deepcopy(MINIMAL_CONFIG)
