"""Generate a run's images: from its selected GAN generator, or from a score network.

Score-based rows of the ScoreMix paper (NCSNv2, SMLD) are "backbones" of arch
``score_sampler``: their model is the score network of the subset, sampled with annealed
Langevin dynamics or the VE predictor-corrector sampler (``mixgan.scores``). Either way the
result is a zip of images that the metric rules score like any GAN's samples.

A FastGAN generator samples as its authors' ``eval.py`` (odegeasslbc/FastGAN-pytorch) calls
it: in train mode (their ``#net_ig.eval()`` is commented out), so BatchNorm normalises with each
batch's statistics and spectral norm runs its power iteration, in batches of 16 (``--batch``
default 16), from the checkpoint ``train.py`` saves as ``models/<iter>.pth``: the EMA
parameters (``load_params(netG, avg_param_G)`` before ``torch.save``) with the raw G's buffers,
which is our G_ema. It runs on a copy, so the caller's generator keeps its state and mode.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mixgan.data.imagezip import to_numpy, write_image_zip
from mixgan.nets import biggan, fastgan, stylegan2
from mixgan.provenance import provenance
from mixgan.scores import annealed_langevin, predictor_corrector, technique4_step_size

#: backbone arch -> generator class (``network.pt`` stores the arch and the constructor arguments)
GENERATORS = {
    "stylegan2": stylegan2.Generator,
    "fastgan": fastgan.Generator,
    "biggan": biggan.Generator,
}

#: images per batch of a FastGAN generator in train mode: FastGAN-pytorch eval.py --batch 16
FASTGAN_SAMPLE_BATCH = 16


def truncated_normal(
    count: int, dim: int, threshold: float | None, device: torch.device
) -> torch.Tensor:
    """z ~ N(0, I) [count, dim] with every entry beyond ``threshold`` drawn again until
    it lies within (BigGAN's truncation trick); ``None``: no truncation."""
    z = torch.randn(count, dim, device=device)
    if threshold is None:
        return z
    while (outside := z.abs() > threshold).any():
        z[outside] = torch.randn(int(outside.sum()), device=device)
    return z


@torch.no_grad()
def generate_images(
    generator: torch.nn.Module,
    count: int,
    seed: int,
    batch_size: int = 64,
    truncation_psi: float = 1.0,
    truncation: float | None = None,
) -> np.ndarray:
    """``count`` NHWC uint8 images; the same seed gives the same images. A class-conditional
    generator makes the classes in turn (image i of class i mod the class count), from
    latents truncated at ``truncation``; ``truncation_psi`` is StyleGAN2's.

    Runs under a forked RNG, so calling it inside a training loop leaves the loop's random
    streams untouched (evaluations do not change the training trajectory). A FastGAN
    generator runs as its authors sample (module docstring): a train-mode copy, batches of
    :data:`FASTGAN_SAMPLE_BATCH` whatever ``batch_size`` says.
    """
    if isinstance(generator, fastgan.Generator):
        generator = copy.deepcopy(generator).train()
        batch_size = FASTGAN_SAMPLE_BATCH
    device = next(generator.parameters()).device
    devices = [device] if device.type == "cuda" else []
    chunks = []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        for start in range(0, count, batch_size):
            n = min(batch_size, count - start)
            if isinstance(generator, biggan.Generator):
                z = truncated_normal(n, generator.z_dim, truncation, device)
                labels = torch.arange(start, start + n, device=device) % generator.num_classes
                images = generator(z, labels)
            else:
                z = torch.randn(n, generator.z_dim, device=device)
                images = generator(z, None, truncation_psi=truncation_psi, noise_mode="random")
            chunks.append(to_numpy(images))
    return np.concatenate(chunks)


def load_generator(
    network_path: str | Path, device: torch.device
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The selected (best) generator of a run (StyleGAN2, FastGAN or BigGAN, as its ``arch`` says)
    and the metadata stored with it."""
    snapshot = torch.load(network_path, map_location="cpu", weights_only=False)
    arch = snapshot.get("arch", "stylegan2")
    if arch not in GENERATORS:
        raise ValueError(f"{network_path}: unknown generator architecture {arch!r}")
    generator = GENERATORS[arch](**snapshot["generator_kwargs"])
    generator.load_state_dict(snapshot["generator"])
    return generator.to(device).eval().requires_grad_(False), snapshot["meta"]


def sample_score_model(
    scorenet_path: str | Path, backbone: dict[str, Any], count: int, seed: int, batch_size: int,
    device: torch.device,
) -> np.ndarray:  # fmt: skip
    """``count`` NHWC uint8 images from a score network with the backbone's sampler."""
    from mixgan.train.scorenet import load_score_net

    score_net = load_score_net(scorenet_path, device)
    step_lr = backbone.get("step_lr")
    if step_lr == "auto":
        step_lr = technique4_step_size(score_net.sigmas, backbone["steps_each"])
    generator = torch.Generator(device=device).manual_seed(seed)
    chunks = []
    for start in range(0, count, batch_size):
        n = min(batch_size, count - start)
        if backbone["sampler"] == "annealed_langevin":
            images = annealed_langevin(
                score_net, n, backbone["steps_each"], step_lr, generator=generator
            )
        else:
            images = predictor_corrector(
                score_net, n, backbone["snr"], backbone["steps_each"], generator=generator
            )
        chunks.append(to_numpy(images * 2 - 1))
    return np.concatenate(chunks)


def sample_run(
    spec: dict[str, Any], model: str | Path, out_zip: str | Path, count: int, seed: int,
    batch_size: int, device: torch.device,
) -> dict[str, Any]:  # fmt: skip
    """Write ``count`` samples of the run ``spec`` (model = network.pt or scorenet.pt)."""
    started = time.perf_counter()
    backbone = spec["backbone"]
    if backbone["arch"] == "score_sampler":
        images = sample_score_model(model, backbone, count, seed, batch_size, device)
        selected = f"score network sampled with {backbone['sampler']}"
    else:
        generator, meta = load_generator(model, device)
        truncation = backbone.get("truncation")
        images = generate_images(generator, count, seed, batch_size, truncation=truncation)
        selected = meta["selected"]
    record = {
        "run": spec["run"],
        "model": str(model),
        "selected": selected,
        "count": count,
        "seed": seed,
        "truncation_psi": 1.0,
        "truncation": backbone.get("truncation"),
        "seconds": time.perf_counter() - started,
        "provenance": provenance(),
    }
    write_image_zip(out_zip, images, metadata=record)
    return record
