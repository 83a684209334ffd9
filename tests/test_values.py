"""Value-function math worked by hand: GAE over tokens and turns, the invariant that values at
unsampled positions never change the advantages, the clipped value loss, explained variance,
REINFORCE++ advantages.

Run: OMP_NUM_THREADS=1 python -m pytest -q tests/test_values.py
"""

import math

import pytest
import torch

from rlft.algos.advantages import ADVANTAGES, reinforce_pp, reinforce_pp_baseline
from rlft.algos.losses import Norm, value_loss
from rlft.algos.values import GAE, explained_variance, terminal_rewards, token_gae, turn_gae, turn_ids, whiten


def test_token_gae_hand_worked():
    # mask [0,1,1,1], values [9,.5,.6,.7], reward 1 on the last token, gamma 1, lam .5:
    # t=3: delta = 1 - .7 = .3, A = .3;  t=2: delta = .7 - .6 = .1, A = .1 + .5·.3 = .25
    # t=1: delta = .6 - .5 = .1, A = .1 + .5·.25 = .225;  t=0 is the prompt: 0 (its value 9 unread)
    r = torch.tensor([[0.0, 0, 0, 1]])
    v = torch.tensor([[9.0, 0.5, 0.6, 0.7]])
    m = torch.tensor([[0, 1, 1, 1]])
    adv, ret = token_gae(r, v, m, gamma=1.0, lam=0.5)
    torch.testing.assert_close(adv, torch.tensor([[0.0, 0.225, 0.25, 0.3]]))
    torch.testing.assert_close(ret, torch.tensor([[0.0, 0.725, 0.85, 1.0]]))  # adv + v


def test_token_gae_skips_environment_tokens():
    # two turns, tool output at t=2,3: mask [1,1,0,0,1], values [.2,.4,X,Y,.5], gamma .9, lam 1
    # t=4: A = 1 - .5 = .5;  t=1 bootstraps from t=4 (not t=2): delta = .9·.5 - .4 = .05,
    # A = .05 + .9·.5 = .5 (= .9·1 - .4);  t=0: delta = .9·.4 - .2 = .16, A = .16 + .9·.5 = .61
    r = torch.tensor([[0.0, 0, 0, 0, 1]])
    m = torch.tensor([[1, 1, 0, 0, 1]])
    for x, y in [(0.0, 0.0), (100.0, -7.0)]:
        adv, _ = token_gae(r, torch.tensor([[0.2, 0.4, x, y, 0.5]]), m, gamma=0.9, lam=1.0)
        torch.testing.assert_close(adv, torch.tensor([[0.61, 0.5, 0.0, 0.0, 0.5]]))


def test_turn_gae_hand_worked():
    # turns [t0 t0 - - t1]; turn values = value at each turn's first token: [.2, .5]; rewards [0, 1]
    # gamma .9, lam 1: turn 1: A = 1 - .5 = .5; turn 0: delta = .9·.5 - .2 = .25, A = .25 + .9·.5 = .7
    # every token of a turn gets its turn's advantage; returns = A + V(turn): [.9, .9, 0, 0, 1]
    r = torch.tensor([[0.0, 0, 0, 0, 1]])
    v = torch.tensor([[0.2, 0.4, 3.0, 3.0, 0.5]])  # 0.4 is not a turn start: unread
    m = torch.tensor([[1, 1, 0, 0, 1]])
    adv, ret = turn_gae(r, v, m, gamma=0.9, lam=1.0)
    torch.testing.assert_close(adv, torch.tensor([[0.7, 0.7, 0.0, 0.0, 0.5]]))
    torch.testing.assert_close(ret, torch.tensor([[0.9, 0.9, 0.0, 0.0, 1.0]]))
    turn, n = turn_ids(m)
    assert turn.tolist() == [[0, 0, -1, -1, 1]] and n.tolist() == [2]


@pytest.mark.parametrize("level", sorted(GAE))
def test_values_at_masked_positions_do_not_change_advantages(level):
    torch.manual_seed(0)
    m = (torch.rand(6, 12) > 0.4).long()
    m[:, 0] = 0  # a prompt token
    r = terminal_rewards(torch.rand(6), m) + 0.1 * torch.randn(6, 12) * m
    v = torch.randn(6, 12)
    noisy = torch.where(m.bool(), v, 1e3 * torch.randn(6, 12))
    a1, ret1 = GAE[level](r, v, m, gamma=0.97, lam=0.9)
    a2, ret2 = GAE[level](r, noisy, m, gamma=0.97, lam=0.9)
    torch.testing.assert_close(a1, a2)
    torch.testing.assert_close(ret1, ret2)
    assert (a1[m == 0] == 0).all() and (ret1[m == 0] == 0).all()


def test_gae_lambda_one_is_monte_carlo_and_one_turn_equals_token_level():
    # lam = 1, gamma = 1: A_t = (sum of rewards from t on) - V_t
    m = torch.tensor([[0, 1, 1, 1, 0]])
    r = terminal_rewards(torch.tensor([2.0]), m)
    assert r.tolist() == [[0.0, 0.0, 0.0, 2.0, 0.0]]
    v = torch.tensor([[5.0, 0.1, 0.2, 0.3, 5.0]])
    adv, _ = token_gae(r, v, m, gamma=1.0, lam=1.0)
    torch.testing.assert_close(adv, torch.tensor([[0.0, 1.9, 1.8, 1.7, 0.0]]))
    # a single turn: every token gets 2 - V(first token) = 1.9
    adv_turn, _ = turn_gae(r, v, m, gamma=1.0, lam=1.0)
    torch.testing.assert_close(adv_turn, torch.tensor([[0.0, 1.9, 1.9, 1.9, 0.0]]))


def test_whiten_and_explained_variance():
    m = torch.tensor([[1, 1, 0], [1, 0, 0]])
    w = whiten(torch.tensor([[1.0, 2.0, 50.0], [3.0, 7.0, 7.0]]), m)
    # masked [1, 2, 3]: mean 2, population std sqrt(2/3) -> ±1.2247, 0
    s = math.sqrt(2 / 3)
    torch.testing.assert_close(w, torch.tensor([[-1 / s, 0.0, 0.0], [1 / s, 0.0, 0.0]]))
    # values [1,2,3], returns [1,2,4]: residuals [0,0,1] var 2/9; returns var 14/9 -> 1 - 1/7 = 6/7
    v, ret, mm = torch.tensor([[1.0, 2.0, 3.0]]), torch.tensor([[1.0, 2.0, 4.0]]), torch.ones(1, 3)
    assert explained_variance(v, ret, mm) == pytest.approx(6 / 7)
    assert explained_variance(v, torch.ones(1, 3), mm) == 0.0  # constant returns: nothing to explain


def test_value_loss_hand_worked():
    norm = Norm.of(torch.ones(1, 2), max_tokens=2)  # 2 tokens
    v = torch.tensor([[1.0, 2.0]], requires_grad=True)
    ret, old = torch.tensor([[0.0, 2.5]]), torch.tensor([[0.5, 2.0]])
    # unclipped: .5·((1-0)² + (2-2.5)²) / 2 = .5·(1 + .25) / 2 = .3125
    loss, _ = value_loss(v, ret, torch.ones(1, 2), norm)
    assert loss.item() == pytest.approx(0.3125)
    # clipped, clip .2: tok0 clipped value .5 + .2 = .7, (.7)² = .49 < 1 -> 1; tok1 moved 0 -> .25
    loss, metrics = value_loss(v, ret, torch.ones(1, 2), norm, old_values_BT=old, clip=0.2)
    assert loss.item() == pytest.approx(0.3125)
    assert metrics["value_clip_fraction"].item() == 0.0
    # returns 2 on tok0: unclipped (1-2)² = 1, clipped (.7-2)² = 1.69 wins, and its gradient is 0
    loss, metrics = value_loss(v, torch.tensor([[2.0, 2.0]]), torch.ones(1, 2), norm, old_values_BT=old, clip=0.2)
    assert loss.item() == pytest.approx(0.5 * 1.69 / 2)  # tok1: v = old = ret -> 0
    assert metrics["value_clip_fraction"].item() == pytest.approx(0.5)
    loss.backward()
    assert v.grad[0, 0].item() == 0.0


def test_reinforce_pp_hand_worked():
    R = torch.tensor([[1.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0]])
    # batch mean .75; centred [.25,-.75,-.75,.25,.25,.25,.25,.25]: squares 6·.0625 + 2·.5625 = 1.5,
    # Bessel std sqrt(1.5 / 7) = .46291 -> .25 / .46291 = .54006, -.75 / .46291 = -1.62019
    s = math.sqrt(1.5 / 7) + 1e-6
    expected = torch.tensor([[0.25, -0.75, -0.75, 0.25], [0.25] * 4]) / s
    torch.testing.assert_close(reinforce_pp(R), expected)
    # baseline: group 0 centred ±.5, group 1 zero variance -> 0; batch std sqrt(4·.25 / 7) = .37796
    s = math.sqrt(1.0 / 7) + 1e-6
    torch.testing.assert_close(reinforce_pp_baseline(R), torch.tensor([[0.5, -0.5, -0.5, 0.5], [0.0] * 4]) / s)
    assert {"reinforce_pp", "reinforce_pp_baseline"} <= set(ADVANTAGES)
    # an errored sample is ignored by both statistics
    valid = torch.tensor([[True, True, False, True], [True] * 4])
    a = reinforce_pp(torch.where(valid, R, float("nan")), valid_P_G=valid)
    torch.testing.assert_close(a[valid], reinforce_pp(R[valid].reshape(1, -1))[0])
    assert a[0, 2] == 0
