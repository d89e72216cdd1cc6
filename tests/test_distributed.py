"""One run on several processes (``mixgan.train.distributed``), on the CPU with gloo.

Two processes, started once per module (``torch.multiprocessing.spawn``, with torchrun's
environment variables), train every 2-rank run the tests compare: 2 ranks x batch 8 against
1 process x batch 16; a 2-rank run stopped half-way and resumed against an uninterrupted one;
a 2-rank run resumed by 1 process. They also check the synchronised BatchNorm against
BatchNorm on the whole batch.

Equality with 1 process: every random draw that makes the global batch (latents, real
indices, x-flips, style mixing, path-length noise) is shared, so the two runs see the same
samples; StyleGAN2's per-pixel noise inputs, drawn inside the synthesis layers from each
rank's own stream, are the one difference of inputs. The equality tests hold them at their
constant mode in both runs (``constant_noise``); then the weights agree to float32 rounding
(sums in another order): observed max |difference| 3.7e-7 after 4 steps, tolerance 1e-5.
With the random noise the same comparison gives 1.2e-2 (Adam's first steps move each weight
by about the learning rate whichever the sign of its gradient, and the noise strengths'
gradients depend on the noise drawn).
"""

from __future__ import annotations

import copy
import json
import logging
import os
import signal
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from mixgan.errors import ConfigError
from mixgan.nets.stylegan2 import SynthesisLayer
from mixgan.train import distributed
from mixgan.train.checkpoint import list_checkpoints
from mixgan.train.gan import GANTrainer
from mixgan.train.launch import launcher, train_processes
from mixgan.train.loop import train_gan
from mixgan.train.paths import Interrupted, TrainPaths

from .conftest import final_generator, same_tensors
from .test_gan_training import tiny_spec

pytestmark = pytest.mark.usefixtures("one_thread")
LOG = logging.getLogger("test")
WORLD = 2
STEPS = 4  # of the equality test
TOLERANCE = 1e-5  # max |difference| of any weight (observed: 3.7e-7)


def run_paths(data: Path, run_dir: Path) -> TrainPaths:
    return TrainPaths(
        data / "p.zip", data / "n12.json", run_dir, run_dir / "network.pt", run_dir / "curve.csv"
    )


def equality_spec(minimal_config: dict[str, Any], steps: int = STEPS) -> dict[str, Any]:
    """Tiny StyleGAN2, method none, global batch 16, ``steps`` steps with lazy R1, path-length
    regularisation and style mixing in them (x-flips on)."""
    spec = tiny_spec(minimal_config, method="none")
    spec["backbone"]["train"].update(
        batch=16, kimg=16 * steps / 1000, r1_interval=2, pl_interval=2, mirror=True,
        checkpoint_every_kimg=1.0, log_every_kimg=0.016,
    )  # fmt: skip
    return spec


def resume_spec(minimal_config: dict[str, Any], kimg: float) -> dict[str, Any]:
    """Tiny StyleGAN2 with DiffAugment and LeCam, global batch 8, checkpoints every 4 steps."""
    config = copy.deepcopy(minimal_config)
    config["parts"].update(diffaug={"kind": "diffaug"}, lecam={"kind": "lecam", "weight": 0.3})
    config["methods"]["diffaug_lecam"] = ["diffaug", "lecam"]
    config["tables"]["scoremix_table1"]["rows"].append({"method": "diffaug_lecam"})
    spec = tiny_spec(config, method="diffaug_lecam", kimg=kimg)
    spec["backbone"]["train"].update(checkpoint_every_kimg=0.032, pl_interval=2)
    return spec


def batchnorm_case() -> tuple[torch.Tensor, nn.BatchNorm2d]:
    """An input batch of 8 and a BatchNorm layer with affine parameters."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(8, 3, 4, 4, generator=generator) * 2 + 1
    layer = nn.BatchNorm2d(3)
    with torch.no_grad():
        layer.weight.copy_(torch.rand(3, generator=generator) + 0.5)
        layer.bias.copy_(torch.randn(3, generator=generator))
    return x, layer


def batchnorm_results(
    x: torch.Tensor, layer: nn.Module, rows: slice = slice(None)
) -> dict[str, torch.Tensor]:
    """Output, gradients (of a fixed weighting of the whole batch's output) and running
    statistics, of the ``rows`` of the batch."""
    x = x[rows].clone().requires_grad_(True)
    out = layer(x)
    weights = torch.arange(8 * 3 * 4 * 4, dtype=out.dtype).view(8, 3, 4, 4).sin()
    (out * weights[rows]).sum().backward()
    return {
        "out": out.detach(), "x_grad": x.grad, "weight_grad": layer.weight.grad,
        "bias_grad": layer.bias.grad, "running_mean": layer.running_mean.clone(),
        "running_var": layer.running_var.clone(),
    }  # fmt: skip


@contextmanager
def constant_noise() -> Iterator[None]:
    """StyleGAN2's noise inputs at their constant mode (the one input each rank draws itself)."""
    forward = SynthesisLayer.forward
    SynthesisLayer.forward = lambda self, x, w, noise_mode="random": forward(self, x, w, "const")
    try:
        yield
    finally:
        SynthesisLayer.forward = forward


def train_killed(spec: dict[str, Any], paths: TrainPaths, signal_rank: int) -> None:
    """Train ``spec``; rank ``signal_rank`` gets SIGTERM during step 2 (as from SLURM), so
    every rank stops after it, rank 0 checkpoints step 3; then the rerun resumes."""
    step = GANTrainer.train_step

    def train_step(self: GANTrainer) -> dict[str, torch.Tensor]:
        if self.step == 2 and distributed.rank() == signal_rank:
            os.kill(os.getpid(), signal.SIGTERM)
        return step(self)

    GANTrainer.train_step = train_step
    try:
        train_gan(spec, paths, LOG)
        raise AssertionError("the signal did not stop the run")
    except Interrupted:
        pass
    finally:
        GANTrainer.train_step = step
    if distributed.is_main():
        names = [c.name for c in list_checkpoints(paths.work_dir / "checkpoints")]
        (paths.run_dir / "stopped.json").write_text(json.dumps(names))
    train_gan(spec, paths, LOG)


def _rank_main(rank: int, port: int, jobs: list[tuple[str, Any, Any]]) -> None:
    """One rank: join the group as torchrun's environment describes it, run the jobs."""
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
        WORLD_SIZE=str(WORLD), LOCAL_RANK=str(rank), OMP_NUM_THREADS="1",
    )  # fmt: skip
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    try:
        for kind, payload, out in jobs:
            if kind == "batchnorm":
                x, layer = batchnorm_case()
                layer = distributed.sync_batchnorm(layer)
                results = batchnorm_results(x, layer, slice(rank, None, WORLD))
                torch.save(results, out / f"bn{rank}.pt")
            elif kind == "train_constant_noise":
                with constant_noise():
                    train_gan(payload, out, LOG)
            elif kind == "train_killed":
                train_killed(payload, out, signal_rank=1)
            else:
                train_gan(payload, out, LOG)
    finally:
        dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def two_rank_runs(tmp_path_factory, data) -> Path:
    """Every 2-rank run of this module, trained in one spawn of two processes (~15 s)."""
    from .conftest import MINIMAL_CONFIG

    root = tmp_path_factory.mktemp("ranks")
    config = copy.deepcopy(MINIMAL_CONFIG)
    full, half = resume_spec(config, 0.064), resume_spec(config, 0.032)
    jobs = [
        ("batchnorm", None, root),
        ("train_constant_noise", equality_spec(config), run_paths(data, root / "two")),
        ("train_constant_noise", equality_spec(config, 2), run_paths(data, root / "two_to_one")),
        ("train", full, run_paths(data, root / "whole")),
        ("train", half, run_paths(data, root / "split")),
        ("train", full, run_paths(data, root / "split")),  # resumes at step 4 of 8
        ("train_killed", full, run_paths(data, root / "killed")),
    ]
    mp.spawn(_rank_main, args=(free_port(), jobs), nprocs=WORLD, join=True)
    return root


def last_checkpoint(run_dir: Path) -> dict[str, Any]:
    return torch.load(list_checkpoints(run_dir / "train" / "checkpoints")[-1], weights_only=False)


def max_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    """The largest |difference| of two state dicts' floating-point entries."""
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a if a[k].is_floating_point())


def test_synchronised_batchnorm_equals_batchnorm_on_the_whole_batch(two_rank_runs):
    x, layer = batchnorm_case()
    whole = batchnorm_results(x, layer)
    ranks = [torch.load(two_rank_runs / f"bn{r}.pt") for r in range(WORLD)]
    out = torch.empty_like(whole["out"])
    x_grad = torch.empty_like(whole["x_grad"])
    for r, result in enumerate(ranks):
        out[r::WORLD], x_grad[r::WORLD] = result["out"], result["x_grad"]
    torch.testing.assert_close(out, whole["out"], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(x_grad, whole["x_grad"], rtol=1e-4, atol=1e-5)
    for key in ("weight_grad", "bias_grad"):  # each rank's share; the trainer averages them
        torch.testing.assert_close(sum(r[key] for r in ranks), whole[key], rtol=1e-4, atol=1e-5)
    for key in ("running_mean", "running_var"):
        for result in ranks:
            torch.testing.assert_close(result[key], whole[key], rtol=1e-5, atol=1e-6)


def test_two_ranks_of_batch_8_train_as_one_process_of_batch_16(
    two_rank_runs, minimal_config, data, tmp_path
):
    with constant_noise():
        train_gan(equality_spec(minimal_config), run_paths(data, tmp_path), LOG)
    two, one = last_checkpoint(two_rank_runs / "two"), last_checkpoint(tmp_path)
    assert two["step"] == one["step"] == STEPS
    assert two["images_seen"] == one["images_seen"] == 16 * STEPS
    for net in ("G", "D", "G_ema"):
        assert max_difference(two[net], one[net]) < TOLERANCE, net
    assert float(two["pl_mean"]) == pytest.approx(float(one["pl_mean"]), rel=1e-5)
    curves = [pd.read_csv(folder / "curve.csv") for folder in (two_rank_runs / "two", tmp_path)]
    columns = ["loss_g", "loss_d", "r1", "pl"]  # the ranks' mean statistics
    pd.testing.assert_frame_equal(curves[0][columns], curves[1][columns], rtol=1e-4)


def test_a_two_rank_run_resumed_by_one_process_goes_on_as_the_two_rank_run(
    two_rank_runs, minimal_config, data
):
    run_dir = two_rank_runs / "two_to_one"
    assert last_checkpoint(run_dir)["step"] == 2
    with constant_noise():
        summary = train_gan(equality_spec(minimal_config), run_paths(data, run_dir), LOG)
    assert summary["steps"] == STEPS
    resumed, two = last_checkpoint(run_dir), last_checkpoint(two_rank_runs / "two")
    for net in ("G", "D", "G_ema"):
        assert max_difference(resumed[net], two[net]) < TOLERANCE, net


def test_a_stopped_two_rank_run_resumes_to_the_uninterrupted_one(two_rank_runs):
    whole, split = two_rank_runs / "whole", two_rank_runs / "split"
    assert [c.name for c in list_checkpoints(split / "train" / "checkpoints")] == [
        "ckpt-000000004.pt", "ckpt-000000008.pt",
    ]  # fmt: skip
    assert same_tensors(final_generator(whole), final_generator(split))
    a, b = last_checkpoint(whole), last_checkpoint(split)
    for net in ("G", "D", "G_ema"):
        assert same_tensors(a[net], b[net]), net
    assert len(a["rng_ranks"]) == WORLD
    assert all(
        torch.equal(x["torch"], y["torch"])
        for x, y in zip(a["rng_ranks"], b["rng_ranks"], strict=True)
    )
    curves = [
        pd.read_csv(d / "curve.csv").drop(columns=["seconds", "sec_per_kimg"])
        for d in (whole, split)
    ]
    pd.testing.assert_frame_equal(*curves)


def test_a_two_rank_run_killed_on_one_rank_resumes_to_the_uninterrupted_one(two_rank_runs):
    whole, killed = two_rank_runs / "whole", two_rank_runs / "killed"
    assert json.loads((killed / "stopped.json").read_text()) == ["ckpt-000000003.pt"]
    assert same_tensors(final_generator(whole), final_generator(killed))
    a, b = last_checkpoint(whole), last_checkpoint(killed)
    for net in ("G", "D", "G_ema"):
        assert same_tensors(a[net], b[net]), net


def test_a_batch_the_ranks_cannot_split_is_an_error_naming_the_key(monkeypatch):
    monkeypatch.setattr(distributed, "world_size", lambda: 3)
    with pytest.raises(ValueError, match=r"train\.batch 16 .* 3 processes"):
        distributed.local_batch(16)


def test_the_processes_of_a_training_job_follow_its_gpus():
    assert train_processes(0, None) == train_processes(1, None) == 1
    assert train_processes(4, None) == train_processes(4, 4) == 4
    assert train_processes(0, 2) == 2
    with pytest.raises(ConfigError, match="resources.train.processes"):
        train_processes(4, 2)
    assert launcher(1) == "python"
    assert launcher(4).endswith("torch.distributed.run --standalone --nproc_per_node 4")
