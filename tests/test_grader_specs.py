"""Grader specs: OpenAI's format (string_check, text_similarity, python, multi, JSON files),
rlft's own (math, json_schema, penalties), templating, the safe formula, and config errors.

Run: python -m pytest -q tests/test_grader_specs.py   (fast; the last test is a CLI smoke run of seconds)
"""

from __future__ import annotations

import json
import pickle
import re
import subprocess
import sys

import pytest

from rlft.config import ConfigError, GraderConfig, load_job
from rlft.rewards.formula import parse_formula
from rlft.rewards.graders import make_grader
from rlft.rewards.templates import check_template, render
from rlft.types import Sample


def score(output: str, item: dict | None = None, **cfg) -> float:
    return make_grader(GraderConfig(**cfg))(Sample(output), item if item is not None else {"answer": "Paris"})


def config_error(tmp_path, text: str, name: str = "job.toml") -> str:
    (tmp_path / name).write_text(text)
    with pytest.raises(ConfigError) as e:
        load_job(tmp_path / name)
    return str(e.value)


# --- string_check ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "operation, output, expected",
    [
        ("eq", "Paris", 1.0),
        ("eq", "paris", 0.0),  # case matters
        ("eq", " Paris", 0.0),  # no normalisation, as in OpenAI's grader
        ("ne", "Lyon", 1.0),
        ("ne", "Paris", 0.0),
        ("like", "The capital is Paris.", 1.0),  # input contains reference
        ("like", "the capital is paris.", 0.0),
        ("ilike", "THE CAPITAL IS PARIS.", 1.0),  # contains, ignoring case
        ("ilike", "Lyon", 0.0),
    ],
)
def test_string_check(operation, output, expected):
    assert score(output, type="string_check", operation=operation, reference="{{item.answer}}") == expected


def test_string_check_defaults_and_json_input():
    # input defaults to {{sample.output_text}}, reference to {{item.answer}}
    assert score("Paris", type="string_check") == 1.0
    cfg = dict(type="string_check", input="{{sample.output_json.city}}")
    assert score('{"city": "Paris"}', **cfg) == 1.0
    assert score("Paris", **cfg) == 0.0  # not JSON: the field renders as "" and fails, it is not an error


# --- text_similarity -------------------------------------------------------------------------


def sim(output: str, reference: str, metric: str) -> float:
    return score(output, {"answer": reference}, type="text_similarity", evaluation_metric=metric)


def test_similarity_by_hand():
    # fuzzy: Indel ratio 2*LCS/(len a + len b) = 2*10/(11+10) = 20/21 (WRatio keeps the plain ratio here)
    assert sim("hello wrld", "hello world", "fuzzy_match") == pytest.approx(20 / 21)
    # "the cat sat on the mat" vs "the cat lay on the mat": 5 of 6 unigrams shared (the x2, cat, on, mat)
    a, b = "the cat sat on the mat", "the cat lay on the mat"
    assert sim(a, b, "rouge_1") == pytest.approx(5 / 6)
    assert sim(a, b, "rouge_2") == pytest.approx(3 / 5)  # the-cat, on-the, the-mat of 5 bigrams each
    assert sim(a, b, "rouge_l") == pytest.approx(5 / 6)  # LCS "the cat on the mat"
    assert sim(a, a, "bleu") == pytest.approx(1.0) and sim(a, a, "bleu") <= 1.0
    assert sim("", a, "bleu") == 0.0 and sim("", a, "fuzzy_match") == 0.0


def test_similarity_matches_the_libraries():
    import sacrebleu
    from nltk.translate.gleu_score import sentence_gleu
    from rapidfuzz import fuzz
    from rouge_score import rouge_scorer

    out, ref = "The quick brown fox jumped over a lazy dog", "The quick brown fox jumps over the lazy dog"
    assert sim(out, ref, "fuzzy_match") == pytest.approx(fuzz.WRatio(out, ref) / 100)
    assert sim(out, ref, "bleu") == pytest.approx(sacrebleu.sentence_bleu(out, [ref]).score / 100)
    assert sim(out, ref, "gleu") == pytest.approx(sentence_gleu([ref.split()], out.split()))
    for n in (1, 3, 5):
        expected = rouge_scorer.RougeScorer([f"rouge{n}"]).score(ref, out)[f"rouge{n}"].fmeasure
        assert sim(out, ref, f"rouge_{n}") == pytest.approx(expected)


def test_cosine_needs_a_local_model(tmp_path):
    with pytest.raises(ConfigError, match="cosine"):  # no package, or no model folder: never a download
        make_grader(GraderConfig(type="text_similarity", evaluation_metric="cosine"), tmp_path)


# --- rlft's own: math, json_schema, penalties -----------------------------------------------


def test_math_equivalence():
    assert score("so the answer is $0.5$", {"answer": "\\frac{1}{2}"}, type="math") == 1.0
    assert score("the answer is 1/2", {"answer": "0.5"}, type="math") == 1.0
    assert score("$x(x+2)$", {"answer": "x^2+2x"}, type="math") == 1.0  # a bare reference is read as LaTeX
    assert score("the answer is 0.6", {"answer": "1/2"}, type="math") == 0.0
    with pytest.raises(ValueError, match="no answer math-verify can parse"):
        score("1", {"answer": ""}, type="math")


def test_json_schema():
    schema = {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}
    assert score('{"name": "Ada"}', type="json_schema", schema=schema) == 1.0
    assert score('{"name": 3}', type="json_schema", schema=schema) == 0.0
    assert score("name: Ada", type="json_schema", schema=schema) == 0.0  # not JSON at all
    with pytest.raises(ConfigError, match="not a valid JSON Schema"):
        make_grader(GraderConfig(type="json_schema", schema={"type": "objekt"}))
    with pytest.raises(ConfigError, match="grader.schema is empty"):
        make_grader(GraderConfig(type="json_schema"))


def test_length_and_format_penalties():
    cfg = dict(type="length_penalty", max_chars=10, buffer_chars=10, penalty=1.0)
    assert score("x" * 10, **cfg) == 0.0
    assert score("x" * 15, **cfg) == -0.5  # 5 of the 10 buffer characters used
    assert score("x" * 25, **cfg) == -1.0
    assert score("x" * 11, **{**cfg, "buffer_chars": 0, "penalty": 0.3}) == -0.3  # a step
    fmt = dict(type="format_penalty", pattern=r"answer \d+$", penalty=0.5)
    assert score("12+30 answer 42", **fmt) == 0.0
    assert score("42", **fmt) == -0.5
    with pytest.raises(ConfigError, match="length_penalty needs the length allowed"):
        make_grader(GraderConfig(type="length_penalty"))


# --- templating ------------------------------------------------------------------------------


def test_templates():
    s = Sample('{"name": "Ada", "tags": ["x", 2]}', ({"name": "lookup", "arguments": {"id": 7}},))
    item = {"answer": 42, "meta": {"city": "Paris"}, "xs": [1, 2]}
    assert render("{{item.answer}}|{{ item.meta.city }}|{{item.xs.1}}", s, item) == "42|Paris|2"
    assert render("{{sample.output_json.name}}|{{sample.output_json.tags.1}}|{{sample.output_json.nope}}", s, item) == "Ada|2|"
    assert render("{{sample.output_tools.0.name}}", s, item) == "lookup"
    assert render("{{sample.output_tools}}", s, item) == '[{"name": "lookup", "arguments": {"id": 7}}]'
    assert render("{{item.meta}}", s, item) == '{"city": "Paris"}'
    with pytest.raises(KeyError, match=r"item has no field 'anser' \(d.jsonl:3\); available fields of item: answer"):
        render("{{item.anser}}", s, {"answer": 1, "_source": "d.jsonl", "_line": 3})
    with pytest.raises(KeyError, match="item.meta has no field 'country'; available fields of item.meta: city"):
        render("{{item.meta.country}}", s, item)


@pytest.mark.parametrize(
    "template, message",
    [
        ("{{sample.text}}", "unknown sample field 'text'; sample fields: output_text, output_json, output_tools"),
        ("{{output_text}}", "must be {{item.FIELD}} or {{sample.FIELD}}"),
        ("{{item.a", "unbalanced"),
    ],
)
def test_template_errors_at_load(template, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        check_template(template, "grader.input")


# --- the formula -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "formula, expected",
    [
        ("a + b * c", 2 + 3 * 4),  # * before +
        ("(a + b) * c", 20.0),
        ("a ^ 3", 8.0),  # ^ is a power, as in OpenAI's formulas
        ("2 * b ^ 2", 18.0),  # the power binds tighter than *
        ("-a ** 2", -4.0),  # and tighter than unary minus
        ("a ^ 3 ^ 2", 2.0**9),  # right-associative
        ("c / a - 1", 1.0),
        ("min(a, b, c) + max(a, 10)", 12.0),
        ("abs(a - c) + floor(2.7) + ceil(0.2)", 2 + 2 + 1),
        ("sqrt(c) * exp(0) + log(exp(2))", 4.0),
        ("log(8, a)", 3.0),
        ("(b > a) * 10 + (b <= a)", 10.0),  # comparisons are 1.0 / 0.0
        ("0 < a < b", 1.0),
    ],
)
def test_formula_values(formula, expected):
    assert parse_formula(formula, {"a", "b", "c"}).evaluate({"a": 2.0, "b": 3.0, "c": 4.0}) == pytest.approx(expected)


@pytest.mark.parametrize(
    "formula, message",
    [
        ("().__class__", "attribute access not allowed at position 1"),
        ("a.__class__.__bases__", "attribute access not allowed"),
        ("__import__('os')", "calling '__import__' not allowed"),
        ("eval('1')", "calling 'eval' not allowed"),
        ("a[0]", "subscripts not allowed"),
        ("(lambda: 1)()", "calling 'lambda: 1' not allowed"),
        ("lambda: 1", "lambda not allowed"),
        ("'a' * 3", "a non-number constant"),
        ("a if b else 1", "if/else"),
        ("min(a, key=b)", "plain positional arguments"),
        ("sqrt(a, b)", "sqrt() takes 1 argument(s), got 2"),
        ("a + wrong", "unknown grader name 'wrong' at position 5"),
        ("a +* b", "syntax error at position 4"),
        ("a // b", "operator FloorDiv not allowed"),
        ("", "empty"),
    ],
)
def test_formula_rejects(formula, message):
    with pytest.raises(ConfigError, match=re.escape(message)) as e:
        parse_formula(formula, {"a", "b"})
    assert str(e.value).startswith(f"calculate_output = {formula.strip()!r}")


def test_formula_runtime_errors_name_the_formula():
    f = parse_formula("a / b", {"a", "b"})
    with pytest.raises(ValueError, match=r"calculate_output = 'a / b' with \{'a': 1.0, 'b': 0.0\}: ZeroDivisionError"):
        f.evaluate({"a": 1.0, "b": 0.0})
    with pytest.raises(ValueError, match="OverflowError"):
        parse_formula("a ^ 2", {"a"}).evaluate({"a": 1e200})


# --- multi, python, files --------------------------------------------------------------------

MULTI = GraderConfig(
    type="multi",
    calculate_output="correct + 0.2 * fmt",
    graders={
        "correct": GraderConfig(type="numeric"),
        "fmt": GraderConfig(type="format_penalty", pattern=r"answer -?\d+$"),
    },
)


def test_multi_end_to_end():
    g = make_grader(MULTI)
    item = {"answer": "42"}
    assert g(Sample("30+12 answer 42"), item) == 1.0  # correct, in format
    assert g(Sample("42"), item) == pytest.approx(0.8)  # correct, format penalty 1 * 0.2
    assert g(Sample("answer 41"), item) == 0.0
    assert g(Sample("41"), item) == pytest.approx(-0.2)
    assert pickle.loads(pickle.dumps(g))(Sample("42"), item) == pytest.approx(0.8)  # ships to other processes


def test_multi_errors():
    def err(**changes) -> str:
        with pytest.raises(ConfigError) as e:
            make_grader(GraderConfig(**{**vars(MULTI), **changes}))
        return str(e.value)

    assert "unknown grader name 'fromat' at position 17" in err(calculate_output="correct + 0.2 * fromat")
    assert "does not use fmt" in err(calculate_output="correct")
    assert "grader.graders is empty" in err(graders={})
    assert "must be an identifier" in err(graders={"my-grader": GraderConfig()}, calculate_output="1")
    bad_sub = {"correct": GraderConfig(type="regex"), "fmt": MULTI.graders["fmt"]}
    assert "grader.graders.correct.pattern is empty" in err(graders=bad_sub)


def test_python_source_sandboxed():
    pytest.importorskip("rlft.rewards.code")  # the sandbox's python-grader runner
    source = "def grade(sample, item) -> float:\n    return float(sample['output_text'].strip() == item['answer'])\n"
    g = make_grader(GraderConfig(type="python", source=source))
    assert g(Sample(" Paris\n"), {"answer": "Paris"}) == 1.0
    assert g(Sample("Lyon"), {"answer": "Paris"}) == 0.0


def test_python_source_checked_without_running():
    with pytest.raises(ConfigError, match="syntax error at line 1"):
        make_grader(GraderConfig(type="python", source="def grade(sample, item) return 1"))
    with pytest.raises(ConfigError, match="no top-level `def grade"):
        make_grader(GraderConfig(type="python", source="def score(sample, item):\n    return 1\n"))
    with pytest.raises(ConfigError, match="either function .* or source"):
        make_grader(GraderConfig(type="python", source="x", function="a.py:f"))


OPENAI_FILE = {
    "type": "multi",
    "name": "extraction",
    "graders": {
        "city": {"type": "string_check", "name": "city", "operation": "ilike",
                 "input": "{{sample.output_json.city}}", "reference": "{{item.city}}"},
        "why": {"type": "text_similarity", "name": "why", "evaluation_metric": "rouge_1", "pass_threshold": 0.5,
                "input": "{{sample.output_json.why}}", "reference": "{{item.why}}"},
    },
    "calculate_output": "0.5 * city + 0.5 * why",
}


def test_openai_json_file(tmp_path):
    (tmp_path / "grader.json").write_text(json.dumps(OPENAI_FILE))
    (tmp_path / "job.toml").write_text('[grader]\nfile = "grader.json"\n')
    job = load_job(tmp_path / "job.toml")
    g = make_grader(job.grader, job.base_dir)
    out = json.dumps({"city": "paris", "why": "the capital of France"})
    # city: "paris" ilike "Paris" = 1; why: unigrams 4 vs 4 ("the capital of france"), all shared = 1
    assert g(Sample(out), {"city": "Paris", "why": "The capital of France"}) == 1.0
    # rouge_1 of "the capital of France" against "capital": P 1/4, R 1 -> F 2*(1/4)/(5/4) = 0.4
    assert g(Sample(out), {"city": "Lyon", "why": "capital"}) == pytest.approx(0.5 * 0.4)
    (tmp_path / "wrapped.json").write_text(json.dumps({"grader": OPENAI_FILE}))  # {"grader": {...}} works too
    assert make_grader(GraderConfig(file="wrapped.json"), tmp_path)(Sample(out), {"city": "Paris", "why": "x"}) == 0.5


def test_openai_file_errors(tmp_path):
    judge = {**OPENAI_FILE, "graders": {**OPENAI_FILE["graders"], "tone": {"type": "score_model", "input": []}}}
    for name, content in [("judge.json", json.dumps(judge)), ("broken.json", '{"type": "multi",\n "graders": }')]:
        (tmp_path / name).write_text(content)
    msg = config_error(tmp_path, '[grader]\nfile = "judge.json"\n')
    assert "does not use tone" in msg  # a judge is read from the file like any grader (rlft.rewards.judge)
    assert "broken.json:2:13: not valid JSON" in config_error(tmp_path, '[grader]\nfile = "broken.json"\n')
    assert "cannot read" in config_error(tmp_path, '[grader]\nfile = "missing.json"\n')
    msg = config_error(tmp_path, '[grader]\nfile = "judge.json"\ntype = "multi"\n')
    assert "the grader comes from the file" in msg and "remove grader.type" in msg
    bad = {**OPENAI_FILE, "calculate_output": "city + wy"}
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    assert "grader.json" not in (msg := config_error(tmp_path, '[grader]\nfile = "bad.json"\n'))
    assert "bad.json: grader.calculate_output = 'city + wy': unknown grader name 'wy' at position 8" in msg


# --- job files: TOML specs and their errors --------------------------------------------------

TOML_MULTI = """
[grader]
type = "multi"
calculate_output = "correct + 0.2 * fmt"

[grader.graders.correct]
type = "numeric"

[grader.graders.fmt]
type = "format_penalty"
pattern = 'answer \\d+$'
"""


def test_toml_multi_loads_overrides_and_round_trips(tmp_path):
    from rlft.config import job_to_toml

    (tmp_path / "job.toml").write_text(TOML_MULTI)
    job = load_job(tmp_path / "job.toml", ["grader.graders.fmt.penalty=0.5"])
    assert job.grader.graders["fmt"].penalty == 0.5 and job.grader.graders["correct"].type == "numeric"
    assert make_grader(job.grader)(Sample("42"), {"answer": 42}) == pytest.approx(0.9)
    (tmp_path / "resolved.toml").write_text(job_to_toml(job))
    assert load_job(tmp_path / "resolved.toml") == job


def test_toml_spec_errors(tmp_path):
    msg = config_error(tmp_path, TOML_MULTI.replace('"numeric"', '"numerc"'))
    assert "graders.correct.type: unknown grader type; did you mean 'numeric'?" in msg
    msg = config_error(tmp_path, TOML_MULTI.replace("0.2 * fmt", "0.2 * fmt + bonus"))
    assert "grader.calculate_output = 'correct + 0.2 * fmt + bonus': unknown grader name 'bonus' at position 23" in msg
    msg = config_error(tmp_path, "[grader]\ntype = 'string_check'\noperation = 'equals'\n")
    assert "unknown string_check operation; valid: eq, ne, like, ilike" in msg
    msg = config_error(tmp_path, "[grader]\ntype = 'text_similarity'\nevaluation_metric = 'rouge-l'\n")
    assert "did you mean 'rouge_l'?" in msg
    msg = config_error(tmp_path, "[grader]\ntype = 'string_check'\ninput = '{{sample.output}}'\n")
    assert "grader.input = '{{sample.output}}': unknown sample field 'output'" in msg
    msg = config_error(tmp_path, "[grader]\ntype = 'score_modle'\n")
    assert "unknown grader type" in msg and "did you mean 'score_model'?" in msg


def test_cli_rl_job_with_a_multi_grader(tmp_path, tiny_dir):
    """Smoke: `rlft train` on the tiny model with a multi grader, as a user runs it."""
    from rlft.tasks import arithmetic

    train, held_out = arithmetic.make_splits(2, 20, 4, seed=0, forget=0.5)
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(it) + "\n" for it in train))
    (tmp_path / "eval.jsonl").write_text("".join(json.dumps(it) + "\n" for it in held_out))
    (tmp_path / "job.toml").write_text(f'[model]\npath = "{tiny_dir}"\n[data]\ntrain = "train.jsonl"\n'
                                       f'eval = "eval.jsonl"\n{TOML_MULTI}\n[algorithm]\nprompts_per_step = 2\n'
                                       'group_size = 2\n[sampling]\nmax_new_tokens = 4\n[optim]\nsteps = 2\n'
                                       '[run]\nout = "run"\nprogress = false\n')
    out = subprocess.run([sys.executable, "-m", "rlft.cli", "train", "job.toml"], capture_output=True, text=True,
                         cwd=tmp_path, timeout=600)
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in (tmp_path / "run/metrics.jsonl").read_text().splitlines()]
    rewards = [r["reward_mean"] for r in rows if "reward_mean" in r]
    assert len(rewards) == 2 and all(-0.2 - 1e-6 <= r <= 1.0 for r in rewards)  # the formula's range
    assert "calculate_output" in (tmp_path / "run/config.toml").read_text()


# --- check-grader ----------------------------------------------------------------------------


def probe_rows(tmp_path, grader: str):
    from rlft.rewards import probe

    items = [{"prompt": f"{a}+{a}=", "answer": str(2 * a)} for a in range(10, 40)]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(it) + "\n" for it in items))
    (tmp_path / "job.toml").write_text(f'[data]\ntrain = "d.jsonl"\n[grader]\n{grader}\n')
    job = load_job(tmp_path / "job.toml")
    rows = probe.check(job, make_grader(job.grader, job.base_dir), items)
    return {r.name: r for r in rows}, probe.flagged(rows)


def test_check_grader_flags_a_hackable_grader(tmp_path):
    rows, flagged = probe_rows(tmp_path, 'type = "contains"')
    assert rows["reference"].mean == 1.0 and rows["empty"].mean == 0.0
    assert rows["buried"].mean == 1.0 and rows["long"].mean == 1.0  # "contains" takes the answer anywhere
    assert flagged == ["long", "buried"]
    rows, flagged = probe_rows(tmp_path, 'type = "exact"')
    assert rows["reference"].mean == 1.0 and flagged == []  # exact match: no probe passes
    assert rows["format_only"].mean == 0.0  # digits changed: 20 -> 31


def test_check_grader_cli(tmp_path):
    probe_rows(tmp_path, 'type = "contains"')
    out = subprocess.run([sys.executable, "-m", "rlft.cli", "check-grader", "job.toml", "--items", "10"],
                         capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert out.returncode == 1 and "reward-hacking risk: long, buried" in out.stdout, out.stdout + out.stderr


def test_example_jobs_load():
    from pathlib import Path

    for job_file in sorted(Path(__file__).parent.parent.glob("examples/multi_grader/*.toml")):
        job = load_job(job_file)  # builds the whole grader spec, grader.json included
        assert job.grader.type == "multi" or job.grader.file == "grader.json"
