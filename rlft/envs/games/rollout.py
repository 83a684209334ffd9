"""A game as the RL loop's source of episodes, and its evaluation against fixed opponents.

``GameRollout(job)`` is what ``train_rl`` uses for a job with a ``[game]`` table, the same way
it uses ``WorldRollout`` for ``[world]``: ``items`` are the starting positions (every opening
with at most ``game.openings`` stones), and ``run_groups`` plays G self-play games from each and
returns *two* groups per position, one per side (``env.split_sides``). ``evaluate`` plays the
policy against each opponent of ``game.opponents`` (random, the perfect solver), half the
games as each side, and reports win/draw/loss/illegal rates: the periodic eval of the run.
"""

from __future__ import annotations

import random
from typing import Sequence

import torch

from rlft.config import ConfigError, Job
from rlft.envs.games import GAMES
from rlft.envs.games.env import GameEnv, split_sides
from rlft.envs.tools import TOOL_FORMATS
from rlft.rollout.render import ChatRenderer
from rlft.rollout.runner import Limits, run_episodes
from rlft.rollout.sampler import SamplingParams


def open_game(job: Job):
    """The job's game module, checked before any model loads."""
    g = job.game
    if g.name not in GAMES:
        raise ConfigError(f"[game] name = {g.name!r}: no such game; games: {', '.join(GAMES)}")
    game = GAMES[g.name]
    if unknown := [o for o in g.opponents if o not in game.PLAYERS]:
        raise ConfigError(f"[game] opponents {unknown}: valid opponents are {', '.join(game.PLAYERS)}")
    return game


class GameRollout:
    def __init__(self, job: Job):
        self.job, self.game = job, open_game(job)
        self.items = [{"id": f"opening-{i}", "board": b, "_source": f"{job.game.name} openings", "_line": i}
                      for i, b in enumerate(self.game.openings(job.game.openings))]
        self.limits = Limits(max_turns=9, max_length=job.model.max_length)  # a game has at most 9 moves

    def run_groups(self, sampler, items_P, prompts_P, grader, G, params, generator):
        """G self-play games from each position of ``items_P``; 2P groups back (``prompts_P``
        and ``grader`` are unused: the board is the prompt, the outcome the reward)."""
        envs_P_G = [[GameEnv(self.game, it["board"]) for _ in range(G)] for it in items_P]
        renderer = ChatRenderer(sampler.tokenizer, TOOL_FORMATS["compact"])
        groups, times = run_episodes(sampler, renderer, envs_P_G, items_P, params, self.limits, generator)
        return [side for g, envs_G in zip(groups, envs_P_G) for side in split_sides(g, envs_G)], times

    def evaluate(self, sampler, params: SamplingParams, seed: int) -> dict[str, float]:
        """``game.eval_games`` games against each opponent, the policy x in the first half and
        o in the second: {"OPPONENT/win": rate, ".../draw", ".../loss", ".../illegal"}."""
        return evaluate_game(self.game, sampler, self.job.game.opponents, self.job.game.eval_games, params, seed,
                             self.limits)


def evaluate_game(game, sampler, opponents: Sequence[str], n_games: int, params: SamplingParams, seed: int,
                  limits: Limits) -> dict[str, float]:
    renderer = ChatRenderer(sampler.tokenizer, TOOL_FORMATS["compact"])
    out = {}
    for k, name in enumerate(opponents):
        sides = ["x"] * (n_games - n_games // 2) + ["o"] * (n_games // 2)
        envs = [GameEnv(game, game.EMPTY, game.PLAYERS[name], side, random.Random(seed * 7919 + k * 997 + i))
                for i, side in enumerate(sides)]
        generator = torch.Generator().manual_seed(seed + k)
        run_episodes(sampler, renderer, [[e] for e in envs], [{} for _ in envs], params, limits, generator)
        results = [e.result and ("draw" if e.result == "draw" else "win" if e.result == e.side else "loss") for e in envs]
        for r in ("win", "draw", "loss"):
            out[f"{name}/{r}"] = results.count(r) / n_games
        out[f"{name}/illegal"] = sum(e.illegal for e in envs) / n_games
        out[f"{name}/unfinished"] = results.count(None) / n_games
    return out
