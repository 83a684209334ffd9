"""``rlft quickstart``: imitation, then RL, on 3-digit addition, and the evidence that RL goes
beyond the teacher it imitated.

1. Write the data: training problems with a demonstrator's answers, disjoint held-out problems.
2. Build the tiny model (random weights, a tokenizer trained on the spot).
3. SFT on the demonstrator's answers: the model learns addition *and* the demonstrator's habit
   of forgetting carries (it forgets more often than not, so imitation keeps the flaw).
4. RL (GRPO) from the SFT model with a grader that checks the sum: the model unlearns the flaw.
5. A table of held-out accuracy (greedy) for the demonstrator, after SFT and after RL, a plot
   of accuracy against step for both phases, and results.json.

Both phases are ordinary jobs written next to the results (sft.toml, rl.toml), so each can be
rerun or changed with ``rlft sft`` / ``rlft train``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from rlft.config import load_job
from rlft.tasks import arithmetic


@dataclass(frozen=True)
class Settings:
    digits: int = 3
    forget: float = 0.6  # the demonstrator drops each carry with this probability
    n_train: int = 20000
    n_eval: int = 200
    sft_steps: int = 800
    sft_batch: int = 64
    sft_lr: float = 3e-3
    rl_steps: int = 100
    prompts_per_step: int = 16
    group_size: int = 8
    rl_lr: float = 1e-4
    sft_eval_every: int = 25
    rl_eval_every: int = 10


FULL = Settings()
FAST = Settings(digits=2, n_train=2000, n_eval=50, sft_steps=30, rl_steps=4, prompts_per_step=4,
                group_size=4, sft_eval_every=10, rl_eval_every=2)


def write_jsonl(path: Path, items: list[dict]) -> None:
    path.write_text("".join(json.dumps(it) + "\n" for it in items))


def task_toml(digits: int) -> str:
    """The job tables of the arithmetic task: its data files, its grader, room for a worked answer."""
    return f"""
[data]
train = "train.jsonl"
eval = "eval.jsonl"

[grader]
type = "numeric"   # the last number in the reply: "... answer 841"
reference = "answer"

[sampling]
max_new_tokens = {9 * digits + 8}
"""


def job_files(out: Path, s: Settings, seed: int, progress: bool) -> tuple[Path, Path]:
    common = task_toml(s.digits) + f"""
[run]
seed = {seed}
progress = {str(progress).lower()}
"""
    sft = out / "sft.toml"
    sft.write_text(f"""# Imitation: SFT on the demonstrator's answers (written by rlft quickstart)
[model]
path = "tiny"

[optim]
lr = {s.sft_lr}
steps = {s.sft_steps}
batch_size = {s.sft_batch}
warmup_steps = 50
schedule = "linear"

[eval]
every = {s.sft_eval_every}
{common}out = "sft"
""")
    rl = out / "rl.toml"
    rl.write_text(f"""# Experience: GRPO from the SFT model with a grader that checks the sum (written by rlft quickstart)
[model]
path = "sft/final"

[algorithm]
name = "grpo"
prompts_per_step = {s.prompts_per_step}
group_size = {s.group_size}

[optim]
lr = {s.rl_lr}
steps = {s.rl_steps}
warmup_steps = 10   # Adam's first steps move every weight by ~lr; ease into them

[eval]
every = {s.rl_eval_every}
{common}out = "rl"
""")
    return sft, rl


def eval_curve(run_dir: Path) -> list[tuple[int, float]]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["eval/pass@1"]) for r in rows if "eval/pass@1" in r]


def plot(out: Path, sft_curve, rl_curve, demo_acc: float) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    sft_end = sft_curve[-1][0] if sft_curve else 0
    rl_curve = sft_curve[-1:] + [(sft_end + s, a) for s, a in rl_curve]  # RL starts where SFT ended
    ax.plot([s for s, _ in sft_curve], [a for _, a in sft_curve], "o-", label="SFT (imitation)")
    ax.plot([s for s, _ in rl_curve], [a for _, a in rl_curve], "o-", label="RL (GRPO)")
    ax.axhline(demo_acc, color="gray", ls="--", label=f"demonstrator ({demo_acc:.0%})")
    ax.set(xlabel="training step (SFT, then RL)", ylabel="held-out accuracy (greedy)", ylim=(0, 1.02))
    ax.legend(loc="upper left")
    fig.tight_layout()
    path = out / "accuracy.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def quickstart(out: str | Path, seed: int = 0, fast: bool = False, progress: bool = True) -> dict:
    from rich.console import Console
    from rich.table import Table

    from rlft import train_rl, train_sft

    s = FAST if fast else FULL
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    console = Console()
    t0 = time.time()
    train_items, eval_items = arithmetic.make_splits(s.digits, s.n_train, s.n_eval, seed, s.forget)
    write_jsonl(out / "train.jsonl", train_items)
    write_jsonl(out / "eval.jsonl", eval_items)
    demo_acc = arithmetic.demonstrator_accuracy(eval_items, s.forget, seed + 1)
    sft_job, rl_job = job_files(out, s, seed, progress)
    console.print(f"[bold]demonstrator[/] held-out accuracy {demo_acc:.1%} (forgets a carry {s.forget:.0%} of the time)")

    t1 = time.time()
    sft = train_sft.train(load_job(sft_job))
    t2 = time.time()
    rl = train_rl.train(load_job(rl_job))
    t3 = time.time()

    results = {
        "task": f"{s.digits}-digit addition",
        "seed": seed,
        "fast": fast,
        "demonstrator_accuracy": demo_acc,
        "sft_accuracy": sft["eval/pass@1"],
        "rl_accuracy": rl["eval/pass@1"],
        "sft_seconds": t2 - t1,
        "rl_seconds": t3 - t2,
        "wall_seconds": time.time() - t0,
        "held_out_problems": len(eval_items),
        "final_model": rl["final_model"],
    }
    results["plot"] = str(plot(out, eval_curve(out / "sft"), eval_curve(out / "rl"), demo_acc))
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")

    table = Table(title=f"Held-out accuracy on {len(eval_items)} unseen {s.digits}-digit additions")
    for col in ("", "accuracy", "wall time"):
        table.add_column(col)
    table.add_row("demonstrator", f"{demo_acc:.1%}", "")
    table.add_row("after SFT (imitating it)", f"{results['sft_accuracy']:.1%}", f"{t2 - t1:.0f} s")
    table.add_row("after RL (GRPO)", f"{results['rl_accuracy']:.1%}", f"{t3 - t2:.0f} s")
    console.print(table)
    console.print(f"results: {out / 'results.json'}  plot: {results['plot']}  total {results['wall_seconds']:.0f} s")
    return results
