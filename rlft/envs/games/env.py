"""One game as an episode (rlft.envs.base.Env), and self-play games split into one trajectory per side.

The policy sees the board (empty cells shown as their move numbers) and whose turn it is, and
replies with a move. ``GameEnv(start)`` is *self-play*: every reply is a move for the side to
move, so the policy plays both sides of one game. ``GameEnv(start, opponent, side)`` is a game
against a fixed player (random or the perfect solver): the policy plays ``side`` and the env
answers each move with the opponent's.

A reply that is not a legal move loses the game for the side that made it (the episode ends):
the rules are learnt from the outcome like everything else.

``split_sides`` turns a group of G self-play games into two groups of G trajectories, one per
side: the same tokens, ``sampled_mask`` kept only on that side's replies (from one side's point
of view the other side is the environment), reward = that side's outcome. GRPO then compares
the G games' outcomes for each side separately.
"""

from __future__ import annotations

import random
import re
from dataclasses import replace
from types import ModuleType

from rlft.envs.base import StepResult
from rlft.types import Group, Message, Trajectory

OUTCOME = {"win": 1.0, "draw": 0.5, "loss": 0.0}


def parse_move(action: str) -> int | None:
    """The move in a reply: the whole reply must be one number (spaces allowed)."""
    m = re.fullmatch(r"\s*(\d+)\s*", action)
    return int(m.group(1)) if m else None


def outcome(result: str, side: str) -> str:
    """``result`` (a side that won, or ``draw``) from ``side``'s point of view."""
    return "draw" if result == "draw" else "win" if result == side else "loss"


class GameEnv:
    tools: list[dict] = []

    def __init__(self, game: ModuleType, start: str, opponent=None, side: str | None = None,
                 rng: random.Random | None = None):
        """Self-play from ``start``; or, with ``opponent`` (a Player), the policy plays ``side``."""
        self.game, self.board = game, game.check_position(start)
        self.opponent, self.rng = opponent, rng or random.Random(0)
        assert game.winner(start) is None, f"the game is already over in {start!r}"
        assert (opponent is None) == (side is None), "give both opponent and side, or neither (self-play)"
        self.side = side or game.to_move(start)  # the side whose outcome is this episode's reward
        if opponent is not None and game.to_move(self.board) != side:
            self.board = game.play(self.board, opponent(self.board, self.rng))
        self.movers: list[str] = []  # the side each policy reply moved for
        self.result: str | None = None  # x, o or draw once over
        self.illegal = False

    def _show(self) -> list[Message]:
        return [{"role": "user", "content": f"{self.game.render(self.board)}\n{self.game.to_move(self.board)} to move"}]

    def initial_observation(self) -> list[Message]:
        return [{"role": "system", "content": self.game.RULES}, *self._show()]

    def _end(self, result: str) -> StepResult:
        self.result = result
        info = {"result": result, "illegal": self.illegal, "outcome": outcome(result, self.side)}
        return StepResult(reward=OUTCOME[info["outcome"]], done=True, info=info)

    def step(self, action: str) -> StepResult:
        mover = self.game.to_move(self.board)
        self.movers.append(mover)
        move = parse_move(action)
        if move not in self.game.legal_moves(self.board):
            self.illegal = True
            return self._end("o" if mover == "x" else "x")
        self.board = self.game.play(self.board, move)
        if self.opponent is not None and self.game.winner(self.board) is None:
            self.board = self.game.play(self.board, self.opponent(self.board, self.rng))
        if (w := self.game.winner(self.board)) is not None:
            return self._end(w)
        return StepResult(self._show())


def reply_spans(sampled_mask_T: list[int]) -> list[tuple[int, int]]:
    """[start, end) of each run of sampled tokens: one per policy reply, in order."""
    spans, start = [], None
    for i, m in enumerate([*sampled_mask_T, 0]):
        if m and start is None:
            start = i
        elif not m and start is not None:
            spans.append((start, i))
            start = None
    return spans


def _movers_and_result(t: Trajectory, env: GameEnv) -> tuple[list[str], str]:
    """Who made each reply in ``t``, and how the game ended. A reply cut off by the token limit
    never reached the env: it was the side to move's, and it loses like an illegal move. A game
    cut before a reply (the context was full) counts as a draw."""
    movers, result = list(env.movers), env.result
    if result is None:
        side = env.game.to_move(env.board)
        if len(reply_spans(t.sampled_mask_T)) > len(movers):
            movers.append(side)
            result = "o" if side == "x" else "x"
        else:
            result = "draw"
    return movers, result


def side_trajectory(t: Trajectory, env: GameEnv, side: str) -> Trajectory:
    """``t`` as ``side`` played it: only its replies trained, its outcome as reward. A side that
    never moved (the other lost on its first move) keeps an all-zero mask: it adds no gradient,
    and it is not *errored* (nothing failed; errored attempts are for broken graders)."""
    spans = reply_spans(t.sampled_mask_T)
    movers, result = _movers_and_result(t, env)
    assert len(spans) == len(movers), f"{len(spans)} replies in the tokens, {len(movers)} moves in the env"
    mask = [0] * len(t.tokens_T)
    for (a, b), mover in zip(spans, movers):
        if mover == side:
            mask[a:b] = [1] * (b - a)
    res = outcome(result, side)
    return replace(t, sampled_mask_T=mask, reward=OUTCOME[res], metadata={**t.metadata, "side": side, "outcome": res})


def split_sides(group: Group, envs_G: list[GameEnv]) -> list[Group]:
    """One self-play group -> a group per side (the side to move at the start first)."""
    first = envs_G[0].side
    sides = [first, "o" if first == "x" else "x"]
    return [Group([side_trajectory(t, env, s) for t, env in zip(group.trajectories_G, envs_G)], {**group.item, "side": s})
            for s in sides]
