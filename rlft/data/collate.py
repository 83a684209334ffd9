"""Trajectories -> a padded Batch for the learner (DESIGN.md §4 step 6)."""

from __future__ import annotations

from typing import Sequence

import torch

from rlft.types import Batch, Trajectory


def prefix_length(sampled_mask_T: Sequence[int]) -> int:
    """Tokens before the first sampled one (at least 1: the first token is never predicted,
    and at most all but one, so every continuation has a token)."""
    n = next((i for i, m in enumerate(sampled_mask_T) if m), len(sampled_mask_T))
    return min(max(n, 1), len(sampled_mask_T) - 1)


def collate(trajectories: Sequence[Trajectory], adv_B: Sequence[float], pad_id: int) -> Batch:
    """Pad ``trajectories`` into a Batch, storing identical prefixes once; ``adv_B`` is one
    advantage per trajectory.

    The loss mask is each continuation's ``sampled_mask`` (padding is 0): nothing else decides
    which tokens are trained.
    """
    assert len(trajectories) == len(adv_B), f"{len(trajectories)} trajectories, {len(adv_B)} advantages"
    assert all(len(t.tokens_T) >= 2 for t in trajectories), "a trajectory needs at least 2 tokens"
    cuts = [prefix_length(t.sampled_mask_T) for t in trajectories]
    prefixes: dict[tuple[int, ...], int] = {}
    row_B = [prefixes.setdefault(tuple(t.tokens_T[:n]), len(prefixes)) for t, n in zip(trajectories, cuts)]

    P, Tp = len(prefixes), max(map(len, prefixes))
    prefix_ids_PT = torch.full((P, Tp), pad_id, dtype=torch.long)
    prefix_mask_PT = torch.zeros((P, Tp), dtype=torch.long)
    for p, prefix in enumerate(prefixes):  # left-padded: every prefix ends in the last column
        prefix_ids_PT[p, Tp - len(prefix) :] = torch.tensor(prefix)
        prefix_mask_PT[p, Tp - len(prefix) :] = 1

    B, T = len(trajectories), max(len(t.tokens_T) - n for t, n in zip(trajectories, cuts))
    input_ids_BT = torch.full((B, T), pad_id, dtype=torch.long)
    attention_mask_BT = torch.zeros((B, T), dtype=torch.long)
    loss_mask_BT = torch.zeros((B, T), dtype=torch.float32)
    sampler_logp_BT = torch.zeros((B, T), dtype=torch.float32)
    for b, (t, n) in enumerate(zip(trajectories, cuts)):
        k = len(t.tokens_T) - n
        input_ids_BT[b, :k] = torch.tensor(t.tokens_T[n:])
        attention_mask_BT[b, :k] = 1
        loss_mask_BT[b, :k] = torch.tensor(t.sampled_mask_T[n:], dtype=torch.float32)
        sampler_logp_BT[b, :k] = torch.tensor(t.sampler_logp_T[n:])
    adv_BT = torch.tensor(list(adv_B), dtype=torch.float32)[:, None]
    return Batch(
        prefix_ids_PT, prefix_mask_PT, torch.tensor(row_B), input_ids_BT, attention_mask_BT, loss_mask_BT,
        adv_BT, sampler_logp_BT,
    )
