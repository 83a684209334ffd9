"""AI judges (RLAIF): ``score_model`` and ``label_model`` in OpenAI's grader format, and
``rank_model``, which ranks the G attempts at a prompt in one call.

```toml
[grader]
type = "score_model"               # a number in `range`; label_model: 1.0 for a passing label
model = "gpt-4o-mini"              # what the endpoint serves (judge.backend = "hf": a local folder)
range = [0, 1]
messages = [                        # {{item.*}} / {{sample.*}} templates; or rubric = "correctness"
  { role = "system", content = "You grade answers to arithmetic problems." },
  { role = "user", content = "Problem: {{item.prompt}}\nAnswer: {{sample.output_text}}" },
]
[grader.judge]
base_url = "https://api.openai.com/v1"
api_key_env = "OPENAI_API_KEY"      # the variable's NAME; the key never enters the job or the run
max_concurrency = 8
price_input = 0.15                  # USD per 1M prompt tokens, for judge/cost_usd
price_output = 0.60
```

A format instruction (``rlft.rewards.judge_prompts``) is added to the last user message, and the
reply is parsed strictly: an unreadable reply raises ``JudgeParseError`` and the attempt is
errored (masked, counted), not 0. Calls go through a thread pool of ``max_concurrency``; the
loop uses ``grade_group`` (rlft.rollout.runner) so a group's calls run together. Replies are
cached by the request (model, rendered rubric with the item's input and the sample's output,
sampling params) in memory and, with ``judge.disk_cache``, in RUN/judge_cache.jsonl; a parse
failure is not cached. ``metrics()`` gives the running totals judge/calls, judge/cache_hits,
judge/parse_errors, judge/errors, judge/retries, judge/tokens, judge/cost_usd for metrics.jsonl.
"""

from __future__ import annotations

import hashlib
import json
import random
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from rlft.config import ConfigError, GraderConfig, JudgeConfig
from rlft.rewards import judge_prompts as prompts
from rlft.rewards.judge_client import (
    BACKENDS,
    JudgeRequestError,
    JudgeUnavailable,
    Reply,
)
from rlft.rewards.judge_prompts import JudgeError, JudgeParseError
from rlft.rewards.templates import check_template, render
from rlft.types import Sample

__all__ = ["Judge", "JudgeError", "JudgeParseError", "JudgeRequestError", "JudgeUnavailable", "ScoreModel",
           "LabelModel", "RankModel", "score_model", "label_model", "rank_model"]

ROLES = ("system", "developer", "user", "assistant")
COUNTERS = ("calls", "cache_hits", "parse_errors", "errors", "retries", "prompt_tokens", "completion_tokens")
# OpenAI's grader sampling_params spell one key differently from its chat API
PARAM_NAMES = {"max_completions_tokens": "max_completion_tokens"}


class Judge:
    """One judge model behind a backend: the cache, the counters and the bounded thread pool."""

    def __init__(self, backend, model: str, params: dict[str, Any], cfg: JudgeConfig):
        self.backend, self.model, self.params, self.cfg = backend, model, params, cfg
        self._lock = threading.Lock()
        self._cache: dict[str, Reply] = {}
        self._pending: dict[str, Future] = {}  # requests in flight, by key
        self._counts = dict.fromkeys(COUNTERS, 0)
        self._pool: ThreadPoolExecutor | None = None
        self._cache_file: Path | None = None

    def __getstate__(self) -> dict:  # the pool and lock stay here; another process starts afresh
        return {"backend": self.backend, "model": self.model, "params": self.params, "cfg": self.cfg}

    def __setstate__(self, state: dict) -> None:
        self.__init__(**state)

    def map(self, fn: Callable[..., Any], *args_N: Sequence) -> list[Any]:
        """``fn`` over the argument lists on the pool (at most max_concurrency at a time): a list
        of results in order, each a value or the exception it raised."""
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.cfg.max_concurrency, thread_name_prefix="rlft-judge")
        futures = [self._pool.submit(fn, *args) for args in zip(*args_N)]
        return [f.exception() or f.result() for f in futures]

    def ask(self, messages: list[dict[str, str]], parse: Callable[[str], Any]) -> Any:
        """The parsed reply to ``messages``: from the cache, from the same request already in
        flight (G identical attempts make one call), or from the backend."""
        key = hashlib.sha256(json.dumps([self.model, messages, self.params], sort_keys=True).encode()).hexdigest()
        with self._lock:
            reply = self._cache.get(key) if self.cfg.cache else None
            waiting = self._pending.get(key) if self.cfg.cache and reply is None else None
            mine = Future() if self.cfg.cache and reply is None and waiting is None else None
            if mine is not None:
                self._pending[key] = mine
        if waiting is not None:
            reply = waiting.result()  # re-raises the error that call ended in
        if reply is not None:
            self._count(cache_hits=1)
            return parse(reply.text)
        try:
            reply = self._call(messages)
            try:
                value = parse(reply.text)
            except JudgeParseError:
                self._count(parse_errors=1)
                raise
        except BaseException as e:
            if mine is not None:
                with self._lock:
                    del self._pending[key]
                mine.set_exception(e)
            raise
        if mine is not None:
            self._store(key, reply)
            mine.set_result(reply)
        return value

    def _call(self, messages: list[dict[str, str]]) -> Reply:
        try:
            reply = self.backend.chat(self.model, messages, self.params)
        except JudgeUnavailable:
            self._count(calls=1, errors=1, retries=self.cfg.max_retries)
            raise
        except Exception:
            self._count(calls=1, errors=1)
            raise
        self._count(calls=1, retries=reply.retries, prompt_tokens=reply.prompt_tokens,
                    completion_tokens=reply.completion_tokens)
        return reply

    def _count(self, **deltas: int) -> None:
        with self._lock:
            for k, v in deltas.items():
                self._counts[k] += v

    def _store(self, key: str, reply: Reply) -> None:
        with self._lock:
            self._cache[key] = reply
            del self._pending[key]
            if self._cache_file is not None:
                row = {"key": key, "text": reply.text, "prompt_tokens": reply.prompt_tokens,
                       "completion_tokens": reply.completion_tokens}
                with open(self._cache_file, "a", encoding="utf-8") as f:
                    f.write(json.dumps(row) + "\n")

    def use_run_dir(self, out: Path) -> None:
        """With judge.disk_cache: load and extend ``out/judge_cache.jsonl`` (request hashes and replies:
        no prompts, no API key)."""
        if not (self.cfg.cache and self.cfg.disk_cache):
            return
        path = Path(out) / "judge_cache.jsonl"
        with self._lock:
            self._cache_file = path
            if path.exists():
                for line in path.read_text(encoding="utf-8").splitlines():
                    try:
                        row = json.loads(line)
                    except ValueError:
                        continue  # a line cut short by a crash: that reply is asked again
                    self._cache[row["key"]] = Reply(row["text"], row["prompt_tokens"], row["completion_tokens"])

    def metrics(self) -> dict[str, float]:
        with self._lock:
            c = dict(self._counts)
        cost = (c["prompt_tokens"] * self.cfg.price_input + c["completion_tokens"] * self.cfg.price_output) / 1e6
        shown = {k: float(c[k]) for k in ("calls", "cache_hits", "parse_errors", "errors", "retries")}
        return {**{f"judge/{k}": v for k, v in shown.items()},
                "judge/tokens": float(c["prompt_tokens"] + c["completion_tokens"]), "judge/cost_usd": cost}


def merge_metrics(parts: Sequence[dict[str, float]]) -> dict[str, float]:
    """Sum of several judges' metrics (a multi grader with more than one judge)."""
    out: dict[str, float] = {}
    for m in parts:
        for k, v in m.items():
            out[k] = out.get(k, 0.0) + v
    return out


def _with_instruction(messages: list[dict[str, str]], instruction: str) -> list[dict[str, str]]:
    last = max(i for i, m in enumerate(messages) if m["role"] == "user")
    out = [dict(m) for m in messages]
    out[last]["content"] = out[last]["content"].rstrip() + "\n\n" + instruction
    return out


@dataclass
class _JudgeGrader:
    judge: Judge
    messages: tuple[tuple[str, str], ...]  # (role, template)

    def rendered(self, sample: Sample, item: dict) -> list[dict[str, str]]:
        return [{"role": role, "content": render(t, sample, item)} for role, t in self.messages]

    def grade_group(self, samples: Sequence[Sample], items: Sequence[dict]) -> list[float | Exception]:
        return self.judge.map(self, samples, items)

    def metrics(self) -> dict[str, float]:
        return self.judge.metrics()

    def use_run_dir(self, out: Path) -> None:
        self.judge.use_run_dir(out)


@dataclass
class ScoreModel(_JudgeGrader):
    """score_model: the judge's number in [lo, hi] is the reward."""

    lo: float = 0.0
    hi: float = 1.0

    def __call__(self, sample: Sample, item: dict) -> float:
        messages = _with_instruction(self.rendered(sample, item), prompts.score_instruction(self.lo, self.hi))
        return self.judge.ask(messages, lambda reply: prompts.parse_score(reply, self.lo, self.hi))


@dataclass
class LabelModel(_JudgeGrader):
    """label_model: 1.0 when the judge's label is one of passing_labels, else 0.0."""

    labels: tuple[str, ...] = ()
    passing: tuple[str, ...] = ()

    def __call__(self, sample: Sample, item: dict) -> float:
        messages = _with_instruction(self.rendered(sample, item), prompts.label_instruction(self.labels))
        return float(self.judge.ask(messages, lambda reply: prompts.parse_label(reply, self.labels)) in self.passing)


@dataclass
class RankModel(_JudgeGrader):
    """rank_model: one call ranks a group's distinct attempts (shown in a shuffled order, against
    position bias); rank r of n becomes the reward 1 - r / (n - 1), best 1.0, worst 0.0. A group
    whose attempts are all the same text gets 0.5 each without a call (nothing to compare)."""

    def __call__(self, sample: Sample, item: dict) -> float:
        raise TypeError("rank_model ranks the attempts at a prompt against each other; it grades whole groups "
                        "(rlft train), not one sample at a time")

    def grade_group(self, samples: Sequence[Sample], items: Sequence[dict]) -> list[float | Exception]:
        assert all(it is items[0] for it in items), "rank_model: a group's attempts share one item"
        texts = list(dict.fromkeys(s.output_text for s in samples))  # distinct, first-seen order
        if len(texts) == 1:
            return [0.5] * len(samples)
        seed = int(hashlib.sha256("\0".join(texts).encode()).hexdigest()[:8], 16)
        shown = random.Random(seed).sample(texts, len(texts))
        messages = self.rendered(Sample(""), items[0])
        messages = _with_instruction(messages, prompts.candidates_block(shown) + prompts.rank_instruction(len(shown)))
        [order] = self.judge.map(lambda _: self.judge.ask(messages, lambda r: prompts.parse_ranking(r, len(shown))), [0])
        if isinstance(order, Exception):
            return [order] * len(samples)
        n = len(shown)
        reward = {shown[c - 1]: 1.0 - r / (n - 1) for r, c in enumerate(order)}
        return [reward[s.output_text] for s in samples]


# --- factories: (cfg, base_dir, where) -> grader ---------------------------------------------


def _messages(cfg: GraderConfig, where: str, group: bool) -> tuple[tuple[str, str], ...]:
    if cfg.messages and cfg.rubric:
        raise ConfigError(f"{where}: set either messages (your own prompt) or rubric (a built-in one), not both")
    reference = cfg.reference or "{{item.answer}}"
    raw = cfg.messages or prompts.rubric_messages(cfg.rubric or "correctness", reference, group, where)
    out = []
    for i, m in enumerate(raw):
        at = f"{where}.messages[{i}]"
        if not isinstance(m, dict) or not isinstance(m.get("content"), str) or m.get("role") not in ROLES:
            raise ConfigError(f"{at} = {m!r}: expected {{ role = \"user\", content = \"...\" }} with role one of "
                              f"{', '.join(ROLES)} and content a string")
        check_template(m["content"], f"{at}.content")
        if group and "{{sample." in m["content"].replace(" ", ""):
            raise ConfigError(f"{at}.content: rank_model shows all attempts after the prompt itself, so its messages "
                              f"use only {{{{item.*}}}} tags; remove the {{{{sample.*}}}} tag")
        out.append((m["role"], m["content"]))
    if not any(role == "user" for role, _ in out):
        raise ConfigError(f"{where}.messages has no user message; the judge's question goes in one")
    return tuple(out)


def _judge(cfg: GraderConfig, base_dir: Path, where: str) -> Judge:
    backend = BACKENDS[cfg.judge.backend](cfg.judge, cfg.model, str(base_dir), where)
    params = {"temperature": 0.0, **{PARAM_NAMES.get(k, k): v for k, v in cfg.sampling_params.items()}}
    return Judge(backend, cfg.model, params, cfg.judge)


def score_model(cfg: GraderConfig, base_dir: Path, where: str) -> ScoreModel:
    if len(cfg.range) != 2 or not cfg.range[0] < cfg.range[1]:
        raise ConfigError(f"{where}.range = {cfg.range}: expected [low, high] with low < high, e.g. [0, 1]")
    return ScoreModel(_judge(cfg, base_dir, where), _messages(cfg, where, False), *cfg.range)


def label_model(cfg: GraderConfig, base_dir: Path, where: str) -> LabelModel:
    labels, passing = tuple(cfg.labels), tuple(cfg.passing_labels)
    if len(labels) < 2 or len({lab.casefold() for lab in labels}) != len(labels):
        raise ConfigError(f"{where}.labels = {list(labels)}: expected two or more distinct labels, "
                          f"e.g. [\"correct\", \"incorrect\"]")
    if not passing or not set(passing) <= set(labels):
        raise ConfigError(f"{where}.passing_labels = {list(passing)}: expected a non-empty subset of labels "
                          f"{list(labels)}; an attempt labelled with one of them scores 1.0")
    return LabelModel(_judge(cfg, base_dir, where), _messages(cfg, where, False), labels, passing)


def rank_model(cfg: GraderConfig, base_dir: Path, where: str) -> RankModel:
    return RankModel(_judge(cfg, base_dir, where), _messages(cfg, where, True))
