"""FastGAN's training step (Liu et al., ICLR 2021), in the GAN loop of ``mixgan.train.loop``.

The loop (budget, FID evaluations, early stopping, checkpoints, diversity probe, parts) is the
StyleGAN2 one; what differs is the step, which follows the authors' ``train.py``:

* G draws z ~ N(0, I) and makes one batch of images; D sees everything through the method's
  ``augment_d_input`` parts and then the backbone's DiffAugment (the authors train with
  ``color,translation``), applied once to the fakes, which serve both steps;
* D step first: hinge loss with a random margin, relu(m - D(x)) on reals and
  relu(m + D(G(z))) on fakes, m ~ U(0.8, 1.0) per logit, plus the reconstruction loss on
  reals: the distance of D's three decodings (whole image, a random quadrant, the small view)
  from their targets, summed over the batch (``reconstruction: lpips``, the authors' LPIPS-VGG;
  or ``mse``, the mean squared error);
* G step: -mean D(G(z)) on the same augmented fakes;
* no R1, no path-length regularisation, no style mixing; the EMA generator follows
  ``ema_kimg`` (the authors' per-step 0.999 at batch 8 is ``ema_kimg`` 5.54) and, as their
  ``avg_param_G``, averages the parameters only (buffers: the raw G's);
* every sample (FID evaluations, diversity probe, the metrics' samples) comes from that EMA
  generator in train mode, 16 per batch, as the authors' ``eval.py`` (``mixgan.sample``).

A ``mixdl`` part runs as :class:`FastGANMixDL`: MixDL's steps with FastGAN's networks and
losses.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm

from mixgan.augment.diffaug import diff_augment
from mixgan.nets.fastgan import Discriminator, Generator
from mixgan.train import mixdl
from mixgan.train.gan import GANTrainer
from mixgan.train.mixdl import MixDL


def fastgan_kwargs(spec: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """FastGAN generator and discriminator constructor arguments of a run spec."""
    backbone = spec["backbone"]
    shared = {"img_resolution": spec["resolution"], "img_channels": 3}
    return (
        {**shared, "z_dim": backbone["z_dim"], "ngf": backbone["ngf"]},
        {**shared, "ndf": backbone["ndf"]},
    )


def hinge_real(logits: Tensor) -> Tensor:
    """D's loss on reals: mean relu(m - logits), m ~ U(0.8, 1.0) per logit."""
    return F.relu(torch.rand_like(logits) * 0.2 + 0.8 - logits).mean()


def hinge_fake(logits: Tensor) -> Tensor:
    """D's loss on fakes: mean relu(m + logits), m ~ U(0.8, 1.0) per logit."""
    return F.relu(torch.rand_like(logits) * 0.2 + 0.8 + logits).mean()


def discriminator_loss(logits_real: Tensor, logits_fake: Tensor, reconstruction: Tensor) -> Tensor:
    """D's loss: the hinge on reals, the hinge on fakes (margins drawn in that order) and the
    reconstruction loss of the reals (the authors' ``train_d``: ``err = ... + rec_all``)."""
    return hinge_real(logits_real) + hinge_fake(logits_fake) + reconstruction


def generator_loss(logits_fake: Tensor) -> Tensor:
    """G's loss: -mean D(G(z)) (the authors' ``err_g = -pred_g.mean()``)."""
    return -logits_fake.mean()


def mse_distance(images: Tensor, targets: Tensor) -> Tensor:
    """Per-image mean squared error ``[N]``."""
    return (images - targets).square().flatten(1).mean(1)


def lpips_distance(module: nn.Module) -> Callable[[Tensor, Tensor], Tensor]:
    """Differentiable per-pair LPIPS of an ``lpips`` module (its weights frozen), images
    below the LPIPS minimum size upsampled (bilinear) first."""
    from mixgan.metrics import LPIPS_MIN_SIZE

    module.requires_grad_(False)

    def distance(images: Tensor, targets: Tensor) -> Tensor:
        if images.shape[-1] < LPIPS_MIN_SIZE:
            images, targets = (
                F.interpolate(x, size=LPIPS_MIN_SIZE, mode="bilinear", align_corners=False)
                for x in (images, targets)
            )
        return module(images, targets).flatten()

    return distance


def reconstruction_loss(
    distance: Callable[[Tensor, Tensor], Tensor],
    reconstructions: list[Tensor],
    targets: list[Tensor],
) -> Tensor:
    """The sum over decoders and images of the per-image distances (the authors'
    ``percept(rec, target).sum()`` for each of the three decoders)."""
    return sum(
        distance(rec.float(), target.float()).sum()
        for rec, target in zip(reconstructions, targets, strict=True)
    )


class FastGANTrainer(GANTrainer):
    """State and steps of one FastGAN run."""

    extra_columns: ClassVar[list[str]] = ["reconstruction"]  # D's reconstruction loss

    def build_networks(self) -> tuple[torch.nn.Module, torch.nn.Module]:
        # MixDL's part takes FastGAN's networks and losses.
        self.parts = [
            FastGANMixDL(part.name, part.settings) if isinstance(part, MixDL) else part
            for part in self.parts
        ]
        self.g_kwargs, self.d_kwargs = fastgan_kwargs(self.spec)
        self.distance, network = self._reconstruction_distance()
        self.loss_networks = {"reconstruction": network} if network else {}
        return Generator(**self.g_kwargs), Discriminator(**self.d_kwargs)

    def _reconstruction_distance(self) -> tuple[Callable[[Tensor, Tensor], Tensor], dict | None]:
        """The distance of D's reconstructions (and the record of its network, for LPIPS)."""
        kind = self.spec["backbone"]["reconstruction"]
        if kind == "mse":
            return mse_distance, None
        from mixgan.metrics import lpips_network

        weights: Path | None = self.paths.vgg_weights
        if weights is None:
            raise ValueError("reconstruction: lpips needs the VGG-16 weights (--vgg-weights)")
        module, record = lpips_network("vgg", weights, self.spec["device"])
        if record.get("stand_in"):
            raise ValueError(
                f"{weights} is an untrained stand-in: FastGAN's reconstruction loss needs the "
                "real VGG-16 (weights.vgg16), or reconstruction: mse"
            )
        return lpips_distance(module), record

    def build_optimizers(
        self, d_params: list[torch.Tensor]
    ) -> tuple[torch.optim.Adam, torch.optim.Adam]:
        compiled = self.train_cfg["compile"]
        self.G_main = torch.compile(self.G) if compiled else self.G
        self.D_main = torch.compile(self.D) if compiled else self.D
        return self._adam(self.G.parameters(), None), self._adam(d_params, None)

    def generate(self, z: Tensor) -> Tensor:
        with self.autocast():
            images = self.G_main(z)
        return images.float()

    def augment(self, images: Tensor) -> Tensor:
        """The method's ``augment_d_input`` parts, then the backbone's DiffAugment (so mixing
        parts mix before the augmentation, as in a StyleGAN2 method with a diffaug part)."""
        images = super().augment(images)
        policy = self.spec["backbone"]["diffaug_policy"]
        return diff_augment(images, policy) if policy else images

    def discriminate_real(self, real: Tensor) -> tuple[Tensor, Tensor]:
        """D's logits (float32) on the augmented ``real`` batch and its reconstruction loss
        there, for a random quadrant."""
        part_index = self.batch_rng.integer(0, 4)
        with self.autocast():
            logits, reconstructions = self.D_main(real, part=part_index)
        targets = self.D.reconstruction_targets(real, part_index)
        return logits.float(), reconstruction_loss(self.distance, reconstructions, targets)

    def train_step(self) -> dict[str, Tensor]:
        batch = self.batch
        # A part may compute this step's losses itself (MixDL's steps).
        owner = next((p for p in self.parts if p.computes_losses(self.step)), None)
        real = self.real_batch(batch)
        for part in self.parts:
            real = part.augment_real(real)
        real = self.augment(real)

        # Discriminator: hinge losses and the reconstruction of the reals.
        self.set_d_trainable(True)
        if owner is None:
            z = self.sample_z(batch)
            images = self.generate(z)
            fake = self.augment(images)
            logits_real, recon = self.discriminate_real(real)
            with self.autocast():
                logits_fake = self.D_main(fake.detach()).float()
            loss_d = discriminator_loss(logits_real, logits_fake, recon)
        else:
            loss_d, logits_real, logits_fake, recon = owner.d_loss(self, real)
        loss_d = self.step_d(loss_d, logits_real, logits_fake)

        # Generator: -D(G(z)) on the same augmented fakes (or the part's loss).
        self.set_d_trainable(False)
        if owner is None:
            with self.autocast():
                loss_g = generator_loss(self.D_main(fake).float())
            loss_g = loss_g + self.g_regularization(z, images)
        else:
            loss_g = owner.g_loss(self, batch)
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        self.optimizer_step(self.opt_g)
        self.set_d_trainable(True)

        self.update_ema(self.train_cfg["batch"])
        self.step += 1
        self.images_seen += self.train_cfg["batch"]
        return {
            "loss_g": loss_g.detach(),
            "loss_d": loss_d.detach(),
            "logits_real": logits_real.detach().mean(),
            "logits_fake": logits_fake.detach().mean(),
            "reconstruction": recon.detach(),
        }


class FastGANMixDL(MixDL):
    """MixDL on FastGAN: the ``mixdl`` part's settings and bookkeeping, FastGAN's networks and
    losses. It follows the MixDL authors' FastGAN model (``fastgan_models.py`` of
    github.com/reyllama/mixdl, whose FastGAN training script is not public):

    * latents are mixed in Z (FastGAN has no W): anchors z0 = sum_i c_i z_i;
    * L_dist^G compares, for each anchor, one of G's feature maps at 4², 8², 16² and 32² (the
      authors' ``feat_list``; the maps below the image resolution) drawn per anchor;
    * L_dist^D compares a spectrally normalised linear projection (``projection_dim``
      outputs; the authors' ``final_linear``, 512 from 8x8x512) of D's last big-branch map;
    * the anchors are judged by FastGAN's own D, whose logits are already patch-level (5x5
      maps at 256²), with FastGAN's hinge losses; D's step keeps the reconstruction loss on
      the reals ("we keep their objective functions as they are and simply add our
      regularization terms", MixDL section 4). ``patch_resolutions`` is not used.
    """

    G_LAYERS = (4, 8, 16, 32)

    def trainable_modules(self, generator: Generator, discriminator: Discriminator) -> list:
        resolution = generator.img_resolution
        self.layer_names = [str(r) for r in self.G_LAYERS if r < resolution]
        if self.settings["discriminator_loss"] and self.settings["projection_dim"] > 0:
            width = math.prod(discriminator.last_shape)
            self.projection = spectral_norm(nn.Linear(width, self.settings["projection_dim"]))
            return [self.projection]
        return []

    def _latents(self, players: Any, batch: int) -> tuple[Tensor, Tensor, Tensor]:
        """Edges z [N, z_dim], coefficients c [B, N] and anchors z0 [B, z_dim]."""
        count = self.settings["num_latents"] or batch
        z = torch.randn(count, players.G.z_dim, device=players.device)
        c = mixdl.sample_coefficients(
            self.settings["coefficients"], batch, count, self.settings["dirichlet_alpha"],
            z.device,
        )  # fmt: skip
        return z, c, mixdl.mix_latents(c, z)

    def g_loss(self, players: Any, batch: int) -> Tensor:
        z, c, anchors = self._latents(players, batch)
        distance = self.settings["generator_loss"]
        latents = torch.cat([z, anchors]) if distance else anchors
        features: dict[str, Tensor] = {}
        with players.autocast():
            images = players.G(latents, features=features)
            logits = players.D(players.augment(images[-batch:].float()))
        loss = generator_loss(logits.float())
        if distance:
            kl = self.generator_distance(features, c, len(z))
            self.last["mixdl_g_kl"] = kl.detach()
            loss = loss + self.settings["lambda_g"] * kl
        return loss

    def d_loss(self, players: Any, real: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """The D step's loss, logits on reals and on the anchors, and the reconstruction loss
        (the trainer logs it)."""
        batch = len(real)
        distance = self.settings["discriminator_loss"]
        with torch.no_grad():
            z, c, anchors = self._latents(players, batch)
            latents = torch.cat([z, anchors]) if distance else anchors
            with players.autocast():
                fake = players.G(latents).float()
        logits_real, recon = players.discriminate_real(real)
        features: dict[str, Tensor] = {}
        with players.autocast():
            logits_fake = players.D(players.augment(fake), features=features).float()
        loss = discriminator_loss(logits_real, logits_fake[-batch:], recon)
        if distance:
            kl = self.discriminator_distance(features, c, len(z))
            self.last["mixdl_d_kl"] = kl.detach()
            loss = loss + self.settings["lambda_d"] * kl
        return loss, logits_real, logits_fake[-batch:], recon

    def discriminator_distance(
        self, features: dict[str, Tensor], c: Tensor, num_edges: int
    ) -> Tensor:
        d1 = features["last"].float().flatten(1)
        embedded = d1 if self.projection is None else self.projection(d1)
        similarities = mixdl.cosine_similarities(embedded[num_edges:], embedded[:num_edges])
        return mixdl.distance_kl(similarities, c, self.settings["kl_direction"])
