"""Sampler/learner mismatch correction: pure functions of (B, T) tensors (``algorithm.mismatch``).

The sampler that drew a token (vLLM, a lower precision, other kernels) is not exactly the learner
that trains on it: its probability mu(y) differs from the learner's pi_old(y), so the policy
gradient is off-policy even at one update per batch. Each token (or sequence) is reweighted by
rho = pi_old / mu, with rho bounded so a rare token cannot blow the step up:

- ``tis``, truncated importance sampling: w = min(rho, cap) (Ionides 2008; Yao et al. 2025, "Your
  Efficient RL Framework Secretly Brings You Off-Policy RL Training").
- ``mis``, masked importance sampling: w = rho inside [1/cap, cap], 0 outside (Liu, Li et al. 2025,
  "When Speed Kills Stability: Demystifying RL Collapse from the Training-Inference Mismatch").

Level (``MISMATCH_LEVELS``): ``token`` uses each token's rho; ``sequence`` the product of its
sequence's token ratios, one weight for the whole sequence (unbiased for the sequence-level
gradient, higher variance). The weight is folded into the advantage, which is exact for the
REINFORCE surrogate, PPO-clip, GSPO and CISPO alike (w >= 0 factors out of the min). Departure from
verl: a masked token stays in the step's token normaliser, which is computed once before any
forward pass so micro-batching stays exact; the masked fraction is logged.
"""

from __future__ import annotations

import torch
from torch import Tensor

from rlft.algos.losses import k3


def _where(mask_BT: Tensor, x_BT: Tensor, other: float) -> Tensor:
    return torch.where(mask_BT.bool(), x_BT, torch.full((), other, dtype=x_BT.dtype, device=x_BT.device))


# log rho per token, (B, T), keyed by algorithm.mismatch_level; 0 at masked positions
def token_level(log_ratio_BT: Tensor, mask_BT: Tensor) -> Tensor:
    """Each token's own log(pi_old / mu)."""
    return _where(mask_BT, log_ratio_BT, 0.0)


def sequence_level(log_ratio_BT: Tensor, mask_BT: Tensor) -> Tensor:
    """The sequence's log(prod_t pi_old / mu) = sum_t log ratio, on every token of it.
    Worked example: token log-ratios [0.3, -0.1] -> 0.2 on both."""
    return _where(mask_BT, _where(mask_BT, log_ratio_BT, 0.0).sum(-1, keepdim=True).expand_as(log_ratio_BT), 0.0)


# (w_BT, metrics) from rho (B, T), keyed by algorithm.mismatch; metrics are masked sums, the
# caller divides by the token count
def tis(rho_BT: Tensor, mask_BT: Tensor, cap: float) -> tuple[Tensor, dict[str, Tensor]]:
    """Truncated IS: w = min(rho, cap). Worked example: rho 1.65, cap 1.5 -> 1.5 (capped)."""
    return rho_BT.clamp(max=cap), {"mismatch/capped": _where(mask_BT, (rho_BT > cap).float(), 0.0).sum()}


def mis(rho_BT: Tensor, mask_BT: Tensor, cap: float) -> tuple[Tensor, dict[str, Tensor]]:
    """Masked IS: w = rho inside [1/cap, cap], else 0 (the token or sequence is rejected).
    Worked example: cap 2, rho [0.4, 1.2, 3.0] -> [0, 1.2, 0]."""
    outside_BT = (rho_BT > cap) | (rho_BT < 1.0 / cap)
    return torch.where(outside_BT, torch.zeros_like(rho_BT), rho_BT), {
        "mismatch/masked": _where(mask_BT, outside_BT.float(), 0.0).sum()
    }


def mismatch_weights(
    learner_logp_BT: Tensor, sampler_logp_BT: Tensor, mask_BT: Tensor, *, mode: str, level: str, cap: float
) -> tuple[Tensor, dict[str, float]]:
    """(w_BT, metrics) correcting tokens drawn by the sampler for the learner; w is 1 at masked
    positions. learner_logp_BT (pi_old, no grad), sampler_logp_BT (mu), mask_BT: (B, T).

    Metrics, token means over this micro-batch: "mismatch/weight_mean", and "mismatch/capped_fraction"
    (tis) or "mismatch/masked_fraction" (mis): tokens whose weight was capped or that were rejected
    (all tokens of a sequence at the sequence level)."""
    assert cap >= 1.0, f"mismatch cap must be >= 1, got {cap}"
    level_fn = MISMATCH_LEVELS[level]
    log_rho_BT = level_fn((learner_logp_BT - sampler_logp_BT).detach().float(), mask_BT)
    rho_BT = torch.exp(log_rho_BT.clamp(-30.0, 30.0))
    w_BT, counts = MISMATCH[mode](rho_BT, mask_BT, cap)
    w_BT = _where(mask_BT, w_BT, 1.0)
    n = mask_BT.float().sum().clamp(min=1)
    metrics = {f"{k}_fraction": float(v / n) for k, v in counts.items()}
    return w_BT, {"mismatch/weight_mean": float(_where(mask_BT, w_BT, 0.0).sum() / n), **metrics}


def mismatch_kl(learner_logp_BT: Tensor, sampler_logp_BT: Tensor, mask_BT: Tensor) -> Tensor:
    """Masked SUM of the k3 estimate of KL(mu || pi) per token, tokens drawn from mu (the
    sampler): rho - 1 - log rho with rho = pi / mu, >= 0. The caller divides by its token count.
    Worked example: learner -1.0, sampler -1.5 -> e^0.5 - 1 - 0.5 = 0.1487."""
    kl_BT = k3(sampler_logp_BT.float(), learner_logp_BT.detach().float())
    return _where(mask_BT, kl_BT, 0.0).sum()


def resolve(mode: str, sampler_differs: bool) -> str:
    """The correction a job gets: ``auto`` is ``tis`` when the sampler's engine or precision
    differs from the learner's, else ``off`` (e.g. an in-process sampler sharing the module)."""
    assert mode == "auto" or mode == "off" or mode in MISMATCH, (
        f"unknown algorithm.mismatch {mode!r}; valid: auto, off, {', '.join(MISMATCH)}"
    )
    if mode == "auto":
        return "tis" if sampler_differs else "off"
    return mode


MISMATCH_LEVELS = {"token": token_level, "sequence": sequence_level}
MISMATCH = {"tis": tis, "mis": mis}
