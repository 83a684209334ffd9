"""The vocabulary of rlft (DESIGN.md §3).

Shape suffixes are part of names: ``P`` prompts per step, ``G`` samples per prompt,
``B = P·G`` sequences, ``T`` tokens.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from typing import Any, Literal, TypedDict


class Message(TypedDict):
    role: str  # "system" | "user" | "assistant" | "tool"
    content: str


StopReason = Literal["eos", "stop", "length", "max_turns", "env_done", "error"]


@dataclass(frozen=True)
class Sample:
    """What a grader sees of one attempt (the ``sample`` in ``grader(sample, item)``).

    The names follow OpenAI's grader templates (``{{sample.output_text}}`` ...).
    ``output_tools`` holds the attempt's tool calls, ``{"name": ..., "arguments": {...}}``.
    """

    output_text: str
    output_tools: tuple[dict[str, Any], ...] = ()

    @functools.cached_property
    def output_json(self) -> Any:
        """``output_text`` parsed as JSON, or None when it is not JSON (that is a score, not an error)."""
        try:
            return json.loads(self.output_text)
        except ValueError:
            return None


@dataclass
class Trajectory:
    """One attempt at a task.

    ``tokens_T`` holds the whole sequence (prompt, sampled text, environment text).
    ``sampled_mask_T`` is 1 exactly where the policy sampled the token; it is the only
    thing that decides which tokens are trained. ``sampler_logp_T`` is the sampler's
    log-probability of each token (0 where the mask is 0).
    """

    tokens_T: list[int]
    sampled_mask_T: list[int]
    sampler_logp_T: list[float]
    reward: float = 0.0
    stop_reason: StopReason = "eos"
    errored: bool = False  # the grader raised: masked out of training, counted, logged
    text: str = ""  # the sampled text, for transcripts and graders
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.tokens_T)
        assert len(self.sampled_mask_T) == n and len(self.sampler_logp_T) == n, (
            f"Trajectory fields disagree in length: tokens {n}, mask {len(self.sampled_mask_T)}, "
            f"logp {len(self.sampler_logp_T)}"
        )


@dataclass
class Group:
    """The G trajectories of one prompt; advantages are computed per group."""

    trajectories_G: list[Trajectory]
    item: dict[str, Any] = field(default_factory=dict)


@dataclass
class Batch:
    """Padded tensors for the learner, with shared prefixes stored once.

    Each trajectory is split into its *prefix* (the leading tokens the policy did not sample:
    the prompt, or the first observation) and its *continuation*. Identical prefixes — the G
    attempts at one prompt — are stored once in ``prefix_ids_PT`` (left-padded) and
    ``row_B`` says which prefix each continuation extends; the learner runs each prefix once
    (``rlft.algos.logprobs.prefix_logprobs``).

    The continuation tensors are right-padded (B, T). ``loss_mask_BT`` is the trajectories'
    ``sampled_mask`` and nothing else. ``adv_BT`` is (B, 1) for sequence-level advantages.
    ``sampler_logp_BT`` is what the sampler reported (for the sampler-vs-learner gap);
    ``old_logp_BT`` / ``ref_logp_BT`` are filled by the loop when used; ``adv_BT`` (then (B, T)),
    ``returns_BT`` and ``values_BT`` by a value critic (rlft.critic).
    """

    prefix_ids_PT: Any
    prefix_mask_PT: Any
    row_B: Any
    input_ids_BT: Any
    attention_mask_BT: Any
    loss_mask_BT: Any
    adv_BT: Any
    sampler_logp_BT: Any
    old_logp_BT: Any = None
    ref_logp_BT: Any = None
    returns_BT: Any = None  # PPO: value targets (lambda-returns)
    values_BT: Any = None  # PPO: the value head's values at rollout time (for value clipping)

    def __len__(self) -> int:
        return self.input_ids_BT.shape[0]

    def slice(self, start: int, stop: int) -> "Batch":
        """Rows [start, stop), keeping only the prefixes they use."""
        used_P, row_B = self.row_B[start:stop].unique(return_inverse=True)
        fields = {k: None if v is None else v[start:stop] for k, v in vars(self).items()}
        fields |= {"prefix_ids_PT": self.prefix_ids_PT[used_P], "prefix_mask_PT": self.prefix_mask_PT[used_P]}
        return Batch(**{**fields, "row_B": row_B})

    def to(self, device) -> "Batch":
        return Batch(**{k: None if v is None else v.to(device) for k, v in vars(self).items()})
