"""SPADE's training losses and ReMix's relative perceptual loss (ReMix Table 3).

SPADE (NVlabs/SPADE, commit fecacc9; ``models/pix2pix_model.py`` ``compute_generator_loss``
and ``compute_discriminator_loss``, ``models/networks/loss.py``; weights from
``options/train_options.py``):

* hinge GAN loss (``gan_mode='hinge'``): D: ``-mean(min(x - 1, 0))`` on real,
  ``-mean(min(-x - 1, 0))`` on fake; G: ``-mean(x)``; on the last output of every scale,
  averaged over the ``num_D`` scales (``GANLoss.__call__``);
* feature matching (``lambda_feat=10``): L1 between the fake and (detached) real outputs of
  every intermediate discriminator layer, summed, times ``lambda_feat / num_D``;
* VGG perceptual loss (``lambda_vgg=10``, ``VGGLoss``): L1 between VGG-19 relu1_1, relu2_1,
  relu3_1, relu4_1, relu5_1 features (``architecture.py`` ``VGG19``: ``features[0:2]``,
  ``[2:7]``, ``[7:12]``, ``[12:21]``, ``[21:30]``) with weights 1/32, 1/16, 1/8, 1/4, 1; the
  target's features detached; images fed in SPADE's [-1, 1] range, *without* ImageNet
  normalisation, as ``VGGLoss`` does.

ReMix (paper 003, §3.2, Eq. 6–13, Algorithm 1; §4.1 for SPADE):

* "We directly interpolate the raw inputs in this task": x' = λ x¹ + (1 − λ) x² on the SPADE
  input (one-hot label map ⊕ instance edges), λ = max(μ, 1 − μ), μ ~ Beta(α, α), α = 0.2,
  one draw per batch (Algorithm 1), applied with probability p = 0.25 per iteration (§4.1);
* the content loss is SPADE's VGG loss, made relative: with d(s, t) the per-sample VGG distance
  (the quantity ``VGGLoss`` averages over the batch), L_p = mean_i max(0, d(s'ᵢ, t¹ᵢ) −
  d(s'ᵢ, t²ᵢ)) (Eq. 8), L_n = mean_i max(0, d(s'ᵢ, t²ᵢ) − ā) (Eq. 9), times ``lambda_vgg``;
  the batch means follow Algorithm 1 (``.mean()``) where Eq. 8–9 write sums;
* ā starts at 0; after each step a = mean_i d(s'ᵢ, t²_{j(i)}) with j(i) ≠ i (Eq. 10;
  Algorithm 1 ``shuf(t2)``) and ā ← m ā + (1 − m)(a − ā), m = 0.99 (Eq. 11, written the same
  in Algorithm 1). Taken literally its fixed point is ā = a / 2, not a; ``update="ema"`` gives
  the usual ā ← m ā + (1 − m) a for comparison. The paper's form is the default;
* baselines (Eq. 12, 13): mixup's target t' = λ t¹ + (1 − λ) t²; WM's t' = t¹ if λ ≥ 0.5
  else t², used wherever SPADE uses the real image.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
from torch import Tensor, nn

from mixgan.augment.mixing import partners
from mixgan.nets.imagenet_backbones import from_state_dict
from mixgan.scores import sample_lambdas

LAMBDA_FEAT = 10.0  # options/train_options.py --lambda_feat
LAMBDA_VGG = 10.0  # options/train_options.py --lambda_vgg
VGG_WEIGHTS = (1.0 / 32, 1.0 / 16, 1.0 / 8, 1.0 / 4, 1.0)  # loss.py VGGLoss.weights
VGG_SLICES = ((0, 2), (2, 7), (7, 12), (12, 21), (21, 30))  # architecture.py VGG19
REMIX_ALPHA = 0.2  # ReMix §4.1: "we set the hyper-parameter α = 0.2"
REMIX_P = 0.25  # ReMix §4.1: "probability of augmentation to 0.25"
REMIX_MOMENTUM = 0.99  # ReMix Eq. 11: "we set the momentum coefficient m to 0.99"


# ---------------------------------------------------------------- SPADE's losses


def hinge_d_loss(preds: list[list[Tensor]], real: bool) -> Tensor:
    """``GANLoss(..., for_discriminator=True)`` with ``gan_mode='hinge'`` on every scale."""
    sign = 1.0 if real else -1.0
    losses = [-torch.clamp(sign * p[-1] - 1, max=0).mean() for p in preds]
    return torch.stack(losses).mean()


def hinge_g_loss(preds: list[list[Tensor]]) -> Tensor:
    """``GANLoss(pred_fake, True, for_discriminator=False)``: -mean(D), averaged over scales."""
    return torch.stack([-p[-1].mean() for p in preds]).mean()


def feature_matching_loss(
    fake: list[list[Tensor]], real: list[list[Tensor]], weight: float = LAMBDA_FEAT
) -> Tensor:
    """``compute_generator_loss`` ``GAN_Feat``: Σ over scales and intermediate layers of
    L1(fake, real.detach()) · weight / num_D (the last output, the score, is excluded)."""
    total = fake[0][0].new_zeros(())
    for f_scale, r_scale in zip(fake, real, strict=True):
        for f, r in zip(f_scale[:-1], r_scale[:-1], strict=True):
            total = total + (f - r.detach()).abs().mean() * weight / len(fake)
    return total


class VGG19Slices(nn.Module):
    """``architecture.py`` ``VGG19``: relu1_1 … relu5_1 of a torchvision VGG-19, frozen."""

    def __init__(self, features: nn.Sequential):
        super().__init__()
        self.slices = nn.ModuleList(
            nn.Sequential(*[features[i] for i in range(a, b)]) for a, b in VGG_SLICES
        )
        self.requires_grad_(False)
        self.eval()

    @classmethod
    def from_state_dict(cls, path: str | Path) -> VGG19Slices:
        """From a torchvision ``vgg19`` state_dict file (ImageNet weights for the real loss)."""
        state = torch.load(path, map_location="cpu", weights_only=True)
        return cls(from_state_dict("vgg19", state).features)

    def train(self, mode: bool = True) -> VGG19Slices:
        """Always eval: the loss network never changes mode (it has no dropout/BN anyway)."""
        return super().train(False)

    def forward(self, x: Tensor) -> list[Tensor]:
        out = []
        for block in self.slices:
            x = block(x)
            out.append(x)
        return out


def vgg_distance(fx: list[Tensor], fy: list[Tensor]) -> Tensor:
    """Per-sample SPADE VGG distance (N,): Σ_l w_l · mean |φ_l(x) − φ_l(y).detach()|; its
    batch mean is ``VGGLoss`` (unweighted by ``lambda_vgg``)."""
    total = fx[0].new_zeros(fx[0].shape[0])
    for w, a, b in zip(VGG_WEIGHTS, fx, fy, strict=True):
        total = total + w * (a - b.detach()).abs().flatten(1).mean(1)
    return total


def vgg_loss(vgg: VGG19Slices, fake: Tensor, real: Tensor, weight: float = LAMBDA_VGG) -> Tensor:
    """``compute_generator_loss`` ``VGG``: ``criterionVGG(fake, real) * lambda_vgg``."""
    return weight * vgg_distance(vgg(fake), vgg(real)).mean()


def generator_losses(
    d_fake: list[list[Tensor]],
    d_real: list[list[Tensor]],
    vgg: VGG19Slices,
    fake: Tensor,
    target: Tensor,
) -> dict[str, Tensor]:
    """SPADE's generator terms (``GAN``, ``GAN_Feat``, ``VGG``) for a batch with targets."""
    return {
        "GAN": hinge_g_loss(d_fake),
        "GAN_Feat": feature_matching_loss(d_fake, d_real),
        "VGG": vgg_loss(vgg, fake, target),
    }


def discriminator_losses(
    d_fake: list[list[Tensor]], d_real: list[list[Tensor]]
) -> dict[str, Tensor]:
    """``compute_discriminator_loss``: ``D_Fake`` and ``D_real`` hinge terms."""
    return {"D_Fake": hinge_d_loss(d_fake, real=False), "D_real": hinge_d_loss(d_real, real=True)}


# ---------------------------------------------------------------- ReMix and its baselines


def remix_lambda(alpha: float = REMIX_ALPHA, generator: torch.Generator | None = None) -> float:
    """λ = max(μ, 1 − μ), μ ~ Beta(α, α) (Eq. 6–7), one per batch (Algorithm 1); μ from
    :func:`mixgan.scores.sample_lambdas` (reproducible per ``generator``)."""
    mu = float(sample_lambdas(1, alpha, generator)[0])
    return max(mu, 1.0 - mu)


def interpolate(x1: Tensor, x2: Tensor, lam: float) -> Tensor:
    """Eq. 3 on the raw input: λ x¹ + (1 − λ) x²."""
    return lam * x1 + (1 - lam) * x2


def mixed_target(t1: Tensor, t2: Tensor, lam: float, kind: Literal["mixup", "wm"]) -> Tensor:
    """The estimated target of the baselines: mixup (Eq. 12) or WM (Eq. 13)."""
    if kind == "mixup":
        return interpolate(t1, t2, lam)
    if kind == "wm":
        return t1 if lam >= 0.5 else t2
    raise ValueError(f"unknown mixed-target kind {kind!r} (mixup, wm)")


class RelativeContentLoss(nn.Module):
    """ReMix's relative form of a content loss (Eq. 8–11) with its running margin ā."""

    a_bar: Tensor

    def __init__(self, momentum: float = REMIX_MOMENTUM, update: Literal["paper", "ema"] = "paper"):
        super().__init__()
        if update not in ("paper", "ema"):
            raise ValueError(f"unknown ā update {update!r} (paper, ema)")
        self.momentum = momentum
        self.update_rule = update
        self.register_buffer("a_bar", torch.zeros(()))  # "We initialize ā to 0"

    def forward(self, d1: Tensor, d2: Tensor) -> Tensor:
        """L_p + L_n from per-sample distances d(s', t¹) and d(s', t²)."""
        l_p = torch.clamp(d1 - d2, min=0).mean()
        l_n = torch.clamp(d2 - self.a_bar, min=0).mean()
        return l_p + l_n

    @torch.no_grad()
    def update(self, a: Tensor) -> None:
        """ā ← m ā + (1 − m)(a − ā) (Eq. 11; ``ema``: m ā + (1 − m) a), a = mean unrelated
        distance (Eq. 10)."""
        m, a = self.momentum, a.detach().mean().to(self.a_bar)
        step = a - self.a_bar if self.update_rule == "paper" else a
        self.a_bar.copy_(m * self.a_bar + (1 - m) * step)


def relative_vgg_loss(
    vgg: VGG19Slices,
    relative: RelativeContentLoss,
    fake: Tensor,
    t1: Tensor,
    t2: Tensor,
    weight: float = LAMBDA_VGG,
    partner: Tensor | None = None,
) -> Tensor:
    """ReMix's relative VGG loss of outputs ``fake`` = G(x') (Algorithm 1: loss with the
    current ā, then ā updated from d(s', t²_j), j ≠ i; ``partner`` gives j, random if None)."""
    f_fake, f1, f2 = vgg(fake), vgg(t1), vgg(t2)
    loss = weight * relative(vgg_distance(f_fake, f1), vgg_distance(f_fake, f2))
    if len(fake) > 1:  # a batch of one has no unrelated target: ā stays
        j = partners(len(fake)) if partner is None else partner
        relative.update(vgg_distance([f.detach() for f in f_fake], [f[j] for f in f2]))
    return loss
