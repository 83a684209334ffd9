"""Roll out attempts and grade them (DESIGN.md §4 steps 3-4): single-turn prompts with a
grader (``run_groups``) and multi-turn episodes in environments (``run_episodes``).

A grader that raises, or returns a non-finite number, marks its trajectory *errored*: the
loop masks it out, counts it and logs the error; it is never silently scored 0. A grader may
also have ``grade_group(samples, items) -> list[float | Exception]`` (AI judges: slow per call);
then each group is graded in one call, the P groups concurrently, with the same error rules.
"""

from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor
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


def _outcome(result: object) -> tuple[float, str | None]:
    """``grade``'s (reward, error) for one result of ``grade_group``: a number or an exception."""
    if isinstance(result, BaseException):
        return 0.0, f"{type(result).__name__}: {result}"
    try:
        reward = float(result)  # type: ignore[arg-type]
    except Exception as e:  # None, a string...: errored like a grader that returned it
        return 0.0, f"{type(e).__name__}: {e}"
    return (reward, None) if math.isfinite(reward) else (0.0, f"grader returned {reward}")


def _grade_group(grader, texts_G: list[str], item: dict) -> list[tuple[float, str | None]]:
    try:
        results = grader.grade_group([Sample(output_text=t) for t in texts_G], [item] * len(texts_G))
    except Exception as e:  # the whole group's grading failed: every attempt is errored with it
        return [_outcome(e)] * len(texts_G)
    assert len(results) == len(texts_G), f"grade_group returned {len(results)} results for {len(texts_G)} samples"
    return [_outcome(r) for r in results]


def grade_groups(grader: Grader, items_P: Sequence[dict], texts_P_G: Sequence[list[str]]) -> list[list[tuple[float, str | None]]]:
    """(reward, error) of every attempt: ``grade`` one by one, or ``grade_group`` per group (the
    groups concurrently; the grader bounds its own calls in flight)."""
    if not hasattr(grader, "grade_group"):
        return [[grade(grader, t, item) for t in texts_G] for item, texts_G in zip(items_P, texts_P_G)]
    with ThreadPoolExecutor(max(1, len(items_P)), thread_name_prefix="rlft-grade") as pool:
        return list(pool.map(lambda args: _grade_group(grader, *args), zip(texts_P_G, items_P)))


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
    graded_P_G = grade_groups(grader, items_P, [[c.text for c in cs] for cs in completions_P_G])
    groups = []
    for item, prompt_T, completions_G, graded_G in zip(items_P, prompts_P, completions_P_G, graded_P_G):
        trajectories_G = [to_trajectory(list(prompt_T), c, reward, error, sampler.version)
                          for c, (reward, error) in zip(completions_G, graded_G)]
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
    before, ep.history = ep.history, [*ep.history, {"role": "assistant", "content": c.text}]  # the transcript keeps every reply
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
    eos = renderer.tokenizer.decode(c.tokens[-1:]) if c.stop_reason == "eos" else False  # which EOS it sampled
    between = renderer.between(before, c.text, result.messages, ep.env.tools, eos)
    ep.history = [*ep.history, *result.messages]
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
