"""Property-based tests: random malformed dataset lines and job settings give a clean error
(DataError / ConfigError naming where), never a traceback from somewhere else.

Run: python -m pytest -q tests/test_properties.py
"""

import dataclasses
import json
import os
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rlft.config import SECTIONS, ConfigError, Job, load_job
from rlft.data import DataError, load_items

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
messages = st.lists(
    st.fixed_dictionaries({"role": st.sampled_from(["user", "system", "bot", ""]), "content": json_values}),
    max_size=3,
)
rows = st.dictionaries(
    st.sampled_from(["prompt", "answer", "completion", "other"]),
    json_values | messages | st.text(max_size=30),
    max_size=4,
).map(json.dumps)
garbage = st.text(max_size=60).filter(lambda s: "\n" not in s and "\r" not in s)
lines = st.lists(rows | garbage | st.just('{"prompt": "x", ') | st.just("[1, 2]"), min_size=1, max_size=12)

# RLFT_HYPOTHESIS_EXAMPLES=2000 for a longer search
FAST = settings(max_examples=int(os.environ.get("RLFT_HYPOTHESIS_EXAMPLES", 60)), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FAST
@given(lines=lines, skip=st.booleans())
def test_any_jsonl_loads_or_fails_with_file_and_line(lines, skip):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "data.jsonl"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        try:
            items = load_items(str(path), required=["answer"], prompt_field="prompt", text_fields=["completion"],
                               max_errors=5, skip_invalid=skip)
        except DataError as e:
            assert str(e)
            assert all(err.startswith(f"{path}:") for err in e.errors)
            return
        for it in items:
            assert it["_source"] == str(path) and it["_line"] >= 1
            assert isinstance(it["completion"], str) and it["completion"].strip()
            assert it["answer"] is not None
            p = it["prompt"]
            assert (isinstance(p, str) and p.strip()) or (isinstance(p, list) and p)


def _keys() -> list[str]:
    out = []
    for section, cls in SECTIONS.items():
        out += [f"{section}.{f.name}" for f in dataclasses.fields(cls)]
    return out


keys = st.sampled_from(_keys()) | st.text(alphabet="abcdefghijklmnopqrstuvwxyz._", min_size=1, max_size=20)
values = st.text(max_size=15).filter(lambda s: "\n" not in s) | st.integers().map(str) | st.floats().map(str)


@FAST
@given(overrides=st.lists(st.tuples(keys, values).map(lambda kv: f"{kv[0]}={kv[1]}"), max_size=3))
def test_any_override_gives_a_job_or_a_config_error(overrides):
    try:
        job = load_job(None, overrides)
    except ConfigError as e:
        assert str(e)
        return
    assert isinstance(job, Job)


@FAST
@given(text=st.text(max_size=200))
def test_any_job_file_gives_a_job_or_a_config_error(text):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "job.toml"
        path.write_text(text, encoding="utf-8")
        try:
            load_job(path)
        except ConfigError as e:
            assert str(e)


@FAST
@given(section=st.sampled_from(list(SECTIONS)), key=st.text(max_size=10), value=json_values)
def test_any_toml_table_gives_a_job_or_a_config_error(section, key, value):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "job.toml"
        body = f"[{section}]\n{json.dumps(key)} = {_toml(value)}\n" if _toml(value) is not None else f"[{section}]\n"
        path.write_text(body, encoding="utf-8")
        try:
            load_job(path)
        except ConfigError as e:
            assert str(e)


def _toml(v) -> str | None:
    """A TOML literal for a JSON value, None when TOML cannot express it (null)."""
    if v is None:
        return None
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float, str)):
        return json.dumps(v)
    if isinstance(v, list):
        parts = [_toml(x) for x in v]
        return None if None in parts else "[" + ", ".join(parts) + "]"
    parts = {k: _toml(x) for k, x in v.items()}
    return None if None in parts.values() else "{" + ", ".join(f"{json.dumps(k)} = {x}" for k, x in parts.items()) + "}"
