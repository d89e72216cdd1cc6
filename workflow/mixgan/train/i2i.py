"""StarGAN v2 translation runs (ScoreMix Tables 5–6, Figures 7–8; ReMix Table 1).

``mixgan train`` runs this loop for backbones of arch ``stargan2`` (``registry.TRAINING_LOOPS``)
with the same inputs and outputs as the GAN loop: the prepared dataset and the run's subset
manifest (plus a ScoreMix set), ``<run>/train/`` for resumable checkpoints and the live curve,
and at the end ``network.pt`` (the EMA networks, as the official ``_nets_ema`` checkpoint),
``curve.csv`` and the summary ``mixgan train`` writes into ``run.json``.

Domains are the dataset's class labels (AFHQ ``train/{cat,dog,wild}``; the procedural shapes'
classes in the demo), in sorted name order as ``ImageFolder``'s. The iteration is the official
one (``StarGANv2Trainer.train_step``); batches follow clovaai/stargan-v2
``core/data_loader.py``: sources and references drawn with replacement by a sampler balanced
over domains (``_make_balanced_sampler``: weight 1 / domain size), a reference's second image
drawn from the same domain (``ReferenceDataset``), every image randomly resized-cropped with
probability 0.5 (``RandomResizedCrop(scale=[0.8, 1], ratio=[0.9, 1.1])``, main.py
``--randcrop_prob``) and flipped horizontally with probability 0.5. A static ScoreMix set
joins the *source* pool with its pairs' domains (the generator's inputs are augmented;
references stay real images).

Every random draw comes from seeded ``torch.Generator``s (data, mixing plan, the trainer's
latents) and the global RNGs (parts), all saved in the checkpoints, so a resumed run equals an
uninterrupted one bit-exactly on the CPU (``tests/test_i2i.py``).
"""

from __future__ import annotations

import logging
import math
import shutil
import time
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor
from torchvision.transforms.v2 import functional as TF

from mixgan.data.imagezip import read_image_zip, to_tensor
from mixgan.errors import DataError
from mixgan.i2i_settings import stargan2_options
from mixgan.io import atomic_path, read_json, write_json
from mixgan.metrics.inception import pick_device
from mixgan.nets.stargan2 import StarGANv2Config, count_parameters
from mixgan.provenance import provenance
from mixgan.train.checkpoint import resume_run, run_state, save_checkpoint, seed_everything
from mixgan.train.i2i_parts import TranslationParts
from mixgan.train.part_api import PartInputs
from mixgan.train.paths import Interrupted, TrainingError, TrainPaths
from mixgan.train.progress import CurveWriter, StopFlag
from mixgan.train.stargan2 import StarGANv2Batch, StarGANv2Trainer, StarGANv2TrainSettings

_NET_KEYS = ("latent_dim", "style_dim", "max_conv_dim", "hidden_dim", "base_dim")
_TRAIN_KEYS = tuple(StarGANv2TrainSettings.__dataclass_fields__)
CURVE_COLUMNS = ["step", "seconds", "lambda_ds", "d_loss", "g_loss"]


def model_config(options: dict[str, Any], resolution: int, num_domains: int) -> StarGANv2Config:
    """The networks of a run: the options' sizes at the dataset's resolution."""
    sizes = {key: options[key] for key in _NET_KEYS}
    return StarGANv2Config(img_size=resolution, num_domains=num_domains, **sizes)


def train_settings(options: dict[str, Any]) -> StarGANv2TrainSettings:
    """The trainer's loss weights and optimiser settings (``batch`` -> ``batch_size``)."""
    values = {key: options[key] for key in _TRAIN_KEYS if key in options}
    return StarGANv2TrainSettings(**values, batch_size=options["batch"])


def subset_domains(paths: TrainPaths) -> tuple[Tensor, Tensor, list[str]]:
    """The subset's images (NCHW uint8), their domains, and the domain names: the prepared
    dataset's classes (``prepared.json`` beside the zip). An unlabelled image, or fewer than
    two domains, is a DataError naming the files."""
    prepared = read_json(paths.data_zip.with_suffix(".json"))
    names = prepared.get("class_names") or []
    entries = read_json(paths.subset_manifest)["images"]
    if len(names) < 2 or any(entry["label"] is None for entry in entries):
        raise DataError(
            f"{paths.data_zip}: translation needs two or more domains from the class labels "
            f"(one sub-folder per domain, e.g. train/cat, train/dog); found {names or 'none'}"
        )
    labels = torch.tensor([entry["label"] for entry in entries])
    empty = [names[d] for d in range(len(names)) if not (labels == d).any()]
    if empty:
        raise DataError(f"{paths.subset_manifest}: no image of domain(s) {', '.join(empty)}")
    images = to_tensor(read_image_zip(paths.data_zip, [entry["name"] for entry in entries]))
    return images, labels, list(names)


def balanced_weights(labels: Tensor) -> Tensor:
    """Sampling weight 1 / (its domain's size) per image (``_make_balanced_sampler``)."""
    counts = torch.bincount(labels).double()
    return 1.0 / counts[labels]


@dataclass
class TranslationData:
    """Source pool (subset + a static ScoreMix set), real references, and their batches."""

    sources: Tensor
    source_labels: Tensor
    references: Tensor
    reference_labels: Tensor
    randcrop_prob: float
    mirror: bool

    def _load(self, images: Tensor, rng: torch.Generator) -> Tensor:
        """uint8 NCHW -> [-1, 1] float with the official random crop and flip."""
        out = images.float() / 127.5 - 1
        size = list(out.shape[-2:])
        rows = []
        for image in out:
            if torch.rand((), generator=rng).item() < self.randcrop_prob:
                image = _random_resized_crop(image, size, rng)
            if self.mirror and torch.rand((), generator=rng).item() < 0.5:
                image = image.flip(-1)
            rows.append(image)
        return torch.stack(rows)

    def batch(self, count: int, rng: torch.Generator) -> StarGANv2Batch:
        """One iteration's sources, references (two per target domain) and domains."""
        src = torch.multinomial(balanced_weights(self.source_labels), count, True, generator=rng)
        ref = torch.multinomial(balanced_weights(self.reference_labels), count, True, generator=rng)
        y_ref = self.reference_labels[ref]
        ref2 = torch.stack([_same_domain(self.reference_labels, y, rng) for y in y_ref])
        return StarGANv2Batch(
            x_src=self._load(self.sources[src], rng),
            y_src=self.source_labels[src],
            x_ref=self._load(self.references[ref], rng),
            x_ref2=self._load(self.references[ref2], rng),
            y_ref=y_ref,
        )


def _same_domain(labels: Tensor, domain: Tensor, rng: torch.Generator) -> Tensor:
    index = torch.nonzero(labels == domain).flatten()
    return index[torch.randint(len(index), (), generator=rng)]


def _random_resized_crop(image: Tensor, size: list[int], rng: torch.Generator) -> Tensor:
    """torchvision's ``RandomResizedCrop(scale=(0.8, 1), ratio=(0.9, 1.1))`` parameters
    (10 tries, then the image unchanged) drawn from ``rng``; bilinear resize back."""
    height, width = size
    area = height * width
    low, high = math.log(0.9), math.log(1.1)
    for _ in range(10):
        target = area * (0.8 + 0.2 * torch.rand((), generator=rng).item())
        ratio = math.exp(low + (high - low) * torch.rand((), generator=rng).item())
        w = round(math.sqrt(target * ratio))
        h = round(math.sqrt(target / ratio))
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(height - h + 1, (), generator=rng))
            left = int(torch.randint(width - w + 1, (), generator=rng))
            return TF.resized_crop(image, top, left, h, w, size, antialias=True)
    return image


def load_data(
    paths: TrainPaths, parts: TranslationParts, options: dict[str, Any]
) -> tuple[TranslationData, list[str]]:
    """The run's data and domain names; a ScoreMix set without domains is a DataError."""
    images, labels, names = subset_domains(paths)
    extra, extra_labels = parts.extra_sources()
    if any(label is None for label in extra_labels):
        raise DataError(f"{paths.augmented_zip}: the ScoreMix set needs its pairs' domains")
    data = TranslationData(
        torch.cat([images, *extra]), torch.cat([labels, *extra_labels]), images, labels,
        options["randcrop_prob"], options["mirror"],
    )  # fmt: skip
    return data, names


def train_i2i(spec: dict[str, Any], paths: TrainPaths, log: logging.Logger) -> dict[str, Any]:
    """Train (or resume) one StarGAN v2 run; write network.pt and curve.csv; return the
    summary ``run.json`` records."""
    where = f"backbones.{spec['backbone']['name']}.options"
    options = stargan2_options(spec["backbone"], where)
    seed = int(spec["seed"])
    seed_everything(seed)
    device = pick_device(spec["device"])
    inputs = PartInputs(paths.augmented_zip, paths.scorenet, None, device)
    parts = TranslationParts(spec["method"]["parts"], inputs, options["mix_probability"])
    data, names = load_data(paths, parts, options)
    config = model_config(options, spec["resolution"], len(names))
    trainer = StarGANv2Trainer(config, train_settings(options), seed, device, **parts.hooks())
    data_rng = torch.Generator().manual_seed(seed)
    mix_rng = torch.Generator().manual_seed(seed + 1)
    work = paths.work_dir
    elapsed = 0.0
    streams = {"data_rng": data_rng, "mix_rng": mix_rng}
    resumed = resume_run(work / "checkpoints", trainer, streams)
    if resumed is not None:
        parts.load_state_dict(resumed["parts"])
        elapsed = resumed["seconds"]
        log.info("resumed from checkpoint at step %d", trainer.step)
    total = options["total_iters"]
    log.info(
        "run %s: %d sources (%d real), domains %s, G %d, F %d, E %d, D %d params, device %s",
        spec["run"], len(data.sources), len(data.references), ", ".join(names),
        *(count_parameters(module) for _, module in trainer.nets.items()), device,
    )  # fmt: skip
    write_json(work / "spec.json", {**spec, "provenance": provenance()})
    columns = CURVE_COLUMNS + list(parts.stats())
    curve = CurveWriter(work / "curve.csv", columns, trainer.step if resumed is not None else None)
    started = time.perf_counter() - elapsed
    with StopFlag() as stop:
        while trainer.step < total:
            if parts.style is not None:
                parts.style.begin_step(mix_rng)
            stats = trainer.train_step(data.batch(options["batch"], data_rng))
            bad = [key for key, value in stats.items() if not math.isfinite(value)]
            if bad:
                raise TrainingError(
                    f"non-finite {', '.join(bad)} at step {trainer.step}; the last good "
                    f"checkpoint in {work / 'checkpoints'} is kept"
                )
            elapsed = time.perf_counter() - started
            done = trainer.step >= total
            if trainer.step % options["log_every"] == 0 or done:
                row = _curve_row(trainer.step, elapsed, stats) | parts.stats()
                curve.write(row)
                losses = row["d_loss"], row["g_loss"]
                log.info("step %d/%d  D %.4f  G %.4f", trainer.step, total, *losses)
            if trainer.step % options["checkpoint_every"] == 0 or done or stop:
                state = run_state(trainer, streams, parts=parts.state_dict(), seconds=elapsed)
                save_checkpoint(work / "checkpoints", trainer.step, state)
            if stop:
                raise Interrupted(
                    f"signal {stop.signal} at step {trainer.step}: checkpoint written; "
                    "rerunning the job resumes from it"
                )
    return _finish(trainer, paths, spec, options, names, elapsed, device, data, log)


def _curve_row(step: int, seconds: float, stats: dict[str, float]) -> dict[str, float]:
    d_loss = sum(v for k, v in stats.items() if k.startswith("D/") and not k.endswith("reg"))
    g_loss = sum(v for k, v in stats.items() if k.startswith("G/") and k != "G/lambda_ds")
    return {"step": step, "seconds": seconds, "lambda_ds": stats["G/lambda_ds"],
            "d_loss": d_loss, "g_loss": g_loss}  # fmt: skip


def _finish(
    trainer: StarGANv2Trainer,
    paths: TrainPaths,
    spec: dict[str, Any],
    options: dict[str, Any],
    names: list[str],
    seconds: float,
    device: torch.device,
    data: TranslationData,
    log: logging.Logger,
) -> dict[str, Any]:
    meta = {
        "run": spec["run"], "steps": trainer.step, "seconds": seconds, "device": str(device),
        "processes": 1, "domains": names, "num_real": len(data.references),
        "num_pool": len(data.sources), "seed": spec["seed"], "options": options,
        "selected": "final EMA networks (the official protocol evaluates the last snapshot)",
        "provenance": provenance(),
    }  # fmt: skip
    snapshot = {
        "arch": "stargan2",
        "config": asdict(trainer.config),
        "domains": names,
        "nets_ema": {name: module.state_dict() for name, module in trainer.nets_ema.items()},
        "meta": meta,
    }
    with atomic_path(paths.network_out) as tmp:
        torch.save(snapshot, tmp)
    with atomic_path(paths.curve_out) as tmp:
        shutil.copyfile(paths.work_dir / "curve.csv", tmp)
    log.info("done: %d iterations in %.1f s", trainer.step, seconds)
    return meta
