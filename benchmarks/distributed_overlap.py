"""Steps per second: the single-process loop vs 2 sampler actors + 1 learner, with a slow grader.

The grader sleeps 50 ms per call (a slow judge, a code run). In one process sampling, grading and
learning run one after another; in the distributed run two Ray actors sample and grade in parallel
and, with distributed.max_staleness = 1, the next step's work is issued before this step's update,
so grading overlaps learning. Same job otherwise: the tiny model (rlft.models.TINY_CONFIG), 2-digit
addition, 4 prompts x 4 attempts, <= 8 new tokens, GRPO.

Run: OMP_NUM_THREADS=1 python benchmarks/distributed_overlap.py [--steps 8] [--out runs/bench_distributed]
(needs pip install 'rlft[ray]'; the first step of every run is left out as warm-up; Ray's and the
actors' start-up is reported apart.)
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rlft import train_rl  # noqa: E402
from rlft.config import load_job  # noqa: E402
from rlft.models import build_tiny_model  # noqa: E402
from rlft.tasks import arithmetic  # noqa: E402

GRADER = (
    "import time\n"
    "def score(sample, item):\n"
    "    time.sleep(0.05)  # a slow judge or a code run\n"
    "    return float(sample.output_text.strip() == item['answer'])\n"
)


def prepare(out: Path) -> Path:
    work = out / "work"
    if not (work / "tiny" / "config.json").exists():
        work.mkdir(parents=True, exist_ok=True)
        build_tiny_model(work / "tiny", arithmetic.corpus(), seed=0)
        train, _ = arithmetic.make_splits(2, 200, 10, seed=0, forget=0.6)
        (work / "train.jsonl").write_text("".join(json.dumps(it) + "\n" for it in train))
        (work / "grader.py").write_text(GRADER)
    return work


def one(work: Path, out: Path, steps: int, *overrides: str) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    job = load_job(None, [
        f"model.path={work / 'tiny'}", f"data.train={work / 'train.jsonl'}", "grader.type=python",
        f"grader.function={work / 'grader.py'}:score", "algorithm.prompts_per_step=4", "algorithm.group_size=4",
        "sampling.max_new_tokens=8", "optim.lr=1e-3", f"optim.steps={steps}", "run.progress=false",
        "run.log_samples=0", f"run.out={out}", *overrides,
    ])
    t0 = time.perf_counter()
    train_rl.train(job)
    wall = time.perf_counter() - t0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    per_step = [r["time/step"] for r in rows[1:]]  # step 1 is warm-up
    return {"steps_per_second": 1 / statistics.mean(per_step), "seconds_per_step": statistics.mean(per_step),
            "wall_seconds": wall, "startup_and_first_step_seconds": wall - sum(per_step),
            "reward_mean": statistics.mean(r["reward_mean"] for r in rows)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--out", default="runs/bench_distributed")
    args = ap.parse_args()
    out = Path(args.out)
    work = prepare(out)
    runs = {
        "single process": (),
        "2 samplers + 1 learner, on-policy (max_staleness 0)": ("distributed.samplers=2",),
        "2 samplers + 1 learner, overlapped (max_staleness 1)": ("distributed.samplers=2", "distributed.max_staleness=1"),
    }
    results = {name: one(work, out / f"run{i}", args.steps, *ov) for i, (name, ov) in enumerate(runs.items())}
    base = results["single process"]["steps_per_second"]
    print(f"\n{'placement':<55} {'steps/s':>8} {'s/step':>7} {'speed-up':>8} {'start-up s':>10}")
    for name, r in results.items():
        print(f"{name:<55} {r['steps_per_second']:>8.2f} {r['seconds_per_step']:>7.3f} "
              f"{r['steps_per_second'] / base:>7.2f}x {r['startup_and_first_step_seconds']:>10.1f}")
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
