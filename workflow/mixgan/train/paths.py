"""The files one GAN training reads and writes, and how a training ends abnormally."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


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
