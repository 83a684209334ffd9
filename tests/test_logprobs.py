"""Logits -> logprobs: against F.cross_entropy, and padding invariance on a tiny Llama.

Run: python -m pytest -q tests/test_logprobs.py
"""

import pytest
import torch
import torch.nn.functional as F
from transformers import LlamaConfig, LlamaForCausalLM

from rlft.algos.logprobs import entropy, sequence_logprobs, token_logprobs

PAD = 0


def tiny_llama() -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64,
    )
    return LlamaForCausalLM(config).eval()


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_token_logprobs_matches_cross_entropy(temperature):
    torch.manual_seed(0)
    logits_BTV = torch.randn(3, 5, 11)
    targets_BT = torch.randint(0, 11, (3, 5))
    expected_BT = -F.cross_entropy(
        (logits_BTV / temperature).reshape(-1, 11), targets_BT.reshape(-1), reduction="none"
    ).reshape(3, 5)
    torch.testing.assert_close(token_logprobs(logits_BTV, targets_BT, temperature), expected_BT)
    # bf16 logits are upcast: result is float32
    assert token_logprobs(logits_BTV.bfloat16(), targets_BT).dtype == torch.float32


def test_entropy_matches_direct():
    torch.manual_seed(0)
    logits_BTV = torch.randn(2, 4, 7) * 3
    p = torch.softmax(logits_BTV / 0.5, -1)
    expected_BT = -(p * torch.log(p)).sum(-1)
    torch.testing.assert_close(entropy(logits_BTV, 0.5), expected_BT)


def _padded(seqs, T, left):
    ids = torch.full((len(seqs), T), PAD)
    mask = torch.zeros(len(seqs), T, dtype=torch.long)
    for b, s in enumerate(seqs):
        sl = slice(T - len(s), T) if left else slice(0, len(s))
        ids[b, sl] = torch.tensor(s)
        mask[b, sl] = 1
    return ids, mask


@pytest.mark.parametrize("left", [False, True], ids=["right_pad", "left_pad"])
def test_sequence_logprobs_padding_invariant(left):
    model = tiny_llama()
    torch.manual_seed(1)
    seqs = [torch.randint(1, 50, (n,)).tolist() for n in (6, 3, 9)]
    T = 11
    ids, mask = _padded(seqs, T, left)
    with torch.no_grad():
        logp_BT, ent_BT = sequence_logprobs(model, ids, mask, temperature=0.8, with_entropy=True)
    assert (logp_BT[mask == 0] == 0).all() and (ent_BT[mask == 0] == 0).all()
    for b, s in enumerate(seqs):
        one = torch.tensor([s])
        with torch.no_grad():
            ref_logp, ref_ent = sequence_logprobs(model, one, torch.ones_like(one), 0.8, True)
            # direct definition: logp[t] = log softmax(logits[t-1]/temp)[ids[t]], 0 at t = 0
            logits = model(one).logits[0] / 0.8
        direct = torch.log_softmax(logits[:-1], -1).gather(-1, one[0, 1:, None])[:, 0]
        torch.testing.assert_close(ref_logp[0], torch.cat([torch.zeros(1), direct]), atol=1e-5, rtol=0)
        direct_ent = -(torch.softmax(logits[:-1], -1) * torch.log_softmax(logits[:-1], -1)).sum(-1)
        torch.testing.assert_close(ref_ent[0], torch.cat([torch.zeros(1), direct_ent]), atol=1e-5, rtol=0)
        real = mask[b].bool()
        torch.testing.assert_close(logp_BT[b][real], ref_logp[0], atol=1e-5, rtol=0)
        torch.testing.assert_close(ent_BT[b][real], ref_ent[0], atol=1e-5, rtol=0)
    assert ent_BT is not None and sequence_logprobs(model, ids, mask)[1] is None


def test_chunking_does_not_change_values(monkeypatch):
    import rlft.algos.logprobs as lp

    torch.manual_seed(0)
    logits_BTV, targets_BT = torch.randn(5, 7, 11), torch.randint(0, 11, (5, 7))
    whole = lp.token_logprobs(logits_BTV, targets_BT), lp.entropy(logits_BTV)
    monkeypatch.setattr(lp, "CHUNK_ELEMENTS", 2 * 7 * 11)  # two rows at a time, last chunk one row
    chunked = lp.token_logprobs(logits_BTV, targets_BT), lp.entropy(logits_BTV)
    for a, b in zip(whole, chunked):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_prefix_logprobs_equal_full_sequences_in_value_and_gradient():
    from rlft.algos.logprobs import prefix_logprobs

    model = tiny_llama()
    prefixes = [[3, 4, 5, 6], [7, 8]]
    rows = [0, 0, 1, 0, 1]  # shared prefixes, uneven groups
    conts = [[9, 10, 11], [12], [13, 14], [15, 16, 17], [18]]
    full = [prefixes[r] + c for r, c in zip(rows, conts)]

    # reference: each full sequence on its own, gradients of the summed continuation logprobs
    ref_logp, ref_sum = [], 0.0
    for r, c, seq in zip(rows, conts, full):
        ids = torch.tensor([seq])
        logp, _ = sequence_logprobs(model, ids, torch.ones_like(ids))
        ref_logp.append(logp[0, len(prefixes[r]):])
        ref_sum = ref_sum + logp[0, len(prefixes[r]):].sum()
    ref_sum.backward()
    ref_grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()

    Tp, T = max(map(len, prefixes)), max(map(len, conts))
    prefix_ids = torch.tensor([[0] * (Tp - len(p)) + p for p in prefixes])  # left-padded
    prefix_mask = torch.tensor([[0] * (Tp - len(p)) + [1] * len(p) for p in prefixes])
    ids = torch.tensor([c + [0] * (T - len(c)) for c in conts])  # right-padded
    mask = torch.tensor([[1] * len(c) + [0] * (T - len(c)) for c in conts])
    logp_BT, ent_BT = prefix_logprobs(model, prefix_ids, prefix_mask, torch.tensor(rows), ids, mask, with_entropy=True)
    for b, c in enumerate(conts):
        torch.testing.assert_close(logp_BT[b, : len(c)], ref_logp[b], atol=1e-5, rtol=0)
        assert (logp_BT[b, len(c):] == 0).all() and (ent_BT[b, len(c):] == 0).all()
    logp_BT.sum().backward()
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.grad, ref_grads[n], atol=1e-5, rtol=1e-4)
