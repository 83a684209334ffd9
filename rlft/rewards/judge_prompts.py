"""What an AI judge is asked and how its reply is read: rubric prompt templates, the format
instruction added to every request, and strict parsers from reply text to a score, label or ranking.

Strict means: a reply the parser cannot read raises ``JudgeParseError`` (the attempt is errored,
masked out of the loss and counted, DESIGN.md §4), never a guess and never a silent 0. The
accepted forms, so that both terse and reasoning judges work:

- score: the whole reply is a number (``0.8``), a JSON object with ``score`` or ``result``
  (``{"score": 0.8, "why": "..."}``), or ends with a line ``Score: 0.8`` after any reasoning.
  A score outside the grader's range is an error too (the judge did not follow the rubric).
- label: the whole reply is one of the labels (case, quotes and a final period ignored), a JSON
  object with ``label`` or ``result``, or a last line ``Label: NAME``.
- ranking: a JSON list (or ``{"ranking": [...]}``) or a last line ``Ranking: 2 > 1 > 3`` (or
  ``2, 1, 3``) that is a permutation of the candidate numbers, best first.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from rlft.config import ConfigError


class JudgeError(RuntimeError):
    """A judge call that gave no usable answer; the attempt is errored, not scored 0."""


class JudgeParseError(JudgeError):
    """The judge answered, but its reply holds no score (label, ranking) in the expected form."""


# --- rubrics: built-in prompt templates (grader.rubric) --------------------------------------

QUESTION = "Question:\n{{item.prompt}}\n\n"
RESPONSE = "Response:\n{{sample.output_text}}\n\n"
# name -> (system message, what to judge, whether it shows the reference answer)
RUBRICS: dict[str, tuple[str, str, bool]] = {
    "correctness": (
        "You are a strict grader. You compare a response with the reference answer and judge only "
        "whether the response's final answer is correct, not its style.",
        "Judge the response: the top of the scale when its final answer agrees with the reference answer, "
        "the bottom when it is wrong or missing.",
        True,
    ),
    "helpfulness": (
        "You are a careful grader of answers written by an AI assistant.",
        "Judge how well the response answers the question: correct, complete, clear and no longer than needed.",
        False,
    ),
}


def rubric_messages(name: str, reference: str, group: bool, where: str) -> list[dict[str, str]]:
    """The chat messages of a built-in rubric; ``group``: the response is left out (the ranking
    judge lists every candidate after the prompt)."""
    if name not in RUBRICS:
        raise ConfigError(f"{where}.rubric = {name!r}: unknown rubric; valid: {', '.join(RUBRICS)}; "
                          f"or write your own prompt as {where}.messages")
    system, task, with_reference = RUBRICS[name]
    user = QUESTION + (f"Reference answer:\n{reference}\n\n" if with_reference else "")
    user += ("" if group else RESPONSE) + task
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


# --- format instructions, appended to the last user message ----------------------------------


def score_instruction(lo: float, hi: float) -> str:
    return f"Reply with a last line of the form `Score: N`, where N is a number from {lo:g} to {hi:g}."


def label_instruction(labels: tuple[str, ...]) -> str:
    return f"Reply with a last line of the form `Label: NAME`, where NAME is one of: {', '.join(labels)}."


def rank_instruction(n: int) -> str:
    return (f"Rank all {n} candidates from best to worst. Reply with a last line of the form "
            f"`Ranking: 2 > 1 > 3`, using each candidate number from 1 to {n} exactly once.")


def candidates_block(texts: list[str]) -> str:
    return "Candidate responses:\n\n" + "".join(f"[{i}]\n{t}\n\n" for i, t in enumerate(texts, 1))


# --- parsing ---------------------------------------------------------------------------------

_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_FENCE = re.compile(r"^```[a-zA-Z]*\s*\n?(.*?)\n?```$", re.DOTALL)


def _shown(reply: str) -> str:
    return repr(reply if len(reply) <= 200 else reply[:150] + " ... " + reply[-40:])


def _json(reply: str) -> Any:
    text = reply.strip()
    m = _FENCE.match(text)
    try:
        return json.loads(m.group(1) if m else text)
    except ValueError:
        return None


def _last_line(reply: str, key: str) -> str | None:
    """The value of a last non-empty line ``Key: value`` (markdown bold and backticks ignored)."""
    lines = [ln.strip().strip("*`_ ") for ln in reply.strip().splitlines() if ln.strip()]
    if not lines:
        return None
    m = re.fullmatch(rf"(?:final\s+)?{key}\s*\**\s*[:=]\s*\**\s*(.+?)\s*\**", lines[-1], re.IGNORECASE)
    return m.group(1).strip("*`_ ") if m else None


def parse_score(reply: str, lo: float, hi: float) -> float:
    obj = _json(reply)
    value: Any = None
    if isinstance(obj, dict):
        value = obj.get("score", obj.get("result"))
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        value = obj
    if value is None:
        line = _last_line(reply, "score")
        if line is not None and re.fullmatch(_NUMBER, line.rstrip(".")):
            value = float(line.rstrip("."))
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise JudgeParseError(f"judge reply holds no score: expected a number, {{\"score\": N}} or a last line "
                              f"'Score: N'; got {_shown(reply)}")
    score = float(value)
    if not (math.isfinite(score) and lo <= score <= hi):
        raise JudgeParseError(f"judge score {score:g} is outside the grader's range [{lo:g}, {hi:g}]; reply {_shown(reply)}")
    return score


def parse_label(reply: str, labels: tuple[str, ...]) -> str:
    by_key = {lab.casefold(): lab for lab in labels}
    obj = _json(reply)
    candidates = []
    if isinstance(obj, dict) and isinstance(obj.get("label", obj.get("result")), str):
        candidates.append(obj.get("label", obj.get("result")))
    candidates += [reply, _last_line(reply, "label") or ""]
    for c in candidates:
        key = c.strip().strip("\"'`*").rstrip(".").strip().casefold()
        if key in by_key:
            return by_key[key]
    raise JudgeParseError(f"judge reply holds none of the labels {list(labels)}: expected the label alone, "
                          f"{{\"label\": NAME}} or a last line 'Label: NAME'; got {_shown(reply)}")


def parse_ranking(reply: str, n: int) -> list[int]:
    """Candidate numbers (1-based) best first; a permutation of 1..n or JudgeParseError."""
    obj = _json(reply)
    if isinstance(obj, dict):
        obj = obj.get("ranking")
    order: Any = obj if isinstance(obj, list) else None
    if order is None:
        line = _last_line(reply, "ranking")
        if line is not None and re.fullmatch(r"\[?\s*\d+(\s*[>,]\s*\d+)*\s*\]?\.?", line):
            order = [int(x) for x in re.findall(r"\d+", line)]
    if not (isinstance(order, list) and all(isinstance(x, int) and not isinstance(x, bool) for x in order)):
        raise JudgeParseError(f"judge reply holds no ranking: expected a last line 'Ranking: 2 > 1 > 3' or a JSON "
                              f"list; got {_shown(reply)}")
    if sorted(order) != list(range(1, n + 1)):
        raise JudgeParseError(f"judge ranking {order} is not an order of the candidates 1..{n} (each exactly once); "
                              f"reply {_shown(reply)}")
    return order

