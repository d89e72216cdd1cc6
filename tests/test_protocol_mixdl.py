"""The protocol rules of MixDL, CDC and MixDL's Table 2 baselines (config/protocol/mixdl.yaml)
cover every setting of their rows in the paper config, and the code facts they judge are what
the code does."""

from __future__ import annotations

import copy

import pytest
import torch

from mixgan import protocol
from mixgan.config import load_config_file, load_schema
from mixgan.nets.stylegan2 import Generator
from mixgan.study import Study
from mixgan.train import cdc, mixdl, mode_collapse
from mixgan.train.part_api import Part

from .conftest import REPO

KINDS = ("mixdl", "cdc", "msgan", "ndiv", "distancegan")
OURS = tuple(f"{group}.{kind}." for group in ("part", "code") for kind in KINDS)


@pytest.fixture(scope="module")
def rows():
    config = copy.deepcopy(load_config_file(REPO / "config" / "config.yaml"))
    config["weights"]["vgg16"] = "download"  # FastGAN's runs wait only for these weights
    rules, infrastructure = protocol.load_rules()
    return protocol.protocol_rows(Study(config, check_paths=False), rules, infrastructure)


def test_every_mixdl_cdc_and_baseline_setting_has_a_source(rows):
    mine = rows[rows["setting"].str.startswith(OURS)]
    assert protocol.problems(mine) == []
    settings = set(mine["setting"])
    for kind in KINDS:  # every key of each part's schema branch is listed and judged
        for key in set(part_schema(kind)) - {"source_model"}:  # the paper gives a source_run
            name = f"part.{kind}.{key}"
            assert name in settings or any(s.startswith(f"{name}.") for s in settings), name
    fastgan = mine[(mine["table"] == "mixdl_table1") & (mine["row"] == "FastGAN + MixDL")]
    assert {"part.mixdl.patch_resolutions", "code.mixdl.r1_logits"} <= set(fastgan["setting"])


def part_schema(kind: str) -> dict:
    """The properties of a part kind's branches of the config schema."""
    properties: dict = {}
    for entry in load_schema()["$defs"]["part"]["allOf"]:
        condition = entry["if"]["properties"]["kind"]
        if condition.get("const") == kind or kind in condition.get("enum", []):
            properties |= entry["then"].get("properties", {})
    return properties


def test_the_settings_sources_agree_with_the_schema_defaults(rows):
    """The defaults are the sources' values: a part written as {kind: ...} follows them."""
    for kind, key, value in (
        ("mixdl", "mixup_every", 2),
        ("mixdl", "lambda_g", 1000),
        ("distancegan", "statistics_images", 900),
        ("ndiv", "alpha", 0.8),
        ("cdc", "weight", 1000),
        ("cdc", "patch_layers", 1),
    ):
        assert part_schema(kind)[key]["default"] == value
        listed = rows[rows["setting"] == f"part.{kind}.{key}"]
        assert set(listed["status"]) == {"source"} and set(listed["value"]) == {str(value)}


def test_the_code_facts_are_what_the_code_does():
    facts = protocol.CODE_FACTS
    settings = {"mixup_every": 2, "generator_loss": True, "discriminator_loss": True}
    part = mixdl.MixDL("m", settings)
    assert facts["mixdl"]["mixdl.mixdl_steps"] == "step % mixup_every == 0"
    assert [part.computes_losses(s) for s in range(4)] == [True, False, True, False]
    assert facts["mixdl"]["mixdl.r1_logits"] == "patch"
    assert type(part).r1_logits is not Part.r1_logits
    synthesis = Generator(z_dim=8, w_dim=8, img_resolution=16, channel_base=64).synthesis
    names = mixdl.synthesis_layer_names(synthesis)
    assert facts["mixdl"]["mixdl.g_layers"] == "all but the first and the last"
    assert mixdl.generator_layer_candidates(synthesis) == names[1:-1]
    assert facts["cdc"]["cdc.g_layers"] == "all but the first"
    assert cdc.layer_candidates(synthesis) == names[1:]
    for kind, regularizer in (
        ("msgan", mode_collapse.ModeSeeking),
        ("ndiv", mode_collapse.NormalizedDiversity),
        ("distancegan", mode_collapse.DistancePreservation),
    ):
        assert facts[kind][f"{kind}.g_step_style_mixing"] is (not regularizer.regularizes_g)
    assert facts["ndiv"]["ndiv.normaliser"] == "detached"
    x = torch.tensor([[0.0], [1.0], [3.0]], requires_grad=True)
    (grad,) = torch.autograd.grad(mode_collapse.normalized_distances(x)[0, 1], x)
    torch.testing.assert_close(grad.flatten(), torch.tensor([-1 / 4, 1 / 4, 0.0]))
