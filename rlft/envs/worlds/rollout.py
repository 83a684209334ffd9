"""A world as the RL loop's source of episodes, and a world's held-out evaluation.

``WorldRollout(job)`` is what ``train_rl`` uses when the job has a ``[world]`` table: its
``items`` are the world's tasks and ``run_groups`` has the signature of
``rlft.rollout.runner.run_groups`` (prompts and grader are unused: the opening comes from the
env, the reward from the end state), so the loop does not change shape.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

from rlft.config import ConfigError, Job
from rlft.envs.tools import pick_format
from rlft.envs.worlds.env import WorldEnv
from rlft.envs.worlds.scoring import score
from rlft.envs.worlds.world import BUILT_IN, World, WorldError, load_world
from rlft.eval import score as score_rewards
from rlft.rollout.render import ChatRenderer
from rlft.rollout.runner import Limits, run_episodes
from rlft.rollout.sampler import HFSampler, SamplingParams
from rlft.run import model_path, resolve


def open_world(job: Job) -> World:
    """The job's world, checked before any model loads; problems are ConfigErrors."""
    w = job.world
    name = w.name if (BUILT_IN / w.name / "schema.sql").exists() else resolve(job, w.name)
    try:
        world = load_world(name)
        world.view(w.view)
    except WorldError as e:
        raise ConfigError(f"[world] name = {w.name!r}: {e}") from None
    for split in (w.split, w.eval_split):
        if split and split not in world.tasks:
            raise ConfigError(f"[world] split {split!r}: world {w.name!r} has task files {', '.join(world.tasks)}")
    return world


class WorldRollout:
    def __init__(self, job: Job):
        self.job, self.world = job, open_world(job)
        self.items = self.world.tasks[job.world.split]
        self.limits = Limits(job.world.max_turns, job.model.max_length)

    def envs(self, tasks: Sequence[dict], G: int, tokenizer) -> list[list[WorldEnv]]:
        fmt = pick_format(self.job.world.tool_format, tokenizer)
        view = self.world.view(self.job.world.view)
        w = self.job.world
        return [[WorldEnv(self.world, t, view, fmt, w.partial_credit, w.instructions, w.require_reads) for _ in range(G)]
                for t in tasks]

    def run_groups(self, sampler, items_P, prompts_P, grader, G, params, generator):
        """G episodes of each task in ``items_P`` (``prompts_P`` and ``grader`` are unused)."""
        renderer = ChatRenderer(sampler.tokenizer, pick_format(self.job.world.tool_format, sampler.tokenizer))
        return run_episodes(sampler, renderer, self.envs(items_P, G, sampler.tokenizer), items_P, params, self.limits, generator)

    def evaluate(self, sampler, params: SamplingParams, seed: int) -> dict[str, float]:
        """The run's periodic held-out evaluation (rlft.run.run_eval): ``evaluate_world`` on
        [world] eval_split with eval.samples attempts per task; {} when there is no eval split."""
        if not self.job.world.eval_split:
            return {}
        return evaluate_world(self, sampler, self.job.world.eval_split, params, self.job.eval.samples, seed)


def evaluate_world(rollout: WorldRollout, sampler, split: str, params: SamplingParams, samples: int, seed: int,
                   batch_tasks: int = 32, log: Callable[[dict], None] | None = None) -> dict[str, float]:
    """Held-out metrics over ``split``: pass@1, pass@k and pass^k (k = samples), mean reward,
    policy violations (writes that left a wrong end state), stop reasons, and success per task
    kind (``success/KIND``) for tasks that carry a ``kind``. ``log`` gets each episode's row
    (task, attempt, reward, stop reason, transcript after the opening, tool calls)."""
    generator = torch.Generator().manual_seed(seed)
    tasks = rollout.world.tasks[split][: rollout.job.eval.size or None]
    renderer = ChatRenderer(sampler.tokenizer, pick_format(rollout.job.world.tool_format, sampler.tokenizer))
    rewards_P_N, violations, stops, n = [], 0, {}, 0
    by_kind: dict[str, list[bool]] = {}  # tasks with a "kind": success per kind, to see *what* was learnt
    for start in range(0, len(tasks), batch_tasks):
        chunk = tasks[start : start + batch_tasks]
        envs_P_G = rollout.envs(chunk, samples, sampler.tokenizer)
        groups, _ = run_episodes(sampler, renderer, envs_P_G, chunk, params, rollout.limits, generator)
        for g, envs_G in zip(groups, envs_P_G):
            rewards_P_N.append([t.reward for t in g.trajectories_G])
            for attempt, (t, env) in enumerate(zip(g.trajectories_G, envs_G)):
                info = t.metadata if "violation" in t.metadata else score(rollout.world, env.task, env.db, env.said, env.wrote, False)[1]
                violations += bool(info["violation"])  # episodes cut by a limit are judged on their writes too
                if "kind" in env.task:
                    by_kind.setdefault(env.task["kind"], []).append(t.reward >= 1.0)
                stops[t.stop_reason] = stops.get(t.stop_reason, 0) + 1
                n += 1
                if log is not None:
                    log({"task": env.task["id"], "instruction": env.task["instruction"], "attempt": attempt,
                         "reward": t.reward, "stop_reason": t.stop_reason, "transcript": t.text, **t.metadata,
                         "actions": env.actions})
    out = score_rewards(rewards_P_N, samples)
    out |= {"violation_rate": violations / n, **{f"stop/{k}": v / n for k, v in stops.items()}, "tasks": float(len(tasks))}
    out |= {f"success/{k}": sum(v) / len(v) for k, v in sorted(by_kind.items())}
    return out


def world_eval(job: Job, split: str = "") -> dict[str, float]:
    """``rlft world eval JOB``: score model.path on the world's held-out tasks (eval.samples
    attempts each, eval.temperature); writes world_eval.json (the metrics) and
    world_eval_samples.jsonl (one line per episode, ``evaluate_world``'s rows) in run.out."""
    import json
    from pathlib import Path

    from rlft.models import load_model, load_tokenizer, pick_device, pick_dtype

    rollout = WorldRollout(job)
    split = split or job.world.eval_split
    if split not in rollout.world.tasks:
        raise ConfigError(f"[world] eval_split {split!r}: world has task files {', '.join(rollout.world.tasks)}")
    out = Path(resolve(job, job.run.out))
    out.mkdir(parents=True, exist_ok=True)
    path = model_path(job, out)  # a folder relative to the job file, else a hub id or pkg:...gguf as written
    device = pick_device(job.run.device)
    model = load_model(path, device=device, dtype=pick_dtype(job.model.dtype, device), trainable=False)
    sampler = HFSampler(model, load_tokenizer(path))
    s = job.sampling
    params = SamplingParams(s.max_new_tokens, job.eval.temperature, s.top_p, s.top_k, tuple(s.stop))
    with open(out / "world_eval_samples.jsonl", "w", encoding="utf-8") as f:
        def log(row: dict) -> None:
            f.write(json.dumps(row, default=str) + "\n")

        metrics = evaluate_world(rollout, sampler, split, params, job.eval.samples, job.run.seed, log=log)
    (out / "world_eval.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics
