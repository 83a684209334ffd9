"""Checks of the [algorithm] table: value ranges and the fields that pick from a table of
rlft.algos (rlft.config.loading merges them into its own)."""

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
}


def _keys(module: str, name: str, *first: str) -> Callable[[], list[str]]:
    """``first``, then the keys of ``module.name``, imported when first needed (the algos pull in torch)."""
    return lambda: [*first, *getattr(importlib.import_module(module), name)]


# "algorithm.key" -> (what it is, its valid names), for the fields added with the 2025-26 catalogue
ALGORITHM_CHOICES: dict[str, tuple[str, Callable[[], list[str]]]] = {
    "algorithm.ratio_level": ("ratio level", _keys("rlft.algos.losses", "RATIO_LEVELS")),
    "algorithm.policy_loss": ("policy loss", _keys("rlft.algos.losses", "POLICY_LOSSES")),
}

