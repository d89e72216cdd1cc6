"""The SLURM profile against a real scheduler: a one-node slurm-wlm cluster on this machine.

Three trainings of a tiny study run through ``snakemake --profile profiles/slurm`` with the
SLURM executor. One is cancelled with ``scancel``, one requeued with ``scontrol requeue`` and
one hits its one-minute walltime; each must end complete, resumed from its checkpoint (the
step is in its log), not restarted from zero. Skipped only where SLURM cannot be installed
or started (``tests/slurm/start_local_cluster.sh``: needs root and Debian's packages).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from mixgan.train.checkpoint import list_checkpoints

from .conftest import REPO
from .test_workflow import tiny_config

pytestmark = pytest.mark.slow

RUN_ROOT = "results/tiny/runs/shapes/n12"
STARTED = re.compile(r"starting from scratch")
RESUMED = re.compile(r"resumed from checkpoint at step (\d+)")
# which run gets which fault: (backbone, seed) -> fault
FAULTS = {("sg2", 0): "scancel", ("sg2", 1): "requeue", ("sg2_long", 0): "walltime"}


@pytest.fixture(scope="module")
def cluster():
    script = REPO / "tests" / "slurm" / "start_local_cluster.sh"
    try:
        result = subprocess.run([str(script)], capture_output=True, text=True, timeout=900)
    except (OSError, subprocess.TimeoutExpired) as error:
        pytest.skip(f"SLURM cannot be installed or started here: {error}")
    if result.returncode != 0:
        pytest.skip(f"SLURM cannot be installed or started here: {result.stderr[-500:]}")


def study_config(workdir: Path) -> dict:
    """Two short trainings (~30 s) and one long (~2 min): one minute of walltime each."""
    config = tiny_config(workdir / "weights")
    config["seeds"] = [0, 1]
    base = config["backbones"]["sg2"]
    base["train"] = {
        **base["train"], "kimg": 4.0, "eval_every_kimg": 4.0, "checkpoint_every_kimg": 0.2,
        "log_every_kimg": 0.2,
    }  # fmt: skip
    config["backbones"]["sg2_long"] = {**base, "train": {**base["train"], "kimg": 24.0}}
    config["backbones"]["sg2_long"]["train"]["eval_every_kimg"] = 24.0
    config["resources"] = {
        "default": {"mem_mb": 1000, "runtime": 10},
        "train": {"cpus": 1, "mem_mb": 1500, "runtime": 1, "runtime_growth": 4},
    }
    config["tables"]["scoremix_table1"]["rows"] = [
        {"method": "none", "backbone": "sg2"},
        {"method": "none", "backbone": "sg2_long"},
    ]
    return config


def slurm_jobs() -> list[tuple[str, str, str]]:
    """(job id, comment, state) of every job SLURM still knows (MinJobAge keeps finished ones)."""
    out = subprocess.run(
        ["squeue", "--states=all", "-h", "-o", "%i|%k|%T"], capture_output=True, text=True
    ).stdout
    return [tuple(line.split("|", 2)) for line in out.splitlines() if line.count("|") == 2]


def run_of(comment: str) -> tuple[str, int] | None:
    # the executor's comment: rule_<rule>_wildcards_<the wildcard values joined by "_">
    match = re.fullmatch(r"rule_train_gan_wildcards_shapes_n12_(.+)_none_(\d+)", comment)
    return (match.group(1), int(match.group(2))) if match else None


def test_cancelled_requeued_and_timed_out_trainings_resume_from_their_checkpoints(
    cluster, tmp_path
):
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(study_config(tmp_path)))
    targets = [f"{RUN_ROOT}/{backbone}/none/seed{seed}/run.json" for backbone, seed in FAULTS]
    command = [
        sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
        "--directory", str(tmp_path), *targets, "--profile", str(REPO / "profiles" / "slurm"),
        "--configfile", str(config_path), "--slurm-no-account",
        "--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "5",
        "--default-resources", "slurm_partition=debug", "mem_mb=1000", "runtime=10",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    log_path = tmp_path / "snakemake.out"
    with open(log_path, "w") as log:
        workflow = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)

    done: dict[tuple[str, int], str] = {}  # run -> SLURM job id the fault was applied to
    deadline = time.time() + 1200
    while workflow.poll() is None and time.time() < deadline:
        for job_id, comment, state in slurm_jobs():
            run = run_of(comment)
            if FAULTS.get(run, "walltime") == "walltime" or run in done or state != "RUNNING":
                continue  # the walltime run is left alone: its one-minute limit kills it
            checkpoints = tmp_path / RUN_ROOT / run[0] / "none" / f"seed{run[1]}" / "train"
            if not list_checkpoints(checkpoints / "checkpoints"):
                continue
            fault = FAULTS[run]
            if fault == "scancel":
                subprocess.run(["scancel", job_id], check=True)
            elif fault == "requeue":
                subprocess.run(["scontrol", "requeue", job_id], check=True)
            done[run] = job_id
        time.sleep(1)
    if workflow.poll() is None:
        workflow.kill()
    output = log_path.read_text()
    assert workflow.returncode == 0, output[-5000:]
    assert "fork server:" not in output  # the config asks for one: local runs only
    assert set(done) == {run for run, fault in FAULTS.items() if fault != "walltime"}

    states = {(job_id, state) for job_id, _, state in slurm_jobs()}
    report = {}
    for (backbone, seed), fault in FAULTS.items():
        run_dir = tmp_path / RUN_ROOT / backbone / "none" / f"seed{seed}"
        summary = json.loads((run_dir / "run.json").read_text())["summary"]
        train_log = (
            tmp_path / f"results/tiny/logs/train/shapes/n12/{backbone}/none/seed{seed}.log"
        ).read_text()
        # Snakemake starts each attempt with a fresh log: the last attempt's must say where it
        # resumed, and that it did not start from scratch.
        assert not STARTED.search(train_log), train_log[-3000:]
        resumed = [int(step) for step in RESUMED.findall(train_log)]
        assert resumed and 0 < resumed[0] < summary["steps"], train_log[-3000:]
        kimg = 24.0 if backbone == "sg2_long" else 4.0
        assert summary["kimg_trained"] == pytest.approx(kimg)
        report[fault] = {"resumed_at_step": resumed, "steps": summary["steps"]}
        if fault == "scancel":
            assert (done[(backbone, seed)], "CANCELLED") in states
        if fault == "walltime":
            assert any(
                state == "TIMEOUT" and run_of(comment) == (backbone, seed)
                for _, comment, state in slurm_jobs()
            )
    requeued = subprocess.run(
        ["scontrol", "show", "job", done[("sg2", 1)]], capture_output=True, text=True
    ).stdout
    assert re.search(r"Restarts=[1-9]", requeued), requeued
    print(json.dumps(report, indent=2))
