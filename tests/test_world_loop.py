"""The RL loop on a world job: multi-turn episodes on the retail world with a tiny model.

Run: OMP_NUM_THREADS=1 python -m pytest -q tests/test_world_loop.py
"""

import json

import pytest
import torch

from rlft import train_rl
from rlft.config import ConfigError, load_job
from rlft.envs.worlds.rollout import WorldRollout, evaluate_world
from rlft.eval import pass_hat_k, score
from rlft.rollout.sampler import HFSampler, SamplingParams


def world_job(tiny_dir, out, *overrides):
    return load_job(None, [
        f"model.path={tiny_dir}", "model.max_length=2048", "world.name=retail", "world.max_turns=2",
        "algorithm.prompts_per_step=2", "algorithm.group_size=3", "sampling.max_new_tokens=6",
        "sampling.temperature=1.5", "optim.lr=1e-2", "optim.steps=2", "run.progress=false", f"run.out={out}",
        *overrides,
    ])


def test_rl_on_a_world_runs_multi_turn_episodes(tiny_dir, tmp_path):
    summary = train_rl.train(world_job(tiny_dir, tmp_path / "r", "algorithm.drop_zero_advantage=false",
                                       "world.partial_credit=true"))
    assert summary["kind"] == "rl"
    rows = [json.loads(line) for line in (tmp_path / "r/metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "kept_sequences" in r]
    assert len(steps) == 2 and all(r["kept_sequences"] == 6 for r in steps)
    assert all(torch.isfinite(torch.tensor(v)).item() for r in steps for v in r.values())
    stops = {k for r in steps for k in r if k.startswith("stop/")}
    assert stops <= {"stop/env_done", "stop/length", "stop/max_turns"}
    samples = [json.loads(line) for line in (tmp_path / "r/samples.jsonl").read_text().splitlines()]
    assert samples and all(s["item"]["id"].startswith("train-") and s["turns"] >= 1 for s in samples)


def test_world_evaluation_reports_pass_hat_k(tiny, tmp_path):
    model, tok = tiny
    rollout = WorldRollout(world_job("tiny", tmp_path, "eval.size=3"))
    metrics = evaluate_world(rollout, HFSampler(model, tok), "eval", SamplingParams(max_new_tokens=4), 2, seed=0)
    assert metrics["tasks"] == 3 and {"pass@1", "pass@2", "pass^2", "violation_rate"} <= set(metrics)
    assert metrics["pass^2"] <= metrics["pass@1"] <= metrics["pass@2"]
    kinds = {t["kind"] for t in rollout.world.tasks["eval"][:3]}
    assert {k for k in metrics if k.startswith("success/")} == {f"success/{k}" for k in kinds}


def test_pass_hat_k_by_hand():
    # n=4 attempts, c=2 pass: pass^2 = C(2,2)/C(4,2) = 1/6; pass^1 = pass@1 = 2/4
    assert pass_hat_k(4, 2, 2) == pytest.approx(1 / 6)
    assert pass_hat_k(4, 2, 1) == pytest.approx(0.5) and pass_hat_k(4, 1, 2) == 0.0
    assert score([[1, 1, 1, 1], [1, 0, 0, 0]], 2)["pass^2"] == pytest.approx(0.5)


@pytest.mark.parametrize("override,message", [
    ("world.name=atlantis", "built-in worlds are retail"),
    ("world.view=tiny", "views: full, minimal"),
    ("world.split=test", "has task files eval, train"),
])
def test_world_job_errors_before_the_model_loads(tmp_path, override, message):
    with pytest.raises(ConfigError, match=message):
        WorldRollout(world_job("tiny", tmp_path, override))


def test_cli_world_check_and_eval(tiny_dir, tmp_path):
    import subprocess
    import sys

    from rlft.cli import main

    done = subprocess.run([sys.executable, "-m", "rlft.cli", "world", "check", "retail"], capture_output=True, text=True)
    assert done.returncode == 0 and "every task solvable" in done.stdout, done.stderr
    assert main(["world", "eval", "-", f"model.path={tiny_dir}", "model.max_length=2048", "world.name=retail",
                 "world.max_turns=2", "sampling.max_new_tokens=4", "eval.size=2", f"run.out={tmp_path}"]) == 2
    job = tmp_path / "job.toml"
    job.write_text(f'[model]\npath = "{tiny_dir}"\nmax_length = 2048\n[world]\nname = "retail"\nmax_turns = 2\n'
                   f'[sampling]\nmax_new_tokens = 4\n[eval]\nsize = 2\n[run]\nout = "{tmp_path}"\n')
    assert main(["world", "eval", str(job)]) == 0
    assert json.loads((tmp_path / "world_eval.json").read_text())["tasks"] == 2


def test_world_job_evaluates_held_out_tasks_during_training(tiny_dir, tmp_path):
    summary = train_rl.train(world_job(tiny_dir, tmp_path / "r", "eval.every=1", "eval.size=2", "optim.steps=2",
                                       "world.instructions=false"))
    rows = [json.loads(line) for line in (tmp_path / "r/metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "eval/pass@1" in r] == [1, 2]  # every step and the final one
    assert {"eval/violation_rate", "eval/tasks"} <= set(rows[-1]) and summary["eval/tasks"] == 2


def test_instructions_off_opens_with_the_request_alone():
    from rlft.envs.tools import TOOL_FORMATS
    from rlft.envs.worlds import load_world
    from rlft.envs.worlds.env import WorldEnv

    world = load_world("retail")
    task = world.tasks["train"][0]
    env = WorldEnv(world, task, world.view("full"), TOOL_FORMATS["compact"], instructions=False)
    assert env.initial_observation() == [{"role": "user", "content": task["instruction"]}] and env.tools == []
    order = task["gold_actions"][0]["arguments"]["order_id"]
    assert f"order_id={order}" in env.step(f"call get_order(order_id={order})").messages[0]["content"]


def test_require_reads_fails_a_blind_denial():
    from rlft.envs.tools import TOOL_FORMATS
    from rlft.envs.worlds import load_world
    from rlft.envs.worlds.env import WorldEnv

    world = load_world("retail")
    task = next(t for t in world.tasks["train"] if t["kind"] == "late")
    order = task["gold_actions"][0]["arguments"]["order_id"]

    def play(replies, require_reads):
        env = WorldEnv(world, task, world.view("minimal"), TOOL_FORMATS["compact"], require_reads=require_reads)
        for reply in replies:
            result = env.step(reply)
        return result.reward, result.info

    assert play(["denied"], False)[0] == 1.0  # the end state cannot see that nothing was looked up
    reward, info = play(["denied"], True)
    assert reward == 0.0 and info["missing_reads"] == [task["gold_actions"][0]] and not info["violation"]
    assert play([f"call get_order(order_id={order + 1})", "denied"], True)[0] == 0.0  # the wrong order
    assert play([f"call get_order(order_id={order})", "denied"], True)[0] == 1.0


def test_resuming_a_world_run_with_another_view_is_refused(tiny_dir, tmp_path):
    train_rl.train(world_job(tiny_dir, tmp_path / "r", "optim.steps=1", "run.checkpoint_every=1"))
    with pytest.raises(ConfigError, match="world.view: 'full' -> 'minimal'"):
        train_rl.train(world_job(tiny_dir, tmp_path / "r", "optim.steps=2", "world.view=minimal"))
