"""The RL and SFT loops in-process on a tiny model: resume, errored graders, every
algorithm and loss option for a step or two.

Run: python -m pytest -q tests/test_loops.py
"""

import json

import pytest
import torch
from safetensors.torch import load_file

from rlft import train_rl, train_sft
from rlft.config import load_job
from rlft.tasks import arithmetic


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("data")
    train, held_out = arithmetic.make_splits(2, 24, 4, seed=0, forget=0.6)
    (d / "train.jsonl").write_text("".join(json.dumps(it) + "\n" for it in train))
    (d / "eval.jsonl").write_text("".join(json.dumps(it) + "\n" for it in held_out))
    (d / "grader.py").write_text(
        "def score(sample, item):\n"
        "    if len(sample.output_text) % 2:\n"
        "        raise RuntimeError('flaky judge')\n"
        "    return float(sample.output_text.strip() == item['answer'])\n"
    )
    return d


def job(data_dir, tiny_dir, out, *overrides):
    return load_job(None, [
        f"model.path={tiny_dir}", f"data.train={data_dir / 'train.jsonl'}", f"data.eval={data_dir / 'eval.jsonl'}",
        "algorithm.prompts_per_step=2", "algorithm.group_size=4", "sampling.max_new_tokens=4",
        "optim.lr=1e-2", "optim.steps=3", "optim.batch_size=4", "run.progress=false", f"run.out={out}",
        *overrides,
    ])


def weights(run_dir):
    return load_file(str(run_dir / "final" / "model.safetensors"))


@pytest.mark.parametrize("train", [train_rl.train, train_sft.train], ids=["rl", "sft"])
def test_resume_gives_the_same_weights(data_dir, tiny_dir, tmp_path, train):
    # a grader the random tiny model sometimes satisfies, so RL groups carry signal
    signal = ["grader.type=regex", "grader.pattern=[0-9]", "run.checkpoint_every=2"]
    train(job(data_dir, tiny_dir, tmp_path / "whole", "optim.steps=4", *signal))
    train(job(data_dir, tiny_dir, tmp_path / "split", "optim.steps=2", *signal))
    train(job(data_dir, tiny_dir, tmp_path / "split", "optim.steps=4", *signal))
    a, b = weights(tmp_path / "whole"), weights(tmp_path / "split")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # and it trained: the weights moved away from the initial ones
    init = load_file(str(next(tiny_dir.glob("*.safetensors"))))
    assert any(not torch.equal(a[k], init[k]) for k in a if k in init)


def test_errored_attempts_are_masked_and_counted(data_dir, tiny_dir, tmp_path):
    out = tmp_path / "r"
    train_rl.train(job(data_dir, tiny_dir, out, "grader.type=python", f"grader.function={data_dir}/grader.py:score",
                       "sampling.temperature=1.5", "optim.steps=4", "algorithm.drop_zero_advantage=false",
                       "run.max_errored_fraction=1"))
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if '"errored"' in line]
    errored = sum(r["errored"] for r in rows)
    kept = sum(r["kept_sequences"] for r in rows)
    assert errored > 0, "the random tiny model's answers should have odd lengths now and then"
    assert kept == 4 * 8 - errored  # every valid attempt trained, no errored one
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in rows)
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert any(s.get("error") == "RuntimeError: flaky judge" for s in samples)
    assert sum(s.get("error") is not None for s in samples) == errored  # every errored attempt is logged
    assert all(s["sample_id"].startswith(str(data_dir / "train.jsonl") + ":") for s in samples)
    assert sum(r.get("errored/RuntimeError", 0) for r in rows) == errored


@pytest.mark.parametrize("overrides", [
    ["algorithm.name=rloo"],
    ["algorithm.name=dr_grpo", "algorithm.aggregation=dr_grpo"],
    ["algorithm.name=reinforce", "algorithm.aggregation=seq_mean"],
    ["algorithm.name=expert_iteration"],
    ["algorithm.updates_per_batch=2", "optim.micro_batch_size=3"],
    ["algorithm.kl_coef=0.1", "algorithm.kl_estimator=k1", "sampling.top_k=5", "sampling.top_p=0.9"],
], ids=lambda o: " ".join(o))
def test_every_option_runs_a_finite_step(data_dir, tiny_dir, tmp_path, overrides):
    summary = train_rl.train(job(data_dir, tiny_dir, tmp_path / "r", "optim.steps=4", "eval.size=2",
                                 "sampling.temperature=1.5", "grader.type=regex", "grader.pattern=[0-9]",
                                 *overrides))
    rows = [json.loads(line) for line in (tmp_path / "r/metrics.jsonl").read_text().splitlines()]
    assert all(torch.isfinite(torch.tensor(v)).item() for r in rows for v in r.values())
    assert 0 <= summary["eval/pass@1"] <= 1
    if "algorithm.kl_coef=0.1" in overrides:
        assert any(r.get("kl", 0) != 0 for r in rows)
    if "algorithm.updates_per_batch=2" in overrides:
        assert any(r.get("approx_kl", 0) > 0 for r in rows)


def test_long_prompt_is_reported_with_its_line(data_dir, tiny_dir, tmp_path):
    from rlft.data import DataError

    (tmp_path / "long.jsonl").write_text(json.dumps({"prompt": "1+1=", "answer": "2"}) + "\n"
                                         + json.dumps({"prompt": "9" * 300 + "+1=", "answer": "0"}) + "\n")
    with pytest.raises(DataError, match=r"long.jsonl:2: prompt is \d+ tokens"):
        train_rl.train(job(data_dir, tiny_dir, tmp_path / "r", f"data.train={tmp_path / 'long.jsonl'}",
                           "model.max_length=64"))


def test_lora_trains_adapters_and_saves_a_merged_model(data_dir, tiny_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    train_sft.train(job(data_dir, tiny_dir, tmp_path / "r", "model.lora={ rank = 4, alpha = 8 }", "optim.steps=2"))
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "r" / "final")
    assert not any("lora" in name for name, _ in merged.named_parameters())
    assert (tmp_path / "r" / "final" / "adapter" / "adapter_config.json").exists()
    base = AutoModelForCausalLM.from_pretrained(tiny_dir)
    moved = [n for n, p in merged.named_parameters() if not torch.equal(p, dict(base.named_parameters())[n])]
    assert moved and all("proj" in n for n in moved), "only adapted linear layers change"
