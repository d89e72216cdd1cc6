"""LeCam regularization of D (Tseng et al., CVPR 2021) as a method part.

D's loss gets ``weight`` × (E[relu(D(x) − a_F)²] + E[relu(a_R − D(G(z)))²]), with a_R and a_F
moving averages (decay ``ema_decay``) of D's mean outputs on reals and fakes, updated with the
current batch before the penalty is computed. The two official implementations differ, and
the part's settings give either:

* lecam-gan's PyTorch code (BigGAN, ``third_party/utils.py`` ``ema_losses``, ``train_fns.py``):
  before D step ``ema_start`` the averages follow the batch means (decay 0), and the penalty is
  added only after it (``itr > start_itr``; 1,000 in ``biggan_cifar/train.py``);
* lecam-gan's StyleGAN2 code (TensorFlow, ``stylegan2/lecam_loss.py``): averages from zero,
  bias-corrected as ``assign_moving_average(..., zero_debias=True)`` (``zero_debias``), the
  penalty from the first step.

Without either, the first batch's means start the averages. The D steps are counted by the part
(``steps``); lecam-gan's BigGAN counts generator iterations, the same at one D step per
iteration.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from mixgan.train import distributed
from mixgan.train.part_api import Part


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
        # absent settings (a part built by hand) mean: no delay, no bias correction
        self.start = int(settings.get("ema_start", 0))
        self.zero_debias = bool(settings.get("zero_debias", False))
        self.steps = 0  # D steps seen (lecam-gan's BigGAN ``itr``, counted from 1)
        # the averages without bias correction, and the weight they have accumulated
        self.biased: torch.Tensor | None = None  # [a_R, a_F]
        self.weight_sum = 0.0
        self.anchor_real: torch.Tensor | None = None
        self.anchor_fake: torch.Tensor | None = None

    def _decay(self) -> float:
        """This step's decay: 0 before ``ema_start`` (and, without bias correction, on the
        first step: the first batch starts the averages), else ``ema_decay``."""
        if self.steps < self.start or (self.steps == 1 and not self.zero_debias):
            return 0.0
        return float(self.settings["ema_decay"])

    def update_anchors(self, logits_real: torch.Tensor, logits_fake: torch.Tensor) -> None:
        """One D step's update of a_R and a_F with the batch's mean outputs."""
        self.steps += 1
        means = torch.stack([logits_real.detach().mean(), logits_fake.detach().mean()])
        means = distributed.mean_over_ranks(means)  # the global batch's
        decay = self._decay()
        biased = torch.zeros_like(means) if self.biased is None else self.biased.to(means)
        self.biased = biased.lerp(means, 1 - decay)
        self.weight_sum = self.weight_sum * decay + (1 - decay)
        anchors = self.biased / self.weight_sum if self.zero_debias else self.biased
        self.anchor_real, self.anchor_fake = anchors.unbind()

    def d_regularizer(
        self, logits_real: torch.Tensor, logits_fake: torch.Tensor
    ) -> torch.Tensor | None:
        self.update_anchors(logits_real, logits_fake)
        if self.steps <= self.start:  # lecam-gan: the penalty only when itr > start_itr
            return None
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
        if self.biased is None:
            return {}
        return {
            "steps": self.steps,
            "biased": self.biased.cpu(),
            "weight_sum": self.weight_sum,
            "anchor_real": float(self.anchor_real),
            "anchor_fake": float(self.anchor_fake),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not state:
            return
        self.anchor_real = torch.tensor(state["anchor_real"])
        self.anchor_fake = torch.tensor(state["anchor_fake"])
        if "biased" in state:
            self.steps, self.weight_sum = state["steps"], state["weight_sum"]
            self.biased = state["biased"].clone()
        else:  # a checkpoint of the earlier part: plain averages, past their first step
            self.steps, self.weight_sum = max(self.start, 1), 1.0
            self.biased = torch.stack([self.anchor_real, self.anchor_fake])
