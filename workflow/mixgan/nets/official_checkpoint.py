"""Load official PyTorch checkpoints into this package's re-implementations.

Official releases store weights in a few layouts: a bare ``state_dict``, or a training
checkpoint ``{"state_dict": ..., "epoch": ..., ...}`` whose keys carry the ``module.`` prefix
of ``torch.nn.DataParallel`` (AlfredXiangWu/LightCNN ``train.py`` ``save_checkpoint``;
fyu/drn ``segment.py`` ``save_checkpoint``). :func:`load_official_state` accepts all of these
and fails with a message naming the file and the offending keys.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

from mixgan.metrics.weights import WeightsError

DATA_PARALLEL_PREFIX = "module."


def official_state(raw: object, path: str | Path) -> dict[str, Tensor]:
    """The tensors of a loaded checkpoint, unwrapped from ``state_dict`` and ``module.``."""
    if isinstance(raw, Mapping) and "state_dict" in raw:
        raw = raw["state_dict"]
    if not isinstance(raw, Mapping) or not all(isinstance(v, Tensor) for v in raw.values()):
        raise WeightsError(f"{path}: not a state_dict (nor a dict with a 'state_dict' entry)")
    return {k.removeprefix(DATA_PARALLEL_PREFIX): v for k, v in raw.items()}


def _listed(keys: Iterable[str], limit: int = 8) -> str:
    keys = sorted(keys)
    more = f" and {len(keys) - limit} more" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def load_official_state(
    model: nn.Module, path: str | Path, what: str, optional: Iterable[str] = ()
) -> None:
    """Load the checkpoint at ``path`` into ``model``, every key checked.

    Keys ending with one of ``optional`` may be absent (their module keeps its own value):
    e.g. ``num_batches_tracked``, which checkpoints saved before PyTorch 0.4.1 lack.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{what} checkpoint {path} does not exist")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # any unpickling failure means an unusable file
        raise WeightsError(f"{what} checkpoint {path} cannot be read: {error}") from None
    state = official_state(raw, path)
    expected = model.state_dict()
    optional = tuple(optional)
    missing = [k for k in expected if k not in state and not k.endswith(optional)]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k} {tuple(state[k].shape)} (expected {tuple(v.shape)})"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    problems = []
    if missing:
        problems.append(f"missing keys: {_listed(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_listed(unexpected)}")
    if shapes:
        problems.append(f"shape mismatches: {_listed(shapes)}")
    if problems:
        raise WeightsError(f"{path} is not a {what} checkpoint: " + "; ".join(problems))
    model.load_state_dict(state, strict=False)
