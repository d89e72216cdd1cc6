"""Method parts: small objects that hook into the GAN loop without forking it.

A method is a list of named parts from the config (``[diffaug, scoremix, ada]``). Each part may
act at these points of a D step:

* ``extra_real`` — extra images D sees as real (ScoreMix's static augmented set);
* ``augment_real`` — transform the real batch (ScoreMix's growing-mu mode, AugMix);
* ``augment_d_input`` — transform every batch D sees, real and fake (mixup, CutMix,
  DiffAugment, ADA); it also runs in G steps;
* ``d_regularizer`` — extra loss terms of D (LeCam);
* ``after_d_step`` — read D's outputs on reals (ADA's p);

and at one more point of a G step: ``g_regularizer`` — an extra loss term of G from the
batch's latents z and images (MSGAN, N-Div, DistanceGAN). Before training,
``set_training_images`` shows each part the training subset (DistanceGAN's statistics) and
``initialize_networks`` and ``initial_ema`` let it set the starting weights of G, D and G_ema
(CDC's source model, whose record ``networks`` returns for the run's provenance).

A translation trainer (StarGAN v2, ``mixgan.train.i2i``) calls one more hook,
``augment_inputs``: it transforms the generator's source batch, which D also sees as real,
with its domain labels kept true (ScoreMix's growing mu, CutMix, AugMix).

A part may also take over whole steps (MixDL, CDC): ``computes_losses(step)`` says which steps,
and on those the loop asks the part for the G step's loss (``g_loss``) and the D step's loss
and logits (``d_loss``) instead of computing the standard non-saturating losses; it lends the
part the networks, the step, its latent sampling, the other parts' ``augment_d_input`` and
its autocast (``Players``). The remaining D-step hooks still run on such steps
(``augment_real`` on the real batch, ``d_regularizer`` and ``after_d_step`` with the part's
logits, and the lazy R1 on the part's ``r1_logits`` when it gives some: CDC's and MixDL's
patch level); ``g_regularizer`` runs on standard steps only. At most one part of a method may
take over steps. Modules a part trains beside D (``trainable_modules``: heads reading D's
features) are trained by D's optimiser with its Adam settings, frozen in G steps, and saved
with the part's ``state_dict``.

In a class-conditional run (BigGAN) ``augment_real`` and ``augment_d_input`` also get the
batch's class labels, which a transform must keep true (mixing pairs images of one class),
and ``extra_real_labels`` gives the classes of ``extra_real``'s images.

Parts run in the order of their ``stage`` (1: real data, 2: mixing within a batch,
3: differentiable augmentation, 4: regularizers), config order within a stage, so
``[diffaug, mixup]`` mixes first and augments the mixtures.

A new augmentation or regularizer is one subclass of :class:`Part`, one entry of
``mixgan.train.parts.PART_BUILDERS`` and one ``kind`` in the config schema (and
``mixgan.registry.PARTS``). The parts live with their concern: augmentations in
``mixgan.train.augment_parts``, LeCam in ``mixgan.train.lecam``, MixDL in
``mixgan.train.mixdl``, CDC in ``mixgan.train.cdc``, the mode-collapse regularizers in
``mixgan.train.mode_collapse``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

import torch
from torch import nn

from mixgan.nets.stylegan2 import Discriminator, Generator


@dataclass
class PartInputs:
    """Files and device some parts need (from the training command's arguments)."""

    augmented_zip: Path | None = None
    scorenet: Path | None = None
    source_model: Path | None = None
    device: torch.device = torch.device("cpu")


class Players(Protocol):
    """What the training loop lends a part that computes a step's losses (``GANTrainer``)."""

    G: Generator
    D: Discriminator
    step: int

    def sample_z(self, count: int) -> torch.Tensor:
        """Input latents z ~ N(0, I) of ``count`` new samples."""
        ...

    def generate_ws(self, z: torch.Tensor) -> torch.Tensor:
        """w [len(z), num_ws, w_dim] of input latents ``z``, with the run's style mixing."""
        ...

    def mapped_ws(self, count: int) -> torch.Tensor:
        """w [count, num_ws, w_dim] of new latents z ~ N(0, I), without style mixing."""
        ...

    def augment(self, images: torch.Tensor) -> torch.Tensor:
        """The method's ``augment_d_input`` chain, as every batch D sees gets it."""
        ...

    def autocast(self) -> torch.autocast:
        """The run's autocast for the synthesis network and D."""
        ...


class Part:
    """Base class: every hook is a no-op."""

    stage: ClassVar[int] = 0
    takes_steps: ClassVar[bool] = False  # may return True from computes_losses
    # g_regularizer compares z with G(z): a method with such a part makes the images of its
    # standard G steps without style mixing (so z is all they come from), as the
    # regularizers' official code, which has no style mixing
    regularizes_g: ClassVar[bool] = False

    def __init__(self, name: str, settings: dict[str, Any]):
        self.name = name
        self.settings = settings

    def extra_real(self) -> torch.Tensor | None:
        """NCHW uint8 images to add to the real pool, or ``None``."""
        return None

    def extra_real_labels(self) -> torch.Tensor | None:
        """The class labels of :meth:`extra_real`'s images (class-conditional runs)."""
        return None

    def augment_real(self, real: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Transform the real batch ([-1, 1]) before D sees it; a class-conditional run gives
        the batch's ``labels``, which a transform must keep true."""
        return real

    def augment_d_input(
        self, images: torch.Tensor, labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Transform a batch D sees (real or fake, with its ``labels`` when conditional)."""
        return images

    def augment_inputs(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Transform a translation generator's source batch ([-1, 1], domain ``labels`` kept
        true); by default unchanged."""
        return images

    def d_regularizer(
        self, logits_real: torch.Tensor, logits_fake: torch.Tensor
    ) -> torch.Tensor | None:
        return None

    def after_d_step(self, logits_real: torch.Tensor) -> None:
        """Called once per D step with D's logits on the (augmented) real batch."""

    def g_regularizer(self, latents: torch.Tensor, images: torch.Tensor) -> torch.Tensor | None:
        """An extra term of G's loss on a standard step: ``latents`` [B, z_dim] are the
        samples' input latents z, ``images`` G's output ([-1, 1], before any augmentation),
        made from z alone (no style mixing) when the part sets ``regularizes_g``."""
        return None

    def set_training_images(self, images: torch.Tensor) -> None:
        """Called once before training with the training subset (NCHW uint8, on the CPU)."""

    def initialize_networks(self, generator: nn.Module, discriminator: nn.Module) -> None:
        """Called once with the new G and D (on their device), before the EMA copy of G,
        the parts' modules and the optimisers exist; a resumed run then loads its
        checkpoint over them."""

    def initial_ema(self) -> dict[str, torch.Tensor] | None:
        """G_ema's starting weights when not G's (CDC: the source's G_ema), or ``None``."""
        return None

    def networks(self) -> dict[str, dict[str, Any]]:
        """Records (path, SHA-256, stand-in flag) of pretrained networks the part uses."""
        return {}

    def trainable_modules(
        self, generator: Generator, discriminator: Discriminator
    ) -> list[nn.Module]:
        """Modules to train beside D, built for these networks (called once, before the
        optimisers exist); the loop moves them to D's device and format, optimises them with
        D's Adam and freezes them in G steps. ``state_dict`` must carry their weights."""
        return []

    def computes_losses(self, step: int) -> bool:
        """True when this part computes the losses of training step ``step`` itself."""
        return False

    def g_loss(self, players: Players, batch: int) -> torch.Tensor:
        """The G step's loss on a step this part computes (``batch`` samples)."""
        raise NotImplementedError

    def d_loss(
        self, players: Players, real: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The D step's loss on a step this part computes, given the real batch (after the
        ``augment_real`` hooks), with the logits on reals and fakes that the other hooks and
        the training curve get (one value per image, ``[N, 1]``)."""
        raise NotImplementedError

    def r1_logits(self, players: Players, real: torch.Tensor) -> torch.Tensor | None:
        """On a step this part computes, the logits [N, 1] of the (augmented) reals ``real``
        whose input gradient the lazy R1 penalises, differentiable twice; ``None``: D's."""
        return None

    def stats(self) -> dict[str, float]:
        """Values to log in the training curve."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved."""
