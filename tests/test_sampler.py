"""The in-process sampler against transformers' own generate and a fresh forward pass.

Run: python -m pytest -q tests/test_sampler.py
"""

import torch

from rlft.algos.logprobs import sequence_logprobs
from rlft.models import encode_prompt
from rlft.rollout.sampler import HFSampler, SamplingParams, filter_logits

PROMPTS = ["12+345=", "7+8=", "999+1=", "hello"]


def _prompt_ids(tokenizer):
    return [encode_prompt(tokenizer, p) for p in PROMPTS]


def test_greedy_equals_model_generate(tiny):
    model, tokenizer = tiny
    prompts = _prompt_ids(tokenizer)
    params = SamplingParams(max_new_tokens=12, temperature=0)
    ours = HFSampler(model, tokenizer).generate(prompts, 1, params, torch.Generator().manual_seed(0))
    for p, (c,) in zip(prompts, ours):
        ref = model.generate(
            torch.tensor([p]), attention_mask=torch.ones(1, len(p), dtype=torch.long),
            do_sample=False, max_new_tokens=12, pad_token_id=tokenizer.pad_token_id,
        )[0, len(p):].tolist()
        if tokenizer.eos_token_id in ref:  # generate pads after EOS; we stop at it
            ref = ref[: ref.index(tokenizer.eos_token_id) + 1]
        assert c.tokens == ref
        assert c.stop_reason == ("eos" if ref[-1] == tokenizer.eos_token_id else "length")


def test_sampled_logprobs_equal_fresh_forward(tiny):
    model, tokenizer = tiny
    prompts = _prompt_ids(tokenizer)
    params = SamplingParams(max_new_tokens=10, temperature=1.0)
    out = HFSampler(model, tokenizer).generate(prompts, 3, params, torch.Generator().manual_seed(1))
    for p, group in zip(prompts, out):
        assert len(group) == 3
        for c in group:
            ids = torch.tensor([p + c.tokens])
            logp_BT, _ = sequence_logprobs(model, ids, torch.ones_like(ids))
            torch.testing.assert_close(logp_BT[0, len(p):], torch.tensor(c.logp), atol=1e-5, rtol=0)


def test_same_generator_seed_same_samples(tiny):
    model, tokenizer = tiny
    sampler, prompts = HFSampler(model, tokenizer), _prompt_ids(tokenizer)
    params = SamplingParams(max_new_tokens=8, temperature=1.0, top_k=20, top_p=0.9)
    a = sampler.generate(prompts, 2, params, torch.Generator().manual_seed(5))
    b = sampler.generate(prompts, 2, params, torch.Generator().manual_seed(5))
    assert [[c.tokens for c in g] for g in a] == [[c.tokens for c in g] for g in b]


def test_stop_strings_and_max_tokens(tiny):
    model, tokenizer = tiny
    sampler = HFSampler(model, tokenizer)
    params = SamplingParams(max_new_tokens=5, temperature=1.0)
    for group in sampler.generate(_prompt_ids(tokenizer), 4, params, torch.Generator().manual_seed(0)):
        for c in group:
            assert len(c.tokens) <= 5 and len(c.logp) == len(c.tokens)
            assert c.stop_reason in ("eos", "length")
    # every byte-level token decodes to something, so a stop string of each single digit
    # stops a completion as soon as it emits that digit
    params = SamplingParams(max_new_tokens=30, temperature=1.0, stop=tuple("0123456789"))
    for group in sampler.generate(_prompt_ids(tokenizer), 4, params, torch.Generator().manual_seed(0)):
        for c in group:
            if c.stop_reason == "stop":
                assert any(d in c.text for d in "0123456789")
                assert not any(d in tokenizer.decode(c.tokens[:-1]) for d in "0123456789")


def test_filter_logits_top_k_and_top_p():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    assert torch.isinf(filter_logits(logits, 2, 1.0)[0, 2:]).all()
    # nucleus 0.7: 0.5 < 0.7 so keep the second (0.5 + 0.3 reaches it), drop the rest
    kept = ~torch.isinf(filter_logits(logits, 0, 0.7))
    assert kept.tolist() == [[True, True, False, False]]
    # shuffled order gives the same set
    perm = torch.tensor([2, 0, 3, 1])
    assert (~torch.isinf(filter_logits(logits[:, perm], 0, 0.7))).tolist() == [[False, True, False, True]]
