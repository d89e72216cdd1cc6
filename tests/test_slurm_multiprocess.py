"""A two-process training (``resources.train.processes: 2``: torchrun, gloo on the CPU) as
one job of the local SLURM cluster (``tests/test_slurm.py``), through the real profile."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
import yaml

from mixgan.train.checkpoint import list_checkpoints

from .conftest import REPO
from .test_slurm import RUN_ROOT, cluster  # noqa: F401 - the fixture
from .test_workflow import tiny_config

pytestmark = pytest.mark.slow


def test_a_two_process_training_completes_as_one_slurm_job(cluster, tmp_path):  # noqa: F811
    config = tiny_config(tmp_path / "weights")
    config["resources"] = {
        "default": {"mem_mb": 1000, "runtime": 10},
        "train": {"processes": 2, "cpus": 2, "mem_mb": 3000, "runtime": 10},
    }
    config["tables"]["scoremix_table1"]["rows"] = [{"method": "none"}]
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(config))
    target = f"{RUN_ROOT}/sg2/none/seed0/run.json"
    run_dir = tmp_path / RUN_ROOT / "sg2" / "none" / "seed0"
    command = [
        sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
        "--directory", str(tmp_path), target,
        "--profile", str(REPO / "profiles" / "slurm"), "--configfile", str(config_path),
        "--slurm-no-account", "--slurm-status-command", "squeue",
        "--slurm-init-seconds-before-status-checks", "5",
        "--default-resources", "slurm_partition=debug", "mem_mb=1000", "runtime=10",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
    assert result.returncode == 0, (result.stdout + result.stderr)[-5000:]
    assert "--nproc_per_node 2 -m mixgan train" in result.stdout + result.stderr

    summary = json.loads((run_dir / "run.json").read_text())["summary"]
    assert summary["processes"] == 2
    assert summary["kimg_trained"] == pytest.approx(config["backbones"]["sg2"]["train"]["kimg"])
    assert len(summary["fid_history"]) == 2  # rank 0's evaluations
    checkpoint = torch.load(
        list_checkpoints(run_dir / "train" / "checkpoints")[-1], weights_only=False
    )
    assert len(checkpoint["rng_ranks"]) == 2
