"""Training the ScoreMix score network by multi-scale denoising score matching (Section 3.3).

The run is resumable: every ``checkpoint_every`` iterations the model, its EMA, the optimiser,
the random streams and the partial log interval go to ``out_dir/checkpoints``; a later call
with the same settings continues from the newest checkpoint and ends with exactly the weights
of an uninterrupted run (on CPU). Batches are drawn without replacement from per-epoch
permutations that depend only on the seed and the epoch, so they need no saved state.
"""

from __future__ import annotations

import copy
import csv
import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mixgan.io import atomic_open, atomic_path
from mixgan.nets.ncsn import ScoreNet
from mixgan.scores import dsm_loss, geometric_sigmas, level_at, max_pairwise_distance
from mixgan.train.checkpoint import (
    load_latest_checkpoint,
    rng_state,
    save_checkpoint,
    seed_everything,
    set_rng_state,
)

DEFAULTS: dict[str, Any] = {
    "ngf": 128,
    "pooled_stages": "auto",
    "norm": "cond_instance_plus",
    "sigma_min": 0.01,
    "gamma": 0.99,
    "num_levels": None,
    "sigma_max": "auto",
    "lr": 1e-4,
    "adam_eps": 1e-8,
    "warmup": 0,
    "grad_clip": 0.0,
    "batch": 32,
    "iterations": 300_000,
    "ema": 0.999,
    "checkpoint_every": 5000,
    "log_every": 100,
    "seed": 0,
    "device": "auto",
    "flip": False,
    "max_level_t": 1.0,
}
CURVE_FIELDS = ("step", "loss", "loss_ema", "sec_per_iter")
# settings a resumed run may change: the others define the run and must match its checkpoint
RESUMABLE_CHANGES = ("iterations", "checkpoint_every", "log_every", "device")


def train_score_net(
    images: Tensor,
    settings: dict[str, Any],
    out_dir: Path,
    log: logging.Logger | None = None,
) -> dict[str, Any]:
    """Train S_θ on ``images`` (uint8 ``[N, C, H, W]``) and write ``out_dir/scorenet.pt``.

    ``settings`` overrides :data:`DEFAULTS` (unknown keys are an error). ``sigma_max: "auto"``
    uses the largest pairwise distance of the images (NCSNv2's Technique 1); ``num_levels``,
    when set, fixes the number of levels instead of ``gamma``. Adam(lr, betas (0.9, 0.999),
    ``adam_eps``), the learning rate warmed up linearly over ``warmup`` iterations and the
    gradient norm clipped at ``grad_clip`` when those are positive (score-SDE's schedule); the
    EMA of the weights (rate ``ema``) is what gets saved. Random horizontal flips only with
    ``flip: true``. ``max_level_t`` below 1 trains only the levels at VE times t <= it
    (``mixgan.scores.level_at``: 0 is σ_N, 1 is σ_1). A checkpoint in ``out_dir/checkpoints``
    is resumed; one trained with other settings (apart from :data:`RESUMABLE_CHANGES`) is an
    error.

    ``out_dir/curve.csv`` gets one row per ``log_every`` iterations: the mean training loss of
    the interval, ``loss_ema`` — the loss of the EMA network on a fixed batch with fixed noise
    (comparable between rows) — and seconds per iteration. Returns a summary dict.
    """
    unknown = set(settings) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"unknown score-net settings: {sorted(unknown)}")
    cfg = {**DEFAULTS, **settings}
    log = log or logging.getLogger(__name__)
    out_dir = Path(out_dir)
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[2] != images.shape[3]:
        raise ValueError("images must be uint8 [N, C, H, W] with square images")
    device = _resolve_device(cfg["device"])
    iterations, batch = int(cfg["iterations"]), int(cfg["batch"])

    seed_everything(cfg["seed"])
    resumed = load_latest_checkpoint(out_dir / "checkpoints")
    if resumed is not None:
        changed = [
            key
            for key in DEFAULTS
            if key not in RESUMABLE_CHANGES
            and resumed[1]["settings"].get(key, DEFAULTS[key]) != cfg[key]
        ]
        if changed:
            raise ValueError(f"{out_dir}: checkpoint was trained with other {changed}")
        sigmas = resumed[1]["sigmas"]
    else:
        sigma_max = cfg["sigma_max"]
        if sigma_max == "auto":
            sigma_max = max_pairwise_distance(images)
        sigmas = geometric_sigmas(
            float(sigma_max), cfg["sigma_min"], cfg["gamma"], cfg["num_levels"]
        )
    pooled = None if cfg["pooled_stages"] == "auto" else int(cfg["pooled_stages"])
    net = ScoreNet(sigmas, images.shape[-1], images.shape[1], cfg["ngf"], cfg["norm"], pooled).to(
        device
    )
    ema = copy.deepcopy(net).requires_grad_(False)
    first_level = level_at(cfg["max_level_t"], len(sigmas))
    optimizer = torch.optim.Adam(
        net.parameters(), lr=cfg["lr"], betas=(0.9, 0.999), eps=cfg["adam_eps"]
    )
    data = images.to(device)
    eval_batch = data[_batch_indices(1, batch, len(data), cfg["seed"])].float() / 255
    eval_generator = torch.Generator(device=device)

    start, seconds_before, interval = 0, 0.0, (0.0, 0, 0.0)
    rows: list[dict[str, Any]] = []
    if resumed is not None:
        start, state = resumed
        net.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        optimizer.load_state_dict(state["optimizer"])
        set_rng_state(state["rng"])
        seconds_before, interval = state["seconds"], state["interval"]
        rows = [row for row in _read_curve(out_dir / "curve.csv") if row["step"] <= start]
        _write_curve(out_dir / "curve.csv", rows)
        log.info("resuming score-net training at step %d/%d", start, iterations)
    log.info(
        "score net: %d levels, sigma %.4g..%.4g, %d parameters, device %s",
        len(sigmas),
        sigmas[0].item(),
        sigmas[-1].item(),
        sum(p.numel() for p in net.parameters()),
        device,
    )

    interval_sum, interval_count, interval_seconds = interval
    run_tic = time.perf_counter()
    interval_tic = run_tic - interval_seconds
    for step in range(start + 1, iterations + 1):
        x = data[_batch_indices(step, batch, len(data), cfg["seed"])].float() / 255
        if cfg["flip"]:
            flip = torch.rand(len(x), device=device) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(3), x)
        if cfg["warmup"] > 0:
            for group in optimizer.param_groups:
                group["lr"] = cfg["lr"] * min(step / cfg["warmup"], 1.0)
        loss = dsm_step(net, ema, optimizer, x, cfg["ema"], cfg["grad_clip"], first_level)
        interval_sum += loss.item()
        interval_count += 1

        if step % cfg["log_every"] == 0 or step == iterations:
            sec_per_iter = (time.perf_counter() - interval_tic) / interval_count
            with torch.no_grad():
                eval_generator.manual_seed(cfg["seed"])
                loss_ema = dsm_loss(ema, eval_batch, ema.sigmas, eval_generator, first_level).item()
            row = {
                "step": step,
                "loss": interval_sum / interval_count,
                "loss_ema": loss_ema,
                "sec_per_iter": sec_per_iter,
            }
            rows.append(row)
            _write_curve(out_dir / "curve.csv", rows)
            eta = (iterations - step) * sec_per_iter
            log.info(
                "step %d/%d loss %.5g ema-loss %.5g %.3f s/it ETA %s",
                step,
                iterations,
                row["loss"],
                loss_ema,
                sec_per_iter,
                _clock(eta),
            )
            interval_sum, interval_count = 0.0, 0
            interval_tic = time.perf_counter()

        if step % cfg["checkpoint_every"] == 0 or step == iterations:
            now = time.perf_counter()
            state = {
                "model": net.state_dict(),
                "ema": ema.state_dict(),
                "optimizer": optimizer.state_dict(),
                "rng": rng_state(),
                "sigmas": sigmas,
                "settings": cfg,
                "seconds": seconds_before + now - run_tic,
                "interval": (interval_sum, interval_count, now - interval_tic),
            }
            save_checkpoint(out_dir / "checkpoints", step, state)

    seconds = seconds_before + time.perf_counter() - run_tic
    with atomic_path(out_dir / "scorenet.pt") as tmp:
        torch.save(
            {
                "state_dict": ema.state_dict(),
                "sigmas": sigmas,
                "resolution": net.resolution,
                "channels": net.channels,
                "ngf": net.ngf,
                "norm": net.norm,
                "pooled_stages": net.pooled_stages,
                "settings": cfg,
            },
            tmp,
        )
    last = rows[-1] if rows else {"loss": math.nan, "loss_ema": math.nan}
    return {
        "sigma_max": sigmas[0].item(),
        "num_levels": len(sigmas),
        "final_loss": last["loss"],
        "final_loss_ema": last["loss_ema"],
        "iterations": iterations,
        "seconds": seconds,
        "parameters": sum(p.numel() for p in net.parameters()),
    }


def dsm_step(
    net: ScoreNet,
    ema: ScoreNet,
    optimizer: torch.optim.Optimizer,
    x: Tensor,
    ema_rate: float,
    grad_clip: float = 0.0,
    first_level: int = 0,
) -> Tensor:
    """One training step: the DSM loss of batch ``x`` over the levels from ``first_level``, an
    optimizer step (the gradient norm clipped at ``grad_clip`` if positive), the EMA update."""
    loss = dsm_loss(net, x, net.sigmas, first_level=first_level)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(net.parameters(), grad_clip)
    optimizer.step()
    with torch.no_grad():
        for target, source in zip(ema.parameters(), net.parameters(), strict=True):
            target.lerp_(source, 1 - ema_rate)
    return loss.detach()


def load_score_net(path: str | Path, device: str | torch.device = "cpu") -> ScoreNet:
    """Rebuild the (EMA) score network saved by :func:`train_score_net`, in eval mode."""
    saved = torch.load(path, map_location="cpu", weights_only=False)
    net = ScoreNet(
        saved["sigmas"],
        saved["resolution"],
        saved["channels"],
        saved["ngf"],
        saved["norm"],
        saved.get("pooled_stages"),
    )
    net.load_state_dict(saved["state_dict"])
    return net.to(device).eval().requires_grad_(False)


def _batch_indices(step: int, batch: int, count: int, seed: int) -> Tensor:
    """Indices of ``step``'s batch: positions ``[(step-1)·batch, step·batch)`` of the stream of
    per-epoch permutations (each epoch's permutation seeded by ``seed`` and its number)."""
    begin = (step - 1) * batch
    epochs = range(begin // count, (begin + batch - 1) // count + 1)
    stream = torch.cat([_permutation(count, seed, epoch) for epoch in epochs])
    offset = begin - epochs[0] * count
    return stream[offset : offset + batch]


def _permutation(count: int, seed: int, epoch: int) -> Tensor:
    return torch.from_numpy(np.random.default_rng((seed, epoch)).permutation(count))


def _resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _read_curve(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    with open(path, newline="") as handle:
        return [
            {key: int(row[key]) if key == "step" else float(row[key]) for key in CURVE_FIELDS}
            for row in csv.DictReader(handle)
        ]


def _write_curve(path: Path, rows: list[dict[str, Any]]) -> None:
    with atomic_open(path, "w") as handle:
        writer = csv.DictWriter(handle, fieldnames=CURVE_FIELDS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
