"""One run of ReMix Tables 2–3 (``mixgan remix-train``) and the networks its evaluation uses.

The spec is ``Study.run_spec`` plus ``size`` (the subset's count or fraction of the training
split), ``weights`` (``weights.pretrained`` and ``allow_standins``) and ``stand_in_data``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mixgan import registry
from mixgan.remix_tasks import track_options
from mixgan.train.translation import MixPlan, train_translation


def subset_index(train: np.ndarray, size: dict[str, Any] | None, seed: int = 0) -> np.ndarray:
    """The training items of a subset: all, or a seeded ``count`` / ``fraction`` of them."""
    index = np.flatnonzero(train)
    if not size:
        return index
    keep = size.get("count") or max(1, round(len(index) * size["fraction"]))
    return np.sort(np.random.default_rng(seed).permutation(index)[:keep])


def pretrained(
    spec: dict[str, Any], key: str, build: Any, load: Any, seed: int = 0
) -> tuple[nn.Module, list[str]]:
    """The checkpoint ``weights.pretrained.<key>`` (``load``), or with ``allow_standins`` a
    seeded untrained ``build()`` labelled "stand-in features"."""
    path = spec["weights"].get("pretrained", {}).get(key)
    if path:
        return load(path), []
    if not spec["weights"].get("allow_standins"):
        raise FileNotFoundError(f"weights.pretrained.{key} is not set")
    torch.manual_seed(seed)
    return build().eval(), [registry.STAND_IN_FEATURES]


def encoder(spec: dict[str, Any]) -> tuple[nn.Module, list[str]]:
    from mixgan.nets.lightcnn import LightCNN29v2, load_lightcnn

    return pretrained(spec, "lightcnn29v2", LightCNN29v2, load_lightcnn)


def train_run(
    spec: dict[str, Any],
    data: dict[str, np.ndarray],
    run_dir: Path,
    device: torch.device,
    log: logging.Logger,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Train (or resume) the run; returns (generator file contents, summary)."""
    backbone = spec["backbone"]
    arch = backbone["arch"]
    options = track_options(backbone, f"backbones.{backbone['name']}.options")
    plan = MixPlan.of(spec["method"]["parts"], options)
    seed = int(spec["seed"])
    resolution = spec["resolution"]
    labels: list[str] = []
    torch.manual_seed(seed)
    if arch == "spade":
        from mixgan.train.spade_losses import VGG19Slices
        from mixgan.train.spade_train import SPADETrainer, stand_in_vgg

        vgg, labels = pretrained(
            spec, "vgg19", lambda: stand_in_vgg(seed), VGG19Slices.from_state_dict
        )
        index = subset_index(data["train"], spec.get("size"))
        torch.manual_seed(seed)
        trainer: Any = SPADETrainer(data, index, options, resolution, plan.kind, vgg, device)
        total = (options["epochs"] + options["decay_epochs"]) * trainer.steps_per_epoch
    else:
        from mixgan.train.nirvis import NIRVISTrainer, lightcnn_features, training_pairs

        net, labels = encoder(spec)
        nir, candidates = training_pairs(data, options["pairing"])
        keep = subset_index(np.ones(len(nir), bool), spec.get("size"))
        nir, candidates = nir[keep], candidates[keep]
        features = lightcnn_features(net, data["nir"][nir], options["eval_batch"], device)
        torch.manual_seed(seed)
        trainer = NIRVISTrainer(
            data, features, candidates, options, resolution, plan.kind, device, seed
        )
        index = nir
        total = max(1, round(options["kimg"] * 1000 / options["batch"]))
    summary = train_translation(
        trainer, len(index), options["batch"], total, plan, seed, run_dir, options, log
    )
    summary.update({"options": options, "train_items": len(index), "labels": labels, "arch": arch})
    generator = {
        "arch": arch,
        "options": options,
        "resolution": resolution,
        "state": trainer.generator.state_dict(),
        "labels": labels,
    }
    return generator, summary
