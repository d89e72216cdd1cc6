"""Shared fixtures: the repository paths and a minimal valid study config."""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from mixgan.data.prepare import prepare_dataset
from mixgan.data.subsets import make_subset_manifest
from mixgan.io import write_json
from mixgan.train.loop import train_gan

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


@pytest.fixture(scope="module")
def one_thread():
    """Tiny networks gain nothing from intra-op threads, while OpenMP synchronisation on a CPU
    shared with other processes can slow them down a hundredfold. Modules opt in with
    ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def final_generator(run_dir: Path) -> dict[str, torch.Tensor]:
    """The generator state a finished run selected (``run_dir/network.pt``)."""
    return torch.load(run_dir / "network.pt", weights_only=False)["generator"]


def same_tensors(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    """Whether two state dicts hold bitwise-equal tensors under the same keys."""
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def train_whole_and_split(
    spec: dict[str, Any], half_kimg: float, run_paths: Callable[[str], Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Train ``spec`` in one job (run ``whole``) and in two (run ``split``: stopped at
    ``half_kimg``, then resumed with the full budget); return both summaries."""
    log = logging.getLogger("test")
    whole = train_gan(spec, run_paths("whole"), log)
    half = copy.deepcopy(spec)
    half["backbone"]["train"]["kimg"] = half_kimg
    train_gan(half, run_paths("split"), log)
    return whole, train_gan(spec, run_paths("split"), log)


@pytest.fixture
def minimal_config() -> dict[str, Any]:
    return copy.deepcopy(MINIMAL_CONFIG)


def prepare_shapes_subset(folder: Path, resolution: int = 16) -> dict[str, Any]:
    """24 procedural images (16² by default) in ``folder/p.zip`` and a random 12-image subset
    ``n12.json``."""
    dataset = {
        "format": "procedural",
        "resolution": resolution,
        "labels": "none",
        "domains": "none",
        "procedural": {"count": 24, "classes": 3, "domains": 2, "seed": 0},
    }
    prepared = prepare_dataset("shapes", dataset, folder / "p.zip", folder / "p.json")
    settings = {"order": "random", "seed": 0, "stratify": "none", "sizes": {"n12": {"count": 12}}}
    subset = make_subset_manifest(prepared, "n12", settings)
    write_json(folder / "n12.json", subset)
    return subset


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """A folder with the 16² procedural subset of ``prepare_shapes_subset`` (``p.zip``,
    ``n12.json``); test modules that need another resolution define their own ``data``."""
    folder = tmp_path_factory.mktemp("data")
    prepare_shapes_subset(folder)
    return folder


@pytest.fixture(scope="module")
def data32(tmp_path_factory) -> Path:
    """The same as ``data`` at 32² (FastGAN's and BigGAN's smallest resolution)."""
    folder = tmp_path_factory.mktemp("data32")
    prepare_shapes_subset(folder, resolution=32)
    return folder


class MixtureScore(torch.nn.Module):
    """The exact score of a finite training set blurred by each noise level (a Gaussian
    mixture centred on the training images), with ScoreNet's call."""

    def __init__(self, data: torch.Tensor, sigmas: torch.Tensor):
        super().__init__()
        self.data = data
        self.register_buffer("sigmas", sigmas)

    def forward(self, x: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
        sigma = self.sigmas[levels].view(-1, 1)
        flat, points = x.flatten(1), self.data.flatten(1)
        weights = torch.softmax(-(torch.cdist(flat, points) ** 2) / (2 * sigma**2), dim=1)
        return ((weights @ points - flat) / sigma**2).view_as(x)
