"""Metric records -> one table: a tidy CSV and a Markdown pivot with the published values.

The table spec (built by the Snakefile from the config) lists every cell with its runs
(one per seed) and whether it is pending. The Markdown shows mean ± std over seeds with
n, "—" with a footnote for pending or missing cells, the best value per column in bold,
and the paper's value beside ours when ``config/published/<id>.csv`` has it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mixgan import registry
from mixgan.io import atomic_open, read_json
from mixgan.provenance import code_version

MISSING = "—"


def load_records(paths: Sequence[Path]) -> dict[tuple[str, str, str], dict[str, Any]]:
    """Records keyed by (run, metric, reference)."""
    records = {}
    for path in paths:
        record = read_json(path)
        records[(record["run"], record["metric"], record["reference"])] = record
    return records


def tidy_table(
    spec: dict[str, Any], records: dict[tuple[str, str, str], dict[str, Any]]
) -> pd.DataFrame:
    """One row per (cell, run): the values behind the table, for further analysis."""
    rows = []
    for cell in spec["cells"]:
        for run in cell["runs"]:
            record = records.get((run, cell["metric"], cell["reference"]))
            status = "pending" if cell["pending"] else ("ok" if record else "missing")
            rows.append(
                {
                    "table": spec["id"],
                    "row": cell["row"],
                    "column": cell["column"],
                    "metric": cell["metric"],
                    "published_row": cell["published_row"],
                    "published_column": cell["published_column"],
                    "run": run,
                    "seed": int(run.rsplit("seed", 1)[1]),
                    "value": record["value"] if record else np.nan,
                    "reference": cell["reference"],
                    "num_samples": record["num_samples"] if record else np.nan,
                    "labels": "; ".join(record["labels"]) if record else "",
                    "status": status,
                    "note": cell["pending"] or "",
                }
            )
    return pd.DataFrame(rows)


def summarise(tidy: pd.DataFrame) -> pd.DataFrame:
    """Mean, std and n over seeds per (row, column, metric), keeping the config order."""
    grouped = tidy.groupby(["row", "column", "metric"], sort=False)
    summary = grouped["value"].agg(mean="mean", std="std", n="count").reset_index()
    for column in ("note", "published_row", "published_column"):
        summary[column] = grouped[column].first().to_numpy()
    summary["labels"] = (
        grouped["labels"].agg(lambda s: "; ".join(sorted({x for x in s if x}))).to_numpy()
    )
    return summary


def load_published(path: Path | None) -> pd.DataFrame | None:
    """Published values: columns row, column, metric, value (and source)."""
    if path is None or not Path(path).exists():
        return None
    published = pd.read_csv(path, comment="#")
    missing = {"row", "column", "metric", "value"} - set(published.columns)
    if missing:
        raise ValueError(f"{path}: missing column(s) {sorted(missing)}")
    return published


def markdown_table(
    spec: dict[str, Any], summary: pd.DataFrame, published: pd.DataFrame | None
) -> str:
    """The pivot as Markdown: rows x (column, metric), ours (and the paper's) per cell."""
    columns = list(dict.fromkeys(zip(summary["column"], summary["metric"], strict=True)))
    rows = list(dict.fromkeys(summary["row"]))
    lookup = {(r.row, r.column, r.metric): r for r in summary.itertuples()}
    paper = {}
    if published is not None:
        paper = {(p.row, p.column, p.metric): p.value for p in published.itertuples()}
    best = _best_per_column(summary, columns)
    notes: dict[str, int] = {}
    paper_shown = False

    header = ["", *(_header(column, metric, len(columns)) for column, metric in columns)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [row]
        for column, metric in columns:
            entry = lookup.get((row, column, metric))
            text = _format_cell(entry, metric, notes, best.get((column, metric)) == row)
            key = (
                (entry.published_row, entry.published_column, metric) if entry is not None else None
            )
            if key in paper:  # published values are stored as printed (KID already x 10^3)
                text += f" ({paper[key]:.2f})"
                paper_shown = True
            cells.append(text)
        lines.append("| " + " | ".join(cells) + " |")

    labels = sorted({label for text in summary["labels"] for label in text.split("; ") if label})
    out = [f"## {spec['id']}: {spec['title']}", ""]
    if labels:
        out += [f"**Stand-in / scale labels: {', '.join(labels)}.** " + _label_sentence(labels), ""]
    out += lines + [""]
    out.append(
        "Ours: mean ± std over seeds (n = number of seeds with a value); "
        + ("the paper's value in parentheses; " if paper_shown else "")
        + "best of each column in bold; "
        + ", ".join(
            f"{m} {'higher' if m in registry.HIGHER_IS_BETTER else 'lower'} is better"
            for m in dict.fromkeys(summary["metric"])
        )
        + "."
    )
    for note, number in notes.items():
        out.append(f"[{number}] {note}")
    out += ["", f"_Generated by mixgan {code_version()} from {len(summary)} cell(s)._"]
    return "\n".join(out) + "\n"


def _header(column: str, metric: str, count: int) -> str:
    name = registry.DISPLAY.get(metric, (1.0, metric.upper()))[1]
    arrow = "↑" if metric in registry.HIGHER_IS_BETTER else "↓"
    return f"{column} {name}{arrow}" if column != "col" else f"{name}{arrow}"


def _scaled(value: float, metric: str, digits: int) -> str:
    return f"{value * registry.DISPLAY.get(metric, (1.0, ''))[0]:.{digits}f}"


def _format_cell(entry: Any, metric: str, notes: dict[str, int], is_best: bool) -> str:
    if entry is None or entry.n == 0:
        reason = entry.note if entry is not None and entry.note else "no metric record yet"
        number = notes.setdefault(reason, len(notes) + 1)
        return f"{MISSING} [{number}]"
    digits = registry.DECIMALS.get(metric, 2)
    text = _scaled(entry.mean, metric, digits)
    if entry.n > 1:
        text += f" ± {_scaled(entry.std, metric, digits)}"
    text = f"**{text}**" if is_best else text
    return f"{text} (n={entry.n})" if entry.n > 1 else text


def _best_per_column(
    summary: pd.DataFrame, columns: list[tuple[str, str]]
) -> dict[tuple[str, str], str]:
    best = {}
    for column, metric in columns:
        values = summary[
            (summary["column"] == column) & (summary["metric"] == metric) & (summary["n"] > 0)
        ]
        if len(values) > 1:
            index = (
                values["mean"].idxmax()
                if metric in registry.HIGHER_IS_BETTER
                else values["mean"].idxmin()
            )
            best[(column, metric)] = values.loc[index, "row"]
    return best


def _label_sentence(labels: list[str]) -> str:
    parts = []
    if "demo scale" in labels:
        parts.append("tiny networks trained for minutes: not comparable with the paper's numbers")
    if "procedural demo data" in labels:
        parts.append("images are the workflow's own procedural shapes, not the paper's dataset")
    if "stand-in features" in labels:
        parts.append("features come from an untrained stand-in network, not the real one")
    return "; ".join(parts).capitalize() + "." if parts else ""


def write_table(
    spec: dict[str, Any],
    record_paths: Sequence[Path],
    published_path: Path | None,
    out_csv: Path,
    out_md: Path,
) -> None:
    tidy = tidy_table(spec, load_records(record_paths))
    with atomic_open(out_csv) as handle:
        tidy.to_csv(handle, index=False)
    markdown = markdown_table(spec, summarise(tidy), load_published(published_path))
    with atomic_open(out_md) as handle:
        handle.write(markdown)
