"""Two-player board games with a perfect solver, played by self-play (rlft.envs.games.env)."""

from rlft.envs.games import tictactoe

# [game] name -> the game's rules module (EMPTY, RULES, check_position, to_move, winner,
# legal_moves, play, render, PLAYERS, openings)
GAMES = {"tictactoe": tictactoe}
