"""Several processes (``torchrun``): the process group, who writes, and work split by rows.

``genir run`` under ``torchrun --nproc_per_node N`` starts one process group from torchrun's environment
(``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``/``PORT``): nccl when the processes use GPUs,
gloo on CPUs. Every process runs the same stages in the same order; the work that is per row (documents
to encode, test queries to search) is split into contiguous shards and gathered, so every rank ends with
the whole result in the original order; only rank 0 writes files (``genir.io`` refuses to on other ranks).

Without a process group every function here is the one-process identity (rank 0 of 1).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")


def active() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if active() else 0


def world() -> int:
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    return rank() == 0


def init_from_env(device: str = "auto") -> str:
    """Start the process group when torchrun (or any launcher setting ``WORLD_SIZE`` > 1) started this
    process; returns the device this process uses (``cuda:LOCAL_RANK`` with GPUs). Idempotent."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return device
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        torch.cuda.set_device(local)
    if not active():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return f"cuda:{local}" if use_cuda else "cpu"


def barrier() -> None:
    if active():
        dist.barrier()


def shard_range(n: int, of_rank: int | None = None) -> range:
    """A rank's (this one's by default) contiguous share of ``n`` rows (shares differ by at most one row;
    some may be empty)."""
    r, w = rank() if of_rank is None else of_rank, world()
    return range(n * r // w, n * (r + 1) // w)


def gather_objects(part: T) -> list[T]:
    """Every rank's ``part``, in rank order, on every rank."""
    if not active():
        return [part]
    out: list[Any] = [None] * world()
    dist.all_gather_object(out, part)
    return out


def map_rows(fn: Callable[[Sequence], Any], rows: Sequence) -> Any:
    """``fn`` over ``rows`` split across ranks (each rank computes its contiguous shard in one call), the
    results concatenated in row order on every rank. ``fn`` returns a tensor, or a tuple of tensors, with
    one row per input row; they travel through all_gather (padded to the longest shard, on the collective
    device) and come back on the CPU. Without a process group: ``fn(rows)``."""
    if not active():
        return fn(rows)
    part = shard_range(len(rows))
    local = fn(rows[part.start: part.stop]) if len(part) else None
    single = torch.is_tensor(local)
    local = (local,) if single else local
    info = gather_objects(None if local is None else ([(tuple(t.shape[1:]), str(t.dtype)) for t in local], single))
    found = [i for i in info if i is not None]
    if not found:
        raise ValueError("map_rows: no rows")
    layout, single = found[0]
    sizes = [len(shard_range(len(rows), r)) for r in range(world())]
    out = [_gather_rows(None if local is None else local[j], sizes, tail, _dtype(dtype_name))
           for j, (tail, dtype_name) in enumerate(layout)]
    return out[0] if single else tuple(out)


def map_ragged(fn: Callable[[Sequence], tuple[torch.Tensor, torch.Tensor]],
               rows: Sequence) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`map_rows` for results of varying size per row: ``fn(rows)`` returns ``(values, lengths)``, row
    i's values the next ``lengths[i]`` of ``values`` (e.g. the states of a text's real tokens); the same over
    every row, in row order, on every rank. Without a process group: ``fn(rows)``."""
    if not active():
        return fn(rows)
    part = shard_range(len(rows))
    local = fn(rows[part.start: part.stop]) if len(part) else None
    info = gather_objects(None if local is None else
                          (tuple(local[0].shape[1:]), str(local[0].dtype), local[1].tolist()))
    found = [i for i in info if i is not None]
    if not found:
        raise ValueError("map_ragged: no rows")
    tail, dtype_name = found[0][0], found[0][1]
    totals = [0 if i is None else sum(i[2]) for i in info]
    values = _gather_rows(None if local is None else local[0], totals, tail, _dtype(dtype_name))
    return values, torch.tensor([n for i in found for n in i[2]], dtype=torch.long)


def _gather_rows(local: torch.Tensor | None, counts: list[int], tail: tuple, dtype: torch.dtype) -> torch.Tensor:
    """Rank r's first ``counts[r]`` rows of its ``local``, every rank's in rank order, on the CPU: one all_gather
    of buffers padded to the largest count, on the collective device."""
    wire = torch.uint8 if dtype == torch.bool else dtype  # gloo has no bool all_gather
    buf = torch.zeros((max(max(counts), 1), *tail), dtype=wire, device=collective_device())
    if local is not None:
        buf[: counts[rank()]] = local.to(device=buf.device, dtype=wire)
    parts = [torch.empty_like(buf) for _ in range(world())]
    dist.all_gather(parts, buf)
    return torch.cat([p[:n] for p, n in zip(parts, counts, strict=True)]).to("cpu", dtype=dtype)


def _dtype(name: str) -> torch.dtype:
    return getattr(torch, name.split(".")[-1])


def collective_device() -> torch.device:
    """Where tensors for collectives live: the GPU of this rank under nccl, else the CPU."""
    if active() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")
