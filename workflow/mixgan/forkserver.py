"""A fork server for local runs: jobs start as forks of one warm process, not new interpreters.

Each job of the workflow is ``python -m mixgan <command>``; on a CPU, starting Python and
importing torch and the package takes 2-3 s of a job that may compute for one. With
``fork_server: true`` in the config, Snakemake's ``onstart`` starts one server per local run
(``start``) that imports torch, ``torch._dynamo`` (which torch's optimizers import on first use),
numpy, scipy, pandas and the package once, then forks a worker per job:

* the job's ``python -m mixgan ...`` (``mixgan.__main__``) connects to the server's Unix socket
  (``MIXGAN_FORK_SERVER``), sends its arguments, working directory and environment, and its
  stdin/stdout/stderr file descriptors (so the rule's ``> {log} 2>&1`` holds);
* the worker takes them over and runs ``mixgan.cli.main`` as a fresh process would (environment
  replaced, NumPy's global RNG re-seeded from the OS as at an interpreter's start, Python's
  ``random`` re-seeded by CPython itself, torch's default generator untouched since the server
  draws nothing, signal dispositions reset), and sends back the exit status, which the client
  exits with;
* a signal to the client (Snakemake cancelling the job) is forwarded to the worker, and a worker
  whose client vanished is terminated.

The client runs the command itself when no server is configured, reachable, or matching (same
interpreter and package, and one thread: ``THREAD_VARS`` = 1, which Snakemake sets for a rule of
``threads: 1``; NumPy's and SciPy's BLAS and torch read them once, when loaded, so the server
loads them single-threaded and a job asking for more threads starts its own interpreter).
Forking after importing torch, without running any op, is what PyTorch's DataLoader workers do
on Linux. The server stops with the run (``onsuccess`` / ``onerror``) or when Snakemake dies.
Jobs started this way have their wall time in the benchmark files; their CPU time and memory
are the worker's, not the (tiny) client's that Snakemake's benchmark sees. Off by default: on a
cluster every job runs on its own node.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

ENV_VAR = "MIXGAN_FORK_SERVER"
PRELOAD = (
    "torch",
    "torch._dynamo",
    "numpy",
    "scipy.linalg",
    "pandas",
    "PIL.Image",
    "mixgan.cli",
    "mixgan.train.loop",
    "mixgan.metrics.inception",
)
# Thread counts that libraries read once, at load (Snakemake sets all of them for each job)
THREAD_VARS = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "GOTO_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)
_STATUS = struct.Struct("!i")
_MAX_REQUEST = 16 * 2**20


def _identity() -> dict[str, str]:
    """What a client and its server must share: the interpreter and environment (``python``
    and ``python3.11`` of one venv are the same), this package's files and the thread counts."""
    return {
        "executable": os.path.realpath(sys.executable),
        "prefix": sys.prefix,
        "package": str(Path(__file__).resolve().parent),
        "threads": " ".join(f"{name}={os.environ.get(name, '')}" for name in THREAD_VARS),
    }


# -- client ---------------------------------------------------------------------------------


def run_in_server(argv: list[str]) -> int | None:
    """Run ``mixgan <argv>`` in the fork server of ``MIXGAN_FORK_SERVER``; its exit status,
    or ``None`` when there is no usable server (then the caller runs the command itself)."""
    path = os.environ.get(ENV_VAR)
    if not path:
        return None
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        client.connect(path)
    except OSError:
        client.close()
        return None
    request = {"argv": argv, "cwd": os.getcwd(), "env": dict(os.environ), **_identity()}
    with client:
        payload = json.dumps(request).encode()
        try:
            socket.send_fds(client, [_STATUS.pack(len(payload)) + payload], [0, 1, 2])
            accepted = client.recv(1)
        except OSError:  # e.g. no stdin to hand over: run here
            return None
        if accepted != b"y":
            return None
        forwarded = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
        for signum in forwarded:
            signal.signal(signum, lambda signum, _: client.sendall(bytes([signum])))
        status = b""
        while len(status) < _STATUS.size:
            chunk = client.recv(_STATUS.size - len(status))
            if not chunk:  # the worker died without reporting (killed)
                return 1
            status += chunk
        return _STATUS.unpack(status)[0]


# -- server ---------------------------------------------------------------------------------


def _receive(connection: socket.socket) -> tuple[dict, list[int]]:
    header, fds, _, _ = socket.recv_fds(connection, _STATUS.size + 65536, 3)
    (size,) = _STATUS.unpack(header[: _STATUS.size])
    if size > _MAX_REQUEST:
        raise ValueError(f"fork server request of {size} bytes")
    body = bytearray(header[_STATUS.size :])
    while len(body) < size:
        chunk = connection.recv(size - len(body))
        if not chunk:
            raise ConnectionError("client closed the connection mid-request")
        body += chunk
    return json.loads(body), fds


def _watch_client(connection: socket.socket) -> None:
    """Forward the client's signals to this worker; terminate it if the client is gone."""
    while True:
        data = connection.recv(1)
        if not data:
            os.kill(os.getpid(), signal.SIGTERM)
            return
        os.kill(os.getpid(), data[0])


def _become_job(request: dict, fds: list[int]) -> None:
    """Turn this freshly forked worker into the job's process."""
    import numpy as np

    for signum in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # KeyboardInterrupt, as Python's
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    sys.argv = ["mixgan", *request["argv"]]
    np.random.seed()  # noqa: NPY002  (the legacy global RNG, seeded from the OS as at start)


def _worker(connection: socket.socket) -> None:
    """In the forked child: run one job and report its status; never returns."""
    code = 1
    try:
        request, fds = _receive(connection)
        if {k: request.get(k) for k in _identity()} != _identity():
            connection.sendall(b"n")
            os._exit(0)
        _become_job(request, fds)
        connection.sendall(b"y")
        threading.Thread(target=_watch_client, args=(connection,), daemon=True).start()
        from mixgan.cli import main

        try:
            code = main(request["argv"]) or 0
        except SystemExit as stop:
            if isinstance(stop.code, str):
                print(stop.code, file=sys.stderr)
            code = stop.code if isinstance(stop.code, int) else int(stop.code is not None)
        except BaseException:
            import traceback

            traceback.print_exc()
            code = 1
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        connection.sendall(_STATUS.pack(code))
    finally:
        os._exit(code)


def serve(path: str, parent: int) -> None:
    """Preload, listen on ``path`` and fork a worker per connection until ``parent`` exits or
    the server is terminated."""
    import importlib

    for module in PRELOAD:
        importlib.import_module(module)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # workers are reaped by the kernel
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path + ".tmp")
    os.replace(path + ".tmp", path)  # clients see the socket only once it listens
    listener.listen(64)
    listener.settimeout(1.0)
    try:
        while os.getppid() == parent:
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            connection.settimeout(None)
            if os.fork() == 0:
                listener.close()
                _worker(connection)
            connection.close()
    finally:
        Path(path).unlink(missing_ok=True)


def start() -> tuple[subprocess.Popen, str]:
    """Start a server for this process's jobs: the process and its socket path (to set as
    ``MIXGAN_FORK_SERVER``). Jobs that start before it listens run on their own."""
    path = str(Path(tempfile.mkdtemp(prefix="mixgan-fork-")) / "socket")
    command = [sys.executable, "-m", "mixgan.forkserver", path, str(os.getpid())]
    environment = {**os.environ, **dict.fromkeys(THREAD_VARS, "1")}
    return subprocess.Popen(command, stdin=subprocess.DEVNULL, env=environment), path


def stop(process: subprocess.Popen, path: str, timeout: float = 10.0) -> None:
    """Stop a server started by :func:`start` and remove its socket directory."""
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    Path(path).unlink(missing_ok=True)
    Path(path).parent.rmdir()


if __name__ == "__main__":
    serve(sys.argv[1], int(sys.argv[2]))
