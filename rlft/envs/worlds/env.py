"""One episode in a world: the Env the runner plays (rlft.envs.base).

The agent sees the world's policy and the customer's request. Each reply is either a tool call
(in the episode's tool-call format), answered with the tool's result rendered by the *view*, or a
message to the user, answered by the task's next scripted user turn; when none is left the
episode ends and is scored from the database's end state (rlft.envs.worlds.scoring).
"""

from __future__ import annotations

import functools

from rlft.envs.base import StepResult
from rlft.envs.tools import ToolCallError, call_tool
from rlft.envs.worlds.scoring import score
from rlft.envs.worlds.world import View, World
from rlft.types import Message


class WorldEnv:
    def __init__(self, world: World, task: dict, view: View, fmt, partial_credit: bool = False, instructions: bool = True,
                 require_reads: bool = False):
        """``instructions=False``: the opening is the request alone, without the policy and the
        tool list (the tools still work; a model trained on demonstrations knows them).
        ``require_reads``: the gold read calls must be made too (rlft.envs.worlds.scoring)."""
        self.world, self.task, self.view, self.fmt = world, task, view, fmt
        self.partial_credit, self.instructions, self.require_reads = partial_credit, instructions, require_reads
        self.tools = world.schemas if instructions else []
        self.db = world.open()
        self._schemas = {s["function"]["name"]: s for s in world.schemas}
        self._tools = {n: functools.partial(self.db.call, f) for n, f in world.tools.items()}
        self.user_turns = list(task.get("user_turns", []))
        self.said: list[str] = []
        self.actions: list[dict] = []  # every tool call, for transcripts and diagnostics
        self.wrote = False

    def initial_observation(self) -> list[Message]:
        request = {"role": "user", "content": self.task["instruction"]}
        return [{"role": "system", "content": self.world.policy}, request] if self.instructions else [request]

    def step(self, action: str) -> StepResult:
        try:
            call = self.fmt.parse(action)
        except ToolCallError as e:
            return StepResult([{"role": "tool", "content": f"error: {e}"}], info={"malformed": True})
        if call is not None:
            result, error = call_tool(self._tools, self._schemas, call)
            self.actions.append({"name": call.name, "arguments": call.arguments, **({"error": error} if error else {})})
            if error is None and self.world.tools[call.name].kind == "write":
                self.wrote = True
            return StepResult([{"role": "tool", "content": f"error: {error}" if error else self.view.render(result)}])
        self.said.append(action)
        if self.user_turns:
            return StepResult([{"role": "user", "content": self.user_turns.pop(0)}])
        reward, info = score(self.world, self.task, self.db, self.said, self.wrote, self.partial_credit, self.actions,
                             self.require_reads)
        self.db.close()
        return StepResult(reward=reward, done=True, info={"task": self.task["id"], "actions": self.actions, **info})
