"""``rlft reward-model train``: its settings (RewardModelConfig), read from a pairs file or a
TOML job file's [reward_model] table and ``key=value`` overrides, and its command line. Light
to import (no torch), so ``rlft --help`` stays fast; the training is rlft.rewards.reward_model."""

from __future__ import annotations

import ast
import difflib
import inspect
import textwrap
import tomllib
import typing
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Sequence

from rlft.config import ConfigError
from rlft.config.files import read_toml

RESULTS = "reward_model.json"


@dataclass(frozen=True)
class RewardModelConfig:
    """rlft reward-model train: a Bradley–Terry reward model from preference pairs."""

    pairs: str = ""
    """Preference pairs: JSONL / CSV / Parquet / a datasets name; rows with prompt (text or chat messages), chosen, rejected."""
    eval: str = ""
    """Held-out pairs, same forms; empty = hold out eval_fraction of pairs."""
    eval_fraction: float = 0.1
    """Share of pairs held out (chosen at random with seed) when eval is empty."""
    base: str = "tiny"
    """The base model: a hub id, a local folder, or "tiny" (the built-in model, built into out/tiny-base)."""
    out: str = "runs/reward-model"
    """Output folder: the reward model (save_pretrained), reward_model.json, metrics.jsonl."""
    epochs: int = 1
    """Passes over the training pairs."""
    batch_size: int = 16
    """Pairs per optimizer step (2 x batch_size sequences)."""
    lr: float = 1e-4
    """AdamW learning rate (constant)."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    max_grad_norm: float = 1.0
    """Gradient-norm clip; 0 = none."""
    max_length: int = 512
    """Cap on prompt + reply tokens; a longer pair is an error naming its line (or skipped)."""
    skip_invalid: bool = False
    """Skip bad pairs (reported with a count) instead of stopping."""
    seed: int = 0
    """Seed for the split, the order and the head's initialisation."""
    device: str = "auto"
    """auto | cpu | cuda."""
    progress: bool = True
    """Show a progress bar."""


# field -> (allowed?, what it must be)
_RANGES = {
    "eval_fraction": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "epochs": (lambda v: v >= 1, ">= 1"),
    "batch_size": (lambda v: v >= 1, ">= 1"),
    "lr": (lambda v: v > 0, "> 0"),
    "weight_decay": (lambda v: v >= 0, ">= 0"),
    "max_grad_norm": (lambda v: v >= 0, ">= 0 (0 = none)"),
    "max_length": (lambda v: v >= 2, ">= 2"),
    "device": (lambda v: v in ("auto", "cpu", "cuda"), "auto, cpu or cuda"),
}


def load_config(source: str, overrides: Sequence[str] = ()) -> tuple[RewardModelConfig, str]:
    """(config, the folder relative paths resolve against) from a pairs file or a TOML job file
    with a [reward_model] table, then ``key=value`` overrides; every problem reported at once."""
    table: dict = {}
    where: dict[str, str] = {}
    base_dir = str(Path.cwd())
    if source.endswith(".toml"):
        raw, _ = read_toml(source)
        if not isinstance(raw.get("reward_model"), dict):
            raise ConfigError(f"{source}: no [reward_model] table; fix: put the settings under [reward_model], e.g. "
                              f"pairs = \"pairs.jsonl\"")
        table = dict(raw["reward_model"])
        where = {k: f"{source}: [reward_model] {k} = {v!r}" for k, v in table.items()}
        base_dir = str(Path(source).resolve().parent)
    elif source:
        table, where = {"pairs": source}, {"pairs": f"pairs {source!r}"}
    for ov in overrides:
        key, eq, text = ov.partition("=")
        key = key.strip().removeprefix("reward_model.")
        if not eq or not key:
            raise ConfigError(f"override {ov!r}: expected key=value, e.g. epochs=3 or out=runs/rm")
        try:
            table[key] = tomllib.loads(f"v = {text}")["v"]
        except tomllib.TOMLDecodeError:
            table[key] = text  # a bare string: out=runs/rm
        where[key] = f"override {ov}"
    hints = typing.get_type_hints(RewardModelConfig)
    errors = []
    for key, value in table.items():
        if key not in hints:
            close = difflib.get_close_matches(key, list(hints), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            errors.append(f"{where[key]}: unknown key; {hint}valid: {', '.join(hints)}")
        elif hints[key] is float and isinstance(value, int) and not isinstance(value, bool):
            table[key] = float(value)
        elif not isinstance(value, hints[key]) or (hints[key] is int and isinstance(value, bool)):
            errors.append(f"{where[key]}: expected {hints[key].__name__}, got {type(value).__name__} {value!r}")
    for key, (ok, allowed) in _RANGES.items():
        if key in table and not errors and not ok(table[key]):
            errors.append(f"{where[key]}: must be {allowed}")
    if not errors and not table.get("pairs"):
        errors.append("no preference pairs given; fix: rlft reward-model train PAIRS.jsonl (rows with prompt, chosen, rejected)")
    if errors:
        raise ConfigError("\n".join(errors))
    return RewardModelConfig(**table), base_dir


def field_help() -> str:
    """``key (type, default): docstring`` for every field, from the docstrings under them."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(RewardModelConfig)))
    body = tree.body[0].body
    docs = {s.target.id: " ".join(n.value.value.split()) for s, n in zip(body, body[1:])
            if isinstance(s, ast.AnnAssign) and isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant)}
    return "\n".join(f"  {f.name} ({f.type}, {f.default!r}): {docs[f.name]}" for f in fields(RewardModelConfig))


def add_command(sub) -> None:
    """``rlft reward-model train SOURCE [key=value ...]`` on the CLI's subparsers."""
    import argparse

    rm = sub.add_parser("reward-model", help="train a reward model on preference pairs (RLHF)",
                        description="Reward models from human preferences (rlft.rewards.reward_model).")
    rmsub = rm.add_subparsers(dest="rm_command", required=True)
    t = rmsub.add_parser(
        "train", help="a Bradley–Terry reward model on (prompt, chosen, rejected) pairs; held-out pair accuracy",
        description="Train a one-number head on a Hugging Face base so that chosen replies score above rejected "
        "ones (loss -log σ(r_chosen - r_rejected)); report held-out pair accuracy; save the model and "
        "reward_model.json in out. Use it as a grader: type = \"reward_model\", model = OUT.",
        epilog="settings (a [reward_model] table in a job file, or key=value):\n" + field_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    t.add_argument("source", help="preference pairs (.jsonl/.csv/.parquet: prompt, chosen, rejected), or a .toml "
                                  "job file with a [reward_model] table")
    t.add_argument("overrides", nargs="*", metavar="key=value", help="a setting, e.g. base=runs/sft/final epochs=3")


def run_command(args) -> dict:
    from rlft.rewards.reward_model import train

    cfg, base_dir = load_config(args.source, args.overrides)
    return train(cfg, base_dir)
