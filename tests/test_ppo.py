"""PPO with a value head on the tiny model: values aligned like log-probs, the head in the
optimizer, checkpoints and a bitwise resume, the final folder, every method of the
imitation-to-RL axis from one job.

Run: OMP_NUM_THREADS=1 python -m pytest -q tests/test_ppo.py
"""

import json

import pytest
import torch
from safetensors.torch import load_file

from rlft import checkpoint, methods
from rlft.config import load_job
from rlft.critic import ValueCritic
from rlft.data import collate
from rlft.learner import make_optimizer
from rlft.models import VALUE_HEAD_FILE
from rlft.tasks import arithmetic
from rlft.types import Trajectory


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("data")
    train, held_out = arithmetic.make_splits(2, 24, 4, seed=0, forget=0.6)
    (d / "train.jsonl").write_text("".join(json.dumps(it) + "\n" for it in train))
    (d / "eval.jsonl").write_text("".join(json.dumps(it) + "\n" for it in held_out))
    return d


def job(data_dir, tiny_dir, out, *overrides):
    return load_job(None, [
        f"model.path={tiny_dir}", f"data.train={data_dir / 'train.jsonl'}", f"data.eval={data_dir / 'eval.jsonl'}",
        "algorithm.name=ppo", "algorithm.prompts_per_step=2", "algorithm.group_size=4", "sampling.max_new_tokens=4",
        "sampling.temperature=1.5", "grader.type=regex", "grader.pattern=[0-9]", "optim.lr=1e-2", "optim.steps=4",
        "optim.batch_size=4", "eval.size=2", "run.progress=false", f"run.out={out}", *overrides,
    ])


def test_values_are_aligned_like_logprobs(tiny, tiny_dir, tmp_path, data_dir):
    # the value of continuation token j is V(hidden state that predicts it), as in one full pass
    model, tokenizer = tiny
    critic = ValueCritic(job(data_dir, tiny_dir, tmp_path), model, str(tiny_dir))
    torch.manual_seed(0)
    torch.nn.init.normal_(critic.head.linear.weight)
    seqs = [[5, 6, 7, 8, 9], [5, 6, 7, 10], [11, 12, 13, 14, 15, 16]]
    masks = [[0, 0, 1, 1, 1], [0, 0, 1, 1], [0, 1, 1, 0, 1, 1]]  # row 3: an env token inside
    trajs = [Trajectory(s, m, [0.0] * len(s)) for s, m in zip(seqs, masks)]
    batch = collate(trajs, [0.0] * 3, tokenizer.pad_token_id)
    critic.prepare(model, batch, torch.tensor([1.0, 0.0, 1.0]))
    for b, (s, m) in enumerate(zip(seqs, masks)):
        with critic.watch(model) as hidden:
            model(input_ids=torch.tensor([s]))
        full_T = critic.head(hidden[0])[0]
        n = m.index(1)  # the prefix length collate used
        expected = full_T[n - 1 : len(s) - 1]  # position t - 1 predicts token t
        torch.testing.assert_close(batch.values_BT[b, : len(s) - n], expected, atol=1e-5, rtol=1e-5)
    # advantages are per token, 0 off the loss mask, and the returns are the value targets
    assert batch.adv_BT.shape == batch.loss_mask_BT.shape
    assert (batch.adv_BT[batch.loss_mask_BT == 0] == 0).all()
    assert (batch.returns_BT[batch.loss_mask_BT == 0] == 0).all()


def test_value_head_has_its_own_learning_rate(tiny, tiny_dir, tmp_path, data_dir):
    model, _ = tiny
    j = job(data_dir, tiny_dir, tmp_path, "algorithm.value_lr=0.5")
    critic = ValueCritic(j, model, str(tiny_dir))
    optimizer, _ = make_optimizer(model, j.optim, critic.lrs)
    lrs = [g["lr"] for g in optimizer.param_groups]
    assert lrs == [1e-2, 0.5]
    assert {id(p) for p in optimizer.param_groups[1]["params"]} == {id(p) for p in critic.head.parameters()}
    n_params = sum(len(g["params"]) for g in optimizer.param_groups)
    assert n_params == len([p for p in model.parameters() if p.requires_grad])


def test_ppo_resume_is_bitwise_and_keeps_the_value_head(data_dir, tiny_dir, tmp_path):
    every = ["run.checkpoint_every=2", "algorithm.updates_per_batch=2"]
    methods.train(job(data_dir, tiny_dir, tmp_path / "whole", *every))
    methods.train(job(data_dir, tiny_dir, tmp_path / "split", "optim.steps=2", *every))
    ckpt = checkpoint.latest(tmp_path / "split")
    saved = load_file(str(ckpt / "model.safetensors"))
    assert {"value_head.linear.weight", "value_head.linear.bias"} <= set(saved)
    groups = torch.load(ckpt / "optim.pt", weights_only=True)["optimizer"]["param_groups"]
    assert len(groups) == 2 and groups[1]["lr"] == pytest.approx(1e-3)  # the head's group, value_lr
    methods.train(job(data_dir, tiny_dir, tmp_path / "split", *every))
    for name in ("model.safetensors", VALUE_HEAD_FILE):
        a = load_file(str(tmp_path / "whole" / "final" / name))
        b = load_file(str(tmp_path / "split" / "final" / name))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    head = load_file(str(tmp_path / "whole" / "final" / VALUE_HEAD_FILE))
    assert head["linear.weight"].abs().sum() > 0, "the value head trained"
    # the policy's final folder holds no value-head weights: it loads as a plain causal LM
    policy = load_file(str(tmp_path / "whole" / "final" / "model.safetensors"))
    assert not any(k.startswith("value_head") for k in policy)
    rows = [json.loads(line) for line in (tmp_path / "whole" / "metrics.jsonl").read_text().splitlines()]
    train_rows = [r for r in rows if "value_loss" in r]
    assert len(train_rows) == 4 and all("explained_variance" in r for r in train_rows)
    assert all(torch.isfinite(torch.tensor(v)).item() for r in rows for v in r.values())


@pytest.mark.parametrize("overrides", [
    ["algorithm.name=sft"],
    ["algorithm.name=expert_iteration"],
    ["algorithm.name=reinforce_pp"],
    ["algorithm.gae_level=turn", "algorithm.value_clip=0", "optim.micro_batch_size=3"],
    ["model.lora={ rank = 4, alpha = 8 }"],
], ids=lambda o: " ".join(o))
def test_every_method_runs_from_one_job(data_dir, tiny_dir, tmp_path, overrides):
    summary = methods.train(job(data_dir, tiny_dir, tmp_path / "r", "optim.steps=2", *overrides))
    assert 0 <= summary["eval/pass@1"] <= 1
    assert summary["kind"] == ("sft" if "algorithm.name=sft" in overrides else "rl")


def test_unknown_method_lists_the_valid_ones(data_dir, tiny_dir, tmp_path):
    from rlft.config import ConfigError

    with pytest.raises(ConfigError, match="did you mean .ppo.*expert_iteration.*ppo, sft"):
        job(data_dir, tiny_dir, tmp_path, "algorithm.name=ppp")
    with pytest.raises(ConfigError, match="gae_level.*valid: token, turn"):
        job(data_dir, tiny_dir, tmp_path, "algorithm.gae_level=episode")


def test_checkpoint_from_before_the_value_settings_still_resumes(data_dir, tiny_dir, tmp_path, monkeypatch):
    # a checkpoint written before algorithm.value_* existed lacks those keys: they count as defaults
    from rlft import run as run_mod

    j = job(data_dir, tiny_dir, tmp_path, "algorithm.name=grpo")
    old = {k: v for k, v in run_mod.fingerprint(j).items() if not k.startswith(("algorithm.value", "algorithm.gae", "algorithm.gamma"))}
    monkeypatch.setattr(run_mod.checkpoint, "latest", lambda out: tmp_path / "step_2")
    monkeypatch.setattr(run_mod.checkpoint, "read_state", lambda path: {"step": 2, "fingerprint": old})
    assert run_mod.check_resume(j, tmp_path)[0] == tmp_path / "step_2"
    from rlft.config import ConfigError

    with pytest.raises(ConfigError, match=r"algorithm.value_coef: 0.1 -> 0.5"):
        run_mod.check_resume(job(data_dir, tiny_dir, tmp_path, "algorithm.name=grpo", "algorithm.value_coef=0.5"), tmp_path)
