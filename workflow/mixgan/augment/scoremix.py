"""ScoreMix as a mixing function, and the static augmented set of a training subset.

:class:`ScoreMixer` has the call of ``mixgan.augment.mixing`` (``mix(x1, x2, lam)``), so the
static set, the online (growing mu) mode of the GAN loop, image-to-image uses (augmenting
generator inputs) and Figure 3 all run Algorithm 1 through the same object.

The static set draws pairs (i, j), i != j, uniformly from the subset (``pairs: same_class``:
j of i's class, so the mixture keeps i's label for a class-conditional GAN) and lambda ~
Beta(alpha, alpha), all from one seeded generator before any optimisation, then moves each
mixture towards the data manifold (``mixgan.scores.scoremix``); the final denoising's noise
of image k comes from a seed hashed from the set's seed and k. With the same seed, a set with
a larger mu starts with the pairs, weights and images of a smaller one.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mixgan.augment.mixing import Mixer
from mixgan.nets.ncsn import ScoreNet
from mixgan.scores import (
    DEFAULT_DENOISE,
    generator_noise,
    per_example_noise,
    sample_lambdas,
    scoremix,
)

log = logging.getLogger(__name__)


class ScoreMixer:
    """Algorithm 1 with fixed settings: ``mixer(x1, x2, lam)`` -> images in [0, 1].

    ``final_denoise`` is the part's setting (``{"mode": "sdedit", "t0": 0.25, "steps": None}``
    by default; see :func:`mixgan.scores.scoremix`).
    """

    def __init__(
        self,
        score_net: ScoreNet,
        steps: int = 100,
        lr: float = 0.005,
        final_denoise: dict[str, Any] | None = None,
    ):
        self.score_net = score_net
        self.steps, self.lr = steps, lr
        self.final_denoise = {**DEFAULT_DENOISE, **(final_denoise or {})}

    @classmethod
    def from_part(cls, score_net: ScoreNet, part: dict[str, Any]) -> ScoreMixer:
        """A mixer with the settings of a configured ``scoremix`` part."""
        return cls(score_net, part["steps"], part["lr"], part["final_denoise"])

    def __call__(
        self,
        x1: Tensor,
        x2: Tensor,
        lam: Tensor,
        generator: torch.Generator | None = None,
        seeds: Tensor | None = None,
    ) -> Tensor:
        """Mix; the denoising noise comes from ``seeds`` (one per example) if given, else from
        ``generator``, else from the global RNG on the network's device."""
        device = self.score_net.sigmas.device
        noise = (
            per_example_noise(seeds, device)
            if seeds is not None
            else generator_noise(generator, device)
        )
        out = scoremix(
            x1.to(device), x2.to(device), self.score_net, lam.to(device),
            steps=self.steps, lr=self.lr, final_denoise=self.final_denoise, noise=noise,
        )  # fmt: skip
        return out.to(x1.device)


def draw_pairs(
    num_images: int, count: int, generator: torch.Generator, labels: Tensor | None = None
) -> Tensor:
    """``count`` index pairs (i, j) with i != j, uniform over the subset; with ``labels``
    ([num_images] int), j is uniform over the other images of i's class.

    Both indices of a pair come from consecutive draws, so the first K pairs of a longer
    draw are the pairs of a draw of K (the mu = 10 set is a prefix of the mu = 100 set).
    """
    if num_images < 2:
        raise ValueError("ScoreMix needs at least two training images to mix")
    uniform = torch.rand((count, 2), generator=generator, dtype=torch.float64)
    first = (uniform[:, 0] * num_images).long().clamp_max(num_images - 1)
    if labels is None:
        offset = 1 + (uniform[:, 1] * (num_images - 1)).long().clamp_max(num_images - 2)
        return torch.stack([first, (first + offset) % num_images], dim=1)
    members = {int(c): torch.nonzero(labels == c).flatten() for c in labels.unique()}
    if lonely := [c for c, m in members.items() if len(m) < 2]:
        raise ValueError(
            f"ScoreMix within classes needs two images per class; class {lonely[0]} has one"
        )
    second = torch.empty_like(first)
    for c, group in members.items():
        chosen = labels[first] == c
        rank = torch.searchsorted(group, first[chosen])  # i's place in its class
        offset = 1 + (uniform[chosen, 1] * (len(group) - 1)).long().clamp_max(len(group) - 2)
        second[chosen] = group[(rank + offset) % len(group)]
    return torch.stack([first, second], dim=1)


def image_seeds(seed: int, start: int, count: int) -> Tensor:
    """The noise seed of augmented images ``start .. start + count - 1`` of a set: a hash of
    the set's seed and the image's index, so it does not depend on batches or mu."""
    states = [
        np.random.SeedSequence([seed, index]).generate_state(2, np.uint32)
        for index in range(start, start + count)
    ]
    return torch.tensor([int(a) << 31 | int(b) >> 1 for a, b in states], dtype=torch.int64)


def make_augmented_set(
    images: Tensor,
    mixer: ScoreMixer | Mixer,
    part: dict[str, Any],
    batch_size: int = 64,
    labels: Tensor | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """mu x N ScoreMix images (NHWC uint8) of NCHW uint8 ``images`` and what produced them;
    with ``pairs: same_class`` the images' ``labels`` pair them, and the record gives each
    augmented image its pair's class."""
    within_class = part.get("pairs") == "same_class"
    if within_class and labels is None:
        raise ValueError("pairs: same_class needs the subset's class labels; it has none")
    count = part["mu"] * len(images)
    generator = torch.Generator().manual_seed(part["seed"])
    # Weights first (one draw for their seed), then pairs: both stay prefixes as mu grows.
    lambdas = sample_lambdas(count, part["alpha"], generator=generator)
    pairs = draw_pairs(len(images), count, generator, labels if within_class else None)
    out = []
    started = time.perf_counter()
    for start in range(0, count, batch_size):
        index = pairs[start : start + batch_size]
        x1 = images[index[:, 0]].float() / 255
        x2 = images[index[:, 1]].float() / 255
        lam = lambdas[start : start + batch_size]
        if isinstance(mixer, ScoreMixer):
            mixed = mixer(x1, x2, lam, seeds=image_seeds(part["seed"], start, len(index)))
        else:  # a baseline mixer (tests, comparisons): no denoising noise
            mixed = mixer(x1, x2, lam)
        out.append((mixed * 255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu())
        done = min(start + batch_size, count)
        elapsed = time.perf_counter() - started
        log.info(
            "ScoreMix %d/%d images, %.2f s/image, ETA %.0f s",
            done, count, elapsed / done, elapsed / done * (count - done),
        )  # fmt: skip
    record = {
        "count": count,
        "seconds": time.perf_counter() - started,
        "pairs": pairs.tolist(),
        "lambdas": lambdas.tolist(),
        "labels": labels[pairs[:, 0]].tolist() if within_class else None,
    }
    if not out:
        return np.zeros((0, *images.shape[2:], images.shape[1]), np.uint8), record
    return torch.cat(out).numpy(), record
