"""How a GAN training job starts its processes (no torch import: the Snakefile reads it).

``resources.train.gpu: N`` (N > 1) runs the training under ``torchrun`` with N processes on
the job's node, one per GPU (``mixgan.train.distributed``); the SLURM profile asks for the N
GPUs through the rule's ``gpu`` resource (``--gpus=N`` for the job and its one ``srun`` task).
``resources.train.processes`` sets the count without GPUs (gloo on the CPU: tests, debugging);
with GPUs it may only repeat ``gpu``.
"""

from __future__ import annotations

from mixgan.errors import ConfigError

#: torchrun as a module of the job's interpreter; ``--standalone`` picks a free local port, so
#: several multi-process jobs can share a node
TORCHRUN = "python -m torch.distributed.run --standalone --nproc_per_node {processes}"


def train_processes(gpu: int, processes: int | None) -> int:
    """The processes of one training job: ``processes`` if set, else one per GPU (at least
    one); a ``processes`` other than a positive ``gpu`` is an error naming the key."""
    if processes is None:
        return max(gpu, 1)
    if processes < 1 or (gpu > 0 and processes != gpu):
        raise ConfigError(
            [
                f"resources.train.processes: {processes} with gpu: {gpu}; a job runs one process "
                "per GPU (set processes only without GPUs, or equal to gpu)"
            ]
        )
    return processes


def launcher(processes: int) -> str:
    """The command that runs ``-m mixgan train ...``: ``python``, or torchrun with
    ``processes`` workers."""
    return "python" if processes == 1 else TORCHRUN.format(processes=processes)
