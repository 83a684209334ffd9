"""Roll out attempts and grade them (DESIGN.md §4 steps 3-4): single-turn prompts with a
grader (``run_groups``) and multi-turn episodes in environments (``run_episodes``).

A grader that raises, or returns a non-finite number, marks its trajectory *errored*: the
loop masks it out, counts it and logs the error; it is never silently scored 0.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Sequence

import torch

from rlft.envs.base import Env
from rlft.rewards.graders import Grader
from rlft.rollout.render import ChatRenderer
from rlft.rollout.sampler import Completion, Sampler, SamplingParams
from rlft.types import Group, Message, Sample, StopReason, Trajectory


def grade(grader: Grader, text: str, item: dict) -> tuple[float, str | None]:
    """(reward, error message or None)."""
    try:
        reward = float(grader(Sample(output_text=text), item))
    except Exception as e:  # a grader bug must not kill a long run; it is counted and logged
        return 0.0, f"{type(e).__name__}: {e}"
    if not math.isfinite(reward):
        return 0.0, f"grader returned {reward}"
    return reward, None


def to_trajectory(prompt_T: list[int], c: Completion, reward: float, error: str | None, version: int) -> Trajectory:
    return Trajectory(
        tokens_T=prompt_T + c.tokens,
        sampled_mask_T=[0] * len(prompt_T) + [1] * len(c.tokens),
        sampler_logp_T=[0.0] * len(prompt_T) + c.logp,
        reward=reward,
        stop_reason=c.stop_reason,
        errored=error is not None,
        text=c.text,
        metadata={"version": version, **({"error": error} if error else {})},
    )


def run_groups(
    sampler: Sampler,
    items_P: Sequence[dict],
    prompts_P: Sequence[list[int]],
    grader: Grader,
    G: int,
    params: SamplingParams,
    generator: torch.Generator,
) -> tuple[list[Group], dict[str, float]]:
    """G graded attempts at each of the P prompts, and the seconds spent sampling and grading."""
    t0 = time.perf_counter()
    completions_P_G = sampler.generate(prompts_P, G, params, generator)
    t1 = time.perf_counter()
    groups = []
    for item, prompt_T, completions_G in zip(items_P, prompts_P, completions_P_G):
        trajectories_G = []
        for c in completions_G:
            reward, error = grade(grader, c.text, item)
            trajectories_G.append(to_trajectory(list(prompt_T), c, reward, error, sampler.version))
        groups.append(Group(trajectories_G, item))
    return groups, {"time/sample": t1 - t0, "time/reward": time.perf_counter() - t1}


# --- multi-turn episodes ---------------------------------------------------------------------


@dataclass
class Limits:
    """When an episode is cut short. ``max_length`` caps the whole token list: an episode stops
    ("length") when its context cannot hold another full reply of ``max_new_tokens``."""

    max_turns: int = 8  # policy replies per episode ("max_turns")
    max_length: int = 1024


@dataclass
class _Episode:
    env: Env
    history: list[Message]  # the conversation as rendered so far
    tokens_T: list[int]
    sampled_mask_T: list[int]
    logp_T: list[float]
    turns: int = 0
    reward: float = 0.0
    stop: StopReason | None = None
    error: str | None = None
    turn_rewards: list[float] = field(default_factory=list)
    info: dict = field(default_factory=dict)

    def add(self, tokens: list[int], sampled: bool, logp: list[float] | None = None) -> None:
        self.tokens_T += tokens
        self.sampled_mask_T += [int(sampled)] * len(tokens)
        self.logp_T += logp if logp is not None else [0.0] * len(tokens)


def _step(ep: _Episode, c: Completion, renderer: ChatRenderer, limits: Limits, params: SamplingParams) -> None:
    """Record one sampled reply, let the env answer, decide whether the episode goes on."""
    ep.add(c.tokens, True, c.logp)
    ep.turns += 1
    if c.stop_reason == "length":  # the reply ran out of tokens: there is no complete action
        ep.stop = "length"
        return
    try:
        result = ep.env.step(c.text)
    except Exception as e:  # an env bug: masked out, counted, logged (never scored 0)
        ep.stop, ep.error = "error", f"{type(e).__name__}: {e}"
        return
    ep.reward += result.reward
    ep.turn_rewards.append(result.reward)
    ep.info = result.info or ep.info
    if result.done:
        ep.stop = "env_done"
        return
    if ep.turns >= limits.max_turns:
        ep.stop = "max_turns"
        return
    between = renderer.between(ep.history, c.text, result.messages, ep.env.tools, c.stop_reason == "eos")
    ep.history = [*ep.history, {"role": "assistant", "content": c.text}, *result.messages]
    ep.add(between, False)
    if len(ep.tokens_T) + params.max_new_tokens > limits.max_length:
        ep.stop = "length"


def _transcript(history: list[Message], n_shown: int) -> str:
    return "\n".join(f"[{m['role']}] {m['content']}" for m in history[n_shown:])


def run_episodes(
    sampler: Sampler,
    renderer: ChatRenderer,
    envs_P_G: Sequence[Sequence[Env]],
    items_P: Sequence[dict],
    params: SamplingParams,
    limits: Limits,
    generator: torch.Generator,
) -> tuple[list[Group], dict[str, float]]:
    """Play every env to its end, all episodes decoding together turn by turn.

    Each episode's token list interleaves what the policy sampled (``sampled_mask`` 1) with the
    environment's text (0). The first turn samples the G episodes of a prompt from one prefill
    when their opening is the same. An episode ends when its env says done ("env_done"), a reply
    runs out of tokens or the context is full ("length"), after ``limits.max_turns`` replies
    ("max_turns"), or when the env raises ("error": masked out like a grader error).
    """
    t0 = time.perf_counter()
    eps_P_G, t_env = [], 0.0
    for envs_G in envs_P_G:
        row = []
        for env in envs_G:
            shown, tokens = renderer.initial(env.initial_observation(), env.tools)
            row.append(_Episode(env, shown, [], [], []))
            row[-1].add(tokens, False)
        eps_P_G.append(row)
    shown_at_start = [[len(ep.history) for ep in row] for row in eps_P_G]
    everyone = [ep for row in eps_P_G for ep in row]
    for ep in everyone:
        if len(ep.tokens_T) + params.max_new_tokens > limits.max_length:
            ep.stop = "length"  # the opening leaves no room for a reply
    active = [ep for ep in everyone if ep.stop is None]
    first = True
    while active:
        if first and len(active) == len(everyone) and all(len({tuple(e.tokens_T) for e in row}) == 1 for row in eps_P_G):
            # one prefill per prompt: the G openings are identical
            completions = [c for cs in sampler.generate([row[0].tokens_T for row in eps_P_G], len(eps_P_G[0]), params, generator) for c in cs]
        else:
            completions = [cs[0] for cs in sampler.generate([ep.tokens_T for ep in active], 1, params, generator)]
        first = False
        t1 = time.perf_counter()
        for ep, c in zip(active, completions):
            _step(ep, c, renderer, limits, params)
        t_env += time.perf_counter() - t1
        active = [ep for ep in active if ep.stop is None]

    groups = []
    for p, (row, item) in enumerate(zip(eps_P_G, items_P)):
        trajectories_G = []
        for g, ep in enumerate(row):
            meta = {"version": sampler.version, "turns": ep.turns, "turn_rewards": ep.turn_rewards, **ep.info}
            if ep.error:
                meta["error"] = ep.error
            trajectories_G.append(Trajectory(
                ep.tokens_T, ep.sampled_mask_T, ep.logp_T, reward=ep.reward, stop_reason=ep.stop,
                errored=ep.error is not None, text=_transcript(ep.history, shown_at_start[p][g]), metadata=meta,
            ))
        groups.append(Group(trajectories_G, item))
    total = time.perf_counter() - t0
    return groups, {"time/sample": total - t_env, "time/reward": t_env}
