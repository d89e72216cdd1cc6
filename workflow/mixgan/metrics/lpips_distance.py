"""LPIPS distances (Zhang et al., 2018), offline, without importing the ``lpips`` package.

LPIPS v0.1 compares the unit-normalised activations of five layers of an ImageNet backbone
(AlexNet for diversity, VGG-16 for PPL: Section D of the study) through linear layers
calibrated on human judgements. ``LPIPS`` here is the package's ``LPIPS(net, version='0.1')``
in eval mode: its ``ScalingLayer`` constants, ``normalize_tensor`` (ε = 1e-10), the layer
taps of ``pretrained_networks.alexnet``/``vgg16``, spatial averaging, the sum over layers
(lpips ``lpips.py``); the linear layers are read from the package's own
``weights/v0.1/{alex,vgg}.pth``, located without importing it (the package imports
torchvision, which costs a metric job about 3 s: ``mixgan.nets.imagenet_backbones``). Equal
to the package's module on the same weights (tests/test_metric_functions.py).

The backbone comes from torchvision's pretrained download in the package, impossible without
network. ``load_lpips`` therefore either

* loads a torchvision ``state_dict`` of the backbone from a file the user provides (the whole
  model's, keys ``features.N.*``, or its ``features``' alone, keys ``N.*``), checking that every
  backbone tensor is in the file; or
* keeps an untrained backbone (torchvision's initialisation), seeded, as a stand-in when the
  caller allows it: the record then says ``stand_in: True`` and every value computed with it
  must carry that label.

The record has the fields of ``mixgan.metrics.weights`` records; ``sha256`` identifies the
backbone (the file's checksum, or for a stand-in the checksum of its tensors).

Images are float NCHW tensors in [-1, 1] (the generators' range; LPIPS' own convention), at
least 32² for AlexNet.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import importlib.util
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from mixgan.io import sha256_file
from mixgan.metrics.weights import WeightsError, weights_sha256
from mixgan.nets.imagenet_backbones import VGG16_LAYERS, alexnet_features, vgg_features

#: our name -> (torchvision constructor, backbone ``features``, the indices after which LPIPS
#: reads an activation (lpips ``pretrained_networks``: relu1 … relu5), their channels)
BACKBONES: dict[str, tuple[str, Callable[[], nn.Sequential], tuple[int, ...], tuple[int, ...]]] = {
    "alex": ("alexnet", alexnet_features, (1, 4, 7, 9, 11), (64, 192, 384, 256, 256)),
    "vgg": (
        "vgg16",
        functools.partial(vgg_features, VGG16_LAYERS),
        (3, 8, 15, 22, 29),
        (64, 128, 256, 512, 512),
    ),
}
SHIFT = (-0.030, -0.088, -0.188)  # lpips ScalingLayer.shift
SCALE = (0.458, 0.448, 0.450)  # lpips ScalingLayer.scale
EPS = 1e-10  # lpips normalize_tensor


def linear_weights_path(net: str) -> Path:
    """The ``lpips`` package's calibrated linear layers of ``net`` (v0.1), found without
    importing the package."""
    spec = importlib.util.find_spec("lpips")
    if spec is None or not spec.submodule_search_locations:
        raise WeightsError("LPIPS needs the `lpips` package (pip install lpips) for its weights")
    return Path(spec.submodule_search_locations[0]) / "weights" / "v0.1" / f"{net}.pth"


class LPIPS(nn.Module):
    """LPIPS v0.1 of ``net`` ('alex' or 'vgg'), linear layers from the package's file."""

    def __init__(self, net: str):
        super().__init__()
        _, build, self.taps, channels = BACKBONES[net]
        self.features = build()[: self.taps[-1] + 1]
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in channels)
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1))
        state = torch.load(linear_weights_path(net), map_location="cpu", weights_only=True)
        for index, lin in enumerate(self.lins):  # the package's NetLinLayer: Dropout, Conv2d
            lin.weight.data.copy_(state[f"lin{index}.model.1.weight"])

    def activations(self, images: Tensor) -> list[Tensor]:
        """The unit-normalised activations LPIPS compares, one tensor per layer."""
        x = (images - self.shift) / self.scale
        out = []
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in self.taps:
                out.append(x / (x.square().sum(dim=1, keepdim=True).sqrt() + EPS))
        return out

    def of_activations(self, first: list[Tensor], second: list[Tensor]) -> Tensor:
        """Per pair: per layer the learned weighting of the squared difference, averaged over
        positions, summed over layers (N values)."""
        total = sum(
            lin((a - b) ** 2).mean(dim=(2, 3))
            for lin, a, b in zip(self.lins, first, second, strict=True)
        )
        return total.reshape(len(first[0]))

    def forward(self, images_a: Tensor, images_b: Tensor) -> Tensor:
        return self.of_activations(self.activations(images_a), self.activations(images_b))


def _load_backbone(module: LPIPS, path: Path) -> None:
    # Memory-mapped: only the backbone's tensors are read, not the classifier's (most of
    # AlexNet's 244 MB and VGG-16's 553 MB).
    state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    features = {
        key.removeprefix("features."): value
        for key, value in state.items()
        if not key.startswith("classifier.")
    }
    keys = set(module.features.state_dict())  # AlexNet's, VGG-16's: all up to the last tap
    missing = sorted(keys - set(features), key=lambda k: int(k.split(".")[0]))
    unexpected = sorted(set(features) - keys)
    if missing or unexpected:
        raise WeightsError(
            f"{path} is not a torchvision state_dict of this backbone: missing {missing}, "
            f"unexpected {unexpected}"
        )
    module.features.load_state_dict(features, strict=True)


def _tensors_sha256(module: LPIPS) -> str:
    digest = hashlib.sha256()
    for key, value in sorted(module.features.state_dict().items()):
        digest.update(key.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def load_lpips(
    net: str,
    backbone_weights: str | Path | None,
    allow_stand_in: bool,
    seed: int = 0,
) -> tuple[LPIPS, dict[str, Any]]:
    """The LPIPS module (eval, no gradients, on the CPU) and its provenance record."""
    if net not in BACKBONES:
        raise ValueError(f"net must be one of {sorted(BACKBONES)}, got {net!r}")
    torchvision_name = BACKBONES[net][0]
    path = Path(backbone_weights) if backbone_weights is not None else None
    if path is not None and not path.is_file():
        raise WeightsError(
            f"LPIPS backbone weights {path} are missing: on a machine with network, save "
            f"torchvision.models.{torchvision_name}(weights='DEFAULT').state_dict() there "
            f"with torch.save"
        )
    if path is None and not allow_stand_in:
        raise WeightsError(
            f"LPIPS-{net} needs the {torchvision_name} backbone weights, which cannot be "
            f"downloaded here: on a machine with network, save torchvision.models."
            f"{torchvision_name}(weights='DEFAULT').state_dict() with torch.save and give its "
            "path, or allow an explicitly labelled stand-in"
        )
    # The untrained backbone draws from torch's RNG: seeded here, the caller's RNG untouched.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = LPIPS(net)
    version = importlib.metadata.version("lpips")
    if path is not None:
        _load_backbone(module, path)
        record = {
            "name": f"LPIPS-{net} v0.1",
            "file": path.name,
            "sha256": weights_sha256(path),
            "stand_in": False,
            "source": f"user file {path} (torchvision {torchvision_name}) + lpips {version}",
            "note": "",
        }
    else:
        record = {
            "name": f"LPIPS-{net} v0.1 (stand-in)",
            "file": None,
            "sha256": _tensors_sha256(module),
            "stand_in": True,
            "source": f"lpips {version}",
            "note": (
                f"untrained {torchvision_name} backbone (seed {seed}) + the package's linear "
                "layers; sha256 is that of the backbone's tensors"
            ),
        }
    record["linear_sha256"] = sha256_file(linear_weights_path(net))
    return module.eval().requires_grad_(False), record


def lpips_pairs(module: nn.Module, images_a: Tensor, images_b: Tensor) -> Tensor:
    """LPIPS distance of each pair (images_a[i], images_b[i]): a tensor of N values."""
    device = next(module.parameters()).device
    with torch.no_grad():
        return module(images_a.to(device), images_b.to(device)).reshape(len(images_a))


def mean_over_pairs(
    distance: Callable[[Tensor, Tensor], Tensor],
    images: Tensor,
    first: Sequence[int] | Tensor,
    second: Sequence[int] | Tensor,
    batch: int = 64,
) -> float:
    """Mean of ``distance(images[first[k]], images[second[k]])`` over k, ``batch`` pairs at once."""
    total = 0.0
    for start in range(0, len(first), batch):
        pairs = slice(start, start + batch)
        total += float(distance(images[first[pairs]], images[second[pairs]]).sum())
    return total / len(first)


def lpips_activations(module: LPIPS, images: Tensor) -> list[Tensor]:
    """The unit-normalised backbone activations LPIPS compares, of each image, on the CPU."""
    device = next(module.parameters()).device
    with torch.no_grad():
        return [layer.cpu() for layer in module.activations(images.to(device))]


def lpips_of_activations(module: LPIPS, first: list[Tensor], second: list[Tensor]) -> Tensor:
    """LPIPS of pairs from their activations (LPIPS's forward without the backbone passes)."""
    device = next(module.parameters()).device
    with torch.no_grad():
        return module.of_activations([a.to(device) for a in first], [b.to(device) for b in second])


def mean_lpips_over_pairs(
    module: nn.Module,
    images: Tensor,
    first: Sequence[int] | Tensor,
    second: Sequence[int] | Tensor,
    batch: int = 64,
    cache_bytes: int = 2**30,
) -> float:
    """Mean LPIPS of ``(images[first[k]], images[second[k]])`` over k. When every image's
    activations fit in ``cache_bytes``, each image passes the backbone once (not once per
    pair it is in); otherwise, or for another distance module, pairs are scored as
    :func:`lpips_pairs` does. Same arithmetic either way."""
    by_pairs = functools.partial(mean_over_pairs, functools.partial(lpips_pairs, module))
    if not isinstance(module, LPIPS):
        return by_pairs(images, first, second, batch)
    probe = lpips_activations(module, images[:1])
    if sum(t.numel() * t.element_size() for t in probe) * len(images) > cache_bytes:
        return by_pairs(images, first, second, batch)
    layers = [torch.cat(parts) for parts in zip(*(
        lpips_activations(module, images[start : start + batch])
        for start in range(0, len(images), batch)
    ), strict=True)]  # fmt: skip
    first, second = torch.as_tensor(first), torch.as_tensor(second)
    total = 0.0
    for start in range(0, len(first), batch):
        a, b = first[start : start + batch], second[start : start + batch]
        pairs = lpips_of_activations(module, [t[a] for t in layers], [t[b] for t in layers])
        total += float(pairs.sum())
    return total / len(first)


def pairwise_lpips(images: Tensor, module: nn.Module, batch: int = 64) -> float:
    """Mean LPIPS over all unordered pairs {i, j}, i != j, of a set of N >= 2 images."""
    if len(images) < 2:
        raise ValueError("pairwise LPIPS needs at least two images")
    first, second = torch.triu_indices(len(images), len(images), offset=1)
    return mean_over_pairs(functools.partial(lpips_pairs, module), images, first, second, batch)


def stargan_lpips(outputs: list[Tensor], module: nn.Module, batch: int = 64) -> float:
    """StarGAN v2's diversity: each source's mean pairwise LPIPS over its outputs (10 in the
    protocol), averaged over sources. ``outputs`` holds one N x C x H x W tensor per source."""
    return sum(pairwise_lpips(group, module, batch) for group in outputs) / len(outputs)
