"""Figures of the study (PNG + PDF): training and diversity curves, size curves, image grids.

The figure spec lists its cells with the files each needs (``curve.csv`` with ``run.json``,
``samples.zip`` or the metric records of the cell's runs); pending cells are drawn as labelled
gaps.
Every figure uses seaborn's colour-blind palette and no text smaller than ``MIN_FONT_PT``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from mixgan.data.imagezip import image_names, read_image_zip  # noqa: E402
from mixgan.io import atomic_path, read_json  # noqa: E402
from mixgan.registry import (  # noqa: E402
    HIGHER_IS_BETTER,
    STAND_IN_FEATURES,
    display_name,
    display_scale,
)

PALETTE = "colorblind"
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
MIN_FONT_PT = 8.0


def _style() -> None:
    """Seaborn's whitegrid theme, colour-blind palette, no font below ``MIN_FONT_PT``."""
    sizes = {"axes.labelsize": 10, "axes.titlesize": 10, "xtick.labelsize": 9}
    sizes |= {"ytick.labelsize": 9, "legend.fontsize": 8, "legend.title_fontsize": 8}
    sns.set_theme(style="whitegrid", palette=PALETTE, rc={"font.size": 10, **sizes})


def _metric_label(metric: str) -> str:
    """Axis label of a metric: its name as tables print it (KID x 10^3), unit and direction."""
    name = display_name(metric)
    unit = "hours" if metric.startswith("gpu_hours") else "unitless"
    better = "higher" if metric in HIGHER_IS_BETTER else "lower"
    return f"{name} ({unit}; {better} is better)"


def _title(spec: dict[str, Any]) -> str:
    title = f"{spec['id']}: {spec['title']}"
    if spec.get("labels"):
        title += f"\n[{', '.join(spec['labels'])}]"
    return title


def training_curves(spec: dict[str, Any]) -> plt.Figure:
    """FID (or another curve column) against kimg, one line per cell and seed; best marked."""
    metric = spec.get("metric") or "fid"
    _style()
    figure, axis = plt.subplots(figsize=(7, 4.5))
    colours = sns.color_palette(PALETTE, max(len(spec["cells"]), 1))
    for colour, cell in zip(colours, spec["cells"], strict=True):
        label = _cell_label(cell)
        if cell["pending"]:
            axis.plot([], [], color=colour, linestyle=":", label=f"{label} (pending)")
            continue
        for index, path in enumerate(_curve_files(cell)):
            line_label = label if index == 0 else None
            points = _plot_curve(axis, pd.read_csv(path), metric, colour, line_label)
            if len(points):
                best = points.loc[points[metric].idxmin()]
                axis.scatter([best["kimg"]], [best[metric]], s=90, marker="*", color=colour,
                             edgecolor="black", zorder=5)  # fmt: skip
    axis.set_xlabel("training progress (kimg: thousands of real images shown to D)")
    axis.set_ylabel(_metric_label(metric))
    axis.set_title(_title(spec))
    axis.legend(title="★ = best snapshot (kept by early stopping)")
    figure.tight_layout()
    return figure


def _curve_files(cell: dict[str, Any]) -> list[str]:
    return [path for path in cell["files"] if Path(path).name == "curve.csv"]


def _plot_curve(
    axis: plt.Axes, curve: pd.DataFrame, metric: str, colour: Any, label: str | None
) -> pd.DataFrame:
    """Draw ``metric`` of a training curve against kimg (its rows that have it; none when
    the curve has no such column); ``label`` names the line in the legend (``None``: no entry).
    Returns the drawn rows."""
    points = (
        curve.dropna(subset=[metric]) if metric in curve else pd.DataFrame({"kimg": [], metric: []})
    )
    axis.plot(points["kimg"], points[metric], marker="o", markersize=3, color=colour,
              label=label)  # fmt: skip
    return points


def _cell_label(cell: dict[str, Any]) -> str:
    return cell["row"] if cell["column"] == "col" else f"{cell['row']} / {cell['column']}"


def diversity_curves(spec: dict[str, Any]) -> plt.Figure:
    """MixDL's Fig. 8 from the runs' diversity probes: the samples' mean pairwise LPIPS (left)
    and the number of distinct nearest training images (right) against kimg, one line per
    cell and seed; the right panel marks its ceiling, the fewer of the probe's samples and the
    training images. Runs trained without AlexNet weights have no LPIPS probe: the left panel
    then says so."""
    metrics = ("lpips", "distinct_neighbours")
    _style()
    figure, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    colours = sns.color_palette(PALETTE, max(len(spec["cells"]), 1))
    stand_in, ceilings = False, set()
    for colour, cell in zip(colours, spec["cells"], strict=True):
        label = _cell_label(cell)
        if cell["pending"]:
            for axis in axes:
                axis.plot([], [], color=colour, linestyle=":", label=f"{label} (pending)")
            continue
        for path in cell["files"]:
            if Path(path).name == "run.json":
                record = read_json(path)
                summary, train = record["summary"], record["spec"]["backbone"]["train"]
                networks = (summary.get("diversity_networks") or {}).values()
                stand_in |= any(network.get("stand_in") for network in networks)
                ceilings.add((train["diversity_samples"], summary["num_real"]))
        for index, path in enumerate(_curve_files(cell)):
            curve = pd.read_csv(path)
            for axis, metric in zip(axes, metrics, strict=True):
                _plot_curve(axis, curve, metric, colour, label if index == 0 else None)
    grey = sns.color_palette(PALETTE)[7]
    for samples, images in sorted(ceilings):
        axes[1].axhline(min(samples, images), color=grey, linestyle="--", linewidth=1)
        axes[1].annotate(f"ceiling: {samples} samples, {images} training images",
                         (0.99, min(samples, images)), xycoords=("axes fraction", "data"),
                         ha="right", va="bottom", fontsize=MIN_FONT_PT, color=grey)  # fmt: skip
    for axis in axes:
        axis.set_xlabel("training progress (kimg)")
        axis.legend()
    axes[0].set_ylabel(_metric_label("lpips"))
    axes[1].set_ylabel("count (higher is better)")
    drawn = [c for c in spec["cells"] if not c["pending"]]
    if drawn and not any(len(line.get_xdata()) for line in axes[0].get_lines()):
        axes[0].text(0.5, 0.5, "no LPIPS probe: the runs were trained without AlexNet\n"
                     "weights (set weights.alexnet, then retrain)", ha="center",
                     va="center", fontsize=MIN_FONT_PT, transform=axes[0].transAxes)  # fmt: skip
    axes[0].set_title("mean pairwise LPIPS of the samples")
    axes[1].set_title("distinct nearest training images (Inception features)")
    axes[1].set_ylim(bottom=0, top=max((min(c) for c in ceilings), default=1) * 1.15)
    labels = [*(spec.get("labels") or []), *([STAND_IN_FEATURES] if stand_in else [])]
    figure.suptitle(_title({**spec, "labels": labels}), fontsize=10)
    figure.tight_layout()
    return figure


def sample_grid(spec: dict[str, Any]) -> plt.Figure:
    """Rows x columns of panels, each ``samples`` images of the cell's first seed."""
    rows = list(dict.fromkeys(c["row"] for c in spec["cells"]))
    columns = list(dict.fromkeys(c["column"] for c in spec["cells"]))
    count = spec.get("samples") or 8
    _style()
    figure, axes = plt.subplots(
        len(rows), len(columns), figsize=(1.1 * count * len(columns) + 1.5, 1.3 * len(rows) + 1.2),
        squeeze=False,
    )  # fmt: skip
    for cell in spec["cells"]:
        axis = axes[rows.index(cell["row"]), columns.index(cell["column"])]
        axis.set_xticks([])
        axis.set_yticks([])
        if cell["pending"]:
            text = "pending:\n" + cell["pending"]
            axis.text(0.5, 0.5, text, ha="center", va="center", fontsize=MIN_FONT_PT,
                      wrap=True, transform=axis.transAxes)  # fmt: skip
        else:
            path = cell["files"][0]
            images = read_image_zip(path, image_names(path)[:count])
            axis.imshow(np.concatenate(list(images), axis=1))
        if columns.index(cell["column"]) == 0:
            axis.set_ylabel(cell["row"], rotation=0, ha="right", va="center", fontsize=9)
        if rows.index(cell["row"]) == 0 and cell["column"] != "col":
            axis.set_title(cell["column"], fontsize=9)
    figure.suptitle(_title(spec), fontsize=10)
    figure.tight_layout()
    return figure


def augmentation_grid(spec: dict[str, Any]) -> plt.Figure:
    """For the same pairs: x1, x2, mixup, CutMix, AugMix and ScoreMix (the paper's Figure 3).

    Pairs and weights come from a fixed seed. lambda ~ Beta(alpha, alpha) as in ScoreMix, but
    kept to [0.3, 0.7] for the figure (Beta(0.2, 0.2) mostly draws near 0 or 1, where every
    method nearly copies one image); each row is labelled with its lambda.
    """
    import torch

    from mixgan.augment.mixing import mixers
    from mixgan.augment.scoremix import ScoreMixer, draw_pairs
    from mixgan.io import read_json
    from mixgan.scores import sample_lambdas
    from mixgan.train.scorenet import load_score_net

    cells = [c for c in spec["cells"] if not c["pending"]]
    if not cells:
        raise ValueError(f"{spec['id']}: every cell is pending")
    cell = cells[0]
    names = [image["name"] for image in read_json(cell["subset"])["images"]]
    pixels = torch.from_numpy(read_image_zip(cell["data"], names)).permute(0, 3, 1, 2).float() / 255
    count = spec.get("samples") or 4
    _style()
    generator = torch.Generator().manual_seed(0)
    lam = sample_lambdas(1000, cell["scoremix"]["alpha"], generator=generator)
    lam = lam[(lam >= 0.3) & (lam <= 0.7)][:count]
    pairs = draw_pairs(len(pixels), count, generator)
    x1, x2 = pixels[pairs[:, 0]], pixels[pairs[:, 1]]
    baselines = mixers()
    mixers_by_label = {
        "mixup": baselines["mixup"],
        "CutMix": baselines["cutmix"],
        "AugMix": baselines["augmix"],
        "ScoreMix": ScoreMixer.from_part(load_score_net(cell["scorenet"]), cell["scoremix"]),
    }
    columns = {"x1": x1, "x2": x2}
    columns.update({name: mix(x1, x2, lam, generator) for name, mix in mixers_by_label.items()})
    figure, axes = plt.subplots(
        count, len(columns), figsize=(1.6 * len(columns), 1.6 * count + 0.8), squeeze=False
    )
    for col, (name, images) in enumerate(columns.items()):
        for row in range(count):
            axis = axes[row, col]
            axis.imshow(images[row].permute(1, 2, 0).clamp(0, 1).numpy())
            axis.set_xticks([])
            axis.set_yticks([])
            if row == 0:
                axis.set_title(name, fontsize=10)
            if col == 0:
                axis.set_ylabel(f"λ = {float(lam[row]):.2f}", fontsize=9)
    figure.suptitle(_title(spec), fontsize=10)
    figure.tight_layout()
    return figure


def training_set_sizes(spec: dict[str, Any]) -> dict[str, float]:
    """Column label -> number of training images: ``spec["sizes"]``, else the label itself.

    Labels are read only as counts ("50", "2k", "70k", "1.5M"); a fraction ("10%") needs
    ``sizes`` in the spec.
    """
    sizes = dict(spec.get("sizes") or {})
    for column in dict.fromkeys(cell["column"] for cell in spec["cells"]):
        if column in sizes:
            continue
        text = column.strip().lower()
        factor = {"k": 1e3, "m": 1e6}.get(text[-1:], 1.0)
        try:
            sizes[column] = float(text[:-1] if factor != 1.0 else text) * factor
        except ValueError:
            raise ValueError(
                f"{spec['id']}: column '{column}' is not a number of images; "
                "give the figure spec 'sizes': {column label: number of images}"
            ) from None
    return sizes


def size_curve(spec: dict[str, Any], published: pd.DataFrame | None = None) -> plt.Figure:
    """Metrics against the training-set size (log x): one panel per metric (``metrics``, else
    ``metric``), one line per row, mean ± std over seeds; with ``published`` (a table's
    values as the paper printed them), a panel beside each draws the paper's curve of each
    row at the paper's sizes, in the same colour.

    The cells are those of a table (their ``files`` the runs' metric records); each column
    label names a subset whose size comes from ``spec["sizes"]``. The title carries the
    spec's labels and those of the records (e.g. "stand-in features").
    """
    from mixgan.report.tables import load_records, summarise, tidy_table

    metrics = spec.get("metrics") or [spec.get("metric") or "fid"]
    records = load_records([path for cell in spec["cells"] for path in cell["files"]])
    summary = summarise(tidy_table(spec, records))
    sizes = training_set_sizes(spec)
    summary["size"] = summary["column"].map(sizes)
    rows = list(dict.fromkeys(cell["row"] for cell in spec["cells"]))
    paper = {m: _paper_curves(spec["id"], spec["cells"], m, published) for m in metrics}
    columns = 2 if any(paper.values()) else 1
    _style()
    figure, axes = plt.subplots(
        len(metrics), columns, figsize=(6 * columns if columns > 1 else 7, 4.5 * len(metrics)),
        squeeze=False,
    )  # fmt: skip
    colours = dict(zip(rows, sns.color_palette(PALETTE, max(len(rows), 1)), strict=True))
    markers = {row: MARKERS[index % len(MARKERS)] for index, row in enumerate(rows)}
    pending = {cell["row"] for cell in spec["cells"] if cell["pending"]}
    seeds = int(summary["n"].max()) if len(summary) else 0
    for axis, metric in zip(axes[:, 0], metrics, strict=True):
        scale = display_scale(metric)
        for row in rows:
            points = summary[
                (summary["row"] == row) & (summary["metric"] == metric) & (summary["n"] > 0)
            ].sort_values("size")
            if points.empty:
                state = "pending" if row in pending else "no values yet"
                axis.plot([], [], color=colours[row], linestyle=":", label=f"{row} ({state})")
                continue
            axis.errorbar(points["size"], points["mean"] * scale,
                          yerr=points["std"].fillna(0.0) * scale, color=colours[row],
                          marker=markers[row], capsize=4, label=row)  # fmt: skip
        _size_axis(axis, sorted(set(sizes.values())), metric)
        axis.legend(title=f"ours: mean ± std over seeds (up to n = {seeds})")
    recorded = [label for text in summary["labels"] for label in text.split("; ") if label]
    labels = list(dict.fromkeys([*(spec.get("labels") or []), *recorded]))
    axes[0, 0].set_title(_title({**spec, "labels": labels}))
    for axis, metric in zip(axes[:, -1] if columns > 1 else [], metrics, strict=False):
        for row, points in paper[metric].items():
            sizes_paper, values_paper = zip(*points, strict=True)
            axis.plot(sizes_paper, values_paper, color=colours[row], marker=markers[row],
                      linestyle="--", label=row)  # fmt: skip
        ticks = sorted({size for points in paper[metric].values() for size, _ in points})
        _size_axis(axis, ticks, metric)
        if paper[metric]:
            axis.set_title(f"published ({spec.get('paper', 'the paper')}; values as printed)")
            axis.legend()
        else:
            axis.set_title(f"no published {display_name(metric)}")
    figure.tight_layout()
    return figure


def _size_axis(axis: plt.Axes, ticks: list[float], metric: str) -> None:
    axis.set_xscale("log")
    if ticks:  # the same range whether or not the panel has points
        axis.set_xlim(ticks[0] / 1.3, ticks[-1] * 1.3)
    axis.set_xticks(ticks, [f"{size:,.0f}" for size in ticks])
    axis.minorticks_off()
    axis.set_xlabel("training-set size (number of real images, log scale)")
    axis.set_ylabel(_metric_label(metric))


def _paper_curves(
    figure_id: str,
    cells: list[dict[str, Any]],
    metric: str,
    published: pd.DataFrame | None,
) -> dict[str, list[tuple[float, float]]]:
    """Row of ``cells`` -> the paper's (size, value) points of ``metric``, sorted by size,
    for the rows it has, in the cells' row order."""
    if published is None:
        return {}
    published_row = {cell["row"]: cell.get("published_row", cell["row"]) for cell in cells}
    values = published[published["metric"] == metric]
    sizes = training_set_sizes({"id": figure_id, "cells": values[["column"]].to_dict("records")})
    curves = {}
    for row, paper_row in published_row.items():
        of_row = values[values["row"] == paper_row]
        if len(of_row):
            points = zip(of_row["column"].map(sizes), of_row["value"].astype(float), strict=True)
            curves[row] = sorted(points)
    return curves


DRAWERS = {
    "training_curve": training_curves,
    "diversity_curve": diversity_curves,
    "size_curve": size_curve,
    "sample_grid": sample_grid,
    "augmentation_grid": augmentation_grid,
}


def draw_figure(
    spec: dict[str, Any],
    inputs: Sequence[Path],
    out_png: Path,
    out_pdf: Path,
    published_path: Path | None = None,
) -> None:
    """Draw the figure of ``spec["kind"]`` and write it as PNG and PDF; a size curve draws the
    values of ``published_path`` (a ``config/published`` table) beside ours."""
    if spec["kind"] == "size_curve":
        from mixgan.report.tables import load_published

        figure = size_curve(spec, load_published(published_path))
    else:
        figure = DRAWERS[spec["kind"]](spec)
    for path, fmt in ((out_png, "png"), (out_pdf, "pdf")):
        with atomic_path(path) as tmp:
            figure.savefig(tmp, format=fmt, dpi=150)
    plt.close(figure)
