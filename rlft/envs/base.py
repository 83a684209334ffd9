"""The environment protocol (DESIGN.md §4, after tinker-cookbook's rl/types.py).

An Env is *single-use*: it is made for one episode, shows its first observation, then answers
each action of the policy until it says ``done``. There is no reset; a new episode is a new Env.
Observations are chat messages; the runner (``rlft.rollout.runner.run_episodes``) turns them into
tokens with the tokenizer's chat template and marks them ``sampled_mask = 0``, so nothing the
environment says is ever trained.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from rlft.types import Message


@dataclass
class StepResult:
    """What the environment answers to one action.

    ``messages`` are appended to the conversation (tool results, the user's reply); they are
    empty when ``done``. ``reward`` is this step's reward (worlds give theirs only at the end);
    ``info`` carries diagnostics (what a tool did, why the end state differed) for transcripts.
    """

    messages: list[Message] = field(default_factory=list)
    reward: float = 0.0
    done: bool = False
    info: dict[str, Any] = field(default_factory=dict)


class Env(Protocol):
    tools: list[dict]
    """JSON schemas of the tools the policy may call (``rlft.envs.tools.tool_schema``); [] = none."""

    def initial_observation(self) -> list[Message]:
        """The opening messages (system policy, the user's request)."""
        ...

    def step(self, action: str) -> StepResult:
        """Answer the policy's reply ``action`` (its sampled text, special tokens removed)."""
        ...
