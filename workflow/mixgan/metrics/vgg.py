"""VGG-16 fc2 features for improved precision/recall (Kynkäänniemi et al., 2019).

Images are resized to 224² (bilinear, antialiased), normalised with ImageNet's mean and std and
run through VGG-16 (torchvision's layout, ``mixgan.nets.imagenet_backbones``) up to the second
fully connected layer and its ReLU (4096-d, the paper's "fc2 features"). The weights are the
provisioned ``vgg16.pth`` state_dict (``mixgan.metrics.weights.provision_torchvision``); its
record, stand-in flag included, travels with the features.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from mixgan.data.imagezip import image_names, read_image_zip
from mixgan.metrics.inception import pick_device
from mixgan.metrics.weights import verified_record
from mixgan.nets.imagenet_backbones import from_state_dict

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INPUT_SIZE = 224


class VGGFeatures:
    """The provisioned VGG-16, loaded once, applied to zips of images."""

    def __init__(self, weights_path: str | Path, device: str = "auto", batch_size: int = 64):
        self.record = verified_record(weights_path)
        self.device = pick_device(device)
        self.batch_size = batch_size
        state = torch.load(weights_path, map_location="cpu", weights_only=True)
        network = from_state_dict("vgg16", state)
        network.classifier = network.classifier[:5]  # fc1, ReLU, dropout, fc2, ReLU
        self.network = network.to(self.device).eval().requires_grad_(False)
        self.mean = torch.tensor(IMAGENET_MEAN, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD, device=self.device).view(1, 3, 1, 1)

    @torch.no_grad()
    def __call__(self, images: np.ndarray) -> np.ndarray:
        """NHWC uint8 images -> N x 4096 float32 fc2 features."""
        batch = torch.from_numpy(images).to(self.device).permute(0, 3, 1, 2).float() / 255
        batch = F.interpolate(batch, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", antialias=True)
        return self.network((batch - self.mean) / self.std).cpu().numpy().astype(np.float32)

    def of_zip(
        self, zip_path: str | Path, names: Sequence[str] | None = None
    ) -> tuple[np.ndarray, list[str]]:
        """Features of the named images of a zip (all by default), in sorted name order."""
        names = sorted(names) if names is not None else image_names(zip_path)
        chunks = [
            self(read_image_zip(zip_path, names[start : start + self.batch_size]))
            for start in range(0, len(names), self.batch_size)
        ]
        return np.concatenate(chunks), list(names)
