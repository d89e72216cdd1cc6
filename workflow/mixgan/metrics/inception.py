"""Inception-v3 features of images resized to 299² under a named convention.

Images are resized to 299² by one of the conventions of ``mixgan.metrics.resize`` (``clean``:
clean-fid's PIL bicubic, the default; ``tf_bilinear``: NVIDIA's / StyleGAN2-ADA's;
``pytorch_bilinear``: pytorch-fid's) and fed to clean-fid's ``InceptionV3W`` wrapper of the
provisioned TorchScript network. Under ``clean`` the zip loader resizes (on CPU workers, as
clean-fid); under the others the loader passes the images at their size and the batch is
resized on the network's device. Its outputs (*heads*, ``mixgan.metrics.inception_layers``):
``pool`` (2048-d, FID/KID/memorisation), the sFID channels ``mixed_6`` or ``mixed_7`` (7 channels
of ``<layer>/conv``, 2023-d) and ``probs`` (class probabilities for the IS; only NVIDIA's file
has the output layer: without it, and only where stand-ins are allowed, a seeded untrained
output layer on the real pool features, recorded as a stand-in). Several heads come from one
pass through the network, concatenated. Features are cached by ``mixgan.metrics.features``
(float32, with the image names, the weights record, the convention and the heads:
:attr:`InceptionFeatures.settings`).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mixgan.data.imagezip import image_names
from mixgan.evaluation import INCEPTION_HEADS, RESIZES, SFID_LAYERS
from mixgan.metrics.inception_layers import (
    SFID_CHANNELS,
    class_probabilities,
    has_logits,
    head_features,
    normalise,
)
from mixgan.metrics.resize import resize as resize_images
from mixgan.metrics.weights import INCEPTION_FILE, check_inception_name, verified_record

KINDS = ("pool", "spatial", "probs")
STAND_IN_CLASSES = 1008
#: the width of each head's features (sFID: 7 channels x 17 x 17 at 299²)
HEAD_DIMS = {"pool": 2048, **dict.fromkeys(SFID_LAYERS, SFID_CHANNELS * 17 * 17), "probs": 1008}


def pick_device(preference: str = "auto") -> torch.device:
    """``cpu``, ``cuda``, or ``auto`` (CUDA when available)."""
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
        resize: str = "clean",
        sfid_layer: str = "mixed_6",
        heads: tuple[str, ...] | None = None,
    ):
        from cleanfid.inception_torchscript import InceptionV3W
        from cleanfid.resize import build_resizer

        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        if resize not in RESIZES:
            raise ValueError(f"resize must be one of {RESIZES}, got {resize!r}")
        if sfid_layer not in SFID_LAYERS:
            raise ValueError(f"sfid_layer must be one of {SFID_LAYERS}, got {sfid_layer!r}")
        self.convention = resize
        self.sfid_layer = sfid_layer
        self.record = verified_record(weights_path)
        self.network_record = self.record  # the real network's, whatever a head adds
        self.device = pick_device(device)
        self.batch_size = batch_size
        self.kind = kind
        #: the outputs each call returns, concatenated (``mixgan.evaluation.INCEPTION_HEADS``)
        self.heads = heads or ({"pool": "pool", "spatial": sfid_layer, "probs": "probs"}[kind],)
        if not set(self.heads) <= set(INCEPTION_HEADS):
            raise ValueError(f"heads must be among {INCEPTION_HEADS}, got {self.heads}")
        check_inception_name(weights_path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            model = InceptionV3W(
                str(Path(weights_path).parent), download=False, resize_inside=False
            )
        self.model = model.to(self.device).eval()
        # clean-fid's loaders resize under "clean"; "legacy_tensorflow" passes images as they are
        self.loader_mode = "clean" if resize == "clean" else "legacy_tensorflow"
        self.resize_image = build_resizer(self.loader_mode)
        self.stand_in_head = None
        if "probs" in self.heads and not has_logits(self.model.base):
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

    @property
    def settings(self) -> dict[str, Any]:
        """The convention these features were computed under, the heads they hold with each
        head's width, and each head's network record (only the probabilities of a stand-in
        output layer are stand-ins; stored in feature files)."""
        return {
            "resize": self.convention,
            "heads": [[head, HEAD_DIMS[head]] for head in self.heads],
            "head_networks": {
                head: self.record if head == "probs" else self.network_record for head in self.heads
            },
        }

    @torch.no_grad()
    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        """[0, 255] NCHW float -> N x features (clean-fid's feature function signature): 299²
        images under ``clean`` (the loader resized them), any size under the other
        conventions (resized here, on the device)."""
        batch = batch.to(self.device)
        if self.convention != "clean":
            batch = resize_images(batch, self.convention)
        # channels_last is about 1.5x faster on CPU and changes features by < 1e-5.
        batch = batch.contiguous(memory_format=torch.channels_last)
        if self.heads == ("pool",):
            return self.model(batch)
        return head_features(self.model.base, normalise(batch), self.heads, self.stand_in_head)

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
            mode=self.loader_mode,
            fdir=str(zip_path),
            verbose=False,
        )
        return feats.astype(np.float32), list(names)

    @torch.no_grad()
    def of_arrays(self, images: np.ndarray) -> np.ndarray:
        """Features of NHWC uint8 images, resized exactly as the zip loader resizes files."""
        feats = []
        for start in range(0, len(images), self.batch_size):
            chunk = [
                np.asarray(self.resize_image(image), dtype=np.float32).transpose(2, 0, 1)
                for image in images[start : start + self.batch_size]
            ]
            feats.append(self(torch.from_numpy(np.stack(chunk))).cpu().numpy())
        return np.concatenate(feats).astype(np.float32)
