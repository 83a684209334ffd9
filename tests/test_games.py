"""Self-play games: tic-tac-toe rules, the perfect solver on known positions, the game env's
episode flow, the split of a self-play game into one trajectory per side, and a [game] job.

Run: OMP_NUM_THREADS=1 python -m pytest -q tests/test_games.py
"""

import json
import random

import pytest

from rlft.config import ConfigError, load_job
from rlft.envs.games import tictactoe as ttt
from rlft.envs.games.env import GameEnv, parse_move, reply_spans, split_sides
from rlft.types import Group, Trajectory

# --- rules ------------------------------------------------------------------------------------


@pytest.mark.parametrize("board,expected", [
    ("xxxoo....", "x"),  # top row
    ("xo.xo.x..", "x"),  # left column
    ("oxxxo.x.o", "o"),  # main diagonal
    ("x.oxo.o.x", "o"),  # anti-diagonal
    ("xoxxoxoxo", "draw"),  # full, no line
    ("xo.......", None),
])
def test_winner(board, expected):
    assert ttt.winner(board) == expected


def test_moves_and_turns():
    assert ttt.to_move(ttt.EMPTY) == "x" and ttt.legal_moves(ttt.EMPTY) == list(range(1, 10))
    b = ttt.play(ttt.play(ttt.EMPTY, 5), 1)
    assert b == "o...x...." and ttt.to_move(b) == "x"
    assert ttt.render(b) == "o 2 3\n4 x 6\n7 8 9"
    with pytest.raises(ttt.IllegalMove, match="5 is not a legal move"):
        ttt.play(b, 5)
    assert ttt.legal_moves("xxxoo....") == []  # the game is over
    with pytest.raises(ttt.IllegalMove, match="x moves first"):
        ttt.check_position("oo.......")


def test_reachable_positions_are_5478():
    seen, frontier = {ttt.EMPTY}, [ttt.EMPTY]
    while frontier:
        frontier = [n for b in frontier for n in {ttt.play(b, m) for m in ttt.legal_moves(b)} if n not in seen]
        frontier = sorted(set(frontier))
        seen.update(frontier)
    assert len(seen) == 5478  # the known count of legal tic-tac-toe positions


# --- solver -----------------------------------------------------------------------------------


def test_solver_known_positions():
    assert ttt.value(ttt.EMPTY) == 0  # perfect play draws
    assert ttt.best_moves("xx.oo....") == [3] and ttt.value("xx.oo....") == 1  # x completes the top row
    assert ttt.best_moves("oo.x....x") == [3]  # x must block o's top row; anything else loses
    assert ttt.best_moves("....x....") == [1, 3, 7, 9]  # against a centre opening only a corner draws
    assert ttt.value("x...o...x") == 0 and 5 not in ttt.best_moves("x...o...x")
    assert ttt.best_moves("x...o...x") == [2, 4, 6, 8]  # o must take an edge, not a corner


def _game(px, po, rng):
    board = ttt.EMPTY
    while ttt.winner(board) is None:
        board = ttt.play(board, (px if ttt.to_move(board) == "x" else po)(board, rng))
    return ttt.winner(board)


def test_solver_never_loses():
    rng = random.Random(0)
    assert {_game(ttt.solver_player, ttt.solver_player, rng) for _ in range(20)} == {"draw"}
    assert "o" not in {_game(ttt.solver_player, ttt.random_player, rng) for _ in range(100)}
    assert "x" not in {_game(ttt.random_player, ttt.solver_player, rng) for _ in range(100)}


def test_openings():
    assert ttt.openings(0) == [ttt.EMPTY]
    assert len(ttt.openings(2)) == 1 + 9 + 72


# --- the env ----------------------------------------------------------------------------------


def test_self_play_episode_alternates_sides_until_a_win():
    env = GameEnv(ttt, ttt.EMPTY)
    first = env.initial_observation()
    assert first[-1]["content"] == "1 2 3\n4 5 6\n7 8 9\nx to move"
    for move, side in zip(["1", "4", " 2 ", "5"], "xoxo"):
        r = env.step(move)
        assert not r.done and r.messages[0]["content"].endswith(f"{'o' if side == 'x' else 'x'} to move")
    r = env.step("3")  # x: 1 2 3
    assert r.done and env.result == "x" and env.movers == list("xoxox") and r.reward == 1.0
    assert r.info == {"result": "x", "illegal": False, "outcome": "win"}


def test_illegal_move_loses_for_the_mover():
    env = GameEnv(ttt, "x........")  # o to move
    r = env.step("1")  # occupied
    assert r.done and env.result == "x" and env.illegal and r.info["outcome"] == "loss"
    assert parse_move("call 5") is None and parse_move(" 7\n") == 7


def test_against_an_opponent_the_env_answers_each_move():
    env = GameEnv(ttt, ttt.EMPTY, opponent=ttt.solver_player, side="o", rng=random.Random(1))
    assert env.board.count("x") == 1 and env.initial_observation()[-1]["content"].endswith("o to move")
    while True:
        r = env.step(str(ttt.solver_player(env.board, random.Random(2))))
        if r.done:
            break
        assert ttt.to_move(env.board) == "o"
    assert env.result == "draw" and set(env.movers) == {"o"} and r.reward == 0.5


def test_split_sides_masks_the_other_side():
    # tokens: 2 prompt, x's reply (2 tokens), 1 env token, o's reply, 1 env, x's reply
    mask = [0, 0, 1, 1, 0, 1, 0, 1]
    assert reply_spans(mask) == [(2, 4), (5, 6), (7, 8)]
    env = GameEnv(ttt, ttt.EMPTY)
    env.movers, env.result = ["x", "o", "x"], "x"
    t = Trajectory(list(range(8)), mask, [0.0] * 8, reward=1.0)
    x, o = split_sides(Group([t], {"id": "opening-0"}), [env])
    assert x.item["side"] == "x" and x.trajectories_G[0].sampled_mask_T == [0, 0, 1, 1, 0, 0, 0, 1]
    assert o.trajectories_G[0].sampled_mask_T == [0, 0, 0, 0, 0, 1, 0, 0]
    assert (x.trajectories_G[0].reward, o.trajectories_G[0].reward) == (1.0, 0.0)
    env.movers, env.result = ["x"], "o"  # x lost on an illegal first move: o never moved
    t1 = Trajectory([0, 0, 1], [0, 0, 1], [0.0] * 3)
    x, o = split_sides(Group([t1], {}), [env])
    assert x.trajectories_G[0].reward == 0.0 and o.trajectories_G[0].reward == 1.0
    assert not any(o.trajectories_G[0].sampled_mask_T) and not o.trajectories_G[0].errored


# --- a [game] job -----------------------------------------------------------------------------


def test_game_job_errors_before_the_model_loads():
    from rlft.envs.rollouts import env_rollout

    with pytest.raises(ConfigError, match="unknown opponent 'perfect'"):
        load_job(None, ["game.name=tictactoe", "game.opponents=['random', 'perfect']"])
    with pytest.raises(ConfigError, match="no such game; games: tictactoe"):
        env_rollout(load_job(None, ["game.name=chess"]))
    with pytest.raises(ConfigError, match="one source of episodes"):
        env_rollout(load_job(None, ["game.name=tictactoe", "world.name=retail"]))


def test_self_play_rl_runs_and_evaluates_against_both_opponents(tiny_dir, tmp_path):
    from rlft import train_rl

    job = load_job(None, [
        f"model.path={tiny_dir}", "model.max_length=512", "game.name=tictactoe", "game.openings=1", "game.eval_games=4",
        "algorithm.prompts_per_step=2", "algorithm.group_size=3", "algorithm.drop_zero_advantage=false",
        "sampling.max_new_tokens=3", "optim.lr=1e-3", "optim.steps=2", "eval.every=1",
        "run.progress=false", f"run.out={tmp_path / 'r'}",
    ])
    train_rl.train(job)
    rows = [json.loads(line) for line in (tmp_path / "r/metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "kept_sequences" in r]
    assert len(steps) == 2 and all(r["kept_sequences"] == 12 for r in steps)  # 2 positions x 2 sides x 3
    evals = [r for r in rows if "eval/solver/draw" in r]
    assert len(evals) == 2  # step 1 (eval.every) and the final one
    for r in evals:
        for opp in ("random", "solver"):
            assert sum(r[f"eval/{opp}/{k}"] for k in ("win", "draw", "loss", "unfinished")) == pytest.approx(1.0)
    samples = [json.loads(line) for line in (tmp_path / "r/samples.jsonl").read_text().splitlines()]
    assert {s["side"] for s in samples} <= {"x", "o"}


def test_selfplay_demo_fast(tmp_path):
    from rlft.tasks import selfplay_demo

    results = selfplay_demo.main(["--out", str(tmp_path), "--fast"])
    assert {"sft", "rl", "curve"} <= set(results) and (tmp_path / "selfplay.png").exists()
    assert [c["step"] for c in results["curve"]] == [1, 2]
