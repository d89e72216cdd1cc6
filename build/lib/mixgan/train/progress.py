"""Training progress: a resumable CSV curve and a SIGTERM-aware stop flag."""

from __future__ import annotations

import csv
import signal
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any


class CurveWriter:
    """Append rows to a CSV curve; on resume, rows after the resumed step are dropped."""

    def __init__(self, path: str | Path, columns: Sequence[str], resume_step: int | None):
        self.path = Path(path)
        self.columns = list(columns)
        kept: list[dict[str, str]] = []
        if resume_step is not None and self.path.exists():
            with open(self.path, newline="") as handle:
                kept = [row for row in csv.DictReader(handle) if int(row["step"]) <= resume_step]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "w", newline="") as handle:
            writer = csv.DictWriter(handle, self.columns, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(kept)

    def write(self, row: dict[str, Any]) -> None:
        with open(self.path, "a", newline="") as handle:
            writer = csv.DictWriter(handle, self.columns, extrasaction="ignore")
            writer.writerow({k: _format(v) for k, v in row.items()})


def _format(value: Any) -> Any:
    if isinstance(value, float):
        return f"{value:.6g}"
    return value


class StopFlag:
    """Set by SIGTERM/SIGINT (SLURM's warning before a time-limit kill or pre-emption).

    The loop checks it between steps, writes a checkpoint and exits non-zero, so the
    requeued or retried job resumes where this one stopped.
    """

    def __init__(self) -> None:
        self.signal: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopFlag:
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.signal = signum

    def __bool__(self) -> bool:
        return self.signal is not None


class Throughput:
    """Seconds per thousand images between two log points, and an ETA."""

    def __init__(self, images_seen: int):
        self.last_time = time.perf_counter()
        self.last_images = images_seen

    def tick(self, images_seen: int) -> float:
        now = time.perf_counter()
        done = max(images_seen - self.last_images, 1)
        sec_per_kimg = (now - self.last_time) / done * 1000
        self.last_time, self.last_images = now, images_seen
        return sec_per_kimg
