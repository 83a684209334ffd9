"""Checks of the [algorithm] table: value ranges, the fields that pick from a table of
rlft.algos, and the combinations that fail before any model loads (rlft.config.loading merges
them into its own)."""

from __future__ import annotations

import importlib
from typing import Any, Callable

# "algorithm.key" -> (predicate, what the value must be)
ALGORITHM_RANGES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "algorithm.group_size": (lambda v: v >= 1, ">= 1"),
    "algorithm.prompts_per_step": (lambda v: v >= 1, ">= 1"),
    "algorithm.kl_coef": (lambda v: v >= 0, ">= 0"),
    "algorithm.clip_low": (lambda v: v >= 0, ">= 0"),
    "algorithm.clip_high": (lambda v: v >= 0, ">= 0"),
    "algorithm.updates_per_batch": (lambda v: v >= 1, ">= 1"),
    "algorithm.value_coef": (lambda v: v >= 0, ">= 0"),
    "algorithm.value_clip": (lambda v: v >= 0, ">= 0 (0 = no clipping)"),
    "algorithm.value_lr": (lambda v: v >= 0, ">= 0 (0 = optim.lr)"),
    "algorithm.gamma": (lambda v: 0 <= v <= 1, "in [0, 1]"),
    "algorithm.gae_lambda": (lambda v: 0 <= v <= 1, "in [0, 1]"),
    "algorithm.mismatch_cap": (lambda v: v >= 1, ">= 1 (below 1 it would shrink tokens sampler and learner agree on)"),
    "algorithm.overlong_buffer": (lambda v: v >= 0, ">= 0 (0 = no overlong penalty)"),
    "algorithm.overlong_penalty": (lambda v: v >= 0, ">= 0 (the reward term goes down to -overlong_penalty)"),
}


def _keys(module: str, name: str, *first: str) -> Callable[[], list[str]]:
    """``first``, then the keys of ``module.name``, imported when first needed (the algos pull in torch)."""
    return lambda: [*first, *getattr(importlib.import_module(module), name)]


# "algorithm.key" -> (what it is, its valid names), for the fields added with the 2025-26 catalogue
ALGORITHM_CHOICES: dict[str, tuple[str, Callable[[], list[str]]]] = {
    "algorithm.ratio_level": ("ratio level", _keys("rlft.algos.losses", "RATIO_LEVELS")),
    "algorithm.policy_loss": ("policy loss", _keys("rlft.algos.losses", "POLICY_LOSSES")),
    "algorithm.mismatch": ("mismatch correction", _keys("rlft.algos.mismatch", "MISMATCH", "auto", "off")),
    "algorithm.mismatch_level": ("mismatch level", _keys("rlft.algos.mismatch", "MISMATCH_LEVELS")),
}


def algorithm_checks(s: dict[str, Any], src: dict[tuple[str, str], str]) -> list[str]:
    """[algorithm] settings that do not combine with another field: one line each, naming both
    fields and the fix. ``s`` maps section names to built configs, ``src`` (section, key) to where
    a value came from."""
    a, out = s["algorithm"], []
    staleness = s["distributed"].max_staleness
    if a.mismatch not in ("auto", "off") and staleness > 0:
        at = src.get(("algorithm", "mismatch"), f"[algorithm] mismatch = {a.mismatch!r}")
        out.append(f"{at}: with distributed.max_staleness = {staleness} the staleness correction already reweights "
                   f"every token by learner/sampler probability (capped at distributed.is_cap), so the mismatch "
                   f"would be corrected twice; fix: mismatch = \"auto\" (it leaves the correction to the staleness "
                   f"one) or distributed.max_staleness = 0")
    max_new = s["sampling"].max_new_tokens
    if a.overlong_buffer > max_new:
        at = src.get(("algorithm", "overlong_buffer"), f"[algorithm] overlong_buffer = {a.overlong_buffer}")
        out.append(f"{at}: the overlong buffer ({a.overlong_buffer} tokens) is longer than sampling.max_new_tokens = "
                   f"{max_new}, so even an empty reply would be penalised; fix: overlong_buffer <= {max_new} (DAPO: "
                   f"a fifth to a quarter of it), or raise max_new_tokens")
    return out
