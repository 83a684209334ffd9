"""rlft's own spec graders: math equivalence, JSON-schema validity, length and format penalties.

Like the OpenAI-format graders (rlft.rewards.specs) they read ``input`` and ``reference``
templates (rlft.rewards.templates), so ``{{sample.output_json.answer}}`` works everywhere.

| type | score |
| --- | --- |
| math | 1.0 when math-verify finds the input's answer equivalent to the reference (``\\frac12`` = 0.5), else 0.0 |
| json_schema | 1.0 when the input parses as JSON and satisfies ``schema`` (jsonschema), else 0.0 |
| length_penalty | 0 up to ``max_chars``; then down to ``-penalty`` over ``buffer_chars`` (DAPO's soft overlong penalty, Yu et al. 2025, eq. 13) |
| format_penalty | 0 when ``pattern`` is found in the input (the regex package's search, within ``time_limit``), else ``-penalty`` |

The penalties are meant for a ``multi`` formula: ``"correct + 0.2 * format + length"``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import regex

from rlft.config import ConfigError, GraderConfig
from rlft.rewards import limits
from rlft.rewards.templates import check_template, render
from rlft.types import Sample

OUTPUT = "{{sample.output_text}}"
ANSWER = "{{item.answer}}"


def templates(cfg: GraderConfig, where: str, reference: bool = True) -> tuple[str, str]:
    """(input, reference) templates with their defaults, checked."""
    inp, ref = cfg.input or OUTPUT, cfg.reference or ANSWER
    check_template(inp, f"{where}.input")
    if reference:
        check_template(ref, f"{where}.reference")
    return inp, ref


def _math_parse(text: str) -> list:
    from math_verify import parse

    # a bare reference like "x^2" or "\sqrt{2}" is found only inside $...$; "42" and "1/2" are found as they are
    return parse(text) or parse(f"${text}$")


@dataclass(frozen=True)
class MathEquivalence:
    input: str
    reference: str

    def __call__(self, sample: Sample, item: dict) -> float:
        from math_verify import parse, verify

        ref = render(self.reference, sample, item)
        gold = _math_parse(ref)
        if not gold:  # an answer key math-verify cannot read is a data bug, not a wrong attempt
            raise ValueError(f"math grader: reference {self.reference!r} = {ref!r} has no answer math-verify can parse")
        return float(verify(gold, parse(render(self.input, sample, item))))


@dataclass(frozen=True)
class JsonSchemaValid:
    input: str
    schema: dict

    def __call__(self, sample: Sample, item: dict) -> float:
        import jsonschema

        try:
            value = json.loads(render(self.input, sample, item))
        except ValueError:
            return 0.0
        return float(jsonschema.validators.validator_for(self.schema)(self.schema).is_valid(value))


@dataclass(frozen=True)
class LengthPenalty:
    input: str
    max_chars: int
    buffer_chars: int
    penalty: float

    def __call__(self, sample: Sample, item: dict) -> float:
        over = len(render(self.input, sample, item)) - self.max_chars
        if over <= 0:
            return 0.0
        if over >= self.buffer_chars:  # also buffer_chars == 0: a step
            return -self.penalty
        return -self.penalty * over / self.buffer_chars


@dataclass(frozen=True)
class FormatPenalty:
    input: str
    pattern: regex.Pattern
    penalty: float
    time_limit: float  # seconds; past it the attempt is errored (rlft.rewards.limits)

    def __call__(self, sample: Sample, item: dict) -> float:
        found = limits.search(self.pattern, render(self.input, sample, item), self.time_limit, "format_penalty grader")
        return 0.0 if found else -self.penalty


# --- factories: (cfg, base_dir, where) -> Grader ---------------------------------------------


def math(cfg: GraderConfig, base_dir: Path, where: str) -> MathEquivalence:
    return MathEquivalence(*templates(cfg, where))


def json_schema(cfg: GraderConfig, base_dir: Path, where: str) -> JsonSchemaValid:
    import jsonschema

    if not cfg.schema:
        raise ConfigError(f"{where}.schema is empty; json_schema needs one, e.g. schema = {{ type = \"object\" }}")
    try:
        jsonschema.validators.validator_for(cfg.schema).check_schema(cfg.schema)
    except jsonschema.SchemaError as e:
        raise ConfigError(f"{where}.schema: not a valid JSON Schema: {e.message}; fix the schema") from None
    return JsonSchemaValid(templates(cfg, where, reference=False)[0], dict(cfg.schema))


def length_penalty(cfg: GraderConfig, base_dir: Path, where: str) -> LengthPenalty:
    if cfg.max_chars < 1:
        raise ConfigError(f"{where}.max_chars = {cfg.max_chars}: length_penalty needs the length allowed, e.g. 400")
    return LengthPenalty(templates(cfg, where, reference=False)[0], cfg.max_chars, cfg.buffer_chars, cfg.penalty)


def format_penalty(cfg: GraderConfig, base_dir: Path, where: str) -> FormatPenalty:
    if not cfg.pattern:
        raise ConfigError(f"{where}.pattern is empty; format_penalty needs one, e.g. pattern = \"answer \\\\d+$\"")
    try:
        pattern = regex.compile(cfg.pattern)
    except regex.error as e:
        raise ConfigError(f"{where}.pattern = {cfg.pattern!r}: not a valid regular expression: {e}; fix the pattern") from None
    return FormatPenalty(templates(cfg, where, reference=False)[0], pattern, cfg.penalty, cfg.time_limit)
