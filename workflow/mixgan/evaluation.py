"""Evaluation settings per table, and the names their records and feature caches get.

Each paper computed its metrics its own way (STUDY.md, section D). The study's ``evaluation``
section holds the settings every table shares; ``evaluation.papers.<paper>`` overrides the
protocol settings (:data:`PROTOCOL_KEYS`) for that paper's tables and figures, and a table's
own ``evaluation`` block overrides both. :func:`resolve` merges the three (and the table's
``reference``).

A metric record is stored per (run, metric, reference, *variant*): the variant spells out the
protocol settings the metric depends on (``-tf_bilinear-n50000`` for FID, ``-vgg-n5000`` for
LPIPS), so one run scored by two papers' conventions has two records at two paths
(``metrics/fid-full-tf_bilinear-n50000.json`` and ``metrics/fid-full-pytorch_bilinear-
n5000.json``). Feature caches are named
by network, heads and resize convention (``inception-tf_bilinear``: pool features;
``inception_pool+mixed_7-pytorch_bilinear``: pool and MixDL's sFID channels from one pass), so
caches of different conventions never collide; every sample set's features cover all its
images and a record takes the first ``num_samples`` of them.

Import-light (no torch, no numpy): the Snakefile reads it while building the DAG.
"""

from __future__ import annotations

import re
from typing import Any

from mixgan.registry import FEATURE_METRICS, REFERENCE_METRICS, metric_network

#: how images are resized to Inception's 299² (``mixgan.metrics.resize``)
RESIZES = ("clean", "tf_bilinear", "pytorch_bilinear")
#: the Inception block whose 1x1 branch gives sFID's 7 channels (guided-diffusion: mixed_6,
#: MixDL's code: mixed_7 = Mixed_6e)
SFID_LAYERS = ("mixed_6", "mixed_7")
#: the LPIPS network of the diversity metric -> the backbone's weights (``weights.<name>``)
LPIPS_NETS = {"alex": "alexnet", "vgg": "vgg16"}
#: the settings a paper (``evaluation.papers.<paper>``) or a table (``evaluation``) may set
PROTOCOL_KEYS = ("num_samples", "resize", "sfid_layer", "lpips_net")

_INCEPTION = ("num_samples", "resize")
_PPL_INTERVALS = ("ppl_pairs", "ppl_intervals", "ppl_space")

#: metric -> the evaluation settings its value depends on (besides the reference set)
METRIC_SETTINGS: dict[str, tuple[str, ...]] = {
    "fid": _INCEPTION,
    "kid": (*_INCEPTION, "kid_subsets", "kid_subset_size"),
    "sfid": (*_INCEPTION, "sfid_layer"),
    "is": (*_INCEPTION, "is_splits"),
    "memorization_distance": _INCEPTION,
    "distinct_neighbours": _INCEPTION,
    "precision": ("num_samples", "pr_k"),
    "recall": ("num_samples", "pr_k"),
    "lpips": ("num_samples", "lpips_pairs", "lpips_net"),
    "ppl": ("ppl_samples", "ppl_space", "ppl_epsilon", "ppl_crop"),
    "ppl_interval_mean": _PPL_INTERVALS,
    "ppl_interval_std": _PPL_INTERVALS,
    "ppl_end_to_end": _PPL_INTERVALS,
    "gpu_hours": (),
    "gpu_hours_scoremix": (),
    "wallclock_hours": (),
    "wallclock_hours_scoremix": (),
    "sifid": (),  # per one-shot task, at the images' own size (mixgan oneshot-sifid)
    # the translation tracks' own protocols, written by their evaluation jobs (mixgan i2i-eval,
    # remix-eval) with their settings inside each record: the record path names none
    **dict.fromkeys(("fid_latent", "fid_reference", "lpips_latent", "lpips_reference"), ()),
    **dict.fromkeys(("rank1", "vr_far_1", "vr_far_0_1", "miou", "pixel_accuracy"), ()),
}


def training_features(train: dict[str, Any]) -> str:
    """The cached features a backbone's periodic FID and diversity probe compare with: pool
    features under its ``train.eval_resize`` (the reported metrics use the table's resize)."""
    return f"inception-{train['eval_resize']}"


#: the outputs of one Inception pass a feature cache may hold, in their order in the file:
#: pool features (FID, KID, memorisation), the sFID channels of each layer, class probabilities
INCEPTION_HEADS = ("pool", *SFID_LAYERS, "probs")


def inception_set(heads: tuple[str, ...] | set[str], resize: str) -> str:
    """The cache name of the Inception ``heads`` computed in one pass under ``resize``:
    ``inception-<resize>`` (pool only), ``inception_<head>-<resize>`` (one other head),
    ``inception_pool+mixed_7-<resize>`` (several, in :data:`INCEPTION_HEADS` order)."""
    ordered = [head for head in INCEPTION_HEADS if head in heads]
    if not ordered or len(ordered) != len(set(heads)):
        raise ValueError(f"Inception heads must be a non-empty subset of {INCEPTION_HEADS}")
    if ordered == ["pool"]:
        return f"inception-{resize}"
    return f"inception_{'+'.join(ordered)}-{resize}"


def _feature_names() -> dict[str, str]:
    subsets = [
        {head for bit, head in enumerate(INCEPTION_HEADS) if mask >> bit & 1}
        for mask in range(1, 2 ** len(INCEPTION_HEADS))
    ]
    names = {inception_set(heads, resize): "inception" for heads in subsets for resize in RESIZES}
    return {**names, "vgg16": "vgg16"}


#: every feature-cache name -> the network (file in ``weights.dir``) it runs
EXTRACTORS: dict[str, str] = _feature_names()

_TOKEN = "|".join((*RESIZES, *SFID_LAYERS, *LPIPS_NETS, r"n\d+"))
#: a record variant, as the Snakefile's wildcard constraint
VARIANT_PATTERN = rf"(-({_TOKEN}))*"


def resolve(evaluation: dict[str, Any], entry: dict[str, Any]) -> dict[str, Any]:
    """The evaluation settings of a table or figure ``entry``: the study's, its paper's
    protocol over them, the entry's own ``evaluation`` over both, and its ``reference``."""
    settings = {key: value for key, value in evaluation.items() if key != "papers"}
    settings |= evaluation.get("papers", {}).get(entry.get("paper"), {})
    settings |= entry.get("evaluation", {})
    if entry.get("reference"):
        settings["reference"] = entry["reference"]
    return settings


def relevant(settings: dict[str, Any], metrics: list[str]) -> dict[str, Any]:
    """The settings that the values of ``metrics`` depend on (the reference only where a
    metric compares with one)."""
    keys = {key for metric in metrics for key in METRIC_SETTINGS.get(metric, ())}
    if set(metrics) & REFERENCE_METRICS:
        keys.add("reference")
    return {key: settings[key] for key in sorted(keys) if key in settings}


def variant(metric: str, settings: dict[str, Any]) -> str:
    """The suffix of ``metric``'s record path under ``settings`` ("" when it has none)."""
    used = METRIC_SETTINGS.get(metric, ())
    tokens = [str(settings[key]) for key in ("resize", "sfid_layer", "lpips_net") if key in used]
    if "num_samples" in used:
        tokens.append(f"n{settings['num_samples']}")
    return "".join(f"-{token}" for token in tokens)


def parse_variant(text: str) -> dict[str, Any]:
    """The protocol settings a record variant spells out (inverse of :func:`variant`)."""
    if not re.fullmatch(VARIANT_PATTERN, text):
        raise ValueError(f"not a metric record variant: {text!r}")
    settings: dict[str, Any] = {}
    for token in filter(None, text.split("-")):
        if token in RESIZES:
            settings["resize"] = token
        elif token in SFID_LAYERS:
            settings["sfid_layer"] = token
        elif token in LPIPS_NETS:
            settings["lpips_net"] = token
        else:
            settings["num_samples"] = int(token[1:])
    return settings


def network(metric: str, settings: dict[str, Any]) -> str | None:
    """The network (``weights.<name>``) a metric runs under ``settings`` (``None``: none)."""
    if metric == "lpips" and "lpips_net" in settings:
        return LPIPS_NETS[settings["lpips_net"]]
    return metric_network(metric)


def feature_head(metric: str, settings: dict[str, Any]) -> str | None:
    """The Inception head a metric reads under ``settings`` (``None``: no Inception feature;
    VGG-16's caches hold one output)."""
    family = FEATURE_METRICS.get(metric)
    if family is None or family == "vgg16":
        return None
    if family == "inception_spatial":
        return settings["sfid_layer"]
    return "probs" if family == "inception_probs" else "pool"


def feature_set(metric: str, settings: dict[str, Any]) -> str | None:
    """The cache holding only the features a metric reads under ``settings`` (``None``: it
    reads none); a study shares one pass among a sample set's metrics (``Study.feature_cache``)."""
    head = feature_head(metric, settings)
    if head is None:
        return FEATURE_METRICS.get(metric)
    return inception_set({head}, settings["resize"])


def parse_feature_set(name: str) -> tuple[tuple[str, ...], str | None]:
    """(heads, resize) of a feature-cache name; ``(("vgg16",), None)`` for VGG-16's."""
    if name not in EXTRACTORS:
        raise ValueError(f"unknown feature set {name!r} (known: {', '.join(EXTRACTORS)})")
    if name == "vgg16":
        return ("vgg16",), None
    family, resize = name.split("-")
    if family == "inception":
        return ("pool",), resize
    return tuple(family.removeprefix("inception_").split("+")), resize
