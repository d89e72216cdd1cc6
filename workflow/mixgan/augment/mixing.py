"""Mixing functions with one interface: ``mix(x1, x2, lam, generator) -> images``.

Images are NCHW floats in [0, 1]; ``lam`` holds one weight per example. The same call makes
the baselines of the ScoreMix paper, its Figure 3 and the augmented sets:

* ``mixup`` (Zhang et al.): ``lam x1 + (1 - lam) x2``.
* ``cutmix`` (Yun et al.): a box of area ``(1 - lam) H W`` from ``x2`` pasted into ``x1``;
  the centre is uniform over the image and the box is clipped at the border, as in CutMix.
* ``augmix`` (Hendrycks et al.): AugMix of ``x1`` alone with torchvision's ``v2.AugMix``
  semantics (severity 3, width 3, random depth, alpha 1, all ops: the reference defaults),
  batched on ``x1``'s device (``mixgan.augment.augmix``); ``x2`` and ``lam`` are unused, as
  the paper applies AugMix to single real images.
* ScoreMix: :class:`mixgan.augment.scoremix.ScoreMixer`, with the same call.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

Mixer = Callable[[Tensor, Tensor, Tensor, "torch.Generator | None"], Tensor]


def _weights(lam: Tensor, like: Tensor) -> Tensor:
    return lam.to(like.device, like.dtype).view(-1, *[1] * (like.ndim - 1))


def partners(count: int, labels: Tensor | None = None) -> Tensor:
    """A random partner j != i for each of ``count`` batch items; with ``labels`` ([count]),
    j has i's label (i itself when no other item has it)."""
    if labels is None:
        return (torch.arange(count) + torch.randint(1, count, (count,))) % count
    labels = labels.cpu()
    same = (labels[:, None] == labels[None, :]) & ~torch.eye(count, dtype=torch.bool)
    scores = torch.rand(count, count).masked_fill(~same, -1.0)
    return torch.where(same.any(1), scores.argmax(1), torch.arange(count))


def mixup(x1: Tensor, x2: Tensor, lam: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Convex combination, one weight per example."""
    weight = _weights(lam, x1)
    return weight * x1 + (1 - weight) * x2


def cutmix_boxes(
    height: int, width: int, lam: Tensor, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """CutMix boxes (top, bottom, left, right), one per weight: side ratio sqrt(1 - lam)."""
    ratio = torch.sqrt(1 - lam.double().cpu())
    cut_h, cut_w = (height * ratio).long(), (width * ratio).long()
    centre_y = torch.randint(height, (len(lam),), generator=generator)
    centre_x = torch.randint(width, (len(lam),), generator=generator)
    top, bottom = (centre_y - cut_h // 2).clamp(0, height), (centre_y + cut_h // 2).clamp(0, height)
    left, right = (centre_x - cut_w // 2).clamp(0, width), (centre_x + cut_w // 2).clamp(0, width)
    return top, bottom, left, right


def cutmix(x1: Tensor, x2: Tensor, lam: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """``x1`` with a box of ``x2`` pasted in (box area about ``1 - lam`` of the image)."""
    _, _, height, width = x1.shape
    top, bottom, left, right = (
        b.to(x1.device) for b in cutmix_boxes(height, width, lam, generator)
    )
    rows = torch.arange(height, device=x1.device)
    cols = torch.arange(width, device=x1.device)
    in_rows = (rows >= top[:, None]) & (rows < bottom[:, None])
    in_cols = (cols >= left[:, None]) & (cols < right[:, None])
    box = (in_rows[:, :, None] & in_cols[:, None, :])[:, None]
    return torch.where(box, x2, x1)


def make_augmix(
    severity: int = 3, width: int = 3, depth: int = -1, alpha: float = 1.0, all_ops: bool = True
) -> Mixer:
    """An AugMix mixer with these settings (defaults: torchvision's v2.AugMix, whose severity,
    width, depth and alpha are the reference implementation's)."""
    from mixgan.augment import augmix as batched

    def augmix(
        x1: Tensor, x2: Tensor, lam: Tensor, generator: torch.Generator | None = None
    ) -> Tensor:
        """AugMix of each image of ``x1`` (torchvision's semantics, the whole batch at once on
        its device); one draw of ``generator`` seeds all of the batch's random choices."""
        seed = int(torch.randint(2**62, (1,), generator=generator))
        choices = torch.Generator().manual_seed(seed)
        draws = batched.draw(len(x1), severity, width, depth, alpha, all_ops, choices)
        images = (x1.clamp(0, 1) * 255).round().to(torch.uint8)
        return batched.augmix(images, draws).to(x1.dtype) / 255

    return augmix


def mixers() -> dict[str, Mixer]:
    """The three baseline mixers by name (AugMix with the reference settings)."""
    return {"mixup": mixup, "cutmix": cutmix, "augmix": make_augmix()}
