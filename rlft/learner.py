"""The learner's side of a step, shared by the RL and SFT loops (DESIGN.md §4 steps 7-9).

One optimizer step = the loss over micro-batches, normalised by a token count computed once
for the whole step (so gradient accumulation is exact), gradient clipping, and a skipped update
when the gradient is not finite.
"""

from __future__ import annotations

import math
import warnings
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Callable

import torch

from rlft.algos.logprobs import prefix_logprobs
from rlft.algos.losses import Norm, policy_loss
from rlft.algos.mismatch import mismatch_kl, mismatch_weights, resolve
from rlft.config import AlgorithmConfig, OptimConfig, SamplingConfig
from rlft.types import Batch

# The schedule advances once per training step, also on a step that made no update (every
# attempt had advantage 0, or a skipped non-finite update); torch warns about that case.
warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler\.step\(\)` before `optimizer\.step\(\)`")


@dataclass(frozen=True)
class LossSettings:
    """What ``policy_loss`` needs beyond the tensors. The defaults are SFT's."""

    clip_low: float = 0.2
    clip_high: float = 0.2
    aggregation: str = "token_mean"
    kl_coef: float = 0.0
    kl_estimator: str = "k3"
    temperature: float = 1.0  # the sampler's, so learner and sampler logprobs agree
    max_tokens: int = 1  # the generation budget, for the Dr. GRPO constant normaliser
    logp_gap: bool = True  # log |learner - sampler| logprobs and the mismatch KL; off for demonstrations (no sampler)
    ratio_level: str = "token"  # a key of rlft.algos.losses.RATIO_LEVELS (sequence = GSPO)
    policy_loss: str = "ppo_clip"  # a key of rlft.algos.losses.POLICY_LOSSES
    mismatch: str = "off"  # off, or a key of rlft.algos.mismatch.MISMATCH ("auto" resolved by ``of``)
    mismatch_level: str = "token"
    mismatch_cap: float = 2.0

    @classmethod
    def of(cls, algo: AlgorithmConfig, sampling: SamplingConfig, sampler_differs: bool = False) -> "LossSettings":
        """The RL loops' settings. ``sampler_differs``: the sampler's engine or precision is not the
        learner's (vLLM, another dtype), which turns ``algorithm.mismatch = "auto"`` on."""
        return cls(
            clip_low=algo.clip_low, clip_high=algo.clip_high, aggregation=algo.aggregation,
            kl_coef=algo.kl_coef, kl_estimator=algo.kl_estimator,
            temperature=sampling.temperature or 1.0, max_tokens=sampling.max_new_tokens,
            ratio_level=algo.ratio_level, policy_loss=algo.policy_loss,
            mismatch=resolve(algo.mismatch, sampler_differs), mismatch_level=algo.mismatch_level,
            mismatch_cap=algo.mismatch_cap,
        )


def constant(progress: float) -> float:
    return 1.0


def linear(progress: float) -> float:
    return 1.0 - progress


def cosine(progress: float) -> float:
    return 0.5 * (1.0 + math.cos(math.pi * progress))


# after warmup: the learning-rate multiplier as a function of progress in [0, 1]
SCHEDULES = {"constant": constant, "linear": linear, "cosine": cosine}


def lr_multiplier(step: int, cfg: OptimConfig) -> float:
    """Multiplier of ``cfg.lr`` for optimizer step ``step`` (0-based): linear warmup over
    ``warmup_steps``, then ``SCHEDULES[cfg.schedule]`` decaying toward the last step."""
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    span = max(cfg.steps - cfg.warmup_steps, 1)
    return SCHEDULES[cfg.schedule](min((step - cfg.warmup_steps) / span, 1.0))


def make_optimizer(model, cfg: OptimConfig, lrs: dict[str, float] | None = None):
    """AdamW over the trainable parameters, with the warmup and schedule of ``cfg``. ``lrs``
    maps a parameter-name prefix to its own peak learning rate (a value head's), one param
    group each; every other parameter is in the first group, at ``cfg.lr``."""
    groups: dict[float, list] = {cfg.lr: []}
    for name, p in model.named_parameters():
        if p.requires_grad:
            groups.setdefault(next((lr for pre, lr in (lrs or {}).items() if name.startswith(pre)), cfg.lr), []).append(p)
    params = [{"params": ps, "lr": lr} for lr, ps in groups.items() if ps]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_multiplier(s, cfg))
    return optimizer, scheduler


def micro_batches(batch: Batch, size: int, device):
    size = size or len(batch)
    for start in range(0, len(batch), size):
        yield batch.slice(start, start + size).to(device)


def batch_logprobs(model, mb: Batch, temperature: float, with_entropy: bool = False):
    """(logp_BT, ent_BT or None) of a micro-batch's continuations, each prefix run once."""
    return prefix_logprobs(
        model, mb.prefix_ids_PT, mb.prefix_mask_PT, mb.row_B, mb.input_ids_BT, mb.attention_mask_BT,
        temperature, with_entropy,
    )


@torch.no_grad()
def fill_logprobs(model, batch: Batch, micro_batch_size: int, temperature: float) -> torch.Tensor:
    """Logprobs of ``batch`` under ``model`` without gradients, (B, T), on the CPU."""
    device = next(model.parameters()).device
    parts = [batch_logprobs(model, mb, temperature)[0].cpu() for mb in micro_batches(batch, micro_batch_size, device)]
    return torch.cat(parts)


def update(model, optimizer, batch: Batch, loss: LossSettings, optim: OptimConfig, norm: Norm | None = None,
           all_reduce: Callable[[torch.Tensor], None] | None = None, critic=None) -> dict:
    """One optimizer step on ``batch``; returns metrics (loss, grad_norm, entropy, skipped...).
    The caller steps the learning-rate scheduler once per training step.

    Data parallel (rlft.distributed.learners): ``batch`` is this rank's shard, ``norm`` the whole
    step's normaliser, and ``all_reduce`` sums a tensor in place across ranks; it is applied to the
    gradients and the metric totals once, before clipping, so every rank takes the step the single
    process would (the sum of the shards' gradients IS the full batch's).

    ``critic`` (rlft.critic.ValueCritic, PPO): its ``watch`` sees each micro-batch's forward pass
    and its ``loss`` (value_coef · value loss) is added to the policy loss; "loss" then is the sum.

    ``loss.mismatch`` on: each micro-batch's advantages are reweighted by the sampler/learner
    importance weight (rlft.algos.mismatch) of pi_old = old_logp_BT, or, with one update per
    batch, this forward pass's logprobs without gradient (the same numbers)."""
    device = next(model.parameters()).device
    norm = norm or Norm.of(batch.loss_mask_BT, loss.max_tokens)
    totals = {"loss": 0.0, "entropy": 0.0, "clip_fraction": 0.0, "approx_kl": 0.0, "kl": 0.0}
    if loss.logp_gap:
        totals |= {"logp_gap": 0.0, "mismatch/kl": 0.0}
    for mb in micro_batches(batch, optim.micro_batch_size, device):
        _micro_step(model, mb, loss, norm, critic, totals)
    params = [p for p in model.parameters() if p.requires_grad]
    if all_reduce is not None:
        _reduce(params, totals, all_reduce)
    grad_norm = float(torch.nn.utils.clip_grad_norm_(params, optim.max_grad_norm or float("inf")))
    skipped = not math.isfinite(grad_norm) or not math.isfinite(totals["loss"])
    if not skipped:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return {**totals, "grad_norm": grad_norm, "skipped_update": float(skipped), "lr": optimizer.param_groups[0]["lr"]}


def _micro_step(model, mb: Batch, loss: LossSettings, norm: Norm, critic, totals: dict[str, float]) -> None:
    """Forward and backward of one micro-batch; adds its share of each step metric to ``totals``."""
    n_tokens = norm.n_tokens  # the step's trained tokens (>= 1), on every rank
    with critic.watch(model) if critic is not None else nullcontext([]) as hidden:
        logp_BT, ent_BT = batch_logprobs(model, mb, loss.temperature, with_entropy=True)
    adv_BT, metrics = mb.adv_BT, {}
    if loss.mismatch != "off":
        pi_old_BT = mb.old_logp_BT if mb.old_logp_BT is not None else logp_BT.detach()
        w_BT, metrics = mismatch_weights(pi_old_BT, mb.sampler_logp_BT, mb.loss_mask_BT,
                                         mode=loss.mismatch, level=loss.mismatch_level, cap=loss.mismatch_cap)
        adv_BT = adv_BT * w_BT
    value, pg_metrics = policy_loss(
        logp_BT,
        adv_BT,
        mb.loss_mask_BT,
        norm,
        old_logp_BT=mb.old_logp_BT,
        clip_low=loss.clip_low,
        clip_high=loss.clip_high,
        aggregation=loss.aggregation,
        ref_logp_BT=mb.ref_logp_BT,
        kl_coef=loss.kl_coef,
        kl_estimator=loss.kl_estimator,
        ratio_level=loss.ratio_level,
        loss=loss.policy_loss,
    )
    metrics |= pg_metrics
    if critic is not None:
        value_term, value_metrics = critic.loss(hidden, mb, norm)
        value, metrics = value + value_term, {**metrics, **value_metrics}
    value.backward()
    # token-weighted sums of this micro-batch's masked means -> step means
    w = float(mb.loss_mask_BT.sum()) / n_tokens
    totals["loss"] += float(value.detach())
    totals["entropy"] += float((ent_BT * mb.loss_mask_BT).sum()) / n_tokens  # no graph
    if loss.logp_gap:
        gap_BT = (logp_BT.detach() - mb.sampler_logp_BT).abs() * mb.loss_mask_BT
        totals["logp_gap"] += float(gap_BT.sum()) / n_tokens
        pi_old_BT = mb.old_logp_BT if mb.old_logp_BT is not None else logp_BT  # before this batch's updates
        totals["mismatch/kl"] += float(mismatch_kl(pi_old_BT, mb.sampler_logp_BT, mb.loss_mask_BT)) / n_tokens
    for k, v in metrics.items():
        totals[k] = totals.get(k, 0.0) + float(v) * w


def _reduce(params: list, totals: dict[str, float], all_reduce: Callable[[torch.Tensor], None]) -> None:
    """Sum gradients and metric totals across ranks: one flat tensor, one collective."""
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1).float() for g in grads] + [torch.tensor(list(totals.values()), device=grads[0].device)])
    all_reduce(flat)
    offset = 0
    for p, g in zip(params, grads):
        p.grad = flat[offset : offset + g.numel()].view_as(g).to(g.dtype)
        offset += g.numel()
    for k, v in zip(list(totals), flat[offset:].tolist()):
        totals[k] = v
