"""The GAN loop: a resumed run equals an uninterrupted one; best snapshot and outputs."""

from __future__ import annotations

import copy
import json
import logging

import pandas as pd
import pytest
import torch

from mixgan.config import RunKey, Study
from mixgan.data.prepare import prepare_dataset
from mixgan.data.subsets import make_subset_manifest
from mixgan.io import write_json
from mixgan.train.checkpoint import list_checkpoints
from mixgan.train.gan import TrainPaths, train_gan

LOG = logging.getLogger("test")


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data")
    dataset = {
        "format": "procedural",
        "resolution": 16,
        "labels": "none",
        "domains": "none",
        "procedural": {"count": 24, "classes": 3, "domains": 2, "seed": 0},
    }
    prepared = prepare_dataset("shapes", dataset, folder / "p.zip", folder / "p.json")
    settings = {"order": "random", "seed": 0, "stratify": "none", "sizes": {"n12": {"count": 12}}}
    write_json(folder / "n12.json", make_subset_manifest(prepared, "n12", settings))
    return folder


def tiny_spec(minimal_config, method="diffaug", kimg=0.096):
    config = copy.deepcopy(minimal_config)
    config["parts"]["diffaug"] = {"kind": "diffaug"}
    config["methods"]["diffaug"] = ["diffaug"]
    config["tables"]["scoremix_table1"]["rows"].append({"method": "diffaug"})
    config["backbones"]["sg2"].update(
        channel_base=64,
        channel_max=16,
        z_dim=16,
        w_dim=16,
        mapping_layers=1,
        train={
            "batch": 8,
            "kimg": kimg,
            "r1_interval": 2,
            "ema_kimg": 0.01,
            "eval_every_kimg": 1,
            "checkpoint_every_kimg": 0.048,
            "log_every_kimg": 0.016,
        },
    )
    return Study(config).run_spec(RunKey("shapes", "n12", "sg2", method, 0))


def paths(data, run_dir):
    return TrainPaths(
        data / "p.zip", data / "n12.json", run_dir, run_dir / "network.pt", run_dir / "curve.csv"
    )


def test_resumed_training_equals_uninterrupted(minimal_config, data, tmp_path):
    spec = tiny_spec(minimal_config)
    whole = train_gan(spec, paths(data, tmp_path / "whole"), LOG)
    # Half the budget, then the same run again with the full budget: it resumes at step 6.
    half = copy.deepcopy(spec)
    half["backbone"]["train"]["kimg"] = 0.048
    train_gan(half, paths(data, tmp_path / "split"), LOG)
    assert [c.name for c in list_checkpoints(tmp_path / "split" / "train" / "checkpoints")] == [
        "ckpt-000000006.pt"
    ]
    resumed = train_gan(spec, paths(data, tmp_path / "split"), LOG)
    assert whole["steps"] == resumed["steps"] == 12
    a = torch.load(tmp_path / "whole" / "network.pt", weights_only=False)["generator"]
    b = torch.load(tmp_path / "split" / "network.pt", weights_only=False)["generator"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    whole_ckpt = torch.load(
        list_checkpoints(tmp_path / "whole" / "train" / "checkpoints")[-1], weights_only=False
    )
    split_ckpt = torch.load(
        list_checkpoints(tmp_path / "split" / "train" / "checkpoints")[-1], weights_only=False
    )
    assert all(torch.equal(whole_ckpt["D"][k], split_ckpt["D"][k]) for k in whole_ckpt["D"])
    curve_a = pd.read_csv(tmp_path / "whole" / "curve.csv").drop(
        columns=["seconds", "sec_per_kimg"]
    )
    curve_b = pd.read_csv(tmp_path / "split" / "curve.csv").drop(
        columns=["seconds", "sec_per_kimg"]
    )
    pd.testing.assert_frame_equal(curve_a, curve_b)


def test_training_writes_outputs_and_selects_the_final_generator_without_evaluation(
    minimal_config, data, tmp_path
):
    spec = tiny_spec(minimal_config, kimg=0.032)
    summary = train_gan(spec, paths(data, tmp_path), LOG)
    snapshot = torch.load(tmp_path / "network.pt", weights_only=False)
    assert snapshot["meta"]["selected"].startswith("final generator")
    assert snapshot["generator_kwargs"]["img_resolution"] == 16
    assert summary["num_real"] == 12 and summary["kimg_trained"] == pytest.approx(0.032)
    curve = pd.read_csv(tmp_path / "curve.csv")
    assert list(curve["step"]) == [2, 4]
    assert curve[["loss_g", "loss_d"]].notna().all().all()
    assert json.loads((tmp_path / "train" / "spec.json").read_text())["provenance"]["code_version"]
