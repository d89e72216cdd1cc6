"""The light registry the Snakefile reads agrees with the code, and the environments agree."""

from __future__ import annotations

import importlib
import re
import tomllib

import yaml

from mixgan import metrics, registry, sample
from mixgan.config import ARCH_TRAIN_DEFAULTS, ARCH_UNUSED_TRAIN
from mixgan.report import figures, oneshot, tables
from mixgan.train import parts
from mixgan.train.gan import GANTrainer

from .conftest import REPO


def test_registry_matches_the_code_registries():
    assert set(parts.PART_BUILDERS) == registry.PARTS
    families = [
        set(metrics.METRICS),
        set(metrics.RUN_METRICS),
        set(registry.IMAGE_METRICS),
        set(registry.GENERATOR_METRICS),
        set(registry.TASK_METRICS),
        set(registry.TRANSLATION_METRICS),
        set(registry.I2I_METRICS),
    ]
    assert set().union(*families) == registry.METRICS
    assert sum(map(len, families)) == len(registry.METRICS)  # each metric in one family
    assert set(metrics.METRICS) == set(registry.FEATURE_METRICS)
    assert set(metrics.RUN_METRICS) == registry.RUN_METRICS
    assert set(registry.EXTRACTOR_NETWORKS.values()) <= {"inception"} | set(
        registry.TORCHVISION_NETWORKS
    )
    assert set(figures.DRAWERS) == registry.FIGURE_KINDS
    assert {"pivot", "winrate"} == registry.TABLE_KINDS and callable(tables.write_table)
    assert callable(oneshot.write_table7)  # the winrate kind (ScoreMix Table 7)
    # Every GAN arch with a trainer has a generator class that network.pt files load into,
    # unless a command of its own trains it (one-shot SinCUT).
    assert set(registry.TRAINERS) == {
        "score_sampler",
        *sample.GENERATORS,
        *registry.DEDICATED_TRAINERS,
    }
    assert set(registry.ARCH_PARTS) <= set(registry.DEDICATED_TRAINERS)
    assert set().union(*registry.ARCH_PARTS.values()) <= registry.PARTS | registry.DEDICATED_PARTS
    # ... and a trainer class the loop finds, importable and a GANTrainer.
    assert set(registry.TRAINER_CLASSES) == set(sample.GENERATORS)
    for target in registry.TRAINER_CLASSES.values():
        module, name = target.split(":")
        assert issubclass(getattr(importlib.import_module(module), name), GANTrainer)
    assert set(ARCH_TRAIN_DEFAULTS) | set(ARCH_UNUSED_TRAIN) <= set(sample.GENERATORS)
    assert set(registry.ARCH_MISSING_PARTS) <= set(sample.GENERATORS)
    assert set().union(*registry.ARCH_MISSING_PARTS.values()) <= registry.PARTS


def _normalise(requirement: str) -> str:
    return re.sub(r"\s+", "", requirement.split("#")[0]).lower()


def test_pip_conda_and_pyproject_dependencies_agree():
    pip = {
        _normalise(line)
        for line in (REPO / "envs" / "requirements.txt").read_text().splitlines()
        if _normalise(line)
    }
    conda = yaml.safe_load((REPO / "envs" / "environment.yaml").read_text())
    conda_pip = {
        _normalise(r)
        for entry in conda["dependencies"]
        if isinstance(entry, dict)
        for r in entry["pip"]
    }
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    assert pip == conda_pip == {_normalise(r) for r in project}
    assert {"torch==2.14.1", "torchvision==0.29.1"} <= pip
    assert "python=3.11" in conda["dependencies"]
