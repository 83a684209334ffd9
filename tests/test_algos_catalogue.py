"""The 2025-26 catalogue (issue 18): sequence-level ratios (GSPO), CISPO, sampler/learner mismatch
correction (TIS / MIS), DAPO's overlong penalty and mask_truncated. Hand-worked values in the
comments, and the invariants: at ratio 1 every policy loss is REINFORCE; sequence-level with
one-token completions is token-level; a sampler that matches the learner changes nothing.

Run: python -m pytest -q tests/test_algos_catalogue.py
"""

import json
import math

import pytest
import torch

from rlft import train_rl
from rlft.algos.losses import AGGREGATIONS, POLICY_LOSSES, Norm, policy_loss, sequence_ratio
from rlft.algos.mismatch import mismatch_kl, mismatch_weights, resolve
from rlft.algos.overlong import LengthShaping, longest_reply, soft_overlong_penalty
from rlft.config import AlgorithmConfig, ConfigError, SamplingConfig, help_text, load_job
from rlft.data import collate
from rlft.learner import LossSettings, fill_logprobs, make_optimizer, update
from rlft.tasks import arithmetic
from rlft.types import Trajectory

# --- 1. sequence-level ratios (GSPO) and CISPO ----------------------------------------------


def test_sequence_ratio_hand_worked():
    # log-ratios [0.2, -0.4] on the 2 masked tokens (the third is padding, 5.0 ignored):
    # log s = (0.2 - 0.4) / 2 = -0.1 on every token, and each token's gradient is its own logp's
    logp = torch.tensor([[0.2, -0.4, 5.0]], requires_grad=True)
    log_s = sequence_ratio(logp, torch.zeros(1, 3), torch.tensor([[1, 1, 0]]))
    torch.testing.assert_close(log_s[:, :2].detach(), torch.tensor([[-0.1, -0.1]]))
    g, = torch.autograd.grad(log_s[0, 0], logp)
    torch.testing.assert_close(g, torch.tensor([[1.0, 0.0, 0.0]]))


def test_gspo_clips_whole_sequences_hand_worked():
    # seq A: log-ratios [0.3, 0.1], mean 0.2 -> s = e^0.2 = 1.2214 > 1.1 (A = +1): clipped, no gradient.
    # seq B: log-ratios [0.0, 0.1], mean 0.05 -> s = e^0.05 = 1.0513, inside: gradient -s·A per token.
    # seq_mean: loss = (-1.1 + -1.0513) / 2 = -1.0756; d/dlogp on B's tokens = -1.0513 / 2 tokens / 2 seqs.
    logp = torch.tensor([[0.3, 0.1], [0.0, 0.1]], requires_grad=True)
    old, adv, mask = torch.zeros(2, 2), torch.ones(2, 1), torch.ones(2, 2)
    kw = dict(old_logp_BT=old, clip_low=0.1, clip_high=0.1, aggregation="seq_mean")
    loss, m = policy_loss(logp, adv, mask, Norm.of(mask, 2), ratio_level="sequence", **kw)
    g, = torch.autograd.grad(loss, logp)
    s_b = math.exp(0.05)
    assert loss.item() == pytest.approx((-1.1 - s_b) / 2)
    torch.testing.assert_close(g, torch.tensor([[0.0, 0.0], [-s_b / 4, -s_b / 4]]))
    assert m["clip_fraction"].item() == pytest.approx(2 / 4)
    # token level clips 3 of the 4 tokens instead: e^0.3, e^0.1 and e^0.1 are all > 1.1
    _, m_tok = policy_loss(logp, adv, mask, Norm.of(mask, 2), ratio_level="token", **kw)
    assert m_tok["clip_fraction"].item() == pytest.approx(3 / 4)


def test_cispo_keeps_every_tokens_gradient_hand_worked():
    # ratios [1.5, 0.5, 1.1], adv [1, -1, 1], clip 0.2 / 0.28: PPO-clip zeroes the first two tokens.
    # CISPO's weights sg(clip(r)) = [1.28, 0.8, 1.1]; per token -w·A·logp with logp = log r (old = 0):
    # loss = -(1.28·log 1.5 - 0.8·log 0.5 + 1.1·log 1.1) / 3 = -(0.51900 + 0.55452 + 0.10484) / 3 = -0.39279
    # d/dlogp = -w·A / 3 = [-1.28/3, 0.8/3, -1.1/3]: no token loses its gradient.
    ratio = torch.tensor([[1.5, 0.5, 1.1]])
    logp = ratio.log().requires_grad_()
    adv, mask = torch.tensor([[1.0, -1.0, 1.0]]), torch.ones(1, 3)
    loss, m = policy_loss(logp, adv, mask, Norm.of(mask, 3), old_logp_BT=torch.zeros(1, 3),
                          clip_low=0.2, clip_high=0.28, loss="cispo")
    g, = torch.autograd.grad(loss, logp)
    assert loss.item() == pytest.approx(-0.39279, abs=1e-5)
    torch.testing.assert_close(g, torch.tensor([[-1.28 / 3, 0.8 / 3, -1.1 / 3]]))
    assert m["clip_fraction"].item() == pytest.approx(2 / 3)


@pytest.mark.parametrize("aggregation", sorted(AGGREGATIONS))
@pytest.mark.parametrize("ratio_level", ["token", "sequence"])
@pytest.mark.parametrize("loss", sorted(POLICY_LOSSES))
@pytest.mark.parametrize("adv_shape", [(4, 1), (4, 6)])
def test_ratio_one_is_reinforce(aggregation, ratio_level, loss, adv_shape):
    """old_logp = logp.detach(): every ratio level and policy loss has the REINFORCE gradient."""
    torch.manual_seed(0)
    logp = torch.randn(4, 6).requires_grad_()
    adv = torch.randn(*adv_shape)
    mask = (torch.rand(4, 6) > 0.3).long()
    norm = Norm.of(mask, 6)
    g_pg, = torch.autograd.grad(policy_loss(logp, adv, mask, norm, aggregation=aggregation)[0], logp)
    out, m = policy_loss(logp, adv, mask, norm, old_logp_BT=logp.detach(), aggregation=aggregation,
                         ratio_level=ratio_level, loss=loss)
    g, = torch.autograd.grad(out, logp)
    torch.testing.assert_close(g, g_pg)
    assert m["clip_fraction"] == 0


@pytest.mark.parametrize("loss", sorted(POLICY_LOSSES))
def test_sequence_level_with_one_token_completions_is_token_level(loss):
    """Each sequence trains one token (the rest is prompt/padding): sequence ratio == token ratio."""
    torch.manual_seed(1)
    logp = (torch.randn(5, 4) * 0.3).requires_grad_()
    old = logp.detach() + torch.randn(5, 4) * 0.3  # ratios spread across the clip range
    mask = torch.zeros(5, 4)
    mask[torch.arange(5), torch.tensor([0, 3, 1, 2, 3])] = 1
    adv, norm = torch.randn(5, 1), Norm.of(mask, 4)
    kw = dict(old_logp_BT=old, clip_low=0.2, clip_high=0.28, loss=loss)
    a, ma = policy_loss(logp, adv, mask, norm, ratio_level="token", **kw)
    b, mb = policy_loss(logp, adv, mask, norm, ratio_level="sequence", **kw)
    ga, = torch.autograd.grad(a, logp)
    gb, = torch.autograd.grad(b, logp)
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(ga, gb)
    assert ma["clip_fraction"] == mb["clip_fraction"] and 0 < ma["clip_fraction"] < 1


def test_loop_settings_keep_their_defaults():
    # the loops' settings with every field at its default: what train_rl and the distributed loop built by hand
    assert LossSettings.of(AlgorithmConfig(), SamplingConfig()) == LossSettings(
        clip_low=0.2, clip_high=0.28, aggregation="token_mean", kl_coef=0.0, kl_estimator="k3",
        temperature=1.0, max_tokens=256,
    )


def test_ratio_level_and_policy_loss_config():
    text = help_text()
    assert "ratio_level" in text and "policy_loss" in text and "cispo" in text
    with pytest.raises(ConfigError, match="did you mean 'sequence'"):
        load_job(None, ["algorithm.ratio_level=sequense"])
    with pytest.raises(ConfigError, match="valid: ppo_clip, cispo"):
        load_job(None, ["algorithm.policy_loss=cisp"])


def _run(tiny_dir, tmp_path, name, *overrides) -> list[dict]:
    """Two RL steps of the tiny model on 2-digit addition; the metrics rows of the steps."""
    train, _ = arithmetic.make_splits(2, 8, 2, seed=0, forget=0.6)
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(it) + "\n" for it in train))
    train_rl.train(load_job(None, [
        f"model.path={tiny_dir}", f"data.train={tmp_path / 'train.jsonl'}", f"run.out={tmp_path / name}",
        "algorithm.prompts_per_step=2", "algorithm.group_size=4", "sampling.max_new_tokens=4", "optim.lr=1e-2",
        "optim.steps=2", "run.progress=false", "grader.type=regex", "grader.pattern=[0-9]",
        "algorithm.drop_zero_advantage=false", *overrides,
    ]))
    rows = [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if "attempts" in r]


def test_rl_steps_with_gspo_and_cispo(tiny_dir, tmp_path):
    rows = _run(tiny_dir, tmp_path, "gspo", "algorithm.updates_per_batch=2", "algorithm.ratio_level=sequence",
                "algorithm.policy_loss=cispo")
    assert len(rows) == 2 and all(math.isfinite(r["loss"]) and 0 <= r["clip_fraction"] <= 1 for r in rows)


# --- 2. sampler/learner mismatch: TIS and MIS -------------------------------------------------

LEARNER = torch.tensor([[-1.0, -2.0, -0.5]])
SAMPLER = torch.tensor([[-1.5, -2.0, -0.1]])
ONES = torch.ones(1, 3)


def test_tis_token_hand_worked():
    # rho = pi/mu = [e^0.5, e^0, e^-0.4] = [1.6487, 1, 0.6703]; cap 1.5 -> [1.5, 1, 0.6703]
    w, m = mismatch_weights(LEARNER, SAMPLER, ONES, mode="tis", level="token", cap=1.5)
    torch.testing.assert_close(w, torch.tensor([[1.5, 1.0, math.exp(-0.4)]]))
    assert m["mismatch/capped_fraction"] == pytest.approx(1 / 3)
    assert m["mismatch/weight_mean"] == pytest.approx((1.5 + 1 + math.exp(-0.4)) / 3)


def test_mis_token_hand_worked():
    # cap 1.5 keeps rho in [0.6667, 1.5]: 1.6487 is rejected (0), 1 and 0.6703 keep their ratio
    w, m = mismatch_weights(LEARNER, SAMPLER, ONES, mode="mis", level="token", cap=1.5)
    torch.testing.assert_close(w, torch.tensor([[0.0, 1.0, math.exp(-0.4)]]))
    assert m["mismatch/masked_fraction"] == pytest.approx(1 / 3)


def test_sequence_level_hand_worked():
    # seq 0: token log-ratios [0.3, -0.1] -> rho = e^0.2 = 1.2214 on both; seq 1: [0.5, 0.4] -> e^0.9 = 2.4596.
    # The third column is padding: weight 1, not counted. cap 2: tis -> seq 1 capped at 2; mis -> seq 1 rejected.
    learner = torch.tensor([[0.3, -0.1, 9.0], [0.5, 0.4, 9.0]])
    sampler, mask = torch.zeros(2, 3), torch.tensor([[1, 1, 0], [1, 1, 0]])
    r0 = math.exp(0.2)
    w, m = mismatch_weights(learner, sampler, mask, mode="tis", level="sequence", cap=2.0)
    torch.testing.assert_close(w, torch.tensor([[r0, r0, 1.0], [2.0, 2.0, 1.0]]))
    assert m["mismatch/capped_fraction"] == pytest.approx(2 / 4)
    w, m = mismatch_weights(learner, sampler, mask, mode="mis", level="sequence", cap=2.0)
    torch.testing.assert_close(w, torch.tensor([[r0, r0, 1.0], [0.0, 0.0, 1.0]]))
    assert m["mismatch/masked_fraction"] == pytest.approx(2 / 4)


def test_mismatch_kl_hand_worked():
    # k3 of KL(mu || pi), tokens from mu: rho - 1 - log rho with rho = pi/mu
    # = (e^0.5 - 1.5) + 0 + (e^-0.4 - 1 + 0.4) = 0.14872 + 0 + 0.07032
    expected = math.exp(0.5) - 1.5 + math.exp(-0.4) - 0.6
    assert mismatch_kl(LEARNER, SAMPLER, ONES).item() == pytest.approx(expected, rel=1e-5)
    assert mismatch_kl(LEARNER, LEARNER, ONES).item() == 0


def test_auto_is_on_only_when_the_sampler_differs():
    assert resolve("auto", sampler_differs=True) == "tis"
    assert resolve("auto", sampler_differs=False) == "off"
    assert resolve("mis", sampler_differs=False) == "mis" and resolve("off", sampler_differs=True) == "off"
    assert LossSettings.of(AlgorithmConfig(), SamplingConfig()).mismatch == "off"
    assert LossSettings.of(AlgorithmConfig(), SamplingConfig(), sampler_differs=True).mismatch == "tis"


def _step(model_dir, batch, loss):
    from rlft.models import load_model

    model = load_model(model_dir, device=torch.device("cpu"), dtype=torch.float32)
    optim = load_job(None, ["optim.lr=1e-2"]).optim
    optimizer, _ = make_optimizer(model, optim)
    metrics = update(model, optimizer, batch, loss, optim)
    return {k: v.clone() for k, v in model.state_dict().items()}, metrics


def _trajectories():
    torch.manual_seed(3)
    return [Trajectory([1, 5, *torch.randint(3, 40, (n,)).tolist()], [0, 0] + [1] * n, [0.0] * (n + 2))
            for n in (3, 5, 2, 4)]


def test_update_reweights_by_the_mismatch(tiny_dir):
    """In learner.update: a sampler that matches the learner changes nothing; one that does not is
    the same step as advantages premultiplied by the hand-computed weights."""
    from rlft.models import load_model

    model = load_model(tiny_dir, device=torch.device("cpu"), dtype=torch.float32)
    batch = collate(_trajectories(), [1.0, -0.5, 0.7, -1.2], pad_id=0)
    batch.sampler_logp_BT = fill_logprobs(model, batch, 0, 1.0) * batch.loss_mask_BT
    off = LossSettings(max_tokens=8)
    tis = LossSettings(max_tokens=8, mismatch="tis", mismatch_cap=1.5)
    w_off, _ = _step(tiny_dir, batch, off)
    w_same, m = _step(tiny_dir, batch, tis)
    assert all(torch.equal(w_off[k], w_same[k]) for k in w_off)
    assert m["mismatch/kl"] == 0 and m["mismatch/capped_fraction"] == 0 and m["mismatch/weight_mean"] == 1

    sign_T = torch.where(torch.arange(batch.loss_mask_BT.shape[1]) % 2 == 0, 1.0, -1.0)
    batch.sampler_logp_BT = batch.sampler_logp_BT + 0.5 * sign_T * batch.loss_mask_BT  # rho = e^-0.5 or e^0.5 > cap
    learner = fill_logprobs(model, batch, 0, 1.0)
    w_BT, _ = mismatch_weights(learner, batch.sampler_logp_BT, batch.loss_mask_BT, mode="tis", level="token", cap=1.5)
    w_tis, m = _step(tiny_dir, batch, tis)
    assert 0 < m["mismatch/capped_fraction"] < 1 and m["mismatch/kl"] > 0
    batch.adv_BT = batch.adv_BT * w_BT
    w_hand, _ = _step(tiny_dir, batch, off)
    for k in w_tis:
        torch.testing.assert_close(w_tis[k], w_hand[k])


def test_mismatch_config():
    text = help_text()
    assert all(k in text for k in ("mismatch", "mismatch_level", "mismatch_cap"))
    with pytest.raises(ConfigError, match="valid: auto, off, tis, mis"):
        load_job(None, ["algorithm.mismatch=is"])
    with pytest.raises(ConfigError, match="mismatch_cap.*>= 1"):
        load_job(None, ["algorithm.mismatch_cap=0.5"])
    with pytest.raises(ConfigError, match="max_staleness = 1.*fix: mismatch = \"auto\""):
        load_job(None, ["algorithm.mismatch=tis", "distributed.max_staleness=1"])


def test_rl_steps_with_masked_importance_sampling(tiny_dir, tmp_path):
    rows = _run(tiny_dir, tmp_path, "mis", "algorithm.updates_per_batch=2", "algorithm.mismatch=mis",
                "algorithm.mismatch_level=sequence")
    assert len(rows) == 2
    for r in rows:  # the sampler shares the learner's module: nothing to correct, and nothing rejected
        assert math.isfinite(r["loss"]) and r["mismatch/kl"] == pytest.approx(0, abs=1e-6)
        assert r["mismatch/masked_fraction"] == 0 and r["mismatch/weight_mean"] == pytest.approx(1, abs=1e-5)


# --- 4. overlong handling (DAPO) --------------------------------------------------------------


def test_soft_overlong_penalty_hand_worked():
    # max 10, buffer 4: free up to 6 tokens, then -1/4 per token down to -1 at 10
    lengths = torch.tensor([3, 6, 7, 9, 10])
    torch.testing.assert_close(soft_overlong_penalty(lengths, 10, 4, 1.0), torch.tensor([0, 0, -0.25, -0.75, -1.0]))
    torch.testing.assert_close(soft_overlong_penalty(lengths, 10, 4, 0.5), torch.tensor([0, 0, -0.125, -0.375, -0.5]))
    assert soft_overlong_penalty(lengths, 10, 0, 1.0).abs().sum() == 0  # buffer 0: off


def test_length_shaping_of_trajectories():
    # a multi-turn episode is judged by its longest reply (max_new_tokens caps each reply)
    assert longest_reply([0, 1, 1, 0, 1]) == 2 and longest_reply([0, 0]) == 0
    ts = [
        Trajectory([0] * 8, [0, 0] + [1] * 6, [0.0] * 8, stop_reason="eos"),  # 6 tokens: free
        Trajectory([0] * 10, [0, 0] + [1] * 8, [0.0] * 10, stop_reason="length"),  # 8: the limit, -1, cut
        Trajectory([0] * 12, [0, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1], [0.0] * 12, stop_reason="eos"),  # 7: -0.5
    ]
    shaping = LengthShaping(max_tokens=8, buffer=2, penalty=1.0, mask_truncated=True)
    penalty, train, m = shaping(ts)
    torch.testing.assert_close(penalty, torch.tensor([0.0, -1.0, -0.5]))
    assert train.tolist() == [True, False, True]
    assert m == {"overlong/penalty_mean": pytest.approx(-0.5), "overlong/penalised_fraction": pytest.approx(2 / 3),
                 "truncated/masked_fraction": pytest.approx(1 / 3)}
    penalty, train, m = LengthShaping(max_tokens=8)(ts)  # the defaults: nothing changes, nothing logged
    assert penalty.abs().sum() == 0 and train.all() and m == {}


def test_overlong_config():
    text = help_text()
    assert all(k in text for k in ("overlong_buffer", "overlong_penalty", "mask_truncated"))
    with pytest.raises(ConfigError, match=r"overlong_buffer=300.*\(300 tokens\).*max_new_tokens = 256"):
        load_job(None, ["algorithm.overlong_buffer=300"])


def test_rl_steps_with_overlong_handling(tiny_dir, tmp_path):
    rows = _run(tiny_dir, tmp_path, "overlong", "algorithm.overlong_buffer=2")
    assert len(rows) == 2
    for r in rows:  # a cut attempt (4 tokens, the limit) gets the whole penalty; the logged reward is the grader's
        assert -1 <= r["overlong/penalty_mean"] <= -r["stop/length"] + 1e-6 and 0 <= r["reward_mean"] <= 1
    # stop strings end some attempts before the limit (stop reason "stop"); the rest are cut ("length")
    for r in _run(tiny_dir, tmp_path, "masked", "algorithm.mask_truncated=true", 'sampling.stop=["3", "5", "7"]'):
        # every attempt cut at max_new_tokens leaves the update; the others are all trained on
        assert r["truncated/masked_fraction"] == pytest.approx(r["stop/length"]) and 0 < r["stop/length"] < 1
        assert r["kept_sequences"] == pytest.approx(r["attempts"] * (1 - r["truncated/masked_fraction"]))
