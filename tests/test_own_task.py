"""A user's own task, from the docs alone (issue 16): the no-signal warning, per-item eval
rows, eval that never writes into a training run's logs, greedy pass@k refused, "did you mean"
for other trainers' key names, and `rlft world check` on one stream.

Run: python -m pytest -q tests/test_own_task.py     (seconds on 2 cores)
"""

import json

import pytest
import torch

from rlft import train_rl
from rlft.algos.advantages import ADVANTAGES
from rlft.cli import eval_out, main
from rlft.config import ConfigError, job_to_toml, load_job
from rlft.eval import PROMPT_CHARS, item_row
from rlft.progress import Progress, no_signal_warning, signal_counts
from rlft.tasks import arithmetic
from rlft.track import Tracker
from rlft.types import Group, Trajectory


# --- the no-signal warning -------------------------------------------------------------------


def test_no_signal_warning_worked_by_hand():
    # (groups without signal, of them all passed, groups) per step
    # 4+3+4 = 11 of 12 groups without signal >= 0.75 * 12 = 9; of them 1 all passed, 10 failed alike:
    # 4 * 10 >= 11 names the all-fail fix, 4 * 1 < 11 does not name the all-pass one
    w = no_signal_warning([(4, 0, 4), (3, 1, 4), (4, 0, 4)])
    assert "11 of 12 groups over the last 3 steps" in w and "(10 failed alike, 1 all passed)" in w
    assert "start from an SFT model" in w and "partial credit" in w and "memorised" not in w
    # 2+3+4 = 9 of 12, exactly the threshold, all passed: only the all-pass fix
    w = no_signal_warning([(2, 2, 4), (3, 3, 4), (4, 4, 4)])
    assert "memorised" in w and "SFT" not in w
    # 2+3+3 = 8 of 12 < 9: enough signal
    assert no_signal_warning([(2, 0, 4), (3, 1, 4), (3, 2, 4)]) == ""
    # 8 of 8, 2 all passed and 6 all failed: 4 * 2 >= 8 and 4 * 6 >= 8 name both fixes
    both = no_signal_warning([(4, 1, 4), (4, 1, 4)], min_steps=1)
    assert "SFT" in both and "memorised" in both
    assert no_signal_warning([(4, 0, 4)]) == "" and no_signal_warning([(4, 0, 4)], min_steps=1) != ""  # too few steps
    assert no_signal_warning([]) == "" and no_signal_warning([(0, 0, 0)], min_steps=1) == ""


def test_signal_metrics_count_groups_that_train_nothing():
    # GRPO advantages of group 0: 1 1 1 (all passed); 1: 0 0 0 (all failed); 2: 1 0 1 (signal);
    # 3: 1 1 + an errored attempt (the valid ones all passed); 4: all errored (no signal, not passed)
    rewards = torch.tensor([[1, 1, 1], [0, 0, 0], [1, 0, 1], [1, 1, 0], [0, 0, 0]], dtype=torch.float)
    valid = ~torch.tensor([[False] * 3] * 3 + [[False, False, True], [True] * 3])
    grpo = ADVANTAGES["grpo"](rewards, valid_P_G=valid)
    metrics = train_rl.signal_metrics(rewards, valid, grpo)
    assert metrics == {"no_signal_groups": 4.0, "no_signal_all_pass": 2.0, "groups": 5.0}
    assert signal_counts(metrics) == (4, 2, 5) and signal_counts({"loss": 1.0}) is None  # an SFT step: none
    # expert iteration trains on every accepted attempt: the groups that all passed carry signal
    ei = ADVANTAGES["expert_iteration"](rewards, valid_P_G=valid)
    assert train_rl.signal_metrics(rewards, valid, ei) == {"no_signal_groups": 2.0, "no_signal_all_pass": 0.0,
                                                           "groups": 5.0}


def test_progress_line_shows_the_warning_after_three_steps_without_signal():
    bar = Progress(10, "grpo", enabled=False)
    no_signal = {"no_signal_groups": 4.0, "no_signal_all_pass": 0.0, "groups": 4.0}
    for step in (1, 2):
        bar.update(step, no_signal)
        assert bar.warning == ""
    bar.update(3, no_signal)
    assert bar.warning.startswith("no learning signal: 12 of 12 groups")
    for step in range(4, 14):  # the window moves on: ten steps with signal clear it
        bar.update(step, {"no_signal_groups": 0.0, "no_signal_all_pass": 0.0, "groups": 4.0})
    assert bar.warning == ""


# --- training and eval on the tiny model -----------------------------------------------------


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("data")
    train, held_out = arithmetic.make_splits(2, 16, 3, seed=0, forget=0.6)
    (d / "train.jsonl").write_text("".join(json.dumps(it) + "\n" for it in train))
    (d / "eval.jsonl").write_text("".join(json.dumps(it) + "\n" for it in held_out))
    return d


@pytest.fixture(scope="module")
def trained(data_dir, tiny_dir, tmp_path_factory):
    """Two GRPO steps of the random tiny model with an exact grader: every attempt fails."""
    out = tmp_path_factory.mktemp("run") / "r"
    job = load_job(None, [
        f"model.path={tiny_dir}", f"data.train={data_dir / 'train.jsonl'}", f"data.eval={data_dir / 'eval.jsonl'}",
        "grader.type=exact", "algorithm.prompts_per_step=2", "algorithm.group_size=3", "sampling.max_new_tokens=4",
        "optim.lr=1e-3", "optim.steps=2", "eval.every=1", "run.progress=false", f"run.out={out}",
    ])
    return job, out, train_rl.train(job)


def test_rl_that_never_succeeds_warns_in_the_summary(trained):
    _, out, summary = trained
    assert "no learning signal" in summary["warning"] and "start from an SFT model" in summary["warning"]
    assert json.loads((out / "summary.json").read_text())["warning"] == summary["warning"]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if '"groups"' in line]
    assert [(r["no_signal_groups"], r["zero_variance_groups"], r["groups"]) for r in rows] == [(2.0, 2.0, 2.0)] * 2


def test_every_eval_of_a_run_writes_its_attempts(trained, data_dir):
    _, out, _ = trained
    rows = [json.loads(line) for line in (out / "eval_samples.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 1, 1, 2, 2, 2]  # eval.every = 1, then the final eval
    assert [r["item"] for r in rows[:3]] == [f"{data_dir / 'eval.jsonl'}:{i}" for i in (1, 2, 3)]
    first = rows[0]
    assert {"prompt", "fields", "output", "reward", "pass", "stop_reason", "attempt"} <= set(first)
    assert first["pass"] is (first["reward"] >= 1) and "answer" in first["fields"] and "version" not in first


def test_eval_never_writes_into_a_training_run(trained, tmp_path, capsys):
    job, out, _ = trained
    job_file = tmp_path / "job.toml"
    job_file.write_text(job_to_toml(job))
    logs = {name: (out / name).read_text() for name in ("metrics.jsonl", "eval_samples.jsonl")}
    tb = sorted(p.name for p in (out / "tb").iterdir())
    assert main(["eval", str(job_file), f"model.path={out / 'final'}", "eval.samples=2", "eval.temperature=1"]) == 0
    assert {name: (out / name).read_text() for name in logs} == logs and sorted(p.name for p in (out / "tb").iterdir()) == tb
    (folder,) = out.glob("eval-*")
    assert f"{out} holds a training run; this eval writes into {folder}" in capsys.readouterr().err
    metrics = json.loads((folder / "eval.json").read_text())
    rows = [json.loads(line) for line in (folder / "eval_samples.jsonl").read_text().splitlines()]
    assert {"eval/pass@1", "eval/pass@2", "eval/pass^2"} <= set(metrics)
    assert len(rows) == 3 * 2 and {r["step"] for r in rows} == {0} and [r["attempt"] for r in rows[:2]] == [0, 1]


def test_eval_out_is_run_out_unless_it_holds_a_training_run(tmp_path):
    assert eval_out(tmp_path / "new") == tmp_path / "new"
    (tmp_path / "ev").mkdir()
    (tmp_path / "ev" / "metrics.jsonl").write_text("")
    (tmp_path / "ev" / "eval.json").write_text("{}")
    assert eval_out(tmp_path / "ev") == tmp_path / "ev"  # an earlier eval's folder: written again
    for marker in ("config.toml", "checkpoints", "final", "summary.json"):
        run = tmp_path / marker.replace(".", "_")
        (run / marker).mkdir(parents=True)
        assert eval_out(run).parent == run and eval_out(run).name.startswith("eval-")
    (tmp_path / "rm").mkdir()
    (tmp_path / "rm" / "metrics.jsonl").write_text("")  # someone's logs (a reward model's): not written into
    assert eval_out(tmp_path / "rm").name.startswith("eval-")


def traj(reward: float) -> Trajectory:
    return Trajectory([1, 2], [0, 1], [0.0, -0.5], reward=reward, text="x")


def test_item_row_shortens_long_prompts_and_fields():
    item = {"prompt": [{"role": "user", "content": "y" * 400}], "answer": "42", "_source": "e.jsonl", "_line": 7}
    row = item_row(Group([traj(1.0)], item), 0, "prompt")
    assert row["item"] == "e.jsonl:7" and row["fields"] == {"answer": "42"} and row["pass"] is True
    assert len(row["prompt"]) == PROMPT_CHARS and row["prompt"].startswith("[user] yyy") and row["prompt"].endswith("…")


def test_tracker_cuts_eval_samples_back_on_resume(tmp_path):
    with Tracker(tmp_path, tensorboard=False, resume={}) as t:
        t.log_eval_samples(1, [{"item": "a:1"}])
        offsets = t.offsets(1)
        t.log_eval_samples(2, [{"item": "a:1"}])
    with Tracker(tmp_path, tensorboard=False, resume=offsets):
        pass
    assert [json.loads(line) for line in (tmp_path / "eval_samples.jsonl").read_text().splitlines()] == [
        {"step": 1, "item": "a:1"}]


# --- config and world check ------------------------------------------------------------------


def test_greedy_eval_with_many_samples_is_refused_in_one_line(tmp_path):
    (tmp_path / "job.toml").write_text("[eval]\nsamples = 8\n")
    with pytest.raises(ConfigError) as e:
        load_job(tmp_path / "job.toml")
    assert str(e.value).count("\n") == 0 and str(e.value).startswith(f"{tmp_path / 'job.toml'}:2: [eval] samples = 8")
    assert "eval.temperature = 0" in str(e.value) and "fix: set eval.temperature > 0" in str(e.value)
    assert load_job(None, ["eval.samples=8", "eval.temperature=1.0"]).eval.samples == 8


@pytest.mark.parametrize("override, hint", [
    ("optim.learning_rate=1e-4", "did you mean 'lr'?"),
    ("algorithm.num_generations=4", "did you mean 'group_size'?"),
    ("algorithm.beta=0.1", "did you mean 'kl_coef'?"),
    ("eval.n=4", "did you mean 'samples'?"),
    ("optim.temperature=0.7", "did you mean [sampling] temperature?"),
    ("run.max_completion_length=64", "did you mean [sampling] max_new_tokens?"),
])
def test_other_trainers_key_names_get_a_did_you_mean(override, hint):
    with pytest.raises(ConfigError, match="unknown key") as e:
        load_job(None, [override])
    assert hint in str(e.value)


def test_world_check_prints_problems_and_summary_on_stdout(monkeypatch, capsys):
    from rlft.envs.worlds import check

    report = {"world": "w", "splits": {"train": 2}, "problems": [{"task": "t1", "problem": "gold actions score"}],
              "ok": False}
    monkeypatch.setattr(check, "load_world", lambda name: None)
    monkeypatch.setattr(check, "check", lambda world: report)
    assert check.main(["w"]) == 1
    out, err = capsys.readouterr()
    assert err == "" and '"task": "t1"' in out and "w: 2 tasks (train 2); 1 problems" in out
