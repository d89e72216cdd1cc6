"""Tables from synthetic metric records: seeds averaged, missing and pending cells, paper values."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from mixgan.report.tables import markdown_table, summarise, tidy_table, write_table


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
        (run, metric, "full"): {
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
