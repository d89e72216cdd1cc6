"""Generate images from a trained generator, seeded and batched."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from mixgan.data.imagezip import to_numpy, write_image_zip
from mixgan.nets.stylegan2 import Generator
from mixgan.provenance import provenance


@torch.no_grad()
def generate_images(
    generator: Generator,
    count: int,
    seed: int,
    batch_size: int = 64,
    truncation_psi: float = 1.0,
) -> np.ndarray:
    """``count`` NHWC uint8 images; the same seed gives the same images.

    Runs under a forked RNG, so calling it inside a training loop leaves the loop's random
    streams untouched (evaluations do not change the training trajectory).
    """
    device = next(generator.parameters()).device
    devices = [device] if device.type == "cuda" else []
    chunks = []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        for start in range(0, count, batch_size):
            n = min(batch_size, count - start)
            z = torch.randn(n, generator.z_dim, device=device)
            images = generator(z, None, truncation_psi=truncation_psi, noise_mode="random")
            chunks.append(to_numpy(images))
    return np.concatenate(chunks)


def load_generator(
    network_path: str | Path, device: torch.device
) -> tuple[Generator, dict[str, Any]]:
    """The selected (best) generator of a run and the metadata stored with it."""
    snapshot = torch.load(network_path, map_location="cpu", weights_only=False)
    generator = Generator(**snapshot["generator_kwargs"])
    generator.load_state_dict(snapshot["generator"])
    return generator.to(device).eval().requires_grad_(False), snapshot["meta"]


def sample_to_zip(
    network_path: str | Path,
    out_zip: str | Path,
    count: int,
    seed: int,
    batch_size: int,
    device: torch.device,
) -> dict[str, Any]:
    generator, meta = load_generator(network_path, device)
    images = generate_images(generator, count, seed, batch_size)
    record = {
        "run": meta["run"],
        "network": str(network_path),
        "selected": meta["selected"],
        "count": count,
        "seed": seed,
        "truncation_psi": 1.0,
        "provenance": provenance(),
    }
    write_image_zip(out_zip, images, metadata=record)
    return meta
