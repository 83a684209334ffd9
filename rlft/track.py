"""Run tracking: metrics to ``metrics.jsonl`` and TensorBoard, transcripts to ``samples.jsonl``.

Usage::

    with Tracker("runs/my-job") as tracker:
        tracker.log(step, {"reward_mean": 0.4, "loss": 1.2})
        tracker.log_samples(step, [{"prompt": "...", "completion": "...", "reward": 1.0}])
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


class Tracker:
    """Appends to out_dir/metrics.jsonl and out_dir/samples.jsonl (flushed on every call, so a
    crashed run keeps its history) and, when ``tensorboard``, writes scalars to out_dir/tb."""

    def __init__(self, out_dir: str | Path, tensorboard: bool = True) -> None:
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._metrics = open(self.out_dir / "metrics.jsonl", "a", encoding="utf-8")
        self._samples = open(self.out_dir / "samples.jsonl", "a", encoding="utf-8")
        self._tb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter  # lazy: tensorboard import is slow

            self._tb = SummaryWriter(log_dir=str(self.out_dir / "tb"))

    def log(self, step: int, metrics: dict[str, float]) -> None:
        """One JSON line {"step": step, **metrics}; each metric as a TensorBoard scalar."""
        self._metrics.write(json.dumps({"step": step, **metrics}) + "\n")
        self._metrics.flush()
        if self._tb is not None:
            for name, value in metrics.items():
                self._tb.add_scalar(name, float(value), global_step=step)
            self._tb.flush()

    def log_samples(self, step: int, samples: list[dict[str, Any]]) -> None:
        """One JSON line per sample, with "step" added."""
        for sample in samples:
            self._samples.write(json.dumps({"step": step, **sample}, default=str) + "\n")
        self._samples.flush()

    def close(self) -> None:
        self._metrics.close()
        self._samples.close()
        if self._tb is not None:
            self._tb.close()

    def __enter__(self) -> "Tracker":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
