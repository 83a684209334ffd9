"""Losses: hand-worked aggregations and KL estimators, and the invariants that tie RL to SFT.

Run: python -m pytest -q tests/test_losses.py
"""

import math

import pytest
import torch
import torch.nn.functional as F
from transformers import LlamaConfig, LlamaForCausalLM

from rlft.algos.logprobs import sequence_logprobs
from rlft.algos.losses import AGGREGATIONS, KL_ESTIMATORS, Norm, policy_loss

X = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
M = torch.tensor([[1, 1, 0], [0, 1, 1]])


def tiny_llama() -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64,
    )
    return LlamaForCausalLM(config)


def test_norm_of():
    norm = Norm.of(torch.tensor([[1, 1, 0], [0, 0, 0], [0, 1, 1]]), max_tokens=5)
    # 4 trained tokens; the all-masked row is not a sequence that is trained
    assert norm == Norm(n_tokens=4.0, n_seqs=2, max_tokens=5)


def test_aggregations_hand_worked():
    norm = Norm.of(M, max_tokens=4)  # n_tokens 4, n_seqs 2
    # token_mean: (1 + 2 + 5 + 6) / 4 = 3.5
    assert AGGREGATIONS["token_mean"](X, M, norm).item() == pytest.approx(3.5)
    # seq_mean: (mean(1, 2) + mean(5, 6)) / 2 = (1.5 + 5.5) / 2 = 3.5; with unequal lengths:
    assert AGGREGATIONS["seq_mean"](X, M, norm).item() == pytest.approx(3.5)
    m2 = torch.tensor([[1, 0, 0], [1, 1, 1]])
    # (1 + mean(4, 5, 6)) / 2 = (1 + 5) / 2 = 3.0, token_mean would be 16 / 4 = 4.0
    assert AGGREGATIONS["seq_mean"](X, m2, Norm.of(m2, 4)).item() == pytest.approx(3.0)
    assert AGGREGATIONS["token_mean"](X, m2, Norm.of(m2, 4)).item() == pytest.approx(4.0)
    # dr_grpo: 14 / (2 seqs * 4 max_tokens) = 1.75
    assert AGGREGATIONS["dr_grpo"](X, M, norm).item() == pytest.approx(1.75)
    # masked positions may hold inf/NaN without poisoning the loss
    x_bad = X.clone()
    x_bad[0, 2], x_bad[1, 0] = float("inf"), float("nan")
    for fn in AGGREGATIONS.values():
        assert fn(x_bad, M, norm).item() == fn(X, M, norm).item()


def test_kl_estimators_hand_worked():
    logp = torch.tensor([[math.log(0.5), math.log(0.2)]])
    ref = torch.tensor([[math.log(0.25), math.log(0.4)]])
    # log_ratio = [log 2, -log 2]
    lr = torch.tensor([[math.log(2), -math.log(2)]])
    torch.testing.assert_close(KL_ESTIMATORS["k1"](logp, ref), lr)
    torch.testing.assert_close(KL_ESTIMATORS["k2"](logp, ref), 0.5 * lr**2)
    # k3 = exp(-lr) - 1 + lr: [0.5 - 1 + 0.6931, 2 - 1 - 0.6931] = [0.1931, 0.3069]
    torch.testing.assert_close(KL_ESTIMATORS["k3"](logp, ref), torch.tensor([[0.5 - 1 + math.log(2), 1 - math.log(2)]]))
    assert torch.isfinite(KL_ESTIMATORS["k3"](torch.tensor([[-1000.0]]), torch.tensor([[0.0]]))).all()
    assert KL_ESTIMATORS["k3"](logp, logp).abs().max() == 0


def test_unknown_names_list_valid_ones():
    x = torch.zeros(1, 2)
    with pytest.raises(ValueError, match="dr_grpo, seq_mean, token_mean"):
        policy_loss(x, x, x, Norm.of(x, 2), aggregation="mean")
    with pytest.raises(ValueError, match="k1, k2, k3"):
        policy_loss(x, x, x, Norm.of(x, 2), kl_estimator="k4")


def _batch(seqs, T, left=False):
    ids = torch.zeros(len(seqs), T, dtype=torch.long)
    attn = torch.zeros(len(seqs), T, dtype=torch.long)
    for b, s in enumerate(seqs):
        sl = slice(T - len(s), T) if left else slice(0, len(s))
        ids[b, sl], attn[b, sl] = torch.tensor(s), 1
    loss_mask = attn.clone()
    first = attn.argmax(-1)  # first real token: the "prompt", never trained
    loss_mask[torch.arange(len(seqs)), first] = 0
    return ids, attn, loss_mask


def _grads(model):
    return [p.grad.clone() for p in model.parameters()]


def test_adv_one_is_sft_nll():
    """(a) policy_loss with advantage 1 == masked-mean cross-entropy, value and gradient."""
    model = tiny_llama()
    torch.manual_seed(1)
    ids, attn, loss_mask = _batch([torch.randint(1, 50, (n,)).tolist() for n in (7, 4, 10)], 10)

    model.zero_grad()
    logits = model(input_ids=ids, attention_mask=attn).logits
    nll = F.cross_entropy(logits[:, :-1].reshape(-1, 50), ids[:, 1:].reshape(-1), reduction="none")
    m = loss_mask[:, 1:].reshape(-1).float()
    sft = (nll * m).sum() / m.sum()
    sft.backward()
    sft_grads = _grads(model)

    model.zero_grad()
    logp_BT, _ = sequence_logprobs(model, ids, attn)
    loss, metrics = policy_loss(logp_BT, torch.ones(3, 1), loss_mask, Norm.of(loss_mask, 10))
    loss.backward()
    torch.testing.assert_close(loss, sft, atol=1e-6, rtol=1e-5)
    for g, g_sft in zip(_grads(model), sft_grads):
        torch.testing.assert_close(g, g_sft, atol=1e-6, rtol=1e-4)
    assert metrics["clip_fraction"] == 0 and metrics["approx_kl"] == 0 and "kl" not in metrics


@pytest.mark.parametrize("aggregation", sorted(AGGREGATIONS))
def test_ppo_at_ratio_one_is_reinforce(aggregation):
    """(b) PPO-clip with old_logp = logp.detach() has the REINFORCE gradient."""
    torch.manual_seed(0)
    logp = torch.randn(4, 6).requires_grad_()
    adv = torch.randn(4, 1)
    mask = (torch.rand(4, 6) > 0.3).long()
    norm = Norm.of(mask, 6)
    g_pg, = torch.autograd.grad(policy_loss(logp, adv, mask, norm, aggregation=aggregation)[0], logp)
    loss, metrics = policy_loss(logp, adv, mask, norm, old_logp_BT=logp.detach(), aggregation=aggregation)
    g_ppo, = torch.autograd.grad(loss, logp)
    torch.testing.assert_close(g_ppo, g_pg)
    assert metrics["clip_fraction"] == 0 and metrics["approx_kl"] == 0


def test_clipping_zeroes_gradient_outside_range():
    """(c) Ratio past the range in the advantage's direction: no gradient; otherwise there is."""
    # ratios: 1.5 (A>0: clipped at 1.28), 0.5 (A<0: clipped at 0.8), 1.5 (A<0: kept), 0.5 (A>0: kept),
    # 1.1 (inside: kept). clip_low 0.2, clip_high 0.28 (DAPO clip-higher).
    ratio = torch.tensor([[1.5, 0.5, 1.5, 0.5, 1.1]])
    adv = torch.tensor([[1.0, -1.0, -1.0, 1.0, 1.0]])
    old = torch.zeros(1, 5)
    logp = ratio.log().requires_grad_()
    mask = torch.ones(1, 5)
    loss, metrics = policy_loss(logp, adv, mask, Norm.of(mask, 5), old_logp_BT=old, clip_low=0.2, clip_high=0.28)
    g, = torch.autograd.grad(loss, logp)
    # d(-ratio·A)/dlogp = -ratio·A / n_tokens for the kept tokens
    expected = torch.tensor([[0.0, 0.0, 1.5 / 5, -0.5 / 5, -1.1 / 5]])
    torch.testing.assert_close(g, expected)
    # loss: -(1.28·1 + 0.8·-1 + 1.5·-1 + 0.5·1 + 1.1·1) / 5 = -(0.58) / 5
    assert loss.item() == pytest.approx(-0.58 / 5)
    assert metrics["clip_fraction"].item() == pytest.approx(2 / 5)
    assert metrics["approx_kl"].item() > 0


def test_kl_term_is_added():
    logp = torch.tensor([[math.log(0.5), math.log(0.2)]])
    ref = torch.tensor([[math.log(0.25), math.log(0.4)]])
    mask = torch.ones(1, 2)
    norm = Norm.of(mask, 2)
    adv = torch.zeros(1, 1)
    loss, metrics = policy_loss(logp, adv, mask, norm, ref_logp_BT=ref, kl_coef=0.1, kl_estimator="k2")
    # k2 = 0.5·log(2)² on both tokens; loss = 0.1 · that
    assert loss.item() == pytest.approx(0.1 * 0.5 * math.log(2) ** 2)
    assert metrics["kl"].item() == pytest.approx(0.5 * math.log(2) ** 2)


@pytest.mark.parametrize("aggregation", sorted(AGGREGATIONS))
def test_gradient_accumulation_is_exact(aggregation):
    """(d) batch 8 × accumulation 1 == batch 1 × accumulation 8 with one Norm per step."""
    model = tiny_llama()
    torch.manual_seed(2)
    lengths = (3, 9, 5, 12, 2, 7, 12, 4)
    ids, attn, loss_mask = _batch([torch.randint(1, 50, (n,)).tolist() for n in lengths], 12, left=True)
    adv_B1 = torch.randn(8, 1)
    norm = Norm.of(loss_mask, max_tokens=16)

    def step(micro):
        model.zero_grad()
        total = 0.0
        for sl in micro:
            logp_BT, _ = sequence_logprobs(model, ids[sl], attn[sl])
            loss, _ = policy_loss(logp_BT, adv_B1[sl], loss_mask[sl], norm, aggregation=aggregation)
            loss.backward()
            total += loss.item()
        return total, _grads(model)

    full_loss, full_grads = step([slice(0, 8)])
    acc_loss, acc_grads = step([slice(b, b + 1) for b in range(8)])
    assert acc_loss == pytest.approx(full_loss, abs=1e-6)
    for g_full, g_acc in zip(full_grads, acc_grads):
        assert torch.isfinite(g_full).all()
        torch.testing.assert_close(g_acc, g_full, atol=1e-6, rtol=1e-4)
