"""A progress bar with the numbers a user watches (reward, loss, speed), from rich; and the
warning it shows when RL has (next to) nothing to learn from (``no_signal_warning``)."""

from __future__ import annotations

from typing import Sequence

from rich.progress import BarColumn, MofNCompleteColumn, Progress as RichProgress, TextColumn, TimeElapsedColumn

SHOWN = ("reward_mean", "loss", "eval/pass@1", "tokens_per_second")
SIGNAL_WINDOW = 10  # RL steps the no-signal warning looks back over
NO_SIGNAL = 0.75  # warn when at least this fraction of those steps' groups carried no signal


def signal_counts(metrics: dict) -> tuple[int, int, int] | None:
    """(groups with no signal, of them all passed, groups) of an RL step's metrics
    (rlft.train_rl.signal_metrics); None for a step without them (SFT)."""
    if "groups" not in metrics:
        return None
    return int(metrics["no_signal_groups"]), int(metrics["no_signal_all_pass"]), int(metrics["groups"])


def no_signal_warning(window: Sequence[tuple[int, int, int]], threshold: float = NO_SIGNAL, min_steps: int = 3) -> str:
    """The warning, or "", for ``window``: the ``signal_counts`` of recent RL steps.

    A group in which no attempt has a nonzero advantage trains nothing: for GRPO and RLOO, one
    whose attempts all scored the same. When at least ``threshold`` of the window's groups are
    such, the run is learning from (next to) nothing; the fix depends on why. Attempts that all
    fail alike (all 0, say) need a model that sometimes succeeds or a reward with partial credit;
    attempts that all pass need prompts the model has not memorised. Each fix is named when its
    kind makes up at least a quarter of the groups without signal. Fewer than ``min_steps``
    steps: "".
    """
    if len(window) < max(1, min_steps):
        return ""
    silent, passed, groups = (sum(x) for x in zip(*window))
    if groups == 0 or silent < threshold * groups:
        return ""
    failed = silent - passed
    fixes = []
    if 4 * failed >= silent:
        fixes.append("where every attempt fails alike: start from an SFT model or a stronger one, or shape the "
                     "reward (partial credit) so that some attempts score above others")
    if 4 * passed >= silent:
        fixes.append("where every attempt passes: use prompts the model has not memorised, or harder items")
    return (f"no learning signal: {silent} of {groups} groups over the last {len(window)} steps had advantage 0 "
            f"for every attempt ({failed} failed alike, {passed} all passed), so they trained nothing; fix: "
            + "; ".join(fixes))


class Progress:
    def __init__(self, total: int, label: str, enabled: bool = True, start: int = 0):
        self.enabled, self.shown, self.total = enabled, {}, total
        self.signal_window: list[tuple[int, int, int]] = []  # for the no-signal warning (display only)
        self.warning = ""
        self._bar = RichProgress(
            TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TextColumn("{task.fields[stats]}"), disable=not enabled, transient=False,
        )
        self._task = self._bar.add_task(label, total=total, completed=start, stats="")

    def update(self, step: int, metrics: dict) -> None:
        self.shown |= {k: metrics[k] for k in SHOWN if k in metrics}
        stats = "  ".join(f"{k.split('/')[-1]} {v:.3g}" for k, v in self.shown.items())
        if (counts := signal_counts(metrics)) is not None:
            self.signal_window = [*self.signal_window, counts][-SIGNAL_WINDOW:]
            warning = no_signal_warning(self.signal_window, min_steps=min(3, self.total))
            if warning and not self.warning and self.enabled:  # the whole warning once, above the bar
                self._bar.console.print(f"[yellow]warning:[/] {warning}", highlight=False)
            self.warning = warning
        if self.warning:
            silent, _, groups = (sum(x) for x in zip(*self.signal_window))
            stats += f"  [yellow]no signal in {silent}/{groups} groups[/]"
        self._bar.update(self._task, completed=step, stats=stats)

    def __enter__(self) -> "Progress":
        self._bar.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._bar.__exit__(*exc)
