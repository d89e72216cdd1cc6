"""The protocol listing: every table row's settings against the sources' rules."""

from __future__ import annotations

import copy

import pytest

from mixgan import protocol
from mixgan.config import load_config_file
from mixgan.study import Study

from .conftest import REPO


@pytest.fixture(scope="module")
def paper():
    config = load_config_file(REPO / "config" / "config.yaml")
    return config, Study(config, check_paths=False)


@pytest.fixture(scope="module")
def listing(paper):
    rules, infrastructure = protocol.load_rules()
    return protocol.protocol_rows(paper[1], rules, infrastructure), rules


def test_the_paper_config_follows_its_sources_or_says_why(listing):
    rows, rules = listing
    assert protocol.problems(rows) == []
    assert protocol.stale_rules(rules, rows) == []
    assert set(rows["status"]) <= set(protocol.STATUSES)


def test_every_table_and_row_of_the_paper_config_is_listed(paper, listing):
    rows, _ = listing
    for layout in paper[1].layouts_in("tables"):
        runnable = {cell.row for cell in layout.cells if not cell.pending}
        assert runnable == set(rows.loc[rows["table"] == layout.id, "row"]), layout.id


def test_a_changed_setting_is_an_undocumented_deviation(paper):
    config = copy.deepcopy(paper[0])
    config["parts"]["scoremix"]["steps"] = 50  # Algorithm 1 says 100
    rules, infrastructure = protocol.load_rules()
    rows = protocol.protocol_rows(Study(config, check_paths=False), rules, infrastructure)
    flagged = rows[(rows["setting"] == "part.scoremix.steps") & (rows["status"] == "undocumented")]
    assert not flagged.empty and set(flagged["value"]) == {"50"}
    assert any(line.startswith("part.scoremix.steps = 50, source says 100") for line in
               protocol.problems(rows))  # fmt: skip


def test_rules_apply_where_they_say_and_later_rules_win(tmp_path):
    (tmp_path / "a.yaml").write_text(
        "infrastructure: [backbone.train.log_*]\n"
        "rules:\n"
        "  - {setting: part.lecam.weight, value: 0.3, source: BigGAN}\n"
        "  - {setting: part.lecam.weight, where: {arch: stylegan2}, value: 3.0e-7,\n"
        "     source: lecam-gan StyleGAN2 script, deviation: measured}\n"
    )
    (tmp_path / "b.yaml").write_text(
        "rules:\n  - {setting: part.mixup.alpha, value: 0.2, source: ours, choice: true}\n"
        "  - {setting: dataset.subset, values: [1k, 2k], source: the table}\n"
    )
    rules, infrastructure = protocol.load_rules(tmp_path)
    assert [r.setting for r in rules] == ["part.lecam.weight"] * 2 + [
        "part.mixup.alpha",
        "dataset.subset",
    ]
    stylegan2 = [{"arch": "stylegan2", "paper": "scoremix"}]
    biggan = [{"arch": "biggan", "paper": "scoremix"}]
    judge = protocol._judge  # noqa: SLF001 - the rule matching itself is what is tested
    assert judge("part.lecam.weight", [0.3], biggan, rules, infrastructure)["status"] == "source"
    other = judge("part.lecam.weight", [0.3], stylegan2, rules, infrastructure)
    assert (other["status"], other["reason"]) == ("deviation", "measured")
    assert judge("part.lecam.weight", [3e-7], stylegan2, rules, infrastructure)["status"] == (
        "source"
    )
    assert judge("part.mixup.alpha", [0.5], biggan, rules, infrastructure)["status"] == "choice"
    assert judge("part.cutmix.alpha", [1], biggan, rules, infrastructure)["status"] == "unsourced"
    assert judge("dataset.subset", ["2k", "1k"], biggan, rules, infrastructure)["status"] == (
        "source"
    )
    assert judge("dataset.subset", ["1k", "5k"], biggan, rules, infrastructure)["status"] == (
        "undocumented"
    )
    assert judge("backbone.train.log_every_kimg", [4], biggan, rules, infrastructure)["status"] == (
        "infrastructure"
    )


def test_a_malformed_rule_names_its_file(tmp_path):
    (tmp_path / "bad.yaml").write_text("rules:\n  - {setting: a.b, value: 1}\n")
    with pytest.raises(ValueError, match=r"bad\.yaml: rules\[0\] needs setting, value"):
        protocol.load_rules(tmp_path)
    (tmp_path / "bad.yaml").write_text(
        "rules:\n  - {setting: a.b, value: 1, source: x, where: {method: m}}\n"
    )
    with pytest.raises(ValueError, match="where: keys are"):
        protocol.load_rules(tmp_path)
