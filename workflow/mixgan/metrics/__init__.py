"""The metrics registry: one JSON record per (run, metric, reference, protocol variant).

A record holds the value, the sample and reference counts, the feature network with its
checksum, the reference set, the run's seed, the evaluation settings the value depends on
(``evaluation``: resize convention, sFID layer, sample count, ...; ``mixgan.evaluation``), and
the labels every table shows beside the value ("demo scale", "procedural demo data",
"stand-in features"). Feature and image metrics read the first ``num_samples`` samples of the
run's sample set (which holds as many as its most demanding record needs), and refuse
features computed under another resize convention or sFID layer than the record's.

Three families, by what they read (``mixgan.registry``):

* feature metrics (``METRICS``) read cached features of the samples and of the reference set:
  FID, KID (Inception pool), sFID (Inception mixed_6/conv), IS (Inception class
  probabilities), precision/recall (VGG-16 fc2, k = 3), memorisation (Inception pool, against
  the training subset: mean distance to the nearest training image, distinct nearest images);
* image metrics read the samples themselves: LPIPS diversity (``evaluation.lpips_net``:
  AlexNet, or VGG as MixDL's code), the mean over ``evaluation.lpips_pairs`` seeded random
  pairs (all pairs when there are fewer);
* generator metrics read the run's generator: PPL (StyleGAN protocol, LPIPS-VGG) and MixDL's
  interval uniformity (mean, std over 10 sub-intervals, end-to-end distance).

Cost metrics (``RUN_METRICS``) read a run's own records instead of sample features, in two
units: ``wallclock_hours`` is the training time the trainer accumulated over every attempt
(Snakemake's benchmark file of a resumed job covers only its last attempt), ``gpu_hours`` that
time the GPUs a training job holds (``spec["gpus"]["train"]``); ``wallclock_hours_scoremix``
and ``gpu_hours_scoremix`` are the one-off ScoreMix preparation the run used: its score
network's training and its augmented set (each job's time x its GPUs). On a CPU the hours are
CPU-process hours (one device) and say so.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from mixgan import evaluation, registry
from mixgan.io import read_json
from mixgan.metrics.features import load_features, require_resize
from mixgan.metrics.fid_kid import fid_from_features, kid_from_features
from mixgan.provenance import provenance


def _fid(samples: np.ndarray, reference: np.ndarray, spec: dict[str, Any]) -> float:
    return fid_from_features(samples, reference)


def _inception_score(samples: np.ndarray, reference: None, spec: dict[str, Any]) -> float:
    from mixgan.metrics.inception_score import inception_score

    return inception_score(samples, splits=spec["evaluation"]["is_splits"])[0]


def _precision(samples: np.ndarray, reference: np.ndarray, spec: dict[str, Any]) -> float:
    from mixgan.metrics.precision_recall import manifold_coverage, manifold_radii

    radii = manifold_radii(reference, k=spec["evaluation"]["pr_k"])
    return manifold_coverage(samples, reference, radii)


def _recall(samples: np.ndarray, reference: np.ndarray, spec: dict[str, Any]) -> float:
    from mixgan.metrics.precision_recall import manifold_coverage, manifold_radii

    radii = manifold_radii(samples, k=spec["evaluation"]["pr_k"])
    return manifold_coverage(reference, samples, radii)


def _memorization_distance(samples: np.ndarray, reference: np.ndarray, spec: dict) -> float:
    from mixgan.metrics.memorization import nearest_training

    return nearest_training(samples, reference).mean_distance


def _distinct_neighbours(samples: np.ndarray, reference: np.ndarray, spec: dict) -> float:
    from mixgan.metrics.memorization import nearest_training

    return float(nearest_training(samples, reference).distinct)


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
    "sfid": _fid,
    "is": _inception_score,
    "precision": _precision,
    "recall": _recall,
    "memorization_distance": _memorization_distance,
    "distinct_neighbours": _distinct_neighbours,
}


def record_labels(spec: dict[str, Any], feature_network: dict[str, Any]) -> list[str]:
    """The stand-in labels a value computed under ``spec`` must carry."""
    labels = []
    if spec.get("scale") == "demo":
        labels.append(registry.DEMO_SCALE)
    if spec.get("stand_in_data"):
        labels.append(registry.PROCEDURAL_DATA)
    if feature_network.get("stand_in"):
        labels.append(registry.STAND_IN_FEATURES)
    return labels


def _hours(seconds: float, gpus: int, unit: str) -> float:
    return seconds * (gpus if unit == "gpu" else 1) / 3600


def _training_hours(run: dict, scorenet: dict | None, augmented: dict | None, gpus: dict,
                    unit: str) -> float:  # fmt: skip
    return _hours(run["summary"]["seconds"], gpus["train"], unit)


def _scoremix_hours(run: dict, scorenet: dict | None, augmented: dict | None, gpus: dict,
                    unit: str) -> float:  # fmt: skip
    stages = (("scorenet", scorenet), ("augment", augmented))
    return sum(_hours(record["seconds"], gpus[name], unit) for name, record in stages if record)


#: cost metric -> (function(run.json, score-net summary, augmented-set record, GPUs per job,
#: unit) -> hours, unit): ``gpu`` = device hours x the job's GPUs, ``wallclock`` = elapsed
RUN_METRICS: dict[str, tuple[Callable[..., float], str]] = {
    "gpu_hours": (_training_hours, "gpu"),
    "gpu_hours_scoremix": (_scoremix_hours, "gpu"),
    "wallclock_hours": (_training_hours, "wallclock"),
    "wallclock_hours_scoremix": (_scoremix_hours, "wallclock"),
}


def compute_cost_record(
    spec: dict[str, Any],
    run_json: str | Path,
    scorenet_summary: str | Path | None = None,
    augmented_record: str | Path | None = None,
) -> dict[str, Any]:
    """A cost metric of one run (hours; ``spec["gpus"]``: GPUs of the train, scorenet and
    augment jobs) and its record."""
    name = spec["metric"]
    run = read_json(run_json)
    scorenet = read_json(scorenet_summary) if scorenet_summary else None
    augmented = read_json(augmented_record) if augmented_record else None
    device = run["summary"].get("device", "unknown")
    on_gpu = device.startswith("cuda")
    gpus = {job: (count if on_gpu else 1) for job, count in spec["gpus"].items()}
    labels = record_labels(spec, {})
    if not on_gpu:
        labels.append(f"measured on {device}, not a GPU")
    function, unit = RUN_METRICS[name]
    return _record(
        spec,
        function(run, scorenet, augmented, gpus, unit),
        labels,
        num_samples=None,
        num_reference=None,
        device=device,
        unit="GPU-hours" if unit == "gpu" else "wall-clock hours",
        gpus=gpus,
        sources=[str(p) for p in (run_json, scorenet_summary, augmented_record) if p],
    )


def _record(
    spec: dict[str, Any], value: float, labels: list[str], **details: Any
) -> dict[str, Any]:
    """The fields every metric record has, around the metric's own ``details``."""
    settings = evaluation.METRIC_SETTINGS.get(spec["metric"], ())
    return {
        "metric": spec["metric"],
        "value": value,
        "run": spec["run"],
        "seed": spec["seed"],
        "reference": spec["reference"],
        "variant": spec.get("variant", ""),
        "evaluation": {key: spec["evaluation"][key] for key in settings},
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
        implemented = ", ".join(sorted(registry.METRICS))
        raise ValueError(f"metric '{name}' is not implemented (implemented: {implemented})")
    head = evaluation.feature_head(name, spec["evaluation"])
    samples, samples_meta = load_features(samples_path, head)
    reference, reference_meta = (
        load_features(reference_path, head) if reference_path else (None, {})
    )
    network = head_network(samples_meta, head)
    if reference_meta and head_network(reference_meta, head)["sha256"] != network["sha256"]:
        raise ValueError(
            f"{samples_path} and {reference_path} were computed with different networks"
        )
    for path, meta in ((samples_path, samples_meta), (reference_path, reference_meta)):
        if meta:
            check_convention(spec, meta, path)
    samples = first_samples(samples, spec["evaluation"]["num_samples"], samples_path)
    return _record(
        spec,
        METRICS[name](samples, reference, spec),
        record_labels(spec, network),
        num_samples=int(len(samples)),
        num_reference=int(len(reference)) if reference is not None else None,
        reference_source=reference_meta.get("source"),
        feature_network=network,
    )


def head_network(meta: dict[str, Any], head: str | None) -> dict[str, Any]:
    """The network record of a cache's ``head`` (a cache of several heads records each: a
    stand-in output layer makes only the class probabilities stand-ins)."""
    return meta.get("head_networks", {}).get(head, meta["feature_network"])


def check_convention(spec: dict[str, Any], meta: dict[str, Any], path: str | Path) -> None:
    """Refuse features computed under another resize convention than the record's settings
    name (a missing head, e.g. another sFID layer, is refused as the features load)."""
    if "resize" in evaluation.METRIC_SETTINGS[spec["metric"]]:
        wanted_by = f"this {spec['metric']} record needs evaluation.resize"
        require_resize(meta, path, spec["evaluation"]["resize"], wanted_by)


def first_samples(items: Any, count: int, source: str | Path) -> Any:
    """The first ``count`` samples (features or names) of a run's sample set."""
    if len(items) < count:
        raise ValueError(
            f"{source} holds {len(items)} samples, but evaluation.num_samples is {count}"
        )
    return items[:count]


#: LPIPS inputs smaller than this (demo images) are upsampled to it first: AlexNet's pooling
#: stages need at least 32² and 64² keeps every LPIPS layer more than one pixel wide.
LPIPS_MIN_SIZE = 64


def lpips_input(images: Any) -> Any:
    """[-1, 1] NCHW images as LPIPS takes them here: upsampled (bilinear) to
    ``LPIPS_MIN_SIZE`` if smaller; the papers' 256² images pass unchanged."""
    from torch.nn import functional as F

    if images.shape[-1] >= LPIPS_MIN_SIZE:
        return images
    size = (LPIPS_MIN_SIZE, LPIPS_MIN_SIZE)
    return F.interpolate(images, size=size, mode="bilinear", align_corners=False)


def perceptual_distance(module: Any, images_a: Any, images_b: Any) -> Any:
    """LPIPS per pair of [-1, 1] NCHW images (:func:`lpips_input`)."""
    from mixgan.metrics.lpips_distance import lpips_pairs

    return lpips_pairs(module, lpips_input(images_a), lpips_input(images_b))


def random_pairs(count: int, num_pairs: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``num_pairs`` seeded random pairs (i, j), i != j, of ``count`` items; every unordered
    pair once when there are no more than ``num_pairs`` of them."""
    if count * (count - 1) // 2 <= num_pairs:
        first, second = np.triu_indices(count, k=1)
        return first, second
    rng = np.random.default_rng(seed)
    first = rng.integers(count, size=num_pairs)
    second = rng.integers(count - 1, size=num_pairs)
    return first, second + (second >= first)


def lpips_network(net: str, weights_path: str | Path, device: str) -> tuple[Any, dict]:
    """The LPIPS module on ``device`` and the network block of its records: the provisioned
    backbone's record (SHA-256, stand-in flag) with the package's linear layers."""
    from mixgan.metrics.inception import pick_device
    from mixgan.metrics.lpips_distance import load_lpips
    from mixgan.metrics.weights import verified_record

    network = verified_record(weights_path)
    module, lpips_record = load_lpips(net, weights_path, allow_stand_in=False)
    network = {
        **network,
        "lpips": lpips_record["name"],
        "linear_sha256": lpips_record["linear_sha256"],
    }
    return module.to(pick_device(device)), network


def compute_image_metric_record(
    spec: dict[str, Any], samples_zip: str | Path, weights_path: str | Path, device: str = "auto"
) -> dict[str, Any]:
    """LPIPS diversity of a run's samples (``evaluation.lpips_net``: AlexNet or VGG-16, its
    backbone from ``weights_path``)."""
    from mixgan.data.imagezip import image_names, read_image_zip, to_tensor
    from mixgan.metrics.lpips_distance import mean_lpips_over_pairs

    evaluation_settings = spec["evaluation"]
    net = evaluation_settings.get("lpips_net", "alex")
    module, network = lpips_network(net, weights_path, device)
    names = first_samples(image_names(samples_zip), evaluation_settings["num_samples"], samples_zip)
    images = to_tensor(read_image_zip(samples_zip, names)).float() / 127.5 - 1
    first, second = random_pairs(len(images), evaluation_settings["lpips_pairs"], spec["seed"])
    value = mean_lpips_over_pairs(
        module, lpips_input(images), first, second, evaluation_settings["batch"]
    )
    return _record(
        spec,
        value,
        record_labels(spec, network),
        num_samples=int(len(images)),
        num_pairs=int(len(first)),
        num_reference=None,
        feature_network=network,
    )


def compute_generator_metric_records(
    spec: dict[str, Any], network_path: str | Path, weights_path: str | Path, device: str = "auto"
) -> dict[str, dict[str, Any]]:
    """PPL, or the interval-uniformity metrics, of a run's generator (LPIPS-VGG distances):
    ``spec["metric"]``'s record, and for an interval metric its siblings' too
    (``registry.PPL_INTERVAL_METRICS``: one computation serves all three)."""
    import functools

    from mixgan.metrics.inception import pick_device
    from mixgan.metrics.ppl import interval_uniformity, path_length
    from mixgan.sample import load_generator

    evaluation, name = spec["evaluation"], spec["metric"]
    torch_device = pick_device(device)
    generator, _ = load_generator(network_path, torch_device)
    module, network = lpips_network("vgg", weights_path, device)
    distance = functools.partial(perceptual_distance, module)
    has_w = hasattr(generator, "mapping")
    in_w = evaluation["ppl_space"] == "w" and has_w
    # FastGAN has no W: PPL in Z, slerp as StyleGAN's PPL in Z; the interval metrics lerp in
    # Z as the MixDL authors' FastGAN script (ppl_uniform_fastgan.py) does.
    interpolation = "lerp" if in_w or (not has_w and name != "ppl") else "slerp"
    options = {
        "endpoints": (lambda z: generator.mapping(z, None)) if in_w else None,
        "interpolation": interpolation,
        "crop": evaluation["ppl_crop"],
        "seed": spec["seed"],
        "device": torch_device,
    }
    if in_w:
        generate = functools.partial(generator.synthesis, noise_mode="const")
    else:
        generate = functools.partial(generator, c=None, noise_mode="const")
    if name == "ppl":
        result = path_length(
            generate, distance, generator.z_dim, evaluation["ppl_samples"],
            epsilon=evaluation["ppl_epsilon"], batch_size=evaluation["batch"], **options,
        )  # fmt: skip
        values, count = {name: result.value}, evaluation["ppl_samples"]
    else:
        result = interval_uniformity(
            generate, distance, generator.z_dim, evaluation["ppl_pairs"],
            intervals=evaluation["ppl_intervals"], **options,
        )  # fmt: skip
        values = {
            metric: getattr(result, metric.removeprefix("ppl_interval_").removeprefix("ppl_"))
            for metric in registry.PPL_INTERVAL_METRICS
        }
        count = evaluation["ppl_pairs"]
    return {
        metric: _record(
            {**spec, "metric": metric},
            float(value),
            record_labels(spec, network),
            num_samples=int(count),
            num_reference=None,
            space="w" if in_w else "z",
            interpolation=interpolation,
            feature_network=network,
        )
        for metric, value in values.items()
    }
