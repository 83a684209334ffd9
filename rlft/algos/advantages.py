"""Rewards -> advantages: pure functions over (P, G) tensors (DESIGN.md §4 step 5, §5).

Every entry of ``ADVANTAGES`` has the same signature::

    fn(rewards_P_G, *, valid_P_G=None) -> adv_P_G

``P`` prompts, ``G`` samples per prompt. ``valid_P_G`` False marks errored attempts (the grader
raised or timed out): their rewards are ignored by every statistic (they may even be NaN) and
their advantage is 0. All functions are NaN-safe: a group with fewer than two valid samples or
with zero variance gets advantage 0 (REINFORCE, whose baseline is the batch, applies that rule
to the whole batch instead).
"""

from __future__ import annotations

import torch
from torch import Tensor


def _prepare(rewards_P_G: Tensor, valid_P_G: Tensor | None) -> tuple[Tensor, Tensor]:
    """Return (rewards with invalid entries set to 0, float32; valid as bool), both (P, G)."""
    assert rewards_P_G.dim() == 2, f"rewards must be (P, G), got shape {tuple(rewards_P_G.shape)}"
    if valid_P_G is None:
        valid_P_G = torch.ones_like(rewards_P_G, dtype=torch.bool)
    assert valid_P_G.shape == rewards_P_G.shape, (
        f"valid {tuple(valid_P_G.shape)} does not match rewards {tuple(rewards_P_G.shape)}"
    )
    valid_P_G = valid_P_G.bool()
    r_P_G = torch.where(valid_P_G, rewards_P_G.float(), 0.0)
    assert torch.isfinite(r_P_G).all(), "a valid reward is NaN/inf: mark that attempt invalid"
    return r_P_G, valid_P_G


def _group_moments(r_P_G: Tensor, valid_P_G: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Per-group (n_valid, mean, has_signal), each (P, 1).

    has_signal: at least two valid samples and not all valid rewards equal. Equality is tested
    with max == min, not std == 0, so 0.1-style rewards don't leak 1e-17 noise through.
    """
    n_P1 = valid_P_G.sum(-1, keepdim=True).float()
    mean_P1 = r_P_G.sum(-1, keepdim=True) / n_P1.clamp(min=1)
    hi_P1 = torch.where(valid_P_G, r_P_G, -torch.inf).amax(-1, keepdim=True)
    lo_P1 = torch.where(valid_P_G, r_P_G, torch.inf).amin(-1, keepdim=True)
    has_signal_P1 = (n_P1 >= 2) & (hi_P1 > lo_P1)
    return n_P1, mean_P1, has_signal_P1


def grpo(rewards_P_G: Tensor, *, valid_P_G: Tensor | None = None) -> Tensor:
    """(r - group mean) / (group std + 1e-6); std with Bessel correction like torch.std.

    DeepSeekMath (Shao et al. 2024), eq. for outcome supervision. Returns adv_P_G (P, G).
    """
    r_P_G, valid_P_G = _prepare(rewards_P_G, valid_P_G)
    n_P1, mean_P1, has_signal_P1 = _group_moments(r_P_G, valid_P_G)
    centred_P_G = torch.where(valid_P_G, r_P_G - mean_P1, 0.0)
    std_P1 = ((centred_P_G**2).sum(-1, keepdim=True) / (n_P1 - 1).clamp(min=1)).sqrt()
    adv_P_G = centred_P_G / (std_P1 + 1e-6)
    return torch.where(valid_P_G & has_signal_P1, adv_P_G, 0.0)


def dr_grpo(rewards_P_G: Tensor, *, valid_P_G: Tensor | None = None) -> Tensor:
    """r - group mean, no std division (Dr. GRPO, Liu et al. 2025, "Understanding R1-Zero-Like
    Training"): dividing by std over-weights near-uniform groups. Returns adv_P_G (P, G)."""
    r_P_G, valid_P_G = _prepare(rewards_P_G, valid_P_G)
    _, mean_P1, has_signal_P1 = _group_moments(r_P_G, valid_P_G)
    return torch.where(valid_P_G & has_signal_P1, r_P_G - mean_P1, 0.0)


def rloo(rewards_P_G: Tensor, *, valid_P_G: Tensor | None = None) -> Tensor:
    """r_i - mean of the OTHER valid samples of the group (REINFORCE leave-one-out, Ahmadian et
    al. 2024, "Back to Basics"). Equals n/(n-1)·(r_i - mean) with n valid samples.
    Returns adv_P_G (P, G)."""
    r_P_G, valid_P_G = _prepare(rewards_P_G, valid_P_G)
    n_P1, _, has_signal_P1 = _group_moments(r_P_G, valid_P_G)
    others_mean_P_G = (r_P_G.sum(-1, keepdim=True) - r_P_G) / (n_P1 - 1).clamp(min=1)
    return torch.where(valid_P_G & has_signal_P1, r_P_G - others_mean_P_G, 0.0)


def reinforce(rewards_P_G: Tensor, *, valid_P_G: Tensor | None = None) -> Tensor:
    """r - mean over the whole batch of valid samples (REINFORCE with a batch-mean baseline,
    Williams 1992). Groups don't matter here: a single-sample group still gets a signal.
    Returns adv_P_G (P, G); all 0 when the batch has < 2 valid samples or all are equal."""
    r_P_G, valid_P_G = _prepare(rewards_P_G, valid_P_G)
    _, mean_11, has_signal_11 = _group_moments(r_P_G.reshape(1, -1), valid_P_G.reshape(1, -1))
    return torch.where(valid_P_G & has_signal_11, r_P_G - mean_11, 0.0)


def _batch_normalised(centred_P_G: Tensor, valid_P_G: Tensor) -> Tensor:
    """centred / (std over the batch's valid samples + 1e-6), Bessel-corrected; 0 when invalid
    or when the batch has < 2 valid samples or no spread."""
    n = valid_P_G.sum()
    c = torch.where(valid_P_G, centred_P_G, 0.0)
    std = ((c - c.sum() / n.clamp(min=1)) ** 2 * valid_P_G).sum().div((n - 1).clamp(min=1)).sqrt()
    ok = (n >= 2) & (c.abs().amax() > 0)
    return torch.where(valid_P_G & ok, c / (std + 1e-6), 0.0)


def reinforce_pp(rewards_P_G: Tensor, *, valid_P_G: Tensor | None = None) -> Tensor:
    """(r - batch mean) / batch std over all valid samples (REINFORCE++, Hu 2025, "REINFORCE++:
    A Simple and Efficient Approach for Aligning Large Language Models"): normalising by the
    batch, not the group, avoids GRPO's over-weighting of near-uniform groups. Outcome rewards
    only (the paper also folds a per-token KL into the return; here KL is the loss's kl_coef).
    Returns adv_P_G (P, G); all 0 when the batch has < 2 valid samples or all are equal."""
    r_P_G, valid_P_G = _prepare(rewards_P_G, valid_P_G)
    _, mean_11, has_signal_11 = _group_moments(r_P_G.reshape(1, -1), valid_P_G.reshape(1, -1))
    adv_P_G = _batch_normalised(torch.where(valid_P_G, r_P_G - mean_11, 0.0), valid_P_G)
    return torch.where(has_signal_11, adv_P_G, 0.0)


def reinforce_pp_baseline(rewards_P_G: Tensor, *, valid_P_G: Tensor | None = None) -> Tensor:
    """(r - group mean) / std of those differences over the whole batch ("REINFORCE++-baseline",
    same paper, for groups of G samples). Zero-variance groups get 0. Returns adv_P_G (P, G)."""
    r_P_G, valid_P_G = _prepare(rewards_P_G, valid_P_G)
    _, mean_P1, has_signal_P1 = _group_moments(r_P_G, valid_P_G)
    centred_P_G = torch.where(valid_P_G & has_signal_P1, r_P_G - mean_P1, 0.0)
    return _batch_normalised(centred_P_G, valid_P_G)


def expert_iteration(rewards_P_G: Tensor, *, valid_P_G: Tensor | None = None) -> Tensor:
    """1.0 where r >= 1.0 (the grader fully accepted the attempt) else 0.0.

    Rejection-sampling fine-tuning / expert iteration (Anthony et al. 2017; STaR, Zelikman et al.
    2022) as an advantage: the policy loss becomes SFT on the model's own accepted attempts.
    Returns adv_P_G (P, G)."""
    r_P_G, valid_P_G = _prepare(rewards_P_G, valid_P_G)
    return (valid_P_G & (r_P_G >= 1.0)).float()


def group_stats(rewards_P_G: Tensor, valid_P_G: Tensor | None = None) -> dict[str, float]:
    """Batch reward statistics for logging, over valid samples only.

    reward_mean, reward_std (Bessel-corrected, 0 with < 2 valid), zero_variance_groups (groups
    whose valid rewards are all equal — including groups with 0 or 1 valid samples: none of
    them carries a group-relative signal), errored (count of invalid samples).
    """
    r_P_G, valid_P_G = _prepare(rewards_P_G, valid_P_G)
    valid_r = r_P_G[valid_P_G]
    _, _, has_signal_P1 = _group_moments(r_P_G, valid_P_G)
    return {
        "reward_mean": valid_r.mean().item() if valid_r.numel() else 0.0,
        "reward_std": valid_r.std().item() if valid_r.numel() >= 2 else 0.0,
        "zero_variance_groups": int((~has_signal_P1).sum().item()),
        "errored": int((~valid_P_G).sum().item()),
    }


ADVANTAGES = {
    "grpo": grpo,
    "dr_grpo": dr_grpo,
    "rloo": rloo,
    "reinforce": reinforce,
    "reinforce_pp": reinforce_pp,
    "reinforce_pp_baseline": reinforce_pp_baseline,
    "expert_iteration": expert_iteration,
}

# The advantages whose baseline is the group's own other samples: a group of one carries no signal.
GROUP_BASELINE = {"grpo", "dr_grpo", "rloo", "reinforce_pp_baseline"}
