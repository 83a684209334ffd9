"""Preference pairs built from the quickstart task, for reward-model training (RLHF).

Each pair is a 3-digit addition (``"a+b="``): ``chosen`` is a correct worked answer and
``rejected`` is the demonstrator's answer with a dropped carry (rlft.tasks.arithmetic), so a
reward model has to learn *where* a carry was dropped, the flaw the quickstart's RL removes.
Problems without a carry have no wrong answer of that kind and are skipped.

    python -m rlft.tasks.preferences runs/rlhf/pairs.jsonl --n 4000
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from rlft.tasks.arithmetic import ANSWER_FIELD, PROMPT_FIELD, demonstrate, final_answer, problem


def arithmetic_pairs(n: int, digits: int = 3, seed: int = 0, forget: float = 0.6,
                     exclude: set[str] = frozenset()) -> list[dict]:
    """``n`` rows {prompt, chosen, rejected, answer}; ``rejected`` is a wrong answer of the
    demonstrator (it forgets each carry with probability ``forget``, at least once here).
    Prompts in ``exclude`` (e.g. a held-out set) are not used."""
    rng = random.Random(seed)
    lo, hi = 10 ** (digits - 1), 10**digits - 1
    rows = []
    while len(rows) < n:
        a, b = rng.randint(lo, hi), rng.randint(lo, hi)
        item = problem(a, b)
        chosen = demonstrate(a, b, 0.0, rng, digits)
        if item[PROMPT_FIELD] in exclude or chosen == demonstrate(a, b, 1.0, rng, digits):
            continue  # held out, or no carry to drop
        rejected = chosen
        while final_answer(rejected) == item[ANSWER_FIELD]:
            rejected = demonstrate(a, b, forget, rng, digits)
        rows.append({PROMPT_FIELD: item[PROMPT_FIELD], "chosen": chosen, "rejected": rejected,
                     ANSWER_FIELD: item[ANSWER_FIELD]})
    return rows


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Write preference pairs from the quickstart's addition task (JSONL).")
    p.add_argument("out", help="output .jsonl")
    p.add_argument("--n", type=int, default=4000, help="pairs (default: 4000)")
    p.add_argument("--digits", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--exclude", default="", help="a .jsonl whose prompts are left out (e.g. the RL eval set)")
    args = p.parse_args(argv)
    exclude = set()
    if args.exclude:
        exclude = {json.loads(line)[PROMPT_FIELD] for line in Path(args.exclude).read_text().splitlines() if line.strip()}
    rows = arithmetic_pairs(args.n, args.digits, args.seed, exclude=exclude)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("".join(json.dumps(r) + "\n" for r in rows))
    print(f"wrote {len(rows)} pairs to {args.out}")


if __name__ == "__main__":
    main()
