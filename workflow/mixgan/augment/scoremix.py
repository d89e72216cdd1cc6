"""The static ScoreMix augmented set of a training subset (Algorithm 1 applied mu x N times).

Pairs (i, j), i != j, are drawn uniformly from the subset and lambda ~ Beta(alpha, alpha);
each mixed image is moved towards the data manifold by ``mixgan.scores.scoremix``. All
random draws come from one seeded generator and are made before any optimisation, so the
first K images of a set with mu = 100 are the set with mu = 10 (same seed, same pairs).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import torch

from mixgan.scores import sample_lambdas, scoremix

log = logging.getLogger(__name__)


def draw_pairs(num_images: int, count: int, generator: torch.Generator) -> torch.Tensor:
    """``count`` index pairs (i, j) with i != j, uniform over the subset."""
    if num_images < 2:
        raise ValueError("ScoreMix needs at least two training images to mix")
    first = torch.randint(num_images, (count,), generator=generator)
    offset = torch.randint(1, num_images, (count,), generator=generator)
    return torch.stack([first, (first + offset) % num_images], dim=1)


def make_augmented_set(
    images: torch.Tensor,
    score_net: torch.nn.Module,
    settings: dict[str, Any],
    batch_size: int = 64,
) -> tuple[np.ndarray, dict[str, Any]]:
    """mu x N ScoreMix images (NHWC uint8) of NCHW uint8 ``images`` and what produced them."""
    count = settings["mu"] * len(images)
    generator = torch.Generator().manual_seed(settings["seed"])
    pairs = draw_pairs(len(images), count, generator)
    lambdas = sample_lambdas(count, settings["alpha"], generator=generator)
    device = next(score_net.parameters()).device
    out = []
    started = time.perf_counter()
    for start in range(0, count, batch_size):
        index = pairs[start : start + batch_size]
        x1 = images[index[:, 0]].to(device, torch.float32) / 255
        x2 = images[index[:, 1]].to(device, torch.float32) / 255
        lam = lambdas[start : start + batch_size].to(device)
        mixed = scoremix(
            x1, x2, score_net, lam,
            steps=settings["steps"], lr=settings["lr"], final_denoise=settings["final_denoise"],
        )  # fmt: skip
        out.append((mixed * 255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu())
        done = min(start + batch_size, count)
        elapsed = time.perf_counter() - started
        log.info(
            "ScoreMix %d/%d images, %.2f s/image, ETA %.0f s",
            done, count, elapsed / done, elapsed / done * (count - done),
        )  # fmt: skip
    record = {
        "count": count,
        "pairs": pairs.tolist(),
        "lambdas": lambdas.tolist(),
    }
    if not out:
        return np.zeros((0, *images.shape[2:], images.shape[1]), np.uint8), record
    return torch.cat(out).numpy(), record
