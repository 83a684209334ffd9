"""Reward models (RLHF): the Bradley–Terry loss by hand, a tiny reward model that learns an easy
preference in seconds, pair validation with file:line errors, the reward_model grader, and
gold-grader monitors in a 2-step RL run.

Run: OMP_NUM_THREADS=1 python -m pytest -q tests/test_reward_model.py
"""

import json
import math
import pickle
import random

import pytest
import torch

from rlft import train_rl
from rlft.config import ConfigError, GraderConfig, load_job
from rlft.data import DataError
from rlft.models import load_tokenizer
from rlft.rewards import reward_model as rm
from rlft.rewards.graders import make_grader
from rlft.rewards.monitor import annotate
from rlft.rewards.reward_model_job import RewardModelConfig, load_config
from rlft.tasks import arithmetic
from rlft.tasks.preferences import arithmetic_pairs
from rlft.types import Group, Sample, Trajectory


def test_bt_loss_against_values_by_hand():
    # margins 0 and ln 3: -log σ(0) = ln 2 = 0.693147; σ(ln 3) = 3/4, -log(3/4) = 0.287682; mean 0.490415
    loss, m = rm.bt_loss(torch.tensor([1.0, math.log(3) + 2.0]), torch.tensor([1.0, 2.0]))
    assert loss.item() == pytest.approx((math.log(2) - math.log(0.75)) / 2, abs=1e-6)
    assert m["accuracy"] == pytest.approx(0.75)  # one tie (1/2) and one right (1)
    assert m["margin"] == pytest.approx(math.log(3) / 2)
    # a wrong-way pair: margin -2 -> -log σ(-2) = log(1 + e^2) = 2.126928
    loss, m = rm.bt_loss(torch.tensor([0.0]), torch.tensor([2.0]))
    assert loss.item() == pytest.approx(math.log(1 + math.e**2), abs=1e-6) and m["accuracy"] == 0.0
    # and its gradient pushes the chosen score up by σ(-margin): d/dr_c = -(1 - σ(m)) = -σ(-m)
    r_c = torch.tensor([0.5], requires_grad=True)
    rm.bt_loss(r_c, torch.tensor([0.0]))[0].backward()
    assert r_c.grad.item() == pytest.approx(-1 / (1 + math.exp(0.5)), abs=1e-6)


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def easy_pairs(n, seed):
    """Chosen says the sum, rejected says nothing useful: a preference visible in one token."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        a, b = rng.randint(10, 99), rng.randint(10, 99)
        rows.append({"prompt": f"{a}+{b}=", "chosen": f"answer {a + b}", "rejected": "the quick brown fox"})
    return rows


@pytest.fixture(scope="module")
def trained_rm(tiny_dir, tmp_path_factory):
    d = tmp_path_factory.mktemp("rm")
    pairs = _write(d / "pairs.jsonl", easy_pairs(96, 0))
    cfg = RewardModelConfig(pairs=str(pairs), base=str(tiny_dir), out=str(d / "rm"), epochs=3, batch_size=16,
                            lr=3e-3, progress=False, eval_fraction=0.25)
    return rm.train(cfg), d


def test_tiny_reward_model_beats_chance_in_seconds(trained_rm):
    results, d = trained_rm
    assert results["pairs_train"] == 72 and results["pairs_eval"] == 24
    assert results["eval_accuracy"] >= 0.9, results
    assert results["seconds"] < 60
    saved = json.loads((d / "rm" / "reward_model.json").read_text())
    assert saved["eval_accuracy"] == results["eval_accuracy"]
    assert (d / "rm" / "config.json").exists() and (d / "rm" / "tokenizer.json").exists()
    metrics = [json.loads(line) for line in (d / "rm" / "metrics.jsonl").read_text().splitlines()]
    assert "eval/accuracy" in metrics[-1] and "loss" in metrics[0]


def test_reward_model_grader_scores(trained_rm):
    _, d = trained_rm
    grader = make_grader(GraderConfig(type="reward_model", model="rm"), d)
    item = {"prompt": "12+30=", "answer": "42"}
    good, bad = Sample("answer 42"), Sample("the quick brown fox")
    assert grader(good, item) > grader(bad, item)
    group = grader.grade_group([good, bad, good], [item] * 3)
    assert group[0] == pytest.approx(group[2], abs=1e-5) and group[0] > group[1]  # batched = one at a time
    assert group[0] == pytest.approx(grader(good, item), abs=1e-4)
    again = pickle.loads(pickle.dumps(grader))  # for environment actors in other processes
    assert again(good, item) == pytest.approx(grader(good, item), abs=1e-5)
    # a missing prompt field is an error for that attempt, naming the field
    assert isinstance(grader.grade_group([good], [{"question": "x"}])[0], KeyError)


def test_reward_model_grader_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="model is empty"):
        make_grader(GraderConfig(type="reward_model"), tmp_path)
    with pytest.raises(ConfigError, match="no model at .*fix"):
        make_grader(GraderConfig(type="reward_model", model="nowhere"), tmp_path)


def test_bad_pair_rows_give_file_and_line(tiny_dir, tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text(
        '{"prompt": "1+1=", "chosen": "answer 2", "rejected": "answer 3"}\n'
        '{"prompt": "1+2=", "chosen": "answer 3"}\n'
        '{"prompt": "1+3=", "chosen": "", "rejected": "answer 5"}\n'
        '{"prompt": "1+4=", "chosen": "answer 5", "rejected": "answer 5"}\n'
        '{"prompt": "1+5=", "chosen": "answer 6", "rejected": "answer 7"\n'
    )
    tokenizer = load_tokenizer(tiny_dir)
    cfg = RewardModelConfig(pairs=str(path))
    with pytest.raises(DataError) as e:
        rm.load_pairs(cfg, str(path), tokenizer, ".")
    msg = str(e.value)
    assert f"{path}:2: missing required field 'rejected'" in msg
    assert f"{path}:3: 'chosen' is empty" in msg
    assert f"{path}:5: bad JSON" in msg
    good = _write(tmp_path / "same.jsonl", [{"prompt": "1+4=", "chosen": "answer 5", "rejected": "answer 5"}])
    with pytest.raises(DataError, match=r"same.jsonl:1: chosen and rejected are the same text"):
        rm.load_pairs(cfg, str(good), tokenizer, ".")
    long = _write(tmp_path / "long.jsonl", [{"prompt": "1+1=", "chosen": "answer 2 " * 40, "rejected": "no"}])
    with pytest.raises(DataError, match=r"long.jsonl:1: prompt \+ reply is \d+ tokens, over max_length = 16"):
        rm.load_pairs(RewardModelConfig(max_length=16), str(long), tokenizer, ".")


def test_config_from_cli_and_job_file(tmp_path):
    cfg, base = load_config("pairs.jsonl", ["epochs=3", "reward_model.lr=1e-3", "out=runs/x"])
    assert (cfg.pairs, cfg.epochs, cfg.lr, cfg.out) == ("pairs.jsonl", 3, 1e-3, "runs/x")
    job = tmp_path / "rm.toml"
    job.write_text('[reward_model]\npairs = "p.jsonl"\nbatch_size = 8\n')
    cfg, base = load_config(str(job))
    assert cfg.batch_size == 8 and base == str(tmp_path)
    with pytest.raises(ConfigError, match="unknown key; did you mean 'epochs'"):
        load_config("p.jsonl", ["epoch=2"])
    with pytest.raises(ConfigError, match=r"override eval_fraction=1.5: must be in \[0, 1\)"):
        load_config(str(job), ["eval_fraction=1.5"])
    with pytest.raises(ConfigError, match="lr=fast: expected float, got str 'fast'"):
        load_config("p.jsonl", ["lr=fast"])


def test_preference_pairs_from_the_quickstart_task():
    rows = arithmetic_pairs(50, seed=1)
    for r in rows:
        assert arithmetic.final_answer(r["chosen"]) == r["answer"] != arithmetic.final_answer(r["rejected"])
    assert len({r["prompt"] for r in rows}) > 40


def test_monitor_metrics_and_samples():
    gold = make_grader(GraderConfig(type="numeric", reference="answer"))
    t = [Trajectory([1], [1], [0.0], text=s) for s in ("answer 5", "answer 6", "answer 5")]
    metrics = annotate({"gold": gold, "broken": lambda s, i: 1 / 0}, [Group(t, {"answer": "5"})])
    assert metrics["gold/mean"] == pytest.approx(2 / 3) and metrics["gold/pass_rate"] == pytest.approx(2 / 3)
    assert metrics["broken/errored"] == 3.0 and "broken/mean" not in metrics  # a monitor can't stop a run
    assert t[1].metadata["monitor"] == {"gold": 0.0, "broken": None}


def test_gold_metrics_in_a_two_step_rl_run(trained_rm, tiny_dir, tmp_path):
    _, d = trained_rm
    train, held_out = arithmetic.make_splits(2, 16, 4, seed=0, forget=0.6)
    _write(tmp_path / "train.jsonl", train)
    _write(tmp_path / "eval.jsonl", held_out)
    job = tmp_path / "job.toml"
    job.write_text(f"""
[model]
path = "{tiny_dir}"
[data]
train = "train.jsonl"
eval = "eval.jsonl"
[grader]
type = "reward_model"
model = "{d / 'rm'}"
[grader.monitor.gold]
type = "numeric"
reference = "answer"
[algorithm]
prompts_per_step = 2
group_size = 4
[sampling]
max_new_tokens = 6
[optim]
steps = 2
lr = 1e-3
[run]
out = "run"
progress = false
""")
    summary = train_rl.train(load_job(job))
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "reward_mean" in r]
    assert len(steps) == 2 and all("gold/mean" in r and "gold/pass_rate" in r for r in steps)
    assert all(r["errored"] == 0 for r in steps if "errored" in r)
    assert "eval/gold/mean" in summary and "eval/gold/pass_rate" in summary
    samples = [json.loads(line) for line in (tmp_path / "run" / "samples.jsonl").read_text().splitlines()]
    assert samples and all(set(s["monitor"]) == {"gold"} for s in samples)
    with pytest.raises(ConfigError, match=r"monitor.gold.type.*unknown grader type"):
        load_job(job, ["grader.monitor.gold.type=nope"])
