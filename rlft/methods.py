"""The spectrum from imitation to RL as one axis: ``algorithm.name`` picks the method, and the
same job file (data with demonstrations, a grader) runs any of them with ``rlft train``.

| name                      | learns from                  | advantage                           | loop         |
| ------------------------- | ---------------------------- | ----------------------------------- | ------------ |
| sft                       | a demonstrator's answers     | 1 on every demonstration token      | train_sft    |
| expert_iteration          | its own accepted attempts    | 1 if the grader accepts, else drop  | train_rl     |
| grpo, rloo, reinforce_pp… | its own attempts, graded     | outcome reward minus a group/batch baseline | train_rl |
| ppo                       | its own attempts, graded     | GAE from a learned value function   | train_rl     |
"""

from __future__ import annotations

import importlib

from rlft.algos.advantages import ADVANTAGES

# algorithm.name -> the module whose train(job) runs it
METHODS = {**{name: "rlft.train_rl" for name in ADVANTAGES}, "ppo": "rlft.train_rl", "sft": "rlft.train_sft"}


def train(job) -> dict:
    """Run ``job`` with the loop of its ``algorithm.name``; returns the run's summary."""
    return importlib.import_module(METHODS[job.algorithm.name]).train(job)
