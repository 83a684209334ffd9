"""A world is a folder of data (the issue's "worlds as data"):

    schema.sql         the tables
    seed.sql           the rows every episode starts from
    policy.md          the rules the agent must follow (shown as the system message)
    tools.py           functions ``fn(db, ...)`` over ``sandbox.Database``, each marked
                       ``@read`` or ``@write`` (from rlft.envs.worlds.sandbox)
    views.toml         optional: ``[name] fields = [...]``, which result fields the agent is shown
                       (absent view or ``fields = []`` = everything)
    tasks/train.jsonl  one task per line (``tasks/eval.jsonl`` held out):
                       {"id", "instruction", "user_turns"?: [...],
                        "gold_actions"?: [{"name", "arguments"}], "assertions"?: [{"sql", "expect"}],
                        "outputs"?: ["what the agent must state"], ...}

``load_world("retail")`` loads a built-in world; any other name is a folder path.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from rlft.envs.tools import tool_schema
from rlft.envs.worlds import sandbox

BUILT_IN = Path(__file__).parent
TASK_KEYS = {"id", "instruction", "user_turns", "gold_actions", "assertions", "outputs", "kind", "notes"}


class WorldError(ValueError):
    """A world folder that cannot be used; the message names the file and the fix."""


@dataclass(frozen=True)
class View:
    """Which fields of tool results the agent sees; ``None`` = all. Rendering is separate from
    the state: the same database shown through two views gives two different observations."""

    name: str
    fields: frozenset[str] | None = None

    def keep(self, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: self.keep(v) for k, v in value.items() if self.fields is None or k in self.fields}
        if isinstance(value, list):
            return [self.keep(v) for v in value]
        return value

    def render(self, value: Any) -> str:
        """Compact text: a row is ``key=value`` pairs on one line; a list is one row a line."""
        return _render(self.keep(value))


def _render(value: Any, indent: str = "") -> str:
    if isinstance(value, list):
        return "\n".join(_render(v, indent) for v in value) if value else f"{indent}(none)"
    if not isinstance(value, dict):
        return f"{indent}{value}"
    flat = " ".join(f"{k}={v}" for k, v in value.items() if not isinstance(v, (list, dict)))
    nested = [_render(v, indent + "  ") for v in value.values() if isinstance(v, (list, dict))]
    return "\n".join([indent + flat, *nested])


@dataclass
class World:
    name: str
    folder: Path
    policy: str
    tools: dict[str, Callable]
    schemas: list[dict]
    views: dict[str, View]
    tasks: dict[str, list[dict]]  # split -> tasks
    pristine: Any  # sqlite3.Connection
    limits: sandbox.Limits = field(default_factory=sandbox.Limits)
    gold: dict[str, dict] = field(default_factory=dict, repr=False)  # task id -> rows of the tables gold writes

    def open(self) -> sandbox.Database:
        """A private copy of the pristine database for one episode."""
        return sandbox.Database(self.pristine, self.limits)

    def view(self, name: str) -> View:
        if name not in self.views:
            raise WorldError(f"world {self.name!r} has no view {name!r}; views: {', '.join(self.views)}")
        return self.views[name]


def _read(folder: Path, name: str) -> str:
    path = folder / name
    if not path.exists():
        raise WorldError(f"{path}: missing; a world folder needs schema.sql, seed.sql, policy.md, tools.py, tasks/")
    return path.read_text(encoding="utf-8")


def _load_tools(path: Path) -> dict[str, Callable]:
    spec = importlib.util.spec_from_file_location(f"rlft_world_tools_{abs(hash(str(path)))}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    tools = {n: f for n, f in vars(module).items() if callable(f) and getattr(f, "kind", None) in ("read", "write")}
    if not tools:
        raise WorldError(f"{path}: no tools; mark each tool function with @read or @write from rlft.envs.worlds.sandbox")
    return tools


def _load_tasks(path: Path, tools: dict[str, Callable]) -> list[dict]:
    tasks, errors = [], []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            task = json.loads(line)
        except json.JSONDecodeError as e:
            errors.append(f"{path}:{i}: not JSON ({e})")
            continue
        if unknown := set(task) - TASK_KEYS:
            errors.append(f"{path}:{i}: unknown keys {sorted(unknown)}; valid: {sorted(TASK_KEYS)}")
        if not {"id", "instruction"} <= set(task):
            errors.append(f"{path}:{i}: a task needs \"id\" and \"instruction\"")
        if "gold_actions" not in task and not task.get("assertions"):
            errors.append(f"{path}:{i}: give \"gold_actions\" (may be []) or \"assertions\" for the end state")
        for a in task.get("gold_actions", []):
            if a.get("name") not in tools:
                errors.append(f"{path}:{i}: gold action {a.get('name')!r} is not a tool; tools: {', '.join(tools)}")
        tasks.append({**task, "_source": str(path), "_line": i})  # where it came from, for messages
    if errors:
        raise WorldError("\n".join(errors[:20]))
    return tasks


@functools.lru_cache(maxsize=8)
def load_world(name: str) -> World:
    """A built-in world by name, or a world folder by path (cached: the pristine DB is built once)."""
    folder = BUILT_IN / name if (BUILT_IN / name / "schema.sql").exists() else Path(name)
    if not folder.is_dir():
        built_in = sorted(p.name for p in BUILT_IN.iterdir() if (p / "schema.sql").exists())
        raise WorldError(f"no world {name!r}: not a folder, and the built-in worlds are {', '.join(built_in)}")
    pristine = sandbox.build(_read(folder, "schema.sql"), _read(folder, "seed.sql"))
    tools = _load_tools(folder / "tools.py")
    views = {"full": View("full")}
    if (folder / "views.toml").exists():
        for vname, spec in tomllib.loads(_read(folder, "views.toml")).items():
            views[vname] = View(vname, frozenset(spec["fields"]) if spec.get("fields") else None)
    splits = {p.stem: _load_tasks(p, tools) for p in sorted((folder / "tasks").glob("*.jsonl"))}
    if not splits:
        raise WorldError(f"{folder / 'tasks'}: no task files; write tasks/train.jsonl (and tasks/eval.jsonl)")
    return World(
        name, folder, _read(folder, "policy.md").strip(), tools,
        [tool_schema(f, bound=("db",)) for f in tools.values()], views, splits, pristine,
    )
