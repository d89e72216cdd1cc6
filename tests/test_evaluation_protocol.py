"""Per-paper and per-table evaluation protocols: their resolution, the records and feature
caches they name, the sample counts they ask for, the checks on the features a record reads,
and the cost table's published values with their units."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from mixgan import evaluation, registry
from mixgan.config import load_config_file
from mixgan.errors import ConfigError
from mixgan.metrics import compute_metric_record
from mixgan.metrics.features import save_features
from mixgan.metrics.fid_kid import fid_from_features
from mixgan.report.tables import load_published, markdown_table, summarise, tidy_table
from mixgan.study import RunKey, Study

from .conftest import REPO

STUDY_EVALUATION = {
    "num_samples": 100, "reference": "full", "resize": "tf_bilinear", "sfid_layer": "mixed_6",
    "kid_subsets": 10, "papers": {"mixdl": {"resize": "pytorch_bilinear", "num_samples": 50,
                                            "sfid_layer": "mixed_7"}},
}  # fmt: skip


def test_a_table_overrides_its_paper_which_overrides_the_study():
    scoremix = evaluation.resolve(STUDY_EVALUATION, {"paper": "scoremix"})
    assert (scoremix["resize"], scoremix["num_samples"]) == ("tf_bilinear", 100)
    assert "papers" not in scoremix and scoremix["kid_subsets"] == 10
    mixdl = evaluation.resolve(STUDY_EVALUATION, {"paper": "mixdl", "reference": "subset"})
    assert (mixdl["resize"], mixdl["num_samples"], mixdl["sfid_layer"]) == (
        "pytorch_bilinear", 50, "mixed_7",
    )  # fmt: skip
    assert mixdl["reference"] == "subset"
    table = {"paper": "mixdl", "evaluation": {"resize": "clean", "num_samples": 7}}
    own = evaluation.resolve(STUDY_EVALUATION, table)
    assert (own["resize"], own["num_samples"], own["sfid_layer"]) == ("clean", 7, "mixed_7")


def test_record_variants_name_exactly_the_settings_a_metric_depends_on():
    assert set(evaluation.METRIC_SETTINGS) == registry.METRICS  # every metric says what it needs
    settings = {"num_samples": 5000, "resize": "pytorch_bilinear", "sfid_layer": "mixed_7",
                "lpips_net": "vgg"}  # fmt: skip
    assert evaluation.variant("fid", settings) == "-pytorch_bilinear-n5000"
    assert evaluation.variant("sfid", settings) == "-pytorch_bilinear-mixed_7-n5000"
    assert evaluation.variant("lpips", settings) == "-vgg-n5000"
    assert evaluation.network("lpips", settings) == "vgg16"
    assert evaluation.network("lpips", {**settings, "lpips_net": "alex"}) == "alexnet"
    assert evaluation.network("fid", settings) == "inception"
    assert evaluation.variant("precision", settings) == "-n5000"
    assert evaluation.variant("ppl", settings) == evaluation.variant("gpu_hours", settings) == ""
    for metric in evaluation.METRIC_SETTINGS:
        text = evaluation.variant(metric, settings)
        parsed = evaluation.parse_variant(text)
        assert parsed == {k: settings[k] for k in evaluation.PROTOCOL_KEYS
                          if k in evaluation.METRIC_SETTINGS[metric]}  # fmt: skip
    with pytest.raises(ValueError, match="not a metric record variant"):
        evaluation.parse_variant("-bicubic")


def test_feature_caches_of_different_conventions_never_collide():
    names = {}
    for resize, layer in itertools.product(evaluation.RESIZES, evaluation.SFID_LAYERS):
        settings = {"resize": resize, "sfid_layer": layer}
        for metric in ("fid", "sfid", "is"):
            name = evaluation.feature_set(metric, settings)
            assert name in evaluation.EXTRACTORS
            head = evaluation.feature_head(metric, settings)
            names.setdefault(name, set()).add((head, resize))
            assert evaluation.parse_feature_set(name) == ((head,), resize)
    assert all(len(uses) == 1 for uses in names.values())  # one name, one convention
    assert len(names) == 3 * 2 + 3 + 3  # sFID per (resize, layer); pool and probs per resize
    assert evaluation.feature_set("precision", {"resize": "clean"}) == "vgg16"
    # several heads of one pass: named in the heads' order, parsed back
    name = evaluation.inception_set({"probs", "mixed_7", "pool"}, "tf_bilinear")
    assert name == "inception_pool+mixed_7+probs-tf_bilinear" and name in evaluation.EXTRACTORS
    assert evaluation.parse_feature_set(name) == (("pool", "mixed_7", "probs"), "tf_bilinear")
    assert len(evaluation.EXTRACTORS) == 15 * 3 + 1  # non-empty head subsets x resizes, VGG


def two_paper_config(minimal_config):
    """One run scored by a ScoreMix table and a MixDL table, under each paper's protocol."""
    minimal_config["evaluation"] = {
        "num_samples": 40,
        "papers": {
            "scoremix": {"resize": "tf_bilinear"},
            "mixdl": {"resize": "pytorch_bilinear", "num_samples": 30, "sfid_layer": "mixed_7"},
        },
    }
    minimal_config["tables"]["mixdl_table1"] = {
        "paper": "mixdl",
        "title": "the same run, MixDL's protocol",
        "defaults": {"dataset": "shapes", "subset": "n12", "backbone": "sg2"},
        "rows": [{"method": "none"}],
        "metrics": ["fid", "sfid"],
    }
    return minimal_config


def test_one_run_in_two_papers_tables_gets_a_record_under_each_protocol(minimal_config):
    study = Study(two_paper_config(minimal_config), check_paths=False)
    run = RunKey("shapes", "n12", "sg2", "none", 0)
    records = {(m, v) for r, m, _, v in study.metric_records() if r == run}
    assert records == {
        ("fid", "-tf_bilinear-n40"),
        ("fid", "-pytorch_bilinear-n30"),
        ("sfid", "-pytorch_bilinear-mixed_7-n30"),
    }
    # its samples cover the larger record; each record reads the first num_samples of them
    assert study.sample_count(run) == 40
    mixdl_only = Study(two_paper_config(minimal_config) | {"tables": {
        "mixdl_table1": minimal_config["tables"]["mixdl_table1"]}}, check_paths=False)  # fmt: skip
    assert mixdl_only.sample_count(run) == 30
    settings = study.record_evaluation("-pytorch_bilinear-mixed_7-n30")
    assert (settings["resize"], settings["sfid_layer"], settings["num_samples"]) == (
        "pytorch_bilinear", "mixed_7", 30,
    )  # fmt: skip
    assert "papers" not in settings


def test_the_protocol_listing_shows_each_tables_resolved_evaluation(minimal_config):
    from mixgan import protocol

    study = Study(two_paper_config(minimal_config), check_paths=False)
    rows = protocol.protocol_rows(study, [], [])
    listed = {
        table: dict(zip(group["setting"], group["value"], strict=True))
        for table, group in rows[rows["setting"].str.startswith("evaluation.")].groupby("table")
    }
    # FID only: the settings FID depends on, under the table's paper protocol
    assert listed["scoremix_table1"] == {
        "evaluation.num_samples": "40", "evaluation.reference": "full",
        "evaluation.resize": "tf_bilinear",
    }  # fmt: skip
    assert listed["mixdl_table1"] == {
        "evaluation.num_samples": "30", "evaluation.reference": "full",
        "evaluation.resize": "pytorch_bilinear", "evaluation.sfid_layer": "mixed_7",
    }  # fmt: skip


def test_a_bad_protocol_setting_is_named(minimal_config):
    minimal_config["evaluation"] = {"papers": {"mixdl": {"resize": "bicubic"}}}
    with pytest.raises(ConfigError, match="evaluation.papers.mixdl.resize"):
        Study(minimal_config, check_paths=False)
    minimal_config["evaluation"] = {}
    minimal_config["tables"]["scoremix_table1"]["evaluation"] = {"sfid": "mixed_7"}
    with pytest.raises(ConfigError, match="tables.scoremix_table1.evaluation"):
        Study(minimal_config, check_paths=False)


def test_the_paper_config_scores_each_paper_with_its_own_fid_code():
    study = Study(load_config_file(REPO / "config" / "config.yaml"), check_paths=False)
    scoremix = study.layout_evaluation("scoremix_table2")
    mixdl = study.layout_evaluation("mixdl_table1")
    assert (scoremix["resize"], scoremix["num_samples"]) == ("tf_bilinear", 50000)
    assert (mixdl["resize"], mixdl["num_samples"], mixdl["sfid_layer"]) == (
        "pytorch_bilinear", 5000, "mixed_7",
    )  # fmt: skip
    cells = {c.metric: c for c in study.layouts["mixdl_table1"].cells}
    assert cells["fid"].variant == "-pytorch_bilinear-n5000"
    assert cells["sfid"].variant == "-pytorch_bilinear-mixed_7-n5000"
    assert cells["lpips"].variant == "-vgg-n5000"  # MixDL's code: LPIPS-VGG
    assert cells["lpips"].pending.startswith("lpips needs vgg16 weights: set weights.vgg16")


# -- the checks of a record on the features it reads ------------------------------------------


def features_pair(tmp_path, resize="tf_bilinear", count=40, layer=None):
    rng = np.random.default_rng(0)
    network = {"name": "test", "sha256": "cd" * 32, "stand_in": False}
    sets = {"s": rng.normal(size=(count, 6)), "r": rng.normal(size=(30, 6)) + 0.5}
    for name, features in sets.items():
        meta = {"source": name, "feature_network": network, "resize": resize}
        if layer:
            meta["heads"] = [[layer, 6]]
        save_features(tmp_path / f"{name}.npz", features.astype(np.float32),
                      [str(i) for i in range(len(features))], meta)  # fmt: skip
    return sets


def fid_spec(metric="fid", **evaluation_settings):
    settings = {"num_samples": 25, "resize": "tf_bilinear", "sfid_layer": "mixed_6"}
    return {"metric": metric, "reference": "full", "run": "d/s/b/m/seed0", "seed": 0,
            "evaluation": settings | evaluation_settings}  # fmt: skip


def test_a_record_reads_the_first_num_samples_features(tmp_path):
    sets = features_pair(tmp_path)
    record = compute_metric_record(fid_spec(), tmp_path / "s.npz", tmp_path / "r.npz")
    expected = fid_from_features(sets["s"][:25].astype(np.float32), sets["r"].astype(np.float32))
    assert record["value"] == pytest.approx(expected, rel=1e-9)
    assert record["num_samples"] == 25
    assert record["evaluation"] == {"num_samples": 25, "resize": "tf_bilinear"}
    with pytest.raises(ValueError, match="holds 40 samples, but evaluation.num_samples is 41"):
        compute_metric_record(fid_spec(num_samples=41), tmp_path / "s.npz", tmp_path / "r.npz")


def test_a_record_refuses_features_of_another_convention(tmp_path):
    features_pair(tmp_path, resize="clean")
    with pytest.raises(ValueError, match="resize 'clean', but this fid record needs"):
        compute_metric_record(fid_spec(), tmp_path / "s.npz", tmp_path / "r.npz")
    features_pair(tmp_path, resize="tf_bilinear", layer="mixed_6")
    spec = fid_spec("sfid", sfid_layer="mixed_7")
    with pytest.raises(ValueError, match="holds the Inception heads mixed_6, not mixed_7"):
        compute_metric_record(spec, tmp_path / "s.npz", tmp_path / "r.npz")


def test_records_read_their_own_head_of_a_cache_of_several(tmp_path):
    """FID and sFID of one pass's cache (pool, then mixed_7) equal those of separate caches."""
    rng = np.random.default_rng(1)
    network = {"name": "test", "sha256": "cd" * 32, "stand_in": False}
    parts = {}
    for name, shift in (("s", 0.0), ("r", 0.5)):
        pool, spatial = rng.normal(size=(30, 4)) + shift, rng.normal(size=(30, 6)) - shift
        parts[name] = pool.astype(np.float32), spatial.astype(np.float32)
        stand_in = {**network, "stand_in": True}  # a head of a stand-in: labelled alone
        meta = {"source": name, "feature_network": stand_in, "resize": "tf_bilinear",
                "heads": [["pool", 4], ["mixed_7", 6]],
                "head_networks": {"pool": network, "mixed_7": stand_in}}  # fmt: skip
        save_features(tmp_path / f"{name}.npz", np.concatenate(parts[name], axis=1),
                      [str(i) for i in range(30)], meta)  # fmt: skip
    for metric, column in (("fid", 0), ("sfid", 1)):
        spec = fid_spec(metric, sfid_layer="mixed_7")
        record = compute_metric_record(spec, tmp_path / "s.npz", tmp_path / "r.npz")
        expected = fid_from_features(parts["s"][column][:25], parts["r"][column])
        assert record["value"] == pytest.approx(expected, rel=1e-9)
        assert ("stand-in features" in record["labels"]) == (metric == "sfid")


def test_a_study_shares_one_inception_pass_among_a_sets_records(minimal_config):
    study = Study(two_paper_config(minimal_config), check_paths=False)
    run = RunKey("shapes", "n12", "sg2", "none", 0)
    both = "inception_pool+mixed_7-pytorch_bilinear"  # MixDL's FID and sFID: one pass
    assert study.feature_caches(run, "fid", "full", "-pytorch_bilinear-n30") == (both, both)
    assert study.feature_caches(run, "sfid", "full", "-pytorch_bilinear-mixed_7-n30") == (
        both, both,
    )  # fmt: skip
    assert study.feature_caches(run, "fid", "full", "-tf_bilinear-n40") == (
        "inception-tf_bilinear", "inception-tf_bilinear",
    )  # fmt: skip


def test_lpips_runs_the_records_network_on_the_first_num_samples(tmp_path, monkeypatch):
    import torch

    import mixgan.metrics
    from mixgan.data.imagezip import write_image_zip

    greys = [0, 51, 102, 255, 10, 20]  # uniform images: a pair's mean |a - b| is closed-form
    write_image_zip(tmp_path / "s.zip", [np.full((8, 8, 3), g, np.uint8) for g in greys])
    used = []

    class MeanAbsolute(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.unused = torch.nn.Parameter(torch.zeros(1))

        def forward(self, a, b):
            return (a - b).abs().mean(dim=(1, 2, 3), keepdim=True)

    def fake_network(net, weights_path, device):
        used.append(net)
        return MeanAbsolute(), {"name": f"lpips-{net}", "sha256": "0" * 64, "stand_in": True}

    monkeypatch.setattr(mixgan.metrics, "lpips_network", fake_network)
    spec = {"metric": "lpips", "reference": "none", "run": "d/s/b/m/seed0", "seed": 0,
            "evaluation": {"num_samples": 4, "lpips_pairs": 100, "lpips_net": "vgg",
                           "batch": 8}}  # fmt: skip
    record = mixgan.metrics.compute_image_metric_record(spec, tmp_path / "s.zip", "w.pth")
    first = greys[:4]
    pairs = [abs(a - b) / 127.5 for i, a in enumerate(first) for b in first[i + 1 :]]
    assert used == ["vgg"] and record["num_pairs"] == 6
    assert record["value"] == pytest.approx(np.mean(pairs), rel=1e-6)
    assert record["evaluation"] == {"num_samples": 4, "lpips_pairs": 100, "lpips_net": "vgg"}


# -- the cost table ---------------------------------------------------------------------------


def test_the_cost_table_shows_the_papers_hours_as_printed_with_their_unit():
    published = load_published(REPO / "config" / "published" / "scoremix_cost.csv")
    values = {(p.row, p.metric): (p.value, p.unit) for p in published.itertuples()}
    assert values[("Baseline", "wallclock_hours")][0] == "69.3"
    assert values[("Baseline + ScoreMix", "wallclock_hours")][0] == "76.0"
    assert "4 Tesla V100S" in values[("Baseline", "wallclock_hours")][1]
    assert not any(metric.startswith("gpu_hours") for _, metric in values)  # none printed
    runs = {"Baseline": "f/1k/b/base/seed0", "Baseline + ScoreMix": "f/1k/b/sm/seed0"}
    cells, records = [], {}
    for (row, run), scale in zip(runs.items(), (1.0, 1.5), strict=True):
        for metric, hours in (("gpu_hours", 8.0 * scale), ("wallclock_hours", 2.0 * scale)):
            cells.append({"row": row, "column": "FFHQ-1K", "metric": metric, "runs": [run],
                          "reference": "none", "pending": None, "published_row": row,
                          "published_column": "FFHQ-1K", "variant": ""})  # fmt: skip
            records[(run, metric, "none", "")] = {"value": hours, "num_samples": None,
                                                  "labels": []}  # fmt: skip
    spec = {"id": "scoremix_cost", "title": "cost", "cells": cells}
    text = markdown_table(spec, summarise(tidy_table(spec, records, published)), published)
    assert "| Baseline | **8.000** | **2.000** (69.3) |" in text  # ours in both units
    assert "| Baseline + ScoreMix | 12.000 | 3.000 (76.0) |" in text
    assert "the paper's training wall-clock hours: wall-clock hours on 4 Tesla V100S" in text


def test_tables_pick_the_record_of_their_own_protocol():
    cell = {
        "row": "r",
        "column": "c",
        "metric": "fid",
        "runs": ["d/s/b/m/seed0"],
        "reference": "full",
        "pending": None,
        "published_row": "r",
        "published_column": "c",
    }
    records = {("d/s/b/m/seed0", "fid", "full", f"-{name}-n10"): {"value": value,
               "num_samples": 10, "labels": []}
               for name, value in (("tf_bilinear", 1.0), ("pytorch_bilinear", 2.0))}  # fmt: skip
    for name, value in (("tf_bilinear", 1.0), ("pytorch_bilinear", 2.0)):
        spec = {"id": "t", "cells": [{**cell, "variant": f"-{name}-n10"}]}
        tidy = tidy_table(spec, records)
        assert tidy["value"].tolist() == [value]
        assert tidy["evaluation"].tolist() == [f"{name}-n10"]
        text = markdown_table({**spec, "title": "t"}, summarise(tidy), None)
        assert f"fid protocol {name}-n10;" in text  # the legend says how the values were made
