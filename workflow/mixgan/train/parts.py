"""Method parts: small objects that hook into the GAN loop without forking it.

A method is a list of named parts from the config (``[diffaug, scoremix, ada]``). Each part may
act at these points of a D step (the G step runs only ``augment_d_input``):

* ``extra_real`` — extra images D sees as real (ScoreMix's static augmented set);
* ``augment_real`` — transform the real batch (ScoreMix's growing-mu mode, AugMix);
* ``augment_d_input`` — transform every batch D sees, real and fake (mixup, CutMix,
  DiffAugment, ADA);
* ``d_regularizer`` — extra loss terms of D (LeCam);
* ``after_d_step`` — read D's outputs on reals (ADA's p).

Parts run in the order of their ``stage`` (1: real data, 2: mixing within a batch,
3: differentiable augmentation, 4: regularizers), config order within a stage, so
``[diffaug, mixup]`` mixes first and augments the mixtures.

A new augmentation or regularizer is one class here, one entry of ``PART_BUILDERS`` and one
``kind`` in the config schema (and ``mixgan.registry.PARTS``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from mixgan.augment.ada import AdaController, ada_augment
from mixgan.augment.diffaug import diff_augment
from mixgan.augment.mixing import cutmix, make_augmix, mixup
from mixgan.augment.scoremix import ScoreMixer
from mixgan.data.imagezip import read_image_zip, to_tensor
from mixgan.scores import sample_lambdas
from mixgan.train.scorenet import load_score_net


@dataclass
class PartInputs:
    """Files and device some parts need (from the training command's arguments)."""

    augmented_zip: Path | None = None
    scorenet: Path | None = None
    device: torch.device = torch.device("cpu")


class Part:
    """Base class: every hook is a no-op."""

    stage: ClassVar[int] = 0

    def __init__(self, name: str, settings: dict[str, Any]):
        self.name = name
        self.settings = settings

    def extra_real(self) -> torch.Tensor | None:
        """NCHW uint8 images to add to the real pool, or ``None``."""
        return None

    def augment_real(self, real: torch.Tensor) -> torch.Tensor:
        """Transform the real batch ([-1, 1]) before D sees it."""
        return real

    def augment_d_input(self, images: torch.Tensor) -> torch.Tensor:
        return images

    def d_regularizer(
        self, logits_real: torch.Tensor, logits_fake: torch.Tensor
    ) -> torch.Tensor | None:
        return None

    def after_d_step(self, logits_real: torch.Tensor) -> None:
        """Called once per D step with D's logits on the (augmented) real batch."""

    def stats(self) -> dict[str, float]:
        """Values to log in the training curve."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved."""


class ScoreMixStatic(Part):
    """ScoreMix with a static ratio mu: the augmented set (mu x N images) is extra real data."""

    stage = 1

    def __init__(self, name: str, settings: dict[str, Any], augmented_zip: Path | None):
        super().__init__(name, settings)
        if settings["mu"] > 0 and augmented_zip is None:
            raise ValueError(f"part {name}: mu = {settings['mu']} needs its augmented set")
        self.augmented_zip = augmented_zip

    def extra_real(self) -> torch.Tensor | None:
        if self.settings["mu"] == 0:
            return None
        return to_tensor(read_image_zip(self.augmented_zip))


class ScoreMixOnline(Part):
    """ScoreMix with growing mu: at each D step, with probability ``probability``, the real
    batch is replaced by ScoreMix images of pairs drawn within it, so the number of augmented
    images D has seen grows without bound (mu -> infinity, Figure 4's "growing" curve)."""

    stage = 1

    def __init__(self, name: str, settings: dict[str, Any], mixer: ScoreMixer):
        super().__init__(name, settings)
        self.mixer = mixer
        self.augmented_batches = 0

    def augment_real(self, real: torch.Tensor) -> torch.Tensor:
        count = len(real)
        if count < 2 or torch.rand(()) >= self.settings["probability"]:
            return real
        partner = (torch.arange(count) + torch.randint(1, count, (count,))) % count
        lam = sample_lambdas(count, self.settings["alpha"])
        images = (real + 1) / 2
        self.augmented_batches += 1
        return self.mixer(images, images[partner.to(real.device)], lam) * 2 - 1

    def stats(self) -> dict[str, float]:
        return {"scoremix_batches": float(self.augmented_batches)}

    def state_dict(self) -> dict[str, Any]:
        return {"augmented_batches": self.augmented_batches}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.augmented_batches = state.get("augmented_batches", 0)


class AugMixReal(Part):
    """torchvision's AugMix of each real image, as the paper uses it (severity, width, depth
    and alpha from the config; the reference implementation's values by default)."""

    stage = 1

    def __init__(self, name: str, settings: dict[str, Any]):
        super().__init__(name, settings)
        self.augmix = make_augmix(
            settings["severity"], settings["width"], settings["depth"], settings["alpha"]
        )

    def augment_real(self, real: torch.Tensor) -> torch.Tensor:
        images = (real + 1) / 2
        return self.augmix(images, images, torch.ones(len(real))) * 2 - 1


class BatchMixing(Part):
    """mixup or CutMix of every batch D sees with a shuffled copy of itself, so reals mix
    with reals and fakes with fakes (no label leaking); lambda ~ Beta(alpha, alpha)."""

    stage = 2

    def __init__(self, name: str, settings: dict[str, Any], mix: Callable):
        super().__init__(name, settings)
        self.mix = mix

    def augment_d_input(self, images: torch.Tensor) -> torch.Tensor:
        count = len(images)
        if count < 2:
            return images
        partner = (torch.arange(count) + torch.randint(1, count, (count,))) % count
        lam = sample_lambdas(count, self.settings["alpha"]).float()
        return self.mix(images, images[partner.to(images.device)], lam)


class DiffAugment(Part):
    """DiffAugment on every image D sees, real and fake (Zhao et al. 2020)."""

    stage = 3

    def augment_d_input(self, images: torch.Tensor) -> torch.Tensor:
        return diff_augment(images, self.settings["policy"])


class ADA(Part):
    """Adaptive discriminator augmentation: the bgc pipeline on every image D sees, with a
    probability p steered by the sign of D's outputs on reals (target ``target``)."""

    stage = 3

    def __init__(self, name: str, settings: dict[str, Any]):
        super().__init__(name, settings)
        self.controller = AdaController(
            settings["target"], settings["interval"], settings["speed_kimg"]
        )

    def augment_d_input(self, images: torch.Tensor) -> torch.Tensor:
        return ada_augment(images, self.controller.p)

    def after_d_step(self, logits_real: torch.Tensor) -> None:
        self.controller.update(logits_real)

    def stats(self) -> dict[str, float]:
        return {"ada_p": self.controller.p, "ada_rt": self.controller.last_rt}

    def state_dict(self) -> dict[str, Any]:
        return self.controller.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            self.controller.load_state_dict(state)


def lecam_penalty(
    logits_real: torch.Tensor,
    logits_fake: torch.Tensor,
    anchor_real: float | torch.Tensor,
    anchor_fake: float | torch.Tensor,
) -> torch.Tensor:
    """LeCam (Tseng et al. 2021): E[relu(D(x) - a_F)²] + E[relu(a_R - D(G(z)))²]."""
    return (
        F.relu(logits_real - anchor_fake).square().mean()
        + F.relu(anchor_real - logits_fake).square().mean()
    )


class LeCam(Part):
    """LeCam regularization of D, with EMA anchors a_R, a_F of D's mean outputs."""

    stage = 4

    def __init__(self, name: str, settings: dict[str, Any]):
        super().__init__(name, settings)
        self.anchor_real: torch.Tensor | None = None
        self.anchor_fake: torch.Tensor | None = None

    def d_regularizer(
        self, logits_real: torch.Tensor, logits_fake: torch.Tensor
    ) -> torch.Tensor | None:
        real, fake = logits_real.detach().mean(), logits_fake.detach().mean()
        if self.anchor_real is None:  # the first batch's means start the averages
            self.anchor_real, self.anchor_fake = real, fake
        else:
            decay = self.settings["ema_decay"]
            self.anchor_real = self.anchor_real.to(real.device).lerp(real, 1 - decay)
            self.anchor_fake = self.anchor_fake.to(fake.device).lerp(fake, 1 - decay)
        penalty = lecam_penalty(logits_real, logits_fake, self.anchor_real, self.anchor_fake)
        return self.settings["weight"] * penalty

    def stats(self) -> dict[str, float]:
        if self.anchor_real is None:
            return {"lecam_anchor_real": math.nan, "lecam_anchor_fake": math.nan}
        return {
            "lecam_anchor_real": float(self.anchor_real),
            "lecam_anchor_fake": float(self.anchor_fake),
        }

    def state_dict(self) -> dict[str, Any]:
        if self.anchor_real is None:
            return {}
        return {"anchor_real": float(self.anchor_real), "anchor_fake": float(self.anchor_fake)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            self.anchor_real = torch.tensor(state["anchor_real"])
            self.anchor_fake = torch.tensor(state["anchor_fake"])


def _scoremix(name: str, settings: dict[str, Any], inputs: PartInputs) -> Part:
    if settings["mu"] != "growing":
        return ScoreMixStatic(name, settings, inputs.augmented_zip)
    if inputs.scorenet is None:
        raise ValueError(f"part {name}: growing mu needs the score network (--scorenet)")
    score_net = load_score_net(inputs.scorenet, inputs.device)
    return ScoreMixOnline(name, settings, ScoreMixer.from_part(score_net, settings))


#: part kind -> builder(name, settings, inputs)
PART_BUILDERS: dict[str, Callable[[str, dict[str, Any], PartInputs], Part]] = {
    "scoremix": _scoremix,
    "diffaug": lambda name, settings, inputs: DiffAugment(name, settings),
    "ada": lambda name, settings, inputs: ADA(name, settings),
    "lecam": lambda name, settings, inputs: LeCam(name, settings),
    "mixup": lambda name, settings, inputs: BatchMixing(name, settings, mixup),
    "cutmix": lambda name, settings, inputs: BatchMixing(name, settings, cutmix),
    "augmix": lambda name, settings, inputs: AugMixReal(name, settings),
}


def build_parts(part_specs: list[dict[str, Any]], inputs: PartInputs | None = None) -> list[Part]:
    """Instantiate a method's parts, ordered by stage (config order within a stage)."""
    inputs = inputs or PartInputs()
    parts: list[Part] = []
    for spec in part_specs:
        builder = PART_BUILDERS.get(spec["kind"])
        if builder is None:
            raise ValueError(f"part {spec['name']}: kind '{spec['kind']}' is not implemented yet")
        settings = {k: v for k, v in spec.items() if k not in ("name", "kind")}
        parts.append(builder(spec["name"], settings, inputs))
    return sorted(parts, key=lambda p: p.stage)
