"""Few-shot adaptation by cross-domain correspondence (CDC; Ojha et al., CVPR 2021).

A StyleGAN2 pretrained on a source domain is adapted to a few target images. G, G_ema and D
start from the source's (as the official code: its raw G, G_ema and D); a frozen copy of the
source's raw G keeps, for every latent z_i of a
small batch, the distribution of its feature similarities to the batch's other latents:

    p_i = softmax_j sim(G_s^l(z_i), G_s^l(z_j)),   q_i = softmax_j sim(G_t^l(z_i), G_t^l(z_j)),

j != i, at a synthesis layer l drawn per z_i among all but the first (:func:`layer_candidates`),
and G's loss gains weight x KL(p || q) (the official code's ``kl_wt * KLDivLoss()(log q, p)``,
an element-wise mean). D judges whole images only for latents near a few fixed anchors and
patches elsewhere (:class:`CDC`).

The functions here are the loss and its inputs; :class:`CDC`, at the end, is the part.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mixgan.io import sha256_file
from mixgan.nets.stylegan2 import Discriminator, Generator, SynthesisNetwork
from mixgan.train import mixdl
from mixgan.train.mixdl import per_image_mean
from mixgan.train.part_api import Part, Players


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


def layer_candidates(synthesis: SynthesisNetwork) -> list[str]:
    """The synthesis layers the distance consistency may compare at: every layer but the first
    (the 4² conv), the last included. The official code (utkarshojha/few-shot-gan-adaptation,
    ``train.py``: ``feat_ind = numpy.random.randint(1, g_source.module.n_latent - 1)``, with
    ``n_latent`` = 2 log2(size) - 2, indexing ``feat_list``'s 2 log2(size) - 3 activations of
    ``model.py``) draws indices 1 to 2 log2(size) - 4, the last layer's. MixDL's own draw
    (``mixgan.train.mixdl.generator_layer_candidates``) leaves the last out."""
    return mixdl.synthesis_layer_names(synthesis)[1:]  # 2 or more: resolutions start at 8²


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


# -- the part ------------------------------------------------------------------------------


class CDC(Part):
    """Cross-domain correspondence (Ojha et al. 2021; ``mixgan.train.cdc``): adapt a source
    StyleGAN2 (``--source-model``, a ``network.pt`` with G and D) to the training images.

    G, G_ema and D start from the source's last raw G, its selected G_ema and its last D, as
    the official code's; a frozen copy of the source's raw G anchors the distance consistency.
    Every step is the part's: on steps with ``step % anchor_every == 0`` the fakes come from
    latents near ``anchors`` fixed anchors (z = anchor + N(0, anchor_std²), no style mixing)
    and D's full output judges them; on the others z ~ N(0, I) with the run's style mixing and
    a patch-level head (a 3x3 conv on one of the first ``patch_layers`` D activations at
    ``patch_resolutions``, drawn per D call, as MixDL's heads) judges reals and fakes. G's
    loss adds ``weight`` x KL(p || q) over ``distance_batch`` new latents, each compared with
    the others at a synthesis layer drawn for it (every layer but the first). The
    images pass through the method's other ``augment_d_input`` parts. The lazy R1 follows
    the step's level, as the official code's: D's output near the anchors, else the per-image
    mean of a drawn head's patch logits.
    Logged: ``cdc_distance``, the unweighted distance loss of the latest step.
    """

    stage = 4
    takes_steps = True

    def __init__(self, name: str, settings: dict[str, Any], source_model: Path | None):
        super().__init__(name, settings)
        if source_model is None:
            raise ValueError(f"part {name}: CDC needs its source model (--source-model)")
        self.source_model = source_model
        self.source: Generator | None = None
        self.source_ema: dict[str, torch.Tensor] = {}
        self.record: dict[str, Any] = {}
        self.anchors: torch.Tensor | None = None
        self.layer_names: list[str] = []
        self.patch_heads: mixdl.PatchHeads | None = None
        self.patch_names: list[str] = []
        self.last: torch.Tensor | float = math.nan

    def initialize_networks(self, generator: nn.Module, discriminator: nn.Module) -> None:
        if not isinstance(generator, Generator):
            raise ValueError(f"part {self.name}: CDC adapts a StyleGAN2 generator")
        states, self.record = load_source(self.source_model, generator, discriminator)
        generator.load_state_dict(states["G"])
        discriminator.load_state_dict(states["D"])
        self.source = copy.deepcopy(generator).eval().requires_grad_(False)
        self.source_ema = states["G_ema"]
        self.layer_names = layer_candidates(generator.synthesis)
        device = next(generator.parameters()).device
        self.anchors = torch.randn(self.settings["anchors"], generator.z_dim, device=device)

    def initial_ema(self) -> dict[str, torch.Tensor] | None:
        return self.source_ema

    def networks(self) -> dict[str, dict[str, Any]]:
        return {"cdc_source": self.record}

    def trainable_modules(
        self, generator: Generator, discriminator: Discriminator
    ) -> list[nn.Module]:
        taps = mixdl.patch_taps(discriminator, self.settings["patch_resolutions"])
        taps = taps[: self.settings["patch_layers"]]
        self.patch_names = [name for name, _ in taps]
        self.patch_heads = mixdl.PatchHeads([channels for _, channels in taps])
        return [self.patch_heads]

    def computes_losses(self, step: int) -> bool:
        return True

    def _near_anchors(self, players: Players) -> bool:
        return players.step % self.settings["anchor_every"] == 0

    def _fake_ws(self, players: Players, batch: int) -> torch.Tensor:
        if self._near_anchors(players):
            z = sample_near_anchors(self.anchors, batch, self.settings["anchor_std"])
            return players.G.mapping(z, None, update_emas=True)
        return players.generate_ws(players.sample_z(batch))

    def _discriminate(self, players: Players, images: torch.Tensor) -> torch.Tensor:
        """D's full logits [N, 1] near the anchors, else a random head's patch logits
        [N, 1, H, W], of ``images`` after the other parts' augmentations."""
        images = players.augment(images)
        with players.autocast():
            if self._near_anchors(players):
                return players.D(images, None).float()
            features: dict[str, torch.Tensor] = {}
            index = int(torch.randint(len(self.patch_names), ()))
            players.D(images, None, features=features)
            return self.patch_heads(features[self.patch_names[index]], index).float()

    def g_loss(self, players: Players, batch: int) -> torch.Tensor:
        ws = self._fake_ws(players, batch)
        with players.autocast():
            images = players.G.synthesis(ws, noise_mode="random").float()
        loss = F.softplus(-self._discriminate(players, images)).mean()
        distance = self.distance(players)
        self.last = distance.detach()
        return loss + self.settings["weight"] * distance

    def distance(self, players: Players) -> torch.Tensor:
        """The unweighted distance-consistency loss on ``distance_batch`` new latents."""
        z = players.sample_z(self.settings["distance_batch"])
        layers = torch.randint(len(self.layer_names), (len(z),))
        source: dict[str, torch.Tensor] = {}
        target: dict[str, torch.Tensor] = {}
        with torch.no_grad():
            self.source.synthesis(
                self.source.mapping(z, None), noise_mode="random", features=source
            )
        with players.autocast():
            players.G.synthesis(players.G.mapping(z, None), noise_mode="random", features=target)
        return distance_consistency(
            within_batch_similarities(target, self.layer_names, layers),
            within_batch_similarities(source, self.layer_names, layers),
        )

    def d_loss(
        self, players: Players, real: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            ws = self._fake_ws(players, len(real))
            with players.autocast():
                fake = players.G.synthesis(ws, noise_mode="random").float()
        logits_real = self._discriminate(players, real)
        logits_fake = self._discriminate(players, fake)
        loss = F.softplus(logits_fake).mean() + F.softplus(-logits_real).mean()
        return loss, per_image_mean(logits_real), per_image_mean(logits_fake)

    def r1_logits(self, players: Players, real: torch.Tensor) -> torch.Tensor | None:
        return per_image_mean(self._discriminate(players, real))

    def stats(self) -> dict[str, float]:
        return {"cdc_distance": float(self.last)}

    def state_dict(self) -> dict[str, Any]:
        return {
            "anchors": self.anchors.cpu(),
            "patch_heads": self.patch_heads.state_dict(),
            "last": float(self.last),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not state:
            return
        self.anchors = state["anchors"].to(self.anchors.device)
        self.patch_heads.load_state_dict(state["patch_heads"])
        self.last = state["last"]
