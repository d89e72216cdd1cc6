"""The method parts of the StarGAN v2 translation track and how they reach its trainer's hooks.

A method's parts (``mixgan.train.part_api``) act at three places of the StarGAN v2 iteration
(``mixgan.train.stargan2.StarGANv2Trainer``):

* the generator's source batch (``augment_inputs``, domain labels kept true): ScoreMix (its
  static set joins the source pool through ``extra_real``; growing mu mixes each batch),
  CutMix and AugMix. ScoreMix §3: "I2I: the generator's inputs are augmented";
* the style code of the two reference-guided steps (ReMix paper 003, §4.2 "we interpolate the
  output of the style encoder"): ReMix and its two baselines, mixup (Eq. 12) and weighted
  mixup WM (Eq. 13). With probability p per iteration one λ = max(μ, 1 − μ), μ ~ Beta(α, α)
  (Eq. 6–7, Algorithm 1) mixes s' = λ s¹ + (1 − λ) s² with s^k = E(x_ref^k, y); the style
  reconstruction term, the content loss of StarGAN v2 ("we modify the style reconstruction
  loss to the relative form"), compares ŝ = E(G(x, s'), y) with the targets s¹, s²:
  ReMix: L_p + L_n (Eq. 8–9, batch means as Algorithm 1) with ā updated after each mixed step
  from d(ŝ_i, s²_j), j ≠ i (Eq. 10–11, m = 0.99, the update as printed); mixup: |ŝ − t'| with
  t' = λ s¹ + (1 − λ) s² (Eq. 12); WM: t' = s¹ when λ ≥ 0.5, else s² (Eq. 13);
* what D sees (``augment_d``, ``d_regularizer``, ``after_d_step``): DiffAugment, ADA, LeCam.

Parts of other kinds are not run by this trainer: ``registry.ARCH_PARTS['stargan2']`` (=
:data:`KINDS`) marks their runs pending.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from mixgan.augment.mixing import partners
from mixgan.train.part_api import Part, PartInputs
from mixgan.train.parts import build_parts
from mixgan.train.spade_losses import RelativeContentLoss, interpolate, mixed_target, remix_lambda

#: mixing of the style-encoder output -> the target rule of its loss
STYLE_KINDS = {"remix": "remix", "mixup": "mixup", "weighted_mixup": "wm"}
#: parts that augment the generator's inputs, and parts that act on D
INPUT_KINDS = frozenset({"scoremix", "cutmix", "augmix"})
D_KINDS = frozenset({"diffaug", "ada", "lecam"})
KINDS = frozenset(STYLE_KINDS) | INPUT_KINDS | D_KINDS


def style_distance(a: Tensor, b: Tensor) -> Tensor:
    """Per-sample mean absolute difference of style codes [N, D] -> [N] (the style
    reconstruction loss of solver.py:244-245 before its batch mean)."""
    return (a - b).abs().flatten(1).mean(1)


class StyleMixing(Part):
    """ReMix, mixup or WM on the style-encoder output (module docstring)."""

    stage = 2

    def __init__(self, name: str, settings: dict[str, Any], kind: str, probability: float):
        super().__init__(name, settings)
        self.kind = STYLE_KINDS[kind]
        self.alpha = settings.get("alpha", 0.2)
        self.probability = settings.get("probability", probability)
        self.relative = RelativeContentLoss(settings.get("momentum", 0.99))
        self.lam: float | None = None
        self.mixed_steps = 0

    def begin_step(self, rng: torch.Generator) -> None:
        """Draw this iteration's plan: mix (with a new λ) with probability p, or not."""
        self.lam = None
        if torch.rand((), generator=rng).item() < self.probability:
            self.lam = remix_lambda(self.alpha, rng)
            self.mixed_steps += 1

    def mix(self, style_1: Tensor, style_2: Tensor) -> Tensor:
        """s' = λ s¹ + (1 − λ) s² on a mixed iteration, else s¹ (the official style)."""
        return style_1 if self.lam is None else interpolate(style_1, style_2, self.lam)

    def style_loss(self, pred: Tensor, style_1: Tensor, style_2: Tensor) -> Tensor:
        """The style reconstruction term of the reference-guided G step."""
        if self.lam is None:
            return style_distance(pred, style_1).mean()
        if self.kind != "remix":
            return style_distance(pred, mixed_target(style_1, style_2, self.lam, self.kind)).mean()
        loss = self.relative(style_distance(pred, style_1), style_distance(pred, style_2))
        if len(pred) > 1:  # a: distances to unrelated targets of the batch (Eq. 10)
            unrelated = style_2[partners(len(pred)).to(style_2.device)]
            self.relative.update(style_distance(pred.detach(), unrelated.detach()).mean())
        return loss

    def stats(self) -> dict[str, float]:
        values = {f"{self.name}_mixed_steps": float(self.mixed_steps)}
        if self.kind == "remix":
            values[f"{self.name}_a_bar"] = float(self.relative.a_bar)
        return values

    def state_dict(self) -> dict[str, Any]:
        return {"mixed_steps": self.mixed_steps, "a_bar": self.relative.a_bar.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.mixed_steps = state["mixed_steps"]
        self.relative.a_bar.copy_(state["a_bar"])


class TranslationParts:
    """A method's parts for the StarGAN v2 trainer: built, ordered, and composed into its
    hooks (:meth:`hooks`)."""

    def __init__(
        self, specs: list[dict[str, Any]], inputs: PartInputs, mix_probability: float
    ) -> None:
        unknown = [f"{s['name']} ({s['kind']})" for s in specs if s["kind"] not in KINDS]
        if unknown:
            raise ValueError(f"StarGAN v2 does not run the part(s) {', '.join(unknown)}")
        styles = [s for s in specs if s["kind"] in STYLE_KINDS]
        if len(styles) > 1:
            raise ValueError("a translation method takes at most one of remix, mixup, WM")
        self.style = (
            StyleMixing(
                styles[0]["name"],
                {k: v for k, v in styles[0].items() if k not in ("name", "kind")},
                styles[0]["kind"],
                mix_probability,
            )
            if styles
            else None
        )
        others = [s for s in specs if s["kind"] not in STYLE_KINDS]
        built = build_parts(others, inputs)
        kinds = {s["name"]: s["kind"] for s in others}
        self.inputs = [p for p in built if kinds[p.name] in INPUT_KINDS]
        self.d_parts = [p for p in built if kinds[p.name] in D_KINDS]
        self.parts: list[Part] = built + ([self.style] if self.style else [])

    def hooks(self) -> dict[str, Callable[..., Any] | None]:
        """The trainer's keyword arguments: ``None`` where no part acts."""
        style = self.style
        return {
            "augment_inputs": self._augment_inputs if self.inputs else None,
            "style_mixer": style.mix if style else None,
            "style_loss": style.style_loss if style else None,
            "augment_d": self._augment_d if self.d_parts else None,
            "d_regularizer": self._d_regularizer if self.d_parts else None,
            "after_d_step": self._after_d_step if self.d_parts else None,
        }

    def _augment_inputs(self, images: Tensor, labels: Tensor) -> Tensor:
        for part in self.inputs:
            images = part.augment_inputs(images, labels)
        return images

    def _augment_d(self, images: Tensor, labels: Tensor) -> Tensor:
        for part in self.d_parts:
            images = part.augment_d_input(images, labels)
        return images

    def _d_regularizer(self, logits_real: Tensor, logits_fake: Tensor) -> Tensor | None:
        terms = [p.d_regularizer(logits_real, logits_fake) for p in self.d_parts]
        terms = [t for t in terms if t is not None]
        return sum(terms[1:], terms[0]) if terms else None

    def _after_d_step(self, logits_real: Tensor) -> None:
        for part in self.d_parts:
            part.after_d_step(logits_real)

    def extra_sources(self) -> tuple[list[Tensor], list[Tensor]]:
        """Extra source images (NCHW uint8) and their domains: a static ScoreMix set."""
        images, labels = [], []
        for part in self.inputs:
            extra = part.extra_real()
            if extra is not None:
                images.append(extra)
                labels.append(part.extra_real_labels())
        return images, labels

    def stats(self) -> dict[str, float]:
        return {k: v for part in self.parts for k, v in part.stats().items()}

    def state_dict(self) -> dict[str, Any]:
        return {part.name: part.state_dict() for part in self.parts}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for part in self.parts:
            part.load_state_dict(state[part.name])
