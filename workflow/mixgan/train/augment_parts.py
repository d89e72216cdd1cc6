"""The augmentation parts: ScoreMix (static set, growing mu), AugMix, batch mixing (mixup,
CutMix), DiffAugment and ADA (hooks: ``mixgan.train.part_api``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from mixgan.augment.ada import AdaController, ada_augment
from mixgan.augment.diffaug import diff_augment
from mixgan.augment.mixing import make_augmix, partners
from mixgan.augment.scoremix import ScoreMixer
from mixgan.data.imagezip import read_image_zip, to_tensor
from mixgan.io import read_json
from mixgan.scores import sample_lambdas
from mixgan.train import distributed
from mixgan.train.part_api import Part, PartInputs
from mixgan.train.scorenet import load_score_net


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

    def extra_real_labels(self) -> torch.Tensor | None:
        """Each augmented image's class (its pair's), from the set's record; only a set
        mixed within classes (``pairs: same_class``) has them."""
        if self.settings["mu"] == 0:
            return None
        record = self.augmented_zip.with_suffix(".json")
        labels = read_json(record).get("labels")
        if labels is None:
            raise ValueError(
                f"{record}: part {self.name} mixed across classes; a class-conditional run "
                f"needs parts.{self.name}.pairs: same_class"
            )
        return torch.tensor(labels)


class ScoreMixOnline(Part):
    """ScoreMix with growing mu: at each D step, with probability ``probability``, the real
    batch is replaced by ScoreMix images of pairs drawn within it, so the number of augmented
    images D has seen grows without bound (mu -> infinity, Figure 4's "growing" curve)."""

    stage = 1

    def __init__(self, name: str, settings: dict[str, Any], mixer: ScoreMixer):
        super().__init__(name, settings)
        self.mixer = mixer
        self.augmented_batches = 0

    def augment_real(self, real: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        count = len(real)
        if count < 2 or torch.rand(()) >= self.settings["probability"]:
            return real
        partner = partners(count, labels)
        lam = sample_lambdas(count, self.settings["alpha"])
        images = (real + 1) / 2
        self.augmented_batches += 1
        return self.mixer(images, images[partner.to(real.device)], lam) * 2 - 1

    def augment_inputs(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Translation: the source batch, ScoreMixed within domains (the paper augments the
        generator's inputs)."""
        return self.augment_real(images, labels)

    def stats(self) -> dict[str, float]:
        return {"scoremix_batches": float(self.augmented_batches)}

    def state_dict(self) -> dict[str, Any]:
        return {"augmented_batches": self.augmented_batches}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.augmented_batches = state.get("augmented_batches", 0)


class AugMixReal(Part):
    """AugMix of each real image, as the paper uses it (severity, width, depth and alpha from
    the config; the reference implementation's values by default): torchvision's ``v2.AugMix``
    semantics, the whole batch at once on the training device (``mixgan.augment.augmix``),
    its draws seeded from the global RNG (checkpointed: resumes exactly)."""

    stage = 1

    def __init__(self, name: str, settings: dict[str, Any]):
        super().__init__(name, settings)
        self.augmix = make_augmix(
            settings["severity"], settings["width"], settings["depth"], settings["alpha"],
            settings.get("all_ops", True),
        )  # fmt: skip

    def augment_real(self, real: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        images = (real + 1) / 2
        return self.augmix(images, images, torch.ones(len(real))) * 2 - 1

    def augment_inputs(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Translation: AugMix of every source image."""
        return self.augment_real(images, labels)


class BatchMixing(Part):
    """mixup or CutMix of every batch D sees with a shuffled copy of itself, so reals mix
    with reals and fakes with fakes (no label leaking); lambda ~ Beta(alpha, alpha). In a
    class-conditional run each image mixes with one of its own class, keeping its label."""

    stage = 2

    def __init__(self, name: str, settings: dict[str, Any], mix: Callable):
        super().__init__(name, settings)
        self.mix = mix

    def augment_d_input(
        self, images: torch.Tensor, labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        count = len(images)
        if count < 2:
            return images
        partner = partners(count, labels)
        lam = sample_lambdas(count, self.settings["alpha"]).float()
        return self.mix(images, images[partner.to(images.device)], lam)

    def augment_inputs(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Translation (CutMix): the source batch mixed within domains, labels kept."""
        return self.augment_d_input(images, labels)


class DiffAugment(Part):
    """DiffAugment on every image D sees, real and fake (Zhao et al. 2020)."""

    stage = 3

    def augment_d_input(
        self, images: torch.Tensor, labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        return diff_augment(images, self.settings["policy"])


class ADA(Part):
    """Adaptive discriminator augmentation: NVIDIA's bgc pipeline (``mixgan.augment.ada``) on
    every image D sees, with a probability p steered by the sign of D's outputs on reals
    (target ``target``)."""

    stage = 3

    def __init__(self, name: str, settings: dict[str, Any]):
        super().__init__(name, settings)
        self.controller = AdaController(
            settings["target"], settings["interval"], settings["speed_kimg"]
        )

    def augment_d_input(
        self, images: torch.Tensor, labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        return ada_augment(images, self.controller.p)

    def after_d_step(self, logits_real: torch.Tensor) -> None:
        self.controller.update(distributed.gather_over_ranks(logits_real))  # the global batch

    def stats(self) -> dict[str, float]:
        return {"ada_p": self.controller.p, "ada_rt": self.controller.last_rt}

    def state_dict(self) -> dict[str, Any]:
        return self.controller.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            self.controller.load_state_dict(state)


def scoremix_part(name: str, settings: dict[str, Any], inputs: PartInputs) -> Part:
    """The static part (mu a number) or the online one (mu: growing) of a scoremix kind."""
    if settings["mu"] != "growing":
        return ScoreMixStatic(name, settings, inputs.augmented_zip)
    if inputs.scorenet is None:
        raise ValueError(f"part {name}: growing mu needs the score network (--scorenet)")
    score_net = load_score_net(inputs.scorenet, inputs.device)
    return ScoreMixOnline(name, settings, ScoreMixer.from_part(score_net, settings))
