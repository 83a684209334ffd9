"""The processes a distributed run places with Ray: sampler workers and learner ranks.

They are plain classes (``ray.remote`` wraps them where they are placed), built from the job and
the model folder, and run the same pure pieces as the single-process loop: ``run_groups`` to
sample and grade, ``learner.update`` to take a step.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import timedelta

import torch

from rlft.config import Job
from rlft.rewards.graders import make_grader
from rlft.rollout.engines import ENGINES
from rlft.rollout.runner import run_groups
from rlft.rollout.sampler import SamplingParams
from rlft.run import step_generator
from rlft.types import Group

WorkId = tuple[int, int]  # (step, prompt index within the step): a sample id, unique in the run


@dataclass(frozen=True)
class Work:
    """G attempts at one prompt of one step. The sampling RNG is derived from its id, so the
    same work gives the same attempts wherever (and however often) it runs."""

    id: WorkId
    item: dict
    prompt_T: list[int]


@dataclass
class Done:
    id: WorkId
    group: Group
    version: int  # the weight version every attempt in the group was sampled with
    times: dict[str, float] = field(default_factory=dict)
    worker_pid: int = 0


def sampling_params(job: Job) -> SamplingParams:
    s = job.sampling
    return SamplingParams(s.max_new_tokens, s.temperature, s.top_p, s.top_k, tuple(s.stop))


class SamplerWorker:
    """A copy of the policy in a sampler engine, and the grader: ``generate`` turns a Work into
    a graded Group; ``set_weights`` installs the learner's weights and their version."""

    def __init__(self, job: Job, model_path: str, threads: int = 1):
        torch.set_num_threads(threads)
        device = torch.device("cuda" if job.distributed.sampler == "vllm" else "cpu")
        self.job = job
        self.sampler = ENGINES[job.distributed.sampler](model_path, job, device)
        self.grader = make_grader(job.grader, job.base_dir)
        self.params = sampling_params(job)

    def set_weights(self, state: dict[str, torch.Tensor], version: int) -> int:
        self.sampler.load_weights(state, version)
        return version

    def generate(self, work: Work) -> Done:
        assert self.sampler.version >= 0, "a sampler worker got work before any weights (set_weights first)"
        step, index = work.id
        groups, times = run_groups(
            self.sampler, [work.item], [work.prompt_T], self.grader, self.job.algorithm.group_size, self.params,
            step_generator(self.job.run.seed, step, 1 + index),
        )
        return Done(work.id, groups[0], self.sampler.version, times, os.getpid())

    def pid(self) -> int:
        return os.getpid()


class LearnerRank:
    """Learner rank >= 1: a copy of the policy and its own optimizer, stepping in lockstep with
    rank 0 (this run's driver) on its shard of every batch; gradients are summed across ranks."""

    def __init__(self, job: Job, model_path: str, rank: int, world: int, address: str, resume_from: str | None):
        from rlft.learner import make_optimizer
        from rlft.models import load_model, pick_device, pick_dtype

        torch.set_num_threads(1)
        self.job, self.rank, self.world, self.address = job, rank, world, address
        device = pick_device(job.run.device)
        lora = None if job.model.lora is None else vars(job.model.lora)
        self.model = load_model(model_path, device=device, dtype=pick_dtype(job.model.dtype, device), lora=lora)
        self.optimizer, self.scheduler = make_optimizer(self.model, job.optim)
        self.resume_from = resume_from

    def join(self) -> int:
        """Join the process group (rank 0 joins at the same time), take rank 0's weights, and
        the optimizer and scheduler state of the checkpoint being resumed."""
        import torch.distributed as dist

        from rlft.distributed.learners import BACKEND, broadcast_weights

        backend = BACKEND[next(self.model.parameters()).device.type]
        dist.init_process_group(backend, init_method=self.address, rank=self.rank, world_size=self.world,
                                timeout=timedelta(seconds=self.job.distributed.learner_timeout))
        broadcast_weights(self.model)
        if self.resume_from:
            optim = torch.load(f"{self.resume_from}/optim.pt", weights_only=True)
            self.optimizer.load_state_dict(optim["optimizer"])
            self.scheduler.load_state_dict(optim["scheduler"])
        return os.getpid()

    def update(self, shard, loss, norm) -> dict:
        from rlft.distributed.learners import sum_across_ranks
        from rlft.learner import update

        return update(self.model, self.optimizer, shard, loss, self.job.optim, norm=norm, all_reduce=sum_across_ranks)

    def scheduler_step(self) -> None:
        self.scheduler.step()

    def pid(self) -> int:
        return os.getpid()
