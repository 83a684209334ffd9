"""OpenAI's grader format: ``string_check``, ``text_similarity``, ``python``, ``multi``, and
grader JSON files (``grader.file = "grader.json"``).

The same graders are written inline in a job's TOML; the JSON keys are [grader]'s keys:

```json
{"type": "multi",
 "graders": {
   "correct": {"type": "string_check", "operation": "eq",
               "input": "{{sample.output_json.answer}}", "reference": "{{item.answer}}"},
   "close":   {"type": "text_similarity", "evaluation_metric": "rouge_l",
               "input": "{{sample.output_text}}", "reference": "{{item.explanation}}"}},
 "calculate_output": "0.7 * correct + 0.3 * close"}
```

``name``, ``pass_threshold`` and ``image_tag`` are accepted and not used: in RL the reward is
the score itself. ``score_model`` / ``label_model`` (AI judges, rlft.rewards.judge) take their
prompt from OpenAI's ``input`` list of messages (``messages`` in TOML); the endpoint comes from
the job's ``[grader.judge]``, which may sit beside ``file``. A ``python`` grader given ``source`` runs
``grade(sample, item)`` in the sandbox (rlft.rewards.code) with ``sample`` and ``item`` as dicts.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
import json
import keyword
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from rlft.config import ConfigError, GraderConfig, grader_from_dict
from rlft.rewards import similarity
from rlft.rewards.checks import templates
from rlft.rewards.formula import FUNCTIONS, Formula, parse_formula
from rlft.rewards.templates import render
from rlft.types import Sample

IGNORED_KEYS = ("name", "pass_threshold", "image_tag")
# types rlft knows of but does not grade yet: type -> what is missing
PLANNED: dict[str, str] = {}
JUDGE_TYPES = ("score_model", "label_model", "rank_model")

OPERATIONS: dict[str, Callable[[str, str], bool]] = {
    "eq": lambda text, ref: text == ref,
    "ne": lambda text, ref: text != ref,
    "like": lambda text, ref: ref in text,  # the input contains the reference
    "ilike": lambda text, ref: ref.casefold() in text.casefold(),
}


def sample_dict(sample: Sample) -> dict[str, Any]:
    """The sample as OpenAI's python graders see it."""
    return {"output_text": sample.output_text, "output_json": sample.output_json, "output_tools": list(sample.output_tools)}


@dataclass(frozen=True)
class StringCheck:
    input: str
    reference: str
    operation: str

    def __call__(self, sample: Sample, item: dict) -> float:
        text, ref = render(self.input, sample, item), render(self.reference, sample, item)
        return float(OPERATIONS[self.operation](text, ref))


@dataclass(frozen=True)
class TextSimilarity:
    input: str
    reference: str
    metric: str
    embedding_model: str = ""

    def __call__(self, sample: Sample, item: dict) -> float:
        text, ref = render(self.input, sample, item), render(self.reference, sample, item)
        extra = (self.embedding_model,) if self.metric == "cosine" else ()
        return similarity.METRICS[self.metric](text, ref, *extra)


@dataclass(frozen=True)
class SandboxedPython:
    """OpenAI's python grader: ``grade(sample, item)`` from ``source``, run in the sandbox."""

    source: str
    allow_unsandboxed: bool = False

    def __call__(self, sample: Sample, item: dict) -> float:
        from rlft.rewards.code import run_python_grader  # raises SandboxError: the attempt is errored

        return run_python_grader(self.source, sample_dict(sample), item, allow_unsandboxed=self.allow_unsandboxed)


@dataclass(frozen=True)
class Multi:
    """Scores every sub-grader, then combines them with the formula (rlft.rewards.formula)."""

    graders: dict[str, Callable[[Sample, dict], float]]
    formula: Formula

    def __call__(self, sample: Sample, item: dict) -> float:
        return self.formula.evaluate({name: float(g(sample, item)) for name, g in self.graders.items()})


def _each(grader: Callable[[Sample, dict], float], samples: Sequence[Sample], items: Sequence[dict]) -> list:
    out: list = []
    for s, it in zip(samples, items):
        try:
            out.append(grader(s, it))
        except Exception as e:  # noqa: BLE001 - returned, so the attempt is errored with it
            out.append(e)
    return out


@dataclass(frozen=True)
class BatchedMulti(Multi):
    """A multi whose sub-graders include a batch grader (an AI judge): ``grade_group`` grades a
    group with each sub-grader at once (the judge's calls run together), then applies the formula;
    an attempt any sub-grader failed on is errored with that sub-grader's exception."""

    def grade_group(self, samples: Sequence[Sample], items: Sequence[dict]) -> list:
        scores = {name: g.grade_group(samples, items) if hasattr(g, "grade_group") else _each(g, samples, items)
                  for name, g in self.graders.items()}
        out: list = []
        for i in range(len(samples)):
            failed = [scores[name][i] for name in self.graders if isinstance(scores[name][i], Exception)]
            if failed:
                out.append(failed[0])
                continue
            try:
                out.append(self.formula.evaluate({name: float(scores[name][i]) for name in self.graders}))
            except Exception as e:  # noqa: BLE001
                out.append(e)
        return out

    def metrics(self) -> dict[str, float]:
        from rlft.rewards.judge import merge_metrics

        return merge_metrics([g.metrics() for g in self.graders.values() if hasattr(g, "metrics")])

    def use_run_dir(self, out: Path) -> None:
        for g in self.graders.values():
            if hasattr(g, "use_run_dir"):
                g.use_run_dir(out)


# --- factories: (cfg, base_dir, where) -> Grader ---------------------------------------------


def string_check(cfg: GraderConfig, base_dir: Path, where: str) -> StringCheck:
    return StringCheck(*templates(cfg, where), cfg.operation)


def text_similarity(cfg: GraderConfig, base_dir: Path, where: str) -> TextSimilarity:
    model = similarity.check_metric(cfg.evaluation_metric, cfg.embedding_model, base_dir, where)
    return TextSimilarity(*templates(cfg, where), cfg.evaluation_metric, model)


def python_source(cfg: GraderConfig, base_dir: Path, where: str) -> SandboxedPython:
    """Checked without running it: the source parses and defines grade(sample, item)."""
    try:
        tree = ast.parse(cfg.source)
    except SyntaxError as e:
        raise ConfigError(f"{where}.source: syntax error at line {e.lineno}: {e.msg}; fix the grader code") from None
    grade = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "grade"]
    if not grade or len(grade[0].args.args) < 2:
        raise ConfigError(f"{where}.source: no top-level `def grade(sample, item) -> float`; the python grader calls it")
    if importlib.util.find_spec("rlft.rewards.code") is None:
        raise ConfigError(f"{where}.source: python source graders need rlft.rewards.code (the sandbox), missing from this install")
    return SandboxedPython(cfg.source, cfg.allow_unsandboxed)


def multi(cfg: GraderConfig, base_dir: Path, where: str) -> Multi:
    from rlft.rewards.graders import make_grader  # graders.GRADERS holds this factory: import at call time

    if not cfg.graders:
        raise ConfigError(f"{where}.graders is empty; multi needs named sub-graders, e.g. [{where}.graders.correct]")
    for name in cfg.graders:
        if not name.isidentifier() or keyword.iskeyword(name) or name in FUNCTIONS:
            raise ConfigError(
                f"{where}.graders.{name}: a sub-grader's name is used in calculate_output, so it must be an "
                f"identifier (letters, digits, _) and not a keyword or one of {', '.join(FUNCTIONS)}; rename it"
            )
    formula = parse_formula(cfg.calculate_output, set(cfg.graders), f"{where}.calculate_output")
    unused = sorted(set(cfg.graders) - formula.names)
    if unused:  # a grader that cannot change the reward is almost always a typo in the formula
        raise ConfigError(f"{where}.calculate_output = {cfg.calculate_output!r} does not use {', '.join(unused)}; "
                          f"use it or remove {where}.graders.{unused[0]}")
    default = GraderConfig().time_limit  # a sub-grader left at the default takes the multi's time_limit
    subs = {name: sub if sub.time_limit != default else dataclasses.replace(sub, time_limit=cfg.time_limit)
            for name, sub in cfg.graders.items()}
    graders = {name: make_grader(sub, base_dir, f"{where}.graders.{name}") for name, sub in subs.items()}
    batched = any(hasattr(g, "grade_group") for g in graders.values())
    return (BatchedMulti if batched else Multi)(graders, formula)


# --- files -----------------------------------------------------------------------------------


def _from_openai(obj: Any, label: str) -> dict:
    """A [grader]-shaped table from an OpenAI grader object: unused keys dropped; a judge's ``input``
    list of messages becomes ``messages``."""
    if not isinstance(obj, dict):
        raise ConfigError(f"{label}: expected a grader object like {{\"type\": \"string_check\", ...}}, got {obj!r}")
    if obj.get("type") in PLANNED:
        raise ConfigError(f"{label}: grader type {obj['type']!r} is not supported yet: {PLANNED[obj['type']]}")
    out = {k: v for k, v in obj.items() if k not in IGNORED_KEYS}
    if out.get("type") in JUDGE_TYPES and isinstance(out.get("input"), list):
        out["messages"] = out.pop("input")
    if isinstance(out.get("graders"), dict):
        out["graders"] = {name: _from_openai(sub, f"{label}.graders.{name}") for name, sub in out["graders"].items()}
    return out


def load_grader_file(path: Path) -> GraderConfig:
    """A GraderConfig from an OpenAI-format grader JSON file (or one holding {"grader": {...}})."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"grader.file: cannot read {path} ({e.strerror}); the path is relative to the job file") from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}:{e.lineno}:{e.colno}: not valid JSON ({e.msg}); fix the grader file") from None
    if isinstance(obj, dict) and "type" not in obj and isinstance(obj.get("grader"), dict):
        obj = obj["grader"]
    return grader_from_dict(_from_openai(obj, str(path)), str(path))


def file_grader(cfg: GraderConfig, base_dir: Path, where: str) -> tuple[GraderConfig, Path]:
    """The spec in ``cfg.file`` and the folder its own relative paths resolve against. ``judge``
    may sit beside ``file``: where an AI judge runs is the job's concern, not the grader's, so it
    applies to every judge in the file that does not set its own."""
    default = GraderConfig()
    others = [f.name for f in dataclasses.fields(cfg)
              if f.name not in ("file", "judge") and getattr(cfg, f.name) != getattr(default, f.name)]
    if others:
        raise ConfigError(f"{where}.file = {cfg.file!r}: the grader comes from the file, so {where} sets nothing else "
                          f"but judge; remove {', '.join(f'{where}.{k}' for k in others)} or move them into the file")
    path = Path(cfg.file)
    path = path if path.is_absolute() else base_dir / path
    return _with_judge(load_grader_file(path), cfg.judge), path.parent


def _with_judge(cfg: GraderConfig, judge: Any) -> GraderConfig:
    """``cfg`` with ``judge`` set on every judge (sub-graders included) left at the default."""
    subs = {name: _with_judge(sub, judge) for name, sub in cfg.graders.items()}
    own = cfg.judge if cfg.type not in JUDGE_TYPES or cfg.judge != GraderConfig().judge else judge
    return dataclasses.replace(cfg, graders=subs, judge=own)
