"""What the RL, SFT and eval commands share: a run directory, the model, the eval set and
grader, the data order, periodic evaluation and the final save.

Everything a loop needs is built here *after* validation (config and data are checked before
any model is loaded) and handed over in one ``Run``; the loops stay about the algorithm.
"""

from __future__ import annotations

import functools
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from rlft import checkpoint
from rlft.config import Job, job_to_toml
from rlft.data import load_items
from rlft.eval import evaluate
from rlft.models import build_tiny_model, check_model_dir, encode_prompt, load_model, load_tokenizer, pick_device, pick_dtype, save_final
from rlft.rewards.graders import Grader, make_grader
from rlft.rollout.sampler import HFSampler, SamplingParams
from rlft.track import Tracker


@dataclass
class Run:
    job: Job
    out: Path
    model_path: str  # the folder (or hub id) the policy was loaded from
    device: torch.device
    model: torch.nn.Module
    tokenizer: object
    tracker: Tracker
    grader: Grader
    eval_items: list[dict]
    eval_prompts: list[list[int]]
    sampler: HFSampler
    started: float = field(default_factory=time.time)


def resolve(job: Job, path: str) -> str:
    """A path from the job file, relative to the job file's folder."""
    p = Path(path)
    return str(p if p.is_absolute() else Path(job.base_dir) / p)


def model_path(job: Job, out: Path) -> str:
    """The model folder; "tiny" builds the embedded default into the run directory."""
    if job.model.path != "tiny":
        local = Path(resolve(job, job.model.path))
        return str(local) if local.exists() else job.model.path  # else a hub id
    from rlft.tasks.arithmetic import corpus

    tiny = out / "tiny-model"
    if not (tiny / "config.json").exists():
        build_tiny_model(tiny, corpus(), seed=job.run.seed)
    return str(tiny)


def load_eval_items(job: Job) -> list[dict]:
    """The held-out set, validated before the model loads; [] when data.eval is empty."""
    if not job.data.eval:
        return []
    items = load_items(
        job.data.eval,
        required=[job.data.prompt],
        prompt_field=job.data.prompt,
        base_dir=job.base_dir,
        max_errors=job.data.max_errors,
    )
    return items[: job.eval.size or None]


def start(job: Job) -> Run:
    """Create the run directory, write the resolved config, load model and tokenizer."""
    out = Path(resolve(job, job.run.out))
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.toml").write_text(job_to_toml(job))
    grader = make_grader(job.grader, job.base_dir)
    eval_items = load_eval_items(job)
    torch.manual_seed(job.run.seed)
    device = pick_device(job.run.device)
    path = model_path(job, out)
    check_model_dir(path)
    tokenizer = load_tokenizer(path)
    lora = None if job.model.lora is None else vars(job.model.lora)
    model = load_model(path, device=device, dtype=pick_dtype(job.model.dtype, device), lora=lora)
    eval_prompts = [encode_prompt(tokenizer, it[job.data.prompt]) for it in eval_items]
    return Run(
        job, out, path, device, model, tokenizer, Tracker(out), grader, eval_items, eval_prompts,
        HFSampler(model, tokenizer),
    )


@functools.lru_cache(maxsize=4)
def _epoch_order(n: int, seed: int, epoch: int) -> tuple[int, ...]:
    perm = list(range(n))
    random.Random(seed * 1_000_003 + epoch).shuffle(perm)
    return tuple(perm)


def item_order(n: int, seed: int, position: int) -> int:
    """The item at ``position`` in an endless stream of shuffled epochs: a pure function of
    (seed, position), so resuming at a position needs no saved iterator."""
    epoch, i = divmod(position, n)
    return _epoch_order(n, seed, epoch)[i]


def step_generator(seed: int, step: int, index: int = 0) -> torch.Generator:
    """The sampling RNG of one step, derived from (seed, step, index) (STYLE.md habit 4)."""
    return torch.Generator().manual_seed((seed * 1_000_003 + step) * 101 + index)


def run_eval(run: Run, step: int) -> dict[str, float]:
    """Held-out metrics, logged as eval/*; {} when there is no eval set."""
    if not run.eval_items:
        return {}
    job = run.job
    params = SamplingParams(
        max_new_tokens=job.sampling.max_new_tokens,
        temperature=job.eval.temperature,
        top_p=job.sampling.top_p,
        top_k=job.sampling.top_k,
        stop=tuple(job.sampling.stop),
    )
    t0 = time.time()
    metrics = evaluate(
        run.sampler, run.eval_items, run.eval_prompts, run.grader, params, job.eval.samples,
        seed=job.run.seed,
    )
    metrics = {f"eval/{k}": v for k, v in metrics.items()}
    metrics["eval/seconds"] = time.time() - t0
    run.tracker.log(step, metrics)
    return metrics


def periodic(run: Run, step: int, state: dict, optimizer, scheduler) -> dict[str, float]:
    """After each step: evaluate and checkpoint when their intervals say so."""
    job, metrics = run.job, {}
    if job.eval.every and step % job.eval.every == 0 and step < job.optim.steps:
        metrics = run_eval(run, step)
    if job.run.checkpoint_every and step % job.run.checkpoint_every == 0:
        checkpoint.save(run.out, step, run.model, optimizer, scheduler, state)
    return metrics


def finish(run: Run, step: int, summary: dict) -> dict:
    """Final evaluation, the model in Hugging Face format under final/, a summary.json."""
    summary = {**summary, **run_eval(run, step)}
    save_final(run.model, run.tokenizer, run.out / "final")
    summary["wall_seconds"] = time.time() - run.started
    summary["final_model"] = str(run.out / "final")
    checkpoint.write_json(run.out / "summary.json", summary)
    run.tracker.close()
    return summary
