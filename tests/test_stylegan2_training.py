"""StyleGAN2's training protocol: x-flipped real images, early stopping recorded in the
checkpoints, NVIDIA's FP16 settings and gradient sanitisation."""

from __future__ import annotations

import copy
import logging

import pytest
import torch

from mixgan.train import loop
from mixgan.train.checkpoint import list_checkpoints
from mixgan.train.gan import GANTrainer, network_kwargs
from mixgan.train.loop import train_gan

from .conftest import final_generator, same_tensors, train_whole_and_split
from .test_gan_training import paths, tiny_spec

LOG = logging.getLogger("test")
pytestmark = pytest.mark.usefixtures("one_thread")


def asymmetric_index(trainer: GANTrainer) -> int:
    """A pool image that differs from its mirror image."""
    pool = trainer.pool
    return next(i for i in range(len(pool)) if not torch.equal(pool[i], pool[i].flip(2)))


def test_mirror_flips_each_real_image_with_probability_one_half(minimal_config, data, tmp_path):
    spec = tiny_spec(minimal_config)
    spec["backbone"]["train"]["mirror"] = True
    trainer = GANTrainer(spec, paths(data, tmp_path), LOG)
    i = asymmetric_index(trainer)
    original = trainer.pool[i].float() / 127.5 - 1
    index = torch.full((400,), i)
    state = trainer.batch_rng.state_dict()
    images = trainer.real_images(index)
    flipped = torch.tensor([torch.equal(image, original.flip(2)) for image in images])
    unchanged = torch.tensor([torch.equal(image, original) for image in images])
    assert (flipped ^ unchanged).all()  # each image is the original or its mirror image
    assert 160 <= int(flipped.sum()) <= 240  # Binomial(400, 1/2): 8 standard deviations
    trainer.batch_rng.load_state_dict(state)
    assert torch.equal(trainer.real_images(index), images)  # drawn from the run's batch stream
    trainer.train_cfg["mirror"] = False
    assert all(torch.equal(image, original) for image in trainer.real_images(index))


def test_mirrored_training_differs_and_resumes_exactly(minimal_config, data, tmp_path):
    spec = tiny_spec(minimal_config, kimg=0.064)
    spec["backbone"]["train"]["mirror"] = True
    whole, resumed = train_whole_and_split(spec, 0.032, lambda run: paths(data, tmp_path / run))
    assert whole["steps"] == resumed["steps"] == 8
    assert same_tensors(final_generator(tmp_path / "whole"), final_generator(tmp_path / "split"))
    plain = copy.deepcopy(spec)
    plain["backbone"]["train"]["mirror"] = False
    train_gan(plain, paths(data, tmp_path / "plain"), LOG)
    mirrored, unmirrored = (final_generator(tmp_path / run) for run in ("whole", "plain"))
    assert not same_tensors(mirrored, unmirrored)


class RisingFID:
    """Stands in for the loop's FID evaluator: 1, 2, 3, ... (every evaluation worse)."""

    calls = 0

    def __init__(self, *args, **kwargs):
        pass

    def fid(self, generator) -> float:
        RisingFID.calls += 1
        return float(RisingFID.calls)


@pytest.fixture
def rising_fid(monkeypatch, tmp_path):
    """The loop evaluates every 2 steps with ``RisingFID`` (no Inception network needed)."""
    RisingFID.calls = 0
    monkeypatch.setattr(loop, "_Evaluator", RisingFID)
    monkeypatch.setattr(loop, "InceptionFeatures", lambda *args, **kwargs: None)

    def with_fid(data, run_dir):
        run_paths = paths(data, run_dir)
        run_paths.reference_features = tmp_path / "unused-reference.npz"
        return run_paths

    return with_fid


def test_early_stop_is_recorded_and_a_rerun_writes_the_outputs_without_training(
    minimal_config, data, tmp_path, monkeypatch, rising_fid
):
    spec = tiny_spec(minimal_config, kimg=0.096)  # 12 steps at batch 8
    spec["backbone"]["train"].update(eval_every_kimg=0.016, patience=2)
    run_paths = rising_fid(data, tmp_path / "run")

    def crash(*args, **kwargs):
        raise RuntimeError("killed after the early stop, before the outputs")

    original_finish = loop._finish
    monkeypatch.setattr(loop, "_finish", crash)
    with pytest.raises(RuntimeError, match="killed after the early stop"):
        train_gan(spec, run_paths, LOG)
    # FID 1, 2, 3 at steps 2, 4, 6: two increases stop the run at step 6, in the checkpoint
    assert RisingFID.calls == 3
    (checkpoint,) = list_checkpoints(tmp_path / "run" / "train" / "checkpoints")[-1:]
    state = torch.load(checkpoint, weights_only=False)
    assert state["step"] == 6 and state["stopped_early"] is True
    assert not run_paths.network_out.exists()

    monkeypatch.setattr(loop, "_finish", original_finish)
    monkeypatch.setattr(GANTrainer, "train_step", crash)  # the rerun must not train
    summary = train_gan(spec, run_paths, LOG)
    assert RisingFID.calls == 3
    assert summary["steps"] == 6 and summary["stopped_early"] is True
    assert summary["best"]["fid"] == 1.0 and summary["best"]["step"] == 2
    snapshot = torch.load(run_paths.network_out, weights_only=False)
    best = torch.load(tmp_path / "run" / "train" / "best.pt", weights_only=True)
    assert same_tensors(snapshot["generator"], best)


def test_patience_zero_trains_the_whole_budget_and_keeps_the_best_snapshot(
    minimal_config, data, tmp_path, rising_fid
):
    spec = tiny_spec(minimal_config, kimg=0.096)
    spec["backbone"]["train"].update(eval_every_kimg=0.016, patience=0)
    summary = train_gan(spec, rising_fid(data, tmp_path / "run"), LOG)
    assert summary["steps"] == 12 and summary["stopped_early"] is False
    assert RisingFID.calls == 6 and summary["best"]["step"] == 2


def test_fp16_precision_builds_nvidias_networks_on_a_gpu_only(minimal_config, data, tmp_path):
    spec = tiny_spec(minimal_config)
    g_kwargs, d_kwargs = network_kwargs(spec, "fp16")
    for kwargs in (g_kwargs, d_kwargs):
        assert kwargs["num_fp16_res"] == 4 and kwargs["conv_clamp"] == 256.0
    g_kwargs, d_kwargs = network_kwargs(spec)
    assert g_kwargs["num_fp16_res"] == d_kwargs["num_fp16_res"] == 0
    assert g_kwargs["conv_clamp"] is d_kwargs["conv_clamp"] is None
    spec["backbone"]["train"]["precision"] = "fp16"
    trainer = GANTrainer(spec, paths(data, tmp_path), LOG)  # a CPU trains in float32
    assert trainer.precision == "fp32" and trainer.g_kwargs["num_fp16_res"] == 0


def test_fp16_steps_sanitise_gradients_as_nvidia(minimal_config, data, tmp_path):
    """NVIDIA's training loop replaces NaN gradients by 0 and infinite ones by +-1e5 before
    each step (it has no loss scaling); without that, one bad gradient ruins the weights."""
    spec = tiny_spec(minimal_config)
    weights = {}
    for precision in ("fp16", "fp32"):
        torch.manual_seed(0)
        trainer = GANTrainer(copy.deepcopy(spec), paths(data, tmp_path), LOG)
        trainer.precision = precision  # as on a GPU
        param = next(trainer.D.parameters())
        param.grad = torch.zeros_like(param)
        param.grad.view(-1)[:3] = torch.tensor([float("nan"), float("inf"), -float("inf")])
        trainer.optimizer_step(trainer.opt_d)
        weights[precision] = param.detach().clone()
        if precision == "fp16":
            assert param.grad.view(-1)[:3].tolist() == [0.0, 1e5, -1e5]
    assert torch.isfinite(weights["fp16"]).all()
    assert not torch.isfinite(weights["fp32"]).all()
