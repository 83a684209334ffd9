"""Sampler actors and the work in flight on them, keyed by sample id.

Every piece of work has an id, (step, prompt index). The pool keeps at most one result per id,
so work issued again — because its actor died, or because its weights were too old — can never
be counted twice. An actor that dies is restarted by Ray (``max_restarts``); before it gets work
again it is sent the current weights, then its unfinished work is issued again (to whichever
actor is least busy). Results are refused, and the work re-issued, when their weights lag the
learner by more than ``max_staleness`` versions.
"""

from __future__ import annotations

import time
from collections import Counter

from rlft.config import Job
from rlft.distributed.weights import export_weights
from rlft.distributed.workers import Done, SamplerWorker, Work, WorkId


class SamplersLost(RuntimeError):
    """Every sampler actor died more often than Ray may restart it."""


class SamplerPool:
    def __init__(self, ray, job: Job, model_path: str):
        cfg = job.distributed
        self.ray, self.max_staleness = ray, cfg.max_staleness
        gpus = 1 if cfg.sampler == "vllm" else 0
        actor = ray.remote(num_cpus=1, num_gpus=gpus, max_restarts=cfg.sampler_restarts, max_task_retries=0)(SamplerWorker)
        self.actors = [actor.remote(job, model_path) for _ in range(cfg.samplers)]
        self.synced = [False] * len(self.actors)  # holds the current weights (False after a restart)
        self.dead = [False] * len(self.actors)  # died more often than Ray may restart it
        self.max_failures = cfg.sampler_restarts
        self.pids = ray.get([a.pid.remote() for a in self.actors])  # blocks until every model is loaded
        self.in_flight: dict[WorkId, tuple[object, int, Work]] = {}  # id -> (ref, actor index, work)
        self.done: dict[WorkId, Done] = {}
        self.weights, self.version = None, -1
        self.counts: Counter = Counter()  # reissued / refused_stale / actor_deaths this step

    # --- weights ---------------------------------------------------------------------------------

    def push(self, model, version: int) -> None:
        """Send ``model``'s weights (the LoRA adapter alone when it has one) to every live actor;
        each installs them after the work it already holds (a Ray actor runs calls in order)."""
        self.weights, self.version = self.ray.put(export_weights(model)), version
        self.synced = [False] * len(self.actors)
        for i in self._live():
            self._sync(i)

    def _sync(self, i: int) -> None:
        if not self.synced[i]:
            self.actors[i].set_weights.remote(self.weights, self.version)
            self.synced[i] = True

    def _live(self) -> list[int]:
        return [i for i, dead in enumerate(self.dead) if not dead]

    def _recover(self, i: int) -> None:
        """After a call on actor ``i`` failed: wait for Ray's restart (its new process id), or
        mark it dead when Ray gave up on it. Each death is counted once, however many calls failed."""
        from ray.exceptions import ActorDiedError, ActorUnavailableError

        deadline = time.monotonic() + 600.0
        while True:
            try:
                pid = self.ray.get(self.actors[i].pid.remote(), timeout=600.0)
                break
            except ActorUnavailableError:  # restarting: ask again
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
            except ActorDiedError:  # Ray gave up on it (sampler_restarts used up)
                self.dead[i] = True
                return
        if pid != self.pids[i]:
            self.pids[i], self.synced[i] = pid, False  # a fresh process: it needs the weights again
            self.counts["actor_deaths"] += 1

    # --- work ------------------------------------------------------------------------------------

    def issue(self, works: list[Work]) -> None:
        """Start each work not already in flight or done, on the least busy live actor."""
        for w in works:
            if w.id in self.in_flight or w.id in self.done:
                continue
            live = self._live()
            if not live:
                raise SamplersLost(
                    f"all {len(self.actors)} sampler actors died more than distributed.sampler_restarts = "
                    f"{self.max_failures} times; see the actor errors above; fix the cause, then rerun to resume"
                )
            busy = Counter(i for _, i, _ in self.in_flight.values())
            i = min(live, key=lambda a: (busy[a], a))
            self._sync(i)
            self.in_flight[w.id] = (self.actors[i].generate.remote(w), i, w)

    def collect(self, ids: list[WorkId], learner_version: int) -> list[Done]:
        """The results of ``ids`` (already issued), in order, each sampled with weights at most
        ``max_staleness`` versions behind ``learner_version``; blocks until all are in."""
        from ray.exceptions import RayActorError

        while missing := [i for i in ids if i not in self.done]:
            refs = {self.in_flight[i][0]: i for i in missing}
            ready, _ = self.ray.wait(list(refs), num_returns=1, timeout=60.0)
            for ref in ready:
                wid = refs[ref]
                _, actor, work = self.in_flight.pop(wid)
                try:
                    result: Done = self.ray.get(ref)
                except RayActorError:  # died mid-work: Ray restarts it; it needs weights again
                    self._recover(actor)
                    self.counts["reissued"] += 1
                    self.issue([work])
                    continue
                if learner_version - result.version > self.max_staleness:
                    self.counts["refused_stale"] += 1  # sampled with weights too old: sample again
                    self.issue([work])
                    continue
                self.done[wid] = result
        return [self.done.pop(i) for i in ids]

    def step_counts(self) -> dict[str, float]:
        """Counters since the last call, as metrics."""
        out = {f"distributed/{k}": float(self.counts[k]) for k in ("reissued", "refused_stale", "actor_deaths")}
        self.counts.clear()
        return out

    def close(self) -> None:
        for a in self.actors:
            self.ray.kill(a)

