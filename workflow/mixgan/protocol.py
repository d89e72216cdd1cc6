"""The protocol of every table row: each setting, its value, its source, and why we deviate.

The sources are rules in the YAML files of ``config/protocol/`` (one per concern: StyleGAN2,
ScoreMix, evaluation, ...), kept apart from the study config because they describe the papers
and the official code, not an experiment. A rule names a
setting (a dotted path into a row's settings, below), optionally where it applies (``paper``,
``table``, ``arch``, ``task``, ``backbone``, ``dataset``), the source's value, the source
itself (paper section or official file and line), and, where the study's value differs on
purpose, the ``deviation``: why. Implementation facts that no config key holds (``code.*``)
are listed with the same fields and compared with :data:`CODE_FACTS`, the values this code
version implements.

A row's settings, flattened to dotted paths:

* ``dataset.*``: resolution, subset, labels;
* ``backbone.*``: the backbone (``arch``, widths, ``train.*``), without its name; a backbone
  the GAN loop does not train (a score sampler) has no ``train.*``;
* ``part.<kind>.*``: every part of the row's method, by kind (``part.lecam.weight``);
* ``scorenet.*``: the score network of a ScoreMix part or a score-sampler backbone;
* ``evaluation.*``: the evaluation settings the table's metrics depend on, resolved for that
  table (the study's, its paper's protocol, its own block: ``mixgan.evaluation.resolve``);
* ``code.*``: :data:`CODE_FACTS` of the row's arch and parts.

Each (table, row, setting) gets a status: ``source`` (our value is the source's), ``deviation``
(it differs, for the reason given), ``undocumented`` (it differs and no reason is given: a
defect of the study config or of the rules), ``choice`` (the source is silent: our choice,
with its reason), ``unsourced`` (no rule covers the setting), or ``infrastructure``
(does not change results: checkpoints, logging, devices). ``mixgan protocol`` writes the
listing; with ``--check`` it fails on undocumented or unsourced settings.
"""

from __future__ import annotations

import copy
import fnmatch
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from mixgan import registry
from mixgan.evaluation import relevant
from mixgan.remix_tasks import TRACK_ARCHS, track_options
from mixgan.study import RunKey, Study

SOURCES_DIR = Path(__file__).resolve().parents[2] / "config" / "protocol"
WHERE_KEYS = ("paper", "table", "arch", "task", "backbone", "dataset")
STATUSES = ("source", "deviation", "choice", "undocumented", "unsourced", "infrastructure")

#: implementation facts no config key holds: (arch or part kind or "*") -> {setting: value}.
#: Each is what this code version does; the rules say what the sources do.
CODE_FACTS: dict[str, dict[str, Any]] = {
    "*": {
        # the metrics read the samples as stored: 8-bit PNGs (mixgan.sample, data.imagezip)
        "evaluation.quantised_samples": True,
    },
    # ADA's geometric resampling and p controller (mixgan.augment.ada)
    "ada": {
        "ada.resampling_filter": "sym6",
        "ada.resampling_factor": 2,
        "ada.padding": "reflect",
        "ada.p_max": None,  # p is clamped below at 0 only
    },
    # AugMix's semantics (mixgan.augment.augmix): torchvision's v2.AugMix, batched
    "augmix": {"augmix.semantics": "torchvision v2.AugMix"},
    # BigGAN's EMA and spectral norm (mixgan.train.biggan, mixgan.nets.biggan)
    "biggan": {
        "biggan.ema_averages": "state_dict",
        "biggan.sn_eval_power_iteration": True,
        "biggan.sample_mode": "eval",
    },
    # StyleGAN2's networks and step (mixgan.nets.stylegan2, mixgan.train.gan)
    "stylegan2": {
        "stylegan2.networks": "stylegan2-ada-pytorch networks.py (skip G, resnet D)",
        "stylegan2.mapping_lr_mult": 0.01,
        "stylegan2.step_order": "G step, then D step",
        "stylegan2.real_sampling": "uniform with replacement",
        "stylegan2.ema_buffers": "copied",
    },
    # MixDL's steps (mixgan.train.mixdl.MixDL)
    "mixdl": {
        "mixdl.mixdl_steps": "step % mixup_every == 0",
        "mixdl.r1_logits": "patch",  # R1 on a MixDL step: a drawn head's mean patch logits
        "mixdl.g_layers": "all but the first and the last",
        "mixdl.g_distance_batch": "the adversarial batch",
    },
    # CDC's distance consistency and R1 (mixgan.train.cdc.CDC)
    "cdc": {
        "cdc.g_layers": "all but the first",
        "cdc.r1_logits": "the step's level",
    },
    # MixDL Table 2's baselines (mixgan.train.mode_collapse)
    "msgan": {"msgan.g_step_style_mixing": False},
    "ndiv": {"ndiv.g_step_style_mixing": False, "ndiv.normaliser": "detached"},
    "distancegan": {
        "distancegan.g_step_style_mixing": False,
        "distancegan.latent_statistics": "N(0, I)",
    },
    # SinCUT's official run and Table 7's SIFID (mixgan.train.sincut, mixgan.train.oneshot)
    "sincut": {
        "sincut.iterations": 100_000,
        "sincut.losses": (
            "GAN (non-saturating) + PatchNCE(layers 0,2,4; lambda 4; tau 0.07) + identity NCE"
            " + identity L1 (1) + R1 (1)"
        ),
        "sincut.networks": (
            "stylegan2 G (ngf 10, one downsampling) and D (ndf 8), netF mlp_sample 256"
        ),
        "sincut.optimiser": "Adam lr 0.002, betas (0, 0.99)",
        "sincut.sifid_reference": "target image",
    },
    # StarGAN v2's evaluation (mixgan.i2i_eval)
    "stargan2": {
        "stargan2.evaluation_sources": "the prepared dataset (AFHQ train split)",
    },
    # ReMix Table 3 (mixgan.train.spade_train, mixgan.remix_eval)
    "spade": {
        "spade.losses": "hinge GAN + D feature matching + VGG-19 perceptual",
        "spade.remix_losses": "VGG loss relative (t1, t2); no feature matching on mixed steps",
        "spade.mixed_input": "one-hot label map (+ instance edges) interpolated",
        "spade.evaluation": (
            "val split: DRN-D-105 mIoU and pixel accuracy over the 19 trainIds; "
            "FID of the val translations against the val photos"
        ),
    },
    # ReMix Table 2 (mixgan.train.nirvis, mixgan.remix_eval)
    "lightcnn_stylegan2": {
        "nirvis.encoder": "LightCNN-29 v2 fc feature (256-d) of the NIR image, frozen",
        "nirvis.decoder_regularisers": "lazy R1 only (no path length, style mixing, G EMA)",
        "nirvis.evaluation": (
            "fold-1 NIR probes translated; LightCNN cosine similarity against the VIS "
            "gallery: Rank-1, VR at FAR 1 % and 0.1 %"
        ),
    },
    # FastGAN's samples (mixgan.sample.generate_images)
    "fastgan": {
        "fastgan.sample_mode": "train",
        "fastgan.sample_batch": 16,
        "fastgan.sample_weights": "ema",
        "fastgan.ema_averages": "parameters",
    },
}


@dataclass(frozen=True)
class Rule:
    """What a source says of one setting, where it applies, and why we differ (if we do)."""

    setting: str
    value: Any
    source: str
    where: dict[str, Any]
    deviation: str | None = None
    choice: bool = False  # the sources are silent: ``source`` gives our reason
    any_of: bool = False  # ``value`` lists the source's values (e.g. a table's subset sizes)

    def accepts(self, ours: Any) -> bool:
        if self.any_of:
            return any(_equal(ours, theirs) for theirs in self.value)
        return _equal(ours, self.value)

    def applies(self, context: dict[str, Any]) -> bool:
        return all(_matches(context.get(key), wanted) for key, wanted in self.where.items())


def load_rules(folder: str | Path = SOURCES_DIR) -> tuple[list[Rule], list[str]]:
    """The rules and infrastructure patterns of every ``*.yaml`` file of ``folder``, in file
    name order (a later file's rule wins over an earlier one's for the same setting)."""
    rules: list[Rule] = []
    infrastructure: list[str] = []
    for path in sorted(Path(folder).glob("*.yaml")):
        file_rules, file_infrastructure = _read_rules(path)
        rules += file_rules
        infrastructure += file_infrastructure
    return rules, infrastructure


def _read_rules(path: Path) -> tuple[list[Rule], list[str]]:
    data = yaml.safe_load(path.read_text()) or {}
    rules = []
    for index, entry in enumerate(data.get("rules") or []):
        known = {"setting", "value", "values", "source", "where", "deviation", "choice"}
        where = entry.get("where", {})
        has_value = ("value" in entry) != ("values" in entry)
        if set(entry) - known or "setting" not in entry or "source" not in entry or not has_value:
            raise ValueError(f"{path}: rules[{index}] needs setting, value (or values) and source")
        if set(where) - set(WHERE_KEYS):
            raise ValueError(f"{path}: rules[{index}].where: keys are {', '.join(WHERE_KEYS)}")
        rules.append(
            Rule(
                entry["setting"],
                entry["values"] if "values" in entry else entry["value"],
                entry["source"],
                where,
                entry.get("deviation"),
                bool(entry.get("choice", False)),
                "values" in entry,
            )
        )
    return rules, list(data.get("infrastructure") or [])


def row_settings(
    study: Study, run: RunKey, evaluation: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The flattened settings of one run (see the module docstring); ``evaluation``: the
    table's resolved evaluation settings (the study's without paper protocols by default)."""
    spec = study.run_spec(run)
    backbone = {k: v for k, v in spec["backbone"].items() if k != "name"}
    if backbone["arch"] not in registry.TRAINER_CLASSES:  # the schema's train defaults, unused
        backbone.pop("train", None)
    if backbone["arch"] in TRACK_ARCHS:  # every option (the defaults too) has its source
        backbone["options"] = track_options(backbone)
    tree: dict[str, Any] = {
        "dataset": {
            "resolution": spec["resolution"],
            "subset": run.subset,
            "labels": spec["labels"],
        },
        "backbone": backbone,
        "evaluation": evaluation
        if evaluation is not None
        else {k: v for k, v in study.config["evaluation"].items() if k != "papers"},
    }
    if backbone["arch"] in TRACK_ARCHS:  # scored by mixgan remix-eval (its code facts)
        tree["evaluation"] = {}
    parts = spec["method"]["parts"]
    tree["part"] = {
        p["kind"]: {k: v for k, v in p.items() if k not in ("name", "kind")} for p in parts
    }
    scorenet = backbone.get("scorenet") or next(
        (p["scorenet"] for p in parts if p["kind"] == "scoremix"), None
    )
    if scorenet is not None:
        tree["scorenet"] = study.config["scorenets"][scorenet]
    facts: dict[str, Any] = {}
    for owner in ("*", backbone["arch"], *(p["kind"] for p in parts)):
        facts.update(CODE_FACTS.get(owner, {}))
    if facts:
        tree["code"] = facts
    return dict(_flatten(tree))


def protocol_rows(study: Study, rules: list[Rule], infrastructure: list[str]) -> pd.DataFrame:
    """One row per (table, table row, setting): values, the source, the status."""
    records = []
    for layout in study.layouts_in("tables"):
        paper = layout.config.get("paper")
        by_row: dict[str, list[RunKey]] = {}
        for cell in layout.cells:
            if not cell.pending:
                by_row.setdefault(cell.row, []).extend(cell.runs)
        # every metric of the table, those pending for want of weights too: its protocol
        metrics = [cell.metric for cell in layout.cells]
        table_evaluation = relevant(study.layout_evaluation(layout.id), metrics)
        for row, runs in by_row.items():
            settings: dict[str, list[Any]] = {}
            contexts = []
            for run in dict.fromkeys(runs):
                backbone = study.config["backbones"][run.backbone]
                contexts.append({"paper": paper, "table": layout.id, "arch": backbone["arch"],
                                 "task": backbone["task"], "backbone": run.backbone,
                                 "dataset": run.dataset})  # fmt: skip
                for key, value in row_settings(study, run, table_evaluation).items():
                    values = settings.setdefault(key, [])
                    if value not in values:
                        values.append(value)
            for key, values in settings.items():
                records.append(
                    {
                        "table": layout.id,
                        "row": row,
                        **_judge(key, values, contexts, rules, infrastructure),
                    }  # fmt: skip
                )
    rows = pd.DataFrame.from_records(
        records,
        columns=["table", "row", "setting", "value", "source_value", "status", "source", "reason"],
    )
    rows.attrs["waiting_settings"] = waiting_settings(study)
    return rows


#: weights whose absence leaves runs pending (FastGAN's LPIPS-VGG loss needs vgg16)
NETWORK_WEIGHTS = ("vgg16", "alexnet")


def waiting_settings(study: Study) -> set[str]:
    """The settings of the table rows that wait only for network weights (FastGAN's rows
    without ``weights.vgg16``): not listed until the weights are set, yet their rules are not
    stale. Found by listing the study with every missing weights file named."""
    config = copy.deepcopy(study.config)
    missing = [key for key in NETWORK_WEIGHTS if not config["weights"].get(key)]
    if not missing:
        return set()
    config["weights"].update(dict.fromkeys(missing, "download"))
    provisioned = Study(config, check_paths=False)
    settings: set[str] = set()
    for layout in provisioned.layouts_in("tables"):
        for cell in layout.cells:
            if cell.pending:
                continue
            for run in cell.runs:
                settings.update(row_settings(provisioned, run))
    return settings


def _judge(
    key: str,
    values: list[Any],
    contexts: list[dict[str, Any]],
    rules: list[Rule],
    infrastructure: list[str],
) -> dict[str, Any]:
    shown = " | ".join(_show(v) for v in values)
    base = {"setting": key, "value": shown, "source_value": "", "source": "", "reason": ""}
    if any(fnmatch.fnmatchcase(key, pattern) for pattern in infrastructure):
        return {**base, "status": "infrastructure"}
    matching = [r for r in rules if r.setting == key and any(r.applies(c) for c in contexts)]
    if not matching:
        return {**base, "status": "unsourced"}
    rule = matching[-1]  # later rules are more specific
    shown_source = " or ".join(map(_show, rule.value)) if rule.any_of else _show(rule.value)
    base |= {"source_value": shown_source, "source": rule.source}
    if rule.choice:
        return {**base, "status": "choice", "reason": rule.source}
    if all(rule.accepts(v) for v in values):
        return {**base, "status": "source"}
    if rule.deviation:
        return {**base, "status": "deviation", "reason": rule.deviation}
    return {**base, "status": "undocumented"}


def problems(rows: pd.DataFrame) -> list[str]:
    """The undocumented deviations and unsourced settings, one line each (deduplicated)."""
    bad = rows[rows["status"].isin(["undocumented", "unsourced"])]
    lines = []
    for (setting, status, value, source_value), group in bad.groupby(
        ["setting", "status", "value", "source_value"], sort=True
    ):
        places = sorted({f"{t}: {r}" for t, r in zip(group["table"], group["row"], strict=True)})
        where = ", ".join(places[:3]) + (f" and {len(places) - 3} more" if len(places) > 3 else "")
        if status == "unsourced":
            lines.append(f"{setting} = {value}: no source listed ({where})")
        else:
            lines.append(
                f"{setting} = {value}, source says {source_value}, no reason given ({where})"
            )
    return lines


def stale_rules(rules: list[Rule], rows: pd.DataFrame) -> list[Rule]:
    """Rules that no row of the study uses (a renamed setting, a typo in ``where``); the rows
    that wait only for weights count (``rows.attrs["waiting_settings"]``)."""
    used = set(rows["setting"]) | rows.attrs.get("waiting_settings", set())
    return [rule for rule in rules if rule.setting not in used]


def markdown(rows: pd.DataFrame, title: str) -> str:
    """Per table: each setting, its source, and each row's value with its status mark."""
    marks = {"source": "", "choice": " °", "deviation": " †", "undocumented": " ‼",
             "unsourced": " ?", "infrastructure": ""}  # fmt: skip
    lines = [f"# {title}", "", "Marks: ° our choice where the sources are silent (reason given); "
             "† deliberate deviation (reason given); ‼ deviation with no reason (a defect); "
             "? no source listed. Unmarked values are the source's.", ""]  # fmt: skip
    shown = rows[rows["status"] != "infrastructure"]
    for table, group in shown.groupby("table", sort=False):
        row_names = list(dict.fromkeys(group["row"]))
        lines += [f"## {table}", "", "| setting | source | " + " | ".join(row_names) + " |",
                  "|---|---|" + "---|" * len(row_names)]  # fmt: skip
        reasons: dict[str, int] = {}
        for setting, entries in group.groupby("setting", sort=True):
            by_row = {r: e for r, e in zip(entries["row"], entries.to_dict("records"), strict=True)}
            sources = "; ".join(dict.fromkeys(s for s in entries["source"] if s)) or "—"
            cells = []
            for name in row_names:
                entry = by_row.get(name)
                if entry is None:
                    cells.append("")
                    continue
                note = ""
                if entry["reason"] and entry["status"] != "choice":
                    number = reasons.setdefault(entry["reason"], len(reasons) + 1)
                    note = f"[{number}]"
                cells.append(f"{entry['value']}{marks[entry['status']]}{note}")
            lines.append(
                f"| `{setting}` | {_escape(sources)} | " + " | ".join(map(_escape, cells)) + " |"
            )
        if reasons:
            lines += [""] + [f"[{n}] {_escape(text)}" for text, n in reasons.items()]
        lines.append("")
    return "\n".join(lines)


def _flatten(tree: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            yield from _flatten(value, path + ".")  # an empty dict (no parts) yields nothing
        else:
            yield path, value


def _matches(actual: Any, wanted: Any) -> bool:
    if isinstance(wanted, list):
        return actual in wanted
    return actual == wanted


def _equal(ours: Any, theirs: Any) -> bool:
    if isinstance(ours, bool) or isinstance(theirs, bool):
        return ours is theirs or ours == theirs
    if isinstance(ours, int | float) and isinstance(theirs, int | float):
        return math.isclose(ours, theirs, rel_tol=1e-9, abs_tol=1e-12)
    if isinstance(ours, list | tuple) and isinstance(theirs, list | tuple):
        return len(ours) == len(theirs) and all(
            _equal(a, b) for a, b in zip(ours, theirs, strict=True)
        )
    return ours == theirs


def _show(value: Any) -> str:
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    if isinstance(value, float):
        return f"{value:g}"
    return "null" if value is None else str(value)


def _escape(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def all_settings(rows: pd.DataFrame) -> Iterable[str]:
    """The settings that appear in the listing, sorted (for writing new rules)."""
    return sorted(set(rows["setting"]))
