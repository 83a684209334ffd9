"""The real-model demo's task: one-step arithmetic word problems, as a user would first try.

"Mia had 17 shells and gave away 9. How many shells are left?" -> 8. Three kinds (add, take
away, equal groups), small numbers, names and objects drawn at random. The held-out problems
are disjoint from the training ones by (kind, a, b), not only by wording, so a held-out
problem is never a training problem with another name.
"""

from __future__ import annotations

import random

SYSTEM = "Solve the math word problem. End your reply with: The answer is <number>."
NAMES = ("Sam", "Mia", "Leo", "Ava", "Noah", "Zoe", "Omar", "Lena", "Ravi", "Kim", "Ines", "Tom")
OBJECTS = ("apples", "stickers", "marbles", "books", "coins", "pencils", "cards", "shells", "eggs", "stamps")
LOW, HIGH = 2, 20  # operands of add and take away; equal groups: 2-5 groups of LOW..HIGH


def combos() -> list[tuple[str, int, int]]:
    """Every (kind, a, b) the generator can ask about, in a fixed order."""
    span = range(LOW, HIGH + 1)
    return (
        [("add", a, b) for a in span for b in span]
        + [("sub", a, b) for a in span for b in span if a > b]
        + [("mul", a, b) for a in range(2, 6) for b in span]
    )


def problem(kind: str, a: int, b: int, rng: random.Random, system: str = SYSTEM) -> dict:
    """One item: a chat prompt (system + user) and the answer."""
    name, obj = rng.choice(NAMES), rng.choice(OBJECTS)
    if kind == "add":
        text, answer = f"{name} has {a} {obj} and gets {b} more. How many {obj} does {name} have now?", a + b
        worked = f"{name} has {a} {obj} and gets {b} more, so {name} has {a} + {b} = {answer} {obj}."
    elif kind == "sub":
        text, answer = f"{name} had {a} {obj} and gave away {b}. How many {obj} are left?", a - b
        worked = f"{name} had {a} {obj} and gave away {b}, so {a} - {b} = {answer} {obj} are left."
    else:
        text, answer = f"{name} buys {a} bags with {b} {obj} in each bag. How many {obj} is that in total?", a * b
        worked = f"{a} bags with {b} {obj} in each bag is {a} * {b} = {answer} {obj}."
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": text}]
    # completion: a correct worked answer in the asked format, the demonstration SFT imitates
    return {"prompt": messages, "answer": str(answer), "kind": kind, "completion": f"{worked} The answer is {answer}."}


def make_splits(n_train: int, n_eval: int, seed: int, system: str = SYSTEM) -> tuple[list[dict], list[dict]]:
    """``n_eval`` held-out problems on combinations never used for training, and ``n_train``
    training problems drawn (with new wordings) from the remaining combinations."""
    rng = random.Random(seed)
    pool = combos()
    rng.shuffle(pool)
    if n_eval >= len(pool):
        raise ValueError(f"n_eval = {n_eval}: there are only {len(pool)} distinct problems; ask for fewer")
    held_out, rest = pool[:n_eval], pool[n_eval:]
    eval_items = [problem(*c, rng, system) for c in held_out]
    train_items = [problem(*rng.choice(rest), rng, system) for _ in range(n_train)]
    return train_items, eval_items
