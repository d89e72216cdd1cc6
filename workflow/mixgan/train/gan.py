"""The unconditional GAN training loop (StyleGAN2; FastGAN's step in ``mixgan.train.fastgan``),
with method parts.

One loop for every method: the parts of the run's method (``mixgan.train.parts``) add
real data, augment what D sees, add loss terms, or compute the losses of some steps themselves
(MixDL, with heads that D's optimiser trains). The loop trains for a budget in kimg, evaluates
FID every ``eval_every_kimg`` on a fixed set of latents, stops after ``patience`` consecutive
FID increases (the ScoreMix paper's protocol), and keeps the best snapshot. When
``diversity_every_kimg`` is set, it also probes the samples' diversity from kimg 0 to
``diversity_until_kimg`` (``mixgan.train.diversity``, MixDL's Fig. 8).

Real batches are drawn uniformly with replacement from the pool (the subset plus the parts'
extra images). Progress is resumable: checkpoints (not declared workflow outputs) hold the networks,
optimisers, parts, RNG streams and evaluation history; a restarted job continues the same
run. The declared outputs (network.pt, curve.csv, run.json) are written only at the end.

On a GPU the run's ``precision``, ``channels_last`` and ``fused_fir`` settings choose the
arithmetic and kernels (see ``GANTrainer.__init__``), and cuDNN picks its fastest algorithms
for the fixed shapes (``cudnn.benchmark``), so GPU runs are seeded but not bitwise repeatable;
``compile`` compiles the main passes on any device.
"""

from __future__ import annotations

import copy
import logging
import math
import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from mixgan.data.imagezip import read_image_zip, to_tensor
from mixgan.io import atomic_path, read_json, write_json
from mixgan.metrics.features import load_features
from mixgan.metrics.fid_kid import fid_from_features
from mixgan.metrics.inception import InceptionFeatures, pick_device
from mixgan.nets.stylegan2 import Discriminator, Generator, use_fused_fir
from mixgan.provenance import provenance
from mixgan.sample import generate_images
from mixgan.train.checkpoint import (
    load_latest_checkpoint,
    rng_state,
    save_checkpoint,
    seed_everything,
    set_rng_state,
)
from mixgan.train.diversity import COLUMNS as DIVERSITY_COLUMNS
from mixgan.train.diversity import DiversityProbe
from mixgan.train.parts import Part, PartInputs, build_parts
from mixgan.train.progress import CurveWriter, StopFlag, Throughput

CURVE_COLUMNS = [
    "step", "kimg", "seconds", "sec_per_kimg", "loss_g", "loss_d", "r1", "pl",
    "logits_real", "logits_fake", "fid", *DIVERSITY_COLUMNS,
]  # fmt: skip
EVAL_SEED = 2**31 - 1  # the fixed latents every evaluation of every run uses


class TrainingError(RuntimeError):
    """Training cannot continue (e.g. a non-finite loss); the last good checkpoint is kept."""


class Interrupted(RuntimeError):
    """Stopped by a signal after writing a checkpoint; the next attempt resumes."""


@dataclass
class TrainPaths:
    """Files one training reads and writes."""

    data_zip: Path
    subset_manifest: Path
    run_dir: Path
    network_out: Path
    curve_out: Path
    augmented_zip: Path | None = None
    scorenet: Path | None = None
    reference_features: Path | None = None
    inception: Path | None = None
    lpips_weights: Path | None = None
    subset_features: Path | None = None
    vgg_weights: Path | None = None
    source_model: Path | None = None
    keep_networks: bool = False  # network.pt also holds the last G and D (a CDC source)

    @property
    def work_dir(self) -> Path:
        """Progress that survives a failed job: checkpoints, live curve, best snapshot."""
        return self.run_dir / "train"


def network_kwargs(spec: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Generator and discriminator constructor arguments of a run spec."""
    backbone = spec["backbone"]
    shared = {
        "c_dim": 0,
        "img_resolution": spec["resolution"],
        "img_channels": 3,
        "channel_base": backbone["channel_base"],
        "channel_max": backbone["channel_max"],
        "width": backbone["width"],
    }
    g_kwargs = {
        **shared,
        "z_dim": backbone["z_dim"],
        "w_dim": backbone["w_dim"],
        "mapping_layers": backbone["mapping_layers"],
    }
    d_kwargs = {**shared, "mbstd_group_size": backbone["mbstd_group"]}
    return g_kwargs, d_kwargs


def load_real_pool(paths: TrainPaths, parts: list[Part]) -> tuple[torch.Tensor, int]:
    """NCHW uint8 images D sees as real: the subset plus what the parts add; and the subset size."""
    names = [image["name"] for image in read_json(paths.subset_manifest)["images"]]
    pool = [to_tensor(read_image_zip(paths.data_zip, names))]
    pool += [extra for part in parts if (extra := part.extra_real()) is not None]
    return torch.cat(pool), len(names)


class GANTrainer:
    """State and steps of one StyleGAN2 run (subclasses change the networks and the step:
    ``mixgan.train.fastgan.FastGANTrainer``, ``mixgan.train.biggan.BigGANTrainer``)."""

    extra_columns: ClassVar[list[str]] = []  # the step's statistics beyond CURVE_COLUMNS

    def __init__(self, spec: dict[str, Any], paths: TrainPaths, log: logging.Logger):
        self.spec, self.paths, self.log = spec, paths, log
        self.train_cfg = spec["backbone"]["train"]
        self.device = pick_device(spec["device"])
        seed_everything(spec["seed"])
        inputs = PartInputs(paths.augmented_zip, paths.scorenet, paths.source_model, self.device)
        self.parts = build_parts(spec["method"]["parts"], inputs)
        self.pool, self.num_real = load_real_pool(paths, self.parts)
        for part in self.parts:
            part.set_training_images(self.pool[: self.num_real])
        on_gpu = self.device.type == "cuda"
        self.precision = self.train_cfg["precision"] if on_gpu else "fp32"
        self.memory_format = (
            torch.channels_last
            if on_gpu and self.train_cfg["channels_last"]
            else torch.contiguous_format
        )
        if on_gpu:
            use_gpu_arithmetic(self.precision)
        # Records (SHA-256, stand-in flag) of pretrained networks inside the losses, by role.
        self.loss_networks: dict[str, dict[str, Any]] = {}
        self.G, self.D = (
            net.to(self.device, memory_format=self.memory_format).train()
            for net in self.build_networks()
        )
        for part in self.parts:  # CDC starts from a source model's weights
            part.initialize_networks(self.G, self.D)
            self.loss_networks.update(part.networks())
        # Modules the parts train beside D (MixDL's heads), with D's optimiser.
        self.part_modules = [
            module.to(self.device, memory_format=self.memory_format).train()
            for part in self.parts
            for module in part.trainable_modules(self.G, self.D)
        ]
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)
        for part in self.parts:
            if (ema := part.initial_ema()) is not None:
                self.G_ema.load_state_dict(ema)
        d_params = [*self.D.parameters(), *(p for m in self.part_modules for p in m.parameters())]
        self.opt_g, self.opt_d = self.build_optimizers(d_params)
        self.pl_mean = torch.zeros((), device=self.device)
        self.step, self.images_seen, self.elapsed = 0, 0, 0.0
        self.fid_history: list[tuple[float, float]] = []
        self.best: dict[str, float] | None = None
        self.increases = 0

    @property
    def uses_pl(self) -> bool:
        return self.train_cfg["pl_weight"] > 0

    def build_networks(self) -> tuple[torch.nn.Module, torch.nn.Module]:
        """G and D of the run (``self.g_kwargs`` keeps G's constructor arguments)."""
        self.g_kwargs, self.d_kwargs = network_kwargs(self.spec)
        use_fused_fir(self.device.type == "cuda" and self.train_cfg["fused_fir"])
        return Generator(**self.g_kwargs), Discriminator(**self.d_kwargs)

    def build_optimizers(
        self, d_params: list[torch.Tensor]
    ) -> tuple[torch.optim.Adam, torch.optim.Adam]:
        """Adam for G and for D (with the parts' modules), adjusted for lazy regularisation;
        also the main passes, compiled when the run asks."""
        # The main passes may run compiled; R1 and path-length regularisation differentiate
        # twice, which torch.compile does not support, so they use the eager modules.
        compiled = self.train_cfg["compile"]
        self.synthesis_main = torch.compile(self.G.synthesis) if compiled else self.G.synthesis
        self.D_main = torch.compile(self.D) if compiled else self.D
        opt_g = self._adam(
            self.G.parameters(), self.train_cfg["pl_interval"] if self.uses_pl else None
        )
        return opt_g, self._adam(d_params, self.train_cfg["r1_interval"])

    def _adam(self, params: Iterable[torch.Tensor], reg_interval: int | None) -> torch.optim.Adam:
        lr, betas = self.train_cfg["lr"], self.train_cfg["betas"]
        ratio = reg_interval / (reg_interval + 1) if reg_interval else 1.0
        return torch.optim.Adam(
            params,
            lr=lr * ratio,
            betas=[b**ratio for b in betas],
            eps=1e-8,
            fused=self.device.type == "cuda",
        )

    # -- state ----------------------------------------------------------------------

    @property
    def kimg(self) -> float:
        return self.images_seen / 1000

    def state_dict(self) -> dict[str, Any]:
        return {
            "G": self.G.state_dict(),
            "D": self.D.state_dict(),
            "G_ema": self.G_ema.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "pl_mean": self.pl_mean,
            "parts": {p.name: p.state_dict() for p in self.parts},
            "rng": rng_state(),
            "step": self.step,
            "images_seen": self.images_seen,
            "elapsed": self.elapsed,
            "fid_history": self.fid_history,
            "best": self.best,
            "increases": self.increases,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.G.load_state_dict(state["G"])
        self.D.load_state_dict(state["D"])
        self.G_ema.load_state_dict(state["G_ema"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.pl_mean = state.get("pl_mean", torch.zeros(())).to(self.device)
        for part in self.parts:
            part.load_state_dict(state["parts"].get(part.name, {}))
        set_rng_state(state["rng"])
        self.step, self.images_seen = state["step"], state["images_seen"]
        self.elapsed, self.fid_history = state["elapsed"], [tuple(x) for x in state["fid_history"]]
        self.best, self.increases = state["best"], state["increases"]

    # -- one iteration ----------------------------------------------------------------

    def real_batch(self, batch: int) -> torch.Tensor:
        index = torch.randint(len(self.pool), (batch,))
        images = self.pool[index].to(self.device, torch.float32) / 127.5 - 1
        return images.contiguous(memory_format=self.memory_format)

    def autocast(self) -> torch.autocast:
        """bf16 autocast for the synthesis network and D when the run's precision is bf16."""
        return torch.autocast(self.device.type, torch.bfloat16, enabled=self.precision == "bf16")

    def sample_z(self, count: int) -> torch.Tensor:
        """Input latents z ~ N(0, I) of ``count`` new samples."""
        return torch.randn(count, self.G.z_dim, device=self.device)

    def generate_ws(self, z: torch.Tensor) -> torch.Tensor:
        """Latents w of samples with input latents ``z``, with style mixing: when drawn, the
        layers from a random cutoff on take the styles of a second, new latent."""
        ws = self.G.mapping(z, None, update_emas=True)
        if self.train_cfg["style_mixing"] > 0 and torch.rand(()) < self.train_cfg["style_mixing"]:
            cutoff = int(torch.randint(1, ws.shape[1], ()))
            z2 = self.sample_z(len(z))
            ws[:, cutoff:] = self.G.mapping(z2, None, update_emas=False)[:, cutoff:]
        return ws

    def mapped_ws(self, count: int) -> torch.Tensor:
        """Latents w of ``count`` new samples without style mixing (for the parts)."""
        return self.G.mapping(self.sample_z(count), None, update_emas=True)

    def generate(self, z: torch.Tensor) -> torch.Tensor:
        """G's images ([-1, 1], float32) of input latents ``z``."""
        ws = self.generate_ws(z)
        with self.autocast():
            images = self.synthesis_main(ws, noise_mode="random")
        return images.float()

    def augment(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """The parts' ``augment_d_input``, in stage order (``labels``: class-conditional)."""
        for part in self.parts:
            images = part.augment_d_input(images, labels)
        return images

    def discriminate(self, images: torch.Tensor, main: bool = True) -> torch.Tensor:
        """D's logits (float32) on ``images`` after the parts' augmentations; ``main=False``
        uses the eager D, which can be differentiated twice."""
        images = self.augment(images)
        with self.autocast():
            logits = (self.D_main if main else self.D)(images, None)
        return logits.float()

    def g_regularization(self, z: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        """The sum of the parts' ``g_regularizer`` terms for latents ``z`` and images."""
        terms = [t for part in self.parts if (t := part.g_regularizer(z, images)) is not None]
        return sum(terms, torch.zeros((), device=self.device))

    def set_d_trainable(self, trainable: bool) -> None:
        """Switch gradients of D and the parts' modules on (D steps) or off (G steps)."""
        for module in (self.D, *self.part_modules):
            module.requires_grad_(trainable)

    def train_step(self) -> dict[str, torch.Tensor]:
        batch = self.train_cfg["batch"]
        # A part may compute this step's losses itself (MixDL's steps).
        owner = next((p for p in self.parts if p.computes_losses(self.step)), None)
        # Generator: non-saturating logistic loss.
        self.set_d_trainable(False)
        if owner is None:
            z = self.sample_z(batch)
            fake = self.generate(z)
            loss_g = F.softplus(-self.discriminate(fake)).mean() + self.g_regularization(z, fake)
        else:
            loss_g = owner.g_loss(self, batch)
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        self.opt_g.step()
        pl = torch.zeros((), device=self.device)
        if self.uses_pl and self.step % self.train_cfg["pl_interval"] == 0:
            pl = self.pl_step(batch)
        self.set_d_trainable(True)

        # Discriminator: logistic loss plus the parts' regularizers.
        if owner is None:
            with torch.no_grad():
                fake = self.generate(self.sample_z(batch))
        real = self.real_batch(batch)
        for part in self.parts:
            real = part.augment_real(real)
        if owner is None:
            logits_fake = self.discriminate(fake)
            logits_real = self.discriminate(real)
            loss_d = F.softplus(logits_fake).mean() + F.softplus(-logits_real).mean()
        else:
            loss_d, logits_real, logits_fake = owner.d_loss(self, real)
        loss_d = self.step_d(loss_d, logits_real, logits_fake)

        r1 = torch.zeros((), device=self.device)
        if self.train_cfg["r1_gamma"] > 0 and self.step % self.train_cfg["r1_interval"] == 0:
            r1 = self.r1_step(real, owner)

        self.update_ema(batch)
        self.step += 1
        self.images_seen += batch
        return {
            "loss_g": loss_g.detach(),
            "loss_d": loss_d.detach(),
            "r1": r1.detach(),
            "pl": pl.detach(),
            "logits_real": logits_real.detach().mean(),
            "logits_fake": logits_fake.detach().mean(),
        }

    def step_d(
        self, loss_d: torch.Tensor, logits_real: torch.Tensor, logits_fake: torch.Tensor
    ) -> torch.Tensor:
        """One optimiser step of D on ``loss_d`` plus the parts' ``d_regularizer`` terms (of
        D's logits on reals and fakes), then the parts' ``after_d_step``; returns the loss."""
        for part in self.parts:
            extra = part.d_regularizer(logits_real, logits_fake)
            if extra is not None:
                loss_d = loss_d + extra
        self.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        self.opt_d.step()
        for part in self.parts:
            part.after_d_step(logits_real.detach())
        return loss_d

    def pl_step(self, batch: int) -> torch.Tensor:
        """Lazy path-length regularisation: weight E(|J_w^T y| - a)², a an EMA of |J_w^T y|,
        y ~ N(0, I / (H W)), on batch / pl_batch_shrink samples, scaled by the interval."""
        cfg = self.train_cfg
        ws = self.generate_ws(self.sample_z(max(batch // cfg["pl_batch_shrink"], 1)))
        with self.autocast():
            images = self.G.synthesis(ws, noise_mode="random").float()
        noise = torch.randn_like(images) / math.sqrt(images.shape[2] * images.shape[3])
        lengths = path_lengths(images, ws, noise)
        self.pl_mean = self.pl_mean.lerp(lengths.mean().detach(), cfg["pl_decay"])
        penalty = (lengths - self.pl_mean).square().mean()
        self.opt_g.zero_grad(set_to_none=True)
        (penalty * cfg["pl_weight"] * cfg["pl_interval"]).backward()
        self.opt_g.step()
        return penalty.detach()

    def r1_step(self, real: torch.Tensor, owner: Part | None = None) -> torch.Tensor:
        """Lazy R1: gamma/2 E||grad_x D(x)||² on reals, scaled by the interval; on a step a
        part computes, of the logits the part's ``r1_logits`` gives (default: D's)."""
        real = real.detach().requires_grad_(True)
        logits = owner.r1_logits(self, real) if owner is not None else None
        if logits is None:
            logits = self.discriminate(real, main=False)
        (grad,) = torch.autograd.grad(logits.sum(), real, create_graph=True)
        penalty = grad.square().sum(dim=[1, 2, 3]).mean()
        loss = penalty * (self.train_cfg["r1_gamma"] / 2) * self.train_cfg["r1_interval"]
        self.opt_d.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_d.step()
        return penalty.detach()

    @torch.no_grad()
    def update_ema(self, batch: int) -> None:
        half_life = self.train_cfg["ema_kimg"] * 1000
        beta = 0.5 ** (batch / max(half_life, 1e-8)) if half_life > 0 else 0.0
        params_ema, params = list(self.G_ema.parameters()), list(self.G.parameters())
        torch._foreach_lerp_(params_ema, params, 1.0 - beta)  # p_ema <- p + beta (p_ema - p)
        for b_ema, b in zip(self.G_ema.buffers(), self.G.buffers(), strict=True):
            b_ema.copy_(b)


def use_gpu_arithmetic(precision: str) -> None:
    """Set the process-wide GPU flags of a run's precision: TensorFloat-32 in cuDNN
    convolutions and cuBLAS matrix products unless ``fp32``, and cuDNN's autotuner."""
    tf32 = precision != "fp32"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cudnn.benchmark = True


def path_lengths(images: torch.Tensor, ws: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """|J_w^T y| per sample (StyleGAN2): y = ``noise``, J the Jacobian of ``images`` w.r.t.
    ``ws`` ([N, layers, w_dim]); squared norms averaged over the layers. Differentiable."""
    (grads,) = torch.autograd.grad((images * noise).sum(), ws, create_graph=True)
    return grads.square().sum(2).mean(1).sqrt()


def make_trainer(spec: dict[str, Any], paths: TrainPaths, log: logging.Logger) -> GANTrainer:
    """The trainer of the run's backbone architecture."""
    if spec["backbone"]["arch"] == "fastgan":
        from mixgan.train.fastgan import FastGANTrainer  # imports this module

        return FastGANTrainer(spec, paths, log)
    if spec["backbone"]["arch"] == "biggan":
        from mixgan.train.biggan import BigGANTrainer  # imports this module

        return BigGANTrainer(spec, paths, log)
    return GANTrainer(spec, paths, log)


def train_gan(spec: dict[str, Any], paths: TrainPaths, log: logging.Logger) -> dict[str, Any]:
    """Train (or resume) one run; write network.pt, curve.csv and run.json; return the summary."""
    cfg = spec["backbone"]["train"]
    probing = cfg["diversity_every_kimg"] > 0
    if probing and paths.inception is None:
        raise ValueError("train.diversity_every_kimg > 0 needs the Inception weights (--inception)")
    trainer = make_trainer(spec, paths, log)
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
    write_json(work / "spec.json", {**spec, "provenance": provenance()})

    inception = (
        InceptionFeatures(paths.inception, spec["device"])
        if paths.reference_features or probing
        else None
    )
    evaluator = _Evaluator(paths, inception, cfg) if paths.reference_features else None
    probe = _diversity_probe(trainer, paths, inception) if probing else None
    part_columns = [key for part in trainer.parts for key in part.stats()]
    curve = CurveWriter(
        work / "curve.csv",
        CURVE_COLUMNS + trainer.extra_columns + part_columns,
        trainer.step if resumed else None,
    )
    budget = cfg["kimg"]
    next_log = _next_multiple(trainer.kimg, cfg["log_every_kimg"])
    next_eval = _next_multiple(trainer.kimg, cfg["eval_every_kimg"])
    next_ckpt = _next_multiple(trainer.kimg, cfg["checkpoint_every_kimg"])
    next_probe = _next_multiple(trainer.kimg, cfg["diversity_every_kimg"]) if probe else math.inf
    if probe and not resumed:
        curve.write({**_point(trainer), **probe(trainer.G_ema)})
    throughput = Throughput(trainer.images_seen)
    stopped_early = False
    started = time.perf_counter() - trainer.elapsed
    sums: dict[str, float] = {}
    count = 0

    with StopFlag() as stop:
        while trainer.kimg < budget and not stopped_early:
            step_stats = trainer.train_step()
            values = torch.stack(list(step_stats.values())).tolist()  # one device sync
            stats = dict(zip(step_stats, values, strict=True))
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
            if evaluator and (trainer.kimg >= next_eval or done):
                fid = evaluator.fid(trainer.G_ema)
                stopped_early = _record_fid(trainer, fid, work, log, cfg["patience"])
                row = {**(row or _point(trainer)), "fid": fid}
                next_eval = _next_multiple(trainer.kimg, cfg["eval_every_kimg"])
            if trainer.kimg >= next_probe and next_probe <= cfg["diversity_until_kimg"] + 1e-9:
                row = {**(row or _point(trainer)), **probe(trainer.G_ema)}
                next_probe = _next_multiple(trainer.kimg, cfg["diversity_every_kimg"])
            if row:
                curve.write(row)
            if trainer.kimg >= next_ckpt or stop or done or stopped_early:
                _stop_if_not_finite(trainer, {}, check_weights=True)
                save_checkpoint(work / "checkpoints", trainer.step, trainer.state_dict())
                next_ckpt = _next_multiple(trainer.kimg, cfg["checkpoint_every_kimg"])
            if stop:
                raise Interrupted(
                    f"signal {stop.signal} at step {trainer.step}: checkpoint written; "
                    "rerunning the job resumes from it"
                )

    return _finish(trainer, paths, spec, stopped_early, probe, log)


def _point(trainer: GANTrainer) -> dict[str, Any]:
    """The columns that place a curve row in training."""
    return {"step": trainer.step, "kimg": trainer.kimg, "seconds": trainer.elapsed}


def _diversity_probe(
    trainer: GANTrainer, paths: TrainPaths, inception: InceptionFeatures
) -> DiversityProbe:
    """The run's diversity probe, against its training subset (not the parts' extra data):
    the subset's cached features, or features computed here when none are given."""
    if paths.subset_features is not None:
        features, _ = load_features(paths.subset_features)
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
    """Track the FID history, keep the best snapshot; True when early stopping triggers."""
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
    if trainer.increases >= patience:
        log.info("early stopping: FID rose %d evaluations in a row", trainer.increases)
        return True
    return False


class _Evaluator:
    """FID of G_ema's images from fixed latents against the reference features."""

    def __init__(self, paths: TrainPaths, inception: InceptionFeatures, cfg: dict[str, Any]):
        self.reference, _ = load_features(paths.reference_features)
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
