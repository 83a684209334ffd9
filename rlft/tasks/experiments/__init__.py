"""Built-in tasks and experiments for ``rlft compare`` (the experiment files sit beside this one:
``rlft compare --builtin NAME``).

A task function writes its data and any warm start into ``folder`` once (a rerun finds them
there) and returns the base job file every cell of the task starts from.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from rlft.tasks import arithmetic
from rlft.tasks.quickstart import task_toml, write_jsonl


def addition(folder: Path, digits: int = 3, forget: float = 0.6, n_train: int = 20000, n_eval: int = 200,
             warm_start_steps: int = 800, warm_start_lr: float = 3e-3, batch_size: int = 64) -> Path:
    """The quickstart task: ``digits``-digit additions, a demonstrator that drops each carry with
    probability ``forget``, and a warm start: the tiny model after ``warm_start_steps`` of SFT on
    that demonstrator (seed 0). Every method of an experiment continues from that warm start."""
    folder = Path(folder)
    if not (folder / "eval.jsonl").exists():
        train, held_out = arithmetic.make_splits(digits, n_train, n_eval, 0, forget)
        write_jsonl(folder / "train.jsonl", train)
        write_jsonl(folder / "eval.jsonl", held_out)
    common = task_toml(digits)
    warm = folder / "warm.toml"
    warm.write_text(f"""# warm start: SFT on the demonstrator (written by rlft compare)
[model]
path = "tiny"

[optim]
lr = {warm_start_lr}
steps = {warm_start_steps}
batch_size = {batch_size}
warmup_steps = 50
schedule = "linear"

[run]
out = "warm"
progress = false
{common}""")
    if not (folder / "warm" / "summary.json").exists():
        print(f"rlft compare: warm start for {folder.name} ({warm_start_steps} SFT steps)", file=sys.stderr, flush=True)
        subprocess.run([sys.executable, "-m", "rlft.cli", "sft", str(warm)], check=True, env=dict(os.environ),
                       stdout=subprocess.DEVNULL)
    task = folder / "task.toml"
    task.write_text(f"""# every cell starts here: the warm start, the demonstrations, the grader (written by rlft compare)
[model]
path = "warm/final"

[algorithm]
prompts_per_step = 16
group_size = 8

[optim]
lr = 1e-4
batch_size = {batch_size}
warmup_steps = 2
{common}""")
    return task


TASKS = {"addition": addition}
