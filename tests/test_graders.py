"""Rule graders against hand-worked cases, and the errors a user sees.

Run: python -m pytest tests/test_graders.py -q   (fast, no model)
"""

from __future__ import annotations

import inspect
import pickle

import pytest

from rlft.config import ConfigError, GraderConfig
from rlft.rewards.graders import GRADERS, make_grader, parse_last_number
from rlft.types import Sample


def grade(output: str, answer, **cfg) -> float:
    return make_grader(GraderConfig(**cfg))(Sample(output), {"answer": answer})


def test_table_entries_share_one_signature():
    assert list(GRADERS)[:5] == ["exact", "numeric", "regex", "contains", "python"]
    for name, factory in GRADERS.items():
        assert list(inspect.signature(factory).parameters) == ["cfg", "base_dir", "where"], name


def test_exact_with_normalisation():
    assert grade("  Paris \n", "Paris") == 1.0  # default normalize = ["strip"]
    assert grade("paris", "Paris") == 0.0
    assert grade("paris", "Paris", normalize=["lower"]) == 1.0
    assert grade(" Paris ", "Paris", normalize=[]) == 0.0
    assert grade("New   York\n City", "new york city", normalize=["collapse_whitespace", "lower"]) == 1.0
    assert grade("It's Paris!", "its paris", normalize=["remove_punctuation", "lower"]) == 1.0
    assert grade("42", 42) == 1.0  # reference compared as str(item[reference])


@pytest.mark.parametrize(
    "text, expected",
    [
        ("The answer is 42.", 42.0),  # trailing period is not a decimal point
        ("first 3 then -7", -7.0),
        ("total: $1,234.50", 1234.5),  # thousands separator
        ("x = 3/4", 0.75),  # simple fraction
        ("between 3-5", 5.0),  # a hyphen glued to a digit is not a minus sign
        ("list 1,2,3", 3.0),  # not a thousands separator: "2" has one digit
        ("about .5", 0.5),
        ("1e3 items", 1000.0),
        ("no digits here", None),
        ("1/0 then nothing", None),  # a zero denominator is not a number
    ],
)
def test_parse_last_number(text, expected):
    assert parse_last_number(text) == expected


def test_numeric():
    def grade_n(output, answer, **cfg):
        return grade(output, answer, type="numeric", **cfg)

    assert grade_n("so x = 12", "12") == 1.0
    assert grade_n("so x = 12.0000001", 12) == 1.0  # |diff| 1e-7 <= tolerance 1e-6
    assert grade_n("so x = 12.1", 12) == 0.0
    assert grade_n("12.1", 12, tolerance=0.2) == 1.0
    assert grade_n("101", 100, tolerance=0.0, rel_tolerance=0.01) == 1.0  # |1| <= 0.01 * 100
    assert grade_n("102", 100, tolerance=0.0, rel_tolerance=0.01) == 0.0
    assert grade_n("It is 1,000,000", "1,000,000") == 1.0
    assert grade_n("half: 1/2", "0.5") == 1.0
    assert grade_n("I don't know", "3") == 0.0
    with pytest.raises(ValueError, match=r"grader.reference field 'answer' = 'three' is not a number"):
        grade_n("3", "three")


def test_regex():
    assert grade("The capital is Paris.", None, type="regex", pattern=r"\bParis\b") == 1.0
    assert grade("Parisian", None, type="regex", pattern=r"\bParis\b") == 0.0
    with pytest.raises(ConfigError, match=r"grader.pattern = '\(': not a valid regular expression"):
        make_grader(GraderConfig(type="regex", pattern="("))
    with pytest.raises(ConfigError, match=r"grader.pattern is empty"):
        make_grader(GraderConfig(type="regex"))


def test_contains():
    assert grade("I think it's PARIS, France", "Paris", type="contains", normalize=["lower"]) == 1.0
    assert grade("I think it's Lyon", "Paris", type="contains") == 0.0
    with pytest.raises(ValueError, match="is empty after normalisation"):
        grade("anything", "  ", type="contains")


def test_missing_reference_names_field_and_item():
    g = make_grader(GraderConfig(reference="label"))
    with pytest.raises(KeyError, match=r"'label' is missing from the item \(d.jsonl:3\); item fields: prompt, answer"):
        g(Sample("x"), {"prompt": "p", "answer": "a", "_source": "d.jsonl", "_line": 3})


def test_python_grader_from_file(tmp_path):
    (tmp_path / "g").mkdir()
    (tmp_path / "g" / "mygrader.py").write_text(
        "def score(sample, item):\n"
        "    return sample.output_text.count(item['answer'])\n"  # an int: coerced to float
        "def ok(sample, item):\n"
        "    return sample.output_text == item['answer']\n"  # a bool
        "def bad(sample, item):\n"
        "    return 'yes'\n"
    )
    cfg = GraderConfig(type="python", function="g/mygrader.py:score")
    g = make_grader(cfg, base_dir=tmp_path)
    r = g(Sample("ab ab"), {"answer": "ab"})
    assert r == 2.0 and type(r) is float
    assert pickle.loads(pickle.dumps(g))(Sample("ab"), {"answer": "ab"}) == 1.0  # ships to other processes
    ok = make_grader(GraderConfig(type="python", function="g/mygrader.py:ok"), base_dir=tmp_path)
    assert ok(Sample("ab"), {"answer": "ab"}) == 1.0 and ok(Sample("x"), {"answer": "ab"}) == 0.0
    bad = make_grader(GraderConfig(type="python", function="g/mygrader.py:bad"), base_dir=tmp_path)
    expected = r"grader function 'g/mygrader.py:bad' returned str 'yes'; it must return a number"
    with pytest.raises(TypeError, match=expected):
        bad(Sample("x"), {})


def test_python_grader_from_module():
    g = make_grader(GraderConfig(type="python", function="operator:eq"))  # eq(sample, item) -> bool
    assert g(Sample("x"), {}) == 0.0


def test_python_grader_errors(tmp_path):
    (tmp_path / "broken.py").write_text("import not_a_module_xyz\n")
    (tmp_path / "fine.py").write_text("def score(s, i):\n    return 1.0\nVALUE = 3\n")

    def err(function: str) -> str:
        with pytest.raises(ConfigError) as e:
            make_grader(GraderConfig(type="python", function=function), base_dir=tmp_path)
        return str(e.value)

    assert "grader.function = 'missing.py:score': file not found" in err("missing.py:score")
    assert "importing" in err("broken.py:score") and "ModuleNotFoundError" in err("broken.py:score")
    assert "function 'scroe' not found in fine.py; callables there: score" in err("fine.py:scroe")
    assert "'VALUE' is not callable" in err("fine.py:VALUE")
    assert "cannot import module 'no_such_pkg_xyz'" in err("no_such_pkg_xyz:fn")
    assert 'expected "path/to/file.py:function"' in err("fine.py")
    assert "grader.function is empty" in err("")


def test_make_grader_rejects_unknown_type():
    with pytest.raises(ConfigError, match=r"grader.type = 'fuzzy': unknown grader; valid: exact, numeric, regex"):
        make_grader(GraderConfig(type="fuzzy"))


def test_code_tests_grader_runs_the_models_code_in_the_sandbox():
    pytest.importorskip("rlft.rewards.sandbox")
    from rlft.config import load_job
    from rlft.rewards.graders import make_grader
    from rlft.types import Sample

    grader = make_grader(load_job(None, ["grader.type=code_tests"]).grader)
    item = {"tests": "assert add(1, 2) == 3\nassert add(2, 2) == 4\n"}
    fenced = "def add(a, b):\n    return {}\n"
    assert grader(Sample(output_text=f"Here:\n```python\n{fenced.format('a + b')}```"), item) == 1.0
    assert grader(Sample(output_text=f"```python\n{fenced.format('3')}```"), item) == 0.5  # 1 of 2 tests
    assert grader(Sample(output_text='print("PASS")\nimport sys; sys.exit(0)'), item) == 0.0  # no add: nothing passes
