"""Held-out evaluation: mean reward, pass@1, pass@k and pass^k.

An attempt *passes* when its reward is at least 1 (the grader fully accepts it). pass@k uses
the unbiased estimator of Chen et al. 2021 (Codex): 1 - C(n - c, k) / C(n, k) with n samples
of which c pass. pass^k (τ-bench, Yao et al. 2024) is the chance that *all* k attempts pass —
what a business relying on the agent needs — estimated without bias by C(c, k) / C(n, k).

``evaluate`` also hands each attempt's row to ``log`` (``item_row``): which item (``file:line``),
the prompt (shortened), the output, reward, pass, stop reason, and the grader's diagnostics
(its error, monitor scores). Runs write them to ``eval_samples.jsonl``, one line per attempt.
"""

from __future__ import annotations

import json
from math import comb
from typing import Callable, Sequence

import torch

from rlft.rewards.graders import Grader
from rlft.rewards.monitor import Monitor, annotate
from rlft.rollout.runner import run_groups
from rlft.rollout.sampler import Sampler, SamplingParams
from rlft.types import Group

PROMPT_CHARS = 300  # longer prompts (and fields) are shortened in eval rows; the item id finds them whole


def pass_at_k(n: int, c: int, k: int) -> float:
    """Chance that at least one of k attempts drawn without replacement from n passes."""
    assert 0 <= c <= n and 1 <= k <= n, f"need 0 <= c={c} <= n={n} and 1 <= k={k} <= n"
    if n - c < k:
        return 1.0
    return 1.0 - comb(n - c, k) / comb(n, k)


def pass_hat_k(n: int, c: int, k: int) -> float:
    """Chance that all of k attempts drawn without replacement from n (c of which pass) pass."""
    assert 0 <= c <= n and 1 <= k <= n, f"need 0 <= c={c} <= n={n} and 1 <= k={k} <= n"
    return comb(c, k) / comb(n, k)


def score(rewards_P_N: Sequence[Sequence[float]], k: int) -> dict[str, float]:
    """Metrics over P prompts with N >= k rewards each."""
    passes_P = [sum(r >= 1.0 for r in rewards) for rewards in rewards_P_N]
    n = len(rewards_P_N[0])
    out = {
        "mean_reward": sum(sum(r) for r in rewards_P_N) / (len(rewards_P_N) * n),
        "pass@1": sum(pass_at_k(n, c, 1) for c in passes_P) / len(passes_P),
    }
    if k > 1:
        out[f"pass@{k}"] = sum(pass_at_k(n, c, k) for c in passes_P) / len(passes_P)
        out[f"pass^{k}"] = sum(pass_hat_k(n, c, k) for c in passes_P) / len(passes_P)
    return out


def evaluate(
    sampler: Sampler,
    items: Sequence[dict],
    prompts: Sequence[list[int]],
    grader: Grader,
    params: SamplingParams,
    samples: int,
    seed: int,
    batch_prompts: int = 64,
    monitors: dict[str, Monitor] | None = None,
    prompt_field: str = "prompt",
    log: Callable[[list[dict]], None] | None = None,
) -> dict[str, float]:
    """Score ``samples`` attempts at every prompt; greedy when params.temperature == 0.
    ``monitors`` (rlft.rewards.monitor) add NAME/mean and NAME/pass_rate. ``log`` gets the
    ``item_row`` of every attempt, in item order."""
    generator = torch.Generator().manual_seed(seed)
    rewards_P_N, errored, all_groups = [], 0, []
    for start in range(0, len(items), batch_prompts):
        groups, _ = run_groups(
            sampler, items[start : start + batch_prompts], prompts[start : start + batch_prompts],
            grader, samples, params, generator,
        )
        for g in groups:
            rewards_P_N.append([t.reward for t in g.trajectories_G])
            errored += sum(t.errored for t in g.trajectories_G)
        all_groups += groups
    watched = annotate(monitors or {}, all_groups)  # also puts each monitor's score in the trajectories' metadata
    if log is not None:
        log([item_row(g, i, prompt_field) for g in all_groups for i in range(len(g.trajectories_G))])
    return {**score(rewards_P_N, samples), "errored": float(errored), **watched}


def item_row(group: Group, attempt: int, prompt_field: str) -> dict:
    """One held-out attempt for eval_samples.jsonl: ``item`` is the row's ``file:line``; ``fields``
    the row's other fields (the reference answer...), each shortened like the prompt."""
    t, item = group.trajectories_G[attempt], group.item
    return {
        "item": f"{item.get('_source', '?')}:{item.get('_line', '?')}", "attempt": attempt,
        "prompt": _short(item.get(prompt_field, "")),
        "fields": {k: _short(v) for k, v in item.items() if k != prompt_field and not k.startswith("_")},
        "output": t.text, "reward": t.reward, "pass": t.reward >= 1.0, "stop_reason": t.stop_reason,
        **{k: v for k, v in t.metadata.items() if k != "version"},  # the grader's error, monitor scores
    }


def _short(value: object) -> object:
    """``value`` when short; else its text (chat messages as ``[role] content`` lines, other
    values as JSON) cut to PROMPT_CHARS."""
    if isinstance(value, list) and value and all(isinstance(m, dict) and "content" in m for m in value):
        value = "\n".join(f"[{m.get('role')}] {m['content']}" for m in value)
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return value if len(text) <= PROMPT_CHARS else text[: PROMPT_CHARS - 1] + "…"
