"""Load and validate a study config (its expansion into runs: ``mixgan.study``).

One function family serves the Snakefile and the command line alike:

* :func:`load_config_file` reads YAML and rejects duplicated keys (YAML would silently keep
  the last one, hiding a duplicated run or method name).
* :func:`validate_config` checks the JSON schema (filling its defaults) and every cross
  reference, and reports *all* problems at once, each with its dotted key path.
* ``mixgan.study.Study`` expands the tables and figures into runs and resolves one run's
  settings.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Iterable
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
        if dataset.get("classes") and dataset["labels"] != "subfolder":
            problems.append(f"datasets.{name}.classes: needs labels 'subfolder'")

    for name, part in parts.items():
        if part["kind"] == "scoremix" and part["scorenet"] not in scorenets:
            problems.append(
                f"parts.{name}.scorenet: score network '{part['scorenet']}' is not defined "
                f"in scorenets (defined: {sorted(scorenets) or 'none'})"
            )
        elif part["kind"] == "scoremix":
            problems += _denoise_level_problems(name, part, scorenets[part["scorenet"]])
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
        elif (
            backbone["arch"] == "score_sampler"
            and scorenets[backbone["scorenet"]].get("max_level_t", 1.0) < 1.0
        ):
            problems.append(
                f"scorenets.{backbone['scorenet']}.max_level_t: backbone {name} samples from "
                "the largest noise level down, so its score network trains every level "
                "(max_level_t 1)"
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


def _denoise_level_problems(name: str, part: dict[str, Any], scorenet: dict[str, Any]) -> list[str]:
    """A ScoreMix part whose SDEdit starts above the levels its score network trains."""
    denoise, trained = part.get("final_denoise", {}), scorenet.get("max_level_t", 1.0)
    if denoise.get("mode") == "sdedit" and denoise.get("t0", 0.25) > trained:
        return [
            f"parts.{name}.final_denoise.t0: {denoise['t0']} is above the levels score network "
            f"'{part['scorenet']}' trains (scorenets.{part['scorenet']}.max_level_t {trained})"
        ]
    return []


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
        cell = merge_cell(layout.get("defaults", {}), row, column)
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
            merge_cell(figure.get("defaults", {}), row, column).get("dataset")
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


def backbone_options(
    backbone: dict[str, Any], defaults: dict[str, Any], where: str = "options"
) -> dict[str, Any]:
    """A dedicated trainer's ``backbone.options`` over its ``defaults``; an unknown key is a
    ConfigError naming ``where`` and the known keys."""
    given = backbone.get("options", {})
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ConfigError(
            [
                f"{where}: unknown option(s) {', '.join(unknown)} for arch "
                f"'{backbone['arch']}' (known: {', '.join(sorted(defaults))})"
            ]
        )
    return {**defaults, **given}


def has_labels(dataset: dict[str, Any]) -> bool:
    """Procedural datasets always carry class labels; others when ``labels`` is set."""
    return dataset.get("format") == "procedural" or dataset["labels"] != "none"


def has_domains(dataset: dict[str, Any]) -> bool:
    return dataset.get("format") == "procedural" or dataset["domains"] != "none"


def merge_cell(*cells: dict[str, Any]) -> dict[str, Any]:
    """The grid coordinates of the given table entries, later ones winning."""
    merged: dict[str, Any] = {}
    for cell in cells:
        merged.update({k: v for k, v in cell.items() if k in COORDINATES})
    return merged
