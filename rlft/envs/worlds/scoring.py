"""Rewards from the end state (τ-bench style), with diagnostics of what differed.

A task is checked on up to three counts:

- ``state``: the episode's final database equals the one obtained by replaying the task's
  ``gold_actions`` on a fresh copy (every table, row for row);
- ``assertions``: each ``{"sql", "expect"}`` query returns ``expect`` (default ``[[1]]``);
- ``outputs``: each required string appears in what the agent said to the user (whole words,
  case-insensitive);
- ``reads`` (with ``require_reads``): every *read* call among the gold actions was made, with the
  same arguments and without an error. Reads leave no trace in the database, so without this a
  task whose right outcome is "deny" is passed by denying without looking anything up.

Reward 1 when every check passes, else 0, or with ``partial_credit`` the fraction of checks that
pass. A *violation* is an episode whose writes left the database different from the gold end
state (it changed something it should not have, or changed it wrongly); an agent that merely
failed to act is not counted as violating.
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from typing import Any

from rlft.envs.tools import ToolCall, call_tool
from rlft.envs.worlds.sandbox import Database
from rlft.envs.worlds.world import World, WorldError


def replay(world: World, actions: list[dict]) -> Database:
    """A fresh episode database after ``actions`` ({"name", "arguments"}) ran in order."""
    db = world.open()
    schemas = {s["function"]["name"]: s for s in world.schemas}
    for a in actions:
        _, error = call_tool(
            {n: functools.partial(db.call, f) for n, f in world.tools.items()}, schemas,
            ToolCall(a["name"], a.get("arguments", {})),
        )
        if error:
            raise WorldError(f"gold action {a['name']}({a.get('arguments')}) failed: {error}")
    return db


def gold_written(world: World, task: dict) -> dict[str, list[tuple]]:
    """The rows of every table the task's gold actions write, after they ran; replayed once per
    task and kept on the world."""
    if task["id"] not in world.gold:
        db = replay(world, task["gold_actions"])
        world.gold[task["id"]] = db.tables(set(db.touched))
        db.close()
    return world.gold[task["id"]]


def gold_state(world: World, task: dict, names: set[str]) -> dict[str, list[tuple]]:
    """The rows of tables ``names`` after the task's gold actions: the written ones from
    ``gold_written``, the others as they are in a fresh database."""
    written = gold_written(world, task)
    if names <= set(written):
        return {n: written[n] for n in names}
    fresh = world.open()
    rows = fresh.tables(names - set(written))
    fresh.close()
    return {**rows, **{n: written[n] for n in names & set(written)}}


def diff_tables(got: dict[str, list[tuple]], want: dict[str, list[tuple]], shown: int = 3) -> dict[str, Any]:
    """Per table that differs: rows only in the episode's DB (extra) and only in the gold (missing)."""
    out = {}
    for name in sorted(set(got) | set(want)):
        g, w = got.get(name, []), want.get(name, [])
        if g == w:
            continue
        extra, missing = list((Counter(g) - Counter(w)).elements()), list((Counter(w) - Counter(g)).elements())
        if extra or missing:
            out[name] = {"extra": extra[:shown], "missing": missing[:shown]}
    return out


def stated(output: str, said: str) -> bool:
    return re.search(rf"(?<![\w.]){re.escape(output)}(?!\w|\.\d)", said, re.I) is not None


def score(world: World, task: dict, db: Database, said: list[str], wrote: bool, partial_credit: bool,
          actions: list[dict] | None = None, require_reads: bool = False) -> tuple[float, dict]:
    """(reward, diagnostics) for an episode that ended with ``db``; ``said`` are the agent's
    messages to the user, ``wrote`` whether it called any write tool successfully, ``actions``
    its tool calls ({"name", "arguments", "error"?}; needed with ``require_reads``)."""
    checks: dict[str, bool] = {}
    info: dict[str, Any] = {}
    if require_reads:
        made = [(a["name"], a["arguments"]) for a in actions or [] if "error" not in a]
        reads = [a for a in task.get("gold_actions", []) if world.tools[a["name"]].kind == "read"]
        if missing := [a for a in reads if (a["name"], a.get("arguments", {})) not in made]:
            info["missing_reads"] = missing
        checks["reads"] = not missing
    if "gold_actions" in task:
        # Every table the agent wrote and every table the gold actions wrote; the others are
        # pristine in both. (Comparing only the agent's tables passed a write task by doing nothing.)
        names = set(db.touched) | set(gold_written(world, task))
        diff = diff_tables(db.tables(names), gold_state(world, task, names))
        checks["state"] = not diff
        if diff:
            info["diff"] = diff
    for i, a in enumerate(task.get("assertions", [])):
        try:
            got = [list(r.values()) for r in db.query(a["sql"])]
        except Exception as e:
            got = f"{type(e).__name__}: {e}"
        checks[f"assertion {i}"] = got == a.get("expect", [[1]])
        if not checks[f"assertion {i}"]:
            info.setdefault("failed_assertions", []).append({"sql": a["sql"], "got": got})
    text = "\n".join(said)
    for out in task.get("outputs", []):
        checks[f"output {out}"] = stated(out, text)
    if missing := [o for o in task.get("outputs", []) if not checks[f"output {o}"]]:
        info["missing_outputs"] = missing
    passed = sum(checks.values())
    reward = passed / len(checks) if partial_credit else float(passed == len(checks))
    state_ok = checks.get("state", True) and "failed_assertions" not in info
    info |= {"success": passed == len(checks), "violation": wrote and not state_ok, "checks_passed": passed,
             "checks": len(checks)}
    return (reward if checks else 0.0), info
