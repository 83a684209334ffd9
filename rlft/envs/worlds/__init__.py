"""Declarative business-process worlds on SQLite (see world.py for the folder format)."""

from rlft.envs.worlds.sandbox import read, write
from rlft.envs.worlds.world import World, WorldError, load_world

__all__ = ["World", "WorldError", "load_world", "read", "write"]
