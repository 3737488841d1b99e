"""torch.distributed under torchrun: process-group set-up and the few collectives zoo needs.

zoo never launches processes or moves bytes itself: ``torchrun`` starts one process per rank and
sets ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``/``MASTER_ADDR``/``MASTER_PORT``; :func:`init` joins the
group over ``env://`` with gloo on the CPU and NCCL on CUDA. Outside torchrun every function here
is the single-process identity (rank 0 of 1), so library code calls them unconditionally.

What is spread over ranks:
  - training (``zoo.train``): DistributedDataParallel, the global batch split over ranks;
  - sampling and features inside :func:`sharded`: rank r computes a contiguous block of whole
    batches and the blocks are gathered in rank order, so every rank ends with the full result,
    identical to one process that uses the same batches.
"""
from __future__ import annotations

import contextlib
import contextvars
import json
import os
from datetime import timedelta
from typing import Iterator

import torch
import torch.distributed as dist

from .errors import ZooError

_SHARDED: contextvars.ContextVar[bool] = contextvars.ContextVar("zoo_sharded", default=False)


def launched() -> bool:
    """True when torchrun (or another env:// launcher) started this process as one of several."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init(device: str = "cpu") -> str:
    """Join the process group when :func:`launched` (once); returns the device this rank uses.

    ``cuda`` becomes ``cuda:<LOCAL_RANK>`` (one GPU per process, NCCL); anything else uses gloo.
    """
    if not launched():
        return device
    dev = torch.device(device)
    if dev.type == "cuda":
        if dev.index is None:
            dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(dev)
    elif dev.type != "cpu":
        raise ZooError(f"--device {device}: distributed runs use cpu (gloo) or cuda (NCCL)")
    if not dist.is_initialized():
        for key in ("RANK", "MASTER_ADDR", "MASTER_PORT"):
            if key not in os.environ:
                raise ZooError(f"WORLD_SIZE is set but {key} is not: start distributed runs with torchrun")
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo", timeout=timedelta(minutes=30))
    return str(dev)


def shutdown(clean: bool = True) -> None:
    """Leave the process group, if joined. ``clean`` (the command succeeded on this rank): first wait
    until every rank is here, so that no rank tears gloo down while another still talks to it (a
    rank that exits first can make the other abort with "terminate called without an active
    exception" on a loaded machine). The wait is bounded on gloo and skipped after a failure, where
    the other ranks may never arrive."""
    if not (dist.is_available() and dist.is_initialized()):
        return
    if clean and active():
        try:
            if dist.get_backend() == "gloo":
                dist.monitored_barrier(timeout=timedelta(seconds=120))
            else:
                barrier()
        except RuntimeError:   # a rank that failed or left: tear down all the same
            pass
    dist.destroy_process_group()


def active() -> bool:
    """True inside a process group of more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def world() -> int:
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    """Rank 0: the one process that writes files and prints."""
    return rank() == 0


def barrier() -> None:
    if active():
        dist.barrier()


def _comm_device() -> torch.device:
    """Where collective tensors must live: the current GPU for NCCL, else the CPU."""
    if active() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce(t: torch.Tensor, op: str = "sum") -> torch.Tensor:
    """``t`` reduced over ranks (sum, max or mean), as a new tensor on ``t``'s device."""
    if not active():
        return t.clone()
    buf = t.detach().to(_comm_device()).clone()
    if op == "mean":
        dist.all_reduce(buf, dist.ReduceOp.SUM)
        buf /= world()
    else:
        dist.all_reduce(buf, {"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX}[op])
    return buf.to(t.device)


def broadcast_(t: torch.Tensor) -> torch.Tensor:
    """Overwrite ``t`` in place with rank 0's value; returns ``t``."""
    if active():
        buf = t.detach().to(_comm_device()).contiguous()
        dist.broadcast(buf, 0)
        with torch.no_grad():
            t.copy_(buf.to(t.device))
    return t


def broadcast_state(module: torch.nn.Module) -> None:
    """Every parameter and buffer of ``module`` set to rank 0's values."""
    if active():
        for t in list(module.parameters()) + list(module.buffers()):
            broadcast_(t.data)


def broadcast_json(obj):
    """Rank 0's JSON-able ``obj`` on every rank (as JSON text in a byte tensor: nothing is pickled)."""
    if not active():
        return obj
    data = torch.tensor(list(json.dumps(obj).encode()) if is_main() else [], dtype=torch.uint8)
    size = broadcast_(torch.tensor([data.numel()], dtype=torch.long))
    buf = data if is_main() else torch.zeros(int(size), dtype=torch.uint8)
    return json.loads(bytes(broadcast_(buf).tolist()).decode())


def all_gather_rows(t: torch.Tensor) -> torch.Tensor:
    """The ranks' tensors (n_r, ...) concatenated in rank order on every rank (rows may differ in number)."""
    if not active():
        return t
    dev = _comm_device()
    n = torch.tensor([t.shape[0]], dtype=torch.long, device=dev)
    sizes = [torch.zeros_like(n) for _ in range(world())]
    dist.all_gather(sizes, n)
    sizes = [int(s) for s in sizes]
    pad = torch.zeros((max(sizes), *t.shape[1:]), dtype=t.dtype, device=dev)
    pad[:t.shape[0]] = t.to(dev)
    parts = [torch.empty_like(pad) for _ in sizes]
    dist.all_gather(parts, pad)
    return torch.cat([p[:s] for p, s in zip(parts, sizes)]).to(t.device)


def block(count: int) -> range:
    """This rank's contiguous share of ``count`` items (ranks differ in size by at most one)."""
    r, w = rank(), world()
    return range(count * r // w, count * (r + 1) // w)


@contextlib.contextmanager
def sharded() -> Iterator[None]:
    """Within this block, :meth:`zoo.api.Generator.sample` and the metric feature extractors split
    their batches over the ranks and gather the results (a no-op in one process)."""
    token = _SHARDED.set(True)
    try:
        yield
    finally:
        _SHARDED.reset(token)


def sharding() -> bool:
    """True inside :func:`sharded` with more than one rank."""
    return _SHARDED.get() and active()


def my_batches(n: int, batch_size: int) -> tuple[range, int, int]:
    """(batch indices, first row, end row) that this rank computes of ``n`` rows taken
    ``batch_size`` at a time: a contiguous block of whole batches inside :func:`sharded`, every
    batch otherwise. Rows [first, end) of the result are this rank's; :func:`gather_shard` joins them."""
    count = -(-n // batch_size)
    mine = block(count) if sharding() else range(count)
    return mine, mine.start * batch_size, min(mine.stop * batch_size, n)


def gather_shard(rows: torch.Tensor) -> torch.Tensor:
    """Inside :func:`sharded`, every rank's rows from :func:`my_batches` in order; else ``rows``."""
    return all_gather_rows(rows) if sharding() else rows


def rank_seed(seed: int) -> int:
    """The global-RNG seed of this rank in training: ``seed`` itself on rank 0 (so one process is
    unchanged), a SeedSequence mix of (seed, rank) elsewhere (independent noise per rank)."""
    r = rank()
    if r == 0:
        return seed
    import numpy as np
    return int(np.random.SeedSequence([int(seed), r, 0x7A6F6F]).generate_state(1, np.uint32)[0])


def replicas_agree(module: torch.nn.Module) -> bool:
    """True when every rank holds bitwise the same parameters and buffers as the others (compared
    through one float64 checksum per tensor; always True in one process)."""
    if not active():
        return True
    sums = torch.stack([t.detach().double().sum() for t in list(module.parameters()) + list(module.buffers())])
    return bool(torch.equal(all_reduce(sums, "max"), all_reduce(-sums, "max").neg()))
