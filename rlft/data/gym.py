"""Procedural data from ``reasoning-gym`` (an optional extra: ``pip install rlft[gym]``).

A source ``"reasoning_gym:NAME?key=value&..."`` generates items of the reasoning-gym dataset
NAME instead of reading a file. The options are rlft's own ``size``, ``seed`` and ``system``
and any field of the dataset's config (e.g. ``min_animals=3``); values are TOML literals
(``3``, ``0.5``, ``true``, ``"text"``; a bare word is a string).

Train and eval must not share items. reasoning-gym makes item ``i`` from ``Random(seed + i)``,
so two seeds a little apart give the same items shifted by one: sets are disjoint only when
their seed ranges ``[seed, seed + size)`` are. The defaults see to it (train: seed 0, size
1000; eval: seed 1,000,000, size 100) and ``overlap_errors`` refuses jobs where they overlap.

Each row is ``{"prompt", "question", "answer", "metadata", "_gym"}``; ``_gym`` names the
dataset and its config so the ``reasoning_gym`` grader scores with the dataset's own scorer.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import tomllib
from typing import Any, Iterator

from rlft.data.loading import DataError

PREFIX = "reasoning_gym:"
DEFAULTS = {"train": {"seed": 0, "size": 1000}, "eval": {"seed": 1_000_000, "size": 100}}
RLFT_OPTIONS = ("size", "seed", "system")  # rlft's; every other option goes to the dataset config
INSTALL = "fix: pip install 'rlft[gym]' (or pip install reasoning-gym)"


class GymError(DataError):
    """A reasoning_gym source that cannot be used; the message names the source and the fix."""


def is_gym(source: str) -> bool:
    return source.startswith(PREFIX)


def import_gym():
    """The ``reasoning_gym`` module, or a GymError saying how to install it."""
    try:
        import reasoning_gym
    except ImportError as e:
        raise GymError(f"reasoning-gym is not installed ({e}); {INSTALL}") from None
    return reasoning_gym


@dataclasses.dataclass(frozen=True)
class GymSpec:
    """A parsed source: the dataset, rlft's options (role defaults filled in) and the dataset's."""

    name: str
    seed: int
    size: int
    system: str  # a key of reasoning_gym.utils.SYSTEM_PROMPTS, or "" for none
    config: tuple[tuple[str, Any], ...]  # the dataset's own options, sorted

    def key(self) -> str:
        """Dataset and config, without seed and size: what the scorer needs (the rows' ``_gym``)."""
        return PREFIX + self.name + "".join(f"{'?' if i == 0 else '&'}{k}={v!r}" for i, (k, v) in enumerate(self.config))


def _value(text: str) -> Any:
    try:
        value = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text  # a bare word: a string
    return tuple(value) if isinstance(value, list) else value  # hashable, for the dataset cache


def parse(source: str, role: str = "train") -> GymSpec:
    """``"reasoning_gym:leg_counting?size=200&min_animals=3"`` -> GymSpec; ``role`` ("train" or
    "eval") picks the default seed and size."""
    assert is_gym(source), f"not a reasoning_gym source: {source!r}"
    name, _, query = source[len(PREFIX):].partition("?")
    if not name:
        raise GymError(f"{source}: no dataset name; fix: write \"reasoning_gym:NAME\", e.g. \"reasoning_gym:leg_counting\"")
    options: dict[str, Any] = dict(DEFAULTS[role], system="")
    config = {}
    for part in filter(None, query.split("&")):
        key, eq, text = part.partition("=")
        if not eq or not key:
            raise GymError(f"{source}: option {part!r} is not key=value; fix: e.g. \"reasoning_gym:{name}?size=500&seed=1\"")
        (options if key in RLFT_OPTIONS else config)[key] = _value(text)
    for key in ("seed", "size"):
        if not isinstance(options[key], int) or isinstance(options[key], bool) or options[key] < (key == "size"):
            raise GymError(f"{source}: {key} = {options[key]!r} must be an integer >= {int(key == 'size')}")
    return GymSpec(name, options["seed"], options["size"], str(options["system"]), tuple(sorted(config.items())))


@functools.lru_cache(maxsize=32)
def dataset(name: str, config: tuple[tuple[str, Any], ...], seed: int = 0, size: int = 1):
    """``reasoning_gym.create_dataset``, with errors that list the valid names and options."""
    rg = import_gym()
    from reasoning_gym.factory import DATASETS

    if name not in DATASETS:
        close = difflib.get_close_matches(name, list(DATASETS), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise GymError(f"{PREFIX}{name}: no such reasoning-gym dataset; {hint}valid: {', '.join(sorted(DATASETS))}")
    fields = [f.name for f in dataclasses.fields(DATASETS[name][1]) if f.name not in ("seed", "size")]
    unknown = [k for k, _ in config if k not in fields]
    if unknown:
        raise GymError(f"{PREFIX}{name}: unknown option(s) {unknown}; rlft's: {', '.join(RLFT_OPTIONS)}; "
                       f"the dataset's: {', '.join(fields)}")
    try:
        return rg.create_dataset(name, seed=seed, size=size, **dict(config))
    except Exception as e:  # the dataset's config validation (AssertionError, ValueError, TypeError)
        raise GymError(f"{PREFIX}{name}: the dataset refused its options {dict(config)}: {type(e).__name__}: {e}") from e


def read(source: str, role: str = "train") -> Iterator[tuple[str, int, Any]]:
    """Rows of ``source`` in load_items' reader form: (where, _line = index, row)."""
    spec = parse(source, role)
    ds = dataset(spec.name, spec.config, spec.seed, spec.size)
    system = _system_prompt(spec)
    for i in range(spec.size):
        entry = ds[i]
        prompt = entry["question"] if not system else [
            {"role": "system", "content": system}, {"role": "user", "content": entry["question"]}]
        row = {"prompt": prompt, "question": entry["question"], "answer": entry["answer"],
               "metadata": entry["metadata"], "_gym": spec.key()}
        yield f"item {i}", i, row


def _system_prompt(spec: GymSpec) -> str:
    if not spec.system:
        return ""
    from reasoning_gym.utils import SYSTEM_PROMPTS

    if spec.system not in SYSTEM_PROMPTS:
        raise GymError(f"{PREFIX}{spec.name}: system = {spec.system!r} is not a reasoning-gym system prompt; "
                       f"valid: {', '.join(SYSTEM_PROMPTS)}")
    return SYSTEM_PROMPTS[spec.system]


def overlap_errors(train: str, eval: str) -> list[str]:
    """Problems when data.train and data.eval would generate shared items (same dataset and
    options, seed ranges overlapping); [] when they cannot."""
    if not (is_gym(train) and is_gym(eval)):
        return []
    try:
        a, b = parse(train, "train"), parse(eval, "eval")
    except GymError as e:
        return [str(e)]
    if (a.name, a.config) != (b.name, b.config):
        return []
    if a.seed < b.seed + b.size and b.seed < a.seed + a.size:
        return [
            f"data.train = {train!r} (seeds {a.seed}..{a.seed + a.size - 1}) and data.eval = {eval!r} "
            f"(seeds {b.seed}..{b.seed + b.size - 1}) overlap: reasoning-gym makes item i from seed + i, so they "
            f"share items; fix: give data.eval a seed at least {a.seed + a.size}, e.g. \"...?seed={a.seed + a.size}\", "
            f"or leave its seed out (the eval default is {DEFAULTS['eval']['seed']})"
        ]
    return []
