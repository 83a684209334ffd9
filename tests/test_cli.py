"""Smoke runs of every command on a tiny model, as a user runs them (subprocesses).

Run: python -m pytest -q tests/test_cli.py     (about a minute on 2 cores)
"""

import json
import subprocess
import sys

import pytest
from transformers import AutoModelForCausalLM

from rlft.tasks import arithmetic


def rlft(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "rlft.cli", *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=900
    )


@pytest.fixture(scope="module")
def job_dir(tmp_path_factory, tiny_dir):
    d = tmp_path_factory.mktemp("job")
    train, held_out = arithmetic.make_splits(2, 40, 6, seed=0, forget=0.6)
    (d / "train.jsonl").write_text("".join(json.dumps(it) + "\n" for it in train))
    (d / "eval.jsonl").write_text("".join(json.dumps(it) + "\n" for it in held_out))
    (d / "job.toml").write_text(f"""
[model]
path = "{tiny_dir}"
[data]
train = "train.jsonl"
eval = "eval.jsonl"
[grader]
type = "exact"
[algorithm]
prompts_per_step = 2
group_size = 3
[sampling]
max_new_tokens = 4
[optim]
lr = 1e-3
steps = 2
batch_size = 4
[eval]
every = 1
[run]
out = "runs/x"
progress = false
checkpoint_every = 1
""")
    return d


def test_help_lists_every_field():
    out = rlft("--help")
    assert out.returncode == 0 and "quickstart" in out.stdout and "train" in out.stdout
    out = rlft("train", "--help")
    assert out.returncode == 0
    assert "algorithm.group_size" in out.stdout and "G: samples per prompt" in out.stdout
    for command in ("sft", "eval", "quickstart"):
        assert rlft(command, "--help").returncode == 0


def test_sft_train_eval_end_to_end(job_dir):
    sft = rlft("sft", "job.toml", "run.out=runs/sft", cwd=job_dir)
    assert sft.returncode == 0, sft.stderr
    run = job_dir / "runs/sft"
    for name in ("config.toml", "metrics.jsonl", "samples.jsonl", "summary.json", "tb", "checkpoints/step_2"):
        assert (run / name).exists(), name
    AutoModelForCausalLM.from_pretrained(run / "final")  # loadable by transformers alone
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r] == [1, 2]
    assert any("eval/pass@1" in r for r in rows)

    rl = rlft("train", "job.toml", f"model.path={run / 'final'}", "run.out=runs/rl", cwd=job_dir)
    assert rl.returncode == 0, rl.stderr
    summary = json.loads((job_dir / "runs/rl/summary.json").read_text())
    assert summary["kind"] == "rl" and 0 <= summary["eval/pass@1"] <= 1
    samples = (job_dir / "runs/rl/samples.jsonl").read_text().splitlines()
    assert len(samples) == 2 * 4  # run.log_samples = 4 per step
    assert {"item", "completion", "reward", "advantage"} <= set(json.loads(samples[0]))

    ev = rlft("eval", "job.toml", f"model.path={job_dir / 'runs/rl/final'}", "eval.samples=2",
              "eval.temperature=1.0", "run.out=runs/ev", cwd=job_dir)
    assert ev.returncode == 0, ev.stderr
    metrics = json.loads((job_dir / "runs/ev/eval.json").read_text())
    assert {"eval/mean_reward", "eval/pass@1", "eval/pass@2"} <= set(metrics)


def test_bad_config_is_one_clear_line(job_dir):
    out = rlft("train", "job.toml", "algorithm.group_sise=4", cwd=job_dir)
    assert out.returncode == 2
    assert "did you mean 'group_size'" in out.stderr and "Traceback" not in out.stderr


def test_bad_data_line_names_file_and_line(job_dir):
    lines = (job_dir / "train.jsonl").read_text().splitlines()
    lines[2] = '{"prompt": "1+1=", "answer": "2"'  # truncated JSON on line 3
    (job_dir / "bad.jsonl").write_text("\n".join(lines) + "\n")
    out = rlft("train", "job.toml", "data.train=bad.jsonl", cwd=job_dir)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "bad.jsonl:3:" in out.stderr


def test_missing_model_files_are_named(job_dir, tmp_path):
    (tmp_path / "config.json").write_text("{}")
    out = rlft("train", "job.toml", f"model.path={tmp_path}", cwd=job_dir)
    assert out.returncode == 2 and "model.safetensors" in out.stderr


def test_quickstart_fast(tmp_path):
    out = rlft("quickstart", "--fast", "--no-progress", "--out", tmp_path / "qs")
    assert out.returncode == 0, out.stderr
    results = json.loads((tmp_path / "qs/results.json").read_text())
    for key in ("demonstrator_accuracy", "sft_accuracy", "rl_accuracy", "wall_seconds"):
        assert 0 <= results[key] and (key == "wall_seconds" or results[key] <= 1)
    assert (tmp_path / "qs/accuracy.png").stat().st_size > 0


@pytest.mark.slow
def test_quickstart_meets_its_targets(tmp_path):
    """The full quickstart (minutes): demonstrator <= 70%, RL >= 90% and >= 20 points above it.

    Run: python -m pytest -q -m slow tests/test_cli.py
    """
    out = rlft("quickstart", "--no-progress", "--out", tmp_path / "qs")
    assert out.returncode == 0, out.stderr
    r = json.loads((tmp_path / "qs/results.json").read_text())
    assert r["demonstrator_accuracy"] <= 0.70
    assert r["rl_accuracy"] >= 0.90 and r["rl_accuracy"] >= r["demonstrator_accuracy"] + 0.20
    assert r["wall_seconds"] <= 600


def test_quickstart_same_seed_same_numbers(tmp_path):
    runs = [rlft("quickstart", "--fast", "--no-progress", "--seed", "3", "--out", tmp_path / f"q{i}") for i in range(2)]
    assert all(r.returncode == 0 for r in runs), runs[0].stderr
    a, b = (json.loads((tmp_path / f"q{i}/results.json").read_text()) for i in range(2))
    for key in ("demonstrator_accuracy", "sft_accuracy", "rl_accuracy"):
        assert a[key] == b[key]
    losses = [[json.loads(line).get("loss") for line in (tmp_path / f"q{i}/rl/metrics.jsonl").read_text().splitlines()]
              for i in range(2)]
    assert losses[0] == losses[1]
