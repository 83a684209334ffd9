"""The ONE place logits become token log-probabilities (and entropies).

Every loss, every reference/old-logprob pass and every health metric goes through here, so a
temperature, dtype or alignment mistake can only be made (and fixed) once.

Shapes: ``B`` sequences, ``T`` tokens, ``V`` vocabulary.
"""

from __future__ import annotations

import torch
from torch import Tensor


def token_logprobs(logits_BTV: Tensor, targets_BT: Tensor, temperature: float = 1.0) -> Tensor:
    """``log_softmax(logits / temperature)`` gathered at ``targets``.

    logits_BTV: (B, T, V) any float dtype; targets_BT: (B, T) int64. Returns logp_BT (B, T) float32.

    Computed as ``gather - logsumexp`` one sequence at a time in float32, so no full (B, T, V)
    log-softmax (nor a full float32 copy of bf16 logits) is ever materialised — the same trick as
    TRL's ``selective_log_softmax``. Autograd flows through.
    """
    assert logits_BTV.dim() == 3, f"logits must be (B, T, V), got {tuple(logits_BTV.shape)}"
    assert targets_BT.shape == logits_BTV.shape[:2], (
        f"targets {tuple(targets_BT.shape)} do not match logits {tuple(logits_BTV.shape)}"
    )
    assert temperature > 0, f"temperature must be > 0, got {temperature}"
    rows_T = []
    for logits_TV, targets_T in zip(logits_BTV, targets_BT):
        logits_TV = logits_TV.float() / temperature
        picked_T = logits_TV.gather(-1, targets_T.long().unsqueeze(-1)).squeeze(-1)
        rows_T.append(picked_T - torch.logsumexp(logits_TV, dim=-1))
    return torch.stack(rows_T)


def entropy(logits_BTV: Tensor, temperature: float = 1.0) -> Tensor:
    """Entropy of ``softmax(logits / temperature)`` at each position.

    logits_BTV: (B, T, V). Returns ent_BT (B, T) float32, computed per sequence in float32 as
    ``logsumexp(z) - sum(softmax(z) * z)``.
    """
    assert logits_BTV.dim() == 3, f"logits must be (B, T, V), got {tuple(logits_BTV.shape)}"
    assert temperature > 0, f"temperature must be > 0, got {temperature}"
    rows_T = []
    for logits_TV in logits_BTV:
        z_TV = logits_TV.float() / temperature
        rows_T.append(torch.logsumexp(z_TV, dim=-1) - (torch.softmax(z_TV, dim=-1) * z_TV).sum(-1))
    return torch.stack(rows_T)


def sequence_logprobs(
    model: torch.nn.Module,
    input_ids_BT: Tensor,
    attention_mask_BT: Tensor,
    temperature: float = 1.0,
    with_entropy: bool = False,
) -> tuple[Tensor, Tensor | None]:
    """Run a Hugging Face causal LM; return log-probs aligned WITH the tokens.

    input_ids_BT, attention_mask_BT: (B, T). Returns (logp_BT, ent_BT or None), both (B, T) float32:

    - ``logp_BT[:, t] = log p(input_ids[:, t] | input_ids[:, :t])``;
    - ``ent_BT[:, t]`` = entropy of the distribution that predicted token t;
    - both are 0 where ``attention_mask`` is 0 and at the first real token of each sequence
      (t = 0 with right padding): nothing predicted it.

    Position ids come from the attention mask (cumsum - 1, clamped at 0), so left- or
    right-padding does not change the values. ``use_cache=False``: this is a training pass.
    """
    assert input_ids_BT.shape == attention_mask_BT.shape, (
        f"input_ids {tuple(input_ids_BT.shape)} and attention_mask "
        f"{tuple(attention_mask_BT.shape)} differ in shape"
    )
    mask_BT = attention_mask_BT.bool()
    position_ids_BT = (attention_mask_BT.long().cumsum(-1) - 1).clamp(min=0)
    logits_BTV = model(
        input_ids=input_ids_BT,
        attention_mask=attention_mask_BT,
        position_ids=position_ids_BT,
        use_cache=False,
    ).logits
    # Logits at t-1 predict token t; a token counts only if it and its predecessor are real.
    pred_logits_BTV = logits_BTV[:, :-1]
    valid_BT = torch.zeros_like(mask_BT)
    valid_BT[:, 1:] = mask_BT[:, 1:] & mask_BT[:, :-1]
    zeros_B1 = logits_BTV.new_zeros((input_ids_BT.shape[0], 1), dtype=torch.float32)

    logp_BT = torch.cat([zeros_B1, token_logprobs(pred_logits_BTV, input_ids_BT[:, 1:], temperature)], 1)
    # where, not multiply: logits at padding positions may be non-finite in some attention kernels.
    logp_BT = torch.where(valid_BT, logp_BT, 0.0)
    ent_BT = None
    if with_entropy:
        ent_BT = torch.cat([zeros_B1, entropy(pred_logits_BTV, temperature)], 1)
        ent_BT = torch.where(valid_BT, ent_BT, 0.0)
    return logp_BT, ent_BT
