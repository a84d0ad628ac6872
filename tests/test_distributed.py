"""Distributed: layouts from torchrun/SLURM (against submitit), batch checks, and 2 real gloo processes.

The 2-process checks run once (module fixture) and each test asserts one property of the result:
- NT-Xent with gathered negatives equals a brute-force loop over the global batch (loss and gradients);
- a DDP SimCLR step on 2 processes equals one process on the same global batch (loss and every gradient).
  Batch norm runs in eval mode there: PyTorch's SyncBatchNorm (the exact global BN used on GPUs) refuses CPU
  tensors, and per-process BN in train mode normalises each half with its own statistics, which is a
  different function of the batch. Eval-mode BN is per-sample, so the equality is exact up to float error;
  on GPUs ``maybe_sync_batchnorm`` gives the same property in train mode;
- MoCo enqueues the keys gathered from both processes, in rank order, identically on both.
"""
from __future__ import annotations

import os

import pytest
import torch

from ddp_support import run_ranks
from ffcv_ssl import distributed
from ffcv_ssl.distributed import DistEnv, init_distributed, parse_nodelist, per_process_batch, slurm_master_port
from ffcv_ssl.errors import UserError

WORLD, BATCH, VIEWS, SIZE = 2, 4, 2, 32  # per-process batch; the global batch is WORLD * BATCH


# ------------------------------------------------------------------------------------------------ layouts

def test_torchrun_variables_win():
    env = DistEnv.from_environ({"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "4",
                                "MASTER_ADDR": "node7", "MASTER_PORT": "12345", "SLURM_PROCID": "0",
                                "SLURM_NTASKS": "2"})
    assert (env.rank, env.world_size, env.local_rank, env.local_world_size) == (3, 8, 1, 4)
    assert (env.master_addr, env.master_port, env.source, env.distributed) == ("node7", 12345, "torchrun", True)


def test_single_process_without_variables():
    env = DistEnv.from_environ({"SLURM_PROCID": "0", "SLURM_NTASKS": "1"})
    assert (env.world_size, env.source, env.distributed, env.is_main) == (1, "single", False, True)


def test_batch_script_without_srun_is_one_process_with_a_warning():
    """sbatch's script sees SLURM_PROCID=0 and SLURM_NTASKS=8 but is ONE process: never wait for 7 peers."""
    batch_env = {k: v for k, v in SLURM_JOB.items() if not k.startswith("SLURM_STEP_")} | {"SLURM_PROCID": "0"}
    with pytest.warns(UserWarning, match="not started by srun"):
        env = DistEnv.from_environ(batch_env)
    assert (env.world_size, env.source) == (1, "single")


# What ``srun`` sets for task 5 of an 8-task step on 2 nodes (the SLURM_STEP_* variables exist only in steps).
SLURM_JOB = {"SUBMITIT_EXECUTOR": "slurm", "SLURM_JOB_ID": "4242", "SLURM_NTASKS": "8", "SLURM_JOB_NUM_NODES": "2",
             "SLURM_PROCID": "5", "SLURM_LOCALID": "1", "SLURM_NODEID": "1", "SLURM_TASKS_PER_NODE": "4(x2)",
             "SLURM_JOB_NODELIST": "gpu[007-008]", "SLURM_STEP_ID": "0", "SLURM_STEP_NUM_TASKS": "8",
             "SLURM_STEP_NUM_NODES": "2", "SLURM_STEP_TASKS_PER_NODE": "4(x2)", "SLURM_STEP_NODELIST": "gpu[007-008]"}


def test_slurm_layout_matches_submitit(monkeypatch):
    from submitit.helpers import TorchDistributedEnvironment

    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "SLURM_ARRAY_JOB_ID"):
        monkeypatch.delenv(key, raising=False)
    for key, value in SLURM_JOB.items():
        monkeypatch.setenv(key, value)
    ours, theirs = DistEnv.from_environ(), TorchDistributedEnvironment()
    assert ours.source == "slurm"
    assert (ours.rank, ours.world_size, ours.local_rank, ours.local_world_size) == (
        theirs.rank, theirs.world_size, theirs.local_rank, theirs.local_world_size) == (5, 8, 1, 4)
    assert (ours.master_addr, ours.master_port) == (theirs.master_addr, theirs.master_port)
    assert ours.master_addr == "gpu007" and 20000 <= ours.master_port <= 60000


def test_slurm_array_job_port_matches_submitit(monkeypatch):
    from submitit.helpers import TorchDistributedEnvironment

    monkeypatch.delenv("MASTER_PORT", raising=False)
    for key, value in {**SLURM_JOB, "SLURM_ARRAY_JOB_ID": "99", "SLURM_ARRAY_TASK_ID": "3"}.items():
        monkeypatch.setenv(key, value)
    assert slurm_master_port(os.environ) == TorchDistributedEnvironment().master_port


@pytest.mark.parametrize("nodelist", ["gpu[01-03,7],cpu5", "node1", "a[1-2]-b[08-10]", "x[009-011],y,z[1]"])
def test_nodelist_parser_matches_submitit(nodelist):
    from submitit.slurm.slurm import _parse_node_list

    assert parse_nodelist(nodelist) == _parse_node_list(nodelist)


def test_batch_must_divide_over_processes():
    assert per_process_batch(4096, 8) == 512
    with pytest.raises(UserError) as err:
        per_process_batch(100, 3)
    assert "data.batch_size=100 is not divisible by the 3" in str(err.value) and "\n" not in str(err.value)
    assert "99 or 102" in str(err.value)


def test_single_process_helpers_are_identities():
    env = init_distributed(env=DistEnv())
    assert env.device == ("cuda:0" if torch.cuda.is_available() else "cpu") and env.backend == ""
    x = torch.randn(3, 2, requires_grad=True)
    assert distributed.all_gather_with_grad(x) is x
    assert torch.equal(distributed.all_gather_no_grad(x), x) and torch.equal(distributed.all_reduce_mean(x), x)
    assert distributed.is_main() and distributed.get_rank() == 0 and distributed.get_world_size() == 1
    distributed.barrier()
    distributed.cleanup()


# ------------------------------------------------------------------------------------ 2 real gloo processes

def _global_views(seed: int = 1) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(WORLD * BATCH, 3, SIZE, SIZE, generator=g) for _ in range(VIEWS)]


def _simclr_eval_bn():
    from test_objectives import tiny_objective

    torch.manual_seed(0)  # same initial weights on every process and in the reference
    return tiny_objective("simclr").eval()


def _rank_body(rank: int) -> dict:
    """Body of one process: three checks, their results returned."""
    assert distributed.get_world_size() == WORLD and distributed.get_rank() == rank
    from torch.nn.parallel import DistributedDataParallel as DDP

    from ffcv_ssl.objectives.losses import nt_xent
    from test_objectives import tiny_objective

    res: dict = {}
    # 1. NT-Xent over gathered projections: this rank's slice of a global (WORLD, V*B, D) tensor.
    z_all = torch.randn(WORLD, VIEWS * BATCH, 8, generator=torch.Generator().manual_seed(7))
    z = z_all[rank].clone().requires_grad_(True)
    ids = (torch.arange(BATCH) + rank * BATCH).repeat(VIEWS)
    keys, key_ids = distributed.all_gather_with_grad(z), distributed.all_gather_no_grad(ids)
    loss, _ = nt_xent(z, ids, 0.1, keys, key_ids, q_offset=rank * len(z))
    loss.backward()
    res["ntx_loss"], res["ntx_grad"] = loss.detach(), z.grad.clone()

    # 2. DDP SimCLR step on this rank's half of the global batch.
    model = DDP(_simclr_eval_bn(), forward_sync_buffers=False)
    views = [v[rank * BATCH:(rank + 1) * BATCH].contiguous(memory_format=torch.channels_last)
             for v in _global_views()]
    out = model(views, torch.zeros(BATCH, dtype=torch.long))
    out["loss"].backward()
    res["ddp_loss"] = out["loss"].detach()
    res["ddp_grads"] = {n: p.grad.clone() for n, p in model.module.named_parameters()}

    # 3. MoCo: keys of both processes are enqueued, in rank order, on both.
    torch.manual_seed(0)
    moco = tiny_objective("moco")
    moco.cfg.shuffle_bn = False  # keys per process, as computed below; Shuffle BN: test_moco_shuffle_bn.py
    views = [v[rank * BATCH:(rank + 1) * BATCH] for v in _global_views(seed=2)]
    with torch.no_grad():
        res["moco_keys"] = torch.nn.functional.normalize(moco.target_projector(moco.target_backbone(views[1])), dim=1)
    ddp_moco = DDP(moco, forward_sync_buffers=False)
    ddp_moco(views, torch.zeros(BATCH, dtype=torch.long))["loss"].backward()
    torch.optim.SGD(moco.parameters(), lr=0.1).step()
    moco.after_step(0.5)
    res["moco_queue"], res["moco_ptr"] = moco.queue.clone(), int(moco.queue_ptr)
    res["moco_target"] = [p.clone() for p in moco.target_backbone.parameters()][:5]
    return res


@pytest.fixture(scope="module")
def two_processes():
    return run_ranks(_rank_body, world=WORLD)


def test_gathered_nt_xent_equals_brute_force_over_processes(two_processes):
    from test_objectives import brute_nt_xent, brute_nt_xent_torch

    z_all = torch.randn(WORLD, VIEWS * BATCH, 8, generator=torch.Generator().manual_seed(7))
    ids = [i for r in range(WORLD) for i in (torch.arange(BATCH) + r * BATCH).repeat(VIEWS).tolist()]
    flat = z_all.reshape(-1, 8)
    mean_loss = sum(float(r["ntx_loss"]) for r in two_processes) / WORLD
    assert mean_loss == pytest.approx(brute_nt_xent(flat.numpy(), ids, 0.1), abs=1e-5)
    z64 = flat.double().requires_grad_(True)
    brute_nt_xent_torch(z64, ids, 0.1).backward()
    expected = z64.grad.reshape(WORLD, VIEWS * BATCH, 8)
    for r, res in enumerate(two_processes):  # DDP averages: the global loss's gradient is grad_r / WORLD
        torch.testing.assert_close(res["ntx_grad"].double() / WORLD, expected[r], atol=1e-6, rtol=1e-5)


def test_ddp_simclr_equals_one_process_on_the_global_batch(two_processes):
    model = _simclr_eval_bn()
    views = [v.contiguous(memory_format=torch.channels_last) for v in _global_views()]
    out = model(views, torch.zeros(WORLD * BATCH, dtype=torch.long))
    out["loss"].backward()
    ddp_loss = sum(float(r["ddp_loss"]) for r in two_processes) / WORLD
    assert ddp_loss == pytest.approx(out["loss"].item(), abs=1e-5)
    for name, p in model.named_parameters():
        for res in two_processes:  # DDP leaves the same averaged gradient on every process
            torch.testing.assert_close(res["ddp_grads"][name], p.grad, atol=1e-5, rtol=1e-4, msg=name)


def test_moco_enqueues_keys_from_every_process(two_processes):
    r0, r1 = two_processes
    assert r0["moco_ptr"] == r1["moco_ptr"] == WORLD * BATCH
    torch.testing.assert_close(r0["moco_queue"], r1["moco_queue"], rtol=0, atol=0)
    torch.testing.assert_close(r0["moco_queue"][:BATCH], r0["moco_keys"], rtol=0, atol=1e-6)
    torch.testing.assert_close(r0["moco_queue"][BATCH:2 * BATCH], r1["moco_keys"], rtol=0, atol=1e-6)
    for a, b in zip(r0["moco_target"], r1["moco_target"]):  # EMA of DDP-synchronised weights: identical
        torch.testing.assert_close(a, b, rtol=0, atol=0)
