"""Training and heavy evaluation across processes: torchrun, DistributedDataParallel, shards.

Everything here is a no-op on one process: `python -m ...` runs exactly as before. Under
`torchrun --nproc_per_node N [--nnodes M ...] -m <module> ...` the environment names each
process's rank, and

- `init()` joins the process group (NCCL on CUDA, gloo on the CPU) and picks the process's device;
- `models.train.train` wraps each training step in `DistributedDataParallel` and feeds every rank
  its own shard of each batch through a `DistributedSampler` (`sharded_loader`): with the global
  batch size kept, the union of the ranks' shards at a step is the batch one process would see
  from the same sampler, so gradients average to the single-process gradient;
- `is_main()` tells which process writes files (checkpoints, results): rank 0, atomically;
- `shard` / `gather` split a list of work items (examples of a reference or a benchmark) over the
  ranks and put the results back in their original order on every rank.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Callable, Sequence
from typing import TypeVar

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler

T = TypeVar("T")


def active() -> bool:
    """Whether this process belongs to an initialised process group (of any size)."""
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if active() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    """The process that writes files: rank 0, or the only process."""
    return rank() == 0


def launched() -> bool:
    """Whether torchrun (or another launcher) started this process: WORLD_SIZE is set."""
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def init(backend: str | None = None, timeout_s: float = 1800) -> torch.device:
    """Join the process group when launched by torchrun; return this process's device.

    Without a launcher it does nothing and returns CUDA when present, else the CPU. The backend
    is NCCL with CUDA and gloo without, unless given.
    """
    cuda = torch.cuda.is_available()
    if not launched():
        return torch.device("cuda" if cuda else "cpu")
    local = int(os.environ.get("LOCAL_RANK", 0))
    if cuda:
        if local >= torch.cuda.device_count():
            raise RuntimeError(f"LOCAL_RANK {local} but only {torch.cuda.device_count()} GPUs are "
                               "visible; start at most that many processes per node "
                               "(torchrun --nproc_per_node)")
        torch.cuda.set_device(local)
    if not active():
        dist.init_process_group(backend or ("nccl" if cuda else "gloo"),
                                timeout=datetime.timedelta(seconds=timeout_s))
    return torch.device(f"cuda:{local}" if cuda else "cpu")


def barrier() -> None:
    if active() and world_size() > 1:
        dist.barrier()


def close() -> None:
    """Leave the process group (at the end of a torchrun job)."""
    if active():
        dist.destroy_process_group()


def sharded_loader(loader: DataLoader, seed: int) -> DataLoader:
    """The loader's dataset, this rank's shard of every global batch (DistributedSampler).

    The global batch size is kept: each of the W ranks gets batch_size / W rows (it must divide).
    Shuffling follows the loader's (a RandomSampler shuffles, anything else keeps the order); the
    sampler's order comes from `seed` and the epoch (call `set_epoch`), so every run with the same
    seed, on any number of processes, sees the same global batches.
    """
    world = world_size()
    if loader.batch_size is None or loader.batch_size % world:
        raise ValueError(f"a global batch of {loader.batch_size} rows cannot be split evenly over "
                         f"{world} processes; choose a batch size divisible by the process count")
    sampler = DistributedSampler(loader.dataset, num_replicas=world, rank=rank(),
                                 shuffle=isinstance(loader.sampler, RandomSampler), seed=seed,
                                 drop_last=False)
    return DataLoader(loader.dataset, batch_size=loader.batch_size // world, sampler=sampler,
                      num_workers=loader.num_workers, collate_fn=loader.collate_fn,
                      drop_last=loader.drop_last, pin_memory=loader.pin_memory)


def all_sum(values: Sequence[float], device: torch.device | str = "cpu") -> list[float]:
    """Sums of `values` over the ranks (float64), the values themselves on one process."""
    if not active() or world_size() == 1:
        return [float(v) for v in values]
    t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def shard(items: Sequence[T]) -> list[tuple[int, T]]:
    """This rank's items with their positions: items rank, rank + W, rank + 2W, ..."""
    return [(i, items[i]) for i in range(rank(), len(items), world_size())]


def gather(mine: list[tuple[int, T]], total: int) -> list[T]:
    """Every rank's (position, result) pairs merged in position order, on every rank."""
    if not active() or world_size() == 1:
        found = dict(mine)
    else:
        parts: list = [None] * world_size()
        dist.all_gather_object(parts, mine)
        found = {i: r for part in parts for i, r in part}
    missing = sorted(set(range(total)) - set(found))
    if missing:
        raise RuntimeError(f"results for positions {missing[:10]} came back from no rank")
    return [found[i] for i in range(total)]


def map_sharded(fn: Callable[[T], object], items: Sequence[T]) -> list:
    """[fn(item) for item in items], the items split over the ranks, the results on every rank."""
    return gather([(i, fn(item)) for i, item in shard(items)], len(items))
