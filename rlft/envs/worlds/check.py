"""``rlft world check WORLD``: every task is solvable and none is passed by doing nothing.

For each task of each split, two scripted agents play it through the real environment (tools,
sandbox, view, scoring): the *gold* agent sends the task's gold actions as tool calls and then
states the required outputs, and must score 1; the *idle* agent only says "ok" to every turn,
and must score 0. A task that fails either check is listed with its diagnostics.
"""

from __future__ import annotations

import argparse
import json
import sys

from rlft.envs.tools import TOOL_FORMATS, ToolCall
from rlft.envs.worlds.env import WorldEnv
from rlft.envs.worlds.world import World, WorldError, load_world


def gold_replies(task: dict, fmt) -> list[str]:
    calls = [fmt.render(ToolCall(a["name"], a.get("arguments", {}))) for a in task.get("gold_actions", [])]
    return calls + [" ".join(task.get("outputs", [])) or "done"] * (1 + len(task.get("user_turns", [])))


def play(world: World, task: dict, replies: list[str], view: str = "full", fmt=TOOL_FORMATS["compact"]) -> tuple[float, dict]:
    """(reward, diagnostics) of a scripted agent; the episode must end within its replies."""
    env = WorldEnv(world, task, world.view(view), fmt)
    env.initial_observation()
    for reply in replies:
        result = env.step(reply)
        if result.done:
            return result.reward, result.info
    raise WorldError(f"task {task['id']}: the scripted agent ran out of replies before the episode ended")


def check(world: World) -> dict:
    report = {"world": world.name, "splits": {}, "problems": []}
    for split, tasks in world.tasks.items():
        report["splits"][split] = len(tasks)
        for task in tasks:
            try:
                gold, info = play(world, task, gold_replies(task, TOOL_FORMATS["compact"]))
                idle, idle_info = play(world, task, ["ok"] * (1 + len(task.get("user_turns", []))))
            except WorldError as e:
                report["problems"].append({"task": task["id"], "error": str(e)})
                continue
            if gold != 1.0:
                report["problems"].append({"task": task["id"], "problem": "gold actions score", "reward": gold, **info})
            if idle != 0.0:
                report["problems"].append({"task": task["id"], "problem": "doing nothing scores", "reward": idle})
    report["ok"] = not report["problems"]
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rlft world check", description=__doc__.split("\n\n")[0])
    parser.add_argument("world", help="a built-in world name (retail) or a world folder")
    args = parser.parse_args(argv)
    try:
        report = check(load_world(args.world))
    except WorldError as e:
        print(f"rlft world check: error: {e}", file=sys.stderr)
        return 2
    n = sum(report["splits"].values())
    for p in report["problems"][:20]:
        print(json.dumps(p, default=str), file=sys.stderr)
    print(f"{report['world']}: {n} tasks ({', '.join(f'{k} {v}' for k, v in report['splits'].items())}); "
          + ("every task solvable by its gold actions (reward 1) and failed by doing nothing (reward 0)"
             if report["ok"] else f"{len(report['problems'])} problems"))
    return 0 if report["ok"] else 1
