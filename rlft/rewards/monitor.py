"""Monitors: graders that are logged, never trained on (``[grader.monitor.NAME]``).

The use they exist for: a job that trains against a learned reward model also scores every
attempt with a gold grader, so over-optimisation shows (Gao et al. 2022): the reward model's
score keeps rising while the gold score stalls or falls.

```toml
[grader]
type = "reward_model"
model = "rm"                      # the training reward

[grader.monitor.gold]             # any grader table; logged as gold/mean, gold/pass_rate
type = "numeric"
reference = "answer"
```

``annotate`` scores each trajectory's text with every monitor after the rollout, stores the
scores in ``trajectory.metadata["monitor"]`` (so samples.jsonl shows them) and returns
``NAME/mean``, ``NAME/pass_rate`` (score >= 1) and, when a monitor raised, ``NAME/errored``
for metrics.jsonl (``eval/NAME/...`` in evaluation). A monitor that raises is logged as
None and counted; it cannot stop or change training.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Sequence

from rlft.config import GraderConfig
from rlft.types import Group, Sample

Monitor = Callable[[Sample, dict], float]


def make_monitors(cfg: GraderConfig, base_dir: str | Path, where: str = "grader") -> dict[str, Monitor]:
    """NAME -> grader for each ``[grader.monitor.NAME]`` table (built like [grader] itself)."""
    from rlft.rewards.graders import make_grader  # lazy: graders import the config this reads

    return {name: make_grader(sub, base_dir, f"{where}.monitor.{name}") for name, sub in cfg.monitor.items()}


def _score(monitor: Monitor, text: str, item: dict) -> float | None:
    try:
        x = float(monitor(Sample(output_text=text), item))
    except Exception:  # a monitor only watches: its failure is counted, never raised into the run
        return None
    return x if math.isfinite(x) else None


def annotate(monitors: dict[str, Monitor], groups: Sequence[Group]) -> dict[str, float]:
    """Score every trajectory of ``groups`` with every monitor; the metrics (``{}`` without monitors)."""
    if not monitors:
        return {}
    scores: dict[str, list[float | None]] = {name: [] for name in monitors}
    for g in groups:
        for t in g.trajectories_G:
            row = {name: _score(m, t.text, g.item) for name, m in monitors.items()}
            t.metadata["monitor"] = row
            for name, x in row.items():
                scores[name].append(x)
    out = {}
    for name, xs in scores.items():
        ok = [x for x in xs if x is not None]
        if ok:  # no NaN in metrics.jsonl: a monitor that failed everywhere shows only NAME/errored
            out[f"{name}/mean"] = sum(ok) / len(ok)
            out[f"{name}/pass_rate"] = sum(x >= 1.0 for x in ok) / len(ok)
        if len(ok) < len(xs):
            out[f"{name}/errored"] = float(len(xs) - len(ok))
    return out
