"""Inception-v3 features through clean-fid's "clean" pipeline.

Images are resized to 299² with clean-fid's PIL bicubic float resizer and fed to clean-fid's
``InceptionV3W`` wrapper of the provisioned TorchScript network. Three kinds of features
(``mixgan.metrics.inception_layers``): ``pool`` (2048-d, FID/KID/memorisation), ``spatial``
(sFID's mixed_6/conv, 2023-d) and ``probs`` (class probabilities for the IS; only NVIDIA's file
has the output layer: without it, and only where stand-ins are allowed, a seeded untrained
output layer on the real pool features, recorded as a stand-in). Features are cached by
``mixgan.metrics.features`` (float32, with the image names and the weights record).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from mixgan.data.imagezip import image_names
from mixgan.metrics.inception_layers import (
    class_probabilities,
    has_logits,
    normalise,
    pool_features,
    spatial_features,
)
from mixgan.metrics.weights import INCEPTION_FILE, check_inception_name, verified_record

KINDS = ("pool", "spatial", "probs")
STAND_IN_CLASSES = 1008


def pick_device(preference: str = "auto") -> torch.device:
    if preference == "cpu" or (preference == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    return torch.device("cuda")


class InceptionFeatures:
    """The provisioned Inception network, loaded once, applied to zips or arrays."""

    def __init__(
        self,
        weights_path: str | Path,
        device: str = "auto",
        batch_size: int = 64,
        kind: str = "pool",
        allow_stand_in: bool = False,
        seed: int = 0,
    ):
        from cleanfid.inception_torchscript import InceptionV3W
        from cleanfid.resize import build_resizer

        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        self.record = verified_record(weights_path)
        self.device = pick_device(device)
        self.batch_size = batch_size
        self.kind = kind
        check_inception_name(weights_path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            model = InceptionV3W(
                str(Path(weights_path).parent), download=False, resize_inside=False
            )
        self.model = model.to(self.device).eval()
        self.resize = build_resizer("clean")
        self.stand_in_head = None
        if kind == "probs" and not has_logits(self.model.base):
            if not allow_stand_in:
                class_probabilities(self.model.base, torch.zeros(0))  # raises, naming the file
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                head = torch.nn.Linear(2048, STAND_IN_CLASSES)
            self.stand_in_head = head.to(self.device).eval().requires_grad_(False)
            self.record = {
                **self.record,
                "name": f"{self.record['name']} + stand-in output layer",
                "stand_in": True,
                "note": (
                    f"this {INCEPTION_FILE} has no output layer: class probabilities come from "
                    f"a seeded untrained linear layer (seed {seed}) on its real pool features"
                ),
            }

    @torch.no_grad()
    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        """[0, 255] NCHW 299² float -> N x features (clean-fid's feature function signature)."""
        # channels_last is about 1.5x faster on CPU and changes features by < 1e-5.
        batch = batch.to(self.device).contiguous(memory_format=torch.channels_last)
        if self.kind == "pool":
            return self.model(batch)
        if self.kind == "spatial":
            return spatial_features(self.model.layers, normalise(batch))
        if self.stand_in_head is not None:
            pool = pool_features(self.model.layers, normalise(batch))
            return torch.softmax(self.stand_in_head(pool), dim=1)
        return class_probabilities(self.model.base, normalise(batch))

    def of_zip(
        self, zip_path: str | Path, names: Sequence[str] | None = None
    ) -> tuple[np.ndarray, list[str]]:
        """Features of the named images of a zip (all by default), in sorted name order."""
        from cleanfid.fid import get_files_features

        names = sorted(names) if names is not None else image_names(zip_path)
        workers = 0 if len(names) < 2000 else min(8, os.cpu_count() or 1)
        feats = get_files_features(
            list(names),
            model=self,
            num_workers=workers,
            batch_size=self.batch_size,
            device=self.device,
            mode="clean",
            fdir=str(zip_path),
            verbose=False,
        )
        return feats.astype(np.float32), list(names)

    @torch.no_grad()
    def of_arrays(self, images: np.ndarray) -> np.ndarray:
        """Features of NHWC uint8 images, resized exactly as clean-fid resizes files."""
        feats = []
        for start in range(0, len(images), self.batch_size):
            chunk = [
                self.resize(image).transpose(2, 0, 1)
                for image in images[start : start + self.batch_size]
            ]
            feats.append(self(torch.from_numpy(np.stack(chunk))).cpu().numpy())
        return np.concatenate(feats).astype(np.float32)
