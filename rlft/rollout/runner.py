"""Roll out single-turn attempts and grade them (DESIGN.md §4 steps 3-4).

A grader that raises, or returns a non-finite number, marks its trajectory *errored*: the
loop masks it out, counts it and logs the error; it is never silently scored 0.
"""

from __future__ import annotations

import math
import time
from typing import Sequence

import torch

from rlft.rewards.graders import Grader
from rlft.rollout.sampler import Completion, Sampler, SamplingParams
from rlft.types import Group, Sample, Trajectory


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
