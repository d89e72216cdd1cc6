"""The one-shot translation commands (ScoreMix Table 7, Figure 9) of ``mixgan``.

Registered into :mod:`mixgan.cli` when its parser is built; each is one rule of
``workflow/rules/oneshot.smk``: the source crops a task's score network trains on, one SinCUT
run of one task, its SIFID record, the vote page's tasks file, the table and the figure; and
the human evaluation's vote page, its export and the demo's simulated votes.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mixgan.cli import SPEC, THREADS, _threads, arg, command, log, run_training
from mixgan.errors import DataError

PAIRS = arg("--pairs", required=True, type=Path, help="pairs.zip of the prepared dataset")
TASK = arg("--task", required=True, help="the task id (a pair of the dataset)")
SIFID = arg("--sifid", nargs="+", required=True, type=Path, help="SIFID records of the tasks")


@command(
    "oneshot-crops",
    "the source-image patches a one-shot task's score network trains on (zip + manifest)",
    SPEC,
    PAIRS,
    TASK,
    arg("--out-zip", required=True, type=Path),
    arg("--out-json", required=True, type=Path, help="manifest in the subsets' format"),
)
def cmd_oneshot_crops(args: argparse.Namespace) -> None:
    from mixgan.data.imagezip import write_image_zip
    from mixgan.data.pairs import read_pair
    from mixgan.io import write_json
    from mixgan.provenance import provenance
    from mixgan.train.oneshot import sincut_options, source_crops

    options = sincut_options(args.spec["backbone"].get("options", {}))
    crops = source_crops(read_pair(args.pairs, args.task)[0], options, args.spec["seed"])
    names = write_image_zip(args.out_zip, crops)
    images = [{"name": name, "label": None} for name in names]
    write_json(args.out_json, {
        "task": args.task, "count": len(images), "images": images, "spec": args.spec,
        "provenance": provenance(),
    })  # fmt: skip
    log.info("%d crops of the source of task %s", len(images), args.task)


@command(
    "oneshot-train",
    "train (or resume) one SinCUT run of one one-shot task and translate its source",
    SPEC,
    PAIRS,
    TASK,
    arg("--augmented", type=Path, help="the task's ScoreMix patches, when the method has them"),
    arg("--run-dir", required=True, type=Path, help="the task's folder (checkpoints in train/)"),
    arg("--image", required=True, type=Path, help="output: the translated source (PNG)"),
    arg("--run-json", required=True, type=Path, help="output: settings, provenance, summary"),
    THREADS,
)
def cmd_oneshot_train(args: argparse.Namespace) -> int:
    from mixgan.data.imagezip import encode_png, read_image_zip
    from mixgan.data.pairs import read_pair
    from mixgan.io import atomic_open, sha256_file, write_json
    from mixgan.metrics.inception import pick_device
    from mixgan.provenance import provenance
    from mixgan.train.oneshot import train_oneshot

    _threads(args)
    source, target = read_pair(args.pairs, args.task)
    pool = read_image_zip(args.augmented) if args.augmented else None
    device = pick_device(args.spec["device"])
    code, result = run_training(
        lambda: train_oneshot(args.spec, source, target, args.run_dir, pool, device, log)
    )
    if code:
        return code
    image, summary = result
    with atomic_open(args.image, "wb") as handle:
        handle.write(encode_png(image))
    inputs = {"pairs": str(args.pairs), "pairs_sha256": sha256_file(args.pairs)}
    if args.augmented:
        inputs["augmented"] = str(args.augmented)
        inputs["augmented_sha256"] = sha256_file(args.augmented)
    write_json(args.run_json, {
        "spec": args.spec, "task": args.task, "device": str(device), "inputs": inputs,
        "summary": summary, "provenance": provenance(),
    })  # fmt: skip
    return 0


@command(
    "oneshot-sifid",
    "the SIFID record of one translated task: translation against the target image",
    SPEC,
    PAIRS,
    TASK,
    arg("--image", required=True, type=Path, help="the translated source"),
    arg("--inception", required=True, type=Path, help="the provisioned Inception weights"),
    arg("--out", required=True, type=Path),
    THREADS,
)
def cmd_oneshot_sifid(args: argparse.Namespace) -> None:
    from mixgan.data.imagezip import decode_image
    from mixgan.data.pairs import read_pair
    from mixgan.io import write_json
    from mixgan.metrics.inception import InceptionFeatures
    from mixgan.metrics.sifid import image_sifid
    from mixgan.provenance import provenance

    _threads(args)
    extractor = InceptionFeatures(args.inception, args.spec["device"])
    target = read_pair(args.pairs, args.task)[1]
    value = image_sifid(extractor.model.base.layers, target, decode_image(args.image.read_bytes()))
    write_json(args.out, {
        "metric": "sifid", "value": value, "task": args.task, "run": args.spec["run"],
        "method": args.spec["result"], "seed": args.spec["seed"], "image": str(args.image),
        "reference": "target image", "layer": "conv_4 (Conv2d_4a_3x3, 192 channels)",
        "feature_network": extractor.record, "stand_in_data": args.spec["stand_in_data"],
        "scale": args.spec["scale"], "provenance": provenance(),
    })  # fmt: skip
    log.info("SIFID of task %s (%s): %.4f", args.task, args.spec["result"], value)


@command(
    "oneshot-vote-tasks",
    "write the vote page's tasks file (source, target, both results) of the one-shot runs",
    PAIRS,
    SIFID,
    arg("--out", required=True, type=Path),
)
def cmd_oneshot_vote_tasks(args: argparse.Namespace) -> None:
    from mixgan.report.oneshot import write_vote_tasks

    log.info("%d tasks in %s", write_vote_tasks(args.pairs, args.sifid, args.out), args.out)


@command(
    "oneshot-table",
    "ScoreMix Table 7: SIFID winner x human winner of the one-shot tasks (csv, md, tex)",
    SPEC,
    SIFID,
    arg("--votes", type=Path, help="exported votes (mixgan vote-export); none: SIFID only"),
    arg("--published", type=Path, help="config/published/scoremix_table7.csv"),
    arg("--out-csv", required=True, type=Path),
    arg("--out-md", required=True, type=Path),
    arg("--out-tex", required=True, type=Path),
    arg("--out-ranking", required=True, type=Path),
)
def cmd_oneshot_table(args: argparse.Namespace) -> None:
    from mixgan.report.oneshot import write_table7

    write_table7(
        args.spec, args.sifid, args.votes, args.published, args.out_csv, args.out_md,
        args.out_tex, args.out_ranking,
    )  # fmt: skip


@command(
    "oneshot-figure",
    "ScoreMix Figure 9: source, target and both translations of each task with their SIFID",
    SPEC,
    PAIRS,
    SIFID,
    arg("--out-png", required=True, type=Path),
    arg("--out-pdf", required=True, type=Path),
)
def cmd_oneshot_figure(args: argparse.Namespace) -> None:
    from mixgan.report.oneshot import draw_fig9

    draw_fig9(args.spec, args.pairs, args.sifid, args.out_png, args.out_pdf)


# -- human evaluation (ScoreMix Table 7) -----------------------------------------------------


@command(
    "vote",
    "serve the blind two-way comparison page of the human evaluation (votes into SQLite)",
    arg("--tasks", required=True, type=Path, help="TASKS.json: source, target, two results"),
    arg("--db", required=True, type=Path, help="SQLite database of the votes (created)"),
    arg("--port", type=int, default=8765),
    arg("--host", default="127.0.0.1", help="0.0.0.0 to accept raters from other machines"),
    arg("--seed", type=int, default=0, help="study seed: with the rater id, seeds each plan"),
)
def cmd_vote(args: argparse.Namespace) -> None:
    from mixgan.vote import serve
    from mixgan.votes import load_tasks

    serve(load_tasks(args.tasks), args.db, args.host, args.port, args.seed)


@command(
    "vote-export",
    "write the votes of a vote database as CSV (one row per vote, with a simulated column)",
    arg("--db", required=True, type=Path),
    arg("--out", required=True, type=Path),
)
def cmd_vote_export(args: argparse.Namespace) -> None:
    from mixgan.votes import export_csv

    if not args.db.is_file():
        raise DataError(f"{args.db}: no such vote database")
    log.info("wrote %d votes to %s", export_csv(args.db, args.out), args.out)


@command(
    "vote-simulate",
    "seeded demo votes of simulated raters (marked simulated) through the vote storage",
    arg("--tasks", required=True, type=Path),
    arg("--db", required=True, type=Path),
    arg("--raters", type=int, default=5),
    arg("--seed", type=int, default=0),
    arg("--prefer", help="the method simulated raters lean to (default: second sorted name)"),
)
def cmd_vote_simulate(args: argparse.Namespace) -> None:
    from mixgan.votes import load_tasks, simulate_votes

    count = simulate_votes(args.db, load_tasks(args.tasks), args.raters, args.seed, args.prefer)
    log.info("wrote %d simulated votes of %d raters to %s", count, args.raters, args.db)
