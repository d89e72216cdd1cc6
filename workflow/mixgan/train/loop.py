"""The GAN training loop, shared by every backbone: the trainer of the run's ``arch`` comes from
``mixgan.registry.TRAINER_CLASSES`` (StyleGAN2: ``mixgan.train.gan``; FastGAN, BigGAN: their
modules), and the loop never imports one directly.

One loop for every method: the parts of the run's method (``mixgan.train.parts``) add
real data, augment what D sees, add loss terms, or compute the losses of some steps themselves
(MixDL, with heads that D's optimiser trains). The loop trains for a budget in kimg, evaluates
FID every ``eval_every_kimg`` on a fixed set of latents, stops after ``patience`` consecutive
FID increases (the ScoreMix paper's protocol; ``patience: 0`` never stops early), and keeps the
best snapshot. An early stop is recorded in the checkpoint written at that step, so a job
rerun after it (a crash while writing the outputs) finishes without training further. When
``diversity_every_kimg`` is set, it also probes the samples' diversity from kimg 0 to
``diversity_until_kimg`` (``mixgan.train.diversity``, MixDL's Fig. 8).

Real batches are drawn uniformly with replacement from the pool (the subset plus the parts'
extra images), each image x-flipped with probability 1/2 when ``train.mirror`` is on. Progress
is resumable: checkpoints (not declared workflow outputs) hold the networks, optimisers, parts,
RNG streams and evaluation history; a restarted job continues the same run. The declared
outputs (network.pt, curve.csv, run.json) are written only at the end.

On a GPU the run's ``precision``, ``channels_last`` and ``fused_fir`` settings choose the
arithmetic and kernels (see ``mixgan.train.gan.GANTrainer``), and cuDNN picks its fastest
algorithms for the fixed shapes (``cudnn.benchmark``), so GPU runs are seeded but not bitwise
repeatable; ``compile`` compiles the main passes on any device.

Launched by ``torchrun`` with several processes, every rank trains its share of the batch
(``mixgan.train.distributed``); rank 0 alone logs, evaluates FID, probes diversity and writes
the curve, checkpoints and outputs, and every rank stops at the same step.
"""

from __future__ import annotations

import importlib
import logging
import math
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from mixgan import registry
from mixgan.io import atomic_path, write_json
from mixgan.metrics.features import load_features, require_resize
from mixgan.metrics.fid_kid import fid_from_features
from mixgan.metrics.inception import InceptionFeatures, pick_device
from mixgan.provenance import provenance
from mixgan.sample import generate_images
from mixgan.train import distributed
from mixgan.train.checkpoint import load_latest_checkpoint, save_checkpoint
from mixgan.train.diversity import COLUMNS as DIVERSITY_COLUMNS
from mixgan.train.diversity import DiversityProbe
from mixgan.train.paths import Interrupted, TrainingError, TrainPaths
from mixgan.train.progress import CurveWriter, StopFlag, Throughput

if TYPE_CHECKING:  # annotations only: trainers are found through the registry
    from mixgan.nets.stylegan2 import Generator
    from mixgan.train.gan import GANTrainer

CURVE_COLUMNS = [
    "step", "kimg", "seconds", "sec_per_kimg", "loss_g", "loss_d", "r1", "pl",
    "logits_real", "logits_fake", "fid", *DIVERSITY_COLUMNS,
]  # fmt: skip
EVAL_SEED = 2**31 - 1  # the fixed latents every evaluation of every run uses


Loop = Callable[[dict[str, Any], TrainPaths, logging.Logger], dict[str, Any]]


def training_loop(arch: str, default: Loop) -> Loop:
    """The loop ``mixgan train`` runs for ``arch``: its own (``registry.TRAINING_LOOPS``:
    StarGAN v2's translation loop), else ``default`` (this GAN loop)."""
    target = registry.TRAINING_LOOPS.get(arch)
    if target is None:
        return default
    module, name = target.split(":")
    return getattr(importlib.import_module(module), name)


def make_trainer(spec: dict[str, Any], paths: TrainPaths, log: logging.Logger) -> GANTrainer:
    """The trainer of the run's backbone architecture, found in the registry."""
    arch = spec["backbone"]["arch"]
    target = registry.TRAINER_CLASSES.get(arch)
    if target is None:
        raise ValueError(f"no GAN trainer for arch {arch!r}")
    module, name = target.split(":")
    return getattr(importlib.import_module(module), name)(spec, paths, log)


def train_gan(spec: dict[str, Any], paths: TrainPaths, log: logging.Logger) -> dict[str, Any]:
    """Train (or resume) one run; write network.pt, curve.csv and run.json; return the summary.
    Under torchrun with several processes: rank 0 writes and returns it, the others ``{}``."""
    with distributed.process_group(pick_device(spec["device"])):
        if not distributed.is_main():
            log = logging.getLogger(f"{log.name}.rank{distributed.rank()}")
            log.setLevel(logging.WARNING)
        summary = _train(spec, paths, log)
        distributed.barrier()
    return summary


def _train(spec: dict[str, Any], paths: TrainPaths, log: logging.Logger) -> dict[str, Any]:
    cfg = spec["backbone"]["train"]
    probing = cfg["diversity_every_kimg"] > 0
    if probing and paths.inception is None:
        raise ValueError("train.diversity_every_kimg > 0 needs the Inception weights (--inception)")
    trainer = make_trainer(spec, paths, log)
    if distributed.world_size() > 1 and not getattr(trainer, "multi_process", False):
        raise ValueError(
            f"arch {spec['backbone']['arch']!r} trains in one process only: set "
            "resources.train.gpu (or processes) to 1 for its runs"
        )
    work = paths.work_dir
    resumed = load_latest_checkpoint(work / "checkpoints")
    if resumed is not None:
        trainer.load_state_dict(resumed[1])
        log.info("resumed from checkpoint at step %d (%.1f kimg)", trainer.step, trainer.kimg)
    else:
        log.info("starting from scratch")
    log.info(
        "run %s: %d real images (%d with the parts' extra data), G %d, D %d params, device %s",
        spec["run"], trainer.num_real, len(trainer.pool),
        sum(p.numel() for p in trainer.G.parameters()),
        sum(p.numel() for p in trainer.D.parameters()), trainer.device,
    )  # fmt: skip
    main = distributed.is_main()  # the one rank that evaluates and writes
    if main:
        write_json(work / "spec.json", {**spec, "provenance": provenance()})
    evaluating, probing = paths.reference_features is not None, probing and main
    inception = (
        InceptionFeatures(paths.inception, spec["device"], resize=cfg["eval_resize"])
        if main and (evaluating or probing)
        else None
    )
    evaluator = _Evaluator(paths, inception, cfg) if main and evaluating else None
    probe = _diversity_probe(trainer, paths, inception) if probing else None
    part_columns = [key for part in trainer.parts for key in part.stats()]
    curve = (
        CurveWriter(
            work / "curve.csv",
            CURVE_COLUMNS + trainer.extra_columns + part_columns,
            trainer.step if resumed else None,
        )
        if main
        else None
    )
    budget = cfg["kimg"]
    next_log = _next_multiple(trainer.kimg, cfg["log_every_kimg"])
    next_eval = _next_multiple(trainer.kimg, cfg["eval_every_kimg"])
    next_ckpt = _next_multiple(trainer.kimg, cfg["checkpoint_every_kimg"])
    next_probe = _next_multiple(trainer.kimg, cfg["diversity_every_kimg"]) if probe else math.inf
    if probe and not resumed:
        curve.write({**_point(trainer), **probe(trainer.G_ema)})
    throughput = Throughput(trainer.images_seen)
    stopped_early = trainer.stopped_early  # a resumed run that had stopped early trains no more
    if stopped_early:
        log.info("the run stopped early at kimg %.2f; writing its outputs", trainer.kimg)
    started = time.perf_counter() - trainer.elapsed
    sums: dict[str, float] = {}
    count = 0

    with StopFlag() as stop:
        while trainer.kimg < budget and not stopped_early:
            # the ranks' mean statistics, and whether any rank got a stop signal
            stats, stopping = distributed.step_means(trainer.train_step(), bool(stop))
            _stop_if_not_finite(trainer, stats)
            for key, value in stats.items():
                sums[key] = sums.get(key, 0.0) + value
            count += 1
            trainer.elapsed = time.perf_counter() - started
            done = trainer.kimg >= budget
            row = None
            if trainer.kimg >= next_log or done:
                row = _log_row(trainer, sums, count, throughput, budget, log)
                sums, count = {}, 0
                next_log = _next_multiple(trainer.kimg, cfg["log_every_kimg"])
            if evaluating and (trainer.kimg >= next_eval or done):
                if evaluator:
                    fid = evaluator.fid(trainer.G_ema)
                    stopped_early = _record_fid(trainer, fid, work, log, cfg["patience"])
                    row = {**(row or _point(trainer)), "fid": fid}
                stopped_early = distributed.from_main(stopped_early, trainer.device)
                trainer.stopped_early = stopped_early
                next_eval = _next_multiple(trainer.kimg, cfg["eval_every_kimg"])
            if trainer.kimg >= next_probe and next_probe <= cfg["diversity_until_kimg"] + 1e-9:
                row = {**(row or _point(trainer)), **probe(trainer.G_ema)}
                next_probe = _next_multiple(trainer.kimg, cfg["diversity_every_kimg"])
            if row and curve:
                curve.write(row)
            if trainer.kimg >= next_ckpt or stopping or done or stopped_early:
                _stop_if_not_finite(trainer, {}, check_weights=True)
                state = trainer.state_dict()  # every rank: it gathers their random streams
                if main:
                    save_checkpoint(work / "checkpoints", trainer.step, state)
                next_ckpt = _next_multiple(trainer.kimg, cfg["checkpoint_every_kimg"])
            if stopping:
                raise Interrupted(
                    f"signal {stop.signal or 'on another rank'} at step {trainer.step}: "
                    "checkpoint written; rerunning the job resumes from it"
                )

    return _finish(trainer, paths, spec, stopped_early, probe, log) if main else {}


def _point(trainer: GANTrainer) -> dict[str, Any]:
    """The columns that place a curve row in training."""
    return {"step": trainer.step, "kimg": trainer.kimg, "seconds": trainer.elapsed}


def _cached_features(path: Path, inception: InceptionFeatures) -> np.ndarray:
    """Cached pool features to compare with this run's images: made under the same resize
    (the backbone's ``train.eval_resize``), else the comparison would measure the resize."""
    features, meta = load_features(path, "pool")
    require_resize(meta, path, inception.convention, "the backbone's train.eval_resize is")
    return features


def _diversity_probe(
    trainer: GANTrainer, paths: TrainPaths, inception: InceptionFeatures
) -> DiversityProbe:
    """The run's diversity probe, against its training subset (not the parts' extra data):
    the subset's cached features, or features computed here when none are given."""
    if paths.subset_features is not None:
        features = _cached_features(paths.subset_features, inception)
        if len(features) != trainer.num_real:
            raise ValueError(
                f"{paths.subset_features} holds {len(features)} feature vectors, the subset "
                f"{paths.subset_manifest} {trainer.num_real} images"
            )
    else:
        subset = trainer.pool[: trainer.num_real].permute(0, 2, 3, 1).numpy()
        features = inception.of_arrays(subset)
    count = trainer.train_cfg["diversity_samples"]
    return DiversityProbe(features, paths.lpips_weights, inception, count, trainer.spec["device"])


def _stop_if_not_finite(
    trainer: GANTrainer, stats: dict[str, float], check_weights: bool = False
) -> None:
    """Raise ``TrainingError`` on a NaN/inf loss (or, before a checkpoint, weight): the run
    stops and the checkpoints on disk, all written from finite weights, are kept."""
    bad = [key for key, value in stats.items() if not math.isfinite(value)]
    if check_weights:
        nets = {"G": trainer.G, "D": trainer.D, "G_ema": trainer.G_ema}
        bad += [
            f"{net_name} weights"
            for net_name, net in nets.items()
            if not all(torch.isfinite(p).all() for p in net.parameters())
        ]
    if bad:
        raise TrainingError(
            f"non-finite {', '.join(bad)} at step {trainer.step}; stopping. The last good "
            f"checkpoint in {trainer.paths.work_dir / 'checkpoints'} is kept (lower the learning "
            "rate or raise r1_gamma, then rerun to resume from it)."
        )


def _next_multiple(kimg: float, every: float) -> float:
    return (math.floor(kimg / every + 1e-9) + 1) * every


def _log_row(
    trainer: GANTrainer,
    sums: dict[str, float],
    count: int,
    throughput: Throughput,
    budget: float,
    log: logging.Logger,
) -> dict[str, Any]:
    means = {k: v / max(count, 1) for k, v in sums.items()}
    sec_per_kimg = throughput.tick(trainer.images_seen)
    eta = (budget - trainer.kimg) * sec_per_kimg
    part_stats = {k: v for p in trainer.parts for k, v in p.stats().items()}
    labels = {"loss_g": "G", "loss_d": "D", "r1": "R1", **{k: k for k in trainer.extra_columns}}
    losses = "  ".join(f"{label} {means[key]:.4f}" for key, label in labels.items() if key in means)
    log.info(
        "kimg %.2f/%g step %d  %s  %.2f s/kimg  ETA %s %s",
        trainer.kimg, budget, trainer.step, losses, sec_per_kimg, _duration(eta),
        " ".join(f"{k} {v:.4g}" for k, v in part_stats.items()),
    )  # fmt: skip
    return {
        "step": trainer.step,
        "kimg": trainer.kimg,
        "seconds": trainer.elapsed,
        "sec_per_kimg": sec_per_kimg,
        **means,
        **part_stats,
    }


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m{seconds % 60:02d}s"


def _record_fid(
    trainer: GANTrainer, fid: float, work: Path, log: logging.Logger, patience: int
) -> bool:
    """Track the FID history, keep the best snapshot; True when early stopping triggers
    (``patience`` consecutive increases; 0: never)."""
    previous = trainer.fid_history[-1][1] if trainer.fid_history else None
    trainer.fid_history.append((trainer.kimg, fid))
    trainer.increases = trainer.increases + 1 if previous is not None and fid > previous else 0
    if trainer.best is None or fid < trainer.best["fid"]:
        trainer.best = {"kimg": trainer.kimg, "step": trainer.step, "fid": fid}
        with atomic_path(work / "best.pt") as tmp:
            torch.save(trainer.G_ema.state_dict(), tmp)
    log.info(
        "FID %.3f at kimg %.2f (best %.3f at kimg %.2f; %d consecutive increase(s))",
        fid, trainer.kimg, trainer.best["fid"], trainer.best["kimg"], trainer.increases,
    )  # fmt: skip
    if patience > 0 and trainer.increases >= patience:
        log.info("early stopping: FID rose %d evaluations in a row", trainer.increases)
        return True
    return False


class _Evaluator:
    """FID of G_ema's images from fixed latents against the reference features."""

    def __init__(self, paths: TrainPaths, inception: InceptionFeatures, cfg: dict[str, Any]):
        self.reference = _cached_features(paths.reference_features, inception)
        self.inception = inception
        self.count = cfg["eval_samples"]

    def fid(self, generator: Generator) -> float:
        images = generate_images(generator, self.count, EVAL_SEED, batch_size=64)
        return fid_from_features(self.inception.of_arrays(images), self.reference)


def _finish(
    trainer: GANTrainer,
    paths: TrainPaths,
    spec: dict[str, Any],
    stopped_early: bool,
    probe: DiversityProbe | None,
    log: logging.Logger,
) -> dict[str, Any]:
    work = paths.work_dir
    state = trainer.G_ema.state_dict()
    if trainer.best is not None:
        state = torch.load(work / "best.pt", map_location="cpu", weights_only=True)
        selected = f"best FID {trainer.best['fid']:.4f} at kimg {trainer.best['kimg']:.2f}"
    else:
        selected = "final generator (no FID evaluation configured)"
    meta = {
        "run": spec["run"],
        "kimg_trained": trainer.kimg,
        "steps": trainer.step,
        "selected": selected,
        "best": trainer.best,
        "stopped_early": stopped_early,
        "fid_history": trainer.fid_history,
        "seconds": trainer.elapsed,
        "device": str(trainer.device),
        "processes": distributed.world_size(),
        "num_real": trainer.num_real,
        "num_pool": len(trainer.pool),
        "seed": spec["seed"],
        "diversity_networks": probe.networks if probe else None,
        "loss_networks": trainer.loss_networks,
        "provenance": provenance(),
    }
    snapshot = {
        "arch": spec["backbone"]["arch"],
        "generator": state,
        "generator_kwargs": trainer.g_kwargs,
        "meta": meta,
    }
    if paths.keep_networks:  # what CDC adapts: the last raw G and D
        snapshot |= {
            "generator_last": trainer.G.state_dict(),
            "discriminator": trainer.D.state_dict(),
            "discriminator_kwargs": trainer.d_kwargs,
        }
    with atomic_path(paths.network_out) as tmp:
        torch.save(snapshot, tmp)
    with atomic_path(paths.curve_out) as tmp:
        shutil.copyfile(work / "curve.csv", tmp)
    log.info("done: %s; %.1f kimg in %s", selected, trainer.kimg, _duration(trainer.elapsed))
    return {**meta, "fid_history": np.asarray(trainer.fid_history).tolist()}
