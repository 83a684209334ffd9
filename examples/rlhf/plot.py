"""Plot a reward-model RL run: the reward model's score next to the gold grader's, per step.

    python examples/rlhf/plot.py runs/rlhf/rl docs/reward-models-rm-vs-gold.png
"""

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main(run: str, out: str) -> None:
    rows = [json.loads(line) for line in (Path(run) / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in rows if "reward_mean" in r]
    held = [r for r in rows if "eval/gold/pass_rate" in r]
    fig, ax1 = plt.subplots(figsize=(7, 4))
    ax1.plot([r["step"] for r in train], [r["reward_mean"] for r in train], color="tab:blue", alpha=0.7,
             label="reward-model score (train samples)")
    ax1.set(xlabel="RL step", ylabel="reward-model score")
    ax2 = ax1.twinx()
    ax2.plot([r["step"] for r in train], [r["gold/pass_rate"] for r in train], color="tab:orange", alpha=0.7,
             label="gold pass rate (train samples)")
    ax2.plot([r["step"] for r in held], [r["eval/gold/pass_rate"] for r in held], "o-", color="tab:red",
             label="gold pass rate (held-out, greedy)")
    ax2.set(ylabel="gold pass rate", ylim=(0, 1.02))
    fig.legend(loc="lower right", bbox_to_anchor=(0.88, 0.15))
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    print(f"wrote {out}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
