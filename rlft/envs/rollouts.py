"""The job's source of multi-turn episodes, when it has one: a ``[world]`` (tool-using tasks on
a database) or a ``[game]`` (self-play). Each source has ``items``, ``run_groups`` with the
signature of ``rlft.rollout.runner.run_groups``, and ``evaluate(sampler, params, seed)`` for the
run's periodic held-out evaluation."""

from __future__ import annotations

from rlft.config import ConfigError, Job


def _world(job: Job):
    from rlft.envs.worlds.rollout import WorldRollout

    return WorldRollout(job)


def _game(job: Job):
    from rlft.envs.games.rollout import GameRollout

    return GameRollout(job)


# job section -> its rollout; a section is in use when its ``name`` is set
SOURCES = {"world": _world, "game": _game}


def env_rollout(job: Job):
    """The rollout of the job's [world] or [game], or None for a prompts-and-grader job."""
    named = [k for k in SOURCES if getattr(job, k).name]
    if len(named) > 1:
        raise ConfigError(f"a job has one source of episodes; this one sets {' and '.join(f'[{k}] name' for k in named)}: "
                          "remove all but one")
    return SOURCES[named[0]](job) if named else None
