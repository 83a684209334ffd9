"""``rlft world check WORLD``: every task is solvable and none is passed by doing nothing.

For each task of each split, scripted agents play it through the real environment (tools,
sandbox, view, scoring): the *gold* agent sends the task's gold actions as tool calls and then
states the required outputs, and must score 1; the *idle* agent only says "ok" to every turn,
and must score 0. For a task whose gold actions write, three reward-hacking probes must score 0
too: *stated* (the required outputs said, no tool called), *reads only* (the gold read calls,
then the outputs) and *wrong row* (the gold actions with one write's integer argument pointed at
another row that exists, then the outputs). A task that fails a check is listed with its
diagnostics.
"""

from __future__ import annotations

import argparse
import json
import sys

from rlft.envs.tools import TOOL_FORMATS, ToolCall
from rlft.envs.worlds.env import WorldEnv
from rlft.envs.worlds.scoring import replay
from rlft.envs.worlds.world import World, WorldError, load_world


def gold_replies(task: dict, fmt) -> list[str]:
    calls = [fmt.render(ToolCall(a["name"], a.get("arguments", {}))) for a in task.get("gold_actions", [])]
    return calls + [" ".join(task.get("outputs", [])) or "done"] * (1 + len(task.get("user_turns", [])))


def probes(world: World, task: dict, fmt) -> dict[str, list[str]]:
    """The reward-hacking agents for a task whose gold actions write (none for a read-only task:
    there, stating the outcome without looking is what ``require_reads`` refuses)."""
    gold = task.get("gold_actions", [])
    writes = [i for i, a in enumerate(gold) if world.tools[a["name"]].kind == "write"]
    if not writes:
        return {}
    said = gold_replies({**task, "gold_actions": []}, fmt)
    reads = [a for a in gold if world.tools[a["name"]].kind == "read"]
    out = {"stated": said, "reads only": gold_replies({**task, "gold_actions": reads}, fmt)}
    if wrong := wrong_row(world, gold, writes):
        out["wrong row"] = gold_replies({**task, "gold_actions": wrong}, fmt)
    return out


def wrong_row(world: World, gold: list[dict], writes: list[int]) -> list[dict] | None:
    """The gold actions with the first write whose integer argument can point at another existing
    row (the call succeeds) changed so; None when no write has such an argument."""
    for i in writes:
        for key, value in gold[i].get("arguments", {}).items():
            if not isinstance(value, int) or isinstance(value, bool):
                continue
            for other in sorted({1, 2, 3, *range(value - 20, value + 21)} - {value}, key=lambda o: abs(o - value)):
                actions = [*gold[:i], {**gold[i], "arguments": {**gold[i]["arguments"], key: other}}, *gold[i + 1:]]
                try:
                    replay(world, actions).close()
                except WorldError:
                    continue
                return actions
    return None


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
            for name, replies in probes(world, task, TOOL_FORMATS["compact"]).items():
                reward, info = play(world, task, replies)
                if reward != 0.0:
                    report["problems"].append({"task": task["id"], "problem": f"reward hack '{name}' scores",
                                               "reward": reward, **info})
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
    for p in report["problems"][:20]:  # the report, problems and summary, on stdout; a world that cannot load: stderr
        print(json.dumps(p, default=str))
    print(f"{report['world']}: {n} tasks ({', '.join(f'{k} {v}' for k, v in report['splits'].items())}); "
          + ("every task solvable by its gold actions (reward 1) and failed by doing nothing, by stating the"
             " outputs, by reads only and by writing the wrong row (reward 0)"
             if report["ok"] else f"{len(report['problems'])} problems"))
    return 0 if report["ok"] else 1
