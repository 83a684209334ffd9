"""Job checks that span fields (``cross_checks``), and the "did you mean" of unknown keys:
close spellings, the names other trainers use for a field (TRL, Hugging Face Trainer, verl,
OpenRLHF: ``learning_rate`` -> ``lr``), and a key that belongs to another section."""

from __future__ import annotations

import dataclasses
import difflib
from typing import Any, Sequence

import regex

from rlft.algos.advantages import GROUP_BASELINE
from rlft.config.sections import SECTIONS, GraderConfig

# a key other trainers use -> the rlft field(s) it means, the first one the table has wins
SYNONYMS: dict[str, tuple[str, ...]] = {
    "learning_rate": ("lr",), "lr_rate": ("lr",),
    "max_steps": ("steps",), "num_steps": ("steps",), "total_steps": ("steps",), "num_training_steps": ("steps",),
    "total_training_steps": ("steps",), "num_warmup_steps": ("warmup_steps",), "warmup": ("warmup_steps",),
    "lr_scheduler_type": ("schedule",), "lr_scheduler": ("schedule",), "scheduler": ("schedule",),
    "grad_clip": ("max_grad_norm",), "clip_grad_norm": ("max_grad_norm",),
    "per_device_train_batch_size": ("batch_size",), "train_batch_size": ("batch_size",),
    "num_generations": ("group_size",), "n_samples_per_prompt": ("group_size",), "rollout_n": ("group_size",),
    "num_samples": ("group_size", "samples"), "n": ("group_size", "samples"),
    "beta": ("kl_coef",), "kl_coeff": ("kl_coef",), "init_kl_coef": ("kl_coef",), "kl_loss_coef": ("kl_coef",),
    "epsilon": ("clip_low",), "cliprange": ("clip_low",), "epsilon_high": ("clip_high",),
    "num_iterations": ("updates_per_batch",), "ppo_epochs": ("updates_per_batch",),
    "vf_coef": ("value_coef",), "cliprange_value": ("value_clip",), "lam": ("gae_lambda",),
    "max_completion_length": ("max_new_tokens",), "max_tokens": ("max_new_tokens",),
    "response_length": ("max_new_tokens",), "generate_max_len": ("max_new_tokens",), "temp": ("temperature",),
    "output_dir": ("out",), "out_dir": ("out",), "save_steps": ("checkpoint_every",),
    "eval_steps": ("every",), "eval_every": ("every",),
    "model_name_or_path": ("path",), "model_name": ("path",), "pretrain": ("path",),
    "dataset": ("train",), "train_file": ("train",), "eval_file": ("eval",), "eval_dataset": ("eval",),
    "lora_r": ("rank",), "r": ("rank",), "lora_alpha": ("alpha",), "lora_dropout": ("dropout",),
}


def did_you_mean(bad: str, valid: Sequence[str]) -> str:
    """"did you mean 'x'? " for the valid name that ``bad`` is another trainer's name for, or a
    close spelling of; else ""."""
    named = [v for v in SYNONYMS.get(bad.lower(), ()) if v in valid]
    close = named or difflib.get_close_matches(bad, list(valid), n=1)
    return f"did you mean {close[0]!r}? " if close else ""


def key_hint(key: str, names: Sequence[str], section: str) -> str:
    """``did_you_mean`` within the table; else, for a top-level section, the other section that
    has the key (or its synonym): "did you mean [sampling] temperature? "."""
    if hint := did_you_mean(key, names):
        return hint
    if section not in SECTIONS:  # a nested table ([model.lora], a sub-grader)
        return ""
    for other, cls in SECTIONS.items():
        fields = [f.name for f in dataclasses.fields(cls)]
        found = [k for k in (key, *SYNONYMS.get(key.lower(), ())) if k in fields]
        if other != section and found:
            return f"did you mean [{other}] {found[0]}? "
    return ""


def gym_grader(s: dict[str, Any], src: dict[tuple[str, str], str]) -> GraderConfig:
    """A reasoning_gym data source is scored by its dataset's scorer unless [grader] says otherwise."""
    g: GraderConfig = s["grader"]
    if s["data"].train.startswith("reasoning_gym:") and ("grader", "type") not in src and not g.file:
        return dataclasses.replace(g, type="reasoning_gym")
    return g


def cross_checks(s: dict[str, Any], src: dict[tuple[str, str], str]) -> list[str]:
    """Problems that no single field has: one line each, naming the fields and the fix. ``s``
    maps section names to their built configs, ``src`` (section, key) to where a value came from."""
    g: GraderConfig = s["grader"]
    out = []
    e = s["eval"]
    if e.samples > 1 and e.temperature == 0:  # greedy attempts are all the same attempt
        at = src.get(("eval", "samples"), f"[eval] samples = {e.samples}")
        out.append(f"{at}: eval.samples = {e.samples} at eval.temperature = 0 (greedy) repeats one attempt, so "
                   f"pass@{e.samples} and pass^{e.samples} would just be pass@1; fix: set eval.temperature > 0 "
                   f"(e.g. 1.0), or eval.samples = 1")
    if s["data"].train.startswith("reasoning_gym:"):  # train and eval must not share generated items
        from rlft.data.gym import overlap_errors

        out += overlap_errors(s["data"].train, s["data"].eval)
    a = s["algorithm"]
    if a.group_size == 1 and a.name in GROUP_BASELINE:
        at = src.get(("algorithm", "group_size"), "[algorithm] group_size = 1")
        out.append(f"{at}: {a.name!r} compares each attempt with the others of its group, so a group of 1 trains "
                   f"nothing; fix: group_size >= 2, or name = \"reinforce\" (a batch baseline)")
    where = src.get(("grader", "type"), "[grader] type")
    if g.type == "regex":
        try:
            regex.compile(g.pattern)  # the regex grader's engine (rlft.rewards.graders)
        except regex.error as e:
            at = src.get(("grader", "pattern"), "[grader] pattern")
            out.append(f"{at}: not a valid regular expression ({e}); fix the pattern")
        if not g.pattern:
            out.append(f"{where}: grader type 'regex' needs grader.pattern; fix: set pattern = \"...\"")
    if g.type == "python" and not g.function and not g.source:
        out.append(
            f"{where}: grader type 'python' needs grader.function (trusted, in-process) or grader.source (sandboxed); "
            f"fix: set function = \"graders.py:score\""
        )
    return out
