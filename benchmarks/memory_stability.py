"""Memory stability of a long RL run: resident memory (RSS) sampled every 50 steps.

    python benchmarks/memory_stability.py [--steps 1000] [--out runs/memory_stability]

Runs ``rlft.train_rl`` in this process on the built-in tiny model (2-digit addition, 4 prompts x
4 samples a step, worked answers of up to 26 tokens, a checkpoint every 250 steps, keep 2) and
reads the ``memory/rss_mb`` metric the loop logs each step. Prints RSS every 50 steps and the
growth after the first 100 steps: (max RSS over steps > 100 - RSS at step 100) / RSS at step 100.
Target: under 5%.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "2")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=1000, help="RL steps (default 1000)")
    ap.add_argument("--every", type=int, default=50, help="report RSS every N steps (default 50)")
    ap.add_argument("--out", default="runs/memory_stability", help="run folder (deleted first)")
    args = ap.parse_args(argv)

    from rlft import train_rl
    from rlft.config import load_job
    from rlft.tasks import arithmetic

    out = Path(args.out).resolve()
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    train, _ = arithmetic.make_splits(2, 2000, 10, seed=0, forget=0.6)
    (out / "train.jsonl").write_text("".join(json.dumps(it) + "\n" for it in train))
    job = load_job(None, [
        "model.path=tiny", f"data.train={out / 'train.jsonl'}", "grader.type=numeric",
        "algorithm.prompts_per_step=4", "algorithm.group_size=4", "sampling.max_new_tokens=26",
        "sampling.temperature=1.0", "optim.lr=1e-4", f"optim.steps={args.steps}",
        "run.checkpoint_every=250", "run.keep_checkpoints=2", "run.progress=false", f"run.out={out / 'run'}",
    ])
    t0 = time.time()
    train_rl.train(job)
    wall = time.time() - t0

    rss = {}
    for line in (out / "run" / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        if "memory/rss_mb" in row:
            rss[row["step"]] = row["memory/rss_mb"]
    if not rss:
        print("no memory/rss_mb metric (it is read from /proc/self/statm, Linux only)")
        return 1
    print(f"{args.steps} RL steps of the tiny model in {wall:.0f} s (torch threads: {os.environ['OMP_NUM_THREADS']})")
    print("step   RSS MiB")
    for step in range(args.every, args.steps + 1, args.every):
        print(f"{step:<6} {rss[step]:.1f}")
    base = rss[min(100, args.steps)]
    later = [v for s, v in rss.items() if s > 100] or [base]
    growth = (max(later) - base) / base
    print(f"RSS at step 100: {base:.1f} MiB; max after: {max(later):.1f} MiB; growth {growth:+.2%} "
          f"(target < 5%): {'met' if growth < 0.05 else 'NOT met'}")
    (out / "rss.json").write_text(json.dumps({"rss_mb": rss, "growth_after_100": growth, "wall_s": wall}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
