"""Reading a job: TOML file + ``section.key=value`` overrides -> a validated ``Job``."""

from __future__ import annotations

import dataclasses
import math
import re
import tomllib
import typing
from pathlib import Path
from typing import Any, Callable, Sequence

from rlft.config.checks import cross_checks, did_you_mean, gym_grader, key_hint
from rlft.config.algorithm_checks import ALGORITHM_CHOICES, ALGORITHM_RANGES, algorithm_checks
from rlft.config.files import read_toml
from rlft.config.sections import (
    ConfigError,
    LoraConfig,
    JudgeConfig,
    GraderConfig,
    Job,
    SECTIONS,
)

# --- value checks: "section.key" -> (predicate, what the value must be) ----------------------

_RANGES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "model.max_length": (lambda v: v >= 1, ">= 1"),
    "model.lora.rank": (lambda v: v >= 1, ">= 1"),
    "model.lora.alpha": (lambda v: v > 0, "> 0"),
    "model.lora.dropout": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "data.eval_size": (lambda v: v >= 0, ">= 0 (0 = all)"),
    "data.max_errors": (lambda v: v >= 1, ">= 1"),
    "grader.tolerance": (lambda v: v >= 0, ">= 0"),
    "grader.rel_tolerance": (lambda v: v >= 0, ">= 0"),
    "grader.max_chars": (lambda v: v >= 0, ">= 0"),
    "grader.buffer_chars": (lambda v: v >= 0, ">= 0 (0 = a step)"),
    "grader.penalty": (lambda v: v >= 0, ">= 0 (the score goes down to -penalty)"),
    "grader.time_limit": (lambda v: v >= 0, ">= 0 (seconds; 0 = no limit)"),
    "grader.judge.max_concurrency": (lambda v: v >= 1, ">= 1"),
    "grader.judge.timeout": (lambda v: v > 0, "> 0 (seconds)"),
    "grader.judge.max_retries": (lambda v: v >= 0, ">= 0"),
    "grader.judge.backoff": (lambda v: v >= 0, ">= 0 (seconds)"),
    "grader.judge.price_input": (lambda v: v >= 0, ">= 0 (USD per 1M tokens)"),
    "grader.judge.price_output": (lambda v: v >= 0, ">= 0 (USD per 1M tokens)"),
    **ALGORITHM_RANGES,
    "sampling.max_new_tokens": (lambda v: v >= 1, ">= 1"),
    "sampling.temperature": (lambda v: v >= 0, ">= 0 (0 = greedy)"),
    "sampling.top_p": (lambda v: 0 < v <= 1, "in (0, 1]"),
    "sampling.top_k": (lambda v: v >= 0, ">= 0 (0 = off)"),
    "optim.lr": (lambda v: v > 0, "> 0"),
    "optim.steps": (lambda v: v >= 0, ">= 0"),
    "optim.warmup_steps": (lambda v: v >= 0, ">= 0"),
    "optim.weight_decay": (lambda v: v >= 0, ">= 0"),
    "optim.max_grad_norm": (lambda v: v >= 0, ">= 0 (0 = no clipping)"),
    "optim.batch_size": (lambda v: v >= 1, ">= 1"),
    "optim.micro_batch_size": (lambda v: v >= 0, ">= 0 (0 = whole batch)"),
    "optim.max_skipped_updates": (lambda v: v >= 0, ">= 0 (0 = never stop)"),
    "run.keep_checkpoints": (lambda v: v >= 0, ">= 0 (0 = keep all)"),
    "run.max_errored_fraction": (lambda v: 0 <= v <= 1, "in [0, 1] (1 = never stop)"),
    "run.errored_window": (lambda v: v >= 1, ">= 1"),
    "world.max_turns": (lambda v: v >= 1, ">= 1"),
    "game.openings": (lambda v: 0 <= v <= 8, "in [0, 8]"),
    "game.eval_games": (lambda v: v >= 2, ">= 2 (half as each side)"),
    "eval.every": (lambda v: v >= 0, ">= 0 (0 = only at the end)"),
    "eval.size": (lambda v: v >= 0, ">= 0 (0 = all)"),
    "eval.samples": (lambda v: v >= 1, ">= 1"),
    "eval.temperature": (lambda v: v >= 0, ">= 0 (0 = greedy)"),
    "run.checkpoint_every": (lambda v: v >= 0, ">= 0 (0 = only final)"),
    "run.log_samples": (lambda v: v >= 0, ">= 0"),
    "distributed.samplers": (lambda v: v >= 0, ">= 0 (0 = one process)"),
    "distributed.learner_ranks": (lambda v: v >= 1, ">= 1"),
    "distributed.max_staleness": (lambda v: v >= 0, ">= 0 (0 = strictly on-policy)"),
    "distributed.is_cap": (lambda v: v >= 1, ">= 1 (an importance-weight cap below 1 would shrink on-policy samples)"),
    "distributed.sampler_restarts": (lambda v: v >= 0, ">= 0"),
    "distributed.learner_timeout": (lambda v: v > 0, "> 0 (seconds)"),
    "distributed.listen_host": (lambda v: bool(v.strip()), "an address: 127.0.0.1 (this machine only) or this machine's, e.g. 10.0.0.5"),
    "distributed.vllm_gpu_memory": (lambda v: 0 < v <= 1, "in (0, 1]"),
}


def _table(module: str, name: str) -> Callable[[], list[str]]:
    """The keys of ``module.name``, imported when first needed (the algos pull in torch)."""

    def keys() -> list[str]:
        import importlib

        return list(getattr(importlib.import_module(module), name))

    return keys


# "section.key" -> (what it is, its valid names); fields that pick from a table
_CHOICES: dict[str, tuple[str, Callable[[], list[str]]]] = {
    "model.dtype": ("dtype", lambda: ["auto", "float32", "bfloat16", "float16"]),
    "run.device": ("device", lambda: ["auto", "cpu", "cuda"]),
    "algorithm.name": ("algorithm", _table("rlft.methods", "METHODS")),
    "algorithm.gae_level": ("GAE level", _table("rlft.algos.values", "GAE")),
    "algorithm.kl_estimator": ("KL estimator", _table("rlft.algos.losses", "KL_ESTIMATORS")),
    "algorithm.aggregation": ("aggregation", _table("rlft.algos.losses", "AGGREGATIONS")),
    **ALGORITHM_CHOICES,
    "world.tool_format": ("tool-call format", lambda: ["auto", *_table("rlft.envs.tools", "TOOL_FORMATS")()]),
    "game.opponents": ("opponent", _table("rlft.envs.games.tictactoe", "PLAYERS")),
    "optim.schedule": ("learning-rate schedule", _table("rlft.learner", "SCHEDULES")),
    "grader.type": ("grader type", _table("rlft.rewards.graders", "GRADERS")),
    "grader.normalize": ("normalize option", _table("rlft.rewards.graders", "NORMALIZERS")),
    "grader.operation": ("string_check operation", _table("rlft.rewards.specs", "OPERATIONS")),
    "grader.evaluation_metric": ("text_similarity metric", _table("rlft.rewards.similarity", "METRICS")),
    "distributed.sampler": ("sampler engine", _table("rlft.rollout.engines", "ENGINES")),
    "grader.judge.backend": ("judge backend", _table("rlft.rewards.judge_client", "BACKENDS")),
}


def _choices(name: str) -> tuple[str, list[str]] | None:
    """(what it is, valid names) for fields that pick from a table."""
    if name not in _CHOICES:
        return None
    what, keys = _CHOICES[name]
    return what, keys()


class _Bad(Exception):
    """One problem with one value; the caller adds where it came from."""


# --- loading ---------------------------------------------------------------------------------


def load_job(path: str | Path | None, overrides: Sequence[str] = ()) -> Job:
    """Read a job file (None = all defaults), apply ``section.key=value`` overrides, validate."""
    raw: dict[str, Any] = {}
    lines: dict[tuple[str, ...], int] = {}
    base_dir = str(Path.cwd())
    fname = "<defaults>"
    if path is not None:
        p = Path(path)
        fname = str(path)
        raw, text = read_toml(path)
        lines = _key_lines(text)
        base_dir = str(p.resolve().parent)
    # where each value came from, for messages: (section, key) -> prefix
    src: dict[tuple[str, str], str] = {}
    errors: list[str] = []
    if "base_dir" in raw:  # written by job_to_toml so a saved config resolves paths as the original did
        base_dir = raw.pop("base_dir")
        if not isinstance(base_dir, str):
            raise ConfigError(f"{fname}: base_dir = {base_dir!r}: expected a string (a folder)")
    for name, value in raw.items():
        line = lines.get((name,)) or lines.get(("", name))
        where = f"{fname}:{line}" if line else fname
        if name not in SECTIONS:
            owners = [s for s, cls in SECTIONS.items() if name in _field_names(cls)]
            hint = f"did you mean [{owners[0]}] {name}? " if owners else did_you_mean(name, list(SECTIONS))
            errors.append(f"{where}: [{name}]: unknown section; {hint}valid sections: {', '.join(SECTIONS)}")
        elif not isinstance(value, dict):
            keys = ", ".join(_field_names(SECTIONS[name]))
            errors.append(f"{where}: {name} = {value!r}: expected a table [{name}] with keys {keys}")
        else:
            for key, v in value.items():
                kl = lines.get((name, key))
                src[(name, key)] = f"{fname}:{kl}: [{name}] {key} = {v!r}" if kl else f"{fname}: [{name}] {key} = {v!r}"
    if errors:
        raise ConfigError("\n".join(errors))
    for ov in overrides:
        try:
            section, key, value = _parse_override(ov)
        except _Bad as e:
            errors.append(f"override {ov!r}: {e}")
            continue
        if section not in SECTIONS:
            errors.append(
                f"override {ov}: unknown section {section!r}; {did_you_mean(section, list(SECTIONS))}"
                f"valid sections: {', '.join(SECTIONS)}"
            )
            continue
        table = raw.setdefault(section, {})
        head, *rest = key.split(".")
        if rest:  # model.lora.rank=8, grader.graders.fmt.penalty=0.5: merge into the nested tables
            value = _merged(table.get(head), rest, value)
        table[head] = value
        src[(section, head)] = f"override {ov}"
    sections = {}
    for name, cls in SECTIONS.items():
        table = raw.get(name, {})
        sections[name] = _build(cls, name, table, lambda k, n=name: src.get((n, k), f"{fname}: [{n}] {k}"), errors)
    if not errors:
        sections["grader"] = gym_grader(sections, src)
        errors += cross_checks(sections, src)
        errors += algorithm_checks(sections, src)
    if not errors:  # still before any model loads
        errors += _grader_checks(sections["grader"], base_dir, f"{fname}: [grader]")
    if errors:
        raise ConfigError("\n".join(errors))
    return Job(**sections, base_dir=base_dir)


def _merged(table: Any, keys: list[str], value: Any) -> dict:
    """A copy of ``table`` (a dict, else {}) with ``value`` set at the nested path ``keys``."""
    out = dict(table) if isinstance(table, dict) else {}
    out[keys[0]] = _merged(out.get(keys[0]), keys[1:], value) if len(keys) > 1 else value
    return out


def _parse_override(ov: str) -> tuple[str, str, Any]:
    name, eq, text = ov.partition("=")
    name = name.strip()
    if not eq or "." not in name or not all(name.split(".")):
        raise _Bad("expected section.key=value, e.g. algorithm.group_size=4 or run.out=runs/x")
    try:
        value = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        value = text  # a bare string: run.out=runs/x
    section, key = name.split(".", 1)
    return section, key, value


def _field_names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def _build(cls: type, dotted: str, table: dict, where: Callable[[str], str], errors: list[str]) -> Any:
    """Type-check and range-check one table, appending problems to ``errors``."""
    hints = typing.get_type_hints(cls)
    names = _field_names(cls)
    kwargs = {}
    for key, value in table.items():
        name = f"{dotted}.{key}"
        if key not in names:
            valid = ", ".join(names)
            errors.append(f"{where(key)}: unknown key; {key_hint(key, names, dotted)}valid keys for [{dotted}]: {valid}")
            continue
        try:
            if hints[key] in (LoraConfig | None, JudgeConfig):  # nested tables: [model.lora], [grader.judge]
                sub = LoraConfig if hints[key] == LoraConfig | None else JudgeConfig
                if not isinstance(value, dict):
                    raise _Bad(f"expected a table like {_EXAMPLES[sub]}, got {type(value).__name__}")
                n_before = len(errors)
                value = _build(sub, name, value, lambda k, w=where(key), n=key: f"{w}: {n}.{k}", errors)
                if len(errors) > n_before:
                    continue
            elif hints[key] == dict[str, GraderConfig]:  # multi's sub-graders: tables like [grader] itself
                n_before = len(errors)
                value = _build_graders(value, where(key), errors)
                if len(errors) > n_before:
                    continue
            else:
                value = _coerce(hints[key], value)
                _check_value(name, value)
        except _Bad as e:
            errors.append(f"{where(key)}: {e}")
            continue
        kwargs[key] = value
    return cls(**kwargs)


_EXAMPLES = {LoraConfig: "{ rank = 16, alpha = 32 }", JudgeConfig: "{ base_url = \"http://127.0.0.1:8000/v1\" }"}
_TYPE_WORDS = {int: "an integer", float: "a number", str: "a string (in quotes)", bool: "true or false"}


def grader_from_dict(table: dict, where: str) -> GraderConfig:
    """A checked GraderConfig from a [grader]-shaped table (a grader JSON file); ``where`` names its source."""
    errors: list[str] = []
    cfg = _build(GraderConfig, "grader", table, lambda k: f"{where}: {k} = {table[k]!r}", errors)
    if errors:
        raise ConfigError("\n".join(errors))
    return cfg


def _build_graders(value: Any, where: str, errors: list[str]) -> dict[str, GraderConfig]:
    if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
        raise _Bad("expected named tables, e.g. [grader.graders.correct] with keys like [grader]'s")
    at = where.split(" = ", 1)[0]  # "job.toml:7: [grader] graders", without the value
    return {n: _build(GraderConfig, "grader", t, lambda k, n=n: f"{at}.{n}.{k}", errors) for n, t in value.items()}


def _non_finite(value: Any, at: str = "") -> tuple[str, float] | None:
    """(where, value) of the first inf/nan inside nested tables and lists (``key.sub[2]``), else None."""
    if isinstance(value, float) and not math.isfinite(value):
        return at, value
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for k, v in items:
        if found := _non_finite(v, f"{at}[{k}]" if isinstance(k, int) else f"{at}.{k}" if at else str(k)):
            return found
    return None


def _coerce(hint: Any, value: Any) -> Any:
    if hint in (dict[str, Any], list[dict[str, Any]]) and (found := _non_finite(value)):
        raise _Bad(f"{found[0]} = {found[1]!r}: must be a finite number (JSON has no inf or nan)")
    if hint == dict[str, Any]:
        if not isinstance(value, dict):
            raise _Bad(f"expected a table, e.g. {{ type = \"object\" }}, got {type(value).__name__} {value!r}")
        return dict(value)
    if hint == list[str]:
        if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
            raise _Bad(f"expected a list of strings like [\"a\", \"b\"], got {value!r}")
        return list(value)
    if hint == list[float]:
        if not isinstance(value, list) or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in value):
            raise _Bad(f"expected a list of numbers like [0, 1], got {value!r}")
        if not all(math.isfinite(x) for x in value):
            raise _Bad(f"must be finite numbers, got {value!r}")
        return [float(x) for x in value]
    if hint == list[dict[str, Any]]:
        if not isinstance(value, list) or not all(isinstance(x, dict) for x in value):
            raise _Bad(f"expected a list of tables like [{{ role = \"user\", content = \"...\" }}], got {value!r}")
        return [dict(x) for x in value]
    ok = isinstance(value, hint) and not (hint is int and isinstance(value, bool))
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)  # an int is accepted where a float is expected
    if not ok:
        raise _Bad(f"expected {_TYPE_WORDS[hint]}, got {type(value).__name__} {value!r}")
    if hint is float and not math.isfinite(value):  # TOML has inf and nan; no field means them
        raise _Bad(f"must be a finite number, got {value!r}")
    return value


def _check_value(name: str, value: Any) -> None:
    if name in _RANGES:
        ok, allowed = _RANGES[name]
        if not ok(value):
            raise _Bad(f"must be {allowed}, got {value!r}")
    picked = _choices(name)
    if picked is not None:
        what, valid = picked
        for v in value if isinstance(value, list) else [value]:
            if v not in valid:
                entry = f" {v!r}" if isinstance(value, list) else ""
                raise _Bad(f"unknown {what}{entry}; {did_you_mean(v, valid)}valid: {', '.join(valid)}")


def _grader_checks(g: GraderConfig, base_dir: str, where: str) -> list[str]:
    """The whole grader spec (files, sub-graders, formulas, templates), checked by building it."""
    from rlft.rewards.graders import make_grader  # lazy: the graders import this module
    from rlft.rewards.monitor import make_monitors

    try:
        make_grader(g, base_dir)
        make_monitors(g, base_dir)
    except ConfigError as e:
        return [f"{where}: {e}"]
    return []


def _key_lines(text: str) -> dict[tuple[str, ...], int]:
    """Best-effort 1-based line of each ``[section]`` and ``key =`` (first occurrence), for messages."""
    out: dict[tuple[str, ...], int] = {}
    section = ""
    for i, line in enumerate(text.splitlines(), 1):
        if m := re.match(r"\s*\[\s*([A-Za-z0-9_\-]+)\s*\]", line):
            section = m.group(1)
            out.setdefault((section,), i)
        elif m := re.match(r"\s*([A-Za-z0-9_\-]+)\s*[.=]", line):
            out.setdefault((section, m.group(1)), i)
    return out
