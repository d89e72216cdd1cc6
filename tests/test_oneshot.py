"""The one-shot translation track (ScoreMix Table 7, Figure 9): pairs data, resumable SinCUT
runs with ScoreMix patches, Table 7 from votes and SIFID records, the paper config's runs."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mixgan.config import load_config_file
from mixgan.data.pairs import match_pairs, prepare_pairs, read_pair, task_key
from mixgan.errors import ConfigError, DataError
from mixgan.io import write_json
from mixgan.report.oneshot import write_table7
from mixgan.study import RunKey, Study
from mixgan.train import oneshot
from mixgan.train.sincut import SinCUTTrainer
from mixgan.votes import VOTE_COLUMNS

from .conftest import REPO


def _image(path: Path, size: tuple[int, int], seed: int) -> None:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def _pairs_folder(root: Path, count: int = 3) -> dict:
    """deep-photo-styletransfer's layout: input/in<k>.png and style/tar<k>.png."""
    for k in range(1, count + 1):
        _image(root / "input" / f"in{k}.png", (40, 30), k)
        _image(root / "style" / f"tar{k}.jpg", (36, 24), 100 + k)
    return {"format": "pairs", "path": str(root), "pairs": {"source": "input", "target": "style"},
            "resolution": 32}  # fmt: skip


def test_pairs_are_matched_by_number_and_prepared_with_their_aspect(tmp_path):
    dataset = _pairs_folder(tmp_path / "pairs")
    tasks, problems = match_pairs(dataset)
    assert problems == [] and list(tasks) == ["1", "2", "3"]
    assert task_key(Path("in07.png")) == "7" and task_key(Path("a1b2.png")) == "a1b2"
    manifest = prepare_pairs("p", dataset, tmp_path / "p.zip", tmp_path / "p.json")
    assert [t["id"] for t in manifest["tasks"]] == ["1", "2", "3"]
    assert manifest["tasks"][0]["source"]["size"] == [32, 24]  # longer side capped, aspect kept
    assert manifest["tasks"][0]["target"]["size"] == [32, 21]
    source, target = read_pair(tmp_path / "p.zip", "2")
    assert source.shape == (24, 32, 3) and target.shape == (21, 32, 3)


def test_pairs_errors_name_the_files(tmp_path):
    dataset = _pairs_folder(tmp_path / "pairs")
    _image(tmp_path / "pairs" / "input" / "in9.png", (8, 8), 0)  # no target
    _image(tmp_path / "pairs" / "style" / "tar02.png", (8, 8), 0)  # a second target of task 2
    problems = match_pairs(dataset)[1]
    assert any("in9.png" in p and "no target image of task 9" in p for p in problems)
    assert any("tar2.jpg" in p and "tar02.png" in p for p in problems)
    with pytest.raises(DataError, match="in9.png"):
        prepare_pairs("p", dataset, tmp_path / "p.zip", tmp_path / "p.json")
    assert not (tmp_path / "p.zip").exists()

    broken = _pairs_folder(tmp_path / "broken")
    (tmp_path / "broken" / "style" / "tar3.jpg").write_bytes(b"not an image")
    with pytest.raises(DataError, match=r"tar3\.jpg: cannot read image"):
        prepare_pairs("p", broken, tmp_path / "b.zip", tmp_path / "b.json")

    missing = {**dataset, "pairs": {"source": "input", "target": "nowhere"}}
    assert "nowhere does not exist" in match_pairs(missing)[1][0]


def test_procedural_pairs_are_seeded(tmp_path):
    dataset = {"format": "pairs", "resolution": 32, "procedural": {"count": 2, "seed": 0}}
    first = prepare_pairs("d", dataset, tmp_path / "a.zip", tmp_path / "a.json")
    second = prepare_pairs("d", dataset, tmp_path / "b.zip", tmp_path / "b.json")
    assert first["content_hash"] == second["content_hash"] and first["count"] == 2
    assert first["stand_in"] == "procedural demo data"
    assert read_pair(tmp_path / "a.zip", "1")[0].shape == (24, 32, 3)


TINY = {"crops": 2, "crop_size": 16, "ngf": 1, "ndf": 1, "netf_nc": 8, "dataset_length": 8,
        "n_epochs": 1, "n_epochs_decay": 1, "checkpoint_every": 2, "log_every": 2,
        "scorenet_crops": 4}  # fmt: skip


def _spec(scoremix: bool) -> dict:
    parts = [{"name": "sm", "kind": "scoremix", "mu": 3}] if scoremix else []
    return {"backbone": {"name": "sincut", "arch": "sincut", "options": TINY}, "seed": 3,
            "method": {"name": "m", "parts": parts}}  # fmt: skip


def test_options_are_checked_and_default_to_the_official_run():
    settings = oneshot.sincut_settings(oneshot.sincut_options({"crops": 16, "crop_size": 128}))
    official = (settings.batch_size, settings.patch_size, settings.total_iterations)
    assert official == (16, 128, 100_000)
    assert (settings.ngf, settings.ndf, settings.lambda_nce, settings.lr) == (10, 8, 4.0, 0.002)
    with pytest.raises(ConfigError, match="options.crop_sise: unknown SinCUT option"):
        oneshot.sincut_options({"crop_sise": 64})
    with pytest.raises(ConfigError, match="options.crops: must be a positive integer"):
        oneshot.sincut_options({"crops": 0})


def test_a_resumed_sincut_run_matches_an_uninterrupted_one(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    source = rng.integers(0, 256, (20, 28, 3), dtype=np.uint8)
    target = rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)
    pool = oneshot.source_crops(source, oneshot.sincut_options(TINY), seed=0)
    assert pool.shape == (4, 16, 16, 3)
    whole, summary = oneshot.train_oneshot(_spec(True), source, target, tmp_path / "a", pool)
    assert summary["iterations"] == 8 and summary["scoremix_probability"] == 0.75
    assert whole.shape == (20, 28, 3)

    calls = {"n": 0}
    original = SinCUTTrainer.train_step

    def crash_after_five(self, *args):
        calls["n"] += 1
        if calls["n"] > 5:
            raise RuntimeError("killed")
        return original(self, *args)

    monkeypatch.setattr(SinCUTTrainer, "train_step", crash_after_five)
    with pytest.raises(RuntimeError, match="killed"):
        oneshot.train_oneshot(_spec(True), source, target, tmp_path / "b", pool)
    monkeypatch.setattr(SinCUTTrainer, "train_step", original)
    resumed, again = oneshot.train_oneshot(_spec(True), source, target, tmp_path / "b", pool)
    assert again["iterations"] == 8
    np.testing.assert_array_equal(resumed, whole)
    first = torch.load(sorted((tmp_path / "a/train/checkpoints").glob("*.pt"))[-1])
    second = torch.load(sorted((tmp_path / "b/train/checkpoints").glob("*.pt"))[-1])
    for name, tensor in first["trainer"]["nets"]["G"].items():
        assert torch.equal(tensor, second["trainer"]["nets"]["G"][name]), name
    baseline, _ = oneshot.train_oneshot(_spec(False), source, target, tmp_path / "c")
    assert not np.array_equal(baseline, whole)  # the ScoreMix patches change the run


def _records(folder: Path, sifid: dict[str, tuple[float, float]]) -> list[Path]:
    paths = []
    for task, values in sifid.items():
        for method, value in zip(("sincut", "sincut_scoremix"), values, strict=True):
            path = folder / f"{task}-{method}.json"
            write_json(path, {"task": task, "method": method, "seed": 0, "value": value,
                              "image": "x.png"})  # fmt: skip
            paths.append(path)
    return paths


def test_table7_from_a_votes_csv_and_sifid_records_is_the_hand_computed_2x2(tmp_path):
    # SIFID (baseline, ours): ours lower on t1, t2, t3, t4; higher on t5
    sifid = {"t1": (2.0, 1.0), "t2": (3.0, 1.0), "t3": (2.0, 1.5), "t4": (5.0, 4.0),
             "t5": (1.0, 2.0)}  # fmt: skip
    # votes for ours / baseline: t1 3-0, t2 2-1, t3 0-2, t4 1-1 (tie), t5 0-1
    ballots = {"t1": (3, 0), "t2": (2, 1), "t3": (0, 2), "t4": (1, 1), "t5": (0, 1)}
    votes = tmp_path / "votes.csv"
    with open(votes, "w", newline="") as handle:
        writer = csv.DictWriter(handle, VOTE_COLUMNS)
        writer.writeheader()
        for task, (ours, base) in ballots.items():
            for k, chosen in enumerate(["sincut_scoremix"] * ours + ["sincut"] * base):
                writer.writerow({
                    "rater": f"r{k}", "task": task, "chosen": chosen, "side": "left",
                    "left_method": chosen, "right_method": "x", "position": 0, "rater_seed": 1,
                    "created_utc": "2024-01-01T00:00:00.000Z", "simulated": 0,
                })  # fmt: skip
    spec = {"id": "scoremix_table7", "title": "T7", "labels": [], "baseline": "sincut",
            "ours": "sincut_scoremix", "votes": "export",
            "names": {"sincut": "SinCUT", "sincut_scoremix": "SinCUT + ScoreMix"}}  # fmt: skip
    out = {name: tmp_path / f"t7.{name}" for name in ("csv", "md", "tex", "ranking.csv")}
    frame = write_table7(
        spec, _records(tmp_path, sifid), votes, REPO / "config/published/scoremix_table7.csv",
        out["csv"], out["md"], out["tex"], out["ranking.csv"],
    )  # fmt: skip
    cells = frame[(frame["section"] == "cells") & (frame["metric"] == "tasks")]
    counts = {(r.sifid_winner, r.human_winner): r.value for r in cells.itertuples()}
    # by hand: (ours, ours) t1 t2; (ours, baseline) t3; (ours, tie) t4; (baseline, baseline) t5
    assert counts == {("ours", "ours"): 2, ("ours", "baseline"): 1, ("ours", "tie"): 1,
                      ("baseline", "ours"): 0, ("baseline", "baseline"): 1,
                      ("baseline", "tie"): 0}  # fmt: skip
    percent = frame[(frame["section"] == "cells") & (frame["metric"] == "percent_of_tasks")]
    assert percent["value"].sum() == pytest.approx(100.0)
    first = percent[(percent["sifid_winner"] == "ours") & (percent["human_winner"] == "ours")]
    assert first["value"].iloc[0] == pytest.approx(40.0) and first["published"].iloc[0] == 83.3
    rates = frame[frame["section"] == "win_rates"].set_index("metric")["value"]
    assert rates["sifid_win_rate"] == pytest.approx(80.0)  # 4 of 5
    assert rates["human_win_rate"] == pytest.approx(40.0)  # t1, t2 of 5
    markdown = out["md"].read_text()
    assert "40.0 % (2) / paper 83.3 %" in markdown and "simulated" not in markdown
    ranking = (tmp_path / "t7.ranking.csv").read_text().splitlines()
    assert ranking[1:] == ["sifid_win_rate,80.0,89.9,True", "human_win_rate,40.0,85.0,False"]


def test_table7_without_votes_shows_the_sifid_side_and_how_to_collect_them(tmp_path):
    spec = {"id": "scoremix_table7", "title": "T7", "labels": ["DEMO"], "baseline": "sincut",
            "ours": "sincut_scoremix", "votes": None, "votes_path": "votes/t7.csv",
            "vote_tasks": "results/paper/votes/scoremix_table7/tasks.json",
            "names": {"sincut": "SinCUT", "sincut_scoremix": "SinCUT + ScoreMix"}}  # fmt: skip
    out = [tmp_path / f"t.{e}" for e in ("csv", "md", "tex", "r.csv")]
    frame = write_table7(spec, _records(tmp_path, {"a": (2.0, 1.0)}), None, None, *out)
    assert frame[frame["metric"] == "sifid_win_rate"]["value"].iloc[0] == 100.0
    text = out[1].read_text()
    assert "— (no votes)" in text and "mixgan vote" in text and "votes/t7.csv" in text


def test_the_paper_configs_one_shot_runs_are_runnable_given_a_pairs_folder(tmp_path):
    config = load_config_file(REPO / "config" / "config.yaml")
    folder = tmp_path / "examples"
    config["datasets"]["photo_style_pairs"]["path"] = str(folder)
    _pairs_folder(folder, count=2)
    study = Study(config, check_paths=False)
    table = study.layouts["scoremix_table7"]
    assert not table.pending_cells and not study.layouts["scoremix_fig9"].pending_cells
    runs = {run for cell in table.cells for run in cell.runs}
    methods = ("none", "scoremix")
    assert runs == {RunKey("photo_style_pairs", "full", "sincut", m, 0) for m in methods}
    assert not [p for p in study.path_problems() if "photo_style_pairs" in p]
    spec = study.run_spec(RunKey("photo_style_pairs", "full", "sincut", "scoremix", 0))
    settings = oneshot.sincut_settings(oneshot.sincut_options(spec["backbone"]["options"]))
    paper = (settings.batch_size, settings.patch_size, settings.total_iterations)
    assert paper == (16, 128, 100_000)
    _image(folder / "input" / "in5.png", (8, 8), 0)  # a source without its style image
    assert any("in5.png" in p for p in study.path_problems())
    (folder / "input" / "in5.png").unlink()
    manifest = prepare_pairs("photo_style_pairs", study.dataset("photo_style_pairs"),
                             tmp_path / "p.zip", tmp_path / "p.json")  # fmt: skip
    assert json.loads((tmp_path / "p.json").read_text())["count"] == manifest["count"] == 2
