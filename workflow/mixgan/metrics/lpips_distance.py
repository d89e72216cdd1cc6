"""LPIPS distances (Zhang et al., 2018) through the ``lpips`` package, offline.

The package ships its linear calibration layers (``weights/v0.1/{alex,vgg}.pth``) but takes the
AlexNet / VGG-16 backbone from torchvision's pretrained download, impossible without network.
``load_lpips`` therefore builds the package's module with an untrained backbone
(``pnet_rand=True``) and then either

* loads a torchvision ``state_dict`` of the backbone from a file the user provides (the whole
  model's, keys ``features.N.*``, or its ``features``' alone, keys ``N.*``), checking that every
  backbone tensor is in the file; or
* keeps the untrained backbone, seeded, as a stand-in when the caller allows it: the record then
  says ``stand_in: True`` and every value computed with it must carry that label.

The record has the fields of ``mixgan.metrics.weights`` records; ``sha256`` identifies the
backbone (the file's checksum, or for a stand-in the checksum of its tensors).

Images are float NCHW tensors in [-1, 1] (the generators' range; LPIPS' own convention), at
least 32² for AlexNet. Diversity uses AlexNet, PPL VGG-16 (Section D of the study).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from mixgan.io import sha256_file
from mixgan.metrics.weights import WeightsError, weights_sha256

#: our name -> (lpips package name, torchvision constructor)
BACKBONES = {"alex": ("alex", "alexnet"), "vgg": ("vgg", "vgg16")}


def _backbone_keys(module: nn.Module) -> dict[str, str]:
    """torchvision ``features`` key (``'3.weight'``) -> key in the LPIPS backbone."""
    return {
        key: f"{slice_name}.{key}"
        for slice_name, block in module.net.named_children()
        for key in block.state_dict()
    }


def _load_backbone(module: nn.Module, path: Path) -> None:
    state = torch.load(path, map_location="cpu", weights_only=True)
    features = {
        key.removeprefix("features."): value
        for key, value in state.items()
        if not key.startswith("classifier.")
    }
    keys = _backbone_keys(module)
    missing = sorted(set(keys) - set(features), key=lambda k: int(k.split(".")[0]))
    unexpected = sorted(set(features) - set(keys))
    if missing or unexpected:
        raise WeightsError(
            f"{path} is not a torchvision state_dict of this backbone: missing {missing}, "
            f"unexpected {unexpected}"
        )
    module.net.load_state_dict({keys[key]: value for key, value in features.items()}, strict=True)


def _tensors_sha256(module: nn.Module) -> str:
    digest = hashlib.sha256()
    for key, value in sorted(module.net.state_dict().items()):
        digest.update(key.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def load_lpips(
    net: str,
    backbone_weights: str | Path | None,
    allow_stand_in: bool,
    seed: int = 0,
) -> tuple[nn.Module, dict[str, Any]]:
    """The LPIPS module (eval, no gradients, on the CPU) and its provenance record."""
    import lpips

    if net not in BACKBONES:
        raise ValueError(f"net must be one of {sorted(BACKBONES)}, got {net!r}")
    package_net, torchvision_name = BACKBONES[net]
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
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torchvision's `pretrained` deprecation
        torch.manual_seed(seed)
        module = lpips.LPIPS(net=package_net, pnet_rand=True, verbose=False)
    linear = Path(lpips.__file__).parent / "weights" / "v0.1" / f"{package_net}.pth"
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
    record["linear_sha256"] = sha256_file(linear)
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


def lpips_activations(module: nn.Module, images: Tensor) -> list[Tensor]:
    """The unit-normalised backbone activations LPIPS compares (its forward's ``feats``), of
    each image, on the CPU."""
    import lpips

    device = next(module.parameters()).device
    with torch.no_grad():
        outs = module.net.forward(module.scaling_layer(images.to(device)))
        return [lpips.normalize_tensor(out).cpu() for out in outs]


def lpips_of_activations(module: nn.Module, first: list[Tensor], second: list[Tensor]) -> Tensor:
    """LPIPS of pairs from their activations: per layer the learned weighting of the squared
    difference, averaged over positions, summed over layers (LPIPS's forward, without the
    backbone passes)."""
    device = next(module.parameters()).device
    with torch.no_grad():
        total = sum(
            lin((a.to(device) - b.to(device)) ** 2).mean(dim=(2, 3))
            for lin, a, b in zip(module.lins, first, second, strict=True)
        )
    return total.reshape(len(first[0]))


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
    pair it is in); otherwise, or for a module other than LPIPS v0.1 with its linear layers,
    pairs are scored as :func:`lpips_pairs` does. Same arithmetic either way."""
    by_pairs = functools.partial(mean_over_pairs, functools.partial(lpips_pairs, module))
    learned = getattr(module, "lpips", False) and getattr(module, "version", "") == "0.1"
    if not learned or module.spatial:
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
