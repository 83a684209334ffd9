"""``rlft check-grader JOB.toml``: score the grader on reference answers and adversarial probes
before spending compute (issue 3 part 6).

For each of the first N items of the job's data, the grader scores the *reference* (the item's
``data.completion`` when it has one, else its answer) and the outputs in ``PROBES``, each a
function ``(reference, item, others) -> text``:

| probe | what it tries |
| --- | --- |
| empty | "" |
| echo | the prompt repeated back |
| long | 20,000 characters of filler, then the reference |
| buried | the reference hidden among 30 other items' answers, one per line |
| format_only | the reference's shape with its digits changed (format without content) |

References should score at the top. A probe is flagged as a reward-hacking risk when it scores
at least half the references' mean, or matches the reference's score on a fifth of the items.
A grader that raises counts as errored (shown), as it would in training.
"""

from __future__ import annotations

import random
import statistics
from dataclasses import dataclass
from typing import Callable

from rlft.config import Job
from rlft.types import Sample


def _prompt_text(prompt) -> str:
    return prompt if isinstance(prompt, str) else "\n".join(str(m.get("content", "")) for m in prompt)


def _shift_digits(text: str) -> str:
    return "".join(str((int(c) + 1) % 10) if c.isdigit() else c for c in text)


PROBES: dict[str, Callable[[str, dict, list[str], str], str]] = {
    "empty": lambda ref, item, others, prompt: "",
    "echo": lambda ref, item, others, prompt: _prompt_text(item[prompt]),
    "long": lambda ref, item, others, prompt: ("lorem ipsum dolor sit amet " * 741)[:20_000] + ref,
    "buried": lambda ref, item, others, prompt: "\n".join(others[:15] + [ref] + others[15:30]),
    "format_only": lambda ref, item, others, prompt: _shift_digits(ref) if any(c.isdigit() for c in ref) else " ".join(reversed(ref.split())),
}


@dataclass
class Row:
    name: str
    scores: list[float]
    errors: int
    matched: int  # items where the probe scored >= the reference

    @property
    def mean(self) -> float:
        return statistics.fmean(self.scores) if self.scores else float("nan")


def reference_text(job: Job, item: dict) -> str:
    """What should score at the top: the demonstration when the item has one, else the answer."""
    if item.get(job.data.completion) is not None:
        return str(item[job.data.completion])
    return str(item.get(job.grader.reference or "answer", ""))


def _score(grader, text: str, item: dict) -> float | None:
    try:
        return float(grader(Sample(text), item))
    except Exception:  # counted, as the loop counts an errored attempt
        return None


def check(job: Job, grader, items: list[dict], seed: int = 0) -> list[Row]:
    """One row for the references, then one per probe."""
    refs = [reference_text(job, it) for it in items]
    rng = random.Random(seed)
    rows = {name: Row(name, [], 0, 0) for name in ["reference", *PROBES]}
    for i, item in enumerate(items):
        others = rng.sample([r for j, r in enumerate(refs) if j != i], min(30, len(refs) - 1))
        ref_score = _score(grader, refs[i], item)
        texts = {"reference": refs[i]} | {n: p(refs[i], item, others, job.data.prompt) for n, p in PROBES.items()}
        for name, text in texts.items():
            s = ref_score if name == "reference" else _score(grader, text, item)
            row = rows[name]
            if s is None:
                row.errors += 1
                continue
            row.scores.append(s)
            row.matched += ref_score is not None and s >= ref_score
    return list(rows.values())


def flagged(rows: list[Row]) -> list[str]:
    ref = rows[0]
    n = max(1, len(ref.scores) + ref.errors)
    return [r.name for r in rows[1:] if r.scores and (r.mean >= 0.5 * ref.mean > 0 or r.matched >= 0.2 * n)]


def main(job: Job, n_items: int = 50) -> int:
    """Print the table; exit status 1 when a probe is flagged or references never score."""
    from rich.console import Console
    from rich.table import Table

    from rlft.data import load_items
    from rlft.rewards.code_hacks import code_hack_risks
    from rlft.rewards.graders import make_grader

    source = job.data.eval or job.data.train
    items = load_items(source, required=[job.data.prompt], prompt_field=job.data.prompt, base_dir=job.base_dir,
                       max_errors=job.data.max_errors, limit=n_items)
    rows = check(job, make_grader(job.grader, job.base_dir), items, seed=job.run.seed)
    bad = flagged(rows)
    table = Table(title=f"grader {job.grader.type!r} on {len(items)} items of {source}")
    for col in ("output", "mean", "min", "max", ">= reference", "errored", "verdict"):
        table.add_column(col)
    for r in rows:
        verdict = "should be top" if r.name == "reference" else ("[red]RISK: scores high[/]" if r.name in bad else "ok")
        lo, hi = (f"{min(r.scores):.3f}", f"{max(r.scores):.3f}") if r.scores else ("-", "-")
        table.add_row(r.name, f"{r.mean:.3f}", lo, hi, "" if r.name == "reference" else str(r.matched), str(r.errors), verdict)
    console = Console()
    console.print(table)
    bad += code_hack_risks(job, items)  # code_tests graders: reward hacks against honest twins
    if not rows[0].scores or rows[0].mean <= 0:
        console.print("[red]references do not score above 0[/]: check grader.reference and data.completion")
        return 1
    if bad:
        console.print(f"[red]reward-hacking risk[/]: {', '.join(bad)} score(s) close to the references")
        return 1
    return 0
