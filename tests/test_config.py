"""Job files: loading, overrides, round trip, and the messages users see.

Run: python -m pytest tests/test_config.py -q   (fast, no model)
"""

from __future__ import annotations

import dataclasses

import pytest

from rlft.config import (
    SECTIONS,
    ConfigError,
    Job,
    LoraConfig,
    help_text,
    job_to_toml,
    load_job,
)

FULL = """\
[model]
path = "Qwen/Qwen2.5-0.5B-Instruct"
dtype = "bfloat16"
max_length = 2048
lora = { rank = 8, alpha = 16 }

[data]
train = "data/train.jsonl"
eval = "data/eval.jsonl"
prompt = "question"
eval_size = 50

[grader]
type = "numeric"
reference = "answer"
normalize = ["strip", "lower"]
tolerance = 0.01

[algorithm]
name = "rloo"
group_size = 16
prompts_per_step = 2
kl_coef = 0.05
kl_estimator = "k1"
aggregation = "seq_mean"
drop_zero_advantage = false

[sampling]
max_new_tokens = 64
temperature = 0.7
top_p = 0.9
top_k = 50
stop = ["\\n\\n", "</answer>"]

[optim]
lr = 2e-6
steps = 200

[eval]
every = 10
samples = 4
temperature = 1.0

[run]
out = "runs/my-job"
seed = 3
device = "cpu"
progress = false
"""


def write(tmp_path, text: str, name: str = "job.toml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def message(tmp_path, text: str, overrides=()) -> str:
    with pytest.raises(ConfigError) as e:
        load_job(write(tmp_path, text), overrides)
    return str(e.value)


def test_defaults():
    job = load_job(None)
    assert job == Job(base_dir=job.base_dir)
    assert job.model.lora is None and job.grader.normalize == ["strip"] and job.sampling.stop == []
    assert job.algorithm.name == "grpo" and job.optim.lr == 1e-6


def test_full_job(tmp_path):
    job = load_job(write(tmp_path, FULL))
    assert job.base_dir == str(tmp_path.resolve())
    assert job.model.lora == LoraConfig(rank=8, alpha=16.0)
    assert isinstance(job.model.lora.alpha, float)  # int accepted where float expected
    assert job.data.prompt == "question" and job.data.completion == "completion"
    assert job.grader.normalize == ["strip", "lower"] and job.grader.tolerance == 0.01
    assert job.algorithm.name == "rloo" and job.algorithm.drop_zero_advantage is False
    assert job.sampling.stop == ["\n\n", "</answer>"] and job.sampling.top_k == 50
    assert job.optim.lr == 2e-6 and job.optim.batch_size == 8  # untouched field keeps its default
    assert job.run.progress is False


def test_overrides_of_each_type(tmp_path):
    job = load_job(
        write(tmp_path, FULL),
        [
            "run.out=runs/x",  # not TOML: a bare string
            'model.path="gpt2"',  # a quoted TOML string
            "algorithm.group_size=4",
            "optim.lr=3e-5",
            "sampling.temperature=1",  # int for a float
            "run.progress=true",
            'sampling.stop=["\\n"]',
            "grader.normalize=[]",
            "model.lora.rank=32",  # merges into the file's lora table
            "data.eval=",  # empty string
        ],
    )
    assert job.run.out == "runs/x" and job.model.path == "gpt2"
    assert job.algorithm.group_size == 4 and job.optim.lr == 3e-5
    assert job.sampling.temperature == 1.0 and isinstance(job.sampling.temperature, float)
    assert job.run.progress is True and job.sampling.stop == ["\n"] and job.grader.normalize == []
    assert job.model.lora == LoraConfig(rank=32, alpha=16.0)
    assert job.data.eval == ""
    job = load_job(None, ["model.lora={ rank = 4 }"])
    assert job.model.lora == LoraConfig(rank=4)


def test_round_trip(tmp_path):
    job = load_job(write(tmp_path, FULL), ['sampling.stop=["a\\"b", "tab\\there", "é"]', "run.out=runs/x"])
    text = job_to_toml(job)
    other = tmp_path / "elsewhere"
    other.mkdir()
    again = load_job(write(other, text, "resolved.toml"))
    assert again == job  # base_dir travels with the file, so relative paths still resolve the same
    assert load_job(write(other, job_to_toml(load_job(None)), "d.toml")) == load_job(None)


def test_unknown_key_did_you_mean(tmp_path):
    msg = message(tmp_path, "[algorithm]\nname = 'grpo'\ngrup_size = 4\n")
    assert "job.toml:3" in msg and "grup_size" in msg
    assert "did you mean 'group_size'?" in msg and "valid keys for [algorithm]:" in msg and "prompts_per_step" in msg


def test_unknown_section(tmp_path):
    msg = message(tmp_path, "[model]\npath = 'tiny'\n\n[algoritm]\nname = 'grpo'\n")
    assert "job.toml:4" in msg and "[algoritm]: unknown section" in msg
    assert "did you mean 'algorithm'?" in msg and "valid sections: model, data" in msg
    msg = message(tmp_path, "steps = 3\n")
    assert "did you mean [optim] steps?" in msg


def test_wrong_type(tmp_path):
    msg = message(tmp_path, "[algorithm]\ngroup_size = 'four'\n")
    assert msg == "job.toml:2: [algorithm] group_size = 'four': expected an integer, got str 'four'".replace(
        "job.toml", str(tmp_path / "job.toml")
    )
    assert "expected true or false, got int 1" in message(tmp_path, "[run]\nprogress = 1\n")
    assert "expected an integer, got bool True" in message(tmp_path, "[run]\nseed = true\n")  # bool is not an int
    assert "expected an integer, got float 4.0" in message(tmp_path, "[optim]\nsteps = 4.0\n")
    assert "expected a list of strings" in message(tmp_path, "[sampling]\nstop = '\\n'\n")
    assert "expected a table like" in message(tmp_path, "[model]\nlora = 16\n")


def test_out_of_range(tmp_path):
    msg = message(tmp_path, "[sampling]\ntop_p = 0\n")
    assert "[sampling] top_p = 0: must be in (0, 1], got 0" in msg
    assert "must be > 0, got -1.0" in message(tmp_path, "[optim]\nlr = -1.0\n")
    with pytest.raises(ConfigError, match=r"^override algorithm.group_size=0: must be >= 1, got 0$"):
        load_job(None, ["algorithm.group_size=0"])
    msg = message(tmp_path, "[model]\nlora = { rank = 0, dropout = 1.5, rnak = 3 }\n")
    assert "lora.rank: must be >= 1, got 0" in msg and "lora.dropout: must be in [0, 1), got 1.5" in msg
    assert "lora.rnak: unknown key; did you mean 'rank'?" in msg


def test_non_finite_numbers_refused(tmp_path):
    """TOML has inf and nan; lr = inf used to pass and end in a sampler traceback."""
    assert "job.toml:2: [optim] lr = inf: must be a finite number, got inf" in message(tmp_path, "[optim]\nlr = inf\n")
    assert "temperature = nan: must be a finite number" in message(tmp_path, "[sampling]\ntemperature = nan\n")
    with pytest.raises(ConfigError, match="kl_coef=-inf: must be a finite number"):
        load_job(None, ["algorithm.kl_coef=-inf"])


def test_non_finite_numbers_inside_tables_refused(tmp_path):
    """Free-form tables (judge sampling_params, a JSON schema, messages) are sent as JSON, which has no inf/nan."""
    msg = message(tmp_path, "[grader]\nsampling_params = { temperature = inf }\n")
    assert msg.startswith(f"{tmp_path / 'job.toml'}:2: [grader] sampling_params = {{'temperature': inf}}: "
                          f"temperature = inf: must be a finite number")
    with pytest.raises(ConfigError, match=r"schema=.*: properties.x.maximum = nan: must be a finite number"):
        load_job(None, ["grader.schema={type='object', properties={x={type='number', maximum=nan}}}"])
    with pytest.raises(ConfigError, match=r"\[0\].w\[1\] = -inf: must be a finite number"):
        load_job(None, ['grader.messages=[{role="user", content="x", w=[1, -inf]}]'])
    assert load_job(None, ["grader.sampling_params={temperature=0.5}"]).grader.sampling_params == {"temperature": 0.5}


def test_job_file_encoding(tmp_path):
    """A byte-order mark is accepted; a byte that is not UTF-8 is named by line and column, not a traceback."""
    (tmp_path / "bom.toml").write_bytes(b"\xef\xbb\xbf[optim]\nlr = 1e-5\n")
    assert load_job(tmp_path / "bom.toml").optim.lr == 1e-5
    (tmp_path / "job.toml").write_bytes(b"[run]\nout = \"caf\xe9\"\n")
    with pytest.raises(ConfigError) as e:
        load_job(tmp_path / "job.toml")
    assert str(e.value) == (f"{tmp_path / 'job.toml'}:2: not valid UTF-8 (byte 0xe9 at column 11); "
                            f"fix: re-save the file as UTF-8")


@pytest.mark.parametrize("name", ["grpo", "dr_grpo", "rloo", "reinforce_pp_baseline"])
def test_group_of_one_with_a_group_baseline_refused(tmp_path, name):
    msg = message(tmp_path, f"[algorithm]\nname = \"{name}\"\ngroup_size = 1\n")
    assert msg.startswith(f"{tmp_path / 'job.toml'}:3: [algorithm] group_size = 1: {name!r} compares each attempt")
    assert "fix: group_size >= 2, or name = \"reinforce\"" in msg
    with pytest.raises(ConfigError, match=rf"^override algorithm.group_size=1: {name!r} compares"):
        load_job(None, [f"algorithm.name={name}", "algorithm.group_size=1"])


@pytest.mark.parametrize("name", ["reinforce", "reinforce_pp", "expert_iteration", "ppo", "sft"])
def test_group_of_one_allowed_without_a_group_baseline(name):
    assert load_job(None, [f"algorithm.name={name}", "algorithm.group_size=1"]).algorithm.group_size == 1


def test_all_problems_reported_at_once(tmp_path):
    msg = message(tmp_path, "[sampling]\ntemperature = -1\ntop_k = -2\n")
    assert "temperature" in msg and "top_k" in msg and len(msg.splitlines()) == 2


def test_bad_algorithm_name_lists_choices(tmp_path):
    msg = message(tmp_path, "[algorithm]\nname = 'grpp'\n")
    assert "job.toml:2: [algorithm] name = 'grpp': unknown algorithm; did you mean 'grpo'? valid: grpo, dr_grpo" in msg
    assert "rloo" in msg and "reinforce" in msg
    msg = message(tmp_path, "[algorithm]\naggregation = 'token-mean'\nkl_estimator = 'k4'\n")
    assert "unknown aggregation; did you mean 'token_mean'?" in msg and "unknown KL estimator" in msg and "k3" in msg
    msg = message(tmp_path, "[grader]\ntype = 'exct'\nnormalize = ['strip', 'lowr']\n")
    assert "unknown grader type; did you mean 'exact'?" in msg
    assert "unknown normalize option 'lowr'; did you mean 'lower'?" in msg
    assert "valid: auto, cpu, cuda" in message(tmp_path, "[run]\ndevice = 'gpu'\n")


def test_grader_cross_checks(tmp_path):
    assert "needs grader.pattern" in message(tmp_path, "[grader]\ntype = 'regex'\n")
    assert "not a valid regular expression" in message(tmp_path, "[grader]\ntype = 'regex'\npattern = '('\n")
    assert "needs grader.function" in message(tmp_path, "[grader]\ntype = 'python'\n")


def test_toml_syntax_error_names_line(tmp_path):
    msg = message(tmp_path, "[model]\npath = 'tiny'\n\n[run]\nout = runs/x\n")
    assert msg.startswith(f"{tmp_path / 'job.toml'}:5: TOML syntax error")


def test_missing_file():
    with pytest.raises(ConfigError, match="nope.toml: cannot read the job file"):
        load_job("nope.toml")


def test_bad_override_syntax():
    with pytest.raises(ConfigError, match=r"override 'group_size=4': expected section.key=value"):
        load_job(None, ["group_size=4"])
    with pytest.raises(ConfigError, match=r"override 'algorithm.group_size': expected section.key=value"):
        load_job(None, ["algorithm.group_size"])
    with pytest.raises(ConfigError, match=r"unknown section 'algo'; did you mean 'algorithm'"):
        load_job(None, ["algo.name=grpo"])
    with pytest.raises(ConfigError, match=r"override algorithm.nam=rloo: unknown key; did you mean 'name'"):
        load_job(None, ["algorithm.nam=rloo"])


def test_help_text_has_every_field_doc():
    text = help_text()
    for section, cls in SECTIONS.items():
        for f in dataclasses.fields(cls):
            assert f"{section}.{f.name} (" in text, f"{section}.{f.name} missing from help"
    assert "algorithm.group_size (int, 8): G: samples per prompt." in text
    assert "model.lora.rank (int, 16):" in text
    assert "grader.normalize (list[str], ['strip']):" in text
    assert text.count("\n") + 1 >= sum(len(dataclasses.fields(c)) for c in SECTIONS.values()) + 4


def test_run_out_under_a_file_gets_one_line(tmp_path):
    """run.out inside a file (or a file itself) is refused naming the field, the path and the fix, not an errno."""
    from rlft.run import make_run_dir

    f = tmp_path / "out.txt"
    f.write_text("mine")
    with pytest.raises(ConfigError, match=r"^run.out = '.*out.txt' is a file, not a folder; fix: set run.out"):
        make_run_dir(f, writable=True)
    with pytest.raises(ConfigError, match=r"^run.out = '.*out.txt/run': cannot write there \(Not a directory\); "
                                          r"fix: set run.out to a folder you can write$"):
        make_run_dir(f / "run", writable=True)
    assert f.read_text() == "mine"
