"""Trajectories -> a padded Batch for the learner (DESIGN.md §4 step 6)."""

from __future__ import annotations

from typing import Sequence

import torch

from rlft.types import Batch, Trajectory


def collate(trajectories: Sequence[Trajectory], adv_B: Sequence[float], pad_id: int) -> Batch:
    """Right-pad ``trajectories`` into a Batch; ``adv_B`` is one advantage per trajectory.

    The loss mask is each trajectory's ``sampled_mask_T`` (padding is 0): nothing else decides
    which tokens are trained.
    """
    assert len(trajectories) == len(adv_B), f"{len(trajectories)} trajectories, {len(adv_B)} advantages"
    B, T = len(trajectories), max(len(t.tokens_T) for t in trajectories)
    input_ids_BT = torch.full((B, T), pad_id, dtype=torch.long)
    attention_mask_BT = torch.zeros((B, T), dtype=torch.long)
    loss_mask_BT = torch.zeros((B, T), dtype=torch.float32)
    sampler_logp_BT = torch.zeros((B, T), dtype=torch.float32)
    for b, t in enumerate(trajectories):
        n = len(t.tokens_T)
        input_ids_BT[b, :n] = torch.tensor(t.tokens_T)
        attention_mask_BT[b, :n] = 1
        loss_mask_BT[b, :n] = torch.tensor(t.sampled_mask_T, dtype=torch.float32)
        sampler_logp_BT[b, :n] = torch.tensor(t.sampler_logp_T)
    adv_BT = torch.tensor(list(adv_B), dtype=torch.float32)[:, None]
    return Batch(input_ids_BT, attention_mask_BT, loss_mask_BT, adv_BT, sampler_logp_BT)
