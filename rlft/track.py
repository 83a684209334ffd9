"""Run tracking: metrics to ``metrics.jsonl`` and TensorBoard, training transcripts to
``samples.jsonl``, held-out results per item and attempt to ``eval_samples.jsonl``.

Usage::

    with Tracker("runs/my-job") as tracker:
        tracker.log(step, {"reward_mean": 0.4, "loss": 1.2})
        tracker.log_samples(step, [{"prompt": "...", "completion": "...", "reward": 1.0}])
        tracker.log_eval_samples(step, [{"item": "eval.jsonl:3", "output": "...", "reward": 0.0}])

TensorBoard reads ``tb/``: ``tensorboard --logdir runs/`` shows every run under runs/.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


LOGS = ("metrics.jsonl", "samples.jsonl", "eval_samples.jsonl")


class Tracker:
    """Appends to out_dir's LOGS (flushed on every call, so a crashed run keeps its history)
    and, when ``tensorboard``, writes scalars to out_dir/tb."""

    def __init__(self, out_dir: str | Path, tensorboard: bool = True, resume: dict | None = None) -> None:
        """``resume``: the ``offsets()`` saved with the checkpoint a run resumes from; the logs
        are cut back to them, so rows written after that checkpoint are not repeated ({} for a
        run that starts fresh: empty logs). None appends to whatever is there."""
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._logs = {name: _reopen(self.out_dir / name, None if resume is None else resume.get(name, 0)) for name in LOGS}
        self._metrics, self._samples, self._eval_samples = (self._logs[name] for name in LOGS)
        resume = resume or {}
        self._tb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter  # lazy: tensorboard import is slow

            # purge_step: TensorBoard hides events the earlier attempt wrote past the checkpoint
            self._tb = SummaryWriter(log_dir=str(self.out_dir / "tb"), purge_step=resume.get("step", 0) + 1)

    def offsets(self, step: int) -> dict[str, int]:
        """Where the logs end now, to be saved with a checkpoint of ``step``."""
        return {**{name: f.tell() for name, f in self._logs.items()}, "step": step}

    def log(self, step: int, metrics: dict[str, float]) -> None:
        """One JSON line {"step": step, **metrics}; each metric as a TensorBoard scalar."""
        self._metrics.write(json.dumps({"step": step, **metrics}) + "\n")
        self._metrics.flush()
        if self._tb is not None:
            for name, value in metrics.items():
                self._tb.add_scalar(name, float(value), global_step=step)
            self._tb.flush()

    def log_samples(self, step: int, samples: list[dict[str, Any]]) -> None:
        """One JSON line per training transcript, with "step" added."""
        _write_rows(self._samples, step, samples)

    def log_eval_samples(self, step: int, rows: list[dict[str, Any]]) -> None:
        """One JSON line per held-out attempt (``rlft.eval.evaluate``'s rows), with "step" added."""
        _write_rows(self._eval_samples, step, rows)

    def close(self) -> None:
        for f in self._logs.values():
            f.close()
        if self._tb is not None:
            self._tb.close()

    def __enter__(self) -> "Tracker":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def rss_mb() -> float | None:
    """Resident memory of this process in MiB (Linux), for the memory/rss_mb metric."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _write_rows(f, step: int, rows: list[dict[str, Any]]) -> None:
    for row in rows:
        f.write(json.dumps({"step": step, **row}, default=str) + "\n")
    f.flush()


def _reopen(path: Path, size: int | None):
    """``path`` opened for appending, after cutting it to ``size`` bytes unless None."""
    if size is not None:
        with open(path, "a+b") as f:
            f.truncate(size)
    return open(path, "a", encoding="utf-8")
