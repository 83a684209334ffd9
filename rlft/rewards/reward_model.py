"""Reward models from human preferences (RLHF): Bradley–Terry on (prompt, chosen, rejected).

``rlft reward-model train PAIRS`` puts a one-number head on any Hugging Face base
(``AutoModelForSequenceClassification``, ``num_labels = 1``; the built-in tiny model works) and
trains it so that the preferred reply scores higher (Bradley & Terry 1952; Ouyang et al. 2022,
eq. 1): the loss of a pair is ``-log σ(r(prompt, chosen) - r(prompt, rejected))``. It reports
the held-out pair accuracy (the share of pairs ranked the right way round; ties count half, so
a constant model scores 0.5) and writes the model with ``save_pretrained`` and
``reward_model.json`` (the numbers) to one folder.

As a grader, ``type = "reward_model"`` with ``model`` = that folder scores the item's prompt and
the attempt, the same text the model was trained on: the prompt as the policy sees it
(``rlft.models.encode_prompt``), then the reply and EOS. The score is the head's raw output;
GRPO and RLOO normalise within each group, so its scale does not matter. A group is scored in
one batch (``grade_group``; rlft.rewards.reward_model_grader, which imports this module only
when it first scores, so checking a job stays fast). Log a gold grader next to it (``[grader.monitor.gold]``,
rlft.rewards.monitor) to see over-optimisation: the RM score going up while the gold goes down.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F

from rlft.data import DataError, load_items, report_bad
from rlft.models import build_tiny_model, check_model_dir, encode_completion, encode_prompt, load_tokenizer
from rlft.models import pick_device, pick_dtype
from rlft.rewards.reward_model_job import RESULTS, RewardModelConfig

# --- the loss ---------------------------------------------------------------------------------


def bt_loss(r_chosen_B: torch.Tensor, r_rejected_B: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
    """Bradley–Terry: mean over pairs of ``-log σ(r_chosen - r_rejected)``, and metrics.

    E.g. margins (0, ln 3): -log σ(0) = ln 2 ≈ 0.6931, -log σ(ln 3) = -log(3/4) ≈ 0.2877; mean
    0.4904. ``accuracy`` counts a pair 1 when the margin is > 0, 1/2 when it is 0.
    """
    margin_B = r_chosen_B - r_rejected_B
    loss = -F.logsigmoid(margin_B).mean()  # logsigmoid: stable for large negative margins
    with torch.no_grad():
        accuracy = ((margin_B > 0).float() + 0.5 * (margin_B == 0).float()).mean()
    return loss, {"loss": float(loss.detach()), "accuracy": float(accuracy), "margin": float(margin_B.detach().mean())}


# --- scoring ----------------------------------------------------------------------------------


def load_scorer(path: str | Path, device: torch.device, dtype: torch.dtype, pad_token_id: int):
    """A sequence classifier with one output on ``path`` (a new head when ``path`` is a causal LM)."""
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    check_model_dir(path)
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # "score.weight newly initialised" is the point when training
    try:
        model = AutoModelForSequenceClassification.from_pretrained(str(path), num_labels=1, dtype=dtype)
    finally:
        hf_logging.set_verbosity(verbosity)
    model.config.pad_token_id = pad_token_id  # where the head reads: the last token that is not padding
    return model.to(device)


def encode(tokenizer, prompt, reply: str) -> list[int]:
    """The text a reward model scores: the prompt as the policy sees it, the reply, EOS."""
    return encode_prompt(tokenizer, prompt) + encode_completion(tokenizer, reply)


def rewards(model, seqs: Sequence[list[int]], pad_id: int, device: torch.device) -> torch.Tensor:
    """(B,) scores of right-padded sequences."""
    T = max(len(s) for s in seqs)
    ids_BT = torch.full((len(seqs), T), pad_id, dtype=torch.long)
    mask_BT = torch.zeros((len(seqs), T), dtype=torch.long)
    for b, s in enumerate(seqs):
        ids_BT[b, : len(s)] = torch.tensor(s)
        mask_BT[b, : len(s)] = 1
    return model(input_ids=ids_BT.to(device), attention_mask=mask_BT.to(device)).logits[:, 0].float()


@torch.no_grad()
def pair_accuracy(model, pairs: Sequence[tuple[list[int], list[int]]], pad_id: int, device, batch: int = 64) -> dict:
    """Held-out ``loss`` and ``accuracy`` (BT, ties half) over ``pairs`` of (chosen, rejected) ids."""
    was_training = model.training
    model.eval()
    margins = []
    for i in range(0, len(pairs), batch):
        chunk = pairs[i : i + batch]
        r_2B = rewards(model, [c for c, _ in chunk] + [r for _, r in chunk], pad_id, device)
        margins.append(r_2B[: len(chunk)] - r_2B[len(chunk):])
    model.train(was_training)
    m_B = torch.cat(margins)
    _, metrics = bt_loss(m_B, torch.zeros_like(m_B))
    return metrics


# --- data -------------------------------------------------------------------------------------


def load_pairs(cfg: RewardModelConfig, source: str, tokenizer, base_dir: str) -> list[tuple[list[int], list[int]]]:
    """(chosen ids, rejected ids) per row; problems are errors naming the file and line."""
    rows = load_items(source, prompt_field="prompt", text_fields=["chosen", "rejected"], base_dir=base_dir,
                      skip_invalid=cfg.skip_invalid)
    pairs, errors = [], []
    for row in rows:
        at = f"{row['_source']}:{row['_line']}"
        if row["chosen"] == row["rejected"]:
            errors.append(f"{at}: chosen and rejected are the same text, so the pair prefers nothing")
            continue
        chosen, rejected = encode(tokenizer, row["prompt"], row["chosen"]), encode(tokenizer, row["prompt"], row["rejected"])
        if max(len(chosen), len(rejected)) > cfg.max_length:
            errors.append(f"{at}: prompt + reply is {max(len(chosen), len(rejected))} tokens, over max_length = "
                          f"{cfg.max_length}; fix: raise max_length or shorten the pair")
            continue
        pairs.append((chosen, rejected))
    report_bad(errors, "pair(s)", cfg.skip_invalid, 20)
    if not pairs:
        raise DataError(f"{source}: no usable pairs")
    return pairs


def split(cfg: RewardModelConfig, pairs: list, base_dir: str, tokenizer) -> tuple[list, list]:
    """(train, held-out): cfg.eval's pairs, or a seeded eval_fraction of ``pairs``."""
    if cfg.eval:
        return pairs, load_pairs(cfg, cfg.eval, tokenizer, base_dir)
    order = list(range(len(pairs)))
    random.Random(cfg.seed).shuffle(order)
    n_eval = round(len(pairs) * cfg.eval_fraction)
    if cfg.eval_fraction > 0 and (n_eval == 0 or n_eval == len(pairs)):
        raise DataError(f"{cfg.pairs}: {len(pairs)} pairs cannot be split with eval_fraction = {cfg.eval_fraction}; "
                        f"fix: more pairs, another eval_fraction, or a separate eval file")
    return [pairs[i] for i in order[n_eval:]], [pairs[i] for i in order[:n_eval]]


# --- training ---------------------------------------------------------------------------------


def train(cfg: RewardModelConfig, base_dir: str = ".") -> dict:
    """Train, evaluate before and after on the held-out pairs, save; the results dict."""
    from rlft.progress import Progress
    from rlft.track import Tracker

    t0 = time.time()
    out = Path(base_dir) / cfg.out
    base = _base(cfg, out, base_dir)
    tokenizer = load_tokenizer(base)
    train_pairs, eval_pairs = split(cfg, load_pairs(cfg, cfg.pairs, tokenizer, base_dir), base_dir, tokenizer)
    torch.manual_seed(cfg.seed)
    device = pick_device(cfg.device)
    pad = tokenizer.pad_token_id
    model = load_scorer(base, device, pick_dtype("auto", device), pad)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    before = pair_accuracy(model, eval_pairs, pad, device) if eval_pairs else {}
    steps_per_epoch = -(-len(train_pairs) // cfg.batch_size)
    total, step, rng = steps_per_epoch * cfg.epochs, 0, random.Random(cfg.seed)
    with Tracker(out, tensorboard=False) as tracker, Progress(total, "reward model", enabled=cfg.progress) as bar:
        for _ in range(cfg.epochs):
            order = list(range(len(train_pairs)))
            rng.shuffle(order)
            for i in range(0, len(order), cfg.batch_size):
                chunk = [train_pairs[j] for j in order[i : i + cfg.batch_size]]
                r_2B = rewards(model, [c for c, _ in chunk] + [r for _, r in chunk], pad, device)
                loss, metrics = bt_loss(r_2B[: len(chunk)], r_2B[len(chunk):])
                loss.backward()
                grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm or float("inf"))
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
                tracker.log(step, {**metrics, "grad_norm": float(grad_norm)})
                bar.update(step, metrics)
        after = pair_accuracy(model, eval_pairs, pad, device) if eval_pairs else {}
        tracker.log(step, {f"eval/{k}": v for k, v in after.items()})
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    results = {
        "base": str(base), "pairs_train": len(train_pairs), "pairs_eval": len(eval_pairs), "steps": step,
        "eval_accuracy_before": before.get("accuracy"), "eval_accuracy": after.get("accuracy"),
        "eval_loss": after.get("loss"), "eval_margin": after.get("margin"),
        "seconds": round(time.time() - t0, 1), "model": str(out), "config": asdict(cfg),
    }
    (out / RESULTS).write_text(json.dumps(results, indent=2) + "\n")
    return results


def _base(cfg: RewardModelConfig, out: Path, base_dir: str) -> str:
    if cfg.base == "tiny":
        from rlft.tasks.arithmetic import corpus

        tiny = out / "tiny-base"
        if not (tiny / "config.json").exists():
            build_tiny_model(tiny, corpus(), seed=cfg.seed)
        return str(tiny)
    local = Path(base_dir) / cfg.base
    return str(local) if local.exists() else cfg.base  # else a hub id
