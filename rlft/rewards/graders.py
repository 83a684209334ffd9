"""Rule graders: a grader is a callable ``(sample, item) -> float``.

``sample`` is an ``rlft.types.Sample`` (``.output_text``); ``item`` is the dataset row. Graders
are small frozen dataclasses rather than closures so that they pickle (environment actors in
other processes, DESIGN.md §7). A grader that raises marks the trajectory *errored* in the
loop (DESIGN.md §4), so a bad item raises with a message instead of scoring 0; so does one that
runs past ``grader.time_limit`` (regex, python function; which grader is bounded how: rlft.rewards.limits).

``make_grader(cfg, base_dir)`` picks the factory from ``GRADERS`` at the bottom; every factory
has the signature ``(cfg: GraderConfig, base_dir: Path) -> Grader``.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import numbers
import re
import sys
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import regex as regex_pkg  # the name regex is this module's factory

from rlft.config import ConfigError, GraderConfig
from rlft.rewards import checks, gym, judge, limits, reward_model_grader, specs
from rlft.types import Sample

Grader = Callable[[Sample, dict], float]


def _remove_punctuation(s: str) -> str:
    # Unicode category P* covers ASCII punctuation and the curly quotes / dashes models emit.
    return "".join(c for c in s if not unicodedata.category(c).startswith("P"))


NORMALIZERS: dict[str, Callable[[str], str]] = {
    "strip": str.strip,
    "lower": str.lower,
    "collapse_whitespace": lambda s: " ".join(s.split()),
    "remove_punctuation": _remove_punctuation,
}


def normalize(text: str, steps: tuple[str, ...]) -> str:
    """Apply the named normalisations in order."""
    for step in steps:
        text = NORMALIZERS[step](text)
    return text


def reference_of(item: dict, field: str) -> Any:
    """``item[field]``, or a KeyError that names the field, the row and the fields it has."""
    if field not in item:
        where = f" ({item['_source']}:{item['_line']})" if "_source" in item and "_line" in item else ""
        fields = ", ".join(k for k in item if not k.startswith("_")) or "none"
        raise KeyError(
            f"grader.reference field {field!r} is missing from the item{where}; item fields: {fields}; "
            f"fix: set grader.reference to the field holding the expected answer"
        )
    return item[field]


# --- numbers ---------------------------------------------------------------------------------

# A plain number: thousands-separated (1,234,567) or plain digits, optional decimals, or .5.
_NUM = r"(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?|\.\d+"
# An optional sign (not when glued to a preceding word or digit, so "3-5" is 3 and 5), the number,
# and an optional "/ denominator" for simple fractions.
_NUMBER_RE = re.compile(rf"(?:(?<![\w)])([-−]))?({_NUM})(?:\s*/\s*({_NUM}))?")


def _to_float(sign: str | None, num: str, den: str | None) -> float | None:
    x = float(num.replace(",", ""))
    if den is not None:
        d = float(den.replace(",", ""))
        if d == 0:
            return None
        x /= d
    return -x if sign else x


def parse_last_number(text: str) -> float | None:
    """The last number in ``text`` (ints, decimals, negatives, 1,234, a/b), or None.

    "x = 3/4" -> 0.75; "costs $1,234.50." -> 1234.5; "-7" -> -7.0; "3-5" -> 5.0; "none" -> None.
    """
    for m in reversed(list(_NUMBER_RE.finditer(text))):
        x = _to_float(*m.groups())
        if x is not None:
            return x
    return None


def _parse_reference(value: Any, field: str) -> float:
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        m = _NUMBER_RE.fullmatch(value.strip())
        if m:
            x = _to_float(*m.groups())
            if x is not None:
                return x
    raise ValueError(f"grader.reference field {field!r} = {value!r} is not a number; the numeric grader needs one")


# --- graders ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExactMatch:
    """1.0 when normalised output == normalised str(reference)."""

    reference: str
    normalize: tuple[str, ...]

    def __call__(self, sample: Sample, item: dict) -> float:
        ref = normalize(str(reference_of(item, self.reference)), self.normalize)
        return float(normalize(sample.output_text, self.normalize) == ref)


@dataclass(frozen=True)
class Contains:
    """1.0 when the normalised reference is a substring of the normalised output."""

    reference: str
    normalize: tuple[str, ...]

    def __call__(self, sample: Sample, item: dict) -> float:
        ref = normalize(str(reference_of(item, self.reference)), self.normalize)
        if not ref:  # "" is in every string: a data bug, not a pass
            raise ValueError(
                f"grader.reference field {self.reference!r} is empty after normalisation; contains needs text"
            )
        return float(ref in normalize(sample.output_text, self.normalize))


@dataclass(frozen=True)
class NumericMatch:
    """1.0 when the last number in the output is within tolerance of float(reference).

    Passes when |x - ref| <= tolerance or |x - ref| <= rel_tolerance * |ref|; no number -> 0.0.
    """

    reference: str
    tolerance: float
    rel_tolerance: float

    def __call__(self, sample: Sample, item: dict) -> float:
        ref = _parse_reference(reference_of(item, self.reference), self.reference)
        x = parse_last_number(sample.output_text)
        if x is None:
            return 0.0
        diff = abs(x - ref)
        return float(diff <= self.tolerance or diff <= self.rel_tolerance * abs(ref))


@dataclass(frozen=True)
class RegexMatch:
    """1.0 when the pattern is found anywhere in the output (the regex package's search); past
    ``time_limit`` seconds the attempt is errored (rlft.rewards.limits)."""

    pattern: regex_pkg.Pattern
    time_limit: float

    def __call__(self, sample: Sample, item: dict) -> float:
        return float(limits.search(self.pattern, sample.output_text, self.time_limit, "regex grader"))


@dataclass(frozen=True)
class PythonGrader:
    """Calls a user function ``fn(sample, item)`` and coerces its bool/int/float result to float;
    past ``time_limit`` seconds the attempt is errored (SIGALRM, main thread: rlft.rewards.limits)."""

    spec: str
    base_dir: str
    fn: Callable[[Sample, dict], Any]
    time_limit: float = 0.0

    def __call__(self, sample: Sample, item: dict) -> float:
        with limits.time_limit(self.time_limit, f"grader function {self.spec!r}"):
            r = self.fn(sample, item)
        if isinstance(r, numbers.Real):  # bool and int are Real too; so are numpy scalars
            return float(r)
        raise TypeError(
            f"grader function {self.spec!r} returned {type(r).__name__} {r!r}; it must return a number "
            f"(float, int or bool)"
        )

    def __reduce__(self):  # reload by spec in another process: a file-loaded module has no import path
        return (_python_grader_from_spec, (self.spec, self.base_dir, self.time_limit))


def load_function(spec: str, base_dir: str | Path) -> Callable:
    """Load ``"path/to/file.py:fn"`` (relative to base_dir) or ``"package.module:fn"``."""
    bad = f"grader.function = {spec!r}"
    target, sep, name = spec.rpartition(":")
    if not sep or not target or not name:
        raise ConfigError(f"{bad}: expected \"path/to/file.py:function\" or \"package.module:function\"")
    if target.endswith(".py") or "/" in target or "\\" in target:
        path = Path(target)
        if not path.is_absolute():
            path = Path(base_dir) / path
        if not path.is_file():
            raise ConfigError(
                f"{bad}: file not found: {path} (relative paths resolve against the job file's folder, "
                f"{Path(base_dir).resolve()}); fix the path"
            )
        # a unique, stable module name per file so two graders.py in different folders don't collide
        mod_name = f"rlft_user_grader_{path.stem}_{hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:8]}"
        module_spec = importlib.util.spec_from_file_location(mod_name, path)
        assert module_spec is not None and module_spec.loader is not None, f"cannot load {path} as a module"
        module = importlib.util.module_from_spec(module_spec)
        try:
            module_spec.loader.exec_module(module)
        except Exception as e:
            raise ConfigError(f"{bad}: importing {path} failed: {type(e).__name__}: {e}") from e
        sys.modules[mod_name] = module
    else:
        try:
            module = importlib.import_module(target)
        except Exception as e:
            raise ConfigError(
                f"{bad}: cannot import module {target!r}: {type(e).__name__}: {e}; fix: install it, or use a "
                f"file path like \"graders.py:{name}\""
            ) from e
    fn = getattr(module, name, None)
    if fn is None or not callable(fn):
        found = sorted(k for k, v in vars(module).items() if callable(v) and not k.startswith("_"))
        what = "is not callable" if fn is not None else "not found"
        raise ConfigError(f"{bad}: function {name!r} {what} in {target}; callables there: {', '.join(found) or 'none'}")
    return fn


def _python_grader_from_spec(spec: str, base_dir: str, time_limit: float = 0.0) -> PythonGrader:
    return PythonGrader(spec, base_dir, load_function(spec, base_dir), time_limit)


# --- factories: (cfg, base_dir, where) -> Grader; ``where`` names the table in messages ----------


def _field(cfg: GraderConfig) -> str:
    return cfg.reference or "answer"


def exact(cfg: GraderConfig, base_dir: Path, where: str) -> Grader:
    return ExactMatch(_field(cfg), tuple(cfg.normalize))


def contains(cfg: GraderConfig, base_dir: Path, where: str) -> Grader:
    return Contains(_field(cfg), tuple(cfg.normalize))


def numeric(cfg: GraderConfig, base_dir: Path, where: str) -> Grader:
    return NumericMatch(_field(cfg), cfg.tolerance, cfg.rel_tolerance)


def regex(cfg: GraderConfig, base_dir: Path, where: str) -> Grader:
    if not cfg.pattern:
        raise ConfigError(f"{where}.pattern is empty; the regex grader needs one, e.g. pattern = \"\\\\bParis\\\\b\"")
    try:
        return RegexMatch(regex_pkg.compile(cfg.pattern), cfg.time_limit)
    except regex_pkg.error as e:
        msg = f"{where}.pattern = {cfg.pattern!r}: not a valid regular expression: {e}; fix the pattern"
        raise ConfigError(msg) from None


def python(cfg: GraderConfig, base_dir: Path, where: str) -> Grader:
    """``function``: a trusted function called in-process; ``source``: OpenAI's format, sandboxed."""
    if cfg.function and cfg.source:
        raise ConfigError(f"{where}: set either function (trusted, in-process) or source (sandboxed), not both")
    if cfg.source:
        return specs.python_source(cfg, base_dir, where)
    if not cfg.function:
        raise ConfigError(f"{where}.function is empty; the python grader needs one, e.g. function = \"graders.py:score\" "
                          f"(or source = \"def grade(sample, item): ...\" to run it sandboxed)")
    return _python_grader_from_spec(cfg.function, str(base_dir), cfg.time_limit)


def code_tests(cfg: GraderConfig, base_dir: Path, where: str) -> Grader:
    """The model's code run in the sandbox against the tests in item[reference] (default "tests");
    the reward is the fraction of tests passed, as the harness outside the sandbox saw it."""
    from rlft.rewards.code import EXTRACTORS, code_grader

    if cfg.extract not in EXTRACTORS:
        raise ConfigError(f"{where}.extract = {cfg.extract!r} is unknown; valid: {', '.join(EXTRACTORS)}")
    return code_grader(cfg.reference or "tests", cfg.extract, allow_unsandboxed=cfg.allow_unsandboxed)


def make_grader(cfg: GraderConfig, base_dir: str | Path = ".", where: str = "grader") -> Grader:
    """The grader ``cfg`` describes; relative paths (files, python graders) resolve against ``base_dir``."""
    base_dir = Path(base_dir)
    if cfg.file:  # messages then say "grader.json: grader.calculate_output = ..."
        name = Path(cfg.file).name
        cfg, base_dir = specs.file_grader(cfg, base_dir, where)
        where = f"{name}: grader"
    if cfg.type not in GRADERS:
        planned = f"not supported yet: {specs.PLANNED[cfg.type]}; " if cfg.type in specs.PLANNED else "unknown grader; "
        raise ConfigError(f"{where}.type = {cfg.type!r}: {planned}valid: {', '.join(GRADERS)}")
    unknown = [n for n in cfg.normalize if n not in NORMALIZERS]
    if unknown:
        raise ConfigError(f"{where}.normalize: unknown option(s) {unknown}; valid: {', '.join(NORMALIZERS)}")
    return GRADERS[cfg.type](cfg, base_dir, where)


# type -> factory
GRADERS: dict[str, Callable[[GraderConfig, Path, str], Grader]] = {
    "exact": exact,
    "numeric": numeric,
    "regex": regex,
    "contains": contains,
    "python": python,
    "code_tests": code_tests,
    "string_check": specs.string_check,
    "text_similarity": specs.text_similarity,
    "multi": specs.multi,
    "math": checks.math,
    "json_schema": checks.json_schema,
    "length_penalty": checks.length_penalty,
    "format_penalty": checks.format_penalty,
    "score_model": judge.score_model,  # AI judges: rlft.rewards.judge
    "label_model": judge.label_model,
    "rank_model": judge.rank_model,
    "reward_model": reward_model_grader.reward_model,  # RLHF: a Bradley–Terry model (rlft reward-model train)
    "reasoning_gym": gym.reasoning_gym,  # a reasoning-gym dataset's own scorer (pip install rlft[gym])
}
