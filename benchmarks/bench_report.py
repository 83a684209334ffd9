"""The summary of ``bench_vs_trl.py``: per-run numbers, the table, and the comparison over seeds.

Pure functions of the runs' JSON results (step seconds, completion tokens, eval curves), so a
results.json can be summarised again without rerunning anything.
"""

from __future__ import annotations

import statistics


def summarise(r: dict, params: int, peak: float, start_acc: float, gain: float) -> dict:
    step_s, tokens = r["step_seconds"], r["completion_tokens"]
    rest = step_s[1:] or step_s
    flop_frac = [8 * params * n / s / peak for s, n in zip(step_s[1:], tokens[1:])] or [0.0]
    target = start_acc + gain
    reached = next(((s, a) for s, a in r["evals"] if a >= target - 1e-9), None)
    return {
        "median_step_seconds": statistics.median(rest),
        "steps": len(step_s),
        "train_seconds": sum(step_s),
        "median_flops_fraction": statistics.median(flop_frac),
        "mean_completion_tokens_per_step": sum(tokens) / max(len(tokens), 1),
        "final_accuracy": r["final_accuracy"],
        "target_accuracy": target,
        "steps_to_target": reached[0] if reached else None,
        "seconds_to_target": sum(step_s[: reached[0]]) if reached else None,
    }


def print_table(rows: dict[str, dict], start_acc: float, gain: float, steps: int) -> None:
    head = ["run", "s/step (median)", "steps", "train wall s", "FLOP/s frac", "tok/step",
            f"to {start_acc + gain:.0%} (step, s)", "final acc"]
    body = []
    for name, s in rows.items():
        if "error" in s:
            body.append([name, s["error"], "", "", "", "", "", ""])
            continue
        to = (f"{s['steps_to_target']}, {s['seconds_to_target']:.1f}" if s["steps_to_target"]
              else f"not in {steps}")
        body.append([name, f"{s['median_step_seconds']:.3f}", str(s["steps"]), f"{s['train_seconds']:.1f}",
                     f"{s['median_flops_fraction']:.2%}", f"{s['mean_completion_tokens_per_step']:.0f}", to,
                     f"{s['final_accuracy']:.0%}"])
    widths = [max(len(row[i]) for row in [head] + body) for i in range(len(head))]
    line = lambda row: "  ".join(c.ljust(w) for c, w in zip(row, widths))  # noqa: E731
    print(line(head))
    print("  ".join("-" * w for w in widths))
    for row in body:
        print(line(row))


def compare_seeds(summary: dict[str, list[dict]], target: float) -> dict:
    """Per seed: TRL/rlft s/step ratio and who reached the target first; medians over seeds."""
    pairs = [(a, b) for a, b in zip(summary["rlft"], summary["trl"]) if "error" not in a and "error" not in b]
    if not pairs:
        return {}
    never = float("inf")
    to = [(a["seconds_to_target"] or never, b["seconds_to_target"] or never) for a, b in pairs]
    out = {
        "step_ratio_per_seed": [b["median_step_seconds"] / a["median_step_seconds"] for a, b in pairs],
        "seconds_to_target_per_seed": [[x if x < never else None for x in t] for t in to],
        "rlft_first": sum(a < b for a, b in to),
        "trl_first": sum(b < a for a, b in to),
        "median_seconds_to_target": [statistics.median(t[i] for t in to) for i in (0, 1)],
    }
    out["mean_curve"] = {name: mean_curve(raw) for name, raw in (("rlft", [a["raw"] for a, _ in pairs]),
                                                                ("trl", [b["raw"] for _, b in pairs]))}
    ratios = out["step_ratio_per_seed"]
    print(f"TRL / rlft seconds per step (median per seed): {', '.join(f'{r:.2f}x' for r in ratios)}; "
          f"median {statistics.median(ratios):.2f}x")
    med = ["not reached" if m == never else f"{m:.1f} s" for m in out["median_seconds_to_target"]]
    print(f"time to {target:.0%} held-out: rlft first in {out['rlft_first']} of {len(pairs)} seeds, TRL first "
          f"in {out['trl_first']}; median over seeds rlft {med[0]}, TRL {med[1]}")
    out["median_seconds_to_target"] = [m if m < never else None for m in out["median_seconds_to_target"]]
    crossing = {n: next(((s, t, a) for s, t, a in c if a >= target - 1e-9), None) for n, c in out["mean_curve"].items()}
    for n, c in crossing.items():
        where = f"step {c[0]}, {c[1]:.1f} s of training" if c else "not reached"
        print(f"mean held-out accuracy over the {len(pairs)} seeds first reaches {target:.0%} ({n}): {where}")
    out["mean_curve_to_target"] = crossing
    return out


def mean_curve(runs: list[dict]) -> list[tuple[int, float, float]]:
    """(step, mean training seconds up to it, mean held-out accuracy) at each eval step all runs share."""
    steps = sorted(set.intersection(*(set(s for s, _ in r["evals"]) for r in runs)))
    curve = []
    for step in steps:
        secs = [sum(r["step_seconds"][:step]) for r in runs]
        accs = [dict(r["evals"])[step] for r in runs]
        curve.append((step, statistics.mean(secs), statistics.mean(accs)))
    return curve
