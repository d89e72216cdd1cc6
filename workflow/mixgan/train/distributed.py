"""One GAN run on several processes (one per GPU), launched by ``torchrun`` in the run's job.

``resources.train.gpu: N`` starts N processes on one node (``mixgan.study.train_launcher``).
Each holds the whole G and D and trains on ``train.batch / N`` samples of the global batch;
after every backward pass the gradients of the parameters the step's optimiser updates are
averaged over the ranks in one flat all-reduce before the optimiser step, as NVIDIA's
stylegan2-ada-pytorch does (training_loop.py, "Update weights") rather than through
``DistributedDataParallel``: the lazy R1 and path-length steps differentiate twice and the
method parts add loss terms and modules, which all reach the optimiser as ordinary gradients.
Batch statistics kept as state are made global: BatchNorm layers of G and D become
:class:`SyncBatchNorm2d` (global mean and variance, gradients through them included), the
trainer averages its per-rank running buffers (StyleGAN2's ``w_avg``) every step, and the
path-length mean, ADA's sign statistic and LeCam's anchors use all-reduced batch means.

Random numbers come from two streams. :class:`SharedRandom`, seeded alike on every rank,
draws what makes the global batch (latents, real indices, x-flips, style mixing, path-length
noise) at the global size, and rank r keeps rows r, r + N, r + 2N, ...: the N-process run
sees the samples of the one-process run, and D's minibatch-stddev groups (sample i in group
i mod batch/G) stay the same ones. Everything else (the synthesis noise, the parts'
augmentations) draws from each rank's own global torch/NumPy/Python RNG: every rank builds the
networks from the run seed (and takes rank 0's weights), then ranks above 0 reseed from
(seed, rank). Checkpoints hold the shared stream and every
rank's own streams; a run resumed with as many processes continues exactly, and with another
count a rank without a stored stream is seeded from (seed, step, rank).

Rank 0 writes checkpoints, curves, records and logs and runs the FID evaluations (the
sampled images are the one-process run's); its early-stopping decision and any rank's stop
signal are shared, so every rank stops at the same step. With one process every function here
is a no-op, and nothing changes.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn

from mixgan.train.checkpoint import rng_state, seed_everything, set_rng_state

#: how long a rank waits in a collective: the others wait while rank 0 evaluates FID
COLLECTIVE_TIMEOUT = datetime.timedelta(hours=1)


def world_size() -> int:
    """The number of processes of this run (1 without a process group)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    """This process's rank (0 without a process group)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main() -> bool:
    """True on the rank that writes checkpoints, curves, records and logs."""
    return rank() == 0


@contextmanager
def process_group(device: torch.device) -> Iterator[None]:
    """Join the process group torchrun's environment describes (``WORLD_SIZE`` > 1): NCCL
    with one GPU per process (``LOCAL_RANK``) on CUDA, gloo on the CPU. Does nothing for one
    process, or when the caller already joined a group."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        yield
        return
    if device.type == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, timeout=COLLECTIVE_TIMEOUT)
    try:
        yield
    finally:
        dist.destroy_process_group()


def local_device(device: torch.device) -> torch.device:
    """``device`` with this process's GPU index (``cuda`` -> ``cuda:<current>``)."""
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", torch.cuda.current_device())
    return device


def local_batch(batch: int) -> int:
    """Each rank's share of the global ``train.batch``; an error naming the key when the
    processes cannot split it evenly."""
    world = world_size()
    if batch % world:
        raise ValueError(
            f"train.batch {batch} cannot be split across {world} processes "
            f"(resources.train.gpu): make it a multiple of {world}"
        )
    return batch // world


def rank_seed(seed: int, rank_index: int) -> int:
    """The seed of a rank's own streams: the run seed on rank 0, a mixed one elsewhere."""
    if rank_index == 0:
        return seed
    return int(np.random.SeedSequence([seed, rank_index]).generate_state(1)[0])


class SharedRandom:
    """Draws of the global batch, identical on every rank; each rank keeps its rows
    (r, r + N, ...). Counts are per rank: ``randn(8, ...)`` on 2 ranks draws 16 rows."""

    def __init__(self, seed: int, device: torch.device):
        self.device = device
        self.cpu = torch.Generator().manual_seed(seed)
        self.on_device = (
            self.cpu if device.type == "cpu" else torch.Generator(device).manual_seed(seed)
        )

    @staticmethod
    def _mine(values: Tensor) -> Tensor:
        return values[rank() :: world_size()]

    def randn(self, count: int, *shape: int) -> Tensor:
        """Standard normal ``[count, *shape]`` on the run's device."""
        full = torch.randn(
            count * world_size(), *shape, generator=self.on_device, device=self.device
        )
        return self._mine(full)

    def randint(self, high: int, count: int) -> Tensor:
        """``count`` integers in [0, high) on the CPU."""
        return self._mine(torch.randint(high, (count * world_size(),), generator=self.cpu))

    def rand(self, count: int) -> Tensor:
        """``count`` uniforms in [0, 1) on the CPU."""
        return self._mine(torch.rand(count * world_size(), generator=self.cpu))

    def scalar(self) -> float:
        """One uniform in [0, 1), the same on every rank."""
        return float(torch.rand((), generator=self.cpu))

    def integer(self, low: int, high: int) -> int:
        """One integer in [low, high), the same on every rank."""
        return int(torch.randint(low, high, (), generator=self.cpu))

    def state_dict(self) -> dict[str, Tensor]:
        return {"cpu": self.cpu.get_state(), "device": self.on_device.get_state()}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        self.cpu.set_state(state["cpu"])
        self.on_device.set_state(state["device"])


def seed_rank(seed: int) -> None:
    """Give this rank its own streams (Python, NumPy, torch) once everything shared is built:
    ranks above 0 are reseeded, rank 0 goes on with the run seed's streams."""
    if rank() > 0:
        seed_everything(rank_seed(seed, rank()))


def broadcast_modules(modules: list[nn.Module]) -> None:
    """Rank 0's parameters and buffers of ``modules`` on every rank."""
    if world_size() > 1:
        for module in modules:
            for tensor in (*module.parameters(), *module.buffers()):
                dist.broadcast(tensor.data, 0)


def gather_rng_states() -> list[dict[str, Any]]:
    """Every rank's own RNG streams, in rank order (a collective with several processes)."""
    if world_size() == 1:
        return [rng_state()]
    states: list[Any] = [None] * world_size()
    dist.all_gather_object(states, rng_state())
    return states


def restore_rng_state(states: list[dict[str, Any]], seed: int, step: int) -> None:
    """This rank's streams from a checkpoint's list; a rank it has none for (resumed with
    more processes) is seeded from (seed, step, rank)."""
    if rank() < len(states):
        set_rng_state(states[rank()])
    else:
        seed_everything(rank_seed(seed + step, rank()))


def average_gradients(params: Iterable[Tensor]) -> None:
    """Average the gradients of ``params`` over the ranks (one all-reduce per dtype).
    Parameters without a gradient are skipped: every rank runs the same step, so the same
    parameters have gradients everywhere."""
    world = world_size()
    if world == 1:
        return
    by_dtype: dict[torch.dtype, list[Tensor]] = {}
    for param in params:
        if param.grad is not None:
            by_dtype.setdefault(param.grad.dtype, []).append(param.grad)
    for grads in by_dtype.values():
        flat = torch.cat([grad.flatten() for grad in grads])
        dist.all_reduce(flat)
        flat /= world
        _unflatten(flat, grads)


def mean_over_ranks(values: Tensor) -> Tensor:
    """The mean of ``values`` over the ranks (detached; ``values`` itself with one process)."""
    if world_size() == 1:
        return values
    values = values.detach().clone()
    dist.all_reduce(values)
    return values / world_size()


def gather_over_ranks(values: Tensor) -> Tensor:
    """Every rank's ``values`` concatenated along dim 0, in rank order (detached)."""
    if world_size() == 1:
        return values
    pieces = [torch.empty_like(values) for _ in range(world_size())]
    dist.all_gather(pieces, values.detach().contiguous())
    return torch.cat(pieces)


def average_buffers(module: nn.Module, names: tuple[str, ...]) -> None:
    """Average the buffers of ``module`` whose names end in one of ``names`` over the ranks:
    running statistics each rank updates from its share of the batch (StyleGAN2's
    ``w_avg``), which are then those of the global batch (the updates are affine)."""
    if world_size() == 1 or not names:
        return
    buffers = [b for key, b in module.named_buffers() if key.endswith(names)]
    if buffers:
        _unflatten(mean_over_ranks(torch.cat([b.flatten() for b in buffers])), buffers)


def _unflatten(flat: Tensor, tensors: list[Tensor]) -> None:
    """Copy consecutive pieces of ``flat`` into ``tensors``."""
    pieces = flat.split([t.numel() for t in tensors])
    torch._foreach_copy_(tensors, [p.view_as(t) for p, t in zip(pieces, tensors, strict=True)])


def step_means(stats: dict[str, Tensor], flag: bool) -> tuple[dict[str, float], bool]:
    """A step's scalar statistics averaged over the ranks, and whether ``flag`` is true on
    any rank (a stop signal), in one all-reduce and one device sync."""
    values = torch.stack([*stats.values(), torch.ones_like(next(iter(stats.values()))) * flag])
    means = mean_over_ranks(values.float()).tolist()
    return dict(zip(stats, means[:-1], strict=True)), means[-1] > 0


def from_main(flag: bool, device: torch.device) -> bool:
    """Rank 0's ``flag`` on every rank."""
    if world_size() == 1:
        return flag
    value = torch.tensor(float(flag), device=device)
    dist.broadcast(value, 0)
    return bool(value > 0)


def barrier() -> None:
    """Wait for every rank (nothing with one process)."""
    if world_size() > 1:
        dist.barrier()


class _GlobalSum(torch.autograd.Function):
    """The sum over the ranks, differentiable: each rank's input gradient is the sum of the
    ranks' output gradients (every rank's loss depends on every rank's input)."""

    @staticmethod
    def forward(ctx: Any, values: Tensor) -> Tensor:
        values = values.clone()
        dist.all_reduce(values)
        return values

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


class SyncBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training-mode statistics are those of the global batch (mean and
    variance all-reduced, gradients through them too), on the CPU (gloo) as on GPUs;
    ``torch.nn.SyncBatchNorm`` runs on GPUs only. Plain BatchNorm with one process and in
    eval mode; the state dict is BatchNorm2d's."""

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or world_size() == 1:
            return super().forward(x)
        momentum = self.momentum
        if self.track_running_stats:
            self.num_batches_tracked.add_(1)
            if momentum is None:
                momentum = 1.0 / float(self.num_batches_tracked)
        dims, shape = [0, 2, 3], (1, -1, 1, 1)
        count = x.numel() // x.shape[1] * world_size()
        xf = x.float()
        mean = _GlobalSum.apply(xf.sum(dims)) / count
        centred = xf - mean.view(shape)
        var = _GlobalSum.apply(centred.square().sum(dims)) / count
        if self.track_running_stats:
            with torch.no_grad():
                self.running_mean.lerp_(mean.detach(), momentum)
                self.running_var.lerp_(var.detach() * count / max(count - 1, 1), momentum)
        y = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(x.dtype)


def sync_batchnorm(module: nn.Module) -> nn.Module:
    """``module`` with every BatchNorm2d synchronised across the ranks (in place: the class
    of each layer changes, its parameters and buffers stay); unchanged with one process."""
    if world_size() > 1:
        for layer in module.modules():
            if type(layer) is nn.BatchNorm2d:
                layer.__class__ = SyncBatchNorm2d
    return module
