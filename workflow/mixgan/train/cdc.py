"""Few-shot adaptation by cross-domain correspondence (CDC; Ojha et al., CVPR 2021).

A StyleGAN2 pretrained on a source domain is adapted to a few target images. G, G_ema and D
start from the source's (as the official code: its raw G, G_ema and D); a frozen copy of the
source's raw G keeps, for every latent z_i of a
small batch, the distribution of its feature similarities to the batch's other latents:

    p_i = softmax_j sim(G_s^l(z_i), G_s^l(z_j)),   q_i = softmax_j sim(G_t^l(z_i), G_t^l(z_j)),

j != i, at a synthesis layer l drawn per z_i, and G's loss gains weight x KL(p || q) (the
official code's ``kl_wt * KLDivLoss()(log q, p)``, an element-wise mean). D judges whole
images only for latents near a few fixed anchors and patches elsewhere (``parts.CDC``).

The functions here are the loss and its inputs; the part lives in ``mixgan.train.parts``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from mixgan.io import sha256_file
from mixgan.train import mixdl


def load_source(
    path: Path, generator: nn.Module, discriminator: nn.Module
) -> tuple[dict[str, dict[str, Tensor]], dict[str, Any]]:
    """The source's networks from a ``network.pt`` that ``mixgan train --keep-networks`` wrote
    for a StyleGAN2 run (the workflow does for a CDC ``source_run``): ``G`` (the last raw
    generator), ``G_ema`` (the selected one) and ``D`` (the last), each checked against the
    run's networks; and the file's record."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"CDC source model {path} does not exist")
    snapshot = torch.load(path, map_location="cpu", weights_only=True)
    missing = [key for key in ("generator_last", "discriminator") if key not in snapshot]
    if snapshot.get("arch") != "stylegan2" or missing:
        raise ValueError(
            f"CDC source model {path}: needs the network.pt of a StyleGAN2 run trained with "
            f"--keep-networks (this one: arch {snapshot.get('arch')!r}, "
            f"missing {', '.join(missing) or 'nothing'})"
        )
    states = {
        "G": snapshot["generator_last"],
        "G_ema": snapshot["generator"],
        "D": snapshot["discriminator"],
    }
    for role, module in (("G", generator), ("G_ema", generator), ("D", discriminator)):
        check_compatible(states[role], module, f"CDC source model {path} ({role})")
    return states, {"path": str(path), "sha256": sha256_file(path), "stand_in": False}


def check_compatible(state: dict[str, Tensor], module: nn.Module, what: str) -> None:
    """Raise naming the first tensor where ``state`` does not fit ``module``."""
    expected = module.state_dict()
    for key in sorted(expected.keys() | state.keys()):
        if key not in state or key not in expected:
            where = "missing from the source" if key not in state else "not in the run's network"
            raise ValueError(f"{what}: tensor {key} is {where}; the architectures differ")
        if state[key].shape != expected[key].shape:
            raise ValueError(
                f"{what}: tensor {key} has shape {tuple(state[key].shape)}, the run's network "
                f"{tuple(expected[key].shape)}; the backbones differ (resolution or width)"
            )


def sample_near_anchors(anchors: Tensor, count: int, std: float) -> Tensor:
    """``count`` latents, each a random anchor plus N(0, std²) noise (CDC's sub-regions)."""
    index = torch.randint(len(anchors), (count,), device=anchors.device)
    return anchors[index] + std * torch.randn(count, anchors.shape[1], device=anchors.device)


def within_batch_similarities(
    features: dict[str, Tensor], names: Sequence[str], layers: Tensor
) -> Tensor:
    """``[N, N-1]`` cosine similarities of each sample's activation with every other sample's
    (in batch order, itself left out), at the layer ``names[layers[i]]`` drawn for sample i."""
    rows = []
    for i, k in enumerate(layers.tolist()):
        similarities = mixdl.cosine_similarities(features[names[k]][i : i + 1], features[names[k]])
        rows.append(torch.cat([similarities[0, :i], similarities[0, i + 1 :]]))
    return torch.stack(rows)


def distance_consistency(target: Tensor, source: Tensor) -> Tensor:
    """KL(softmax(source) || softmax(target)) row-wise, as an element-wise mean over the
    ``[N, N-1]`` entries (``nn.KLDivLoss()(log q, p)``, the official reduction)."""
    return mixdl.distance_kl(target, source, direction="p_q")
