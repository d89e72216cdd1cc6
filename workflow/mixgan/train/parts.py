"""Method parts: small objects that hook into the GAN loop without forking it.

A method is a list of named parts from the config (``[diffaug, scoremix]``). Each part may
act at these points of the loop, in this order of stages:

1. ``extra_real`` — extra images D sees as real (ScoreMix's static augmented set);
2. ``augment_d_input`` — transform every image batch D sees (DiffAugment);
3. ``d_regularizer`` / ``g_regularizer`` — extra loss terms;
4. ``after_d_step`` — read D's outputs (adaptive schedules).

A new augmentation or regularizer is one class here and one ``kind`` in the config schema
(and ``mixgan.registry.PARTS``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import torch

from mixgan.augment.diffaug import diff_augment
from mixgan.data.imagezip import read_image_zip, to_tensor


class Part:
    """Base class: every hook is a no-op."""

    kind: ClassVar[str]
    stage: ClassVar[int] = 0

    def __init__(self, name: str, settings: dict[str, Any]):
        self.name = name
        self.settings = settings

    def extra_real(self) -> torch.Tensor | None:
        """NCHW uint8 images to add to the real pool, or ``None``."""
        return None

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

    kind = "scoremix"
    stage = 1

    def __init__(self, name: str, settings: dict[str, Any], augmented_zip: Path | None):
        super().__init__(name, settings)
        if settings["mu"] == "growing":
            raise ValueError(f"part {name}: growing mu (online ScoreMix) is not implemented yet")
        if settings["mu"] > 0 and augmented_zip is None:
            raise ValueError(
                f"part {name}: mu = {settings['mu']} needs its augmented set (--augmented)"
            )
        self.augmented_zip = augmented_zip

    def extra_real(self) -> torch.Tensor | None:
        if self.settings["mu"] == 0:
            return None
        return to_tensor(read_image_zip(self.augmented_zip))


class DiffAugment(Part):
    """DiffAugment on every image D sees, real and fake (Zhao et al. 2020)."""

    kind = "diffaug"
    stage = 2

    def augment_d_input(self, images: torch.Tensor) -> torch.Tensor:
        return diff_augment(images, self.settings["policy"])


PART_CLASSES: dict[str, type[Part]] = {cls.kind: cls for cls in (ScoreMixStatic, DiffAugment)}


def build_parts(part_specs: list[dict[str, Any]], augmented_zip: Path | None = None) -> list[Part]:
    """Instantiate a method's parts, ordered by stage (config order within a stage)."""
    parts: list[Part] = []
    for spec in part_specs:
        settings = {k: v for k, v in spec.items() if k not in ("name", "kind")}
        cls = PART_CLASSES.get(spec["kind"])
        if cls is None:
            raise ValueError(f"part {spec['name']}: kind '{spec['kind']}' is not implemented yet")
        if cls is ScoreMixStatic:
            parts.append(cls(spec["name"], settings, augmented_zip))
        else:
            parts.append(cls(spec["name"], settings))
    return sorted(parts, key=lambda p: p.stage)
