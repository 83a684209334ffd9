"""Value-function math: generalised advantage estimation over tokens or over turns, advantage
whitening, explained variance. Pure functions of (B, T) tensors (DESIGN.md §4 step 5).

The MDP a language model lives in: a *step* is one sampled token (``mask_BT`` = 1). Tokens the
policy did not sample (the prompt, tool output, the user's next message: ``mask_BT`` = 0) are
part of the environment's transition, not steps, so their values are never read: the
bootstrap ``V(s_{t+1})`` of the last token of a turn is the value at the FIRST token of the
next turn, skipping whatever the environment wrote in between. ``turn_gae`` goes one level up:
a step is a whole turn (a maximal run of sampled tokens), as in multi-turn agent RL.

Every entry of ``GAE`` has the signature::

    fn(rewards_BT, values_BT, mask_BT, *, gamma, lam) -> (adv_BT, returns_BT)

Both outputs are 0 where ``mask_BT`` is 0. ``returns = adv + values`` is the value target
(the lambda-return). GAE: Schulman et al. 2016, "High-Dimensional Continuous Control Using
Generalized Advantage Estimation", eq. 16.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _check(rewards_BT: Tensor, values_BT: Tensor, mask_BT: Tensor) -> Tensor:
    assert rewards_BT.dim() == 2, f"rewards must be (B, T), got {tuple(rewards_BT.shape)}"
    assert rewards_BT.shape == values_BT.shape == mask_BT.shape, (
        f"rewards {tuple(rewards_BT.shape)}, values {tuple(values_BT.shape)} and mask "
        f"{tuple(mask_BT.shape)} must have the same (B, T) shape"
    )
    return mask_BT.bool()


def token_gae(rewards_BT: Tensor, values_BT: Tensor, mask_BT: Tensor, *, gamma: float, lam: float) -> tuple[Tensor, Tensor]:
    """GAE with one step per sampled token; values at unsampled positions are never read.

    delta_t = r_t + gamma·V(next sampled token) - V_t (V after the last sampled token = 0),
    A_t = delta_t + gamma·lam·A(next sampled token). Returns (adv_BT, returns_BT), float32.
    """
    m_BT = _check(rewards_BT, values_BT, mask_BT)
    r_BT, v_BT = rewards_BT.float(), values_BT.float()
    B, T = r_BT.shape
    adv_BT = torch.zeros(B, T)
    next_value_B = torch.zeros(B)
    next_adv_B = torch.zeros(B)
    for t in reversed(range(T)):
        m_B = m_BT[:, t]
        delta_B = r_BT[:, t] + gamma * next_value_B - v_BT[:, t]
        adv_B = delta_B + gamma * lam * next_adv_B
        adv_BT[:, t] = torch.where(m_B, adv_B, 0.0)
        # only a sampled token is the "next state" of the one before it
        next_value_B = torch.where(m_B, v_BT[:, t], next_value_B)
        next_adv_B = torch.where(m_B, adv_B, next_adv_B)
    returns_BT = torch.where(m_BT, adv_BT + v_BT, 0.0)
    return adv_BT, returns_BT


def turn_ids(mask_BT: Tensor) -> tuple[Tensor, Tensor]:
    """(turn_BT, n_turns_B): the 0-based turn of each sampled token (-1 elsewhere) and the
    number of turns per row. A turn is a maximal run of sampled tokens."""
    m_BT = mask_BT.bool()
    prev_BT = torch.zeros_like(m_BT)
    prev_BT[:, 1:] = m_BT[:, :-1]
    starts_BT = m_BT & ~prev_BT
    turn_BT = torch.where(m_BT, starts_BT.long().cumsum(-1) - 1, -1)
    return turn_BT, starts_BT.long().sum(-1)


def turn_gae(rewards_BT: Tensor, values_BT: Tensor, mask_BT: Tensor, *, gamma: float, lam: float) -> tuple[Tensor, Tensor]:
    """GAE with one step per turn: a turn's value is the value at its first token, its reward
    the sum of its tokens' rewards; every token of a turn gets the turn's advantage and return.
    Token GAE on the (B, K) sequence of turns, spread back over the tokens. (B, T) float32.
    """
    m_BT = _check(rewards_BT, values_BT, mask_BT)
    turn_BT, n_turns_B = turn_ids(m_BT)
    B = m_BT.shape[0]
    K = max(int(n_turns_B.max()) if B else 0, 1)
    idx_BT = turn_BT.clamp(min=0)
    rewards_BK = torch.zeros(B, K).scatter_add_(1, idx_BT, torch.where(m_BT, rewards_BT.float(), 0.0))
    prev_BT = torch.cat([torch.full((B, 1), -1), turn_BT[:, :-1]], 1)
    first_BT = m_BT & (turn_BT != prev_BT)  # the first token of each turn
    values_BK = torch.zeros(B, K).scatter_add_(1, idx_BT, torch.where(first_BT, values_BT.float(), 0.0))
    turn_mask_BK = torch.arange(K)[None, :] < n_turns_B[:, None]
    adv_BK, returns_BK = token_gae(rewards_BK, values_BK, turn_mask_BK, gamma=gamma, lam=lam)
    adv_BT = torch.where(m_BT, adv_BK.gather(1, idx_BT), 0.0)
    returns_BT = torch.where(m_BT, returns_BK.gather(1, idx_BT), 0.0)
    return adv_BT, returns_BT


def terminal_rewards(reward_B: Tensor, mask_BT: Tensor) -> Tensor:
    """(B, T) rewards with each row's outcome reward on its last sampled token, 0 elsewhere
    (a row with no sampled token gets none)."""
    m_BT = mask_BT.bool()
    T = m_BT.shape[1]
    last_B = torch.where(m_BT, torch.arange(T)[None, :], -1).amax(-1)
    out_BT = torch.zeros(m_BT.shape)
    rows = (last_B >= 0).nonzero().squeeze(-1)
    out_BT[rows, last_B[rows]] = reward_B.float()[rows]
    return out_BT


def whiten(x_BT: Tensor, mask_BT: Tensor, eps: float = 1e-8) -> Tensor:
    """(x - mean) / (std + eps) over the masked entries (population std); 0 elsewhere.
    The batch-level advantage normalisation of PPO implementations (CleanRL ``norm_adv``)."""
    m_BT = mask_BT.bool()
    n = m_BT.sum().clamp(min=1)
    mean = torch.where(m_BT, x_BT, 0.0).sum() / n
    var = torch.where(m_BT, (x_BT - mean) ** 2, 0.0).sum() / n
    return torch.where(m_BT, (x_BT - mean) / (var.sqrt() + eps), 0.0)


def explained_variance(values_BT: Tensor, returns_BT: Tensor, mask_BT: Tensor) -> float:
    """1 - Var[returns - values] / Var[returns] over masked entries: 1 = the values predict the
    returns perfectly, 0 = no better than a constant, < 0 = worse. 0.0 when the returns do not
    vary (nothing to explain) or fewer than 2 entries are masked."""
    m_BT = mask_BT.bool()
    if int(m_BT.sum()) < 2:
        return 0.0
    ret, val = returns_BT[m_BT].float(), values_BT[m_BT].float()
    var_ret = ret.var(unbiased=False)
    if float(var_ret) == 0.0:
        return 0.0
    return float(1.0 - (ret - val).var(unbiased=False) / var_ret)


GAE = {"token": token_gae, "turn": turn_gae}
