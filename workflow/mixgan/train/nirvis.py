"""NIR → VIS faces: a frozen LightCNN-29 v2 encoder and a StyleGAN2 decoder (ReMix Table 2).

ReMix §4: "we use the LightCNN-29v2 and StyleGAN2 to build an encoder-decoder network. The
LightCNN is pre-trained, and we choose to interpolate its outputs. We train the StyleGAN from
scratch using the default settings. In addition, we add the L1 distance loss in the pixel
space as the content supervision"; §4 "we change the dimension of the input latent in
StyleGAN2 to 256" (LightCNN's feature). Here:

* encoder: LightCNN-29 v2 (``weights.pretrained.lightcnn29v2``), frozen (our reading of
  "pre-trained"), on the NIR image as 128² grey in [0, 1]; its 256-d ``fc`` feature is the
  decoder's z. Features of the training images are computed once;
* decoder: StyleGAN2 ``Generator`` (z_dim 256) and ``Discriminator`` on the VIS images, the
  non-saturating logistic loss with lazy R1 (StyleGAN2's defaults: γ 10 every 16 steps, Adam
  0.0025 (0, 0.99)); path-length regularisation, style mixing and the G EMA are left out (the
  decoder's input is a deterministic code, not a prior sample: our choice);
* content: ``lambda_l1`` · L1(G(e), t) (weight not in the paper: 10, our choice); mixup:
  against λt¹ + (1 − λ)t²; WM: against t¹ if λ ≥ 0.5 else t²; ReMix: the relative L1 loss
  (Eq. 8–11 with the per-sample L1 distance as d), e' = λe¹ + (1 − λ)e².

Without the checkpoint (demo only) a seeded untrained LightCNN is the encoder and recognizer,
labelled "stand-in features".
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from mixgan.augment.mixing import partners
from mixgan.nets.lightcnn import INPUT_SIZE, LightCNN29v2
from mixgan.nets.stylegan2 import Discriminator, Generator
from mixgan.train.spade_losses import RelativeContentLoss, interpolate, mixed_target
from mixgan.train.translation import PairedTrainerState


def to_lightcnn(images: np.ndarray) -> Tensor:
    """NHWC uint8 (grey as RGB) → N×1×128×128 in [0, 1], LightCNN's input."""
    grey = torch.from_numpy(images).float().mean(-1, keepdim=True).permute(0, 3, 1, 2) / 255
    return F.interpolate(grey, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)


@torch.no_grad()
def lightcnn_features(
    net: LightCNN29v2, images: np.ndarray, batch: int, device: torch.device
) -> Tensor:
    net.eval().to(device)
    out = [
        net.features(to_lightcnn(images[i : i + batch]).to(device)).cpu()
        for i in range(0, len(images), batch)
    ]
    return torch.cat(out)


def build_decoder(options: dict[str, Any], resolution: int) -> Generator:
    return Generator(
        options["z_dim"],
        options["w_dim"],
        0,
        resolution,
        3,
        options["channel_base"],
        options["channel_max"],
        mapping_layers=options["mapping_layers"],
    )


def training_pairs(data: dict[str, np.ndarray], pairing: str) -> tuple[np.ndarray, np.ndarray]:
    """(NIR indices, VIS candidate lists per NIR) of the training set; ``one_per_identity``
    keeps the first NIR and VIS image of each identity (ReMix Fig. 5's 357 pairs)."""
    nir = np.flatnonzero(data["nir_train"])
    vis = np.flatnonzero(data["vis_train"])
    if pairing == "one_per_identity":
        _, first = np.unique(data["ids"][nir], return_index=True)
        nir = nir[np.sort(first)]
        _, first = np.unique(data["vis_ids"][vis], return_index=True)
        vis = vis[np.sort(first)]
    by_id: dict[Any, list[int]] = {}
    for j in vis:
        by_id.setdefault(data["vis_ids"][j], []).append(int(j))
    nir = np.asarray([i for i in nir if data["ids"][i] in by_id])
    candidates = np.empty(len(nir), dtype=object)
    candidates[:] = [by_id[data["ids"][i]] for i in nir]
    return nir, candidates


class NIRVISTrainer(PairedTrainerState):
    """The decoder G and D over cached encoder features of the NIR training images."""

    def __init__(
        self,
        data: dict[str, np.ndarray],
        features: Tensor,
        candidates: np.ndarray,
        options: dict[str, Any],
        resolution: int,
        plan_kind: str | None,
        device: torch.device,
        seed: int,
    ) -> None:
        self.options, self.kind, self.device = options, plan_kind, device
        self.features, self.candidates = features, candidates
        self.vis = torch.from_numpy(data["vis"]).permute(0, 3, 1, 2)
        self.pick = torch.Generator().manual_seed(seed + 2)
        self.generator = build_decoder(options, resolution).to(device)
        self.discriminator = Discriminator(
            0,
            resolution,
            3,
            options["channel_base"],
            options["channel_max"],
            mbstd_group_size=options["mbstd_group"],
        ).to(device)
        betas = (options["beta1"], options["beta2"])
        ratio = options["r1_interval"] / (options["r1_interval"] + 1)
        self.opt_g = torch.optim.Adam(self.generator.parameters(), options["lr"], betas)
        self.opt_d = torch.optim.Adam(
            self.discriminator.parameters(), options["lr"] * ratio, tuple(b**ratio for b in betas)
        )
        self.relative = RelativeContentLoss(update=options["remix_update"]).to(device)
        self.step = 0

    def _targets(self, index: Tensor) -> Tensor:
        """A VIS image of each NIR item's identity, drawn per step (photo in [-1, 1])."""
        rows = []
        for i in index.tolist():
            options = self.candidates[i]
            rows.append(options[int(torch.randint(len(options), (), generator=self.pick))])
        return (self.vis[rows].float() / 127.5 - 1).to(self.device)

    def train_step(self, first: Tensor, second: Tensor | None, lam: float) -> dict[str, float]:
        e1, t1 = self.features[first].to(self.device), self._targets(first)
        e, target = e1, t1
        if second is not None:
            e2, t2 = self.features[second].to(self.device), self._targets(second)
            e = interpolate(e1, e2, lam)
            if self.kind in ("mixup", "wm"):
                target = mixed_target(t1, t2, lam, self.kind)
        fake = self.generator(e)
        g = {"GAN": F.softplus(-self.discriminator(fake)).mean()}
        if second is not None and self.kind == "remix":
            d1 = (fake - t1).abs().flatten(1).mean(1)
            d2 = (fake - t2).abs().flatten(1).mean(1)
            g["L1"] = self.options["lambda_l1"] * self.relative(d1, d2)
            if len(fake) > 1:  # ā: distances to unrelated targets of the batch (Eq. 10)
                j = partners(len(fake))
                self.relative.update((fake.detach() - t2[j]).abs().flatten(1).mean(1))
        else:
            g["L1"] = self.options["lambda_l1"] * (fake - target).abs().mean()
        self.opt_g.zero_grad(set_to_none=True)
        sum(g.values()).backward()
        self.opt_g.step()
        d = {
            "fake": F.softplus(self.discriminator(fake.detach())).mean(),
            "real": F.softplus(-self.discriminator(t1)).mean(),
        }
        if self.options["r1_gamma"] > 0 and self.step % self.options["r1_interval"] == 0:
            real = t1.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(self.discriminator(real).sum(), real, create_graph=True)
            d["r1"] = grad.square().sum((1, 2, 3)).mean() * (
                self.options["r1_gamma"] / 2 * self.options["r1_interval"]
            )
        self.opt_d.zero_grad(set_to_none=True)
        sum(d.values()).backward()
        self.opt_d.step()
        self.step += 1
        return self.step_stats(g, d)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "pick": self.pick.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.pick.set_state(state["pick"])


@torch.no_grad()
def translate(
    generator: Generator, features: Tensor, batch: int, device: torch.device
) -> np.ndarray:
    """NHWC uint8 VIS images decoded from encoder features (noise inputs held constant)."""
    generator.eval()
    out = []
    for i in range(0, len(features), batch):
        image = generator(features[i : i + batch].to(device), noise_mode="const").clamp(-1, 1)
        out.append(((image + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy())
    return np.concatenate(out)
