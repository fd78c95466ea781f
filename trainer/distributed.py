"""Device selection and multi-process data parallelism through ``torch.distributed``.

Launch with torchrun (``torchrun --standalone --nproc_per_node N -m trainer fit ...``): it sets ``RANK``,
``WORLD_SIZE`` and ``LOCAL_RANK``, and :func:`setup` joins the process group (NCCL on CUDA, gloo otherwise). Without
those variables everything runs in one process and every collective below is a no-op. Only rank 0 writes files
(checkpoints, TensorBoard, summaries): check :attr:`DistContext.is_main`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from runtime.errors import ConfigError

DEVICES = ("auto", "cpu", "cuda", "mps")


@dataclass(frozen=True)
class DistContext:
    """Where this process runs: ``rank`` of ``world_size`` processes, on ``device``."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        """True on the process that writes files and prints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """True when more than one process takes part."""
        return self.world_size > 1


def select_device(preference: str = "auto", *, local_rank: int = 0) -> torch.device:
    """``auto`` picks CUDA (``cuda:local_rank``), then Apple MPS, then CPU; a named device must be available."""
    if preference not in DEVICES:
        raise ConfigError("train.device", f"must be one of {DEVICES}, got {preference!r}")
    has_mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if preference == "cuda" or (preference == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise ConfigError("train.device", "cuda was asked for but torch sees no CUDA device")
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    if preference == "mps" or (preference == "auto" and has_mps):
        if not has_mps:
            raise ConfigError("train.device", "mps was asked for but this torch build/machine has no MPS")
        return torch.device("mps")
    return torch.device("cpu")


def launched_by_torchrun() -> bool:
    """True when torchrun's environment (``WORLD_SIZE`` > 1) is present."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def setup(device: str = "auto") -> DistContext:
    """Join the process group when launched by torchrun, pick this process's device; returns its context."""
    if not launched_by_torchrun():
        return DistContext(device=select_device(device))
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    chosen = select_device(device, local_rank=local_rank)
    if not dist.is_initialized():
        backend = "nccl" if chosen.type == "cuda" else "gloo"
        if chosen.type == "cuda":
            torch.cuda.set_device(chosen)
        dist.init_process_group(backend=backend)
    return DistContext(rank=rank, world_size=world, local_rank=local_rank, device=chosen)


def teardown(ctx: DistContext) -> None:
    """Leave the process group (no-op in a single process)."""
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()


def wrap(model: nn.Module, ctx: DistContext) -> nn.Module:
    """``DistributedDataParallel`` around ``model`` when distributed, else ``model`` itself."""
    if not ctx.distributed:
        return model
    ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def all_reduce_sum(values: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Element-wise sum of ``values`` over all processes (returns ``values`` unchanged in one process)."""
    if ctx.distributed:
        values = values.to(ctx.device)
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def barrier(ctx: DistContext) -> None:
    """Wait for every process (no-op in one process)."""
    if ctx.distributed:
        dist.barrier()


def shard(indices: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """This rank's strided share of ``indices`` (evaluation; every rank's shares together cover all once)."""
    return indices[ctx.rank::ctx.world_size]


def epoch_order(n: int, ctx: DistContext, *, seed: int, epoch: int) -> list[int]:
    """This rank's shuffled positions ``0..n-1`` for ``epoch`` (``DistributedSampler``; depends only on seed/epoch).

    Every rank draws the same permutation and takes its own equal share (padded by repetition), so resuming at an
    epoch reproduces its order exactly and ranks never overlap.
    """
    from torch.utils.data import DistributedSampler

    sampler = DistributedSampler(range(n), num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True, seed=seed)
    sampler.set_epoch(epoch)
    return list(sampler)
