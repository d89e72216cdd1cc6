"""The StarGAN v2 translation commands (ScoreMix Tables 5–6, Figures 7–8; ReMix Table 1).

Registered into :mod:`mixgan.cli` when its parser is built; each is one rule of
``workflow/rules/translation.smk`` (training is ``mixgan train``): a run's metric records by
the official protocol, and the sample grid of a figure.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mixgan.cli import SPEC, THREADS, _threads, arg, command, log


@command(
    "i2i-eval",
    "latent- and reference-guided FID and LPIPS of a StarGAN v2 run (the official protocol)",
    SPEC,
    arg("--network", required=True, type=Path, help="the run's network.pt"),
    arg("--data", required=True, type=Path, help="the prepared dataset (zip, json beside it)"),
    arg("--inception", required=True, type=Path),
    arg("--reference", required=True, type=Path, help="Inception features of the dataset"),
    arg("--reference-subset", required=True, type=Path, help="their manifest (domains)"),
    arg("--lpips-weights", type=Path, help="AlexNet weights (or its stand-in), for LPIPS"),
    arg("--out", required=True, nargs="+", help="records to write, as METRIC=PATH (fid_latent, "
        "fid_reference, and with --lpips-weights lpips_latent, lpips_reference)"),
    THREADS,
)  # fmt: skip
def cmd_i2i_eval(args: argparse.Namespace) -> None:
    from mixgan.i2i_eval import evaluate_run

    _threads(args)
    outputs = {name: Path(path) for name, path in (item.split("=", 1) for item in args.out)}
    values = evaluate_run(
        args.spec, args.network, args.data, args.inception,
        (args.reference, args.reference_subset), args.lpips_weights, outputs,
    )  # fmt: skip
    log.info("%s: %s", args.spec["run"], json.dumps(values))


@command(
    "i2i-grid",
    "the translation sample grid of a figure: sources x references per method",
    SPEC,
    arg("--networks", required=True, nargs="+", type=Path, help="network.pt per row"),
    arg("--data", required=True, type=Path),
    arg("--out-png", required=True, type=Path),
    arg("--out-pdf", required=True, type=Path),
    THREADS,
)
def cmd_i2i_grid(args: argparse.Namespace) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mixgan.i2i_eval import sample_grid
    from mixgan.io import atomic_path

    _threads(args)
    spec = args.spec
    networks = dict(zip(spec["rows"], args.networks, strict=True))
    labels, mosaics = sample_grid(networks, args.data, spec["sources"], 0, spec["device"])
    figure, axes = plt.subplots(1, len(mosaics), figsize=(3 * len(mosaics), 3.6), squeeze=False)
    for axis, label, mosaic in zip(axes[0], labels, mosaics, strict=True):
        axis.imshow(mosaic)
        axis.set_title(label, fontsize=9)
        axis.axis("off")
    title = spec["title"] + "".join(f"\n[{label}]" for label in spec["labels"])
    figure.suptitle(title + "\nrows: sources; columns: one reference per domain", fontsize=9)
    figure.tight_layout()
    for path in (args.out_png, args.out_pdf):
        with atomic_path(path) as tmp:
            figure.savefig(tmp, format=path.suffix[1:], dpi=150)
    log.info("wrote %s (%d methods)", args.out_png, len(mosaics))
