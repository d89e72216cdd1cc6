# Shared helpers: config validation and expansion, the jobs' environment, paths, resources,
# and the input functions of the rules.
import glob
import json
import re
import os
import shlex
import sys
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(workflow.basedir) / "workflow"))

from snakemake.exceptions import WorkflowError
from snakemake.settings.types import DeploymentMethod

from mixgan import forkserver  # noqa: E402
from mixgan.config import load_config_file  # noqa: E402
from mixgan.study import RunKey, Study  # noqa: E402
from mixgan.errors import ConfigError  # noqa: E402
from mixgan.evaluation import (  # noqa: E402
    EXTRACTORS,
    VARIANT_PATTERN,
    network as record_network,
    training_features,
)
from mixgan.registry import (  # noqa: E402
    CURVE_FIGURE_KINDS,
    FIGURES_WITHOUT_RUNS,
    GENERATOR_METRICS,
    PPL_INTERVAL_METRICS,
    IMAGE_METRICS,
    METRIC_FIGURE_KINDS,
    PROCEDURAL_DATA,
    RUN_METRICS,
    metric_network,
    uses_vgg_loss,
)


def load_study():
    """Validate every config file strictly and expand the study (paths checked at onstart)."""
    try:
        for path in workflow.configfiles:
            load_config_file(path)  # rejects duplicated keys, which YAML would silently merge
        return Study(config, check_paths=False)
    except ConfigError as error:
        raise WorkflowError(str(error)) from None


STUDY = load_study()
FORK_SERVER = []  # (process, socket path) while a local run's fork server is up
R = str(STUDY.root)
WEIGHTS = STUDY.config["weights"]["dir"]
INCEPTION = f"{WEIGHTS}/inception-2015-12-05.pt"
STAND_IN = "--allow-stand-in" if STUDY.config["weights"]["allow_standins"] else ""
DIVERSITY_NETWORK = metric_network("lpips")  # the LPIPS backbone of the diversity probe


# Every rule runs `python -m mixgan <command>` (the package of this checkout). Jobs inherit
# this environment, locally and on SLURM (sbatch exports it); under --sdm conda the rule's
# env puts its own python first on PATH.
_paths = {"PYTHONPATH": [str(Path(workflow.basedir) / "workflow"), os.environ.get("PYTHONPATH")]}
if DeploymentMethod.CONDA not in workflow.deployment_settings.deployment_method:
    _paths["PATH"] = [str(Path(sys.executable).parent), os.environ.get("PATH")]
os.environ.update({name: os.pathsep.join(filter(None, parts)) for name, parts in _paths.items()})
ENV = "../../envs/environment.yaml"

wildcard_constraints:
    dataset=r"[A-Za-z0-9][A-Za-z0-9_.-]*",
    subset=r"[A-Za-z0-9][A-Za-z0-9_.-]*",
    backbone=r"[A-Za-z0-9][A-Za-z0-9_.-]*",
    method=r"[A-Za-z0-9][A-Za-z0-9_.-]*",
    part=r"[A-Za-z0-9][A-Za-z0-9_.-]*",
    scorenet=r"[A-Za-z0-9][A-Za-z0-9_.-]*",
    seed=r"\d+",
    metric=r"[a-z0-9_]+",
    reference=r"full|subset|none",
    variant=VARIANT_PATTERN,
    extractor="|".join(map(re.escape, EXTRACTORS)),
    network=r"vgg16|alexnet",
    layout=r"[A-Za-z0-9][A-Za-z0-9_-]*",


onstart:
    # Dataset and weight paths are checked only when jobs will really run, so a dry run of
    # the paper study works anywhere; a real run stops here, before any job, naming the key.
    problems = STUDY.path_problems()
    if problems:
        raise WorkflowError("\n".join(problems))
    print(f"study '{STUDY.name}': {len(STUDY.runnable_runs())} runnable runs", file=sys.stderr)
    for line in STUDY.pending_summary():
        print(f"  pending (shown as '—' in the tables): {line}", file=sys.stderr)
    for line in STUDY.notes():
        print(f"  note: {line}", file=sys.stderr)
    # Local execution only: a cluster's jobs run on their nodes, under their own limits.
    if STUDY.config["fork_server"] and workflow.local_exec and not workflow.remote_exec:
        # jobs inherit the socket's path (mixgan.forkserver)
        FORK_SERVER.extend(forkserver.start())
        os.environ[forkserver.ENV_VAR] = FORK_SERVER[1]
        print(f"fork server: {FORK_SERVER[1]}", file=sys.stderr)


def stop_fork_server():
    if FORK_SERVER:
        forkserver.stop(*FORK_SERVER)
        os.environ.pop(forkserver.ENV_VAR, None)
        FORK_SERVER.clear()


onsuccess:
    stop_fork_server()


onerror:
    stop_fork_server()


# -- paths ------------------------------------------------------------------------------------

RUN = f"{R}/runs/{{dataset}}/{{subset}}/{{backbone}}/{{method}}/seed{{seed}}"


def run_key(wildcards):
    return RunKey(
        wildcards.dataset, wildcards.subset, wildcards.backbone, wildcards.method, int(wildcards.seed)
    )


def run_path(run, name):
    return f"{R}/{run.path}/{name}"


def reference_name(run, reference):
    """Which image set a reference metric compares with: the full dataset or the run's subset."""
    return "full" if reference == "full" else run.subset


def record_name(metric, reference, variant):
    """A metric record's file in its run folder: one per (metric, reference, protocol)."""
    return f"metrics/{metric}-{reference}{variant}.json"


def spec_json(data):
    return json.dumps(data, sort_keys=True)


# -- resources --------------------------------------------------------------------------------


def res(rule_class, key):
    """A resource of a rule class from the config (falling back to `default`, then built-ins)."""
    builtin = {"gpu": 0, "cpus": 1, "mem_mb": 4000, "runtime": 60, "runtime_growth": 1.5}
    resources = STUDY.config.get("resources", {})
    for section in (resources.get(rule_class, {}), resources.get("default", {}), builtin):
        if key in section:
            return section[key]


def runtime(rule_class):
    """Runtime in minutes, growing with each retry (a resumed training needs more wall time)."""
    return lambda wildcards, attempt: int(
        res(rule_class, "runtime") * res(rule_class, "runtime_growth") ** (attempt - 1)
    )


# -- targets ----------------------------------------------------------------------------------


def layout_spec(layout_id):
    """Everything the table/figure command needs, with each cell's input files."""
    layout = STUDY.layouts[layout_id]
    entry = layout.config
    labels = []
    if STUDY.config["scale"] == "demo":
        labels.append("DEMO: tiny networks, minutes of CPU training")
    datasets = {run.dataset for cell in layout.cells for run in cell.runs}
    if any(STUDY.dataset(d).get("format") == "procedural" for d in datasets):
        labels.append(PROCEDURAL_DATA)
    return {
        "id": layout_id,
        "kind": entry.get("kind", "pivot"),
        "title": entry["title"],
        "paper": entry["paper"],
        "metric": entry.get("metric"),
        "metrics": entry.get("metrics"),
        "samples": entry.get("samples"),
        "labels": labels,
        "sizes": {
            cell.column: size
            for cell in layout.cells
            for run in cell.runs[:1]
            if (size := STUDY.subset_size(run.dataset, run.subset))
        },
        "cells": [
            {
                "row": cell.row,
                "column": cell.column,
                "published_row": cell.published_row,
                "published_column": cell.published_column,
                "metric": cell.metric,
                "reference": cell.reference,
                "variant": cell.variant,
                "runs": [run.id for run in cell.runs],
                "pending": cell.pending,
                "files": [] if cell.pending else layout_files(layout, cell),
                **augmentation_inputs(layout, cell),
            }
            for cell in layout.cells
        ],
    }


def augmentation_inputs(layout, cell):
    """An augmentation grid's data, subset, score network and ScoreMix settings."""
    if layout.config.get("kind") not in FIGURES_WITHOUT_RUNS or cell.pending:
        return {}
    run = cell.runs[0]
    part = STUDY.scoremix_part(run.method)
    return {
        "data": f"{R}/data/{run.dataset}/prepared.zip",
        "subset": f"{R}/data/{run.dataset}/subsets/{run.subset}.json",
        "scorenet": scorenet_path(run.dataset, run.subset, part["scorenet"]),
        "scoremix": part,
    }


def layout_files(layout, cell):
    if layout.config.get("kind") in FIGURES_WITHOUT_RUNS:
        inputs = augmentation_inputs(layout, cell)
        return [inputs["data"], inputs["subset"], inputs["scorenet"]]
    if layout.section == "tables" or layout.config.get("kind") in METRIC_FIGURE_KINDS:
        return [run_path(run, record_name(cell.metric, cell.reference, cell.variant)) for run in cell.runs]
    if layout.config["kind"] in CURVE_FIGURE_KINDS:
        # run.json names the networks behind the curve's values (and their stand-in flags).
        return [run_path(run, name) for run in cell.runs for name in ("curve.csv", "run.json")]
    return [run_path(run, "samples.zip") for run in cell.runs[:1]]


PAPER_TITLES = {"scoremix": "ScoreMix", "remix": "ReMix", "mixdl": "MixDL"}


def report_category(wildcards):
    """The report groups tables and figures by paper, then by id."""
    paper = STUDY.layouts[wildcards.layout].config["paper"]
    return PAPER_TITLES.get(paper, paper)


def layout_inputs(wildcards):
    return sorted({f for cell in layout_spec(wildcards.layout)["cells"] for f in cell["files"]})


def active_layouts(section):
    """Every table (one whose cells are all pending still shows the paper's values and why
    ours are missing), and the figures with at least one cell this code version can draw."""
    return [
        layout.id
        for layout in STUDY.layouts_in(section)
        if section == "tables" or len(layout.pending_cells) < len(layout.cells)
    ]


def used_weights():
    """The feature networks this study's computable metrics run (weights and records)."""
    networks = {"inception"} | {
        network
        for _, metric, _, variant in STUDY.metric_records()
        if (network := record_network(metric, STUDY.record_evaluation(variant)))
    }
    if any(STUDY.probe_uses_lpips(run) for run, pending in STUDY.runs.items() if not pending):
        networks.add(DIVERSITY_NETWORK)
    if any(
        uses_vgg_loss(STUDY.config["backbones"][run.backbone])
        for run, pending in STUDY.runs.items()
        if not pending
    ):
        networks.add("vgg16")
    return sorted(f for n in networks for f in (network_weights(n), f"{network_weights(n)}.json"))


def all_targets():
    targets = [f"{R}/report/provenance.html", f"{R}/report/protocol.md"]
    for table in active_layouts("tables"):
        targets += [f"{R}/tables/{table}.{ext}" for ext in ("csv", "md", "tex", "ranking.csv")]
    for figure in active_layouts("figures"):
        targets += [f"{R}/figures/{figure}.png", f"{R}/figures/{figure}.pdf"]
    return targets


# -- input functions of the rules --------------------------------------------------------------


def dataset_input(wildcards):
    """The raw dataset: its path (a download rule makes it when it has a url), or nothing."""
    dataset = STUDY.dataset(wildcards.dataset)
    if dataset.get("format") == "procedural":
        return []
    if dataset.get("url") or Path(dataset["path"]).exists():
        return [dataset["path"]]
    return []  # missing: onstart stops a real run naming the path; a dry run goes on


def network_weights(network):
    """The provisioned weights file of a feature network."""
    return INCEPTION if network == "inception" else f"{WEIGHTS}/{network}.pth"


def extractor_weights(wildcards):
    return network_weights(EXTRACTORS[wildcards.extractor])


def reference_features(dataset, name, extractor):
    """Cached features of a dataset's reference set (`full` or a subset)."""
    return f"{R}/data/{dataset}/features/{extractor}/{name}.npz"


def metric_inputs(wildcards):
    """What a metric reads: cached features, the samples, the generator, or the run's records."""
    run = run_key(wildcards)
    metric = wildcards.metric
    if metric in RUN_METRICS:
        return cost_inputs(run)
    if metric in IMAGE_METRICS:  # LPIPS: AlexNet or VGG-16, as the record's protocol says
        settings = STUDY.record_evaluation(wildcards.variant)
        return {
            "samples_zip": run_path(run, "samples.zip"),
            "weights": network_weights(record_network(metric, settings)),
        }
    if metric in GENERATOR_METRICS:
        return {
            "network": run_path(run, "network.pt"),
            "weights": network_weights(GENERATOR_METRICS[metric]),
        }
    samples, reference = STUDY.feature_caches(run, metric, wildcards.reference, wildcards.variant)
    inputs = {"samples": run_path(run, f"features/{samples}.npz")}
    if reference is not None:
        name = reference_name(run, wildcards.reference)
        inputs["reference"] = reference_features(run.dataset, name, reference)
    return inputs


def cost_inputs(run):
    """A run's records its cost is read from: run.json, and its ScoreMix preparation's."""
    inputs = {"run_json": run_path(run, "run.json")}
    part = STUDY.scoremix_part(run.method)
    if part and part["mu"] != 0:
        inputs["scorenet_summary"] = scorenet_path(
            run.dataset, run.subset, part["scorenet"], "summary.json"
        )
    if part and part["mu"] not in (0, "growing"):
        inputs["augmented_record"] = augment_path(run, part, "augmented.json")
    return inputs


def metric_args(wildcards, input):
    """The metric command's input options, one per input file."""
    return " ".join(f"--{name.replace('_', '-')} {shlex.quote(str(input[name]))}" for name in input.keys())


def metric_spec(wildcards):
    """A record's settings: the study's evaluation with the protocol its path names (the
    variant), and for cost metrics the GPUs of the jobs whose time it reads."""
    run = run_key(wildcards)
    spec = STUDY.run_spec(run)
    gpus = {job: max(res(job, "gpu"), 1) for job in ("train", "scorenet", "augment")}
    return spec_json(
        {
            "metric": wildcards.metric,
            "reference": wildcards.reference,
            "variant": wildcards.variant,
            "run": run.id,
            "seed": run.seed,
            "scale": spec["scale"],
            "stand_in_data": spec["stand_in_data"],
            "evaluation": STUDY.record_evaluation(wildcards.variant),
            **({"gpus": gpus} if wildcards.metric in RUN_METRICS else {}),
        }
    )


def ppl_interval_spec(wildcards):
    """The spec of the first interval-uniformity record (its siblings share it)."""
    names = dict(wildcards.items())
    return metric_spec(SimpleNamespace(**names, metric=PPL_INTERVAL_METRICS[0], reference="none"))


def ppl_interval_siblings(wildcards, output):
    """``--out-siblings`` of the interval-uniformity job: the records after the first."""
    return " ".join(shlex.quote(f"{m}={output[m]}") for m in PPL_INTERVAL_METRICS[1:])


def published_values(wildcards):
    """A table's published values (a figure's: those of the table its ``published`` names)."""
    name = STUDY.layouts[wildcards.layout].config.get("published", wildcards.layout)
    path = Path(workflow.basedir) / "config" / "published" / f"{name}.csv"
    return str(path) if path.exists() else []


def published_option(wildcards, input):
    """The ``--published`` option of the table and figure commands, when there are values."""
    return f"--published {shlex.quote(input.published)}" if input.published else ""


def scorenet_path(dataset, subset, scorenet, name="scorenet.pt"):
    """A file of the score network trained on one subset (network, summary)."""
    return f"{R}/scorenets/{dataset}/{subset}/{scorenet}/{name}"


def augment_path(run, part, name):
    """A file of the ScoreMix augmented set a run's part uses (images, record)."""
    return f"{R}/augment/{run.dataset}/{run.subset}/{part['name']}/{name}"


def augment_scorenet(wildcards):
    part = STUDY.config["parts"][wildcards.part]
    return scorenet_path(wildcards.dataset, wildcards.subset, part["scorenet"])


def train_inputs(wildcards):
    run = run_key(wildcards)
    # what the periodic FID and the diversity probe compare with, under the backbone's resize
    features = training_features(STUDY.config["backbones"][run.backbone]["train"])
    inputs = {
        "data": f"{R}/data/{run.dataset}/prepared.zip",
        "subset": f"{R}/data/{run.dataset}/subsets/{run.subset}.json",
        "reference": reference_features(
            run.dataset, reference_name(run, STUDY.config["evaluation"]["reference"]), features
        ),
        "inception": INCEPTION,
    }
    part = STUDY.scoremix_part(run.method)
    if part and part["mu"] == "growing":
        inputs["scorenet"] = scorenet_path(run.dataset, run.subset, part["scorenet"])
    elif part and part["mu"] != 0:
        inputs["augmented"] = augment_path(run, part, "augmented.zip")
        # its record beside it: the augmented images' classes (class-conditional runs)
        inputs["augmented_record"] = augment_path(run, part, "augmented.json")
    if STUDY.probes_diversity(run):  # the cached features of the training subset
        inputs["subset_features"] = reference_features(run.dataset, run.subset, features)
    if STUDY.probe_uses_lpips(run):
        inputs["lpips_weights"] = network_weights(DIVERSITY_NETWORK)
    if uses_vgg_loss(STUDY.config["backbones"][run.backbone]):  # FastGAN's reconstruction
        inputs["vgg_weights"] = network_weights("vgg16")
    cdc = STUDY.cdc_part(run.method)
    if cdc and "source_run" in cdc:  # the source run trains first
        inputs["source_model"] = run_path(STUDY.source_run(run.method), "network.pt")
    elif cdc:
        inputs["source_model"] = STUDY.config["weights"]["pretrained"][cdc["source_model"]]
    return inputs


def sample_model(wildcards):
    """What a run samples from: its trained generator, or (score-based rows) its score network."""
    run = run_key(wildcards)
    backbone = STUDY.config["backbones"][run.backbone]
    if backbone["arch"] == "score_sampler":
        return scorenet_path(run.dataset, run.subset, backbone["scorenet"])
    return run_path(run, "network.pt")


def optional_train_args(wildcards, input):
    """--augmented / --scorenet when the run's method has a ScoreMix part; --subset-features
    and --lpips-weights when its training probes diversity; --vgg-weights when its loss uses
    LPIPS-VGG (FastGAN); --source-model when it adapts a source with CDC; --keep-networks
    when it is a CDC part's source run (its network.pt then also holds G and D)."""
    optional = (
        "augmented", "scorenet", "subset_features", "lpips_weights", "vgg_weights", "source_model"
    )
    names = [name for name in optional if name in input.keys()]
    args = [f"--{name.replace('_', '-')} {shlex.quote(getattr(input, name))}" for name in names]
    if run_key(wildcards) in STUDY.source_runs():
        args.append("--keep-networks")
    return " ".join(args)
