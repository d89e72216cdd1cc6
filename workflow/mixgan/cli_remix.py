"""The commands of ReMix Tables 2–3 (SPADE on Cityscapes, NIR → VIS faces) of ``mixgan``.

Registered into :mod:`mixgan.cli` when its parser is built; each is one rule of
``workflow/rules/remix_tasks.smk``: prepare a dataset, train one run, score a table's runs
(and its evaluation-only row), write the table.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mixgan.cli import SPEC, THREADS, _threads, arg, command, log, run_training

DATA = arg("--data", required=True, type=Path, help="the prepared dataset (.npz)")


@command(
    "remix-prepare",
    "read (or generate) a Cityscapes / CASIA NIR-VIS dataset into one .npz with its manifest",
    SPEC,
    arg("--out", required=True, type=Path),
    arg("--manifest", required=True, type=Path),
)
def cmd_remix_prepare(args: argparse.Namespace) -> None:
    from mixgan.data.remix_data import prepare_remix_data
    from mixgan.io import atomic_path, write_json
    from mixgan.provenance import provenance

    with atomic_path(args.out) as tmp:
        summary = prepare_remix_data(args.spec["name"], args.spec["dataset"], Path(tmp))
    write_json(args.manifest, {**summary, "spec": args.spec, "provenance": provenance()})
    log.info("prepared %s: %s", args.spec["name"], summary)


@command(
    "remix-train",
    "train (or resume) one SPADE or LightCNN-StyleGAN2 run of ReMix Tables 2-3",
    SPEC,
    DATA,
    arg("--run-dir", required=True, type=Path, help="the run folder (checkpoints in train/)"),
    arg("--generator", required=True, type=Path, help="output: the trained generator (.pt)"),
    arg("--run-json", required=True, type=Path, help="output: settings, provenance, summary"),
    THREADS,
)
def cmd_remix_train(args: argparse.Namespace) -> int:
    import torch

    from mixgan.data.remix_data import load_remix_data
    from mixgan.io import atomic_path, sha256_file, write_json
    from mixgan.metrics.inception import pick_device
    from mixgan.provenance import provenance
    from mixgan.train.remix_run import train_run

    _threads(args)
    device = pick_device(args.spec["device"])
    data = load_remix_data(args.data)
    code, result = run_training(lambda: train_run(args.spec, data, args.run_dir, device, log))
    if code:
        return code
    generator, summary = result
    with atomic_path(args.generator) as tmp:
        torch.save(generator, tmp)
    write_json(
        args.run_json,
        {
            "spec": args.spec,
            "device": str(device),
            "summary": summary,
            "inputs": {"data": str(args.data), "data_sha256": sha256_file(args.data)},
            "generator_sha256": sha256_file(args.generator),
            "provenance": provenance(),
        },
    )
    return 0


@command(
    "remix-eval",
    "score every run of ReMix Table 2 or 3 and its evaluation-only row (JSON)",
    SPEC,
    DATA,
    arg("--generators", nargs="*", default=[], type=Path, help="generator.pt of each run"),
    arg("--inception", type=Path, help="Inception weights (Table 3's FID)"),
    arg("--out", required=True, type=Path),
    THREADS,
)
def cmd_remix_eval(args: argparse.Namespace) -> None:
    from mixgan.data.remix_data import load_remix_data
    from mixgan.io import write_json
    from mixgan.metrics import record_labels
    from mixgan.metrics.inception import pick_device
    from mixgan.provenance import provenance
    from mixgan.remix_eval import evaluate_nirvis, evaluate_spade

    _threads(args)
    device = pick_device(args.spec["device"])
    data = load_remix_data(args.data)
    generators = dict(zip(args.spec["runs"], args.generators, strict=True))
    if args.spec["arch"] == "spade":
        results = evaluate_spade(args.spec, data, generators, args.inception, device)
    else:
        results = evaluate_nirvis(args.spec, data, generators, device)
    for values in results.values():  # the run's scale and data labels beside the networks'
        values["labels"] = sorted({*values["labels"], *record_labels(args.spec, {})})
    write_json(args.out, {"results": results, "spec": args.spec, "provenance": provenance()})
    for run, values in results.items():
        log.info("%s: %s", run, {k: v for k, v in values.items() if isinstance(v, float)})


@command(
    "remix-table",
    "write ReMix Table 2 or 3 (csv, md, tex, ranking) from remix-eval's results",
    SPEC,
    arg("--results", required=True, type=Path),
    arg("--published", type=Path),
    arg("--out-csv", required=True, type=Path),
    arg("--out-md", required=True, type=Path),
    arg("--out-tex", required=True, type=Path),
    arg("--out-ranking", required=True, type=Path),
)
def cmd_remix_table(args: argparse.Namespace) -> None:
    from mixgan.io import atomic_open, read_json
    from mixgan.remix_eval import table_records
    from mixgan.report import tables

    records = table_records(args.spec, read_json(args.results)["results"])
    published = tables.load_published(args.published)
    tidy = tables.tidy_table(args.spec, records, published)
    summary = tables.summarise(tidy)
    with atomic_open(args.out_csv) as handle:
        tidy.to_csv(handle, index=False)
    for path, render in ((args.out_md, tables.markdown_table), (args.out_tex, tables.latex_table)):
        with atomic_open(path) as handle:
            handle.write(render(args.spec, summary, published))
    with atomic_open(args.out_ranking) as handle:
        tables.ranking_agreement(args.spec, summary, published).to_csv(handle, index=False)
