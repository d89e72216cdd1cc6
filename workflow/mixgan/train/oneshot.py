"""One SinCUT run of one one-shot task (ScoreMix Table 7): train, checkpoint, resume, translate.

A one-shot run is (task pair, method, seed): SinCUT (``mixgan.train.sincut``) learns to
translate one source image into the style of one target image from patches of both
(``mixgan.train.sincut_data``), then translates the whole source image. The backbone's
``options`` set the SinCUT settings (:data:`OPTION_KEYS`; unset ones are the official
``--model sincut`` values, 100,000 iterations of 16 crops) and the run's bookkeeping.

ScoreMix (§4.6, "we use the proposed ScoreMix method to increase the diversity of training
image patches") is the method's ``scoremix`` part, read here as the image-to-image rule of the
paper (the generator's inputs are augmented) in its static form: ``scorenet_crops`` patches of
the source image (:func:`source_crops`) play the training set, a score network trained on them
and ``mu`` x ``scorenet_crops`` ScoreMix patches of pairs of them are made by the workflow's
``train-scorenet`` and ``augment`` commands, and each source patch G translates is replaced by
a ScoreMix patch with probability mu / (mu + 1), the share the augmented images have in a set
grown (mu + 1)-fold. The target patches (D's reals, the identity input) are never mixed.

Progress goes to ``<run>/train/checkpoints`` every ``checkpoint_every`` iterations and on
SIGTERM; a rerun resumes from the newest one and ends bit-exactly where an uninterrupted run
ends (on the CPU): the patch sampler, ScoreMix draws and the trainer's generators are saved.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mixgan.errors import ConfigError
from mixgan.train.checkpoint import resume_run, run_state, save_checkpoint
from mixgan.train.paths import Interrupted, TrainingError
from mixgan.train.progress import CurveWriter, StopFlag
from mixgan.train.sincut import SinCUTSettings, SinCUTTrainer
from mixgan.train.sincut_data import sample_patches, translate

#: SinCUT settings a backbone's ``options`` may set: option name -> SinCUTSettings field
SETTING_OPTIONS = {"crops": "batch_size", "crop_size": "patch_size"} | {
    f.name: f.name for f in fields(SinCUTSettings) if f.name not in ("batch_size", "patch_size")
}
#: the run's own options and their defaults
RUN_OPTIONS: dict[str, Any] = {"checkpoint_every": 2000, "log_every": 500, "scorenet_crops": 1000}
OPTION_KEYS = frozenset(SETTING_OPTIONS) | frozenset(RUN_OPTIONS)


def sincut_options(options: dict[str, Any], where: str = "options") -> dict[str, Any]:
    """The backbone's options with defaults, checked: unknown keys and bad values name the key."""
    unknown = sorted(set(options) - OPTION_KEYS)
    if unknown:
        raise ConfigError(
            [f"{where}.{key}: unknown SinCUT option (known: {', '.join(sorted(OPTION_KEYS))})"
             for key in unknown]
        )  # fmt: skip
    resolved = RUN_OPTIONS | dict(options)
    problems = [
        f"{where}.{key}: must be a positive integer, got {resolved[key]!r}"
        for key in ("crops", "crop_size", "checkpoint_every", "log_every", "scorenet_crops")
        if key in resolved and (not isinstance(resolved[key], int) or resolved[key] < 1)
    ]
    if resolved.get("crop_size", 8) < 8:
        problems.append(f"{where}.crop_size: at least 8 (the discriminator's 4x4 head)")
    if problems:
        raise ConfigError(problems)
    return resolved


def sincut_settings(options: dict[str, Any]) -> SinCUTSettings:
    """SinCUT's settings from a backbone's (checked) options; the rest are official."""
    values = {SETTING_OPTIONS[k]: v for k, v in options.items() if k in SETTING_OPTIONS}
    if "nce_layers" in values:
        values["nce_layers"] = tuple(values["nce_layers"])
    return SinCUTSettings(**values)


def to_signed(images: np.ndarray) -> Tensor:
    """NHWC (or HWC) uint8 -> NCHW (CHW) float in [-1, 1]."""
    tensor = torch.from_numpy(np.array(images, dtype=np.float32)) / 127.5 - 1.0
    return tensor.movedim(-1, -3).contiguous()


def to_uint8(image: Tensor) -> np.ndarray:
    """CHW float in [-1, 1] -> HWC uint8 (as the official ``tensor2im``: (x + 1) / 2 x 255)."""
    scaled = ((image.detach().float().cpu() + 1.0) * 127.5).round().clamp(0, 255)
    return scaled.to(torch.uint8).permute(1, 2, 0).numpy()


def source_crops(source: np.ndarray, options: dict[str, Any], seed: int) -> np.ndarray:
    """The ``scorenet_crops`` patches of the source image the score network trains on and
    ScoreMix mixes (NHWC uint8), cut as SinCUT's loader cuts its training patches."""
    generator = torch.Generator().manual_seed(seed)
    patches = sample_patches(
        to_signed(source), options["scorenet_crops"], options.get("crop_size", 128), generator
    )
    return np.stack([to_uint8(p) for p in patches])


class PoolAugment:
    """``augment_inputs`` of SinCUT with a static ScoreMix set: each patch is replaced by a
    uniformly drawn set image with probability ``mu / (mu + 1)`` (seeded, resumable)."""

    def __init__(self, pool: Tensor, mu: int, seed: int) -> None:
        self.pool = pool
        self.probability = mu / (mu + 1)
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, patches: Tensor) -> Tensor:
        count = len(patches)
        replace = torch.rand(count, generator=self.generator) < self.probability
        index = torch.randint(len(self.pool), (count,), generator=self.generator)
        mixed = patches.clone()
        mixed[replace] = self.pool[index[replace]].to(patches.device, patches.dtype)
        return mixed


def train_oneshot(
    spec: dict[str, Any],
    source: np.ndarray,
    target: np.ndarray,
    run_dir: Path,
    pool: np.ndarray | None = None,
    device: torch.device | str = "cpu",
    log: logging.Logger | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Train (or resume) one SinCUT run of ``spec`` on HWC uint8 ``source`` and ``target``;
    ``pool`` holds the method's ScoreMix patches. Returns the translated source (HWC uint8)
    and a summary (iterations, seconds over all attempts, last losses)."""
    log = log or logging.getLogger(__name__)
    backbone = spec["backbone"]
    options = sincut_options(backbone.get("options", {}), f"backbones.{backbone['name']}.options")
    settings = sincut_settings(options)
    seed = int(spec["seed"])
    device = torch.device(device)
    part = next((p for p in spec["method"]["parts"] if p["kind"] == "scoremix"), None)
    if (part is None) != (pool is None):
        raise ValueError("a ScoreMix set is needed exactly when the method has a scoremix part")
    augment = PoolAugment(to_signed(pool), part["mu"], seed) if pool is not None else None
    trainer = SinCUTTrainer(settings, seed, device, augment)
    data_rng = torch.Generator().manual_seed(seed)
    work = Path(run_dir) / "train"
    seconds = 0.0
    streams = {"data_rng": data_rng}
    if augment is not None:
        streams["augment_rng"] = augment.generator
    # SinCUT's steps draw only from these streams: the global RNGs are not part of its state
    resumed = resume_run(work / "checkpoints", trainer, streams, global_rng=False)
    if resumed is not None:
        seconds = resumed["seconds"]
        log.info("resuming from iteration %d of %d", trainer.step, settings.total_iterations)

    def checkpoint() -> None:
        state = run_state(trainer, streams, global_rng=False, seconds=seconds)
        save_checkpoint(work / "checkpoints", trainer.step, state)

    source_t, target_t = to_signed(source), to_signed(target)
    curve = CurveWriter(
        work / "curve.csv",
        ["step", "G/total", "G/gan", "G/nce", "G/nce_idt", "G/idt", "D/gan", "D/r1", "lr"],
        trainer.step if resumed is not None else None,
    )
    stats: dict[str, float] = {}
    started = time.perf_counter() - seconds
    with StopFlag() as stop:
        while trainer.step < settings.total_iterations:
            real_a = sample_patches(source_t, settings.batch_size, settings.patch_size, data_rng)
            real_b = sample_patches(target_t, settings.batch_size, settings.patch_size, data_rng)
            stats = trainer.train_step(real_a, real_b)
            if not all(np.isfinite(v) for v in stats.values()):
                raise TrainingError(f"non-finite loss at iteration {trainer.step}: {stats}")
            seconds = time.perf_counter() - started
            done = trainer.step >= settings.total_iterations
            if trainer.step % options["log_every"] == 0 or done:
                curve.write({"step": trainer.step, **stats})
                log.info(
                    "iteration %d/%d  G %.3f  NCE %.3f  D %.3f  %.2f s/it",
                    trainer.step, settings.total_iterations, stats["G/total"], stats["G/nce"],
                    stats["D/gan"], seconds / max(trainer.step, 1),
                )  # fmt: skip
            if trainer.step % options["checkpoint_every"] == 0 or done or stop:
                checkpoint()
            if stop:
                raise Interrupted(
                    f"signal {stop.signal} at iteration {trainer.step}: checkpoint written; "
                    "rerunning the job resumes from it"
                )
    trainer.generator.eval()
    noise = torch.Generator(device).manual_seed(seed)
    image = to_uint8(translate(trainer.generator, source_t, noise))
    summary = {
        "iterations": trainer.step,
        "official_iterations": SinCUTSettings().total_iterations,
        "seconds": seconds,
        "settings": asdict(settings),
        "options": options,
        "scoremix_probability": None if augment is None else augment.probability,
        "scoremix_pool": None if pool is None else len(pool),
        "last_losses": stats,
        "output_size": list(image.shape[1::-1]),
    }
    return image, summary
