"""The quickstart task: multi-digit addition, and a demonstrator that forgets carries.

A problem is ``"a+b="``; the answer is the decimal sum. The demonstrator adds column by
column like a pupil, but forgets a carry with probability ``forget`` each time one occurs.
Its mistakes are systematic (always a dropped carry, never a random digit), so a model that
imitates it learns its flaw; a grader that checks the sum lets RL unlearn it.
"""

from __future__ import annotations

import random

PROMPT_FIELD, ANSWER_FIELD, DEMO_FIELD = "prompt", "answer", "completion"


def problem(a: int, b: int) -> dict:
    return {PROMPT_FIELD: f"{a}+{b}=", ANSWER_FIELD: str(a + b)}


def demonstrate(a: int, b: int, forget: float, rng: random.Random, digits: int) -> str:
    """Column addition, worked right to left, that drops each carry with probability ``forget``.

    ``demonstrate(482, 359, 0.0, rng, 3) == "2+9+0=11 8+5+1=14 4+3+1=08 answer 841"``;
    forgetting the first carry gives ``"2+9+0=11 8+5+0=13 4+3+1=08 answer 831"``. Every column
    has the same width (carry always written, sum in two digits), so each answer digit sits at a
    fixed distance from the column it comes from, which a small model learns quickly.
    """
    columns, out, carry = [], [], 0
    for _ in range(digits):
        x, y = a % 10, b % 10
        total = x + y + carry
        columns.append(f"{x}+{y}+{carry}={total:02d}")
        out.append(total % 10)
        carry = total // 10 if rng.random() >= forget else 0
        a, b = a // 10, b // 10
    if carry:
        out.append(carry)
    return " ".join(columns) + " answer " + "".join(map(str, reversed(out)))


def make_splits(digits: int, n_train: int, n_eval: int, seed: int, forget: float) -> tuple[list, list]:
    """Disjoint train and held-out problems with ``digits``-digit operands; train items
    carry the demonstrator's answer in ``completion``."""
    rng = random.Random(seed)
    lo, hi = 10 ** (digits - 1), 10**digits - 1
    pairs: set[tuple[int, int]] = set()
    while len(pairs) < n_eval:
        pairs.add((rng.randint(lo, hi), rng.randint(lo, hi)))
    eval_items = [problem(a, b) for a, b in sorted(pairs)]
    rng.shuffle(eval_items)
    train_items = []
    while len(train_items) < n_train:
        a, b = rng.randint(lo, hi), rng.randint(lo, hi)
        if (a, b) in pairs:
            continue
        train_items.append({**problem(a, b), DEMO_FIELD: demonstrate(a, b, forget, rng, digits)})
    return train_items, eval_items


def final_answer(text: str) -> str:
    """The number after the last "answer" (what the grader checks)."""
    return text.rsplit("answer", 1)[-1].strip()


def demonstrator_accuracy(items: list[dict], forget: float, seed: int) -> float:
    rng = random.Random(seed)
    correct = 0
    for item in items:
        a, b = map(int, item[PROMPT_FIELD].rstrip("=").split("+"))
        digits = len(str(max(a, b)))
        correct += final_answer(demonstrate(a, b, forget, rng, digits)) == item[ANSWER_FIELD]
    return correct / len(items)


def corpus(n: int = 2000, seed: int = 0) -> list[str]:
    """Text to train the tiny model's tokenizer on: problems, answers and chat markup."""
    rng = random.Random(seed)
    lines = []
    for _ in range(n):
        a, b = rng.randint(0, 999), rng.randint(0, 999)
        worked = demonstrate(a, b, 0.0, rng, 3)
        lines.append(f"<|im_start|>user\n{a}+{b}=<|im_end|>\n<|im_start|>assistant\n{worked}<|im_end|>\n")
    lines.append("The quick brown fox jumps over the lazy dog. system user assistant tool")
    return lines
