"""ScoreMix Table 7 and Figure 9: one-shot translations, SIFID win rates and human votes.

Each one-shot run writes a SIFID record per task (``mixgan oneshot-sifid``: the SIFID between
the translation and the target image, the paper's "lower SIFID between the synthesized image
and target image"). The table crosses the SIFID winner of each task (mean over the seeds of a
method) with the human winner from the exported votes (``mixgan.votes.table7``: the majority;
ties get their own row/column), as percentages of the tasks, beside the paper's values;
without votes it shows the SIFID side and says where the votes come from. Figure 9 shows each
task's source, target and the two methods' translations (first seed) with their SIFID.

The layout spec (the Snakefile's ``oneshot_spec``) names the two methods by their result keys
(``baseline``, ``ours``), their row ``names``, the ``labels`` every output carries and the
``votes`` mode (``simulated``, ``export`` or ``None``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mixgan import votes as votes_module
from mixgan.io import atomic_open, read_json, write_json

SIMULATED_VOTES = "simulated votes"
OUTCOMES = ("ours", "baseline")


def read_sifid(records: Sequence[Path]) -> pd.DataFrame:
    """One row per record: task, method (result key), seed, value, image."""
    rows = [read_json(path) for path in records]
    columns = ["task", "method", "seed", "value", "image"]
    return pd.DataFrame([{k: r[k] for k in columns} for r in rows], columns=columns)


def task_sifid(frame: pd.DataFrame) -> dict[str, dict[str, float]]:
    """``{task: {method: mean SIFID over seeds}}``."""
    means = frame.groupby(["task", "method"])["value"].mean()
    out: dict[str, dict[str, float]] = {}
    for (task, method), value in means.items():
        out.setdefault(str(task), {})[str(method)] = float(value)
    return out


def _published(path: Path | None) -> dict[tuple[str, str, str], float]:
    if path is None:
        return {}
    frame = pd.read_csv(path, comment="#")
    return {(r.row, r.column, r.metric): float(r.value) for r in frame.itertuples()}


def _vote_counts(votes: list[votes_module.Vote]) -> dict[str, dict[str, int]]:
    counts: dict[str, dict[str, int]] = {}
    for vote in votes:
        task = counts.setdefault(vote.task, {})
        task[vote.chosen] = task.get(vote.chosen, 0) + 1
    return counts


def table7_frame(
    spec: dict[str, Any],
    sifid: dict[str, dict[str, float]],
    votes: list[votes_module.Vote] | None,
    published: dict[tuple[str, str, str], float],
) -> pd.DataFrame:
    """The tidy table: the 2x2 cells, the two win rates, and every task's values."""
    ours, baseline = spec["ours"], spec["baseline"]
    labels = "; ".join(spec["labels"] + ([SIMULATED_VOTES] if spec["votes"] == "simulated" else []))
    rows: list[dict[str, Any]] = []
    both = {t: v for t, v in sifid.items() if ours in v and baseline in v}
    sifid_wins = sum(v[ours] < v[baseline] for v in both.values())
    # the paper's win rates: its row and column sums (rounded as it prints)
    paper_sifid = round(sum(published.get(("ours", h, "percent_of_tasks"), np.nan)
                            for h in OUTCOMES), 1)  # fmt: skip
    paper_human = round(sum(published.get((s, "ours", "percent_of_tasks"), np.nan)
                            for s in OUTCOMES), 1)  # fmt: skip
    rows.append({"section": "win_rates", "metric": "sifid_win_rate", "tasks": len(both),
                 "value": 100.0 * sifid_wins / len(both) if both else np.nan,
                 "published": paper_sifid})  # fmt: skip
    if votes is not None:
        table = votes_module.table7(votes, sifid, ours, baseline)
        human = votes_module.human_winners(votes, ours, baseline)
        counted = [t for t in human if t in both]
        rows.append({"section": "win_rates", "metric": "human_win_rate", "tasks": len(counted),
                     "value": 100.0 * sum(human[t] == "ours" for t in counted) / len(counted)
                     if counted else np.nan, "published": paper_human})  # fmt: skip
        sifid_outcomes = [o for o in (*OUTCOMES, "tie") if o != "tie" or any(
            s == "tie" for s, _ in table.counts)]  # fmt: skip
        human_outcomes = [o for o in (*OUTCOMES, "tie") if o != "tie" or any(
            h == "tie" for _, h in table.counts)]  # fmt: skip
        for s in sifid_outcomes:
            for h in human_outcomes:
                for metric, value in (
                    ("percent_of_tasks", table.percent(s, h)),
                    ("tasks", table.counts.get((s, h), 0)),
                ):
                    rows.append({"section": "cells", "sifid_winner": s, "human_winner": h,
                                 "metric": metric, "value": value, "tasks": table.tasks,
                                 "published": published.get((s, h, metric), np.nan)})  # fmt: skip
    counts = _vote_counts(votes or [])
    for task in sorted(set(sifid) | set(counts)):
        for method in (baseline, ours):
            if method in sifid.get(task, {}):
                rows.append({"section": "tasks", "task": task, "metric": f"sifid:{method}",
                             "value": sifid[task][method]})  # fmt: skip
            if task in counts:
                rows.append({"section": "tasks", "task": task, "metric": f"votes:{method}",
                             "value": counts[task].get(method, 0)})  # fmt: skip
    frame = pd.DataFrame(rows)
    frame["tasks"] = frame["tasks"].astype("Int64")
    frame.insert(0, "table", spec["id"])
    frame["labels"] = labels
    columns = ["table", "section", "task", "sifid_winner", "human_winner", "metric", "value",
               "tasks", "published", "labels"]  # fmt: skip
    return frame.reindex(columns=columns)


def _outcome(spec: dict[str, Any], outcome: str) -> str:
    sign = {"ours": ">", "baseline": "<", "tie": "="}[outcome]
    return f"Ours {sign} {spec['names'][spec['baseline']]}"


def _number(value: Any, digits: int = 1) -> str:
    return "—" if value is None or pd.isna(value) else f"{float(value):.{digits}f}"


def _pivot(spec: dict[str, Any], frame: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the 2x2: 'ours % (n) / paper %' per cell."""
    cells = frame[frame["section"] == "cells"]
    sifid_outcomes = list(dict.fromkeys(cells["sifid_winner"])) or list(OUTCOMES)
    human_outcomes = list(dict.fromkeys(cells["human_winner"])) or list(OUTCOMES)
    header = ["SIFID \\ human", *(f"Human: {_outcome(spec, h)}" for h in human_outcomes)]
    body = []
    for s in sifid_outcomes:
        row = [f"SIFID: {_outcome(spec, s)}"]
        for h in human_outcomes:
            pick = cells[(cells["sifid_winner"] == s) & (cells["human_winner"] == h)]
            percent = pick[pick["metric"] == "percent_of_tasks"]
            count = pick[pick["metric"] == "tasks"]
            if percent.empty:
                row.append("— (no votes)")
                continue
            ours = f"{_number(percent['value'].iloc[0])} % ({int(count['value'].iloc[0])})"
            row.append(f"{ours} / paper {_number(percent['published'].iloc[0])} %")
        body.append(row)
    return header, body


def _markdown(spec: dict[str, Any], frame: pd.DataFrame, notes: list[str]) -> str:
    header, body = _pivot(spec, frame)
    lines = [f"# {spec['title']}", ""]
    lines += [f"*{label}*" for label in frame["labels"].iloc[0].split("; ") if label] + [""]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    lines += ["", "| win rate of Ours | tasks | ours (%) | paper (%) |", "|---|---|---|---|"]
    for r in frame[frame["section"] == "win_rates"].itertuples():
        lines.append(f"| {r.metric} | {r.tasks} | {_number(r.value)} | {_number(r.published)} |")
    tasks = frame[frame["section"] == "tasks"]
    if not tasks.empty:
        per_task = tasks.pivot_table(index="task", columns="metric", values="value")
        lines += ["", "| task | " + " | ".join(per_task.columns) + " |",
                  "|---|" + "---|" * len(per_task.columns)]  # fmt: skip
        for task, values in per_task.iterrows():
            shown = [_number(v, 2 if k.startswith("sifid") else 0) for k, v in values.items()]
            lines.append(f"| {task} | " + " | ".join(shown) + " |")
    lines += ["", *(f"Note: {n}" for n in notes)]
    return "\n".join(lines).rstrip() + "\n"


def _latex(spec: dict[str, Any], frame: pd.DataFrame) -> str:
    header, body = _pivot(spec, frame)
    escape = str.maketrans({"%": r"\%", "_": r"\_", "&": r"\&", "\\": r"$\backslash$"})
    lines = [r"\begin{tabular}{l" + "c" * (len(header) - 1) + "}", r"\toprule",
             " & ".join(h.translate(escape) for h in header) + r" \\", r"\midrule"]  # fmt: skip
    lines += [" & ".join(c.translate(escape) for c in row) + r" \\" for row in body]
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def _ranking(frame: pd.DataFrame) -> pd.DataFrame:
    """Whether ours and the paper agree on which method wins each judgement."""
    rates = frame[frame["section"] == "win_rates"]
    return pd.DataFrame({
        "judgement": rates["metric"], "ours": rates["value"], "paper": rates["published"],
        "same_winner": [
            bool((o > 50) == (p > 50)) if not (pd.isna(o) or pd.isna(p)) else None
            for o, p in zip(rates["value"], rates["published"], strict=True)
        ],
    })  # fmt: skip


def write_table7(
    spec: dict[str, Any],
    sifid_records: Sequence[Path],
    votes_csv: Path | None,
    published: Path | None,
    out_csv: Path,
    out_md: Path,
    out_tex: Path,
    out_ranking: Path,
) -> pd.DataFrame:
    """Write ScoreMix Table 7 (csv, md, tex and the win-direction agreement)."""
    sifid = task_sifid(read_sifid(sifid_records))
    votes = votes_module.read_votes_csv(votes_csv) if votes_csv else None
    frame = table7_frame(spec, sifid, votes, _published(published))
    notes = []
    if votes is None:
        notes.append(
            f"no votes yet: serve {spec.get('vote_tasks', 'the tasks file')} with `mixgan vote`, "
            f"export them with `mixgan vote-export` to {spec.get('votes_path')} and rerun"
        )
    elif spec["votes"] == "simulated":
        notes.append("the votes are simulated by `mixgan vote-simulate` (seeded): they carry no "
                     "information about the methods")  # fmt: skip
    missing = [t for t, v in sifid.items() if set(v) != {spec["ours"], spec["baseline"]}]
    if missing:
        notes.append(f"tasks without both SIFIDs (not counted): {', '.join(missing)}")
    for path, text in ((out_md, _markdown(spec, frame, notes)), (out_tex, _latex(spec, frame))):
        with atomic_open(path) as handle:
            handle.write(text)
    with atomic_open(out_csv) as handle:
        frame.to_csv(handle, index=False)
    with atomic_open(out_ranking) as handle:
        _ranking(frame).to_csv(handle, index=False)
    return frame


def write_vote_tasks(
    pairs_zip: Path, sifid_records: Sequence[Path], out: Path, seed: int | None = None
) -> int:
    """TASKS.json of the vote page: each task's source, target and both results (of the first
    seed, or ``seed``); the source and target are written beside it. Returns the task count."""
    from mixgan.data.imagezip import encode_png
    from mixgan.data.pairs import read_pair

    frame = read_sifid(sifid_records)
    seed = int(frame["seed"].min()) if seed is None else seed
    frame = frame[frame["seed"] == seed]
    images = out.parent / "images"
    images.mkdir(parents=True, exist_ok=True)
    tasks = []
    for task, group in frame.groupby("task", sort=True):
        entry: dict[str, Any] = {"id": str(task)}
        for role, pixels in zip(("source", "target"), read_pair(pairs_zip, str(task)), strict=True):
            path = images / f"{task}_{role}.png"
            with atomic_open(path, "wb") as handle:
                handle.write(encode_png(pixels))
            entry[role] = os.path.relpath(path, out.parent)
        entry["results"] = {
            str(r.method): os.path.relpath(os.path.abspath(r.image), out.parent.resolve())
            for r in group.itertuples()
        }
        tasks.append(entry)
    write_json(out, {"tasks": tasks})
    votes_module.load_tasks(out)  # the page's own check of what it will serve
    return len(tasks)


def draw_fig9(
    spec: dict[str, Any], pairs_zip: Path, sifid_records: Sequence[Path], out_png: Path,
    out_pdf: Path, max_tasks: int = 12,
) -> None:  # fmt: skip
    """Figure 9: per task (rows) the source, the target and each method's translation (first
    seed) with its SIFID; the labels in force above."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mixgan.data.imagezip import decode_image
    from mixgan.data.pairs import read_pair
    from mixgan.io import atomic_path

    frame = read_sifid(sifid_records)
    frame = frame[frame["seed"] == frame["seed"].min()]
    methods = [spec["baseline"], spec["ours"]]
    tasks = sorted(frame["task"].astype(str).unique(), key=lambda t: (len(t), t))[:max_tasks]
    figure, axes = plt.subplots(len(tasks), 4, figsize=(10, 2.3 * len(tasks) + 0.8), squeeze=False)
    for row, task in zip(axes, tasks, strict=True):
        source, target = read_pair(pairs_zip, task)
        panels = [(source, f"task {task}: source"), (target, "target")]
        for method in methods:
            pick = frame[(frame["task"] == task) & (frame["method"] == method)]
            if pick.empty:
                panels.append((None, f"{spec['names'][method]}: —"))
                continue
            image = decode_image(Path(pick["image"].iloc[0]).read_bytes())
            panels.append((image, f"{spec['names'][method]}\nSIFID {pick['value'].iloc[0]:.3g}"))
        for axis, (image, title) in zip(row, panels, strict=True):
            if image is not None:
                axis.imshow(image)
            axis.set_title(title, fontsize=8)
            axis.axis("off")
    figure.suptitle("\n".join([spec["title"], *spec["labels"]]), fontsize=9)
    figure.tight_layout()
    for path, fmt in ((out_png, "png"), (out_pdf, "pdf")):
        with atomic_path(path) as tmp:
            figure.savefig(tmp, format=fmt, dpi=120)
    plt.close(figure)
