"""Samplers: prompts in, sampled tokens and the sampler's logprobs out.

``HFSampler`` decodes a batch in-process with the model's KV cache. Prompts are left-padded
so every row's next token sits in the last column; position ids come from the attention mask,
so padding changes nothing. The logprob reported for a token is that of the temperature-scaled
distribution before top-p/top-k truncation (the learner computes the same quantity); at
temperature 0 (greedy) it is the plain model logprob.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

import torch

from rlft.types import StopReason


@dataclass(frozen=True)
class SamplingParams:
    max_new_tokens: int = 256
    temperature: float = 1.0  # 0 = greedy
    top_p: float = 1.0
    top_k: int = 0  # 0 = off
    stop: tuple[str, ...] = ()


@dataclass
class Completion:
    tokens: list[int]
    logp: list[float]
    text: str
    stop_reason: StopReason


class Sampler(Protocol):
    version: int

    def generate(
        self, prompts: Sequence[list[int]], n: int, params: SamplingParams, generator: torch.Generator
    ) -> list[list[Completion]]:
        """``n`` completions for each prompt, as ``completions_P_G``."""
        ...


def filter_logits(logits_BV: torch.Tensor, top_k: int, top_p: float) -> torch.Tensor:
    """Set logits outside the top-k / nucleus (Holtzman et al. 2019) to -inf."""
    if top_k > 0 and top_k < logits_BV.shape[-1]:
        kth = torch.topk(logits_BV, top_k, dim=-1).values[:, -1:]
        logits_BV = logits_BV.masked_fill(logits_BV < kth, float("-inf"))
    if top_p < 1.0:
        sorted_BV, idx_BV = torch.sort(logits_BV, descending=True, dim=-1)
        probs_BV = sorted_BV.softmax(-1)
        # drop a token when the mass before it already reaches top_p (the first always stays)
        drop_BV = probs_BV.cumsum(-1) - probs_BV >= top_p
        drop_BV = drop_BV.scatter(-1, idx_BV, drop_BV)
        logits_BV = logits_BV.masked_fill(drop_BV, float("-inf"))
    return logits_BV


class HFSampler:
    """Batched sampling from a transformers causal LM that shares its module with the learner
    (so weight sync is a no-op; ``version`` still counts updates, DESIGN.md §4 step 2)."""

    def __init__(self, model, tokenizer, version: int = 0):
        self.model, self.tokenizer, self.version = model, tokenizer, version

    @torch.no_grad()
    def generate(
        self, prompts: Sequence[list[int]], n: int, params: SamplingParams, generator: torch.Generator
    ) -> list[list[Completion]]:
        out = self._decode([list(p) for p in prompts], n, params, generator)
        return [out[i * n : (i + 1) * n] for i in range(len(prompts))]

    def _decode(self, prompts: list[list[int]], n: int, params: SamplingParams, generator) -> list[Completion]:
        """Each prompt is run once (prefill); its KV cache and last logits are then repeated for
        its n rows, B = P·n, which decode together."""
        model, tok = self.model, self.tokenizer
        device = next(model.parameters()).device
        was_training = model.training
        model.eval()
        P, width = len(prompts), max(len(r) for r in prompts)
        B, pad = P * n, tok.pad_token_id
        input_ids_PT = torch.full((P, width), pad, dtype=torch.long)
        mask_PT = torch.zeros((P, width), dtype=torch.long)
        for p, r in enumerate(prompts):
            input_ids_PT[p, width - len(r) :] = torch.tensor(r)
            mask_PT[p, width - len(r) :] = 1
        input_ids_PT, mask_PT = input_ids_PT.to(device), mask_PT.to(device)
        out = model(
            input_ids=input_ids_PT,
            attention_mask=mask_PT,
            position_ids=(mask_PT.cumsum(-1) - 1).clamp(min=0),
            use_cache=True,
        )
        cache = out.cache
        cache.batch_repeat_interleave(n)
        # rows still decoding are "A" (active); a finished row leaves the batch and its cache
        logits_AV = out.logits[:, -1, :].float().repeat_interleave(n, dim=0)
        mask_AT = mask_PT.repeat_interleave(n, dim=0)
        pos_A1 = mask_AT.sum(-1, keepdim=True) - 1  # position of each row's last token
        rows_A = torch.arange(B, device=device)

        eos_ids = torch.tensor(_eos_ids(model, tok), device=device)
        tokens_BN = torch.full((B, params.max_new_tokens), pad, dtype=torch.long, device=device)
        logp_BN = torch.zeros((B, params.max_new_tokens), dtype=torch.float32, device=device)
        length_B = torch.zeros(B, dtype=torch.long, device=device)  # tokens each row sampled
        reason: list[StopReason] = ["length"] * B
        next_A = None  # the tokens sampled at the previous step
        for step in range(params.max_new_tokens):
            if step > 0:  # feed the last sampled token; the prefill gave step 0's logits
                mask_AT = torch.cat([mask_AT, torch.ones_like(mask_AT[:, :1])], dim=1)
                pos_A1 = pos_A1 + 1
                out = model(
                    input_ids=next_A[:, None], attention_mask=mask_AT, position_ids=pos_A1, cache=cache,
                    use_cache=True,
                )
                cache = out.cache
                logits_AV = out.logits[:, -1, :].float()
            if params.temperature == 0:
                next_A = logits_AV.argmax(-1)
                logp_all_AV = logits_AV.log_softmax(-1)
            else:
                logits_AV = logits_AV / params.temperature
                logp_all_AV = logits_AV.log_softmax(-1)
                probs_AV = filter_logits(logits_AV, params.top_k, params.top_p).softmax(-1)
                next_A = torch.multinomial(probs_AV.cpu(), 1, generator=generator).squeeze(-1).to(device)
            tokens_BN[rows_A, step] = next_A
            logp_BN[rows_A, step] = logp_all_AV.gather(-1, next_A[:, None]).squeeze(-1)
            length_B[rows_A] += 1
            finished_A = torch.isin(next_A, eos_ids)
            for a in finished_A.nonzero().flatten().tolist():
                reason[rows_A[a]] = "eos"
            if params.stop:
                for a in (~finished_A).nonzero().flatten().tolist():
                    b = int(rows_A[a])
                    tail = tok.decode(tokens_BN[b, max(0, step - 15) : step + 1].tolist())
                    if any(s in tail for s in params.stop):
                        finished_A[a], reason[b] = True, "stop"
            if bool(finished_A.all()):
                break
            if bool(finished_A.any()):
                keep_A = (~finished_A).nonzero().flatten()
                cache.batch_select_indices(keep_A)
                rows_A, next_A, mask_AT, pos_A1 = rows_A[keep_A], next_A[keep_A], mask_AT[keep_A], pos_A1[keep_A]
        model.train(was_training)

        completions = []
        for b, k in enumerate(length_B.tolist()):
            toks = tokens_BN[b, :k].tolist()
            completions.append(
                Completion(
                    tokens=toks,
                    logp=logp_BN[b, :k].tolist(),
                    text=tok.decode(toks, skip_special_tokens=True),
                    stop_reason=reason[b],
                )
            )
        return completions


def _eos_ids(model, tokenizer) -> list[int]:
    eos = model.generation_config.eos_token_id
    ids = eos if isinstance(eos, list) else [eos] if eos is not None else []
    if tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
    return sorted(set(ids))
