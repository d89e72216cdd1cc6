"""ScoreMix's other modes: online (growing mu) in the GAN loop, score-model sampling, Figure 3."""

from __future__ import annotations

import copy
import json
import logging
import zipfile

import pytest
import torch

from mixgan.data.imagezip import image_names, read_image_zip
from mixgan.report.figures import draw_figure
from mixgan.sample import sample_run
from mixgan.study import RunKey, Study
from mixgan.train.checkpoint import list_checkpoints
from mixgan.train.loop import train_gan
from mixgan.train.paths import TrainPaths
from mixgan.train.scorenet import train_score_net

from .conftest import final_generator, prepare_shapes_subset

LOG = logging.getLogger("test")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A prepared procedural dataset, a 12-image subset and a (barely) trained score net."""
    folder = tmp_path_factory.mktemp("scoremix")
    subset = prepare_shapes_subset(folder)
    names = [image["name"] for image in subset["images"]]
    images = (
        torch.from_numpy(read_image_zip(folder / "p.zip", names)).permute(0, 3, 1, 2).contiguous()
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    train_score_net(
        images, {"ngf": 4, "gamma": 0.8, "iterations": 2, "batch": 4}, folder / "scorenet", LOG
    )
    torch.set_num_threads(threads)
    return folder


def study_config(minimal_config):
    config = copy.deepcopy(minimal_config)
    config["parts"]["grow"] = {
        "kind": "scoremix",
        "scorenet": "tiny",
        "mu": "growing",
        "probability": 1.0,
        "steps": 1,
    }
    config["methods"]["grow"] = ["grow"]
    config["backbones"]["ncsnv2"] = {
        "arch": "score_sampler",
        "task": "unconditional",
        "scorenet": "tiny",
        "sampler": "annealed_langevin",
        "steps_each": 1,
    }
    config["backbones"]["smld"] = {
        "arch": "score_sampler",
        "task": "unconditional",
        "scorenet": "tiny",
        "sampler": "predictor_corrector",
    }
    table = config["tables"]["scoremix_table1"]
    table["rows"] += [
        {"method": "grow"},
        {"backbone": "ncsnv2", "method": "none"},
        {"backbone": "smld", "method": "none"},
    ]
    config["backbones"]["sg2"].update(
        channel_base=64,
        channel_max=16,
        z_dim=16,
        w_dim=16,
        mapping_layers=1,
        train={
            "batch": 4,
            "kimg": 0.016,
            "r1_interval": 2,
            "ema_kimg": 0.01,
            "eval_every_kimg": 1,
            "checkpoint_every_kimg": 0.008,
            "log_every_kimg": 0.004,
        },
    )
    return Study(config)


def test_growing_mu_replaces_real_batches_with_scoremix_and_resumes(
    minimal_config, workspace, tmp_path
):
    spec = study_config(minimal_config).run_spec(RunKey("shapes", "n12", "sg2", "grow", 0))
    paths = TrainPaths(
        workspace / "p.zip",
        workspace / "n12.json",
        tmp_path,
        tmp_path / "network.pt",
        tmp_path / "curve.csv",
        scorenet=workspace / "scorenet" / "scorenet.pt",
    )
    summary = train_gan(spec, paths, LOG)
    assert summary["steps"] == 4 and summary["num_pool"] == 12  # online: no extra static images
    state = torch.load(list_checkpoints(tmp_path / "train" / "checkpoints")[-1], weights_only=False)
    assert state["parts"]["grow"] == {"augmented_batches": 4}  # probability 1: every D step
    without = copy.deepcopy(spec)
    without["method"]["parts"][0]["probability"] = 0.0
    other = tmp_path / "other"
    train_gan(
        without,
        TrainPaths(
            workspace / "p.zip",
            workspace / "n12.json",
            other,
            other / "network.pt",
            other / "curve.csv",
            scorenet=workspace / "scorenet" / "scorenet.pt",
        ),
        LOG,
    )
    a, b = final_generator(tmp_path), final_generator(other)
    assert any(not torch.equal(a[k], b[k]) for k in a)  # the augmented reals changed training


def test_growing_mu_without_a_score_network_is_an_error(minimal_config, workspace, tmp_path):
    spec = study_config(minimal_config).run_spec(RunKey("shapes", "n12", "sg2", "grow", 0))
    paths = TrainPaths(
        workspace / "p.zip", workspace / "n12.json", tmp_path, tmp_path / "n.pt", tmp_path / "c.csv"
    )
    with pytest.raises(ValueError, match="growing mu needs the score network"):
        train_gan(spec, paths, LOG)


@pytest.mark.parametrize("backbone", ["ncsnv2", "smld"])
def test_score_based_rows_sample_from_the_score_network(
    minimal_config, workspace, tmp_path, backbone
):
    spec = study_config(minimal_config).run_spec(RunKey("shapes", "n12", backbone, "none", 0))
    scorenet = workspace / "scorenet" / "scorenet.pt"
    record = sample_run(
        spec,
        scorenet,
        tmp_path / "s.zip",
        count=5,
        seed=3,
        batch_size=2,
        device=torch.device("cpu"),
    )
    images = read_image_zip(tmp_path / "s.zip")
    assert images.shape == (5, 16, 16, 3) and len(image_names(tmp_path / "s.zip")) == 5
    inner = json.loads(zipfile.ZipFile(tmp_path / "s.zip").read("dataset.json"))
    assert (
        inner["run"] == spec["run"]
        and inner["seed"] == 3
        and record["selected"].endswith(spec["backbone"]["sampler"])
    )
    sample_run(
        spec,
        scorenet,
        tmp_path / "t.zip",
        count=5,
        seed=3,
        batch_size=2,
        device=torch.device("cpu"),
    )
    assert (read_image_zip(tmp_path / "t.zip") == images).all()  # seeded: the same images again
    assert images.std() > 0


def test_figure_3_draws_every_mixer_for_the_same_pairs(minimal_config, workspace, tmp_path):
    part = study_config(minimal_config).method_parts("scoremix")[0]
    spec = {
        "id": "scoremix_fig3",
        "title": "pairs",
        "kind": "augmentation_grid",
        "samples": 3,
        "labels": ["procedural demo data"],
        "cells": [
            {
                "row": "row",
                "column": "col",
                "pending": None,
                "files": [],
                "data": str(workspace / "p.zip"),
                "subset": str(workspace / "n12.json"),
                "scorenet": str(workspace / "scorenet" / "scorenet.pt"),
                "scoremix": part,
            }
        ],
    }
    draw_figure(spec, [], tmp_path / "f.png", tmp_path / "f.pdf")
    assert (tmp_path / "f.png").stat().st_size > 10_000 and (tmp_path / "f.pdf").exists()
