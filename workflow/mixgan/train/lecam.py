"""LeCam regularization of D (Tseng et al., CVPR 2021) as a method part."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

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
