"""The pieces of MixDL, mixup-based distance learning for few-shot GANs (Kong, SNU 2023
thesis, sections 3.2-3.4; ECCV 2022 with Kim, Han and Kwak), used by the ``mixdl`` part
(:class:`MixDL`, at the end of this module).

An anchor latent is a convex mixture w0 = sum_i c_i w_i of N latents ("edges"). With the
N-way distribution p = softmax(c) of its coefficients, MixDL asks

* the generator: q = softmax_i(sim(G_l(w0), G_l(w_i))) to match p (L_dist^G), G_l a synthesis
  layer's activations;
* the discriminator: r = softmax_i(sim(proj(d1(G(w0))), proj(d1(G(w_i))))) to match p
  (L_dist^D), d1 everything of D before its final FC layer, proj a linear projection head;

and it judges the anchors' images with a patch-level discriminator: 1-channel convolutional
heads on intermediate D activations (CDC's patch discriminator, which MixDL reuses).

Where the thesis is silent, the official code (github.com/reyllama/mixdl, ``train_mixdl.py``
and ``model_cdc.py``) decides; each function says which.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mixgan.nets.stylegan2 import (
    Conv2dLayer,
    Discriminator,
    FullyConnectedLayer,
    Generator,
    SynthesisNetwork,
)
from mixgan.train.part_api import Part, Players

COEFFICIENTS = ("dirichlet", "gaussian", "uniform")
KL_DIRECTIONS = ("q_p", "p_q")
D_FEATURES = "b4.fc"  # d1's output: the penultimate features, the input of D's last FC layer


def sample_coefficients(
    kind: str, count: int, n: int, alpha: float = 1.0, device: torch.device | None = None
) -> Tensor:
    """``count`` mixing-coefficient vectors over ``n`` latents, ``[count, n]``, each on the
    probability simplex, drawn from torch's global random streams.

    * ``dirichlet``: c ~ Dir(alpha, ..., alpha) (thesis section 3.2; official code:
      ``Dirichlet(ones / dir_div)``);
    * ``gaussian``: c = softmax(g), g ~ N(0, I_n) (official code: a standard multivariate
      normal sample passed through a softmax; the thesis' Table 6 "Gaussian, standard");
    * ``uniform``: c = u / sum(u), u_i ~ U(0, 1) (official code: ``unif_norm`` of uniform
      samples; Table 6 "Uniform").
    """
    if kind == "dirichlet":
        concentration = torch.full((n,), float(alpha), device=device)
        return torch.distributions.Dirichlet(concentration).sample((count,))
    if kind == "gaussian":
        return torch.softmax(torch.randn(count, n, device=device), dim=1)
    if kind == "uniform":
        u = torch.rand(count, n, device=device)
        return u / u.sum(dim=1, keepdim=True)
    raise ValueError(f"unknown coefficient distribution {kind!r}; one of {COEFFICIENTS}")


def mix_latents(coefficients: Tensor, ws: Tensor) -> Tensor:
    """Anchors w0_b = sum_i c_bi w_i: ``coefficients`` [B, N] times ``ws`` [N, ...]."""
    return torch.einsum("bn,n...->b...", coefficients.to(ws.dtype), ws)


def distance_kl(similarities: Tensor, coefficients: Tensor, direction: str = "q_p") -> Tensor:
    """MixDL's distance loss between q = softmax(similarities) and p = softmax(coefficients),
    row-wise over the N latents (``[B, N]`` each; one row per anchor).

    ``direction`` ``q_p`` is the thesis' KL(q || p) (sections 3.2, 3.3); ``p_q`` is KL(p || q),
    which the official code computes (``nn.KLDivLoss()(log q, p)``). The reduction is the
    official code's (``nn.KLDivLoss``'s default, an element-wise mean): each anchor's KL,
    averaged over the anchors, divided by N. The thesis' weights (lambda_G = 1000,
    lambda_D = 1) belong to that reduction.
    """
    if direction not in KL_DIRECTIONS:
        raise ValueError(f"unknown KL direction {direction!r}; one of {KL_DIRECTIONS}")
    log_q = F.log_softmax(similarities.float(), dim=1)
    log_p = F.log_softmax(coefficients.float(), dim=1)
    if direction == "q_p":
        return (log_q.exp() * (log_q - log_p)).mean()
    return (log_p.exp() * (log_p - log_q)).mean()


def cosine_similarities(anchors: Tensor, edges: Tensor, eps: float = 1e-8) -> Tensor:
    """``[B, N]`` cosine similarities of the flattened ``anchors`` [B, ...] with the flattened
    ``edges`` [N, ...], in float32 (the official code's ``nn.CosineSimilarity``)."""
    a = F.normalize(anchors.flatten(1).float(), dim=1, eps=eps)
    e = F.normalize(edges.flatten(1).float(), dim=1, eps=eps)
    return a @ e.t()


def synthesis_layer_names(synthesis: SynthesisNetwork) -> list[str]:
    """Names of the synthesis layers' activations, in the order the network computes them
    (the keys of ``SynthesisNetwork.forward``'s ``features``)."""
    names = []
    for res in synthesis.block_resolutions:
        names += [f"b{res}.conv0"] if res > 4 else []
        names.append(f"b{res}.conv1")
    return names


def generator_layer_candidates(synthesis: SynthesisNetwork) -> list[str]:
    """The layers L_dist^G may compare features at: every synthesis layer but the first and
    the last. The thesis names one layer l; the official code (as CDC's) draws, for each
    anchor, one of the generator's conv activations with ``randint(1, num_layers - 1)``,
    which leaves out the 4² conv and the last conv at full resolution."""
    names = synthesis_layer_names(synthesis)
    if len(names) < 3:
        raise ValueError("L_dist^G needs a synthesis network with at least 3 layers")
    return names[1:-1]


def generator_similarities(
    features: dict[str, Tensor], names: Sequence[str], layers: Tensor, num_edges: int
) -> Tensor:
    """``[B, N]`` similarities sim(G_l(w0_b), G_l(w_i)) at each anchor's own layer.

    ``features`` holds the synthesis activations of one batch of N edges followed by B
    anchors; ``layers`` [B] (an integer tensor on the CPU) indexes ``names`` for each anchor.
    """
    blocks, order = [], []
    for k in layers.unique().tolist():
        rows = (layers == k).nonzero().flatten()
        activations = features[names[k]]
        edges, anchors = activations[:num_edges], activations[num_edges:]
        blocks.append(cosine_similarities(anchors[rows.to(anchors.device)], edges))
        order.append(rows)
    inverse = torch.cat(order).argsort().to(blocks[0].device)
    return torch.cat(blocks)[inverse]


def patch_taps(discriminator: Discriminator, resolutions: Sequence[int]) -> list[tuple[str, int]]:
    """``(name, channels)`` of the D activations the patch-level heads read: the residual
    branches' conv activations whose spatial size is one of ``resolutions``, in D's order.

    The official code (``Patch_Discriminator``, as CDC's) reads the four 512-channel conv
    activations at 32² and 16² of its 256² D and picks one at random for each D call; here
    the resolutions are a setting and the channel count is whatever the run's D has there.
    """
    taps = []
    for res in discriminator.block_resolutions:
        block = discriminator.block(res)
        for name, size, layer in (("conv0", res, block.conv0), ("conv1", res // 2, block.conv1)):
            if size in resolutions:
                taps.append((f"b{res}.{name}", layer.weight.shape[0]))
    if not taps:
        raise ValueError(
            f"the discriminator has no activations at resolutions {list(resolutions)} for "
            f"MixDL's patch-level heads (its blocks work at {discriminator.block_resolutions})"
        )
    return taps


class PatchHeads(nn.Module):
    """One 3x3 conv to a single channel per tapped D activation, with bias and leaky ReLU:
    the official code's ``Extra`` (``ConvLayer(512, 1, 3)``: equalized-lr conv, fused bias
    and leaky ReLU of gain sqrt(2), which it keeps on the patch logits)."""

    def __init__(self, channels: Sequence[int]) -> None:
        super().__init__()
        self.heads = nn.ModuleList(Conv2dLayer(c, 1, 3, activation="lrelu") for c in channels)

    def __len__(self) -> int:
        return len(self.heads)

    def forward(self, activations: Tensor, index: int) -> Tensor:
        """Patch logits ``[N, 1, H, W]`` of head ``index`` on its D activation."""
        return self.heads[index](activations)


# -- the part ------------------------------------------------------------------------------


def per_image_mean(patch_logits: torch.Tensor) -> torch.Tensor:
    """[N, 1, H, W] patch logits -> [N, 1] means."""
    return patch_logits.flatten(1).mean(1, keepdim=True)


class MixDL(Part):
    """MixDL (Kong, SNU 2023 thesis, sections 3.2-3.4): mixup-based distance learning.

    Steps with ``step % mixup_every == 0`` are MixDL steps, the others standard GAN steps, as
    the official code (``train_mixdl.py``: ``which = i % args.mixup_every``, MixDL's branch at
    ``which == 0``, ``--mixup_every`` 2: the even steps; the thesis does not say). So the lazy
    R1 (every ``r1_interval`` = 16 steps, ``i % d_reg_every == 0``) lands on MixDL steps and,
    as theirs (``flag=which``), penalises the per-image mean of a drawn patch head's logits
    (:meth:`r1_logits`). On a MixDL step, with N = ``num_latents`` (default: the batch size,
    as the official code's batch x batch coefficient matrix) and B = the batch size:

    * latents: N edges w_i = mapping(z_i) in W (no style mixing) and B anchors
      w0_b = sum_i c_bi w_i, c_b ~ ``coefficients`` (``mixgan.train.sample_coefficients``),
      p_b = softmax(c_b);
    * G step: non-saturating loss of the anchors' images under the patch-level D (a random
      head of ``PatchHeads`` on D's activations at ``patch_resolutions``), plus lambda_G x
      KL(q || p), q_b = softmax_i cos(G_l(w0_b), G_l(w_i)) at a layer l drawn per anchor among
      the synthesis layers but the first and last (``generator_layer_candidates``). One batch
      of edges and anchors serves both terms (the official code draws a second batch for the
      distance term);
    * D step: logistic loss of the patch-level D on the real batch and on the anchors' images
      (each D call drawing its head), plus lambda_D x KL(r || p),
      r_b = softmax_i cos(proj(d1(G(w0_b))), proj(d1(G(w_i)))), d1 = D up to its last FC
      layer (its ``b4.fc`` features) and proj a linear layer of ``projection_dim`` outputs
      (thesis section 3.3; the official code's ``sim_linear``, ``EqualLinear(512, 512)`` on
      the 512-d output of D's first epilogue FC, ``model_cdc.py:751,786-788``; its FastGAN
      code a 512-wide one; ``projection_dim: 0`` compares d1 directly).

    The images pass through the method's other ``augment_d_input`` parts (DiffAugment, ADA)
    as in the official code. ``generator_loss``/``discriminator_loss: false`` drop the
    respective distance term (Table 5's D-only/G-only rows, the official code's
    ``--kl_wt 0``/``--d_kl_wt 0``) and leave the patch-level adversarial game. The logits the
    other hooks and the curve get are the per-image means of the patch logits (so ADA counts
    images, not patches). The passes run eagerly (not through ``torch.compile``). The KL is
    the thesis' KL(. || p) unless ``kl_direction: p_q`` (the official code's KL(p || .)), with
    the official reduction (``distance_kl``). ``loss_g``/``loss_d`` of a MixDL step
    include the weighted distance terms; logged apart: ``mixdl_g_kl`` and ``mixdl_d_kl``, the
    unweighted distance losses of the latest MixDL step.
    """

    stage = 4
    takes_steps = True

    def __init__(self, name: str, settings: dict[str, Any]):
        super().__init__(name, settings)
        self.patch_heads: PatchHeads | None = None
        self.patch_names: list[str] = []
        self.projection: nn.Module | None = None
        self.layer_names: list[str] = []
        self.last: dict[str, torch.Tensor | float] = {}
        if settings["generator_loss"]:
            self.last["mixdl_g_kl"] = math.nan
        if settings["discriminator_loss"]:
            self.last["mixdl_d_kl"] = math.nan

    def trainable_modules(
        self, generator: Generator, discriminator: Discriminator
    ) -> list[nn.Module]:
        if self.settings["generator_loss"]:
            self.layer_names = generator_layer_candidates(generator.synthesis)
        taps = patch_taps(discriminator, self.settings["patch_resolutions"])
        self.patch_names = [name for name, _ in taps]
        self.patch_heads = PatchHeads([channels for _, channels in taps])
        modules: list[nn.Module] = [self.patch_heads]
        if self.settings["discriminator_loss"] and self.settings["projection_dim"] > 0:
            width = discriminator.channels[4]  # of d1's output, b4.fc
            self.projection = FullyConnectedLayer(width, self.settings["projection_dim"])
            modules.append(self.projection)
        return modules

    def computes_losses(self, step: int) -> bool:
        return step % self.settings["mixup_every"] == 0

    def _latents(
        self, players: Players, batch: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Edges ws [N, num_ws, w_dim], coefficients c [B, N] and anchors [B, num_ws, w_dim]."""
        count = self.settings["num_latents"] or batch
        ws = players.mapped_ws(count)
        c = sample_coefficients(
            self.settings["coefficients"], batch, count, self.settings["dirichlet_alpha"],
            ws.device,
        )  # fmt: skip
        return ws, c, mix_latents(c, ws)

    def _discriminate(
        self, players: Players, images: torch.Tensor, features: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        """Patch logits [N, 1, H, W] of ``images`` (augmented here) from a random head;
        ``features`` receives D's activations."""
        index = int(torch.randint(len(self.patch_names), ()))
        images = players.augment(images)
        with players.autocast():
            players.D(images, None, features=features)
            logits = self.patch_heads(features[self.patch_names[index]], index)
        return logits.float()

    def g_loss(self, players: Players, batch: int) -> torch.Tensor:
        ws, c, anchors = self._latents(players, batch)
        distance = self.settings["generator_loss"]
        latents = torch.cat([ws, anchors]) if distance else anchors  # edges only for L_dist^G
        features: dict[str, torch.Tensor] = {}
        with players.autocast():
            images = players.G.synthesis(latents, noise_mode="random", features=features)
        logits = self._discriminate(players, images[-batch:].float(), {})
        loss = F.softplus(-logits).mean()
        if distance:
            kl = self.generator_distance(features, c, len(ws))
            self.last["mixdl_g_kl"] = kl.detach()
            loss = loss + self.settings["lambda_g"] * kl
        return loss

    def generator_distance(
        self, features: dict[str, torch.Tensor], c: torch.Tensor, num_edges: int
    ) -> torch.Tensor:
        """L_dist^G (unweighted) from the synthesis activations of N edges then B anchors
        mixed with coefficients ``c`` [B, N]; each anchor's layer is drawn here."""
        layers = torch.randint(len(self.layer_names), (len(c),))
        similarities = generator_similarities(features, self.layer_names, layers, num_edges)
        return distance_kl(similarities, c, self.settings["kl_direction"])

    def discriminator_distance(
        self, features: dict[str, torch.Tensor], c: torch.Tensor, num_edges: int
    ) -> torch.Tensor:
        """L_dist^D (unweighted) from D's activations on N edges then B anchors."""
        d1 = features[D_FEATURES].float()
        embedded = d1 if self.projection is None else self.projection(d1)
        similarities = cosine_similarities(embedded[num_edges:], embedded[:num_edges])
        return distance_kl(similarities, c, self.settings["kl_direction"])

    def d_loss(
        self, players: Players, real: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        batch = len(real)
        distance = self.settings["discriminator_loss"]
        with torch.no_grad():
            ws, c, anchors = self._latents(players, batch)
            latents = torch.cat([ws, anchors]) if distance else anchors  # edges only for L_dist^D
            with players.autocast():
                fake = players.G.synthesis(latents, noise_mode="random").float()
        logits_real = self._discriminate(players, real, {})
        features: dict[str, torch.Tensor] = {}
        logits_fake = self._discriminate(players, fake, features)[-batch:]  # the anchors'
        loss = F.softplus(logits_fake).mean() + F.softplus(-logits_real).mean()
        if distance:
            kl = self.discriminator_distance(features, c, len(ws))
            self.last["mixdl_d_kl"] = kl.detach()
            loss = loss + self.settings["lambda_d"] * kl
        return loss, per_image_mean(logits_real), per_image_mean(logits_fake)

    def r1_logits(self, players: Players, real: torch.Tensor) -> torch.Tensor | None:
        """The per-image mean of a drawn patch head's logits on ``real``: the official R1 on a
        MixDL step (``discriminator(real_img, flag=which, p_ind=...)``, viewed per image and
        averaged)."""
        return per_image_mean(self._discriminate(players, real, {}))

    def stats(self) -> dict[str, float]:
        return {key: float(value) for key, value in self.last.items()}

    def _modules(self) -> dict[str, nn.Module]:
        """The part's trained modules by checkpoint key (the projection only when built)."""
        modules = {"patch_heads": self.patch_heads, "projection": self.projection}
        return {key: module for key, module in modules.items() if module is not None}

    def state_dict(self) -> dict[str, Any]:
        return {
            "modules": {key: module.state_dict() for key, module in self._modules().items()},
            "last": self.stats(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not state:
            return
        for key, module in self._modules().items():
            module.load_state_dict(state["modules"][key])
        self.last.update({k: v for k, v in state["last"].items() if k in self.last})
