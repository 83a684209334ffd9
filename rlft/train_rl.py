"""On-policy RL for language models, top to bottom (DESIGN.md §4).

Each step: take P prompts, sample G attempts at each, grade them, turn rewards into
advantages within each group, and push the policy toward the better attempts with the same
loss the SFT loop uses (``-adv·logp`` per sampled token; PPO-clip when a batch is reused).

How this departs from the papers, on purpose:
1. No KL penalty by default (``algorithm.kl_coef = 0``; DAPO, Dr. GRPO): no reference model is
   loaded unless it is switched on, and then the k1/k2/k3 estimators are available.
2. Token-level normalisation by default (``aggregation = "token_mean"``, DAPO), computed once per
   step so micro-batching is exact; "seq_mean" (the GRPO paper) and "dr_grpo" are one key away.
3. Asymmetric clipping, clip-higher (DAPO), used only when ``updates_per_batch > 1``; with one
   update per batch the ratio is identically 1 and the loss is plain REINFORCE with a baseline.
4. Attempts whose advantage is 0 are dropped before the update by default
   (``drop_zero_advantage``): zero-variance groups and, for expert iteration, rejected attempts.
   They would add no policy gradient, only dilute the token normaliser.
5. An attempt whose grader raised is masked out, counted and logged, never scored 0.
"""

from __future__ import annotations

import time
from collections import Counter

import torch

from rlft.algos.advantages import group_stats
from rlft.algos.overlong import LengthShaping
from rlft.config import Job
from rlft.critic import make_critic
from rlft.data import DataError, collate, load_items, report_bad
from rlft.envs.rollouts import env_rollout
from rlft.learner import LossSettings, fill_logprobs, make_optimizer, update
from rlft.models import encode_prompt, load_model, pick_dtype
from rlft.progress import Progress
from rlft.rewards.monitor import annotate, make_monitors
from rlft.rollout.runner import run_groups
from rlft.rollout.sampler import SamplingParams
from rlft.run import after_step, finish, item_order, resume, start, step_generator


def encode_prompts(job: Job, items: list[dict], tokenizer) -> tuple[list[dict], list[list[int]]]:
    """The items and their prompt token ids. A prompt that leaves no room to answer within
    model.max_length is an error naming its file and line (or skipped, data.skip_invalid)."""
    kept, prompts, errors = [], [], []
    room = job.model.max_length - job.sampling.max_new_tokens
    for item in items:
        ids = encode_prompt(tokenizer, item[job.data.prompt])
        if len(ids) > room:
            errors.append(
                f"{item['_source']}:{item['_line']}: prompt is {len(ids)} tokens; with "
                f"sampling.max_new_tokens = {job.sampling.max_new_tokens} it must be at most {room} "
                f"(model.max_length = {job.model.max_length})"
            )
            continue
        kept.append(item)
        prompts.append(ids)
    report_bad(errors, "prompt(s)", job.data.skip_invalid, job.data.max_errors)
    if not kept:
        raise DataError(f"{job.data.train}: no prompt fits model.max_length = {job.model.max_length}")
    return kept, prompts


def train(job: Job) -> dict:
    if job.distributed.samplers:  # [distributed]: Ray sampler actors, a torch.distributed learner
        from rlft.distributed.loop import train as train_distributed

        return train_distributed(job)
    algo, sampling = job.algorithm, job.sampling
    P, G = algo.prompts_per_step, algo.group_size
    world = env_rollout(job)  # [world] or [game]: multi-turn episodes, rewards from the end state
    items = world.items if world else load_items(
        job.data.train, required=[job.data.prompt], prompt_field=job.data.prompt,
        base_dir=job.base_dir, max_errors=job.data.max_errors, skip_invalid=job.data.skip_invalid,
    )
    # prompts are checked against the tokenizer before the model loads
    run = start(job, check=None if world else lambda tokenizer: encode_prompts(job, items, tokenizer))
    items, prompts = (items, [[]] * len(items)) if world else run.checked
    run.env_eval = world.evaluate if world else None  # held-out episodes for run_eval
    rollout = world.run_groups if world else run_groups
    monitors = make_monitors(job.grader, job.base_dir)  # [grader.monitor.NAME]: logged, not trained on
    reference = None
    if algo.kl_coef > 0:
        dtype = pick_dtype(job.model.dtype, run.device)
        reference = load_model(run.model_path, device=run.device, dtype=dtype, trainable=False)
    # outcome rewards alone, or PPO's value head (attached here: in the optimizer and the checkpoint)
    critic = make_critic(job, run.model, run.model_path)
    optimizer, scheduler = make_optimizer(run.model, job.optim, critic.lrs)
    state = resume(run, optimizer, scheduler)
    first = state.get("step", 0)
    run.sampler.version = state.get("sampler_version", 0)

    params = SamplingParams(
        sampling.max_new_tokens, sampling.temperature, sampling.top_p, sampling.top_k, tuple(sampling.stop)
    )
    loss = LossSettings.of(algo, sampling)  # the sampler shares the module: mismatch "auto" is off
    shaping = LengthShaping.of(algo, sampling)  # DAPO: overlong penalty, mask_truncated (off by default)
    with run.interrupts, Progress(job.optim.steps, algo.name, enabled=job.run.progress, start=first) as bar:
        for step in range(first + 1, job.optim.steps + 1):
            t_step = time.perf_counter()
            # 1-3. P problems, G attempts each, from a sampler holding the learner's weights
            assert run.sampler.version == step - 1, (
                f"stale sampler: weights version {run.sampler.version}, learner at {step - 1}"
            )
            idx = [item_order(len(items), job.run.seed, pos) for pos in range((step - 1) * P, step * P)]
            groups, times = rollout(
                run.sampler, [items[i] for i in idx], [prompts[i] for i in idx], run.grader, G, params,
                step_generator(job.run.seed, step),
            )
            trajectories = [t for g in groups for t in g.trajectories_G]
            watched = annotate(monitors, groups)  # e.g. gold/mean beside a reward model's score

            # 4-5. rewards -> advantages within each group (PPO: per token, after collation); errored excluded
            rewards_P_G = torch.tensor([[t.reward for t in g.trajectories_G] for g in groups])
            valid_P_G = torch.tensor([[not t.errored for t in g.trajectories_G] for g in groups])
            penalty_B, train_B, shaped = shaping(trajectories)
            train_rewards_P_G = rewards_P_G + penalty_B.view_as(rewards_P_G)  # the logged reward stays the grader's
            adv_P_G = critic.sequence_advantages(train_rewards_P_G, valid_P_G)
            keep_B = valid_P_G.flatten() & train_B
            if algo.drop_zero_advantage:
                keep_B = keep_B & (adv_P_G.flatten() != 0)  # not &=: flatten() is a view
            kept = [t for t, k in zip(trajectories, keep_B.tolist()) if k]

            # 6-9. collate, old/reference logprobs, the update(s)
            t_learn = time.perf_counter()
            metrics = {}
            if kept:
                batch = collate(kept, adv_P_G.flatten()[keep_B].tolist(), run.tokenizer.pad_token_id)
                metrics = critic.prepare(run.model, batch, train_rewards_P_G.flatten()[keep_B])
                if algo.updates_per_batch > 1:
                    batch.old_logp_BT = fill_logprobs(run.model, batch, job.optim.micro_batch_size, loss.temperature)
                if reference is not None:
                    batch.ref_logp_BT = fill_logprobs(reference, batch, job.optim.micro_batch_size, loss.temperature)
                for _ in range(algo.updates_per_batch):
                    metrics |= update(run.model, optimizer, batch, loss, job.optim, critic=critic)
            scheduler.step()  # once per RL step, however many updates it made
            # 10. the sampler shares the module: syncing is a no-op, the version still counts
            run.sampler.version += 1

            # 11. log
            metrics |= step_metrics(trajectories, rewards_P_G, valid_P_G, len(kept), time.perf_counter() - t_step)
            metrics |= signal_metrics(rewards_P_G, valid_P_G, adv_P_G)  # for the no-signal warning
            metrics |= times | {"time/learn": time.perf_counter() - t_learn} | watched | shaped
            if hasattr(run.grader, "metrics"):  # AI judges: calls, tokens, cost, cache hits, parse errors
                metrics |= run.grader.metrics()
            state = {"sampler_version": run.sampler.version, "data_position": step * P}
            samples = transcripts(groups, adv_P_G, job.run.log_samples)
            ids = [f"{items[i]['_source']}:{items[i]['_line']}" for i in idx]
            metrics = after_step(run, step, metrics, samples, state, optimizer, scheduler, ids)
            bar.update(step, metrics)
    state = {"sampler_version": run.sampler.version, "data_position": job.optim.steps * P}
    summary = {"kind": "rl", "algorithm": algo.name, "steps": job.optim.steps}
    return finish(run, job.optim.steps, summary, state, optimizer, scheduler)


def step_metrics(trajectories, rewards_P_G, valid_P_G, n_kept: int, seconds: float) -> dict[str, float]:
    lengths = [sum(t.sampled_mask_T) for t in trajectories]
    stops = Counter(t.stop_reason for t in trajectories)
    valid = valid_P_G.flatten()
    passed = (rewards_P_G.flatten()[valid] >= 1.0).float()
    return {
        **{k: float(v) for k, v in group_stats(rewards_P_G, valid_P_G).items()},
        "pass_rate": float(passed.mean()) if len(passed) else 0.0,
        "kept_sequences": float(n_kept),
        "completion_len_mean": sum(lengths) / len(lengths),
        "completion_len_max": float(max(lengths)),
        **{f"stop/{k}": v / len(trajectories) for k, v in stops.items()},
        **{f"errored/{k}": float(v) for k, v in error_classes(trajectories).items()},
        "attempts": float(len(trajectories)),
        "tokens_per_second": sum(lengths) / seconds,
        "time/step": seconds,
    }


def signal_metrics(rewards_P_G, valid_P_G, adv_P_G) -> dict[str, float]:
    """Groups that train nothing this step: no valid attempt has a nonzero advantage (for GRPO
    and RLOO the zero-variance groups; for expert iteration the groups with no accepted attempt).
    ``no_signal_all_pass`` of them had every valid attempt pass: the kind that harder or unseen
    prompts fix, not a better start. Read by rlft.progress.no_signal_warning."""
    none_P = ((adv_P_G == 0) | ~valid_P_G).all(dim=1)
    all_pass_P = ((rewards_P_G >= 1.0) | ~valid_P_G).all(dim=1) & valid_P_G.any(dim=1)
    return {"no_signal_groups": float(none_P.sum()), "no_signal_all_pass": float((none_P & all_pass_P).sum()),
            "groups": float(len(adv_P_G))}


def error_classes(trajectories) -> Counter:
    """Errored attempts by the class of what went wrong ("RuntimeError", "SandboxError", ...)."""
    return Counter(t.metadata.get("error", "error").split(":")[0] for t in trajectories if t.errored)


def transcripts(groups, adv_P_G, n: int, max_errored: int = 16) -> list[dict]:
    """The first ``n`` attempts of the step, and every errored one (up to ``max_errored``), for
    samples.jsonl; each with its sample id ``file:line#attempt``."""
    out, errored = [], 0
    for p, g in enumerate(groups):
        for i, t in enumerate(g.trajectories_G):
            first = p * len(g.trajectories_G) + i < n
            if not first and not (t.errored and errored < max_errored):
                continue
            errored += t.errored
            prompt = {k: v for k, v in g.item.items() if not k.startswith("_")}
            out.append({
                "sample_id": f"{g.item.get('_source', '?')}:{g.item.get('_line', '?')}#{i}",
                "item": prompt, "completion": t.text, "reward": t.reward, "advantage": float(adv_P_G[p, i]),
                "stop_reason": t.stop_reason, **t.metadata,
            })
    return out
