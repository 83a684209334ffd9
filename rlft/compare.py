"""``rlft compare EXPERIMENT.toml``: methods × seeds × tasks at a fixed budget per cell, then a
report with confidence intervals (rlft.report).

An experiment file::

    [experiment]
    seeds = [0, 1, 2]
    budget = 2048        # training sequences per cell: RL steps·P·G, SFT steps·batch_size
    evals = 4            # held-out evaluations per cell (the learning curve), plus the start
    workers = 1          # cells run at once, each `rlft train` in its own process
    out = "runs/compare/NAME"   # relative to the working directory

    [tasks.addition]     # a built-in task (TASKS): data + a warm-start SFT run, prepared once
    builtin = "addition"
    digits = 3
    # or: job = "base.toml"  (any job file, relative to the experiment file)

    [methods.grpo]       # overrides of the task's job, like `rlft train JOB key=value`
    overrides = ["algorithm.name=grpo", "optim.lr=1e-4"]

The budget is stated in training sequences, the unit every method spends: an RL step samples
P·G attempts, an SFT step reads batch_size demonstrations. Each cell is an ordinary rlft run
folder (cells/TASK/METHOD/seedN) with checkpoints, so an interrupted experiment resumes when the
same command runs again: finished cells (summary.json) are skipped, a cut one resumes from its
newest checkpoint. Seeds vary the cell's data order, sampling and initialisation of new heads;
a task's warm start is shared by every cell (seed 0), so the intervals measure the variance of
the method, not of the warm start.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from rlft.config import ConfigError, job_to_toml, load_job
from rlft.config.files import read_toml

BUILTIN_DIR = Path(__file__).parent / "tasks" / "experiments"
EXPERIMENT_KEYS = {"name", "seeds", "budget", "evals", "workers", "threads", "out", "checkpoints"}


@dataclass(frozen=True)
class Cell:
    task: str
    method: str
    seed: int
    out: Path
    job_file: Path
    per_step: int  # training sequences per step
    steps: int


def builtin_path(name: str) -> Path:
    path = BUILTIN_DIR / f"{name}.toml"
    if not path.is_file():
        valid = ", ".join(sorted(p.stem for p in BUILTIN_DIR.glob("*.toml")))
        raise ConfigError(f"--builtin {name}: no such experiment; valid: {valid}")
    return path


def load_experiment(path: Path) -> dict:
    """The experiment table, checked: every problem names the file, the table and the fix."""
    raw, _ = read_toml(path, "experiment file")
    exp = raw.get("experiment", {})
    errors = [f"{path}: [experiment] {k}: unknown key; valid: {', '.join(sorted(EXPERIMENT_KEYS))}"
              for k in exp if k not in EXPERIMENT_KEYS]
    for table in ("tasks", "methods"):
        if not isinstance(raw.get(table), dict) or not raw[table]:
            errors.append(f"{path}: needs at least one [{table}.NAME] table; see `rlft compare --help`")
    for name, m in raw.get("methods", {}).items():
        if not isinstance(m.get("overrides", []), list):
            errors.append(f"{path}: [methods.{name}] overrides must be a list of \"key=value\" strings")
    for name, t in raw.get("tasks", {}).items():
        if ("builtin" in t) == ("job" in t):
            errors.append(f"{path}: [tasks.{name}] needs exactly one of builtin = \"addition\" or job = \"base.toml\"")
    if not isinstance(exp.get("budget"), int) or exp["budget"] < 1:
        errors.append(f"{path}: [experiment] budget = {exp.get('budget')!r}: must be an integer >= 1 (training sequences per cell)")
    if errors:
        raise ConfigError("\n".join(errors))
    exp = {"name": path.stem, "seeds": [0, 1, 2], "evals": 4, "workers": 1, "threads": 0,
           "out": f"runs/compare/{path.stem}", "checkpoints": 2, **exp}
    return {"experiment": exp, "tasks": raw["tasks"], "methods": raw["methods"], "base_dir": path.resolve().parent}


def prepare_task(name: str, table: dict, base_dir: Path, cache: Path) -> tuple[Path, list[str]]:
    """(base job file, overrides) of a task; a built-in task writes its data and warm start once
    under ``cache``, in a folder named by a hash of its settings."""
    if "job" in table:
        job = Path(table["job"])
        return (job if job.is_absolute() else base_dir / job), list(table.get("overrides", []))
    from rlft.tasks.experiments import TASKS

    if table["builtin"] not in TASKS:
        raise ConfigError(f"[tasks.{name}] builtin = {table['builtin']!r}: unknown; valid: {', '.join(TASKS)}")
    settings = {k: v for k, v in table.items() if k not in ("builtin", "overrides")}
    key = hashlib.sha256(json.dumps([table["builtin"], settings], sort_keys=True).encode()).hexdigest()[:8]
    folder = cache / f"{table['builtin']}-{key}"
    folder.mkdir(parents=True, exist_ok=True)
    job = TASKS[table["builtin"]](folder, **settings)
    return job, list(table.get("overrides", []))


def plan(spec: dict, out: Path) -> tuple[list[Cell], dict]:
    """Every cell's job file, written (validated) under out/cells; and per task its start info."""
    exp = spec["experiment"]
    cells, tasks = [], {}
    for task, table in spec["tasks"].items():
        base, task_overrides = prepare_task(task, table, spec["base_dir"], out.parent / "_tasks")
        tasks[task] = {"job": str(base), "overrides": task_overrides}
        for method, m in spec["methods"].items():
            for seed in exp["seeds"]:
                cell_out = out / "cells" / task / method / f"seed{seed}"
                overrides = [*task_overrides, *m.get("overrides", [])]
                probe = load_job(base, overrides)
                per_step = probe.optim.batch_size if probe.algorithm.name == "sft" else (
                    probe.algorithm.prompts_per_step * probe.algorithm.group_size)
                steps = max(1, exp["budget"] // per_step)
                every = max(1, steps // exp["evals"])
                ckpt = max(1, steps // exp["checkpoints"]) if exp["checkpoints"] else 0
                where = f"[tasks.{task}] × [methods.{method}]"
                try:
                    job = load_job(base, [*overrides, f"optim.steps={steps}", f"eval.every={every}", f"run.seed={seed}",
                                          f"run.out={cell_out.resolve()}", f"run.checkpoint_every={ckpt}",
                                          "run.progress=false"])
                except ConfigError as e:
                    raise ConfigError(f"{where}: {e}") from None
                cell_out.mkdir(parents=True, exist_ok=True)
                job_file = cell_out / "job.toml"
                job_file.write_text(job_to_toml(job))
                cells.append(Cell(task, method, seed, cell_out, job_file, per_step, steps))
    return cells, tasks


def run_cell(cell: Cell, threads: int, log) -> dict:
    """Run (or resume) one cell in its own process; skipped when it already finished."""
    if (cell.out / "summary.json").exists():
        log(f"done already: {cell.task}/{cell.method}/seed{cell.seed}")
        return {"cell": cell, "skipped": True}
    t0 = time.time()
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    with open(cell.out / "stdout.log", "a") as out:
        proc = subprocess.run([sys.executable, "-m", "rlft.cli", "train", str(cell.job_file)],
                              stdout=out, stderr=subprocess.STDOUT, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"cell {cell.task}/{cell.method}/seed{cell.seed} failed (exit {proc.returncode}); "
                           f"see {cell.out / 'stdout.log'}; rerun the same command to resume it")
    log(f"finished {cell.task}/{cell.method}/seed{cell.seed} in {time.time() - t0:.0f} s")
    return {"cell": cell, "skipped": False}


def start_scores(tasks: dict, out: Path, threads: int) -> None:
    """Each task's starting model scored on its eval set once (``rlft eval``), the curves' step 0."""
    for task, info in tasks.items():
        folder = out / "start" / task
        if (folder / "eval.json").exists():
            continue
        folder.mkdir(parents=True, exist_ok=True)
        args = [sys.executable, "-m", "rlft.cli", "eval", info["job"], *info["overrides"],
                f"run.out={folder.resolve()}", "run.progress=false"]
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        subprocess.run(args, check=True, stdout=subprocess.DEVNULL, env=env)


def compare(path: Path, workers: int | None = None, report_only: bool = False) -> Path:
    """Run every cell of the experiment at ``path`` that has not finished, then write the report;
    returns the report's path."""
    from rlft.report import write_report

    spec = load_experiment(path)
    exp = spec["experiment"]
    out = Path(exp["out"])
    out.mkdir(parents=True, exist_ok=True)
    workers = workers or exp["workers"]
    threads = int(os.environ.get("OMP_NUM_THREADS") or exp["threads"] or max(1, (os.cpu_count() or 1) // workers))
    log = lambda msg: print(f"rlft compare: {msg}", file=sys.stderr, flush=True)  # noqa: E731
    t0 = time.time()
    cells, tasks = plan(spec, out)
    if not report_only:
        log(f"{len(cells)} cells, {workers} at a time, {threads} torch thread(s) each; out {out}")
        start_scores(tasks, out, threads)
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(lambda c: run_cell(c, threads, log), cells))
    if report_only:  # keep the timings of the invocation that ran the cells
        return write_report(out, spec, cells, tasks)
    (out / "experiment.json").write_text(json.dumps({
        "file": str(path), "experiment": exp, "tasks": tasks, "workers": workers, "threads": threads,
        "cpus": os.cpu_count(), "last_invocation_seconds": time.time() - t0,
    }, indent=2) + "\n")
    report = write_report(out, spec, cells, tasks)
    log(f"report: {report}")
    return report
