"""The local fork server (mixgan.forkserver): a job run through it behaves as the same command
run by a fresh interpreter (exit status, output into the job's redirections, working directory,
environment), falls back to running itself without a server, and stops when cancelled."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from mixgan import forkserver

from .test_vote import write_tasks

BAD_CONFIG = "datasets: {shapes: {}}\nnot_a_key: 1\n"
# Jobs call the venv's `python`, Snakemake may run as its `python3.11`: one interpreter. The
# server starts as sys.executable; the jobs here use another link to it where the venv has one.
_LINK = Path(sys.prefix) / "bin" / "python3"
PYTHON = str(_LINK) if _LINK.exists() and str(_LINK) != sys.executable else sys.executable
ONE_THREAD = dict.fromkeys(forkserver.THREAD_VARS, "1")  # what Snakemake sets for threads: 1


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[subprocess.Popen, str]]:
    process, path = forkserver.start()
    deadline = time.monotonic() + 120
    while not os.path.exists(path):
        assert process.poll() is None, "the fork server exited"
        assert time.monotonic() < deadline, "the fork server did not listen"
        time.sleep(0.1)
    yield process, path
    forkserver.stop(process, path)
    assert process.returncode is not None and not Path(path).parent.exists()


def mixgan(argv: list[str], cwd: Path, out: Path, env: dict[str, str]) -> int:
    """``python -m mixgan <argv>`` with stdout and stderr into ``out``, as a rule runs it."""
    with open(out, "w") as log:
        command = [PYTHON, "-m", "mixgan", *argv]
        return subprocess.run(command, cwd=cwd, env=env, stdout=log, stderr=log).returncode


def test_a_job_in_the_server_matches_a_fresh_interpreter(server, tmp_path: Path) -> None:
    """Same exit status and output; the config path is resolved in the job's directory."""
    _, path = server
    (tmp_path / "bad.yaml").write_text(BAD_CONFIG)
    argv = ["validate", "--configfile", "bad.yaml", "--no-check-paths"]
    env = {**{k: v for k, v in os.environ.items() if k != forkserver.ENV_VAR}, **ONE_THREAD}
    fresh = mixgan(argv, tmp_path, tmp_path / "fresh.log", env)
    served = mixgan(argv, tmp_path, tmp_path / "served.log", {**env, forkserver.ENV_VAR: path})
    assert fresh == served == 2
    strip = lambda log: [line.split(" ", 2)[-1] for line in log.read_text().splitlines()]  # noqa: E731
    assert strip(tmp_path / "served.log") == strip(tmp_path / "fresh.log")
    assert "datasets.shapes: 'path' is a required property" in (tmp_path / "served.log").read_text()


def test_the_server_runs_the_job_with_its_environment(server, tmp_path, monkeypatch) -> None:
    """Called in this process: a status comes back (None would mean 'run it yourself'), and
    the worker saw this process's environment, not the server's."""
    _, path = server
    (tmp_path / "bad.yaml").write_text(BAD_CONFIG)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(forkserver.ENV_VAR, path)
    for name, value in ONE_THREAD.items():
        monkeypatch.setenv(name, value)
    argv = ["validate", "--configfile", "bad.yaml", "--no-check-paths"]
    assert forkserver.run_in_server(argv) == 2
    monkeypatch.setenv("PYTHONPATH", "/nonexistent")  # ignored by a forked worker
    assert forkserver.run_in_server(argv) == 2
    other = {**forkserver._identity(), "prefix": "/another/venv"}
    monkeypatch.setattr(forkserver, "_identity", lambda: other)
    assert forkserver.run_in_server(argv) is None  # refused: another environment's client
    monkeypatch.undo()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(forkserver.ENV_VAR, str(tmp_path / "no-server"))
    assert forkserver.run_in_server(argv) is None
    monkeypatch.delenv(forkserver.ENV_VAR)
    assert forkserver.run_in_server(argv) is None


def test_the_server_is_single_threaded_and_serves_one_thread_jobs(server, monkeypatch) -> None:
    """NumPy's and SciPy's BLAS size their thread pools once, when loaded (two more threads on
    a 2-core machine without the variables): the server loads them with one thread, as a fresh
    job of ``threads: 1`` does, and a job asking for two threads runs itself."""
    process, path = server
    assert psutil.Process(process.pid).num_threads() == 1
    monkeypatch.setenv(forkserver.ENV_VAR, path)
    for name, value in ONE_THREAD.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "2")
    assert forkserver.run_in_server(["validate", "--help"]) is None


def start_vote(tmp_path: Path, path: str, name: str) -> tuple[subprocess.Popen, Path]:
    """``mixgan vote`` (runs until stopped) through the server; returns once it answers."""
    port, log_path = free_port(), tmp_path / f"{name}.log"
    argv = [PYTHON, "-m", "mixgan", "vote", "--tasks", str(write_tasks(tmp_path, 2))]
    argv += ["--db", str(tmp_path / f"{name}.sqlite"), "--port", str(port)]
    with open(log_path, "w") as log:
        client = subprocess.Popen(
            argv, env={**os.environ, **ONE_THREAD, forkserver.ENV_VAR: path}, stdout=log, stderr=log
        )
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as answer:
                assert json.load(answer)["ok"]
                return client, log_path
        except OSError:
            assert client.poll() is None and time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.1)


def test_a_cancelled_job_stops_its_worker(server, tmp_path: Path) -> None:
    """SIGTERM to the job (Snakemake cancelling it) reaches the worker: the vote server there
    shuts down cleanly (status 0); a job killed outright takes its worker with it."""
    process, path = server
    client, log = start_vote(tmp_path, path, "term")
    workers = psutil.Process(process.pid).children()
    assert len(workers) == 1 and workers[0].pid != client.pid  # served by a forked worker
    client.send_signal(signal.SIGTERM)
    assert client.wait(timeout=30) == 0
    assert "stopped" in log.read_text()
    psutil.wait_procs(workers, timeout=10)
    assert not psutil.Process(process.pid).children()

    client, log = start_vote(tmp_path, path, "kill")
    workers = psutil.Process(process.pid).children()
    client.kill()
    client.wait(timeout=10)
    gone, alive = psutil.wait_procs(workers, timeout=10)
    assert len(gone) == 1 and not alive
