"""The ONE place logits become token log-probabilities (and entropies).

Every loss, every reference/old-logprob pass and every health metric goes through here, so a
temperature, dtype or alignment mistake can only be made (and fixed) once.

Shapes: ``B`` sequences, ``T`` tokens, ``V`` vocabulary.
"""

from __future__ import annotations

import torch
from torch import Tensor


# Rows of logits processed at once are capped at this many elements, so no full (B, T, V)
# float32 copy is made for a large vocabulary while small models still run in one pass.
CHUNK_ELEMENTS = 1 << 24


def _row_chunks(logits_BTV: Tensor) -> int:
    B, T, V = logits_BTV.shape
    return max(1, min(B, CHUNK_ELEMENTS // max(T * V, 1)))


def token_logprobs(logits_BTV: Tensor, targets_BT: Tensor, temperature: float = 1.0) -> Tensor:
    """``log_softmax(logits / temperature)`` gathered at ``targets``.

    logits_BTV: (B, T, V) any float dtype; targets_BT: (B, T) int64. Returns logp_BT (B, T) float32.

    Computed as ``gather - logsumexp`` in float32 over chunks of rows (``CHUNK_ELEMENTS``), so no
    full (B, T, V) log-softmax of a large vocabulary is materialised — the trick of TRL's
    ``selective_log_softmax`` — while a small model's batch is one vectorised pass.
    Autograd flows through.
    """
    assert logits_BTV.dim() == 3, f"logits must be (B, T, V), got {tuple(logits_BTV.shape)}"
    assert targets_BT.shape == logits_BTV.shape[:2], (
        f"targets {tuple(targets_BT.shape)} do not match logits {tuple(logits_BTV.shape)}"
    )
    assert temperature > 0, f"temperature must be > 0, got {temperature}"
    rows = _row_chunks(logits_BTV)
    parts_BT = []
    for logits_bTV, targets_bT in zip(logits_BTV.split(rows), targets_BT.split(rows)):
        z_bTV = logits_bTV.float() / temperature
        picked_bT = z_bTV.gather(-1, targets_bT.long().unsqueeze(-1)).squeeze(-1)
        parts_BT.append(picked_bT - torch.logsumexp(z_bTV, dim=-1))
    return torch.cat(parts_BT)


def entropy(logits_BTV: Tensor, temperature: float = 1.0) -> Tensor:
    """Entropy of ``softmax(logits / temperature)`` at each position.

    logits_BTV: (B, T, V). Returns ent_BT (B, T) float32, computed over chunks of rows in float32
    as ``logsumexp(z) - sum(softmax(z) * z)``.
    """
    assert logits_BTV.dim() == 3, f"logits must be (B, T, V), got {tuple(logits_BTV.shape)}"
    assert temperature > 0, f"temperature must be > 0, got {temperature}"
    parts_BT = []
    for logits_bTV in logits_BTV.split(_row_chunks(logits_BTV)):
        z_bTV = logits_bTV.float() / temperature
        parts_BT.append(torch.logsumexp(z_bTV, dim=-1) - (torch.softmax(z_bTV, dim=-1) * z_bTV).sum(-1))
    return torch.cat(parts_BT)


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
    if with_entropy:  # a metric: no autograd graph
        with torch.no_grad():
            ent_BT = torch.cat([zeros_B1, entropy(pred_logits_BTV, temperature)], 1)
        ent_BT = torch.where(valid_BT, ent_BT, 0.0)
    return logp_BT, ent_BT


def prefix_logprobs(
    model: torch.nn.Module,
    prefix_ids_PT: Tensor,
    prefix_mask_PT: Tensor,
    row_B: Tensor,
    input_ids_BT: Tensor,
    attention_mask_BT: Tensor,
    temperature: float = 1.0,
    with_entropy: bool = False,
) -> tuple[Tensor, Tensor | None]:
    """Log-probs of continuations that share prefixes: each prefix is run once, its KV cache is
    gathered for the rows that continue it, and only the continuations are run again.

    prefix_ids_PT, prefix_mask_PT: (P, Tp), LEFT-padded (the last column is every prefix's last
    token). row_B: (B,) which prefix each row continues. input_ids_BT, attention_mask_BT: (B, T)
    continuations, right-padded. Returns (logp_BT, ent_BT or None) aligned with ``input_ids_BT``
    (logp of continuation token t given its prefix and tokens < t; 0 where the mask is 0).

    Equal to ``sequence_logprobs`` on the concatenated sequences, gradients included: the
    gradient through the shared prefix is the sum over the rows that use it. With G samples per
    prompt this runs the prompt once instead of G times, in training and in sampling alike.
    """
    out = model(
        input_ids=prefix_ids_PT,
        attention_mask=prefix_mask_PT,
        position_ids=(prefix_mask_PT.long().cumsum(-1) - 1).clamp(min=0),
        use_cache=True,
    )
    cache = out.cache
    cache.batch_select_indices(row_B)  # differentiable gather of the prefix keys/values
    prefix_len_B = prefix_mask_PT.long().sum(-1)[row_B]
    T = input_ids_BT.shape[1]
    logits_BTV = model(
        input_ids=input_ids_BT,
        attention_mask=torch.cat([prefix_mask_PT[row_B], attention_mask_BT], 1),
        position_ids=prefix_len_B[:, None] + torch.arange(T, device=input_ids_BT.device),
        cache=cache,
        use_cache=True,
    ).logits
    # token 0 of a continuation is predicted by its prefix's last position, token t by t - 1
    pred_logits_BTV = torch.cat([out.logits[:, -1:][row_B], logits_BTV[:, :-1]], 1)
    valid_BT = attention_mask_BT.bool()
    logp_BT = torch.where(valid_BT, token_logprobs(pred_logits_BTV, input_ids_BT, temperature), 0.0)
    ent_BT = None
    if with_entropy:  # a metric: no autograd graph
        with torch.no_grad():
            ent_BT = torch.where(valid_BT, entropy(pred_logits_BTV, temperature), 0.0)
    return logp_BT, ent_BT
