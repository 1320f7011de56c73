"""Data-parallel runs under ``torchrun``: PyTorch's own process group (gloo on CPU, NCCL on GPUs).

``torchrun --nproc_per_node N chunkrl train ...`` starts N processes with ``RANK``/``WORLD_SIZE`` set;
``init()`` joins them into one group, rank 0 creates the run directory and tells the others where it
is. Only chunk-ppo trains this way (each rank collects its own rollouts, DistributedDataParallel
averages the gradients); rank 0 alone logs, evaluates and writes checkpoints.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import torch
import torch.distributed as dist


def init() -> int:
    """Join the process group when started by torchrun (WORLD_SIZE > 1); this process's rank (0 alone)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return 0
    if not dist.is_initialized():
        use_nccl = torch.cuda.is_available()
        if use_nccl:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if use_nccl else "gloo")
    return dist.get_rank()


def from_rank0(path: Path | None) -> Path:
    """Rank 0's value of ``path`` on every rank (no-op in a single process)."""
    if not dist.is_initialized():
        return path
    shared = [str(path) if dist.get_rank() == 0 else None]
    dist.broadcast_object_list(shared, src=0)
    return Path(shared[0])


def finish(wait: bool = True) -> None:
    """Leave the process group. ``wait``: every rank waits for the others first, so that none tears its
    connections down while another still talks to it (gloo can then abort a process at exit); after an error,
    when another rank may be inside a collective the failed one never joins, leave at once."""
    if dist.is_initialized():
        if wait:
            dist.barrier()
        dist.destroy_process_group()


def total(value: int) -> int:
    """The sum of ``value`` over the ranks (``value`` itself in a single process)."""
    if not dist.is_initialized():
        return value
    tensor = torch.tensor([value], dtype=torch.long)
    dist.all_reduce(tensor)
    settle(tensor)
    return int(tensor)


def mean(value: float) -> float:
    """The mean of ``value`` over the ranks (``value`` itself in a single process)."""
    if not dist.is_initialized():
        return value
    tensor = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(tensor)
    settle(tensor)
    return float(tensor) / dist.get_world_size()


def any_rank(flag: bool) -> bool:
    """Whether ``flag`` holds on any rank: every rank then takes the same branch (e.g. stops its epochs)."""
    return total(int(flag)) > 0


def settle(*tensors: torch.Tensor, timeout: float = 30.0) -> None:
    """Wait until the process group's worker threads have let go of ``tensors``, made in Python and just passed to a
    collective. A collective returns once its result is there, but the worker thread that ran it drops its own
    references a moment later; if the interpreter is already shutting down by then (after the last collective
    of a run) and Python had let go first, that release needs the interpreter lock, cannot have it, and the
    process aborts ("terminate called without an active exception": torchrun then reports a failed rank).
    ``destroy_process_group`` does not prevent it once DistributedDataParallel has been used: the group outlives
    it with its threads. Sleeping hands the lock to a worker that waits for it."""
    deadline = time.monotonic() + timeout
    for tensor in tensors:
        while tensor._use_count() > 1:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"a collective's tensor is still held by {tensor._use_count() - 1} other reference(s) after "
                    f"{timeout:.0f} s: the process group's worker thread has not let go of it"
                )
            time.sleep(1e-4)
