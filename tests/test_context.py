"""A prompt plus sampling.max_new_tokens longer than the model's context (its
config.max_position_embeddings) is one line at start, before the model loads, naming the
prompt's file:line, its tokens, max_new_tokens, the context and the fixes.

Run: OMP_NUM_THREADS=1 python -m pytest -q tests/test_context.py   (the tiny model: context 256)
"""

import json
import time

import pytest

from rlft import run as run_mod
from rlft.cli import main as cli
from rlft.config import ConfigError, load_job
from rlft.context import check_context, model_context
from rlft.models import encode_prompt, load_tokenizer

LONG = "12+34=" * 30  # far longer than an arithmetic prompt, still under the context alone


@pytest.fixture()
def job_dir(tmp_path, tiny_dir):
    rows = [{"prompt": "1+2=", "answer": "3", "completion": "3"}, {"prompt": "4+5=", "answer": "9", "completion": "9"},
            {"prompt": LONG, "answer": "46", "completion": "46"}]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "eval.jsonl").write_text(json.dumps(rows[0]) + "\n")
    (tmp_path / "job.toml").write_text(f'[model]\npath = "{tiny_dir}"\n[data]\ntrain = "train.jsonl"\n'
                                       f'eval = "eval.jsonl"\n[algorithm]\nprompts_per_step = 2\ngroup_size = 2\n'
                                       f'[optim]\nsteps = 1\n[run]\nout = "runs/x"\nprogress = false\n')
    return tmp_path


def no_model(*args, **kwargs):
    raise AssertionError("the model was loaded before the context check")


def test_the_tiny_models_context_is_read_from_its_config(tiny_dir):
    assert model_context(str(tiny_dir)) == 256


def test_rl_prompt_over_the_context_names_file_line_and_both_numbers(job_dir, tiny_dir, monkeypatch):
    from rlft.methods import train

    monkeypatch.setattr(run_mod, "load_model", no_model)
    n = len(encode_prompt(load_tokenizer(tiny_dir), LONG))  # 197 tokens, chat template included
    t0 = time.perf_counter()
    with pytest.raises(ConfigError) as e:
        train(load_job(job_dir / "job.toml"))  # sampling.max_new_tokens = 256, the default
    assert time.perf_counter() - t0 < 10
    assert str(e.value) == (
        f"{job_dir / 'train.jsonl'}:3: the prompt is {n} tokens and sampling.max_new_tokens = 256: {n + 256} tokens, "
        f"over the model's context (256 tokens, config.max_position_embeddings of {tiny_dir}) (4 of 4 do not fit); "
        f"fix: shorter prompts, sampling.max_new_tokens <= {256 - n}, or a model with a longer context")


def test_within_the_context_nothing_is_said(job_dir, tiny_dir):
    job = load_job(job_dir / "job.toml", ["sampling.max_new_tokens=16"])
    tokenizer = load_tokenizer(tiny_dir)
    items = [{"_source": "train.jsonl", "_line": i, "prompt": p} for i, p in enumerate(["1+2=", LONG], 1)]
    check_context(job, str(tiny_dir), items, [encode_prompt(tokenizer, it["prompt"]) for it in items])


def test_cli_prints_one_line_and_exits_2(job_dir, capsys, monkeypatch):
    monkeypatch.setattr(run_mod, "load_model", no_model)
    assert cli(["train", str(job_dir / "job.toml"), "sampling.max_new_tokens=100"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"rlft train: error: {job_dir / 'train.jsonl'}:3: the prompt is ")
    assert "sampling.max_new_tokens = 100" in err and "(256 tokens, config.max_position_embeddings" in err


def test_eval_prompts_are_checked_too(job_dir, capsys, monkeypatch):
    monkeypatch.setattr(run_mod, "load_model", no_model)
    assert cli(["eval", str(job_dir / "job.toml"), "sampling.max_new_tokens=250"]) == 2
    assert f"{job_dir / 'eval.jsonl'}:1: the prompt is " in capsys.readouterr().err


def test_sft_demonstration_over_the_context(job_dir, tiny_dir, monkeypatch):
    from rlft.train_sft import train

    monkeypatch.setattr(run_mod, "load_model", no_model)
    (job_dir / "train.jsonl").write_text(json.dumps({"prompt": "1+2=", "completion": "3 " * 300}) + "\n")
    with pytest.raises(ConfigError, match=r"train.jsonl:1: prompt \+ completion is \d+ tokens, over the model's context "
                                          r"\(256 tokens.*fix: shorter demonstrations, or a model with a longer context$"):
        train(load_job(job_dir / "job.toml", ["data.eval=", "model.max_length=4096"]))
