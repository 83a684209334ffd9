"""Policy-gradient losses, KL estimators and aggregations: pure functions of (B, T) tensors.

The central invariant (DESIGN.md §1): with advantage 1 on demonstration tokens and no old
logprobs, ``policy_loss`` IS the SFT negative log-likelihood. RL and SFT share this code.

Departures from the papers, on purpose:
1. On-policy (one update per batch, ``old_logp_BT=None``) uses the plain REINFORCE surrogate
   ``-adv·logp``; its gradient equals PPO-clip's at ratio 1, without the extra forward pass.
2. The clip range is asymmetric (DAPO "clip-higher", Yu et al. 2025): ``clip_low``/``clip_high``.
3. Sequence-level ratios (GSPO) are written in the GSPO-token form, ``sg(s_i)·pi_t/sg(pi_t)``, so
   they compose with every aggregation and with per-token advantages; ``seq_mean`` gives GSPO's
   own gradient. Under one update per batch every ratio is 1 and every ``POLICY_LOSSES`` entry
   is the REINFORCE gradient.
4. The normaliser (``Norm``) is computed once per optimisation step over the whole step's batch,
   so summing micro-batch losses gives exactly the full-batch loss and gradient.

Shapes: ``B`` sequences, ``T`` tokens. Masks are 1 on trained tokens (``sampled_mask``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor


@dataclass(frozen=True)
class Norm:
    """Denominators for one optimisation step, shared by all its micro-batches.

    n_tokens: trained tokens in the step (>= 1 so an all-masked step gives loss 0, not NaN).
    n_seqs: sequences with at least one trained token (>= 1).
    max_tokens: the Dr. GRPO constant, usually the generation budget (max_new_tokens).

    Single process only: under data parallelism the caller all-reduces n_tokens / n_seqs across
    ranks and multiplies the loss by the world size (DDP averages gradients).
    """

    n_tokens: float
    n_seqs: int
    max_tokens: int

    @staticmethod
    def of(mask_BT: Tensor, max_tokens: int) -> "Norm":
        """Norm over the whole step's loss mask mask_BT (B, T)."""
        assert mask_BT.dim() == 2, f"mask must be (B, T), got {tuple(mask_BT.shape)}"
        assert max_tokens > 0, f"max_tokens must be > 0, got {max_tokens}"
        tokens_B = mask_BT.float().sum(-1)
        return Norm(
            n_tokens=max(float(tokens_B.sum().item()), 1.0),
            n_seqs=max(int((tokens_B > 0).sum().item()), 1),
            max_tokens=int(max_tokens),
        )


def _masked(x_BT: Tensor, mask_BT: Tensor) -> Tensor:
    # where, not multiply: a non-finite value at a masked position must not become NaN.
    return torch.where(mask_BT.bool(), x_BT, torch.zeros((), dtype=x_BT.dtype, device=x_BT.device))


def token_mean(x_BT: Tensor, mask_BT: Tensor, norm: Norm) -> Tensor:
    """Sum of masked tokens / tokens in the step: every token weighs the same (DAPO)."""
    return _masked(x_BT, mask_BT).sum() / norm.n_tokens


def seq_mean(x_BT: Tensor, mask_BT: Tensor, norm: Norm) -> Tensor:
    """Mean over sequences of each sequence's masked token mean (original GRPO)."""
    per_seq_B = _masked(x_BT, mask_BT).sum(-1) / mask_BT.float().sum(-1).clamp(min=1)
    return per_seq_B.sum() / norm.n_seqs


def dr_grpo(x_BT: Tensor, mask_BT: Tensor, norm: Norm) -> Tensor:
    """Sum of masked tokens / (n_seqs · max_tokens): a constant normaliser, so long wrong
    answers are not favoured by a length-dependent one (Dr. GRPO, Liu et al. 2025)."""
    return _masked(x_BT, mask_BT).sum() / (norm.n_seqs * norm.max_tokens)


# KL estimators from Schulman, "Approximating KL divergence" (2020), for KL(pi || ref) with
# tokens sampled from pi; log_ratio = logp - ref_logp.
def k1(logp_BT: Tensor, ref_logp_BT: Tensor) -> Tensor:
    """k1 = log_ratio: unbiased, high variance, can be negative."""
    return logp_BT - ref_logp_BT


def k2(logp_BT: Tensor, ref_logp_BT: Tensor) -> Tensor:
    """k2 = log_ratio² / 2: biased, low variance, >= 0."""
    return 0.5 * (logp_BT - ref_logp_BT) ** 2


def k3(logp_BT: Tensor, ref_logp_BT: Tensor) -> Tensor:
    """k3 = exp(-log_ratio) - 1 + log_ratio: unbiased, low variance, >= 0 (GRPO's KL).
    log_ratio clamped to [-20, 20] so exp cannot overflow (as in verl)."""
    log_ratio_BT = (logp_BT - ref_logp_BT).clamp(-20.0, 20.0)
    return torch.exp(-log_ratio_BT) - 1.0 + log_ratio_BT


# Log importance ratios log(pi / pi_old), (B, T), keyed by algorithm.ratio_level: one signature
# (token_ratio needs no mask), gradient through logp_BT token by token.
def token_ratio(logp_BT: Tensor, old_logp_BT: Tensor, mask_BT: Tensor) -> Tensor:
    """log r_t = logp_t - old_t, each token on its own (PPO)."""
    return logp_BT - old_logp_BT


def sequence_ratio(logp_BT: Tensor, old_logp_BT: Tensor, mask_BT: Tensor) -> Tensor:
    """GSPO (Zheng et al. 2025, "Group Sequence Policy Optimization"): one length-normalised
    ratio per sequence, s_i = exp(mean over its masked tokens of logp - old), clipped as a whole.
    In the paper's GSPO-token form: every token of sequence i carries the value log s_i and the
    gradient of its own logp_t, so sum_t ∇ s_i,t / |y_i| = ∇ s_i. log s_i clamped to [-20, 20].

    Worked example: log-ratios [0.2, -0.4] on 2 masked tokens -> log s = -0.1 on both."""
    diff_BT = _masked(logp_BT - old_logp_BT, mask_BT)
    mean_B1 = diff_BT.sum(-1, keepdim=True) / mask_BT.float().sum(-1, keepdim=True).clamp(min=1)
    return logp_BT - logp_BT.detach() + mean_B1.detach().clamp(-20.0, 20.0)


# Per-token policy terms from the ratio, keyed by algorithm.policy_loss; one signature (ppo_clip
# needs no logp), each returns (loss_BT, clipped_BT), clipped_BT the tokens its clipping touched.
def ppo_clip(
    ratio_BT: Tensor, adv_BT: Tensor, logp_BT: Tensor, clip_low: float, clip_high: float
) -> tuple[Tensor, Tensor]:
    """-min(r·A, clip(r, 1 - clip_low, 1 + clip_high)·A) (Schulman et al. 2017): a clipped token
    has no gradient."""
    unclipped_BT = -ratio_BT * adv_BT
    clipped_BT = -ratio_BT.clamp(1.0 - clip_low, 1.0 + clip_high) * adv_BT
    return torch.maximum(unclipped_BT, clipped_BT), clipped_BT > unclipped_BT


def cispo(
    ratio_BT: Tensor, adv_BT: Tensor, logp_BT: Tensor, clip_low: float, clip_high: float
) -> tuple[Tensor, Tensor]:
    """-sg(clip(r, 1 - clip_low, 1 + clip_high))·A·logp (CISPO, MiniMax-M1, MiniMax 2025): the
    importance WEIGHT is clipped and its gradient stopped, so every token keeps the gradient of
    its logp (PPO-clip drops the rare, high-ratio "fork" tokens). At r = 1: -A·logp, REINFORCE."""
    r_BT = ratio_BT.detach()
    weight_BT = r_BT.clamp(1.0 - clip_low, 1.0 + clip_high)
    return -weight_BT * adv_BT * logp_BT, (r_BT < 1.0 - clip_low) | (r_BT > 1.0 + clip_high)


def _lookup(table: dict[str, Callable], name: str, what: str) -> Callable:
    if name not in table:
        raise ValueError(f"unknown {what} {name!r}; valid: {', '.join(sorted(table))}")
    return table[name]


def policy_loss(
    logp_BT: Tensor,
    adv_BT: Tensor,
    mask_BT: Tensor,
    norm: Norm,
    *,
    old_logp_BT: Tensor | None = None,
    clip_low: float = 0.2,
    clip_high: float = 0.2,
    aggregation: str = "token_mean",
    ref_logp_BT: Tensor | None = None,
    kl_coef: float = 0.0,
    kl_estimator: str = "k3",
    ratio_level: str = "token",
    loss: str = "ppo_clip",
) -> tuple[Tensor, dict[str, Tensor]]:
    """Policy-gradient loss of one micro-batch, and its diagnostics.

    logp_BT, mask_BT, old_logp_BT, ref_logp_BT: (B, T); adv_BT: (B, T) or (B, 1).
    Per token: ``-adv·logp`` when ``old_logp_BT`` is None (on-policy REINFORCE; with adv = 1 this
    is the SFT NLL), else ``POLICY_LOSSES[loss]`` (PPO-clip, Schulman et al. 2017, or CISPO) of
    the ratio ``exp(RATIO_LEVELS[ratio_level](logp, old))`` with the range
    [1 - clip_low, 1 + clip_high]; plus ``kl_coef · KL_ESTIMATORS[kl_estimator](logp, ref)``.
    Aggregated by ``AGGREGATIONS[aggregation]`` with the step's ``norm``.

    Returns (scalar loss, metrics). Metrics are detached masked means over THIS micro-batch
    (the caller averages them across micro-batches and ranks): "clip_fraction" (tokens the clip
    touched: ppo_clip, their gradient is zero; cispo, their weight was clipped), "approx_kl" (k3
    estimate of KL(old || new); 0 on-policy), "kl" (to the reference; only when kl_coef > 0).
    """
    aggregate = _lookup(AGGREGATIONS, aggregation, "aggregation")
    kl_fn = _lookup(KL_ESTIMATORS, kl_estimator, "kl_estimator")
    log_ratio_fn = _lookup(RATIO_LEVELS, ratio_level, "ratio_level")
    term_fn = _lookup(POLICY_LOSSES, loss, "policy loss")
    assert logp_BT.shape == mask_BT.shape, f"logp {tuple(logp_BT.shape)} vs mask {tuple(mask_BT.shape)}"
    assert adv_BT.dim() == 2 and adv_BT.shape[0] == logp_BT.shape[0] and adv_BT.shape[1] in (1, logp_BT.shape[1]), (
        f"adv must be (B, T) or (B, 1) for logp {tuple(logp_BT.shape)}, got {tuple(adv_BT.shape)}"
    )
    adv_BT = adv_BT.detach().to(logp_BT.dtype)
    zero = logp_BT.new_zeros(())

    def masked_mean(x_BT: Tensor) -> Tensor:
        return _masked(x_BT.detach().to(zero.dtype), mask_BT).sum() / mask_BT.float().sum().clamp(min=1)

    if old_logp_BT is None:
        per_token_BT = -adv_BT * logp_BT
        clip_fraction, approx_kl = zero, zero
    else:
        assert old_logp_BT.shape == logp_BT.shape, (
            f"old_logp {tuple(old_logp_BT.shape)} vs logp {tuple(logp_BT.shape)}"
        )
        old_logp_BT = old_logp_BT.detach()
        ratio_BT = torch.exp(log_ratio_fn(logp_BT, old_logp_BT, mask_BT))
        per_token_BT, clipped_BT = term_fn(ratio_BT, adv_BT, logp_BT, clip_low, clip_high)
        clip_fraction = masked_mean(clipped_BT.float())
        approx_kl = masked_mean(k3(old_logp_BT, logp_BT))  # samples come from old

    metrics = {"clip_fraction": clip_fraction, "approx_kl": approx_kl}
    if kl_coef > 0:
        assert ref_logp_BT is not None, "kl_coef > 0 needs ref_logp_BT"
        kl_BT = kl_fn(logp_BT, ref_logp_BT.detach())
        per_token_BT = per_token_BT + kl_coef * kl_BT
        metrics["kl"] = masked_mean(kl_BT)
    return aggregate(per_token_BT, mask_BT, norm), metrics


def value_loss(
    values_BT: Tensor,
    returns_BT: Tensor,
    mask_BT: Tensor,
    norm: Norm,
    *,
    old_values_BT: Tensor | None = None,
    clip: float = 0.0,
    aggregation: str = "token_mean",
) -> tuple[Tensor, dict[str, Tensor]]:
    """Squared-error value loss of one micro-batch, ``0.5·(V - R)²`` per token, aggregated like
    the policy loss (same ``norm``, so micro-batching stays exact).

    values_BT (with grad), returns_BT, mask_BT, old_values_BT: (B, T). With ``old_values_BT``
    and ``clip`` > 0, PPO's clipped value loss (Schulman et al. 2017; OpenAI baselines ppo2):
    ``0.5·max((V - R)², (V_old + clamp(V - V_old, ±clip) - R)²)``, so one batch cannot move a
    value by more than ``clip`` without paying for it. Returns (scalar loss, metrics):
    "value_clip_fraction" (tokens where the clipped term was the larger), "value_error" (masked
    mean of (V - R)²), both detached means over this micro-batch.
    """
    aggregate = _lookup(AGGREGATIONS, aggregation, "aggregation")
    assert values_BT.shape == returns_BT.shape == mask_BT.shape, (
        f"values {tuple(values_BT.shape)}, returns {tuple(returns_BT.shape)}, mask {tuple(mask_BT.shape)} differ"
    )
    assert clip >= 0, f"value clip must be >= 0, got {clip}"
    returns_BT = returns_BT.detach().to(values_BT.dtype)
    err_BT = (values_BT - returns_BT) ** 2
    n = mask_BT.float().sum().clamp(min=1)
    clip_fraction = values_BT.new_zeros(())
    per_token_BT = err_BT
    if old_values_BT is not None and clip > 0:
        old_BT = old_values_BT.detach().to(values_BT.dtype)
        clipped_BT = (old_BT + (values_BT - old_BT).clamp(-clip, clip) - returns_BT) ** 2
        per_token_BT = torch.maximum(err_BT, clipped_BT)
        clip_fraction = _masked((clipped_BT > err_BT).float().detach(), mask_BT).sum() / n
    metrics = {"value_clip_fraction": clip_fraction, "value_error": _masked(err_BT.detach(), mask_BT).sum() / n}
    return aggregate(0.5 * per_token_BT, mask_BT, norm), metrics


AGGREGATIONS = {"token_mean": token_mean, "seq_mean": seq_mean, "dr_grpo": dr_grpo}
KL_ESTIMATORS = {"k1": k1, "k2": k2, "k3": k3}
RATIO_LEVELS = {"token": token_ratio, "sequence": sequence_ratio}
POLICY_LOSSES = {"ppo_clip": ppo_clip, "cispo": cispo}
