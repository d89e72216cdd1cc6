"""Faults: killed trainings resume, corrupt checkpoints are skipped, NaN stops a run cleanly,
outputs are atomic, and a second Snakemake on the same results directory is refused."""

from __future__ import annotations

import copy
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from mixgan.io import atomic_open, write_json
from mixgan.report.tables import write_table
from mixgan.train.checkpoint import list_checkpoints, load_latest_checkpoint, save_checkpoint
from mixgan.train.gan import GANTrainer
from mixgan.train.loop import train_gan
from mixgan.train.paths import TrainingError, TrainPaths

from .conftest import REPO, final_generator, prepare_shapes_subset
from .test_gan_training import tiny_spec
from .test_workflow import snakemake, tiny_config

RESUMED = re.compile(r"resumed from checkpoint at step (\d+)")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data")
    prepare_shapes_subset(folder)
    return folder


def train_command(spec_path: Path, data: Path, run_dir: Path) -> list[str]:
    return [
        sys.executable, "-m", "mixgan", "train", "--spec", f"@{spec_path}",
        "--data", str(data / "p.zip"), "--subset", str(data / "n12.json"),
        "--run-dir", str(run_dir), "--network", str(run_dir / "network.pt"),
        "--curve", str(run_dir / "curve.csv"), "--run-json", str(run_dir / "run.json"),
        "--threads", "1",
    ]  # fmt: skip


def run_training(command: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO / "workflow"), "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)


def kill_after_checkpoint(command: list[str], run_dir: Path, sig: int, min_step: int) -> int:
    """Start a training, send ``sig`` once a checkpoint at ``min_step`` or later exists."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "workflow"), "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    folder = run_dir / "train" / "checkpoints"
    deadline = time.time() + 120
    while time.time() < deadline and process.poll() is None:
        steps = [int(p.name[5:14]) for p in list_checkpoints(folder)]
        if steps and max(steps) >= min_step:
            process.send_signal(sig)
            break
        time.sleep(0.05)
    process.communicate(timeout=120)
    return process.returncode


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_killed_training_resumes_and_equals_the_uninterrupted_run(
    minimal_config, data, tmp_path, sig
):
    spec = tiny_spec(minimal_config, kimg=2.4)  # 300 steps of batch 8, a checkpoint every 6
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(json.dumps(spec))
    whole = run_training(train_command(spec_path, data, tmp_path / "whole"))
    assert whole.returncode == 0, whole.stderr[-2000:]

    command = train_command(spec_path, data, tmp_path / "killed")
    code = kill_after_checkpoint(command, tmp_path / "killed", sig, min_step=30)
    # SIGTERM: the loop writes a checkpoint and exits 143; SIGKILL: the process just dies.
    assert code == (143 if sig == signal.SIGTERM else -signal.SIGKILL)
    assert not (tmp_path / "killed" / "network.pt").exists()
    again = run_training(command)
    assert again.returncode == 0, again.stderr[-2000:]
    resumed_at = int(RESUMED.search(again.stderr).group(1))
    assert 30 <= resumed_at < 300

    a, b = final_generator(tmp_path / "whole"), final_generator(tmp_path / "killed")
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=1e-6)
    summary = json.loads((tmp_path / "killed" / "run.json").read_text())["summary"]
    assert summary["steps"] == 300


def test_truncated_or_corrupt_checkpoint_falls_back_to_the_previous_one(tmp_path, caplog):
    folder = tmp_path / "checkpoints"
    for step in (10, 20, 30):
        save_checkpoint(folder, step, {"step": step, "weights": torch.full((4,), float(step))})
    assert [p.name for p in list_checkpoints(folder)] == ["ckpt-000000020.pt", "ckpt-000000030.pt"]

    newest = list_checkpoints(folder)[-1]
    newest.write_bytes(newest.read_bytes()[:100])  # truncated by a dying node
    with caplog.at_level(logging.WARNING):
        step, state = load_latest_checkpoint(folder)
    assert step == 20 and torch.equal(state["weights"], torch.full((4,), 20.0))
    assert "ckpt-000000030.pt is unusable" in caplog.text

    newest.write_bytes(b"\0" * 64)  # garbage, and no checksum sidecar to catch it first
    newest.with_suffix(".pt.sha256").unlink()
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert load_latest_checkpoint(folder)[0] == 20
    assert "unusable" in caplog.text


def test_training_resumes_from_the_previous_checkpoint_when_the_newest_is_corrupt(
    minimal_config, data, tmp_path, caplog
):
    spec = tiny_spec(minimal_config, kimg=0.096)  # checkpoints at steps 6 and 12
    paths = TrainPaths(
        data_zip=data / "p.zip", subset_manifest=data / "n12.json", run_dir=tmp_path,
        network_out=tmp_path / "network.pt", curve_out=tmp_path / "curve.csv",
    )  # fmt: skip
    half = copy.deepcopy(spec)
    half["backbone"]["train"]["kimg"] = 0.048 * 2
    train_gan(half, paths, logging.getLogger("test"))
    newest = list_checkpoints(tmp_path / "train" / "checkpoints")[-1]
    assert newest.name == "ckpt-000000012.pt"
    newest.write_bytes(newest.read_bytes()[:1000])
    spec["backbone"]["train"]["kimg"] = 0.144
    with caplog.at_level(logging.INFO):
        summary = train_gan(spec, paths, logging.getLogger("test"))
    assert "resumed from checkpoint at step 6" in caplog.text
    assert summary["steps"] == 18


def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(
    minimal_config, data, tmp_path, monkeypatch
):
    spec = tiny_spec(minimal_config, kimg=0.32)
    original = GANTrainer.train_step

    def poisoned_step(self):
        if self.step == 9:  # after the checkpoint at step 6: G's weights become NaN
            with torch.no_grad():
                next(self.G.parameters()).fill_(float("nan"))
        return original(self)

    monkeypatch.setattr(GANTrainer, "train_step", poisoned_step)
    paths = TrainPaths(
        data_zip=data / "p.zip", subset_manifest=data / "n12.json", run_dir=tmp_path,
        network_out=tmp_path / "network.pt", curve_out=tmp_path / "curve.csv",
    )  # fmt: skip
    with pytest.raises(TrainingError, match=r"non-finite loss_g.* at step \d+.*last good"):
        train_gan(spec, paths, logging.getLogger("test"))
    assert not (tmp_path / "network.pt").exists()
    step, state = load_latest_checkpoint(tmp_path / "train" / "checkpoints")
    assert step == 6
    assert all(torch.isfinite(t).all() for t in state["G"].values() if t.is_floating_point())


def test_nan_stops_the_command_with_a_clear_error(minimal_config, data, tmp_path):
    spec = tiny_spec(minimal_config, kimg=0.32)
    spec["backbone"]["train"]["lr"] = 1e30  # the weights overflow within a few steps
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(json.dumps(spec))
    result = run_training(train_command(spec_path, data, tmp_path / "run"))
    assert result.returncode == 3, result.stderr[-2000:]
    assert "non-finite" in result.stderr and "last good checkpoint" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run" / "network.pt").exists()


def test_interrupted_writes_leave_no_file_that_looks_complete(tmp_path, monkeypatch):
    target = tmp_path / "record.json"
    write_json(target, {"value": 1})
    with pytest.raises(KeyboardInterrupt), atomic_open(target) as handle:
        handle.write('{"value": 2, "trunc')
        raise KeyboardInterrupt
    assert json.loads(target.read_text()) == {"value": 1}  # the old complete file survives
    assert sorted(p.name for p in tmp_path.iterdir()) == ["record.json"]  # no temporary left

    cell = {
        "row": "r", "column": "col", "published_row": "r", "published_column": "col",
        "metric": "fid", "reference": "full", "runs": ["r/seed0"], "pending": "not yet",
    }  # fmt: skip
    spec = {"id": "t", "title": "t", "paper": "p", "labels": [], "cells": [cell]}

    def dies(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("mixgan.report.tables.markdown_table", dies)
    with pytest.raises(KeyboardInterrupt):
        write_table(spec, [], None, tmp_path / "t.csv", tmp_path / "t.md")
    assert not (tmp_path / "t.md").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_metric_command_interrupted_by_sigkill_leaves_no_output(tmp_path):
    """A metric job killed while it runs never leaves its JSON behind."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "workflow")}
    script = (
        "import time, mixgan.io as io\n"
        "with io.atomic_open(r'%s') as h:\n"
        "    h.write('{\"value\": ')\n    h.flush()\n    time.sleep(60)\n"
    ) % (tmp_path / "fid-full.json")
    process = subprocess.Popen([sys.executable, "-c", script], env=env)
    deadline = time.time() + 30
    while time.time() < deadline and not list(tmp_path.glob(".fid-full.json.*.tmp")):
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert not (tmp_path / "fid-full.json").exists()


@pytest.mark.slow
def test_a_second_snakemake_on_the_same_results_is_refused_by_the_lock(tmp_path):
    config = tiny_config(tmp_path / "weights")
    config["scorenets"]["tiny"].update(iterations=400, checkpoint_every=100)
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(config))
    target = "results/tiny/scorenets/shapes/n12/tiny/scorenet.pt"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = subprocess.Popen(
        [*snakemake_command(tmp_path), target, "--cores", "1", "--configfile", str(config_path)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )  # fmt: skip
    locks = tmp_path / ".snakemake" / "locks"
    deadline = time.time() + 120
    while time.time() < deadline and not (locks.is_dir() and any(locks.iterdir())):
        time.sleep(0.2)
    assert first.poll() is None, "the first invocation ended before the second could start"

    second = snakemake(tmp_path, target, "--cores", "1", "--configfile", str(config_path))
    assert second.returncode != 0
    assert "LockException" in second.stderr or "cannot be locked" in second.stderr
    output, _ = first.communicate(timeout=600)
    assert first.returncode == 0, output[-3000:]
    check = snakemake(tmp_path, target, "-n", "--configfile", str(config_path))
    assert check.returncode == 0 and "Nothing to be done" in check.stdout + check.stderr
    summary = json.loads((tmp_path / target).with_name("summary.json").read_text())
    assert summary["iterations"] == 400


def snakemake_command(workdir: Path) -> list[str]:
    return [
        sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
        "--directory", str(workdir),
    ]  # fmt: skip


def test_atomic_outputs_get_the_usual_permissions(tmp_path):
    mask = os.umask(0)
    os.umask(mask)
    write_json(tmp_path / "record.json", {"value": 1})
    assert (tmp_path / "record.json").stat().st_mode & 0o777 == 0o666 & ~mask
