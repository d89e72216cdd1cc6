"""FastGAN's training step (Liu et al., ICLR 2021), in the GAN loop of ``mixgan.train.gan``.

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
  ``ema_kimg`` (the authors' per-step 0.999 at batch 8 is ``ema_kimg`` 5.54).

MixDL, whose parts read StyleGAN2's synthesis layers, does not run on FastGAN here.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from mixgan.augment.diffaug import diff_augment
from mixgan.nets.fastgan import Discriminator, Generator
from mixgan.train.gan import GANTrainer

RECONSTRUCTIONS = ("lpips", "mse")


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


def mse_distance(images: Tensor, targets: Tensor) -> Tensor:
    """Per-image mean squared error ``[N]``."""
    return (images - targets).square().flatten(1).mean(1)


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
        takers = [part.name for part in self.parts if part.takes_steps]
        if takers:
            raise ValueError(
                f"part {', '.join(takers)} computes whole StyleGAN2 steps (MixDL) and does not "
                "run on FastGAN"
            )
        self.g_kwargs, d_kwargs = fastgan_kwargs(self.spec)
        self.distance, network = self._reconstruction_distance()
        self.loss_networks = {"reconstruction": network} if network else {}
        return Generator(**self.g_kwargs), Discriminator(**d_kwargs)

    def _reconstruction_distance(self) -> tuple[Callable[[Tensor, Tensor], Tensor], dict | None]:
        """The distance of D's reconstructions (and the record of its network, for LPIPS)."""
        kind = self.spec["backbone"]["reconstruction"]
        if kind == "mse":
            return mse_distance, None
        from mixgan.metrics import LPIPS_MIN_SIZE, lpips_network

        weights: Path | None = self.paths.vgg_weights
        if weights is None:
            raise ValueError("reconstruction: lpips needs the VGG-16 weights (--vgg-weights)")
        module, record = lpips_network("vgg", weights, self.spec["device"])
        if record.get("stand_in"):
            raise ValueError(
                f"{weights} is an untrained stand-in: FastGAN's reconstruction loss needs the "
                "real VGG-16 (weights.vgg16), or reconstruction: mse"
            )
        module.requires_grad_(False)

        def lpips(images: Tensor, targets: Tensor) -> Tensor:
            """Differentiable LPIPS-VGG per pair, upsampled to the LPIPS minimum size."""
            if images.shape[-1] < LPIPS_MIN_SIZE:
                images, targets = (
                    F.interpolate(x, size=LPIPS_MIN_SIZE, mode="bilinear", align_corners=False)
                    for x in (images, targets)
                )
            return module(images, targets).flatten()

        return lpips, record

    def build_optimizers(
        self, d_params: list[torch.Tensor]
    ) -> tuple[torch.optim.Adam, torch.optim.Adam]:
        compiled = self.train_cfg["compile"]
        self.G_main = torch.compile(self.G) if compiled else self.G
        self.D_main = torch.compile(self.D) if compiled else self.D
        return self._adam(self.G.parameters(), None), self._adam(d_params, None)

    def generate(self, batch: int) -> Tensor:
        z = torch.randn(batch, self.G.z_dim, device=self.device)
        with self.autocast():
            images = self.G_main(z)
        return images.float()

    def augment(self, images: Tensor) -> Tensor:
        """The method's ``augment_d_input`` parts, then the backbone's DiffAugment (so mixing
        parts mix before the augmentation, as in a StyleGAN2 method with a diffaug part)."""
        images = super().augment(images)
        policy = self.spec["backbone"]["diffaug_policy"]
        return diff_augment(images, policy) if policy else images

    def train_step(self) -> dict[str, Tensor]:
        batch = self.train_cfg["batch"]
        fake = self.augment(self.generate(batch))
        real = self.real_batch(batch)
        for part in self.parts:
            real = part.augment_real(real)
        real = self.augment(real)

        # Discriminator: hinge losses and the reconstruction of the reals.
        self.set_d_trainable(True)
        part_index = int(torch.randint(4, ()))
        with self.autocast():
            logits_real, reconstructions = self.D_main(real, part=part_index)
            logits_fake = self.D_main(fake.detach())
        logits_real, logits_fake = logits_real.float(), logits_fake.float()
        targets = self.D.reconstruction_targets(real, part_index)
        recon = reconstruction_loss(self.distance, reconstructions, targets)
        loss_d = hinge_real(logits_real) + hinge_fake(logits_fake) + recon
        for part in self.parts:
            extra = part.d_regularizer(logits_real, logits_fake)
            if extra is not None:
                loss_d = loss_d + extra
        self.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        self.opt_d.step()
        for part in self.parts:
            part.after_d_step(logits_real.detach())

        # Generator: -D(G(z)) on the same augmented fakes.
        self.set_d_trainable(False)
        with self.autocast():
            loss_g = -self.D_main(fake).float().mean()
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        self.opt_g.step()
        self.set_d_trainable(True)

        self.update_ema(batch)
        self.step += 1
        self.images_seen += batch
        return {
            "loss_g": loss_g.detach(),
            "loss_d": loss_d.detach(),
            "logits_real": logits_real.detach().mean(),
            "logits_fake": logits_fake.detach().mean(),
            "reconstruction": recon.detach(),
        }
