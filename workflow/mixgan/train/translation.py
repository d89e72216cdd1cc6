"""The training loop of ReMix Tables 2–3 (``mixgan remix-train``): mixing plan, checkpoints.

Both tracks share one loop: each step draws a batch of training pairs (x¹, t¹); the method's
part (at most one of ``remix``, ``mixup``, ``weighted_mixup``) mixes it, with its probability,
with a second batch (x², t²) by λ = max(μ, 1 − μ), μ ~ Beta(α, α), one λ per batch (ReMix
Algorithm 1). Probabilities: ReMix's part ``probability`` (0.25, §4.1); mixup and WM use the
track's ``mix_probability`` (0.25: "we only modify the mentioned losses", so the baselines
get the same schedule; a choice, the paper is silent). The track's trainer does the step.

Every random draw comes from ``torch.Generator``s and the global torch RNG, all saved in the
checkpoints (``<run>/train/checkpoints``), so a resumed run equals an uninterrupted one
bit-exactly on the CPU (``tests/test_remix_tasks.py``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor

from mixgan.train.checkpoint import resume_run, run_state, save_checkpoint, seed_everything
from mixgan.train.paths import Interrupted, TrainingError
from mixgan.train.progress import CurveWriter, StopFlag
from mixgan.train.spade_losses import remix_lambda

MIX_KINDS = {"remix": "remix", "mixup": "mixup", "weighted_mixup": "wm"}


@dataclass(frozen=True)
class MixPlan:
    """The method's mixing: kind (remix, mixup, wm or None), α, probability, ā update."""

    kind: str | None
    alpha: float = 0.2
    probability: float = 0.0
    momentum: float = 0.99

    @classmethod
    def of(cls, parts: list[dict[str, Any]], options: dict[str, Any]) -> MixPlan:
        mixing = [p for p in parts if p["kind"] in MIX_KINDS]
        if len(mixing) > 1:
            raise ValueError("a translation run takes at most one of remix, mixup, weighted_mixup")
        if not mixing:
            return cls(None)
        part = mixing[0]
        kind = MIX_KINDS[part["kind"]]
        probability = (
            part.get("probability", 0.25) if kind == "remix" else options["mix_probability"]
        )
        return cls(kind, part.get("alpha", 0.2), probability, part.get("momentum", 0.99))


class PairedTrainerState:
    """What SPADE's and the NIR-VIS trainer keep in a checkpoint: G, D, their optimisers,
    ReMix's margin ā and the step; and how a step reports its loss terms."""

    generator: torch.nn.Module
    discriminator: torch.nn.Module
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    relative: torch.nn.Module
    step: int

    @staticmethod
    def step_stats(g: dict[str, Tensor], d: dict[str, Tensor]) -> dict[str, float]:
        """The step's G and D loss terms as floats, ``G/<term>`` and ``D/<term>``."""
        return {f"G/{k}": v.item() for k, v in g.items()} | {
            f"D/{k}": v.item() for k, v in d.items()
        }

    def state_dict(self) -> dict[str, Any]:
        return {
            "G": self.generator.state_dict(),
            "D": self.discriminator.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "relative": self.relative.state_dict(),
            "step": self.step,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.load_state_dict(state["G"])
        self.discriminator.load_state_dict(state["D"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.relative.load_state_dict(state["relative"])
        self.step = state["step"]


class Trainer(Protocol):
    step: int

    def train_step(self, first: Tensor, second: Tensor | None, lam: float) -> dict[str, float]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def train_translation(
    trainer: Trainer,
    train_size: int,
    batch: int,
    total_steps: int,
    plan: MixPlan,
    seed: int,
    run_dir: Path,
    options: dict[str, Any],
    log: logging.Logger | None = None,
) -> dict[str, Any]:
    """Train (or resume) ``trainer`` to ``total_steps``; its steps get batch indices (and the
    second batch and λ on mixed steps). Returns a summary of the run."""
    log = log or logging.getLogger(__name__)
    seed_everything(seed)
    data_rng = torch.Generator().manual_seed(seed)
    mix_rng = torch.Generator().manual_seed(seed + 1)
    work = Path(run_dir) / "train"
    seconds, mixed_steps = 0.0, 0
    streams = {"data_rng": data_rng, "mix_rng": mix_rng}
    resumed = resume_run(work / "checkpoints", trainer, streams)
    if resumed is not None:
        seconds, mixed_steps = resumed["seconds"], resumed["mixed_steps"]
        log.info("resuming from step %d of %d", trainer.step, total_steps)

    def checkpoint() -> None:
        state = run_state(trainer, streams, seconds=seconds, mixed_steps=mixed_steps)
        save_checkpoint(work / "checkpoints", trainer.step, state)

    curve = CurveWriter(
        work / "curve.csv",
        ["step", "mixed", "lambda", "losses"],
        trainer.step if resumed is not None else None,
    )
    stats: dict[str, float] = {}
    started = time.perf_counter() - seconds
    batch = min(batch, train_size)
    with StopFlag() as stop:
        while trainer.step < total_steps:
            first = torch.randperm(train_size, generator=data_rng)[:batch]
            second, lam = None, 1.0
            if plan.kind and torch.rand((), generator=mix_rng).item() < plan.probability:
                second = torch.randperm(train_size, generator=data_rng)[:batch]
                lam = remix_lambda(plan.alpha, mix_rng)
                mixed_steps += 1
            stats = trainer.train_step(first, second, lam)
            if not all(np.isfinite(v) for v in stats.values()):
                raise TrainingError(f"non-finite loss at step {trainer.step}: {stats}")
            seconds = time.perf_counter() - started
            done = trainer.step >= total_steps
            if trainer.step % options["log_every"] == 0 or done:
                losses = " ".join(f"{k}={v:.4g}" for k, v in stats.items())
                curve.write(
                    {
                        "step": trainer.step,
                        "mixed": second is not None,
                        "lambda": lam,
                        "losses": losses,
                    }
                )
                log.info("step %d/%d  %s", trainer.step, total_steps, losses)
            if trainer.step % options["checkpoint_every"] == 0 or done or stop:
                checkpoint()
            if stop:
                raise Interrupted(
                    f"signal {stop.signal} at step {trainer.step}: checkpoint "
                    "written; rerunning the job resumes from it"
                )
    return {
        "steps": trainer.step,
        "seconds": seconds,
        "mixed_steps": mixed_steps,
        "mixing": plan.__dict__,
        "last_losses": stats,
    }
