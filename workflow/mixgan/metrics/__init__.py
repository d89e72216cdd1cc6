"""The metrics registry: one JSON record per (run, metric, reference).

A record holds the value, the sample and reference counts, the feature network with its
checksum, the reference set, the run's seed, and the labels every table shows beside the
value ("demo scale", "procedural demo data", "stand-in features").

Cost metrics (``RUN_METRICS``) read a run's own records instead of sample features:
``gpu_hours`` is the training time the trainer accumulated over every attempt (Snakemake's
benchmark file of a resumed job covers only its last attempt) times the GPUs a training job
holds; ``gpu_hours_scoremix`` is the one-off ScoreMix preparation the run used: its score
network's training and its augmented set. On a CPU the hours are CPU-process hours and say so.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from mixgan.io import read_json
from mixgan.metrics.features import load_features
from mixgan.metrics.fid_kid import fid_from_features, kid_from_features
from mixgan.provenance import provenance


def _fid(samples: np.ndarray, reference: np.ndarray, spec: dict[str, Any]) -> float:
    return fid_from_features(samples, reference)


def _kid(samples: np.ndarray, reference: np.ndarray, spec: dict[str, Any]) -> float:
    evaluation = spec["evaluation"]
    return kid_from_features(
        samples,
        reference,
        num_subsets=evaluation["kid_subsets"],
        max_subset_size=evaluation["kid_subset_size"],
        seed=spec["seed"],
    )


#: metric name -> function(sample features, reference features, spec) -> value
METRICS: dict[str, Callable[[np.ndarray, np.ndarray, dict[str, Any]], float]] = {
    "fid": _fid,
    "kid": _kid,
}


def record_labels(spec: dict[str, Any], feature_network: dict[str, Any]) -> list[str]:
    """The stand-in labels a value computed under ``spec`` must carry."""
    labels = []
    if spec.get("scale") == "demo":
        labels.append("demo scale")
    if spec.get("stand_in_data"):
        labels.append("procedural demo data")
    if feature_network.get("stand_in"):
        labels.append("stand-in features")
    return labels


def _training_hours(run: dict[str, Any], scorenet: dict | None, augmented: dict | None) -> float:
    return run["summary"]["seconds"] / 3600


def _scoremix_hours(run: dict[str, Any], scorenet: dict | None, augmented: dict | None) -> float:
    return sum(record["seconds"] for record in (scorenet, augmented) if record) / 3600


#: cost metric -> function(run.json, score-net summary, augmented-set record) -> device hours
RUN_METRICS: dict[str, Callable[[dict, dict | None, dict | None], float]] = {
    "gpu_hours": _training_hours,
    "gpu_hours_scoremix": _scoremix_hours,
}


def compute_cost_record(
    spec: dict[str, Any],
    run_json: str | Path,
    scorenet_summary: str | Path | None = None,
    augmented_record: str | Path | None = None,
) -> dict[str, Any]:
    """A cost metric of one run (device hours x ``spec['gpus']``) and its record."""
    name = spec["metric"]
    run = read_json(run_json)
    scorenet = read_json(scorenet_summary) if scorenet_summary else None
    augmented = read_json(augmented_record) if augmented_record else None
    device = run["summary"].get("device", "unknown")
    gpus = spec["gpus"] if device.startswith("cuda") else 1
    labels = record_labels(spec, {})
    if not device.startswith("cuda"):
        labels.append(f"measured on {device}, not a GPU")
    return _record(
        spec,
        RUN_METRICS[name](run, scorenet, augmented) * gpus,
        labels,
        num_samples=None,
        num_reference=None,
        device=device,
        gpus=gpus,
        sources=[str(p) for p in (run_json, scorenet_summary, augmented_record) if p],
    )


def _record(
    spec: dict[str, Any], value: float, labels: list[str], **details: Any
) -> dict[str, Any]:
    """The fields every metric record has, around the metric's own ``details``."""
    return {
        "metric": spec["metric"],
        "value": value,
        "run": spec["run"],
        "seed": spec["seed"],
        "reference": spec["reference"],
        **details,
        "labels": labels,
        "scale": spec.get("scale"),
        "provenance": provenance(),
    }


def compute_metric_record(
    spec: dict[str, Any], samples_path: str | Path, reference_path: str | Path | None
) -> dict[str, Any]:
    """Compute ``spec['metric']`` of one run from cached features; return its record."""
    name = spec["metric"]
    if name not in METRICS:
        implemented = ", ".join([*METRICS, *RUN_METRICS])
        raise ValueError(f"metric '{name}' is not implemented (implemented: {implemented})")
    samples, samples_meta = load_features(samples_path)
    reference, reference_meta = load_features(reference_path) if reference_path else (None, {})
    network = samples_meta["feature_network"]
    if reference_meta and reference_meta["feature_network"]["sha256"] != network["sha256"]:
        raise ValueError(
            f"{samples_path} and {reference_path} were computed with different networks"
        )
    return _record(
        spec,
        METRICS[name](samples, reference, spec),
        record_labels(spec, network),
        num_samples=int(len(samples)),
        num_reference=int(len(reference)) if reference is not None else None,
        reference_source=reference_meta.get("source"),
        feature_network=network,
    )
