"""The RL loop across processes (DESIGN.md §4 and §7): the same step as ``rlft.train_rl``, with
sampling and grading on Ray sampler actors and the update on a torch.distributed learner group.

This process is the driver and learner rank 0: it holds the run (model, optimizer, logs,
checkpoints) exactly as the single-process loop does, and calls the same pieces — ``run_groups``
(in the actors), ``ADVANTAGES``, ``collate``, ``learner.update`` (on every rank),
``run.after_step`` / ``finish`` and ``checkpoint``.

What differs, on purpose:
1. Work is one prompt's G attempts, keyed by (step, prompt index); its sampling RNG is derived
   from that id (``step_generator(seed, step, 1 + index)``), so the attempts do not depend on
   which actor ran it, or how often. (The single-process loop draws one RNG stream for the whole
   step, so the two placements sample different attempts from the same distribution; with greedy
   decoding they sample the same ones — the equivalence test.)
2. After each update the learner pushes its weights (the LoRA adapter alone with LoRA) with a
   version number; every trajectory carries the version it was sampled with.
3. ``max_staleness = 0``: a sample is used only when its version is the learner's; a stale one
   is refused and sampled again. ``max_staleness = k > 0``: the next k steps' work is issued before
   this step's update, so sampling and grading overlap learning; the samples (at most k versions
   old) are corrected by truncated importance weights (rlft.distributed.staleness).
"""

from __future__ import annotations

import time

import torch

from rlft.algos.advantages import ADVANTAGES
from rlft.algos.overlong import LengthShaping
from rlft.config import ConfigError, Job
from rlft.data import collate, load_items
from rlft.distributed.cluster import cluster
from rlft.distributed.learners import LearnerGroup
from rlft.distributed.pool import SamplerPool
from rlft.distributed.staleness import truncated_is, version_lags
from rlft.distributed.workers import Work
from rlft.learner import LossSettings, fill_logprobs, make_optimizer
from rlft.models import load_model, pick_dtype
from rlft.progress import Progress
from rlft.run import after_step, finish, item_order, resume, start
from rlft.train_rl import encode_prompts, signal_metrics, step_metrics, transcripts


def check_job(job: Job) -> None:
    d = job.distributed
    if job.world.name:
        raise ConfigError(
            f"[distributed] samplers = {d.samplers}: multi-turn [world] jobs run in one process for now; "
            "fix: set distributed.samplers=0 (or drop [distributed])"
        )
    if job.algorithm.name not in ADVANTAGES:
        raise ConfigError(
            f"[distributed] samplers = {d.samplers}: algorithm.name = {job.algorithm.name!r} runs in one process for "
            f"now (the distributed loop takes outcome advantages: {', '.join(ADVANTAGES)}); fix: set "
            f"distributed.samplers=0 or pick one of those"
        )
    if d.sampler == "vllm" and not torch.cuda.is_available():
        raise ConfigError(
            "[distributed] sampler = \"vllm\" needs a CUDA GPU and none is visible; fix: sampler = \"hf\" on CPU"
        )


def train(job: Job) -> dict:
    check_job(job)
    algo, d = job.algorithm, job.distributed
    P = algo.prompts_per_step
    items = load_items(job.data.train, required=[job.data.prompt], prompt_field=job.data.prompt,
                       base_dir=job.base_dir, max_errors=job.data.max_errors, skip_invalid=job.data.skip_invalid)
    run = start(job, check=lambda tokenizer: encode_prompts(job, items, tokenizer))
    items, prompts = run.checked
    reference = None
    if algo.kl_coef > 0:
        reference = load_model(run.model_path, device=run.device, dtype=pick_dtype(job.model.dtype, run.device),
                               trainable=False)
    optimizer, scheduler = make_optimizer(run.model, job.optim)
    state = resume(run, optimizer, scheduler)
    first = state.get("step", 0)
    run.sampler.version = state.get("sampler_version", first)
    # the actors' numerics (rlft.distributed.workers: HF on the CPU, vLLM on the GPU) against the learner's; with
    # max_staleness > 0 the staleness correction already reweights by learner/sampler, so "auto" stays off
    dtype = job.model.dtype
    differs = d.sampler != "hf" or pick_dtype(dtype, torch.device("cpu")) != pick_dtype(dtype, run.device)
    loss = LossSettings.of(algo, job.sampling, sampler_differs=differs and d.max_staleness == 0)

    def works(step: int) -> list[Work]:
        idx = [item_order(len(items), job.run.seed, pos) for pos in range((step - 1) * P, step * P)]
        return [Work((step, p), items[i], prompts[i]) for p, i in enumerate(idx)]

    with cluster(d, num_cpus=d.samplers + d.learner_ranks - 1) as ray:
        pool = SamplerPool(ray, job, run.model_path)
        learners = LearnerGroup(ray, run, optimizer, scheduler)
        try:
            pool.push(run.model, run.sampler.version)
            with run.interrupts, Progress(job.optim.steps, algo.name, enabled=job.run.progress, start=first) as bar:
                for step in range(first + 1, job.optim.steps + 1):
                    metrics = one_step(run, pool, learners, reference, optimizer, scheduler, loss, works, step)
                    bar.update(step, metrics)
        finally:
            learners.close()
            pool.close()
    state = {"sampler_version": run.sampler.version, "data_position": job.optim.steps * P}
    summary = {"kind": "rl", "algorithm": algo.name, "steps": job.optim.steps, "placement": "distributed"}
    return finish(run, job.optim.steps, summary, state, optimizer, scheduler)


def one_step(run, pool: SamplerPool, learners: LearnerGroup, reference, optimizer, scheduler, loss: LossSettings,
             works, step: int) -> dict:
    job, algo, d = run.job, run.job.algorithm, run.job.distributed
    t_step = time.perf_counter()
    # 1-4. this step's work (and, with staleness allowed, the next steps'), sampled and graded
    for s in range(step, min(step + d.max_staleness, job.optim.steps) + 1):
        pool.issue(works(s))
    t_wait = time.perf_counter()
    done = pool.collect([w.id for w in works(step)], run.sampler.version)
    t_wait = time.perf_counter() - t_wait
    groups = [r.group for r in done]
    trajectories = [t for g in groups for t in g.trajectories_G]
    times = {k: sum(r.times[k] for r in done) for k in done[0].times}  # actor-seconds, summed over work

    # 5. advantages within each group; errored attempts excluded (as train_rl)
    rewards_P_G = torch.tensor([[t.reward for t in g.trajectories_G] for g in groups])
    valid_P_G = torch.tensor([[not t.errored for t in g.trajectories_G] for g in groups])
    penalty_B, train_B, shaped = LengthShaping.of(algo, job.sampling)(trajectories)  # DAPO, as train_rl
    adv_P_G = ADVANTAGES[algo.name](rewards_P_G + penalty_B.view_as(rewards_P_G), valid_P_G=valid_P_G)
    keep_B = valid_P_G.flatten() & train_B
    if algo.drop_zero_advantage:
        keep_B = keep_B & (adv_P_G.flatten() != 0)
    kept = [t for t, k in zip(trajectories, keep_B.tolist()) if k]

    # 6-9. collate, old / reference logprobs, staleness correction, the update on every rank
    t_learn = time.perf_counter()
    metrics = version_lags([t.metadata["version"] for t in trajectories], run.sampler.version)
    if kept:
        batch = collate(kept, adv_P_G.flatten()[keep_B].tolist(), run.tokenizer.pad_token_id)
        if algo.updates_per_batch > 1 or d.max_staleness > 0:
            batch.old_logp_BT = fill_logprobs(run.model, batch, job.optim.micro_batch_size, loss.temperature)
        if d.max_staleness > 0:
            w_BT, is_metrics = truncated_is(batch.old_logp_BT, batch.sampler_logp_BT, batch.loss_mask_BT, d.is_cap)
            batch.adv_BT = batch.adv_BT * w_BT
            metrics |= is_metrics
            if algo.updates_per_batch == 1:
                batch.old_logp_BT = None  # one update: the plain policy gradient, as train_rl
        if reference is not None:
            batch.ref_logp_BT = fill_logprobs(reference, batch, job.optim.micro_batch_size, loss.temperature)
        for _ in range(algo.updates_per_batch):
            metrics |= learners.update(batch, loss, step)
    learners.scheduler_step()  # once per RL step on every rank, however many updates it made
    # 10. new weights to the samplers, with their version
    run.sampler.version += 1
    pool.push(run.model, run.sampler.version)

    # 11. log (as train_rl), plus what only a distributed step has
    metrics |= step_metrics(trajectories, rewards_P_G, valid_P_G, len(kept), time.perf_counter() - t_step)
    metrics |= signal_metrics(rewards_P_G, valid_P_G, adv_P_G)  # for the no-signal warning, as in one process
    metrics |= times | {"time/learn": time.perf_counter() - t_learn, "time/wait_samples": t_wait}
    metrics |= pool.step_counts() | shaped
    state = {"sampler_version": run.sampler.version, "data_position": step * job.algorithm.prompts_per_step}
    samples = transcripts(groups, adv_P_G, job.run.log_samples)
    ids = [f"{r.group.item['_source']}:{r.group.item['_line']}" for r in done]
    return after_step(run, step, metrics, samples, state, optimizer, scheduler, ids)
