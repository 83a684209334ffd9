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
import inspect
import json
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from rlft.config import ConfigError
from rlft.config.files import read_text, read_toml
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
    try:
        return read_text(path, "world file")  # a BOM dropped, a byte that is not UTF-8 named by line
    except ConfigError as e:
        raise WorldError(str(e)) from None


def _build(folder: Path) -> Any:
    """The pristine database from schema.sql and seed.sql; a failing statement is named by file,
    line, statement (shortened) and SQLite's message."""
    try:
        return sandbox.build(_read(folder, "schema.sql"), _read(folder, "seed.sql"))
    except sandbox.ScriptError as e:
        sql = " ".join(e.statement.split())
        sql = sql if len(sql) <= 100 else sql[:97] + "..."
        raise WorldError(f"{folder / e.file}:{e.line}: SQLite error: {e} in `{sql}`; fix that statement") from None


def _import(path: Path) -> Any:
    """tools.py as a module; a syntax error or an exception while importing it names the line."""
    if not path.exists():
        raise WorldError(f"{path}: missing; a world folder needs schema.sql, seed.sql, policy.md, tools.py, tasks/")
    spec = importlib.util.spec_from_file_location(f"rlft_world_tools_{abs(hash(str(path)))}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except SyntaxError as e:  # in tools.py, or in a module it imports: e.filename says which
        raise WorldError(f"{e.filename}:{e.lineno}: syntax error: {e.msg}; fix the code") from None
    except (Exception, SystemExit) as e:
        lines = [f.lineno for f in traceback.extract_tb(e.__traceback__) if f.filename == str(path)]
        where = f"{path}:{lines[-1]}" if lines else str(path)
        raise WorldError(f"{where}: importing the tools raised {type(e).__name__}: {e}; fix tools.py") from None
    return module


def _load_tools(path: Path) -> tuple[dict[str, Callable], list[dict]]:
    """The tools (functions marked @read or @write) and their schemas; a tool whose signature
    cannot become a schema is named with its line."""
    module = _import(path)
    tools = {n: f for n, f in vars(module).items() if callable(f) and getattr(f, "kind", None) in ("read", "write")}
    if not tools:
        raise WorldError(f"{path}: no tools; mark each tool function with @read or @write from rlft.envs.worlds.sandbox")
    schemas = []
    for name, fn in tools.items():
        if not inspect.isfunction(fn):
            raise WorldError(f"{path}: tool {name} is a {type(fn).__name__}, not a function; mark functions "
                             f"`def {name}(db: Database, ...)` with @read or @write")
        where = f"{inspect.getsourcefile(fn)}:{fn.__code__.co_firstlineno}: tool {name}"
        if next(iter(inspect.signature(fn).parameters), None) != "db":
            raise WorldError(f"{where}: the first parameter must be db, the episode's database; "
                             f"fix: def {name}(db: Database, ...)")
        try:
            schemas.append(tool_schema(fn, bound=("db",)))
        except Exception as e:  # noqa: BLE001 - a parameter without a type, a type with no JSON schema, a bad hint
            msg = str(e).removeprefix(f"tool {fn.__name__}: ")
            raise WorldError(f"{where}: {msg if isinstance(e, TypeError) else f'{type(e).__name__}: {e}'}; "
                             f"fix its signature") from None
    return tools, schemas


def _load_tasks(path: Path, tools: dict[str, Callable]) -> list[dict]:
    tasks, errors = [], []
    for i, line in enumerate(_read(path.parent, path.name).splitlines(), 1):
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
    pristine = _build(folder)
    tools, schemas = _load_tools(folder / "tools.py")
    views = {"full": View("full")}
    if (folder / "views.toml").exists():
        try:
            table, _ = read_toml(folder / "views.toml", "world file")
        except ConfigError as e:
            raise WorldError(str(e)) from None
        for vname, spec in table.items():
            if not isinstance(spec, dict) or not isinstance(spec.get("fields", []), list):
                raise WorldError(f"{folder / 'views.toml'}: [{vname}] must be a table with fields = [\"name\", ...]")
            views[vname] = View(vname, frozenset(spec["fields"]) if spec.get("fields") else None)
    splits = {p.stem: _load_tasks(p, tools) for p in sorted((folder / "tasks").glob("*.jsonl"))}
    if not splits:
        raise WorldError(f"{folder / 'tasks'}: no task files; write tasks/train.jsonl (and tasks/eval.jsonl)")
    return World(
        name, folder, _read(folder, "policy.md").strip(), tools, schemas, views, splits, pristine,
    )
