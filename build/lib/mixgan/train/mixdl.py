"""The pieces of MixDL, mixup-based distance learning for few-shot GANs (Kong, SNU 2023
thesis, sections 3.2-3.4; ECCV 2022 with Kim, Han and Kwak), used by the ``mixdl`` part
(``mixgan.train.parts.MixDL``).

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

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mixgan.nets.stylegan2 import Conv2dLayer, Discriminator, SynthesisNetwork

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
