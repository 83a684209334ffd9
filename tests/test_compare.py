"""rlft compare: experiment files checked, the t-interval worked by hand, the report read back
from run folders, finished cells skipped, train/eval overlap caught. The end-to-end run of a
tiny experiment (cells in subprocesses, about 2 minutes) is marked slow.

Run: OMP_NUM_THREADS=1 python -m pytest -q tests/test_compare.py   (add -m slow for the end-to-end one)
"""

import json
import math
from pathlib import Path

import pytest

from rlft.compare import Cell, builtin_path, load_experiment, run_cell
from rlft.config import ConfigError
from rlft.report import contamination, t_interval, write_report


def test_t_interval_hand_worked():
    # [.5, .7, .9]: mean .7, sample sd .2, t(.975, df 2) = 4.302653 -> half-width 4.302653·.2/√3 = .496827
    mean, half = t_interval([0.5, 0.7, 0.9])
    assert mean == pytest.approx(0.7)
    assert half == pytest.approx(4.302653 * 0.2 / math.sqrt(3), rel=1e-6)
    assert math.isnan(t_interval([0.3])[1])


def test_experiment_file_errors_name_the_table(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[experiment]\nbudget = 0\nseed = [1]\n[tasks.a]\n[methods.m]\noverrides = "x=1"\n')
    with pytest.raises(ConfigError) as e:
        load_experiment(bad)
    msg = str(e.value)
    assert "[experiment] seed: unknown key" in msg and "seeds" in msg
    assert "budget = 0: must be an integer >= 1" in msg
    assert "[tasks.a] needs exactly one of builtin" in msg
    assert "[methods.m] overrides must be a list" in msg
    with pytest.raises(ConfigError, match="valid: group_size, imitation_vs_experience, outcome_vs_value"):
        builtin_path("nope")
    for name in ("imitation_vs_experience", "outcome_vs_value", "outcome_vs_value_long", "group_size"):
        spec = load_experiment(builtin_path(name))
        assert len(spec["experiment"]["seeds"]) >= 3


def fake_cell(root: Path, method: str, seed: int, curve: list[float], per_step: int = 8) -> Cell:
    out = root / "cells" / "t" / method / f"seed{seed}"
    out.mkdir(parents=True)
    rows = []
    for step, score in enumerate(curve, 1):
        rows.append({"step": step, "loss": 0.1, **({"tokens": 50.0} if method == "sft" else {"completion_len_mean": 5.0})})
        rows.append({"step": step, "eval/pass@1": score})
    (out / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (out / "summary.json").write_text(json.dumps({"eval/pass@1": curve[-1], "wall_seconds": 10.0}))
    return Cell("t", method, seed, out, out / "job.toml", per_step, len(curve))


def test_report_from_run_folders(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.jsonl").write_text('{"prompt": "1+1=", "answer": "2"}\n{"prompt": "2+2=", "answer": "4"}\n')
    (data / "eval.jsonl").write_text('{"prompt": "3+3=", "answer": "6"}\n{"prompt": "2+2=", "answer": "4"}\n')
    job = tmp_path / "job.toml"
    job.write_text('[data]\ntrain = "data/train.jsonl"\neval = "data/eval.jsonl"\n')
    out = tmp_path / "exp"
    (out / "start" / "t").mkdir(parents=True)
    (out / "start" / "t" / "eval.json").write_text(json.dumps({"eval/pass@1": 0.2}))
    cells = [fake_cell(out, "grpo", s, [0.4, x]) for s, x in enumerate([0.5, 0.7, 0.9])]
    cells += [fake_cell(out, "sft", s, [0.2, 0.3]) for s in range(3)]
    spec = {"experiment": {"name": "demo", "budget": 16, "seeds": [0, 1, 2]}}
    report = write_report(out, spec, cells, {"t": {"job": str(job), "overrides": []}}).read_text()
    # grpo: mean .7, interval .7 ± .496827; gain .5 over 2 steps x 8 attempts x 5 tokens = 80 tokens
    assert "| t | grpo | 3 | 16 | 0.700 | [0.203, 1.197] | 0.200 | 0.500 | 0.1 | 6.2500 | 10 |" in report
    assert "| t | sft | 3 | 16 | 0.300 | [0.300, 0.300] | 0.200 | 0.100 | 0 (0.1 k demo) | – | 10 |" in report
    assert "1 of 2 eval prompts occur among 2 training prompts — **CONTAMINATED" in report
    assert (out / "curves.png").stat().st_size > 0
    results = json.loads((out / "results.json").read_text())
    assert results["cells"][0]["curve"] == [[0, 0.2], [8, 0.4], [16, 0.5]]
    assert contamination(str(job), [])["shared"] == 1
    # a finished cell is not run again
    assert run_cell(cells[0], 1, print)["skipped"]


@pytest.mark.slow
def test_a_tiny_experiment_end_to_end_and_resumed(tmp_path):
    from rlft.compare import compare

    exp = tmp_path / "smoke.toml"
    exp.write_text(f"""
[experiment]
seeds = [0, 1]
budget = 32
evals = 2
out = "{tmp_path / 'out'}"

[tasks.add2]
builtin = "addition"
digits = 2
n_train = 200
n_eval = 10
warm_start_steps = 5
batch_size = 16

[methods.sft]
overrides = ["algorithm.name=sft"]

[methods.ppo]
overrides = ["algorithm.name=ppo", "algorithm.prompts_per_step=4", "algorithm.group_size=4"]
""")
    report = compare(exp).read_text()
    assert "| add2 | ppo | 2 | 32 |" in report and "0 of 10 eval prompts" in report
    before = (tmp_path / "out" / "cells" / "add2" / "ppo" / "seed0" / "summary.json").stat().st_mtime
    compare(exp)  # everything finished: nothing reruns
    assert (tmp_path / "out" / "cells" / "add2" / "ppo" / "seed0" / "summary.json").stat().st_mtime == before
