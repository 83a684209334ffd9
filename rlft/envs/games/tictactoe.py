"""Tic-tac-toe: the rules, a perfect solver and a random player.

A position is a string of 9 cells, row by row, each ``x``, ``o`` or ``.`` (empty); x moves
first, so the side to move follows from the counts. Moves are cell numbers 1-9::

    1 2 3
    4 5 6
    7 8 9

``render`` shows empty cells as their numbers (``x o 3 / 4 x 6 / 7 8 o``): a legal move is one
of the digits on the board, which a 1M-parameter model can learn to copy.

The solver is plain minimax over the 5,478 reachable positions, memoised (``value``). Values
are from the point of view of the side to move: +1 it can force a win, 0 a draw, -1 it loses
against perfect play. ``best_moves`` lists every move that keeps the value; a solver player
picks among them at random, so games against it vary but it never errs.
"""

from __future__ import annotations

import functools
import random
from typing import Callable

LINES = ((0, 1, 2), (3, 4, 5), (6, 7, 8), (0, 3, 6), (1, 4, 7), (2, 5, 8), (0, 4, 8), (2, 4, 6))
EMPTY = "." * 9
RULES = "Tic-tac-toe. Reply with the number of an empty cell."  # the system message

Player = Callable[[str, random.Random], int]  # (position, rng) -> move 1-9


class IllegalMove(ValueError):
    """A move that is not an empty cell 1-9 of the position, or a move after the game ended."""


def check_position(board: str) -> str:
    """``board`` if it is a reachable-looking position (9 cells of x/o/., x count = o count or
    o count + 1); else IllegalMove naming the problem."""
    if len(board) != 9 or set(board) - set("xo."):
        raise IllegalMove(f"a position is 9 cells of x, o or '.', got {board!r}")
    nx, no = board.count("x"), board.count("o")
    if nx - no not in (0, 1):
        raise IllegalMove(f"position {board!r} has {nx} x and {no} o; x moves first, so x = o or o + 1")
    return board


def to_move(board: str) -> str:
    return "x" if board.count("x") == board.count("o") else "o"


def winner(board: str) -> str | None:
    """``x`` or ``o`` when that side has three in a line, ``draw`` when the board is full, else None."""
    for a, b, c in LINES:
        if board[a] != "." and board[a] == board[b] == board[c]:
            return board[a]
    return "draw" if "." not in board else None


def legal_moves(board: str) -> list[int]:
    return [] if winner(board) else [i + 1 for i, c in enumerate(board) if c == "."]


def play(board: str, move: int) -> str:
    """The position after the side to move plays ``move``."""
    if move not in legal_moves(board):
        raise IllegalMove(f"{move} is not a legal move in {board!r}; legal: {legal_moves(board)}")
    return board[: move - 1] + to_move(board) + board[move:]


def render(board: str) -> str:
    """Three lines, empty cells shown as their move numbers."""
    cells = [c if c != "." else str(i + 1) for i, c in enumerate(board)]
    return "\n".join(" ".join(cells[r * 3 : r * 3 + 3]) for r in range(3))


@functools.lru_cache(maxsize=None)
def value(board: str) -> int:
    """+1 / 0 / -1: what the side to move gets with perfect play by both sides."""
    w = winner(board)
    if w == "draw":
        return 0
    if w is not None:
        return -1  # the previous move won: the side to move has lost
    return max(-value(play(board, m)) for m in legal_moves(board))


def best_moves(board: str) -> list[int]:
    """Every move that achieves ``value(board)``."""
    moves = legal_moves(board)
    assert moves, f"no moves in the finished position {board!r}"
    best = max(-value(play(board, m)) for m in moves)
    return [m for m in moves if -value(play(board, m)) == best]


def solver_player(board: str, rng: random.Random) -> int:
    return rng.choice(best_moves(board))


def random_player(board: str, rng: random.Random) -> int:
    return rng.choice(legal_moves(board))


PLAYERS: dict[str, Player] = {"random": random_player, "solver": solver_player}


def openings(max_stones: int) -> list[str]:
    """Every unfinished position with at most ``max_stones`` stones, reachable from the empty
    board, in a fixed order: the starting positions self-play trains from."""
    seen, frontier = [EMPTY], [EMPTY]
    for _ in range(max_stones):
        frontier = sorted({play(b, m) for b in frontier for m in legal_moves(b)})
        seen += [b for b in frontier if winner(b) is None]
    return seen
