"""Resumable training checkpoints: atomic writes, checksums, fall-back to the last good one.

Checkpoints live in a run's ``checkpoints/`` folder, which is *not* a declared Snakemake
output, so a failed or pre-empted job never has its progress deleted.
"""

from __future__ import annotations

import logging
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mixgan.io import atomic_path, sha256_file

log = logging.getLogger(__name__)
CHECKPOINT_PATTERN = re.compile(r"^ckpt-(\d{9})\.pt$")


def checkpoint_path(folder: Path, step: int) -> Path:
    return Path(folder) / f"ckpt-{step:09d}.pt"


def save_checkpoint(folder: str | Path, step: int, state: dict[str, Any], keep: int = 2) -> Path:
    """Write ``state`` for ``step`` atomically with a SHA-256 sidecar; keep the newest ``keep``."""
    folder = Path(folder)
    path = checkpoint_path(folder, step)
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
        digest = sha256_file(tmp)
    path.with_suffix(".pt.sha256").write_text(digest + "\n")
    for old in list_checkpoints(folder)[:-keep]:
        old.unlink(missing_ok=True)
        old.with_suffix(".pt.sha256").unlink(missing_ok=True)
    return path


def list_checkpoints(folder: str | Path) -> list[Path]:
    """Checkpoint files in ``folder``, oldest first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if CHECKPOINT_PATTERN.match(p.name)]
    return sorted(found, key=lambda p: int(CHECKPOINT_PATTERN.match(p.name).group(1)))


def load_latest_checkpoint(folder: str | Path) -> tuple[int, dict[str, Any]] | None:
    """The newest checkpoint that passes its checksum and loads; ``None`` when there is none.

    A truncated or corrupt file is skipped with a warning and the previous one is used.
    """
    for path in reversed(list_checkpoints(folder)):
        step = int(CHECKPOINT_PATTERN.match(path.name).group(1))
        sidecar = path.with_suffix(".pt.sha256")
        try:
            if sidecar.exists() and sidecar.read_text().strip() != sha256_file(path):
                raise ValueError("checksum mismatch")
            state = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as error:  # noqa: BLE001 - any unreadable checkpoint is skipped
            log.warning("checkpoint %s is unusable (%s); trying the previous one", path, error)
            continue
        return step, state
    return None


def rng_state() -> dict[str, Any]:
    """Every random stream a training step touches, for exact resumption."""
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),  # noqa: NPY002 - the legacy global RNG is the state we manage
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])  # noqa: NPY002 - the legacy global RNG is the state we manage
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def run_state(
    trainer: Any, streams: dict[str, torch.Generator], *, global_rng: bool = True, **extra: Any
) -> dict[str, Any]:
    """A track's checkpoint (translation, ReMix tasks, one-shot): the trainer's state, each
    named random stream's, the global RNGs' (for runs that draw from them) and ``extra``
    values (elapsed seconds, counters, the parts' state)."""
    state = {"trainer": trainer.state_dict(), **{k: g.get_state() for k, g in streams.items()}}
    if global_rng:
        state["rng"] = rng_state()
    return state | extra


def resume_run(
    folder: Path, trainer: Any, streams: dict[str, torch.Generator], *, global_rng: bool = True
) -> dict[str, Any] | None:
    """Load the latest checkpoint :func:`run_state` wrote in ``folder`` into the trainer, the
    streams and (``global_rng``) the global RNGs; returns its other values, or None when there
    is none to resume from."""
    resumed = load_latest_checkpoint(folder)
    if resumed is None:
        return None
    state = resumed[1]
    trainer.load_state_dict(state["trainer"])
    for name, generator in streams.items():
        generator.set_state(state[name])
    if global_rng:
        set_rng_state(state["rng"])
    return {key: value for key, value in state.items() if key not in {"trainer", "rng", *streams}}


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) from one integer."""
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - the legacy global RNG is the state we manage
    torch.manual_seed(seed)
