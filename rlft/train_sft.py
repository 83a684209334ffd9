"""Supervised fine-tuning: imitation on the RL loss machinery.

Next-token prediction is RL with one-token episodes: a demonstration's reply tokens are
"sampled" by the demonstrator (``sampled_mask`` = 1), every one gets advantage 1, and the
policy-gradient loss ``-adv·logp`` is then exactly the negative log-likelihood. So this loop is
DESIGN.md §4 steps 6, 8, 9 and 11 of the RL loop, fed with demonstrations instead of attempts.
"""

from __future__ import annotations

from rlft.config import Job
from rlft.data import DataError, collate, load_items, report_bad
from rlft.learner import LossSettings, make_optimizer, update
from rlft.models import encode_completion, encode_prompt
from rlft.progress import Progress
from rlft.run import after_step, finish, item_order, resume, start
from rlft.types import Trajectory


def demonstrations(job: Job, items: list[dict], tokenizer) -> tuple[list[dict], list[Trajectory]]:
    """The items and one trajectory per demonstration: prompt tokens masked out, reply tokens
    trained. One longer than model.max_length is an error (or skipped, data.skip_invalid)."""
    kept, out, errors = [], [], []
    for item in items:
        prompt_T = encode_prompt(tokenizer, item[job.data.prompt])
        reply_T = encode_completion(tokenizer, item[job.data.completion])
        if len(prompt_T) + len(reply_T) > job.model.max_length:
            errors.append(
                f"{item['_source']}:{item['_line']}: prompt + completion is "
                f"{len(prompt_T) + len(reply_T)} tokens, over model.max_length = {job.model.max_length}"
            )
            continue
        kept.append(item)
        out.append(
            Trajectory(
                tokens_T=prompt_T + reply_T,
                sampled_mask_T=[0] * len(prompt_T) + [1] * len(reply_T),
                sampler_logp_T=[0.0] * (len(prompt_T) + len(reply_T)),
                reward=1.0,
                text=tokenizer.decode(reply_T, skip_special_tokens=True),
            )
        )
    report_bad(errors, "demonstration(s)", job.data.skip_invalid, job.data.max_errors)
    if not out:
        raise DataError(f"{job.data.train}: no demonstration fits model.max_length = {job.model.max_length}")
    return kept, out


def train(job: Job) -> dict:
    items = load_items(
        job.data.train,
        prompt_field=job.data.prompt,
        text_fields=[job.data.completion],
        base_dir=job.base_dir,
        max_errors=job.data.max_errors,
        skip_invalid=job.data.skip_invalid,
    )
    # demonstrations are checked against the tokenizer before the model loads
    run = start(job, check=lambda tokenizer: demonstrations(job, items, tokenizer))
    items, examples = run.checked
    optimizer, scheduler = make_optimizer(run.model, job.optim)
    first = resume(run, optimizer, scheduler).get("step", 0)
    loss = LossSettings(logp_gap=False)  # advantage 1, on-policy form: the NLL; no sampler to compare with
    bs = job.optim.batch_size
    with run.interrupts, Progress(job.optim.steps, "sft", enabled=job.run.progress, start=first) as bar:
        for step in range(first + 1, job.optim.steps + 1):
            idx = [item_order(len(examples), job.run.seed, pos) for pos in range((step - 1) * bs, step * bs)]
            batch = collate([examples[i] for i in idx], [1.0] * bs, run.tokenizer.pad_token_id)
            metrics = update(run.model, optimizer, batch, loss, job.optim)
            scheduler.step()
            metrics["tokens"] = float(batch.loss_mask_BT.sum())
            metrics["epoch"] = step * bs / len(examples)
            ids = [f"{items[i]['_source']}:{items[i]['_line']}" for i in idx]
            metrics = after_step(run, step, metrics, [], {"data_position": step * bs}, optimizer, scheduler, ids)
            bar.update(step, metrics)
    summary = {"kind": "sft", "steps": job.optim.steps, "examples": len(examples)}
    state = {"data_position": job.optim.steps * bs}
    return finish(run, job.optim.steps, summary, state, optimizer, scheduler)
