"""Small pure pieces between the algorithms and the loops: collate, pass@k, data order,
grading errors.

Run: python -m pytest -q tests/test_pieces.py
"""

import math

import pytest

from rlft.data import collate
from rlft.eval import pass_at_k, score
from rlft.rollout.runner import grade, run_groups
from rlft.rollout.sampler import Completion
from rlft.run import item_order
from rlft.types import Trajectory


def test_collate_mask_is_sampled_mask_only_and_prefixes_are_shared():
    # prompt 3 tokens (mask 0), 2 sampled, 1 tool-output token (mask 0), 1 sampled
    a = Trajectory([1, 2, 3, 4, 5, 6, 7], [0, 0, 0, 1, 1, 0, 1], [0, 0, 0, -0.5, -0.1, 0, -0.2])
    b = Trajectory([8, 9], [0, 1], [0.0, -1.0])
    c = Trajectory([1, 2, 3, 5], [0, 0, 0, 1], [0, 0, 0, -0.3])  # same prompt as a
    batch = collate([a, b, c], [0.5, -2.0, 1.0], pad_id=0)
    # prefixes stored once, left-padded; rows point at them
    assert batch.prefix_ids_PT.tolist() == [[1, 2, 3], [0, 0, 8]]
    assert batch.prefix_mask_PT.tolist() == [[1, 1, 1], [0, 0, 1]]
    assert batch.row_B.tolist() == [0, 1, 0]
    # continuations right-padded; the loss mask is their sampled_mask, padding 0
    assert batch.input_ids_BT.tolist() == [[4, 5, 6, 7], [9, 0, 0, 0], [5, 0, 0, 0]]
    assert batch.loss_mask_BT.tolist() == [[1, 1, 0, 1], [1, 0, 0, 0], [1, 0, 0, 0]]
    assert batch.attention_mask_BT.tolist() == [[1, 1, 1, 1], [1, 0, 0, 0], [1, 0, 0, 0]]
    assert batch.adv_BT.tolist() == [[0.5], [-2.0], [1.0]]
    assert batch.sampler_logp_BT[0, 0].item() == pytest.approx(-0.5)
    # a slice keeps only the prefixes its rows use
    tail = batch.slice(1, 2)
    assert tail.prefix_ids_PT.tolist() == [[0, 0, 8]] and tail.row_B.tolist() == [0]


def test_pass_at_k_by_hand():
    # n=4 attempts, c=1 passes: pass@1 = 1/4; pass@2 = 1 - C(3,2)/C(4,2) = 1 - 3/6 = 0.5
    assert pass_at_k(4, 1, 1) == pytest.approx(0.25)
    assert pass_at_k(4, 1, 2) == pytest.approx(0.5)
    assert pass_at_k(4, 0, 4) == 0.0 and pass_at_k(4, 3, 2) == 1.0
    # two prompts: rewards [1,0] and [0,0] -> pass@1 = (0.5 + 0)/2, pass@2 = (1 + 0)/2,
    # pass^2 (both attempts pass) = (C(1,2)/C(2,2) + 0)/2 = 0
    m = score([[1.0, 0.0], [0.0, 0.0]], k=2)
    assert m == {"mean_reward": 0.25, "pass@1": 0.25, "pass@2": 0.5, "pass^2": 0.0}


def test_item_order_is_a_permutation_per_epoch_and_pure():
    n = 7
    for epoch in range(3):
        seen = [item_order(n, 5, epoch * n + i) for i in range(n)]
        assert sorted(seen) == list(range(n))
    assert [item_order(n, 5, i) for i in range(20)] == [item_order(n, 5, i) for i in range(20)]
    assert [item_order(n, 5, i) for i in range(n)] != [item_order(n, 6, i) for i in range(n)]


def test_grader_errors_mark_the_attempt_not_zero_it():
    def broken(sample, item):
        raise RuntimeError("judge offline")

    reward, error = grade(broken, "42", {})
    assert error == "RuntimeError: judge offline"
    assert grade(lambda s, i: float("nan"), "42", {})[1] == "grader returned nan"
    assert grade(lambda s, i: s.output_text == i["answer"], "42", {"answer": "42"}) == (1.0, None)


class FixedSampler:
    version = 3

    def generate(self, prompts, n, params, generator):
        return [[Completion([7, 8], [-0.1, -0.2], str(i), "eos") for i in range(n)] for _ in prompts]


def test_run_groups_builds_masked_trajectories():
    def grader(sample, item):
        if sample.output_text == "1":
            raise ValueError("bad")
        return float(sample.output_text == item["answer"])

    groups, times = run_groups(FixedSampler(), [{"answer": "0"}], [[1, 2, 3]], grader, 3, None, None)
    (g,) = groups
    t0, t1, t2 = g.trajectories_G
    assert t0.tokens_T == [1, 2, 3, 7, 8] and t0.sampled_mask_T == [0, 0, 0, 1, 1]
    assert t0.sampler_logp_T == [0, 0, 0, -0.1, -0.2] and t0.reward == 1.0
    assert t1.errored and t1.metadata["error"] == "ValueError: bad"
    assert not t2.errored and t2.reward == 0.0 and t2.metadata["version"] == 3
    assert set(times) == {"time/sample", "time/reward"} and all(math.isfinite(v) for v in times.values())


def test_lr_schedules_by_hand():
    from rlft.config import OptimConfig
    from rlft.learner import lr_multiplier

    cfg = OptimConfig(steps=12, warmup_steps=2, schedule="linear")
    # warmup: 1/2, 2/2; then 1 - (s - 2) / 10
    assert [lr_multiplier(s, cfg) for s in (0, 1, 2, 7, 12)] == [0.5, 1.0, 1.0, 0.5, 0.0]
    cfg = OptimConfig(steps=10, warmup_steps=0, schedule="cosine")
    assert lr_multiplier(5, cfg) == pytest.approx(0.5) and lr_multiplier(10, cfg) == pytest.approx(0.0)
    assert lr_multiplier(7, OptimConfig(steps=10)) == 1.0
