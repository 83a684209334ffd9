"""Job checks that span fields (``cross_checks``), and the "did you mean" of unknown names."""

from __future__ import annotations

import dataclasses
import difflib
from typing import Any, Sequence

import regex

from rlft.algos.advantages import GROUP_BASELINE
from rlft.config.sections import GraderConfig


def did_you_mean(bad: str, valid: Sequence[str]) -> str:
    """"did you mean 'x'? " for the valid name closest to ``bad``; else ""."""
    close = difflib.get_close_matches(bad, list(valid), n=1)
    return f"did you mean {close[0]!r}? " if close else ""


def gym_grader(s: dict[str, Any], src: dict[tuple[str, str], str]) -> GraderConfig:
    """A reasoning_gym data source is scored by its dataset's scorer unless [grader] says otherwise."""
    g: GraderConfig = s["grader"]
    if s["data"].train.startswith("reasoning_gym:") and ("grader", "type") not in src and not g.file:
        return dataclasses.replace(g, type="reasoning_gym")
    return g


def cross_checks(s: dict[str, Any], src: dict[tuple[str, str], str]) -> list[str]:
    """Problems that no single field has: one line each, naming the fields and the fix. ``s``
    maps section names to their built configs, ``src`` (section, key) to where a value came from."""
    g: GraderConfig = s["grader"]
    out = []
    e = s["eval"]
    if e.samples > 1 and e.temperature == 0:  # greedy attempts are all the same attempt
        at = src.get(("eval", "samples"), f"[eval] samples = {e.samples}")
        out.append(f"{at}: eval.samples = {e.samples} at eval.temperature = 0 (greedy) repeats one attempt, so "
                   f"pass@{e.samples} and pass^{e.samples} would just be pass@1; fix: set eval.temperature > 0 "
                   f"(e.g. 1.0), or eval.samples = 1")
    if s["data"].train.startswith("reasoning_gym:"):  # train and eval must not share generated items
        from rlft.data.gym import overlap_errors

        out += overlap_errors(s["data"].train, s["data"].eval)
    a = s["algorithm"]
    if a.group_size == 1 and a.name in GROUP_BASELINE:
        at = src.get(("algorithm", "group_size"), "[algorithm] group_size = 1")
        out.append(f"{at}: {a.name!r} compares each attempt with the others of its group, so a group of 1 trains "
                   f"nothing; fix: group_size >= 2, or name = \"reinforce\" (a batch baseline)")
    where = src.get(("grader", "type"), "[grader] type")
    if g.type == "regex":
        try:
            regex.compile(g.pattern)  # the regex grader's engine (rlft.rewards.graders)
        except regex.error as e:
            at = src.get(("grader", "pattern"), "[grader] pattern")
            out.append(f"{at}: not a valid regular expression ({e}); fix the pattern")
        if not g.pattern:
            out.append(f"{where}: grader type 'regex' needs grader.pattern; fix: set pattern = \"...\"")
    if g.type == "python" and not g.function and not g.source:
        out.append(
            f"{where}: grader type 'python' needs grader.function (trusted, in-process) or grader.source (sandboxed); "
            f"fix: set function = \"graders.py:score\""
        )
    return out
