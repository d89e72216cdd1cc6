"""BigGAN's class-conditional training step (Brock et al., ICLR 2019), in the GAN loop of
``mixgan.train.loop``.

The loop (budget, FID evaluations, early stopping, checkpoints, parts) is the StyleGAN2 one;
what differs follows BigGAN-PyTorch's ``train_fns.GAN_training_function``:

* every real image carries its class (the prepared dataset's labels; a ScoreMix set mixed
  within classes gives each augmented image its pair's class), and G draws classes uniformly;
* ``d_steps`` D steps per G step, each on a new real batch and new fakes, with the hinge loss
  mean relu(1 - D(x, y)) + mean relu(1 + D(G(z, y'), y')); then one G step, -mean D(G(z, y'), y');
* Adam with its own learning rates for G (``train.lr``) and D (``d_lr``) and ``adam_eps``;
  no R1, path-length regularisation, style mixing or orthogonal regularisation (the
  ImageNet launch scripts set ``--G_ortho 0.0``);
* D sees every batch through the method's ``augment_d_input`` parts with the batch's labels
  (mixing parts pair images of one class, so the labels stay true);
* kimg counts the real images D sees: ``batch x d_steps`` per iteration;
* G's EMA is ``utils.ema`` of BigGAN-PyTorch (``--ema --ema_start 20000`` in the launch
  scripts): G_ema = G at every iteration before ``ema_start`` (their decay 0 while
  ``itr < start_itr``, ``itr`` counted from 1), afterwards every floating-point entry of G's
  ``state_dict`` is averaged, parameters and buffers alike (BatchNorm running statistics and
  the spectral norm's vectors), integer buffers copied. The per-step decay comes from
  ``ema_kimg`` (0.9999 at batch 512: 3549 kimg).

Samples for the metrics take the classes in turn, from latents truncated at the backbone's
``truncation`` (``mixgan.sample.generate_images``); the FID evaluations during training use
untruncated latents.
"""

from __future__ import annotations

import json
import logging
import zipfile
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from mixgan.io import read_json
from mixgan.nets.biggan import Discriminator, Generator
from mixgan.train.gan import GANTrainer
from mixgan.train.paths import TrainPaths


def biggan_kwargs(spec: dict[str, Any], num_classes: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """BigGAN generator and discriminator constructor arguments of a run spec."""
    backbone = spec["backbone"]
    shared = {
        "num_classes": num_classes,
        "img_resolution": spec["resolution"],
        "img_channels": 3,
        "ch": backbone["ch"],
        "attention": tuple(backbone["attention"]),
    }
    generator = {
        **shared,
        "z_dim": backbone["z_dim"],
        "shared_dim": backbone["shared_dim"],
        "hier": backbone["hier"],
    }
    return generator, shared


def hinge_d_loss(logits_real: Tensor, logits_fake: Tensor) -> Tensor:
    """BigGAN's D loss (BigGAN-PyTorch ``losses.loss_hinge_dis``):
    mean relu(1 - D(x, y)) + mean relu(1 + D(G(z, y'), y'))."""
    return F.relu(1 - logits_real).mean() + F.relu(1 + logits_fake).mean()


def hinge_g_loss(logits_fake: Tensor) -> Tensor:
    """BigGAN's G loss (``losses.loss_hinge_gen``): -mean D(G(z, y'), y')."""
    return -logits_fake.mean()


def class_names(data_zip: Path) -> list[str]:
    """The class names the prepared dataset's ``dataset.json`` lists (empty when unlabelled)."""
    with zipfile.ZipFile(data_zip) as archive:
        return json.loads(archive.read("dataset.json"))["class_names"] or []


class BigGANTrainer(GANTrainer):
    """State and steps of one class-conditional BigGAN run."""

    def __init__(self, spec: dict[str, Any], paths: TrainPaths, log: logging.Logger):
        super().__init__(spec, paths, log)
        self.pool_labels = self._pool_labels()

    def _pool_labels(self) -> Tensor:
        """The class of every image of the real pool: the subset's, then the parts' extras."""
        extras = [labels for part in self.parts if (labels := part.extra_real_labels()) is not None]
        labels = torch.cat([read_subset_labels(self.paths.subset_manifest), *extras])
        if len(labels) != len(self.pool):
            raise ValueError(
                f"{len(self.pool)} real images but {len(labels)} labels: every part that adds "
                "real images to a class-conditional run must label them"
            )
        return labels

    def build_networks(self) -> tuple[torch.nn.Module, torch.nn.Module]:
        names = class_names(self.paths.data_zip)
        if not names:
            raise ValueError(
                f"{self.paths.data_zip}: class-conditional training needs class labels; the "
                "dataset has none (datasets.<name>.labels)"
            )
        self.num_classes = len(names)
        self.g_kwargs, self.d_kwargs = biggan_kwargs(self.spec, self.num_classes)
        return Generator(**self.g_kwargs), Discriminator(**self.d_kwargs)

    def build_optimizers(self, d_params: list[Tensor]) -> tuple[torch.optim.Adam, torch.optim.Adam]:
        compiled = self.train_cfg["compile"]
        self.G_main = torch.compile(self.G) if compiled else self.G
        self.D_main = torch.compile(self.D) if compiled else self.D
        backbone, fused = self.spec["backbone"], self.device.type == "cuda"
        betas, eps = self.train_cfg["betas"], backbone["adam_eps"]
        return (
            torch.optim.Adam(
                self.G.parameters(), self.train_cfg["lr"], betas=betas, eps=eps, fused=fused
            ),
            torch.optim.Adam(d_params, backbone["d_lr"], betas=betas, eps=eps, fused=fused),
        )

    @torch.no_grad()
    def update_ema(self, batch: int) -> None:
        """G_ema after this iteration (see the module docstring): a copy of G before the
        backbone's ``ema_start`` iterations, the whole-state_dict average afterwards."""
        half_life = self.train_cfg["ema_kimg"] * 1000
        decay = 0.5 ** (batch / max(half_life, 1e-8)) if half_life > 0 else 0.0
        if self.step + 1 < self.spec["backbone"]["ema_start"]:  # their itr counts from 1
            decay = 0.0
        ema_update(self.G_ema, self.G, decay)

    def sample_labels(self, count: int) -> Tensor:
        """Classes of ``count`` new fakes, uniform."""
        return self.batch_rng.randint(self.num_classes, count).to(self.device)

    def labelled_real_batch(self, batch: int) -> tuple[Tensor, Tensor]:
        """``batch`` real images ([-1, 1]) drawn from the pool, with their classes."""
        index = self.batch_rng.randint(len(self.pool), batch)
        images = self.real_images(index)  # x-flipped with train.mirror, as every trainer's
        return images, self.pool_labels[index].to(self.device)

    def generate(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        """G's images ([-1, 1], float32) of latents ``z`` and classes ``labels``."""
        with self.autocast():
            images = self.G_main(z, labels)
        return images.float()

    def discriminate(self, images: Tensor, labels: Tensor, main: bool = True) -> Tensor:
        """D's logits (float32) on ``images`` of classes ``labels`` after the parts'
        augmentations."""
        images = self.augment(images, labels)
        with self.autocast():
            logits = (self.D_main if main else self.D)(images, labels)
        return logits.float()

    def train_step(self) -> dict[str, Tensor]:
        batch, d_steps = self.batch, self.spec["backbone"]["d_steps"]
        self.set_d_trainable(True)
        for _ in range(d_steps):
            with torch.no_grad():
                fake_labels = self.sample_labels(batch)
                fake = self.generate(self.sample_z(batch), fake_labels)
            real, real_labels = self.labelled_real_batch(batch)
            for part in self.parts:
                real = part.augment_real(real, real_labels)
            logits_real = self.discriminate(real, real_labels)
            logits_fake = self.discriminate(fake, fake_labels)
            loss_d = hinge_d_loss(logits_real, logits_fake)
            loss_d = self.step_d(loss_d, logits_real, logits_fake)

        self.set_d_trainable(False)
        z, labels = self.sample_z(batch), self.sample_labels(batch)
        fake = self.generate(z, labels)
        loss_g = hinge_g_loss(self.discriminate(fake, labels)) + self.g_regularization(z, fake)
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        self.optimizer_step(self.opt_g)
        self.set_d_trainable(True)

        self.update_ema(self.train_cfg["batch"] * d_steps)
        self.step += 1
        self.images_seen += self.train_cfg["batch"] * d_steps
        return {
            "loss_g": loss_g.detach(),
            "loss_d": loss_d.detach(),
            "logits_real": logits_real.detach().mean(),
            "logits_fake": logits_fake.detach().mean(),
        }


@torch.no_grad()
def ema_update(target: torch.nn.Module, source: torch.nn.Module, decay: float) -> None:
    """BigGAN-PyTorch's ``utils.ema.update``: every floating-point entry of ``target``'s
    ``state_dict`` <- decay x target + (1 - decay) x source's (parameters and buffers); integer
    buffers (BatchNorm's batch counter, unused at a fixed momentum) are copied."""
    ours, theirs = target.state_dict(), source.state_dict()
    floating = [key for key, value in ours.items() if value.is_floating_point()]
    torch._foreach_lerp_(
        [ours[key] for key in floating], [theirs[key] for key in floating], 1.0 - decay
    )
    for key, value in ours.items():
        if not value.is_floating_point():
            value.copy_(theirs[key])


def read_subset_labels(subset_manifest: Path) -> Tensor:
    """The classes of a subset manifest's images, in its order."""
    labels = [image["label"] for image in read_json(subset_manifest)["images"]]
    if None in labels:
        raise ValueError(f"{subset_manifest}: class-conditional training needs every image's class")
    return torch.tensor(labels)
