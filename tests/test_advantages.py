"""Advantages on hand-worked inputs, NaN-safety and the valid mask.

Run: python -m pytest -q tests/test_advantages.py
"""

import math

import pytest
import torch

from rlft.algos.advantages import ADVANTAGES, dr_grpo, expert_iteration, grpo, group_stats, reinforce, rloo

R = torch.tensor([[1.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0]])


def test_grpo_hand_worked():
    # group 0: mean 0.5, Bessel std = sqrt((4 · 0.25) / 3) = sqrt(1/3) = 0.57735
    # -> ±0.5 / 0.57735 = ±0.866025; group 1 has zero variance -> 0.
    a = 0.5 / (math.sqrt(1 / 3) + 1e-6)
    expected = torch.tensor([[a, -a, -a, a], [0.0, 0.0, 0.0, 0.0]])
    torch.testing.assert_close(grpo(R), expected)
    # matches torch.std's Bessel correction
    r = R[0]
    torch.testing.assert_close(grpo(R)[0], (r - r.mean()) / (r.std() + 1e-6))


def test_dr_grpo_hand_worked():
    # r - mean: group 0 mean 0.5 -> ±0.5; group 1 -> 0
    expected = torch.tensor([[0.5, -0.5, -0.5, 0.5], [0.0, 0.0, 0.0, 0.0]])
    torch.testing.assert_close(dr_grpo(R), expected)


def test_rloo_hand_worked():
    # r_0 = 1, others [0, 0, 1] mean 1/3 -> 2/3; r_1 = 0, others [1, 0, 1] mean 2/3 -> -2/3
    expected = torch.tensor([[2 / 3, -2 / 3, -2 / 3, 2 / 3], [0.0, 0.0, 0.0, 0.0]])
    torch.testing.assert_close(rloo(R), expected)


def test_rloo_is_scaled_dr_grpo():
    torch.manual_seed(0)
    r = torch.rand(5, 6)
    torch.testing.assert_close(rloo(r), 6 / 5 * dr_grpo(r))


def test_reinforce_hand_worked():
    # batch mean of [1,0,0,1,1,1,1,1] = 6/8 = 0.75
    expected = R - 0.75
    torch.testing.assert_close(reinforce(R), expected)


def test_expert_iteration_hand_worked():
    r = torch.tensor([[1.0, 0.99, 0.0, 2.0]])
    torch.testing.assert_close(expert_iteration(r), torch.tensor([[1.0, 0.0, 0.0, 1.0]]))


@pytest.mark.parametrize("name", sorted(ADVANTAGES))
def test_nan_safe(name):
    fn = ADVANTAGES[name]
    # G = 1: no group statistics possible
    assert torch.isfinite(fn(torch.tensor([[1.0], [0.0]]))).all()
    # zero variance with a non-representable value: 0.1 three times must give exactly 0
    zero_var = torch.tensor([[0.1, 0.1, 0.1]])
    if name != "expert_iteration":
        assert (fn(zero_var) == 0).all()
    # an all-invalid group, with NaN rewards where the grader errored
    r = torch.tensor([[float("nan"), float("nan")], [1.0, 0.0]])
    valid = torch.tensor([[False, False], [True, True]])
    adv = fn(r, valid_P_G=valid)
    assert torch.isfinite(adv).all()
    assert (adv[0] == 0).all()


@pytest.mark.parametrize("name", ["grpo", "dr_grpo", "rloo"])
def test_group_with_one_valid_sample_gets_zero(name):
    r = torch.tensor([[1.0, 0.0, 0.0]])
    valid = torch.tensor([[True, False, False]])
    assert (ADVANTAGES[name](r, valid_P_G=valid) == 0).all()


def test_valid_mask_excludes_errored():
    # group [1, 0, (errored 5), 0]: valid mean 1/3; the 5 must not move it; errored gets 0
    r = torch.tensor([[1.0, 0.0, 5.0, 0.0]])
    valid = torch.tensor([[True, True, False, True]])
    torch.testing.assert_close(
        dr_grpo(r, valid_P_G=valid), torch.tensor([[2 / 3, -1 / 3, 0.0, -1 / 3]])
    )
    # rloo: r_0 = 1 - mean(0, 0) = 1; r_1 = 0 - mean(1, 0) = -0.5
    torch.testing.assert_close(rloo(r, valid_P_G=valid), torch.tensor([[1.0, -0.5, 0.0, -0.5]]))
    # grpo equals grpo on the valid entries alone
    torch.testing.assert_close(grpo(r, valid_P_G=valid)[valid], grpo(torch.tensor([[1.0, 0.0, 0.0]]))[0])
    torch.testing.assert_close(reinforce(r, valid_P_G=valid), torch.tensor([[2 / 3, -1 / 3, 0.0, -1 / 3]]))
    assert expert_iteration(torch.tensor([[1.0, 1.0]]), valid_P_G=torch.tensor([[True, False]])).tolist() == [[1.0, 0.0]]


def test_group_stats():
    r = torch.tensor([[1.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 7.0]])
    valid = torch.tensor([[True, True, True, True], [True, True, True, False]])
    s = group_stats(r, valid)
    # valid rewards [1,0,0,1,1,1,1]: mean 5/7; group 1's valid rewards are all 1
    assert s["reward_mean"] == pytest.approx(5 / 7)
    assert s["reward_std"] == pytest.approx(torch.tensor([1.0, 0, 0, 1, 1, 1, 1]).std().item())
    assert s["zero_variance_groups"] == 1
    assert s["errored"] == 1
