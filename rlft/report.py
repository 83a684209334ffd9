"""The report of an ``rlft compare`` experiment: held-out pass@1 per method with 95% t-intervals
across seeds, learning curves with bands, sample efficiency, wall time, and a check that no
training prompt is in the evaluation set. Writes report.md, curves.png and results.json.

Everything is read back from the cells' run folders (metrics.jsonl, summary.json), so a report
can be rewritten at any time (``rlft compare FILE --report-only``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from rlft.config import load_job


def t_interval(xs: list[float], level: float = 0.95) -> tuple[float, float]:
    """(mean, half-width) of the Student-t interval of the mean; half-width nan for n < 2."""
    from scipy import stats

    n = len(xs)
    mean = sum(xs) / n
    if n < 2:
        return mean, math.nan
    sd = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1))
    return mean, float(stats.t.ppf(0.5 + level / 2, n - 1)) * sd / math.sqrt(n)


def cell_result(cell, start_score: float | None) -> dict:
    """What the report needs from one finished cell's run folder."""
    rows = [json.loads(line) for line in (cell.out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    summary = json.loads((cell.out / "summary.json").read_text())
    train = [r for r in rows if "loss" in r]
    sampled = sum(r.get("completion_len_mean", 0.0) * cell.per_step for r in train)  # 0 for SFT
    demo = sum(r.get("tokens", 0.0) for r in train if "completion_len_mean" not in r)
    curve = {r["step"] * cell.per_step: r["eval/pass@1"] for r in rows if "eval/pass@1" in r}
    if start_score is not None:
        curve[0] = start_score
    return {
        "task": cell.task, "method": cell.method, "seed": cell.seed, "steps": cell.steps,
        "sequences": cell.steps * cell.per_step, "pass@1": summary["eval/pass@1"],
        "sampled_tokens": sampled, "demonstration_tokens": demo, "wall_seconds": summary.get("wall_seconds", math.nan),
        "curve": sorted(curve.items()),
    }


def contamination(job_file: str, overrides: list[str]) -> dict:
    """How many eval prompts also occur (after whitespace normalisation) among training prompts."""
    from rlft.data import load_items

    job = load_job(job_file, overrides)
    norm = lambda p: " ".join(json.dumps(p, sort_keys=True).split())  # noqa: E731
    load = lambda path: load_items(path, prompt_field=job.data.prompt, base_dir=job.base_dir)  # noqa: E731
    train = {norm(it[job.data.prompt]) for it in load(job.data.train)}
    held_out = [norm(it[job.data.prompt]) for it in load(job.data.eval)]
    shared = sum(p in train for p in held_out)
    return {"train_prompts": len(train), "eval_prompts": len(held_out), "shared": shared}


def _fmt(x: float, digits: int = 3) -> str:
    return "–" if x is None or math.isnan(x) else f"{x:.{digits}f}"


def summarise(results: list[dict], starts: dict) -> list[dict]:
    """One row per (task, method): pass@1 mean and interval, gain, tokens, efficiency, wall time."""
    rows = []
    for task in dict.fromkeys(r["task"] for r in results):
        for method in dict.fromkeys(r["method"] for r in results if r["task"] == task):
            rs = [r for r in results if r["task"] == task and r["method"] == method]
            mean, half = t_interval([r["pass@1"] for r in rs])
            start = starts.get(task)
            gain = mean - start if start is not None else math.nan
            tokens = sum(r["sampled_tokens"] for r in rs) / len(rs)
            rows.append({
                "task": task, "method": method, "seeds": len(rs), "sequences": rs[0]["sequences"],
                "pass@1": mean, "ci95": half, "start": start, "gain": gain,
                "sampled_ktokens": tokens / 1000, "demo_ktokens": sum(r["demonstration_tokens"] for r in rs) / len(rs) / 1000,
                "gain_per_ktoken": gain / (tokens / 1000) if tokens > 0 else math.nan,
                "wall_seconds": sum(r["wall_seconds"] for r in rs) / len(rs),
            })
    return rows


def markdown(name: str, exp: dict, rows: list[dict], checks: dict, plot: Path, meta: dict) -> str:
    total = meta.get("last_invocation_seconds")
    out = [f"# {name}", "",
           f"Budget per cell: **{exp['budget']} training sequences** (RL: steps × prompts × group size sampled "
           f"attempts; SFT: steps × batch size demonstrations). Seeds: {exp['seeds']}. Held-out pass@1 is greedy. "
           f"95% intervals are Student-t across seeds. Cells ran {meta.get('workers', 1)} at a time with "
           f"{meta.get('threads', '?')} torch thread(s) each on {meta.get('cpus', '?')} CPUs"
           + (f"; the last invocation took {total / 60:.1f} min in all" if total else "") + ". "
           "wall s = mean seconds of a cell's run (model load to final save; process start-up not included).",
           "", "| task | method | seeds | steps×seq | pass@1 | 95% CI | start | Δ | sampled k tokens | Δ per 1k sampled tokens | wall s |",
           "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        ci = "–" if math.isnan(r["ci95"]) else f"[{r['pass@1'] - r['ci95']:.3f}, {r['pass@1'] + r['ci95']:.3f}]"
        tokens = _fmt(r["sampled_ktokens"], 1) if r["sampled_ktokens"] else f"0 ({r['demo_ktokens']:.1f} k demo)"
        out.append(f"| {r['task']} | {r['method']} | {r['seeds']} | {r['sequences']} | {r['pass@1']:.3f} | {ci} | "
                   f"{_fmt(r['start'])} | {_fmt(r['gain'], 3)} | {tokens} | {_fmt(r['gain_per_ktoken'], 4)} | "
                   f"{r['wall_seconds']:.0f} |")
    out += ["", "## Train/eval overlap", ""]
    for task, c in checks.items():
        verdict = "OK" if c["shared"] == 0 else "**CONTAMINATED: eval scores are not held-out**"
        out.append(f"- {task}: {c['shared']} of {c['eval_prompts']} eval prompts occur among {c['train_prompts']} "
                   f"training prompts — {verdict}")
    out += ["", f"![learning curves]({plot.name})", ""]
    return "\n".join(out)


def plot_curves(results: list[dict], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(dict.fromkeys(r["task"] for r in results))
    fig, axes = plt.subplots(1, len(tasks), figsize=(6.5 * len(tasks), 4), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        for method in dict.fromkeys(r["method"] for r in results if r["task"] == task):
            curves = [dict(r["curve"]) for r in results if r["task"] == task and r["method"] == method]
            xs = sorted(set.intersection(*(set(c) for c in curves)))
            stats = [t_interval([c[x] for c in curves]) for x in xs]
            mean = [m for m, _ in stats]
            half = [0.0 if math.isnan(h) else h for _, h in stats]
            line, = ax.plot(xs, mean, "o-", ms=3, label=f"{method} (n={len(curves)})")
            ax.fill_between(xs, [m - h for m, h in zip(mean, half)], [m + h for m, h in zip(mean, half)],
                            color=line.get_color(), alpha=0.2)
        ax.set(title=task, xlabel="training sequences", ylabel="held-out pass@1 (mean, 95% t band)", ylim=(0, 1.02))
        ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(out: Path, spec: dict, cells: list, tasks: dict) -> Path:
    exp = spec["experiment"]
    starts = {}
    for task in tasks:
        f = out / "start" / task / "eval.json"
        starts[task] = json.loads(f.read_text())["eval/pass@1"] if f.exists() else None
    done = [c for c in cells if (c.out / "summary.json").exists()]
    results = [cell_result(c, starts[c.task]) for c in done]
    checks = {task: contamination(info["job"], info["overrides"]) for task, info in tasks.items()}
    meta = json.loads((out / "experiment.json").read_text()) if (out / "experiment.json").exists() else {}
    rows = summarise(results, starts)
    plot = plot_curves(results, out / "curves.png") if results else out / "curves.png"
    text = markdown(exp["name"], exp, rows, checks, plot, meta)
    if len(done) < len(cells):
        text += f"\n{len(cells) - len(done)} of {len(cells)} cells have not finished; rerun the command to finish them.\n"
    (out / "report.md").write_text(text)
    (out / "results.json").write_text(json.dumps({"rows": rows, "cells": results, "overlap": checks}, indent=2) + "\n")
    return out / "report.md"
