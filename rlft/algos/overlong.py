"""Overlong handling (DAPO, Yu et al. 2025, §3.4): what to do with attempts that hit the length limit.

Two knobs, both off by default:
1. A soft overlong penalty (``algorithm.overlong_buffer`` > 0): a reward term that falls linearly
   from 0 at ``max_new_tokens - buffer`` tokens to ``-overlong_penalty`` at ``max_new_tokens``
   (DAPO eq. 13), added to the reward the advantage is computed from (the logged reward and pass
   rate stay the grader's). Length is counted in sampled tokens, per reply: a multi-turn
   episode's longest reply, since ``max_new_tokens`` caps each reply.
2. ``algorithm.mask_truncated``: attempts cut by the length limit (stop reason "length") carry no
   loss (DAPO's "overlong filtering"): a cut answer is not a wrong one. They still count in their
   group's baseline, as DAPO does; only their tokens leave the update.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


def soft_overlong_penalty(lengths_B: Tensor, max_tokens: int, buffer: int, penalty: float) -> Tensor:
    """Reward term (B,) for replies of ``lengths_B`` tokens: 0 up to ``max_tokens - buffer``,
    then ``-penalty · (L - (max_tokens - buffer)) / buffer``, -penalty from ``max_tokens`` on;
    all 0 when buffer is 0.

    Worked example: max 10, buffer 4, penalty 1: L = 6 -> 0, 7 -> -0.25, 9 -> -0.75, 10 -> -1."""
    assert 0 <= buffer <= max_tokens, f"overlong buffer must be in [0, {max_tokens}], got {buffer}"
    if buffer == 0:
        return torch.zeros(lengths_B.shape, dtype=torch.float32)
    over_B = (lengths_B.float() - (max_tokens - buffer)).clamp(0.0, float(buffer))
    return -penalty * over_B / buffer


def longest_reply(sampled_mask_T: list[int]) -> int:
    """The longest run of sampled tokens: one reply of the policy. [0, 1, 1, 0, 1] -> 2."""
    best = run = 0
    for m in sampled_mask_T:
        run = run + 1 if m else 0
        best = max(best, run)
    return best


@dataclass(frozen=True)
class LengthShaping:
    """DAPO's overlong penalty and ``mask_truncated``, applied to a step's trajectories."""

    max_tokens: int
    buffer: int = 0
    penalty: float = 1.0
    mask_truncated: bool = False

    @classmethod
    def of(cls, algo, sampling) -> "LengthShaping":
        """From the job's AlgorithmConfig and SamplingConfig."""
        return cls(sampling.max_new_tokens, algo.overlong_buffer, algo.overlong_penalty, algo.mask_truncated)

    def __call__(self, trajectories_B: list) -> tuple[Tensor, Tensor, dict[str, float]]:
        """(penalty_B, train_B, metrics): the reward term of each attempt, whether it is trained
        on, and (for the knobs that are on) "overlong/penalty_mean", "overlong/penalised_fraction",
        "truncated/masked_fraction"."""
        lengths_B = torch.tensor([longest_reply(t.sampled_mask_T) for t in trajectories_B])
        penalty_B = soft_overlong_penalty(lengths_B, self.max_tokens, self.buffer, self.penalty)
        truncated_B = torch.tensor([t.stop_reason == "length" for t in trajectories_B], dtype=torch.bool)
        train_B = ~truncated_B if self.mask_truncated else torch.ones_like(truncated_B)
        metrics = {}
        if self.buffer > 0:
            metrics |= {"overlong/penalty_mean": float(penalty_B.mean()),
                        "overlong/penalised_fraction": float((penalty_B < 0).float().mean())}
        if self.mask_truncated:
            metrics["truncated/masked_fraction"] = float(truncated_B.float().mean())
        return penalty_B, train_B, metrics
