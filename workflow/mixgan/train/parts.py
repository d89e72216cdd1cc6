"""The registry of method parts: each config ``kind`` and the builder of its part.

The hooks a part may implement are documented in ``mixgan.train.part_api``; the parts
themselves live with their concern (``augment_parts``, ``lecam``, ``mixdl``, ``cdc``,
``mode_collapse``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mixgan.augment.mixing import cutmix, mixup
from mixgan.train.augment_parts import ADA, AugMixReal, BatchMixing, DiffAugment, scoremix_part
from mixgan.train.cdc import CDC
from mixgan.train.lecam import LeCam
from mixgan.train.mixdl import MixDL
from mixgan.train.mode_collapse import DistancePreservation, ModeSeeking, NormalizedDiversity
from mixgan.train.part_api import Part, PartInputs

#: part kind -> builder(name, settings, inputs)
PART_BUILDERS: dict[str, Callable[[str, dict[str, Any], PartInputs], Part]] = {
    "scoremix": scoremix_part,
    "diffaug": lambda name, settings, inputs: DiffAugment(name, settings),
    "ada": lambda name, settings, inputs: ADA(name, settings),
    "lecam": lambda name, settings, inputs: LeCam(name, settings),
    "mixup": lambda name, settings, inputs: BatchMixing(name, settings, mixup),
    "cutmix": lambda name, settings, inputs: BatchMixing(name, settings, cutmix),
    "augmix": lambda name, settings, inputs: AugMixReal(name, settings),
    "mixdl": lambda name, settings, inputs: MixDL(name, settings),
    "msgan": lambda name, settings, inputs: ModeSeeking(name, settings),
    "ndiv": lambda name, settings, inputs: NormalizedDiversity(name, settings),
    "distancegan": lambda name, settings, inputs: DistancePreservation(name, settings),
    "cdc": lambda name, settings, inputs: CDC(name, settings, inputs.source_model),
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
    takers = [part.name for part in parts if part.takes_steps]
    if len(takers) > 1:
        raise ValueError(
            f"parts {', '.join(takers)} all compute whole steps; a method may have one"
        )
    return sorted(parts, key=lambda p: p.stage)
