"""A progress bar with the numbers a user watches (reward, loss, speed), from rich."""

from __future__ import annotations

from rich.progress import BarColumn, MofNCompleteColumn, Progress as RichProgress, TextColumn, TimeElapsedColumn

SHOWN = ("reward_mean", "loss", "eval/pass@1", "tokens_per_second")


class Progress:
    def __init__(self, total: int, label: str, enabled: bool = True, start: int = 0):
        self.enabled, self.shown = enabled, {}
        self._bar = RichProgress(
            TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TextColumn("{task.fields[stats]}"), disable=not enabled, transient=False,
        )
        self._task = self._bar.add_task(label, total=total, completed=start, stats="")

    def update(self, step: int, metrics: dict) -> None:
        self.shown |= {k: metrics[k] for k in SHOWN if k in metrics}
        stats = "  ".join(f"{k.split('/')[-1]} {v:.3g}" for k, v in self.shown.items())
        self._bar.update(self._task, completed=step, stats=stats)

    def __enter__(self) -> "Progress":
        self._bar.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._bar.__exit__(*exc)
