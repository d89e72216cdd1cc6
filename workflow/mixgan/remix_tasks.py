"""ReMix Tables 2–3 as a track of their own: settings, checks and evaluation-only rows.

Import-light (no torch): the Snakefile and :class:`mixgan.study.Study` read it while building
the DAG. The tracks are

* ``spade`` (remix_table3): Cityscapes label maps → photos with SPADE
  (``mixgan.train.spade_train``);
* ``lightcnn_stylegan2`` (remix_table2): NIR → VIS faces, a frozen LightCNN-29 v2 encoder and
  a StyleGAN2 decoder (``mixgan.train.nirvis``).

Both train with ``mixgan remix-train`` and are scored with ``mixgan remix-eval``
(``workflow/rules/remix_tasks.smk``). Their options live in the backbone's ``options``; every
value has a default here (the paper-scale value, sources in ``config/protocol/remix_tasks.yaml``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mixgan.config import backbone_options
from mixgan.errors import ConfigError

#: archs of the two tracks -> the ReMix table they fill
TRACK_ARCHS: dict[str, str] = {"spade": "remix_table3", "lightcnn_stylegan2": "remix_table2"}

#: part kinds the tracks run: ReMix (relative content loss) and its two baselines
TRACK_PARTS = frozenset({"remix", "mixup", "weighted_mixup"})

#: metrics ``mixgan remix-eval`` writes, per arch (FID of the SPADE outputs included)
TRACK_METRICS: dict[str, tuple[str, ...]] = {
    "spade": ("miou", "pixel_accuracy", "fid"),
    "lightcnn_stylegan2": ("rank1", "vr_far_1", "vr_far_0_1"),
}

#: the evaluation-only row of each table (no training): label, metrics
EVALUATION_ROWS: dict[str, tuple[str, tuple[str, ...]]] = {
    "spade": ("Real Data", ("miou", "pixel_accuracy")),  # DRN-D-105 on the real photos
    "lightcnn_stylegan2": ("Raw Input", ("rank1", "vr_far_1", "vr_far_0_1")),  # NIR probes
}

#: the ``weights.pretrained`` key of each track's evaluation network
EVAL_NETWORKS: dict[str, str] = {"spade": "drn_d_105", "lightcnn_stylegan2": "lightcnn29v2"}

#: SPADE's options and defaults: NVlabs/SPADE's Cityscapes training (sources per value in
#: config/protocol/remix_tasks.yaml); ``mix_probability``: mixup's and WM's (ReMix's part has
#: its own ``probability``); ``remix_update``: Eq. 11 as printed or as an EMA
SPADE_OPTIONS: dict[str, Any] = {
    "ngf": 64, "ndf": 64, "num_d": 2, "n_layers_d": 4, "aspect_ratio": 2.0,
    "num_upsampling_layers": "more", "label_nc": 35, "instance": True, "batch": 16,
    "epochs": 100, "decay_epochs": 100, "lr": 0.0002, "ttur": True, "beta1": 0.0,
    "beta2": 0.9, "lambda_feat": 10.0, "lambda_vgg": 10.0, "mix_probability": 0.25,
    "remix_update": "paper", "checkpoint_every": 1000, "log_every": 100, "eval_batch": 8,
}  # fmt: skip

#: the LightCNN-StyleGAN2 decoder's options and defaults: StyleGAN2 config F (stylegan2-ada-
#: pytorch train.py cfg 'stylegan2') with z 256 (ReMix §4.1); sources in remix_tasks.yaml
NIRVIS_OPTIONS: dict[str, Any] = {
    "z_dim": 256, "w_dim": 512, "mapping_layers": 8, "channel_base": 32768,
    "channel_max": 512, "mbstd_group": 4, "batch": 32, "kimg": 25000, "lr": 0.002,
    "beta1": 0.0, "beta2": 0.99, "r1_gamma": 10.0, "r1_interval": 16, "lambda_l1": 10.0,
    "mix_probability": 0.25, "remix_update": "paper", "pairing": "all",
    "checkpoint_every": 1000, "log_every": 100, "eval_batch": 32,
}  # fmt: skip

TRACK_OPTIONS: dict[str, dict[str, Any]] = {
    "spade": SPADE_OPTIONS,
    "lightcnn_stylegan2": NIRVIS_OPTIONS,
}

#: CASIA NIR-VIS 2.0 protocol files of fold 1 (``datasets.<name>.protocols.<key>``)
CASIA_PROTOCOLS = ("nir_train", "vis_train", "nir_probe", "vis_gallery")


def track_options(backbone: dict[str, Any], where: str = "options") -> dict[str, Any]:
    """The backbone's options over its track's defaults; unknown keys are a ConfigError."""
    options = backbone_options(backbone, TRACK_OPTIONS[backbone["arch"]], where)
    if options["remix_update"] not in ("paper", "ema"):
        raise ConfigError([f"{where}.remix_update: paper or ema"])
    if options.get("pairing", "all") not in ("all", "one_per_identity"):
        raise ConfigError([f"{where}.pairing: all or one_per_identity"])
    return options


def track_problems(study: Any, base_dir: str | Path = ".") -> list[str]:
    """Missing checkpoints and CASIA protocol files of the runnable track runs, by config key
    (``Study.path_problems``): a stand-in is used only with ``weights.allow_standins``."""
    base_dir = Path(base_dir)
    weights = study.config["weights"]
    problems: set[str] = set()
    for run in study.runnable_runs():
        backbone = study.config["backbones"][run.backbone]
        arch = backbone["arch"]
        if arch not in TRACK_ARCHS:
            continue
        needed = [EVAL_NETWORKS[arch]] + (["vgg19"] if arch == "spade" else [])
        for key in needed:
            path = weights.get("pretrained", {}).get(key)
            if path is None and weights.get("allow_standins"):
                continue
            if path is None:
                problems.add(
                    f"weights.pretrained.{key}: not set, but {run.id} needs it "
                    "(or allow labelled stand-ins, weights.allow_standins)"
                )
            elif not _resolve(path, base_dir).exists():
                problems.add(f"weights.pretrained.{key}: {path} does not exist")
        dataset = study.dataset(run.dataset)
        if arch == "lightcnn_stylegan2" and "procedural" not in dataset:
            protocols = dataset.get("protocols") or {}
            for key in CASIA_PROTOCOLS:
                if key not in protocols:
                    problems.add(f"datasets.{run.dataset}.protocols.{key}: not set")
                    continue
                found = _resolve(protocols[key], _resolve(dataset["path"], base_dir))
                if not found.exists():
                    problems.add(f"datasets.{run.dataset}.protocols.{key}: {found} does not exist")
        try:
            track_options(backbone, f"backbones.{run.backbone}.options")
        except ConfigError as error:
            problems.update(error.problems)
    return sorted(problems)


def _resolve(path: str | Path, base: Path) -> Path:
    path = Path(path)
    return path if path.is_absolute() else base / path
