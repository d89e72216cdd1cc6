"""SPADE on label maps → photos with ReMix and its baselines (ReMix Table 3).

One step, as NVlabs/SPADE's ``pix2pix_trainer.py`` (G step, then D step, TTUR learning rates
lr/2 and 2·lr with Adam (0, 0.9), linear decay over the last ``decay_epochs``), with the
losses of :mod:`mixgan.train.spade_losses`. On a mixed step (x' = λ x¹ + (1 − λ) x² on the
one-hot ⊕ edge input, "we directly interpolate the raw inputs"):

* mixup / WM: their estimated target t' stands wherever SPADE uses the real photo: D's real
  pair (x', t'), feature matching against D(x', t'), VGG loss against t';
* ReMix: "we only modify the mentioned losses": the VGG loss becomes the relative one
  (t¹, t²; running margin ā); ReMix has no estimated target, so D's real pair is the unmixed
  (x¹, t¹) and feature matching, which needs a real pair of the same input, is skipped on
  mixed steps (our choice; the paper is silent). Unmixed steps are plain SPADE.

Without ``weights.pretrained.vgg19`` (demo only, ``allow_standins``) the VGG loss runs on a
seeded untrained VGG-19 of 1/16 the width, labelled "stand-in features".
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mixgan.nets.imagenet_backbones import VGG19_LAYERS, vgg_features
from mixgan.nets.spade import MultiscaleDiscriminator, SPADEGenerator, semantic_input
from mixgan.train.spade_losses import (
    RelativeContentLoss,
    VGG19Slices,
    discriminator_losses,
    feature_matching_loss,
    hinge_g_loss,
    interpolate,
    mixed_target,
    relative_vgg_loss,
    vgg_loss,
)
from mixgan.train.translation import PairedTrainerState

STAND_IN_VGG_DIVISOR = 16


def stand_in_vgg(seed: int) -> VGG19Slices:
    """A seeded untrained VGG-19 with 1/16 of the channels (same layer indices)."""
    torch.manual_seed(seed)
    layers = [v if v == "M" else max(1, int(v) // STAND_IN_VGG_DIVISOR) for v in VGG19_LAYERS]
    return VGG19Slices(vgg_features(layers))


def build_generator(options: dict[str, Any], resolution: int) -> SPADEGenerator:
    semantic_nc = options["label_nc"] + int(options["instance"])
    return SPADEGenerator(
        semantic_nc,
        options["ngf"],
        resolution,
        options["aspect_ratio"],
        options["num_upsampling_layers"],
    )


class SPADETrainer(PairedTrainerState):
    """SPADE G and D, their optimisers and ReMix's ā, over one prepared training set."""

    def __init__(
        self,
        data: dict[str, np.ndarray],
        index: np.ndarray,
        options: dict[str, Any],
        resolution: int,
        plan_kind: str | None,
        vgg: VGG19Slices,
        device: torch.device,
    ) -> None:
        self.options, self.kind, self.device = options, plan_kind, device
        self.labels = torch.from_numpy(data["labels"][index].astype(np.int64))[:, None]
        self.instances = torch.from_numpy(data["instances"][index].astype(np.int64))[:, None]
        self.images = torch.from_numpy(data["images"][index]).permute(0, 3, 1, 2)
        semantic_nc = options["label_nc"] + int(options["instance"])
        self.generator = build_generator(options, resolution).to(device)
        self.discriminator = MultiscaleDiscriminator(
            semantic_nc + 3, options["ndf"], options["n_layers_d"], options["num_d"]
        ).to(device)
        self.vgg = vgg.to(device)
        self.relative = RelativeContentLoss(update=options["remix_update"]).to(device)
        lr, betas = options["lr"], (options["beta1"], options["beta2"])
        g_lr, d_lr = (lr / 2, lr * 2) if options["ttur"] else (lr, lr)
        self.base_lr = (g_lr, d_lr)
        self.opt_g = torch.optim.Adam(self.generator.parameters(), g_lr, betas)
        self.opt_d = torch.optim.Adam(self.discriminator.parameters(), d_lr, betas)
        self.steps_per_epoch = math.ceil(len(index) / options["batch"])
        self.step = 0

    def batch(self, index: Tensor) -> tuple[Tensor, Tensor]:
        """(semantic input, photo in [-1, 1]) of the training items ``index``."""
        instance = self.instances[index] if self.options["instance"] else None
        sem = semantic_input(self.labels[index], instance, self.options["label_nc"])
        photo = self.images[index].float() / 127.5 - 1
        return sem.to(self.device), photo.to(self.device)

    def _set_lr(self) -> None:
        """SPADE's ``update_learning_rate``: constant, then linear decay to 0 per epoch."""
        epoch = self.step // self.steps_per_epoch
        past = epoch - self.options["epochs"] + 1
        scale = 1.0 if past <= 0 else max(0.0, 1 - past / (self.options["decay_epochs"] + 1))
        for opt, lr in zip((self.opt_g, self.opt_d), self.base_lr, strict=True):
            for group in opt.param_groups:
                group["lr"] = lr * scale

    def train_step(self, first: Tensor, second: Tensor | None, lam: float) -> dict[str, float]:
        self._set_lr()
        x1, t1 = self.batch(first)
        x, real_x, real_t, target = x1, x1, t1, t1
        if second is not None:
            x2, t2 = self.batch(second)
            x = interpolate(x1, x2, lam)
            if self.kind in ("mixup", "wm"):
                target = mixed_target(t1, t2, lam, self.kind)
                real_x, real_t = x, target
        remix = second is not None and self.kind == "remix"
        # generator step
        fake = self.generator(x)
        d_fake = self.discriminator(torch.cat([x, fake], 1))
        g = {"GAN": hinge_g_loss(d_fake)}
        if not remix:
            with torch.no_grad():
                d_real = self.discriminator(torch.cat([real_x, real_t], 1))
            g["GAN_Feat"] = feature_matching_loss(d_fake, d_real, self.options["lambda_feat"])
            g["VGG"] = vgg_loss(self.vgg, fake, target, self.options["lambda_vgg"])
        else:
            g["VGG"] = relative_vgg_loss(
                self.vgg, self.relative, fake, t1, t2, self.options["lambda_vgg"]
            )
        self.opt_g.zero_grad(set_to_none=True)
        sum(g.values()).backward()
        self.opt_g.step()
        # discriminator step, on a fake generated again by the updated G (pix2pix_model.py
        # compute_discriminator_loss: generate_fake under no_grad)
        with torch.no_grad():
            fake = self.generator(x)
        d_fake = self.discriminator(torch.cat([x, fake], 1))
        d_real = self.discriminator(torch.cat([real_x, real_t], 1))
        d = discriminator_losses(d_fake, d_real)
        self.opt_d.zero_grad(set_to_none=True)
        sum(d.values()).backward()
        self.opt_d.step()
        self.step += 1
        return self.step_stats(g, d)


@torch.no_grad()
def generate(
    generator: SPADEGenerator,
    data: dict[str, np.ndarray],
    index: np.ndarray,
    options: dict[str, Any],
    device: torch.device,
) -> np.ndarray:
    """NHWC uint8 photos of the label maps ``index`` (eval mode, batches of ``eval_batch``)."""
    generator.eval()
    out = []
    for start in range(0, len(index), options["eval_batch"]):
        chunk = index[start : start + options["eval_batch"]]
        labels = torch.from_numpy(data["labels"][chunk].astype(np.int64))[:, None]
        instance = torch.from_numpy(data["instances"][chunk].astype(np.int64))[:, None]
        sem = semantic_input(labels, instance if options["instance"] else None, options["label_nc"])
        image = generator(sem.to(device)).clamp(-1, 1)
        out.append(((image + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy())
    return np.concatenate(out)
