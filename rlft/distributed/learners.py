"""The learner as a torch.distributed group (DESIGN.md §7): this process is rank 0 and holds the
model the run checkpoints; ranks 1..W-1 are Ray actors (rlft.distributed.workers.LearnerRank).

Each rank takes a contiguous share of the batch's rows and runs the single-process
``learner.update`` on it with the whole step's normaliser; the gradients (and metric totals) are
summed with one all-reduce before clipping, so every rank takes exactly the step one process
would take on the whole batch — data parallelism with DDP's arithmetic. torch's
DistributedDataParallel wrapper is not used because ``prefix_logprobs`` runs the model twice per
micro-batch and ranks can have different numbers of micro-batches; one explicit all-reduce per
step has neither problem (and is what DDP's buckets amount to, without the overlap).

A rank that dies makes the next collective fail (gloo: the peer's socket closes) or time out
after ``distributed.learner_timeout`` seconds; the run then stops with ``LearnerFailed``, naming
the checkpoint to resume from.
"""

from __future__ import annotations

import socket
from datetime import timedelta

import torch
import torch.distributed as dist

from rlft.algos.losses import Norm
from rlft.learner import LossSettings, update
from rlft.run import Run, RunStopped
from rlft.types import Batch

BACKEND = {"cpu": "gloo", "cuda": "nccl"}


class LearnerFailed(RunStopped):
    """A learner rank died or stopped answering; the run stopped (exit code 4)."""

    def __init__(self, message: str):
        super().__init__(message, exit_code=4)


def sum_across_ranks(t: torch.Tensor) -> None:
    dist.all_reduce(t, op=dist.ReduceOp.SUM)


def broadcast_weights(model) -> None:
    """Every rank takes rank 0's parameters and buffers (a resumed checkpoint included)."""
    for t in model.state_dict().values():
        dist.broadcast(t, src=0)


def shard_rows(B: int, W: int) -> list[tuple[int, int]]:
    """[start, stop) of each rank's rows: contiguous, sizes differing by at most one."""
    base, extra = divmod(B, W)
    bounds, start = [], 0
    for r in range(W):
        stop = start + base + (r < extra)
        bounds.append((start, stop))
        start = stop
    return bounds


def shard(batch: Batch, W: int) -> list[Batch]:
    """Each rank's rows. A rank left without a row gets one row with an all-zero loss mask: it
    runs the forward and backward (so the collective lines up) and adds exactly nothing."""
    out = []
    for start, stop in shard_rows(len(batch), W):
        if stop > start:
            out.append(batch.slice(start, stop))
        else:
            empty = batch.slice(0, 1)
            empty.loss_mask_BT = torch.zeros_like(empty.loss_mask_BT)
            out.append(empty)
    return out


LOOPBACK = ("127.0.0.1", "localhost", "::1")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def rendezvous(ray, host: str) -> tuple[str, dict]:
    """The learner group's init_method address on ``host`` (distributed.listen_host), and the Ray
    options that place the ranks: on this node when the address is loopback (a rank elsewhere
    could not reach it), anywhere otherwise."""
    address = f"tcp://{f'[{host}]' if ':' in host else host}:{free_port(host)}"  # IPv6 literals in brackets
    if host not in LOOPBACK:
        return address, {}
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = ray.get_runtime_context().get_node_id()
    return address, {"scheduling_strategy": NodeAffinitySchedulingStrategy(node_id=here, soft=False)}


class LearnerGroup:
    """Rank 0 (this process, ``run.model``) and W-1 LearnerRank actors. With W = 1 it is the
    single-process update and starts nothing."""

    def __init__(self, ray, run: Run, optimizer, scheduler):
        self.ray, self.run, self.optimizer, self.scheduler = ray, run, optimizer, scheduler
        cfg = run.job.distributed
        self.W, self.timeout = cfg.learner_ranks, cfg.learner_timeout
        self.ranks = []
        if self.W == 1:
            return
        from rlft.distributed.workers import LearnerRank

        address, placement = rendezvous(ray, cfg.listen_host)
        gpus = 1 if run.device.type == "cuda" else 0
        actor = ray.remote(num_cpus=1, num_gpus=gpus, max_restarts=0, **placement)(LearnerRank)
        resume = str(run.resume_from) if run.resume_from else None
        self.ranks = [actor.remote(run.job, run.model_path, r, self.W, address, resume) for r in range(1, self.W)]
        joined = [a.join.remote() for a in self.ranks]
        dist.init_process_group(BACKEND[run.device.type], init_method=address, rank=0, world_size=self.W,
                                timeout=timedelta(seconds=self.timeout))
        broadcast_weights(run.model)
        self.pids = [0, *ray.get(joined, timeout=self.timeout)]

    def update(self, batch: Batch, loss: LossSettings, step: int) -> dict:
        """One optimizer step on ``batch`` across the group; rank 0's metrics (equal on every rank)."""
        norm = Norm.of(batch.loss_mask_BT, loss.max_tokens)
        if self.W == 1:
            return update(self.run.model, self.optimizer, batch, loss, self.run.job.optim, norm=norm)
        shards = shard(batch, self.W)
        refs = [a.update.remote(shards[r], loss, norm) for r, a in enumerate(self.ranks, 1)]
        try:
            metrics = update(self.run.model, self.optimizer, shards[0], loss, self.run.job.optim, norm=norm,
                             all_reduce=sum_across_ranks)
            self.ray.get(refs, timeout=self.timeout)
        except Exception as e:  # a dead peer surfaces as a gloo/NCCL error, a Ray actor error or a timeout
            raise self.failed(step, e) from e
        return metrics

    def scheduler_step(self) -> None:
        self.scheduler.step()
        for a in self.ranks:
            a.scheduler_step.remote()  # runs before the rank's next update: actor calls keep their order

    def failed(self, step: int, error: Exception) -> LearnerFailed:
        from rlft import checkpoint

        last = checkpoint.latest(self.run.out, quiet=True)
        where = f"the last checkpoint is {last}" if last else "there is no checkpoint yet (run.checkpoint_every)"
        return LearnerFailed(
            f"stopped at step {step}: a learner rank failed or stopped answering within "
            f"distributed.learner_timeout = {self.timeout:g} s ({type(error).__name__}: {str(error)[:300]}); "
            f"{where}; run the same command again to resume from it"
        )

    def close(self) -> None:
        if self.W > 1 and dist.is_initialized():
            dist.destroy_process_group()
        for a in self.ranks:
            self.ray.kill(a)
