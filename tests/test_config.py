"""Config validation and expansion: good configs expand, bad ones are rejected naming the key."""

from __future__ import annotations

import copy
import itertools

import numpy as np
import pandas as pd
import pytest
import yaml

from mixgan import registry
from mixgan.config import load_config_file, validate_config
from mixgan.errors import ConfigError
from mixgan.remix_tasks import EVALUATION_ROWS
from mixgan.study import RunKey, Study

from .conftest import REPO


def problems_of(config) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        Study(config)
    return caught.value.problems


def test_minimal_config_expands_into_runs(minimal_config):
    study = Study(minimal_config)
    assert study.root.as_posix() == "results/tiny"
    assert list(study.runs) == [
        RunKey("shapes", "n12", "sg2", "none", 0),
        RunKey("shapes", "n12", "sg2", "scoremix", 0),
    ]
    assert all(reason is None for reason in study.runs.values())
    assert study.scorenet_jobs() == [("shapes", "n12", "tiny")]


def test_schema_defaults_are_filled(minimal_config):
    config = validate_config(minimal_config)
    train = config["backbones"]["sg2"]["train"]
    assert train["lr"] == 0.0025 and train["betas"] == [0.0, 0.99] and train["patience"] == 5
    assert config["parts"]["scoremix"]["alpha"] == 0.2
    assert config["parts"]["scoremix"]["steps"] == 100
    assert config["scorenets"]["tiny"]["gamma"] == 0.99
    assert config["evaluation"]["reference"] == "full"
    assert minimal_config["backbones"]["sg2"] == {"arch": "stylegan2", "task": "unconditional"}


def test_unknown_key_is_named(minimal_config):
    minimal_config["backbones"]["sg2"]["widht"] = 2.0
    (problem,) = problems_of(minimal_config)
    assert problem.startswith("backbones.sg2") and "'widht'" in problem


def test_wrong_type_is_named(minimal_config):
    minimal_config["datasets"]["shapes"]["subsets"]["sizes"]["n12"]["count"] = "twelve"
    (problem,) = problems_of(minimal_config)
    assert problem.startswith("datasets.shapes.subsets.sizes.n12.count")
    assert "not of type 'integer'" in problem


def test_part_parameter_is_checked_by_kind(minimal_config):
    minimal_config["parts"]["scoremix"]["mu"] = -1
    (problem,) = problems_of(minimal_config)
    assert problem.startswith("parts.scoremix.mu")


def test_method_naming_a_missing_part(minimal_config):
    minimal_config["methods"]["scoremix"] = ["scoremix", "lecam"]
    (problem,) = problems_of(minimal_config)
    assert problem.startswith("methods.scoremix[1]: part 'lecam' is not defined in parts")


def test_scoremix_part_naming_a_missing_score_network(minimal_config):
    minimal_config["parts"]["scoremix"]["scorenet"] = "ncsn"
    (problem,) = problems_of(minimal_config)
    assert problem.startswith("parts.scoremix.scorenet: score network 'ncsn' is not defined")


def test_table_cell_naming_missing_subset_and_method(minimal_config):
    table = minimal_config["tables"]["scoremix_table1"]
    table["rows"].append({"method": "mixup", "subset": "n99"})
    problems = problems_of(minimal_config)
    assert any("method 'mixup' is not defined in methods" in p for p in problems)
    assert any(
        "subset 'n99' is not defined in datasets.shapes.subsets.sizes" in p for p in problems
    )
    assert all(p.startswith("tables.scoremix_table1 (rows[2] x columns[0])") for p in problems)


def test_incomplete_cell_coordinates(minimal_config):
    del minimal_config["tables"]["scoremix_table1"]["defaults"]["backbone"]
    problems = problems_of(minimal_config)
    assert problems and all("no backbone given" in p for p in problems)


def test_unknown_metric(minimal_config):
    minimal_config["tables"]["scoremix_table1"]["metrics"] = ["fid", "fidd"]
    (problem,) = problems_of(minimal_config)
    assert "unknown metric 'fidd'" in problem


def test_reserved_subset_name_full(minimal_config):
    minimal_config["datasets"]["shapes"]["subsets"]["sizes"]["full"] = {"count": 3}
    (problem,) = problems_of(minimal_config)
    assert problem.startswith("datasets.shapes.subsets.sizes")


def test_missing_dataset_path_is_named_only_when_checked(minimal_config, tmp_path):
    minimal_config["datasets"]["real"] = {"path": str(tmp_path / "nowhere"), "resolution": 16}
    minimal_config["tables"]["scoremix_table1"]["columns"] = [
        {"dataset": "shapes"},
        {"dataset": "real", "subset": "full"},
    ]
    (problem,) = problems_of(minimal_config)
    assert problem == f"datasets.real.path: {tmp_path / 'nowhere'} does not exist"
    study = Study(minimal_config, check_paths=False)  # a dry run still expands the study
    assert study.path_problems() == [problem]
    (tmp_path / "nowhere").mkdir()
    assert Study(minimal_config).path_problems() == []


def test_class_conditional_task_needs_labels(minimal_config, tmp_path):
    minimal_config["datasets"]["plain"] = {"path": str(tmp_path), "resolution": 16}
    minimal_config["backbones"]["big"] = {"arch": "biggan", "task": "class_conditional"}
    minimal_config["tables"]["scoremix_table1"]["defaults"].update(
        dataset="plain", subset="full", backbone="big"
    )
    problems = problems_of(minimal_config)
    assert all("task class_conditional needs labels on dataset 'plain'" in p for p in problems)


def test_unimplemented_pieces_are_pending_not_errors(minimal_config):
    minimal_config["parts"]["remix"] = {"kind": "remix"}
    minimal_config["methods"]["remix"] = ["remix"]
    minimal_config["tables"]["scoremix_table1"]["rows"].append({"method": "remix"})
    minimal_config["tables"]["scoremix_table1"]["metrics"] = ["fid", "sifid_win_rate", "lpips"]
    study = Study(minimal_config)
    assert (
        study.runs[RunKey("shapes", "n12", "sg2", "remix", 0)]
        == "part kind 'remix' is not implemented for arch 'stylegan2' yet"
    )
    assert RunKey("shapes", "n12", "sg2", "remix", 0) not in study.runnable_runs()
    pending = {(c.row, c.metric): c.pending for c in study.layouts["scoremix_table1"].cells}
    assert pending[("none", "fid")] is None
    assert pending[("none", "sifid_win_rate")] == "metric 'sifid_win_rate' is not implemented yet"
    assert pending[("none", "lpips")].startswith("lpips needs alexnet weights: set weights.alexnet")
    records = study.metric_records()
    assert {metric for _, metric, _, _ in records} == {"fid"}
    assert len(records) == 2
    minimal_config["weights"] = {"allow_standins": True}  # labelled stand-ins: computable
    study = Study(minimal_config)
    pending = {(c.row, c.metric): c.pending for c in study.layouts["scoremix_table1"].cells}
    assert pending[("none", "lpips")] is None and pending[("none", "sifid_win_rate")]


def test_added_seed_and_ablation_grow_the_grid(minimal_config):
    before = len(Study(minimal_config).runs)
    minimal_config["seeds"] = [0, 1]
    minimal_config["parts"]["scoremix_mu5"] = {"kind": "scoremix", "scorenet": "tiny", "mu": 5}
    minimal_config["methods"]["scoremix_mu5"] = ["scoremix_mu5"]
    minimal_config["tables"]["scoremix_table1"]["rows"].append({"method": "scoremix_mu5"})
    study = Study(minimal_config)
    assert len(study.runs) == 2 * (before + 1)
    assert (
        study.run_spec(RunKey("shapes", "n12", "sg2", "scoremix_mu5", 1))["method"]["parts"][0][
            "mu"
        ]
        == 5
    )


def test_duplicated_key_in_yaml_is_rejected(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text("methods:\n  none: []\n  base: [a]\n  none: [b]\n")
    with pytest.raises(ConfigError) as caught:
        load_config_file(path)
    assert "key 'none' appears twice" in str(caught.value) and "lines 2 and 4" in str(caught.value)


def test_yaml_merge_keys_are_allowed(tmp_path):
    path = tmp_path / "merge.yaml"
    path.write_text("a: &base {x: 1, y: 2}\nb: {<<: *base, y: 3}\n")
    assert load_config_file(path) == {"a": {"x": 1, "y": 2}, "b": {"x": 1, "y": 3}}


@pytest.mark.parametrize("name", ["config.yaml", "demo.yaml"])
def test_shipped_configs_are_valid(name):
    study = Study(load_config_file(REPO / "config" / name), check_paths=False)
    assert study.runnable_runs()
    for layout in study.layouts.values():
        assert layout.cells, layout.id


def test_paper_config_covers_every_study_id():
    study_text = (
        (REPO.parent / "shared" / "STUDY.md").read_text()
        if (REPO.parent / "shared").exists()
        else ""
    )
    config = load_config_file(REPO / "config" / "config.yaml")
    ids = set(config["tables"]) | set(config["figures"])
    expected = {
        *(f"scoremix_table{i}" for i in range(1, 8)),
        "scoremix_cost",
        "scoremix_fig3",
        "scoremix_fig4",
        "scoremix_fig5",
        "scoremix_fig6",
        "scoremix_fig7_8",
        "scoremix_fig9",
        "scoremix_table3_curve",  # table 3's FID against the training-set size, as a figure
        *(f"remix_table{i}" for i in range(1, 4)),
        *(f"mixdl_table{i}" for i in range(1, 8)),
        "mixdl_fig6",
        "mixdl_fig8",
    }
    assert ids == expected
    for table_id in expected - {"scoremix_table3_curve"}:
        assert not study_text or table_id in study_text


#: paper tables without published values, and why
UNPUBLISHED_TABLES = {
    "mixdl_table3": "the thesis's table is garbled in the text copy",
}


@pytest.mark.parametrize("name", ["config.yaml", "demo.yaml"])
def test_published_values_name_cells_of_the_tables(name):
    """Every published value lands in a cell: its (row, column, metric) is a cell of the
    paper config's table, and each demo table shows at least one of its file's values."""
    study = Study(load_config_file(REPO / "config" / name), check_paths=False)
    published_dir = REPO / "config" / "published"
    tables = {layout.id: layout for layout in study.layouts_in("tables")}
    for path in sorted(published_dir.glob("*.csv")):
        values = pd.read_csv(path, comment="#")
        columns = ["row", "column", "metric", "value"]  # and the unit, where one is printed
        assert list(values.columns) in (columns, [*columns, "unit"]), path.name
        assert values["value"].map(lambda v: np.isfinite(float(v))).all(), path.name
        keys = set(zip(values["row"], values["column"], values["metric"], strict=True))
        assert len(keys) == len(values), f"{path.name}: a cell is listed twice"
        if path.stem not in tables:
            assert name == "demo.yaml", f"{path.name} names no table of {name}"
            continue
        cells = {(c.published_row, c.published_column, c.metric) for c in tables[path.stem].cells}
        arch = study.config["backbones"][tables[path.stem].cells[0].runs[0].backbone]["arch"]
        if arch in EVALUATION_ROWS:  # ReMix Tables 2-3: the evaluation-only row (no run)
            label, metrics = EVALUATION_ROWS[arch]
            columns = {c.published_column for c in tables[path.stem].cells}
            cells |= set(itertools.product([label], columns, metrics))
        if tables[path.stem].config.get("kind") == "winrate":  # SIFID x human winner (Table 7)
            outcomes = {"ours", "baseline"}
            cells = set(itertools.product(outcomes, outcomes, ["percent_of_tasks", "tasks"]))
        if name == "config.yaml":
            assert keys <= cells, f"{path.name}: {sorted(keys - cells)[:3]} name no cell"
        else:
            assert keys & cells, f"{path.name}: no value reaches the demo's table"
    if name == "config.yaml":
        published = {path.stem for path in published_dir.glob("*.csv")}
        assert set(tables) - published == set(UNPUBLISHED_TABLES)


def test_a_figure_drawing_an_unknown_tables_values_is_named(minimal_config):
    minimal_config["figures"] = {
        "scoremix_table3_curve": {
            "paper": "scoremix",
            "kind": "size_curve",
            "title": "t",
            "published": "scoremix_tabel3",
            "defaults": {"dataset": "shapes", "subset": "n12", "backbone": "sg2"},
            "rows": [{"method": "none"}],
        }
    }
    with pytest.raises(ConfigError, match="figures.scoremix_table3_curve.published"):
        Study(minimal_config)
    minimal_config["figures"]["scoremix_table3_curve"]["published"] = "scoremix_table1"
    assert Study(minimal_config).layouts["scoremix_table3_curve"].cells
    minimal_config["figures"]["scoremix_table3_curve"]["kind"] = "training_curve"
    with pytest.raises(ConfigError, match="only a size_curve draws them"):
        Study(minimal_config)


def test_a_size_curve_row_spanning_two_datasets_is_named(minimal_config):
    minimal_config["datasets"]["other"] = copy.deepcopy(minimal_config["datasets"]["shapes"])
    minimal_config["figures"] = {
        "mixdl_fig6": {
            "paper": "mixdl",
            "kind": "size_curve",
            "title": "t",
            "defaults": {"subset": "n12", "backbone": "sg2", "method": "none"},
            "rows": [{"label": "StyleGAN2"}],
            "columns": [{"label": "a", "dataset": "shapes"}, {"label": "b", "dataset": "other"}],
        }
    }
    with pytest.raises(ConfigError, match=r"mixdl_fig6.rows\[0\]: a size curve's row spans"):
        Study(minimal_config)
    figure = minimal_config["figures"]["mixdl_fig6"]
    figure["columns"][1]["dataset"] = "shapes"
    figure["metrics"] = ["fid", "kid"]
    assert len(Study(minimal_config).layouts["mixdl_fig6"].cells) == 4  # 2 columns x 2 metrics
    figure["kind"] = "training_curve"
    with pytest.raises(ConfigError, match="mixdl_fig6.metrics: only a size_curve"):
        Study(minimal_config)


def test_a_diversity_curve_of_runs_without_the_probe_names_the_backbone_key(minimal_config):
    minimal_config["figures"] = {
        "mixdl_fig8": {
            "paper": "mixdl",
            "kind": "diversity_curve",
            "title": "t",
            "defaults": {"dataset": "shapes", "subset": "n12", "backbone": "sg2"},
            "rows": [{"method": "none"}, {"method": "scoremix"}],
        }
    }
    with pytest.raises(ConfigError) as error:
        Study(minimal_config)
    assert "figures.mixdl_fig8 (rows[1] x columns[0]): a diversity_curve" in str(error.value)
    assert "set backbones.sg2.train.diversity_every_kimg above 0" in str(error.value)
    minimal_config["backbones"]["sg2"]["train"] = {"diversity_every_kimg": 4}
    study = Study(minimal_config)
    assert [cell.pending for cell in study.layouts["mixdl_fig8"].cells] == [None, None]
    # Without AlexNet weights the probe counts neighbours only: said before anything trains.
    run = study.layouts["mixdl_fig8"].cells[0].runs[0]
    assert study.probes_diversity(run) and not study.probe_uses_lpips(run)
    assert study.notes()[0].startswith("figures.mixdl_fig8: without weights.alexnet")
    minimal_config["weights"] = {"allow_standins": True}
    study = Study(minimal_config)
    assert study.probe_uses_lpips(run) and study.notes() == []
    # A run of the same backbone that no diversity figure shows trains without the probe.
    other = RunKey("shapes", "full", "sg2", "none", 0)  # no diversity figure shows it
    assert not study.probes_diversity(other)
    assert study.run_spec(other)["backbone"]["train"]["diversity_every_kimg"] == 0
    assert study.run_spec(run)["backbone"]["train"]["diversity_every_kimg"] == 4


def test_schema_enums_cover_the_registry():
    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
    archs = set(schema["$defs"]["backbone"]["properties"]["arch"]["enum"])
    kinds = set(schema["$defs"]["part"]["properties"]["kind"]["enum"])
    assert set(registry.TRAINERS) <= archs
    assert kinds >= registry.PARTS
    assert registry.METRICS <= registry.KNOWN_METRICS


def test_a_repeated_row_label_is_named(minimal_config):
    rows = minimal_config["tables"]["scoremix_table1"]["rows"]
    rows[0]["label"] = rows[1]["label"] = "Baseline"
    with pytest.raises(ConfigError) as error:
        Study(minimal_config)
    assert "tables.scoremix_table1.rows[1]: label 'Baseline' repeats rows[0]" in str(error.value)


def test_fp16_is_stylegan2_only_and_a_negative_patience_is_named(minimal_config):
    """NVIDIA's FP16 layers exist in StyleGAN2 only: another arch asking for them is rejected
    with the key named (the StyleGAN2 backbone may); patience 0 means no early stopping."""
    minimal_config["backbones"]["fg"] = {
        "arch": "fastgan", "task": "unconditional", "train": {"precision": "fp16"},
    }  # fmt: skip
    minimal_config["backbones"]["sg2"]["train"] = {"precision": "fp16", "patience": 0}
    (problem,) = problems_of(minimal_config)
    assert problem.startswith("backbones.fg.train.precision") and "'fp16'" in problem
    minimal_config["backbones"]["sg2"]["train"]["patience"] = -1
    assert any(p.startswith("backbones.sg2.train.patience") for p in problems_of(minimal_config))


def test_sdedit_above_the_trained_levels_is_rejected_naming_the_key(minimal_config):
    minimal_config["scorenets"]["tiny"]["max_level_t"] = 0.2  # default t0: 0.25
    with pytest.raises(ConfigError, match=r"parts\.scoremix\.final_denoise\.t0: 0\.25 is above"):
        Study(minimal_config)
    minimal_config["parts"]["scoremix"]["final_denoise"] = {"mode": "sdedit", "t0": 0.2}
    Study(minimal_config)  # from the highest trained level: accepted
    minimal_config["backbones"]["sampler"] = {
        "arch": "score_sampler", "task": "unconditional", "scorenet": "tiny",
        "sampler": "annealed_langevin",
    }  # fmt: skip
    with pytest.raises(ConfigError, match=r"scorenets\.tiny\.max_level_t: backbone sampler"):
        Study(minimal_config)
