"""Metric records -> one table: a tidy CSV, Markdown and LaTeX pivots, the paper's values beside.

The table spec (built by the Snakefile from the config) lists every cell with its runs
(one per seed) and whether it is pending. The pivots show mean ± std over seeds with n,
"—" with a footnote for pending or missing cells, the best value per column in bold, and
the paper's value beside ours when ``config/published/<id>.csv`` has it. Where the paper
has values for at least two rows of a column that we have too, Kendall's tau between our
means and the paper's values says whether the methods rank alike (``<id>.ranking.csv``).
"""

from __future__ import annotations

import unicodedata
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import kendalltau

from mixgan import registry
from mixgan.io import atomic_open, read_json
from mixgan.provenance import code_version

MISSING = "—"
STAND_IN_MARK = "†"
RANKING_COLUMNS = [
    "table",
    "column",
    "metric",
    "published_column",
    "n_rows",
    "kendall_tau",
    "p_value",
    "best_ours",
    "best_paper",
    "best_agrees",
    "rows",
    "labels",
]


def load_records(paths: Sequence[Path]) -> dict[tuple[str, ...], dict[str, Any]]:
    """Records keyed by (run, metric, reference, protocol variant)."""
    records = {}
    for path in paths:
        record = read_json(path)
        key = (record["run"], record["metric"], record["reference"], record.get("variant", ""))
        records[key] = record
    return records


def tidy_table(
    spec: dict[str, Any],
    records: dict[tuple[str, ...], dict[str, Any]],
    published: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """One row per (cell, run): the values behind the table, for further analysis.

    ``published`` and ``difference`` (ours − the paper's) are in the unit of ``value`` (the
    paper prints KID x 10^3; here it is divided back), NaN where the paper has no value;
    ``evaluation`` is the record's protocol (resize convention, sFID layer, sample count).
    """
    paper = _paper_values(published)
    rows = []
    for cell in spec["cells"]:
        key = (cell["published_row"], cell["published_column"], cell["metric"])
        paper_value = paper.get(key, np.nan) / registry.display_scale(cell["metric"])
        for run in cell["runs"]:
            variant = cell.get("variant", "")
            record = records.get((run, cell["metric"], cell["reference"], variant))
            status = "pending" if cell["pending"] else ("ok" if record else "missing")
            value = record["value"] if record else np.nan
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
                    "value": value,
                    "published": paper_value,
                    "difference": value - paper_value,
                    "reference": cell["reference"],
                    "evaluation": variant.lstrip("-"),
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
    published = pd.read_csv(path, comment="#", dtype=str)  # values keep their printed digits
    missing = {"row", "column", "metric", "value"} - set(published.columns)
    if missing:
        raise ValueError(f"{path}: missing column(s) {sorted(missing)}")
    return published


def ranking_agreement(
    spec: dict[str, Any], summary: pd.DataFrame, published: pd.DataFrame | None
) -> pd.DataFrame:
    """Per (column, metric): Kendall's tau between our means and the paper's values.

    Only rows with both a value of ours and a published value count; a (column, metric)
    with fewer than two such rows is left out. ``best_*`` name the best row of each side
    among those rows (by the metric's direction).
    """
    paper = _paper_values(published)
    results = []
    for (column, metric), group in summary.groupby(["column", "metric"], sort=False):
        pairs = [
            (entry.row, entry.mean, paper[key], entry.published_column, entry.labels)
            for entry in group.itertuples()
            if entry.n > 0
            and (key := (entry.published_row, entry.published_column, metric)) in paper
        ]
        if len(pairs) < 2:
            continue
        rows, ours, theirs, published_columns, labels = zip(*pairs, strict=True)
        with warnings.catch_warnings():  # constant input: tau is NaN, said so in the output
            warnings.simplefilter("ignore")
            tau, p_value = kendalltau(ours, theirs)
        pick = np.argmax if metric in registry.HIGHER_IS_BETTER else np.argmin
        best_ours, best_paper = rows[pick(ours)], rows[pick(theirs)]
        results.append(
            {
                "table": spec["id"],
                "column": column,
                "metric": metric,
                "published_column": "; ".join(dict.fromkeys(published_columns)),
                "n_rows": len(rows),
                "kendall_tau": float(tau),
                "p_value": float(p_value),
                "best_ours": best_ours,
                "best_paper": best_paper,
                "best_agrees": best_ours == best_paper,
                "rows": "; ".join(rows),
                "labels": "; ".join(sorted({x for text in labels for x in text.split("; ") if x})),
            }
        )
    return pd.DataFrame(results, columns=RANKING_COLUMNS)


# -- the pivot, shared by the Markdown and LaTeX renderings ---------------------------------


@dataclass(frozen=True)
class _Cell:
    """One cell of the pivot: ours formatted (None when missing), the paper's as printed."""

    mean: str | None
    std: str | None
    n: int
    best: bool
    note: int | None
    paper: str | None
    stand_in: bool = False  # computed with stand-in features: marked STAND_IN_MARK


@dataclass(frozen=True)
class _Pivot:
    columns: list[tuple[str, str]]
    rows: list[str]
    cells: dict[tuple[str, str, str], _Cell]
    notes: dict[str, int]
    labels: list[str]
    metrics: list[str]
    ranking: pd.DataFrame
    has_published: bool
    units: dict[str, str]  # metric -> the unit of the paper's values, where the CSV gives one
    protocols: dict[str, str]  # metric -> its records' protocol variants (resize, samples, ...)

    @property
    def paper_shown(self) -> bool:
        return any(cell.paper is not None for cell in self.cells.values())


def _pivot(spec: dict[str, Any], summary: pd.DataFrame, published: pd.DataFrame | None) -> _Pivot:
    columns = list(dict.fromkeys(zip(summary["column"], summary["metric"], strict=True)))
    rows = list(dict.fromkeys(summary["row"]))
    lookup = {(r.row, r.column, r.metric): r for r in summary.itertuples()}
    paper = _paper_texts(published)
    best = _best_per_column(summary, columns)
    notes: dict[str, int] = {}
    cells = {}
    for row in rows:
        for column, metric in columns:
            entry = lookup.get((row, column, metric))
            paper_value = (
                paper.get((entry.published_row, entry.published_column, metric))
                if entry is not None
                else None
            )
            if entry is None or entry.n == 0:
                reason = entry.note if entry is not None and entry.note else "no metric record yet"
                note = notes.setdefault(reason, len(notes) + 1)
                cells[(row, column, metric)] = _Cell(None, None, 0, False, note, paper_value)
                continue
            digits = registry.DECIMALS.get(metric, 2)
            cells[(row, column, metric)] = _Cell(
                mean=_scaled(entry.mean, metric, digits),
                std=_scaled(entry.std, metric, digits) if entry.n > 1 else None,
                n=int(entry.n),
                best=best.get((column, metric)) == row,
                note=None,
                paper=paper_value,
                stand_in=registry.STAND_IN_FEATURES in entry.labels.split("; "),
            )
    labels = sorted({label for text in summary["labels"] for label in text.split("; ") if label})
    return _Pivot(
        columns=columns,
        rows=rows,
        cells=cells,
        notes=notes,
        labels=labels,
        metrics=list(dict.fromkeys(summary["metric"])),
        ranking=ranking_agreement(spec, summary, published),
        has_published=published is not None,
        units=_paper_units(published),
        protocols={
            metric: ", ".join(sorted({c["variant"].lstrip("-") for c in cells_of_metric}))
            for metric in dict.fromkeys(summary["metric"])
            if (cells_of_metric := [c for c in spec["cells"] if c["metric"] == metric])
            and any(c.get("variant") for c in cells_of_metric)
        },
    )


def _legend(pivot: _Pivot) -> str:
    marked = any(cell.stand_in for cell in pivot.cells.values())
    stand_in = f"{STAND_IN_MARK} computed with stand-in features (an untrained network); "
    return (
        "Ours: mean ± std over seeds (n = number of seeds with a value); "
        + (stand_in if marked else "")
        + ("the paper's value in parentheses; " if pivot.paper_shown else "")
        + "".join(
            f"the paper's {registry.display_name(metric)}: {unit}; "
            for metric, unit in pivot.units.items()
        )
        + "".join(f"{metric} protocol {text}; " for metric, text in pivot.protocols.items())
        + "best of each column in bold; "
        + ", ".join(
            f"{m} {'higher' if m in registry.HIGHER_IS_BETTER else 'lower'} is better"
            for m in pivot.metrics
        )
        + "."
    )


def _labels_text(labels: list[str]) -> str:
    return f"Stand-in / scale labels: {', '.join(labels)}."


def _ranking_intro(pivot: _Pivot) -> str:
    if pivot.ranking.empty:
        return "No column has values of ours and of the paper for two or more rows."
    text = (
        "Kendall's τ between our means and the paper's values over the rows that have both "
        "(1: same order, −1: reversed; p: two-sided test of τ = 0); best row of each side "
        "among those rows."
    )
    labels = sorted({x for t in pivot.ranking["labels"] for x in t.split("; ") if x})
    if labels:
        text += f" Our values carry the labels: {', '.join(labels)}."
    return text


def _ranking_rows(pivot: _Pivot) -> list[list[str]]:
    """The ranking table's cells as plain text: header first."""
    out = [["column", "rows", "Kendall's τ", "p", "best (ours)", "best (paper)", "agree"]]
    for entry in pivot.ranking.itertuples():
        column = _header(entry.column, entry.metric)
        if entry.published_column != entry.column:
            column += f" (paper: {entry.published_column})"
        out.append(
            [
                column,
                str(entry.n_rows),
                "n/a" if np.isnan(entry.kendall_tau) else f"{entry.kendall_tau:.2f}",
                "n/a" if np.isnan(entry.p_value) else f"{entry.p_value:.2f}",
                entry.best_ours,
                entry.best_paper,
                "yes" if entry.best_agrees else "no",
            ]
        )
    return out


# -- Markdown -------------------------------------------------------------------------------


def markdown_table(
    spec: dict[str, Any], summary: pd.DataFrame, published: pd.DataFrame | None
) -> str:
    """The pivot as Markdown: rows x (column, metric), ours (and the paper's) per cell."""
    pivot = _pivot(spec, summary, published)
    header = ["", *(_header(column, metric) for column, metric in pivot.columns)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in pivot.rows:
        cells = [row, *(_markdown_cell(pivot.cells[(row, *key)]) for key in pivot.columns)]
        lines.append("| " + " | ".join(cells) + " |")

    out = [f"## {spec['id']}: {spec['title']}", ""]
    if pivot.labels:
        out += [f"**{_labels_text(pivot.labels)}** " + _label_sentence(pivot.labels), ""]
    out += [*lines, "", _legend(pivot)]
    out += [f"[{number}] {note}" for note, number in pivot.notes.items()]
    if pivot.has_published:
        out += ["", "### Ranking against the paper", "", _ranking_intro(pivot)]
        if not pivot.ranking.empty:
            ranking = _ranking_rows(pivot)
            out += ["", "| " + " | ".join(ranking[0]) + " |", "|" + "---|" * len(ranking[0])]
            out += ["| " + " | ".join(cells) + " |" for cells in ranking[1:]]
    out += ["", f"_Generated by mixgan {code_version()} from {len(summary)} cell(s)._"]
    return "\n".join(out) + "\n"


def _markdown_cell(cell: _Cell) -> str:
    if cell.mean is None:
        text = f"{MISSING} [{cell.note}]"
    else:
        text = cell.mean + (f" ± {cell.std}" if cell.std is not None else "")
        text = f"**{text}**" if cell.best else text
        text += STAND_IN_MARK if cell.stand_in else ""
        text += f" (n={cell.n})" if cell.n > 1 else ""
    if cell.paper is not None:  # published values are stored as printed (KID already x 10^3)
        text += f" ({cell.paper})"
    return text


# -- LaTeX ----------------------------------------------------------------------------------

_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "<": r"\textless{}",
    ">": r"\textgreater{}",
}
_LATEX_UNICODE = {
    "—": "---",
    "–": "--",
    "−": "$-$",
    "±": r"$\pm$",
    "×": r"$\times$",
    "↑": r"$\uparrow$",
    "↓": r"$\downarrow$",
    "→": r"$\rightarrow$",
    "²": r"\textsuperscript{2}",
    "³": r"\textsuperscript{3}",
    "α": r"$\alpha$",
    "λ": r"$\lambda$",
    "μ": r"$\mu$",
    "µ": r"$\mu$",
    "σ": r"$\sigma$",
    "τ": r"$\tau$",
    "≥": r"$\geq$",
    "≤": r"$\leq$",
    "★": r"$\star$",
    "†": r"$^\dagger$",
    "…": r"\ldots{}",
    "’": "'",
    "‘": "`",
    "“": "``",
    "”": "''",
}


#: shrinks a tabular to the line width when it is wider, never enlarges it (graphicx)
_FIT_WIDTH = r"\resizebox{\ifdim\width>\linewidth\linewidth\else\width\fi}{!}{"


def latex_escape(text: str) -> str:
    """Text -> LaTeX for pdflatex: special characters escaped, symbols in math mode.

    Other Latin-1 letters (é, ü, ...) are kept for LaTeX's UTF-8 input; anything else falls
    back to its ASCII decomposition (or ``?``) so the file always compiles.
    """
    out = []
    for char in text:
        if char in _LATEX_SPECIAL:
            out.append(_LATEX_SPECIAL[char])
        elif char in _LATEX_UNICODE:
            out.append(_LATEX_UNICODE[char])
        elif ord(char) < 256:
            out.append(char)
        else:
            ascii_text = unicodedata.normalize("NFKD", char).encode("ascii", "ignore").decode()
            out.append(latex_escape(ascii_text) if ascii_text else "?")
    return "".join(out)


def latex_table(spec: dict[str, Any], summary: pd.DataFrame, published: pd.DataFrame | None) -> str:
    """The pivot as a LaTeX ``table`` float (booktabs): the Markdown's cells, caption, notes."""
    pivot = _pivot(spec, summary, published)
    caption = latex_escape(f"{spec['id']}: {spec['title']}.")
    if pivot.labels:
        caption += r" \textbf{" + latex_escape(_labels_text(pivot.labels)) + "} "
        caption += latex_escape(_label_sentence(pivot.labels))
    groups = _column_groups(pivot.columns)
    out = [
        f"% {spec['id']}: generated by mixgan {code_version()} from {len(summary)} cell(s).",
        r"% Needs \usepackage{booktabs} and \usepackage{graphicx}.",
        r"\begin{table}[htbp]",
        r"\centering",
        r"\caption{" + caption + "}",
        r"\label{tab:" + spec["id"] + "}",
        r"\small",
        _FIT_WIDTH + r"\begin{tabular}{l" + "r" * len(pivot.columns) + "}",
        r"\toprule",
    ]
    if any(column != "col" for column, _ in pivot.columns):
        spans, rules, start = [""], [], 2
        for column, width in groups:
            spans.append(rf"\multicolumn{{{width}}}{{c}}{{{latex_escape(column)}}}")
            rules.append(rf"\cmidrule(lr){{{start}-{start + width - 1}}}")
            start += width
        out += [" & ".join(spans) + r" \\", " ".join(rules)]
    metrics = [latex_escape(_header("col", metric)) for _, metric in pivot.columns]
    out += [" & ".join(["", *metrics]) + r" \\", r"\midrule"]
    for row in pivot.rows:
        cells = [latex_escape(row)]
        cells += [_latex_cell(pivot.cells[(row, *key)]) for key in pivot.columns]
        out.append(" & ".join(cells) + r" \\")
    out += [r"\bottomrule", r"\end{tabular}}", "", r"\par\smallskip\footnotesize"]
    notes = [latex_escape(_legend(pivot))]
    notes += [
        rf"\textsuperscript{{{number}}} {latex_escape(note)}"
        for note, number in pivot.notes.items()
    ]
    out.append(" \\\\\n".join(notes))
    if pivot.has_published:
        out += ["", r"\par\medskip", r"\textbf{Ranking against the paper.} "]
        out[-1] += latex_escape(_ranking_intro(pivot))
        if not pivot.ranking.empty:
            ranking = _ranking_rows(pivot)
            out += [
                "",
                r"\par\smallskip",
                _FIT_WIDTH + r"\begin{tabular}{lrrrllc}",
                r"\toprule",
                " & ".join(latex_escape(text) for text in ranking[0]) + r" \\",
                r"\midrule",
                *(" & ".join(latex_escape(t) for t in cells) + r" \\" for cells in ranking[1:]),
                r"\bottomrule",
                r"\end{tabular}}",
            ]
    out.append(r"\end{table}")
    return "\n".join(out) + "\n"


def _column_groups(columns: list[tuple[str, str]]) -> list[tuple[str, int]]:
    """Consecutive (column, metric) pairs with the same column: (column, count)."""
    groups: list[tuple[str, int]] = []
    for column, _ in columns:
        if groups and groups[-1][0] == column:
            groups[-1] = (column, groups[-1][1] + 1)
        else:
            groups.append((column, 1))
    return groups


def _latex_cell(cell: _Cell) -> str:
    if cell.mean is None:
        text = rf"---\textsuperscript{{{cell.note}}}"
    else:
        text = cell.mean + (rf" $\pm$ {cell.std}" if cell.std is not None else "")
        text = rf"\textbf{{{text}}}" if cell.best else text
        text += r"$^\dagger$" if cell.stand_in else ""
        text += f" (n={cell.n})" if cell.n > 1 else ""
    if cell.paper is not None:
        text += f" ({cell.paper})"
    return text


# -- helpers ---------------------------------------------------------------------------------


def _paper_values(published: pd.DataFrame | None) -> dict[tuple[str, str, str], float]:
    """(row, column, metric) -> the paper's value as printed."""
    return {key: float(text) for key, text in _paper_texts(published).items()}


def _paper_texts(published: pd.DataFrame | None) -> dict[tuple[str, str, str], str]:
    """(row, column, metric) -> the paper's value as text, with the digits it printed."""
    if published is None:
        return {}
    return {(p.row, p.column, p.metric): str(p.value).strip() for p in published.itertuples()}


def _paper_units(published: pd.DataFrame | None) -> dict[str, str]:
    """metric -> the unit the paper's values are printed in (the CSV's optional ``unit``)."""
    if published is None or "unit" not in published.columns:
        return {}
    units = published.dropna(subset=["unit"]).groupby("metric", sort=False)["unit"]
    return {metric: "; ".join(dict.fromkeys(group)) for metric, group in units}


def _header(column: str, metric: str) -> str:
    name = registry.display_name(metric)
    arrow = "↑" if metric in registry.HIGHER_IS_BETTER else "↓"
    return f"{column} {name}{arrow}" if column != "col" else f"{name}{arrow}"


def _scaled(value: float, metric: str, digits: int) -> str:
    return f"{value * registry.display_scale(metric):.{digits}f}"


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
    parts = [meaning for label, meaning in registry.LABEL_MEANINGS.items() if label in labels]
    return "; ".join(parts).capitalize() + "." if parts else ""


def write_table(
    spec: dict[str, Any],
    record_paths: Sequence[Path],
    published_path: Path | None,
    out_csv: Path,
    out_md: Path,
    out_tex: Path | None = None,
    out_ranking: Path | None = None,
) -> None:
    """Write the tidy CSV and the Markdown (and, when asked, the LaTeX and the ranking CSV)."""
    published = load_published(published_path)
    tidy = tidy_table(spec, load_records(record_paths), published)
    summary = summarise(tidy)
    with atomic_open(out_csv) as handle:
        tidy.to_csv(handle, index=False)
    outputs = [(out_md, markdown_table), (out_tex, latex_table)]
    for path, render in outputs:
        if path is not None:
            with atomic_open(path) as handle:
                handle.write(render(spec, summary, published))
    if out_ranking is not None:
        with atomic_open(out_ranking) as handle:
            ranking_agreement(spec, summary, published).to_csv(handle, index=False)
