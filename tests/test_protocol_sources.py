"""The protocol rules of the augmentation parts, BigGAN and FastGAN (config/protocol/augment,
biggan, fastgan.yaml) cover the paper config's settings, and the code facts they judge are the
code's."""

from __future__ import annotations

import copy

import pytest
import torch

from mixgan import protocol, sample
from mixgan.augment import ada
from mixgan.config import load_config_file
from mixgan.study import Study

from .conftest import REPO

OURS = (
    "part.ada.", "part.augmix.", "part.diffaug.", "part.mixup.", "part.cutmix.",
    "code.ada.", "code.augmix.", "code.biggan.", "code.fastgan.",
)  # fmt: skip


@pytest.fixture(scope="module")
def listing():
    config = load_config_file(REPO / "config" / "config.yaml")
    config = copy.deepcopy(config)
    config["weights"]["vgg16"] = "download"  # FastGAN's runs wait only for these weights
    rules, infrastructure = protocol.load_rules()
    study = Study(config, check_paths=False)
    return protocol.protocol_rows(study, rules, infrastructure), study


def test_every_augmentation_biggan_and_fastgan_setting_has_a_source(listing):
    rows, study = listing
    contexts = {
        (layout.id, cell.row): study.config["backbones"][cell.runs[0].backbone]["arch"]
        for layout in study.layouts_in("tables")
        for cell in layout.cells
        if cell.runs
    }
    arch = [contexts[(t, r)] for t, r in zip(rows["table"], rows["row"], strict=True)]
    mine = rows["setting"].str.startswith(OURS) | (
        rows["setting"].str.startswith("backbone.")
        & rows.assign(arch=arch)["arch"].isin(["biggan", "fastgan"])
    )
    assert {"biggan", "fastgan"} <= set(arch)
    assert mine.sum() > 100
    assert protocol.problems(rows[mine]) == []
    judged = set(rows.loc[mine, "setting"])
    assert {
        "code.ada.resampling_filter",
        "code.fastgan.sample_mode",
        "backbone.ema_start",
    } <= judged


def test_table4_uses_biggans_diffaugment_policy_and_the_others_stylegan2s(listing):
    rows, _ = listing
    policy = rows[rows["setting"] == "part.diffaug.policy"]
    table4 = policy[policy["table"] == "scoremix_table4"]
    assert set(table4["value"]) == {"[translation]"} and set(table4["status"]) == {"source"}
    others = policy[policy["table"] != "scoremix_table4"]
    assert set(others["value"]) == {"[color, translation, cutout]"}
    assert len(set(table4["row"])) == 7  # every Table 4 row, ScoreMix_ADA and _LC included


def test_the_code_facts_are_what_the_code_does():
    facts = protocol.CODE_FACTS
    assert facts["fastgan"]["fastgan.sample_batch"] == sample.FASTGAN_SAMPLE_BATCH
    assert facts["ada"]["ada.resampling_filter"] == "sym6" and len(ada.SYM6) == 12
    controller = ada.AdaController(interval=1, speed_kimg=0.001)
    controller.update(torch.ones(4))
    assert facts["ada"]["ada.p_max"] is None and controller.p == 4.0  # no upper clamp


def test_rules_of_rows_waiting_for_weights_are_not_stale_but_typos_are():
    config = load_config_file(REPO / "config" / "config.yaml")
    assert not config["weights"].get("vgg16")  # FastGAN's rows wait for it
    rules, infrastructure = protocol.load_rules()
    rows = protocol.protocol_rows(Study(config, check_paths=False), rules, infrastructure)
    assert not rows["row"].str.contains("FastGAN").any()  # not listed without the weights
    fastgan = [rule for rule in rules if rule.setting.startswith("code.fastgan.")]
    fastgan += [rule for rule in rules if rule.setting == "backbone.reconstruction"]
    assert len(fastgan) == 5 and not set(protocol.stale_rules(fastgan, rows))
    typo = protocol.Rule("backbone.reconstructoin", "lpips", "a typo", {"arch": "fastgan"})
    assert protocol.stale_rules([typo], rows) == [typo]
