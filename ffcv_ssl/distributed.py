"""torch.distributed for training: process layout from torchrun or SLURM, init, and the collectives we need.

One process per device. The layout comes from torchrun's variables (RANK, WORLD_SIZE, LOCAL_RANK, ... also
what submitit's ``TorchDistributedEnvironment().export()`` sets) or, failing those, from the SLURM task
variables of an ``srun`` step (SLURM_PROCID, SLURM_STEP_NUM_TASKS, SLURM_LOCALID, the first host of the node
list as MASTER_ADDR and a port derived from the job id). Every helper works without an initialised process
group (single process), so library code calls them unconditionally.
"""
from __future__ import annotations

import os
import random
import re
import shutil
import subprocess
import warnings
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import List, Mapping, Optional

import torch
import torch.distributed as dist

from .errors import UserError

__all__ = [
    "DistEnv", "init_distributed", "cleanup", "get_rank", "get_world_size", "is_main", "barrier",
    "all_gather_with_grad", "all_gather_no_grad", "all_reduce_mean", "per_process_batch", "parse_nodelist",
]


@dataclass(frozen=True)
class DistEnv:
    """Where this process sits in the job.

    Attributes:
        rank: global rank.
        world_size: number of processes.
        local_rank: rank on this node (selects the GPU).
        local_world_size: processes on this node.
        master_addr: host of rank 0.
        master_port: TCP port of the rendezvous.
        source: 'torchrun', 'slurm' or 'single' (where the values came from).
        device: the device this process uses, set by ``init_distributed`` ('cpu' before).
        backend: the process-group backend, set by ``init_distributed`` ('' when not distributed).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    master_addr: str = "127.0.0.1"
    master_port: int = 29500
    source: str = "single"
    device: str = "cpu"
    backend: str = ""

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_environ(cls, environ: Optional[Mapping[str, str]] = None) -> "DistEnv":
        """Read the layout from torchrun variables, else SLURM task variables, else a single process."""
        env = os.environ if environ is None else environ
        try:
            if "RANK" in env and "WORLD_SIZE" in env:
                world = int(env["WORLD_SIZE"])
                return cls(rank=int(env["RANK"]), world_size=world, local_rank=int(env.get("LOCAL_RANK", 0)),
                           local_world_size=int(env.get("LOCAL_WORLD_SIZE", world)),
                           master_addr=env.get("MASTER_ADDR", "127.0.0.1"),
                           master_port=int(env.get("MASTER_PORT", 29500)), source="torchrun")
            if "SLURM_PROCID" in env and int(env.get("SLURM_STEP_NUM_TASKS", "1")) > 1:
                return cls._from_slurm(env)
            if "SLURM_PROCID" in env and "SLURM_STEP_NUM_TASKS" not in env and int(env.get("SLURM_NTASKS", "1")) > 1:
                warnings.warn(f"SLURM_NTASKS={env['SLURM_NTASKS']} but this process was not started by srun (no "
                              "SLURM_STEP_NUM_TASKS): training in ONE process; launch with 'srun' or torchrun to "
                              "use every task", stacklevel=2)
        except ValueError as exc:
            raise UserError(f"malformed distributed environment variable: {exc}; check RANK/WORLD_SIZE/"
                            "MASTER_PORT or the SLURM_* variables of the job") from None
        return cls()

    @classmethod
    def _from_slurm(cls, env: Mapping[str, str]) -> "DistEnv":
        """Layout of an ``srun`` step. Only srun sets the SLURM_STEP_* variables: a batch script also has
        SLURM_PROCID=0 and SLURM_NTASKS=N, and taking those would make it wait forever for N - 1 peers."""
        world = int(env["SLURM_STEP_NUM_TASKS"])
        nodes = int(env.get("SLURM_STEP_NUM_NODES") or env.get("SLURM_JOB_NUM_NODES") or env.get("SLURM_NNODES", "1"))
        per_node = env.get("SLURM_STEP_TASKS_PER_NODE") or env.get("SLURM_TASKS_PER_NODE", "")
        match = re.match(r"\d+", per_node)
        local_world = int(match.group(0)) if match else max(1, world // max(1, nodes))
        nodelist = env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST", "")
        addr = env.get("MASTER_ADDR") or (first_hostname(nodelist) if nodelist else "127.0.0.1")
        port = int(env["MASTER_PORT"]) if "MASTER_PORT" in env else slurm_master_port(env)
        return cls(rank=int(env["SLURM_PROCID"]), world_size=world, local_rank=int(env.get("SLURM_LOCALID", 0)),
                   local_world_size=local_world, master_addr=addr, master_port=port, source="slurm")


def slurm_master_port(env: Mapping[str, str]) -> int:
    """A port in [20000, 60000] derived from the job id, the same as submitit's ``TorchDistributedEnvironment``.

    Every task of the job computes the same value, and two jobs sharing a node rarely collide.
    """
    job_id = env.get("SLURM_JOB_ID", "0")
    if env.get("SLURM_ARRAY_JOB_ID"):
        job_id = f"{env['SLURM_ARRAY_JOB_ID']}_{env.get('SLURM_ARRAY_TASK_ID', '')}"
    return random.Random(job_id).randint(20000, 60000)


def parse_nodelist(nodelist: str) -> List[str]:
    """Expand a SLURM node list such as ``gpu[01-03,7],rack[1-2]-n[1-2]`` into host names (zero padding kept)."""
    hosts: List[str] = []
    pos = 0
    try:
        while pos < len(nodelist):
            names = [""]
            while pos < len(nodelist) and nodelist[pos] != ",":
                if nodelist[pos] == "[":
                    end = nodelist.index("]", pos)
                    names = [name + s for name in names for s in _expand_ranges(nodelist[pos + 1:end])]
                    pos = end + 1
                else:
                    names = [name + nodelist[pos] for name in names]
                    pos += 1
            hosts.extend(n for n in names if n)
            pos += 1
    except ValueError:
        raise UserError(f"cannot parse SLURM node list {nodelist!r}; set MASTER_ADDR to the first host") from None
    return hosts


def _expand_ranges(ranges: str) -> List[str]:
    out: List[str] = []
    for part in ranges.split(","):
        lo, _, hi = part.partition("-")
        if not hi:
            out.append(lo)
        else:
            out.extend(f"{i:0{len(lo)}d}" for i in range(int(lo), int(hi) + 1))
    return out


def first_hostname(nodelist: str) -> str:
    """First host of the job: ``scontrol show hostnames`` when available (authoritative), else our parser."""
    if shutil.which("scontrol"):
        try:
            out = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True,
                                 timeout=30, check=True).stdout.split()
            if out:
                return out[0]
        except (subprocess.SubprocessError, OSError):
            pass
    hosts = parse_nodelist(nodelist)
    if not hosts:
        raise UserError(f"cannot read the first host of SLURM_JOB_NODELIST={nodelist!r}; set MASTER_ADDR")
    return hosts[0]


def init_distributed(backend: Optional[str] = None, env: Optional[DistEnv] = None,
                     timeout_s: float = 1800.0) -> DistEnv:
    """Initialise the default process group (when more than one process) and pick this process's device.

    Args:
        backend: 'nccl' or 'gloo'; None chooses NCCL when CUDA is available, gloo otherwise.
        env: the layout; None reads it with ``DistEnv.from_environ()``.
        timeout_s: collective timeout.

    Returns:
        The layout with ``device`` ('cuda:N' or 'cpu') and ``backend`` filled in. The CUDA device is
        ``local_rank`` modulo the visible devices, so it is right both with all GPUs visible (torchrun) and
        with one GPU per task (submitit's export sets CUDA_VISIBLE_DEVICES).
    """
    env = DistEnv.from_environ() if env is None else env
    if torch.cuda.is_available():
        index = env.local_rank % torch.cuda.device_count()
        torch.cuda.set_device(index)
        device = f"cuda:{index}"
    else:
        device = "cpu"
    if not env.distributed:
        return replace(env, device=device)
    backend = backend or ("nccl" if device.startswith("cuda") else "gloo")
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, init_method=f"tcp://{env.master_addr}:{env.master_port}",
                                rank=env.rank, world_size=env.world_size, timeout=timedelta(seconds=timeout_s))
    return replace(env, device=device, backend=backend)


def cleanup() -> None:
    """Destroy the default process group if one exists (call once at the end of training)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def get_rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def get_world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main() -> bool:
    """True on rank 0 (and in a single process): the process that logs and writes checkpoints."""
    return get_rank() == 0


def barrier() -> None:
    if _active():
        dist.barrier()


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward sums the incoming gradients over processes and returns this rank's slice.

    Rank r's loss depends on every rank's tensor, so the gradient of the total loss with respect to rank r's
    tensor is the sum over processes of their gradients for slice r. DDP then averages parameter gradients,
    which makes the result equal to one process computing the mean loss over the global batch.
    (``torch.distributed.nn.all_gather`` does the same with reduce-scatter, which gloo lacks.)
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        world, rank = dist.get_world_size(), dist.get_rank()
        ctx.rank, ctx.batch = rank, x.shape[0]
        parts = [torch.empty_like(x) for _ in range(world)]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        grad = grad.contiguous()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.rank * ctx.batch:(ctx.rank + 1) * ctx.batch]


def all_gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` from every process in rank order, keeping gradients (identity in a single process).

    Every process must pass a tensor of the same shape.
    """
    return _GatherWithGrad.apply(x) if _active() else x


@torch.no_grad()
def all_gather_no_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` from every process in rank order, without gradients (e.g. MoCo keys, ids)."""
    if not _active():
        return x.detach()
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.detach().contiguous())
    return torch.cat(parts)


@torch.no_grad()
def all_reduce_mean(x: torch.Tensor) -> torch.Tensor:
    """Mean of ``x`` over processes (for logging the loss of the global batch); a copy, ``x`` is untouched."""
    x = x.detach().clone()
    if _active():
        dist.all_reduce(x, op=dist.ReduceOp.SUM)
        x /= dist.get_world_size()
    return x


def per_process_batch(global_batch: int, world_size: int, key: str = "data.batch_size") -> int:
    """Split the global batch over processes; a one-line ``UserError`` when it does not divide evenly.

    SimCLR's loss and global batch norm assume equal per-process batches (all_gather needs equal shapes).
    """
    if global_batch < 1:
        raise UserError(f"{key}={global_batch} must be a positive number of images")
    if global_batch % world_size:
        lower = global_batch - global_batch % world_size
        raise UserError(f"{key}={global_batch} is not divisible by the {world_size} training processes; "
                        f"use a multiple of {world_size} such as {lower or world_size} or {lower + world_size}")
    return global_batch // world_size
