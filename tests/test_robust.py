"""Runs that survive: kill -9 and resume bitwise, interrupted and corrupted checkpoints, a full
disk, Ctrl-C, non-finite updates, changed settings on resume, secrets kept out of the run folder.

Run: python -m pytest -q tests/test_robust.py
"""

import errno
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from rlft import checkpoint, learner, train_rl, train_sft
from rlft.config import ConfigError, job_to_toml, load_job
from rlft.run import RunStopped
from rlft.tasks import arithmetic

# metrics that measure the machine, not the run: they differ between any two runs
MACHINE = ("time/", "memory/", "tokens_per_second", "eval/seconds")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("data")
    train, held_out = arithmetic.make_splits(2, 10, 4, seed=0, forget=0.6)
    (d / "train.jsonl").write_text("".join(json.dumps(it) + "\n" for it in train))
    (d / "eval.jsonl").write_text("".join(json.dumps(it) + "\n" for it in held_out))
    return d


def make_job(data_dir, tiny_dir, out, *overrides):
    # 10 items, 2 prompts (RL) or 4 demonstrations (SFT) a step: checkpoints land on and off epoch boundaries
    return load_job(None, [
        f"model.path={tiny_dir}", f"data.train={data_dir / 'train.jsonl'}", f"data.eval={data_dir / 'eval.jsonl'}",
        "algorithm.prompts_per_step=2", "algorithm.group_size=4", "sampling.max_new_tokens=4",
        "sampling.temperature=1.5", "grader.type=regex", "grader.pattern=[0-9]", "optim.lr=1e-2",
        "optim.steps=10", "optim.batch_size=4", "optim.schedule=linear", "eval.every=5", "run.checkpoint_every=2",
        "run.progress=false", f"run.out={out}", *overrides,
    ])


def outputs(run_dir: Path) -> tuple[dict, list, list]:
    """Final weights, metrics without machine timings, and samples of a finished run."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    rows = [{k: v for k, v in r.items() if not k.startswith(MACHINE)} for r in rows]
    samples = [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]
    return load_file(str(run_dir / "final" / "model.safetensors")), rows, samples


def assert_same_run(a: Path, b: Path) -> None:
    wa, ma, sa = outputs(a)
    wb, mb, sb = outputs(b)
    assert wa.keys() == wb.keys()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert ma == mb
    assert sa == sb


def write_job(job, path: Path) -> Path:
    path.write_text(job_to_toml(job))
    return path


def cli(command: str, job_file: Path, *extra: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "rlft.cli", command, str(job_file), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})},
    )


def wait_for_rows(run_dir: Path, n: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    path, t0 = run_dir / "metrics.jsonl", time.time()
    while time.time() - t0 < timeout:
        if path.exists() and sum(1 for _ in path.open()) >= n:
            return
        assert proc.poll() is None, f"the run ended before writing {n} metric rows: {proc.communicate()}"
        time.sleep(0.01)
    raise AssertionError(f"no {n} metric rows after {timeout} s")


@pytest.mark.parametrize("command", ["train", "sft"])
def test_kill_9_at_random_points_then_resume_is_bitwise_identical(data_dir, tiny_dir, tmp_path, command):
    loop = train_rl if command == "train" else train_sft
    loop.train(make_job(data_dir, tiny_dir, tmp_path / "whole"))
    job_file = write_job(make_job(data_dir, tiny_dir, tmp_path / "killed"), tmp_path / "job.toml")
    rng = random.Random(f"{command}-kill")
    for rows in (3, 6):  # kill twice: after a few steps and again later, each time at a random moment
        proc = cli(command, job_file)
        wait_for_rows(tmp_path / "killed", rows, proc)
        time.sleep(rng.uniform(0, 0.05))  # mid-rollout, mid-update or mid-save
        proc.send_signal(signal.SIGKILL)
        assert proc.wait() == -signal.SIGKILL, "the run ended before it was killed"
    proc = cli(command, job_file)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert_same_run(tmp_path / "whole", tmp_path / "killed")


class Crash(BaseException):
    """Stands for the process dying: nothing in rlft catches it."""


def test_crash_mid_save_leaves_the_previous_checkpoint_and_resume_is_identical(
        data_dir, tiny_dir, tmp_path, monkeypatch):
    train_rl.train(make_job(data_dir, tiny_dir, tmp_path / "whole"))
    job = make_job(data_dir, tiny_dir, tmp_path / "crashed")
    real_write_json, calls = checkpoint.write_json, []

    def dies_writing_the_second_state(path, obj):
        if Path(path).name == "state.json":
            calls.append(path)
            if len(calls) == 2:  # weights and optimizer of step 4 are on disk, its state.json is not
                raise Crash
        real_write_json(path, obj)

    monkeypatch.setattr(checkpoint, "write_json", dies_writing_the_second_state)
    with pytest.raises(Crash):
        train_rl.train(job)
    monkeypatch.setattr(checkpoint, "write_json", real_write_json)
    root = tmp_path / "crashed" / "checkpoints"
    assert (root / ".tmp_step_4").exists() and not (root / "step_4").exists()
    assert checkpoint.latest(tmp_path / "crashed").name == "step_2"
    train_rl.train(job)
    assert_same_run(tmp_path / "whole", tmp_path / "crashed")
    assert not list(root.glob(".tmp_*"))


def test_corrupted_or_truncated_checkpoints_are_skipped_with_a_message(data_dir, tiny_dir, tmp_path, capsys):
    out = tmp_path / "r"
    train_sft.train(make_job(data_dir, tiny_dir, out, "optim.steps=6", "run.keep_checkpoints=0"))
    root = out / "checkpoints"
    assert sorted(p.name for p in root.glob("step_*")) == ["step_2", "step_4", "step_6"]
    assert (root / "latest").read_text() == "step_6"
    weights = root / "step_6" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    optim = root / "step_4" / "optim.pt"
    optim.write_bytes(optim.read_bytes()[:100])
    capsys.readouterr()
    assert checkpoint.latest(out).name == "step_2"
    err = capsys.readouterr().err
    assert f"skipping checkpoint {root / 'step_6'}: model.safetensors does not match its SHA-256" in err
    assert f"skipping checkpoint {root / 'step_4'}: optim.pt is 100 bytes" in err


def test_only_the_newest_checkpoints_are_kept(data_dir, tiny_dir, tmp_path):
    out = tmp_path / "r"
    train_sft.train(make_job(data_dir, tiny_dir, out, "optim.steps=10", "run.keep_checkpoints=2"))
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["latest", "step_10", "step_8"]
    state = json.loads((out / "checkpoints" / "step_10" / "state.json").read_text())
    assert state["step"] == 10 and state["data_position"] == 40 and "fingerprint" in state


def test_resume_accepts_unrelated_changes_and_refuses_result_changes(data_dir, tiny_dir, tmp_path):
    out = tmp_path / "r"
    train_sft.train(make_job(data_dir, tiny_dir, out, "optim.steps=4"))
    config = (out / "config.toml").read_text()
    # logging and evaluation settings may change
    train_sft.train(make_job(data_dir, tiny_dir, out, "optim.steps=4", "run.log_samples=1", "eval.every=0"))
    for change in ["optim.lr=0.02", "run.seed=1", "optim.batch_size=8", "optim.steps=6"]:
        with pytest.raises(ConfigError) as e:
            train_sft.train(make_job(data_dir, tiny_dir, out, "optim.steps=4", change))
        key, value = change.split("=")
        assert f"{key}: " in str(e.value) and "run.force_resume=true" in str(e.value)
    assert (out / "config.toml").read_text() != config  # the accepted run rewrote it...
    refused = (out / "config.toml").read_text()
    with pytest.raises(ConfigError):
        train_sft.train(make_job(data_dir, tiny_dir, out, "optim.steps=4", "run.seed=1"))
    assert (out / "config.toml").read_text() == refused  # ...a refused one changed nothing
    summary = train_sft.train(make_job(data_dir, tiny_dir, out, "optim.steps=6", "run.force_resume=true"))
    assert summary["steps"] == 6


def test_a_constant_learning_rate_run_can_be_extended(data_dir, tiny_dir, tmp_path):
    constant = ("optim.schedule=constant", "run.checkpoint_every=0")
    train_rl.train(make_job(data_dir, tiny_dir, tmp_path / "whole", "optim.steps=6", *constant))
    train_rl.train(make_job(data_dir, tiny_dir, tmp_path / "extended", "optim.steps=3", *constant))
    train_rl.train(make_job(data_dir, tiny_dir, tmp_path / "extended", "optim.steps=6", *constant))
    w, _, _ = outputs(tmp_path / "whole")
    e, _, _ = outputs(tmp_path / "extended")
    assert all(torch.equal(w[k], e[k]) for k in w)


def test_rerunning_a_finished_run_returns_its_summary(data_dir, tiny_dir, tmp_path):
    job = make_job(data_dir, tiny_dir, tmp_path / "r", "optim.steps=4")
    first = train_sft.train(job)
    rows = (tmp_path / "r" / "metrics.jsonl").read_text()
    assert train_sft.train(job) == first
    assert (tmp_path / "r" / "metrics.jsonl").read_text() == rows


def test_non_finite_updates_are_skipped_then_stop_the_run(data_dir, tiny_dir, tmp_path, monkeypatch):
    real = learner.policy_loss
    poisoned_from = 3

    def nan_loss(logp_BT, *args, **kwargs):
        value, metrics = real(logp_BT, *args, **kwargs)
        return (value * float("nan") if learner_step[0] >= poisoned_from else value), metrics

    learner_step = [0]
    real_update = learner.update

    def counting_update(*args, **kwargs):
        learner_step[0] += 1
        return real_update(*args, **kwargs)

    monkeypatch.setattr(learner, "policy_loss", nan_loss)
    monkeypatch.setattr(train_sft, "update", counting_update)
    out = tmp_path / "r"
    with pytest.raises(RunStopped) as e:
        train_sft.train(make_job(data_dir, tiny_dir, out, "optim.max_skipped_updates=3"))
    msg = str(e.value)
    assert "stopped at step 5: 3 updates in a row were skipped" in msg
    assert "train.jsonl:" in msg and str(out / "checkpoints" / "step_5") in msg
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if '"loss"' in line]
    assert [r["skipped_update"] for r in rows] == [0, 0, 1, 1, 1]
    assert [r["skipped_updates"] for r in rows] == [0, 0, 1, 2, 3]
    # a skipped update leaves the weights as they were
    before = load_file(str(out / "checkpoints" / "step_2" / "model.safetensors"))
    after = load_file(str(out / "checkpoints" / "step_5" / "model.safetensors"))
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


def test_a_full_disk_during_a_save_keeps_the_previous_checkpoint(data_dir, tiny_dir, tmp_path, monkeypatch):
    real, calls = checkpoint.save_model, []

    def disk_fills(model, path):
        calls.append(path)
        if len(calls) == 2:
            Path(path).write_bytes(b"\0" * 1000)  # part of the file made it
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(model, path)

    monkeypatch.setattr(checkpoint, "save_model", disk_fills)
    out = tmp_path / "r"
    with pytest.raises(checkpoint.CheckpointError) as e:
        train_rl.train(make_job(data_dir, tiny_dir, out))
    assert "could not write the checkpoint of step 4" in str(e.value)
    assert "No space left on device" in str(e.value)
    assert f"the previous checkpoint {out / 'checkpoints' / 'step_2'} is intact" in str(e.value)
    assert [p.name for p in (out / "checkpoints").iterdir() if p.is_dir()] == ["step_2"]
    assert checkpoint.verify(out / "checkpoints" / "step_2") is None


def test_ctrl_c_saves_a_checkpoint_and_the_run_resumes_identically(data_dir, tiny_dir, tmp_path):
    train_rl.train(make_job(data_dir, tiny_dir, tmp_path / "whole"))
    job_file = write_job(make_job(data_dir, tiny_dir, tmp_path / "stopped", "run.checkpoint_every=0"),
                         tmp_path / "job.toml")
    proc = cli("train", job_file)
    wait_for_rows(tmp_path / "stopped", 3, proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "checkpoint saved at" in err and "run the same command again to resume" in err
    assert checkpoint.latest(tmp_path / "stopped") is not None
    proc = cli("train", job_file, "run.checkpoint_every=2")  # the periodic checkpoints don't change results
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert_same_run(tmp_path / "whole", tmp_path / "stopped")


def test_a_second_ctrl_c_stops_at_once(data_dir, tiny_dir, tmp_path):
    job_file = write_job(make_job(data_dir, tiny_dir, tmp_path / "r", "optim.steps=100000"), tmp_path / "job.toml")
    proc = cli("train", job_file)
    wait_for_rows(tmp_path / "r", 1, proc)
    proc.send_signal(signal.SIGINT)
    proc.send_signal(signal.SIGINT)
    t0 = time.time()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and time.time() - t0 < 10, err


def test_secrets_from_the_environment_never_reach_the_run_folder(data_dir, tiny_dir, tmp_path):
    secret = "sk-test-5f2b9c0e1d7a4e3b8c6d"
    env_names = ["OPENAI_API_KEY", "RLFT_JUDGE_API_KEY", "WANDB_API_KEY", "HF_TOKEN"]
    job_file = write_job(make_job(data_dir, tiny_dir, tmp_path / "r", "optim.steps=2"), tmp_path / "job.toml")
    proc = cli("train", job_file, env={name: secret for name in env_names})
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    leaked = [p for p in (tmp_path / "r").rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]
    assert leaked == []
    assert secret not in out + err


def test_a_grader_that_keeps_failing_stops_the_run(data_dir, tiny_dir, tmp_path):
    (tmp_path / "grader.py").write_text(
        "def score(sample, item):\n"
        "    if len(sample.output_text) % 2:\n"
        "        raise RuntimeError('judge unreachable')\n"
        "    return 1.0\n"
    )
    out = tmp_path / "r"
    with pytest.raises(RunStopped) as e:
        train_rl.train(make_job(data_dir, tiny_dir, out, "grader.type=python",
                                f"grader.function={tmp_path / 'grader.py'}:score", "run.max_errored_fraction=0.2"))
    msg = str(e.value)
    assert "stopped at step 1:" in msg and "errored" in msg and "RuntimeError" in msg
    assert "rlft check-grader" in msg and str(out / "checkpoints" / "step_1") in msg


def test_run_out_that_is_a_file_or_unwritable_gets_one_line(tmp_path, monkeypatch):
    """A bare errno before; now the field, the path and the fix, before any model loads."""
    from rlft.config import ConfigError, load_job
    from rlft.run import make_run_dir, start

    f = tmp_path / "out.txt"
    f.write_text("mine")
    with pytest.raises(ConfigError, match=r"run.out = '.*out.txt' is a file, not a folder; fix: set run.out"):
        start(load_job(None, [f"run.out={f}"]))
    assert f.read_text() == "mine"

    def refuse(self, *a, **k):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(Path, "touch", refuse)  # as root, a read-only folder is writable anyway
    with pytest.raises(ConfigError, match=r"cannot write there \(Permission denied\); fix: set run.out to a folder you can write"):
        make_run_dir(tmp_path / "ro", writable=True)
    make_run_dir(tmp_path / "ro", writable=False)  # eval only reads a run's folder
