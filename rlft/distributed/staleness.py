"""Bounded staleness (``[distributed] max_staleness > 0``): samples drawn with weights up to k
versions behind the learner, corrected with truncated importance sampling.

The gradient the learner wants is E_pi[A ∇log pi]; the samples come from the sampler's mu (older
weights, or another engine's numerics). Each sampled token is reweighted by
w = pi(y) / mu(y), truncated at ``cap`` so a rare token cannot blow the step up: truncated IS
(Ionides 2008; used for sampler/learner mismatch in "Your Efficient RL Framework Secretly Brings
You Off-Policy RL Training", Yao et al. 2025). w is folded into the advantage (B, T), which is
exact for the policy-gradient loss and for PPO-clip (w > 0 factors out of the min).
"""

from __future__ import annotations

import torch
from torch import Tensor


def truncated_is(learner_logp_BT: Tensor, sampler_logp_BT: Tensor, mask_BT: Tensor, cap: float) -> tuple[Tensor, dict]:
    """(w_BT, metrics): w = min(exp(learner - sampler), cap) on masked tokens, 1 elsewhere.

    Worked example: learner logp -1.0, sampler -1.5 -> w = e^0.5 = 1.65; with cap 1.5 -> 1.5."""
    ratio_BT = torch.exp((learner_logp_BT - sampler_logp_BT).clamp(max=30.0))
    w_BT = torch.where(mask_BT.bool(), ratio_BT.clamp(max=cap), torch.ones_like(ratio_BT))
    n = mask_BT.sum().clamp(min=1)
    gap_BT = (learner_logp_BT - sampler_logp_BT).abs() * mask_BT
    return w_BT, {
        "stale/is_weight_mean": float((w_BT * mask_BT).sum() / n),
        "stale/is_capped_fraction": float(((ratio_BT > cap).float() * mask_BT).sum() / n),
        "stale/logp_gap": float(gap_BT.sum() / n),  # |learner - sampler| before the update
    }


def version_lags(versions_B: list[int], learner_version: int) -> dict[str, float]:
    lags = [learner_version - v for v in versions_B]
    return {"stale/version_lag_mean": sum(lags) / len(lags), "stale/version_lag_max": float(max(lags))}
