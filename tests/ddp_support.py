"""Run a function in N real gloo processes (``torch.multiprocessing.spawn``) and collect what each returns.

The distributed tests (objectives, MoCo Shuffle BN, loader sharding) all need the same frame: a free port,
one process per rank with ``init_distributed`` on a ``DistEnv`` for 127.0.0.1, one torch thread (2-core
machines), each rank's results saved to a file and read back in rank order, and the process group torn
down. ``body(rank, *args)`` is a module-level function of the test (spawn pickles it by name) and returns a
dict of tensors and numbers.
"""
from __future__ import annotations

import socket
import tempfile
from pathlib import Path
from typing import Any, Callable, Dict, List

import torch
import torch.multiprocessing as mp

Body = Callable[..., Dict[str, Any]]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_main(rank: int, world: int, port: int, out_dir: str, body: Body, args: tuple) -> None:
    from ffcv_ssl import distributed
    from ffcv_ssl.distributed import DistEnv, init_distributed

    torch.set_num_threads(1)
    init_distributed(backend="gloo", env=DistEnv(rank=rank, world_size=world, local_rank=rank,
                                                 local_world_size=world, master_addr="127.0.0.1",
                                                 master_port=port))
    try:
        torch.save(body(rank, *args), Path(out_dir) / f"rank{rank}.pt")
    finally:
        distributed.cleanup()


def run_ranks(body: Body, *args: Any, world: int = 2) -> List[Dict[str, Any]]:
    """``body(rank, *args)`` on ``world`` gloo processes; their results, in rank order."""
    with tempfile.TemporaryDirectory(prefix="ddp_") as out:
        mp.spawn(_rank_main, args=(world, free_port(), out, body, args), nprocs=world, join=True)
        return [torch.load(Path(out) / f"rank{r}.pt", weights_only=False) for r in range(world)]
