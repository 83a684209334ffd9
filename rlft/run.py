"""What the RL, SFT and eval commands share: a run directory, the model, the eval set and
grader, the data order, periodic evaluation and the final save.

Everything a loop needs is built here *after* validation (config and data are checked before
any model is loaded) and handed over in one ``Run``; the loops stay about the algorithm.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import random
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from rlft import checkpoint
from rlft.config import ConfigError, Job, job_to_toml
from rlft.context import check_context
from rlft.data import load_items
from rlft.eval import evaluate
from rlft.models import build_tiny_model, check_model_dir, encode_prompt, load_model, load_tokenizer, pick_device, pick_dtype, save_final
from rlft.progress import SIGNAL_WINDOW, no_signal_warning, signal_counts
from rlft.rewards.graders import Grader, make_grader
from rlft.rewards.monitor import make_monitors
from rlft.rollout.sampler import HFSampler, SamplingParams
from rlft.track import Tracker, rss_mb


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
    resume_from: Path | None = None  # the verified checkpoint this run continues, if any
    resume_state: dict = field(default_factory=dict)
    checked: Any = None  # what start's ``check`` returned
    fingerprint: dict = field(default_factory=dict)  # the job's result-deciding settings, saved with checkpoints
    env_eval: Callable | None = None  # (sampler, params, seed) -> metrics: a world's or game's held-out eval
    skips_in_a_row: int = 0
    skips_total: int = 0
    errored_window: list = field(default_factory=list)  # (errored, attempts) of recent steps
    signal_window: list = field(default_factory=list)  # (groups without signal, all passed, groups) of recent steps
    interrupts: Interrupts = field(default_factory=lambda: Interrupts())
    started: float = field(default_factory=time.time)


class RunStopped(RuntimeError):
    """The run stopped early on purpose (an interrupt, repeated non-finite updates) after saving
    a checkpoint; the message says where it stands and how to go on."""

    def __init__(self, message: str, exit_code: int = 3):
        super().__init__(message)
        self.exit_code = exit_code


class Interrupts:
    """Within ``with``: the first Ctrl-C (or SIGTERM) asks the loop to finish its step, save a
    checkpoint and stop; a second one stops at once (KeyboardInterrupt)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.requested: str | None = None
        self._previous: dict = {}

    def _on_signal(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = signal.Signals(signum).name
        print(f"\nrlft: {self.requested}: finishing this step and saving a checkpoint; "
              f"press Ctrl-C again to stop at once", file=sys.stderr)

    def __enter__(self) -> "Interrupts":
        if threading.current_thread() is threading.main_thread():  # signals reach only the main thread
            self._previous = {s: signal.signal(s, self._on_signal) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc: object) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous = {}


# Settings that do not change what a run computes: a resume may change these freely. Keys are
# flattened paths; a judge's operational settings count wherever the judge sits (multi graders).
NOT_RESULT = {"data.eval", "data.eval_size", "data.max_errors", "world.eval_split", "game.opponents", "game.eval_games"}
NOT_RESULT_JUDGE = {"api_key_env", "max_concurrency", "timeout", "max_retries", "backoff", "price_input",
                    "price_output", "cache", "disk_cache", "device"}
RESULT_SECTIONS = ("model", "data", "grader", "world", "game", "algorithm", "sampling", "optim")


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, dict) and value:
        for k, v in value.items():
            _flatten(f"{prefix}.{k}", v, out)
        return
    parts = prefix.split(".")
    if prefix in NOT_RESULT or (len(parts) > 2 and parts[-2] == "judge" and parts[-1] in NOT_RESULT_JUDGE):
        return
    out[prefix] = value


def fingerprint(job: Job) -> dict[str, Any]:
    """The settings that decide a run's result, flattened (``"optim.lr": 0.0001``), plus the
    seed and the SHA-256 of a local training file, as JSON values. ``optim.steps`` only counts
    when the learning-rate schedule depends on it."""
    out: dict[str, Any] = {"run.seed": job.run.seed}
    for section in RESULT_SECTIONS:
        _flatten(section, dataclasses.asdict(getattr(job, section)), out)
    if job.optim.schedule == "constant":  # the learning rate does not depend on the step count:
        del out["optim.steps"]  # running a finished run longer gives what a longer run would
    train = Path(resolve(job, job.data.train)) if job.data.train else None
    if train is not None and train.is_file():
        out["data.train_sha256"] = checkpoint.sha256(train)
    return json.loads(json.dumps(out))


def _default_fingerprint() -> dict[str, Any]:
    """The result-deciding settings of a job with every field at its default."""
    return {k: v for k, v in fingerprint(Job()).items() if k != "run.seed"}


def check_resume(job: Job, out: Path, now: dict[str, Any] | None = None) -> tuple[Path | None, dict]:
    """The newest complete checkpoint under ``out`` and its state, or (None, {}). Refuses (a
    ConfigError listing each change) when it was made with settings other than ``now`` (the job's
    ``fingerprint``) that change the result, unless ``run.force_resume``."""
    path = checkpoint.latest(out)
    if path is None:
        return None, {}
    state = checkpoint.read_state(path)
    saved, now = state.get("fingerprint", {}), fingerprint(job) if now is None else now
    # a setting added to rlft after the checkpoint was made counts as its default there
    saved = {**{k: v for k, v in _default_fingerprint().items() if k in now}, **saved}
    changed = [f"  {k}: {saved.get(k, '(unset)')!r} -> {now.get(k, '(unset)')!r}"
               for k in sorted(set(saved) | set(now)) if saved.get(k) != now.get(k)]
    if changed and not job.run.force_resume:
        raise ConfigError(
            f"{out} holds a checkpoint ({path.name}) made with other settings, and these change the result, "
            "so resuming would mix two runs:\n" + "\n".join(changed) + "\n"
            "fix: restore those settings, or choose a new run.out, or set run.force_resume=true to resume anyway"
        )
    if changed:
        print(f"rlft: resuming {path} with changed settings (run.force_resume):\n" + "\n".join(changed),
              file=sys.stderr)
    return path, state


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
        role="eval",  # a generated source (reasoning_gym:NAME) defaults to items disjoint from train's
    )
    return items[: job.eval.size or None]


def make_run_dir(out: Path, writable: bool) -> None:
    """``run.out`` as a folder (made if new) that a training run can write, or one line saying why not."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"run.out = {str(out)!r} is a file, not a folder; fix: set run.out to a new folder or a run's folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        if writable:
            probe = out / f".rlft-write-check-{os.getpid()}"
            probe.touch()
            probe.unlink()
    except OSError as e:
        raise ConfigError(f"run.out = {str(out)!r}: cannot write there ({e.strerror}); "
                          f"fix: set run.out to a folder you can write") from None


def start(job: Job, training: bool = True, check: Callable[[Any], Any] | None = None) -> Run:
    """Create the run directory, find the checkpoint to resume from (``training``), write the
    resolved config, load the tokenizer, run ``check(tokenizer)`` (data checks that need it, so
    they fail before the model loads; its result, ``run.checked``, is (items, prompt ids or SFT
    demonstrations)), check those and the eval prompts fit the model's context, load the model."""
    out = Path(resolve(job, job.run.out))
    make_run_dir(out, training)
    settings = fingerprint(job) if training else {}  # hashes the training file: once per run
    resume_from, state = check_resume(job, out, settings) if training else (None, {})
    if training:  # eval reads a run's folder; it must not overwrite that run's config
        (out / "config.toml").write_text(job_to_toml(job))
    grader = make_grader(job.grader, job.base_dir)
    if hasattr(grader, "use_run_dir"):  # an AI judge's disk cache (judge.disk_cache) lives in the run folder
        grader.use_run_dir(out)
    eval_items = load_eval_items(job)
    torch.manual_seed(job.run.seed)
    device = pick_device(job.run.device)
    path = model_path(job, out)
    check_model_dir(path)
    tokenizer = load_tokenizer(path)
    checked = check(tokenizer) if check is not None else None
    eval_prompts = [encode_prompt(tokenizer, it[job.data.prompt]) for it in eval_items]
    trained = checked or ([], [])  # check's (items, prompt ids or SFT demonstrations)
    check_context(job, path, [*eval_items, *trained[0]], [*eval_prompts, *trained[1]])
    lora = None if job.model.lora is None else vars(job.model.lora)
    model = load_model(path, device=device, dtype=pick_dtype(job.model.dtype, device), lora=lora)
    # training: logs cut back to where the checkpoint left them (or emptied); a finished run run
    # again: appended to; eval (never in a training run's folder, rlft.cli.eval_out): emptied
    tracker = Tracker(out, resume=None if training and finished(job, out, state) else state.get("tracker", {}))
    return Run(
        job, out, path, device, model, tokenizer, tracker, grader, eval_items, eval_prompts,
        HFSampler(model, tokenizer), resume_from, state, checked, fingerprint=settings,
    )


def finished(job: Job, out: Path, state: dict) -> bool:
    """Whether the checkpoint ``state`` is the end of a run that completed (summary written)."""
    return state.get("step") == job.optim.steps and (out / "summary.json").exists()


def resume(run: Run, optimizer, scheduler) -> dict:
    """Restore the checkpoint ``start`` chose into model, optimizer, scheduler and RNG; its
    state ({} for a fresh run)."""
    if run.resume_from is None:
        return {}
    state = checkpoint.load(run.resume_from, run.model, optimizer, scheduler)
    run.skips_in_a_row, run.skips_total = state.get("skips_in_a_row", 0), state.get("skips_total", 0)
    run.errored_window = [tuple(x) for x in state.get("errored_window", [])]
    run.signal_window = [tuple(x) for x in state.get("signal_window", [])]
    return state


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
    """Held-out metrics, logged as eval/*; {} when there is no eval set (nor an env_eval)."""
    if not run.eval_items and run.env_eval is None:
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
    metrics = run.env_eval(run.sampler, params, job.run.seed) if run.env_eval is not None else evaluate(
        run.sampler, run.eval_items, run.eval_prompts, run.grader, params, job.eval.samples,
        seed=job.run.seed, monitors=make_monitors(job.grader, job.base_dir), prompt_field=job.data.prompt,
        log=lambda rows: run.tracker.log_eval_samples(step, rows),  # eval_samples.jsonl: one line per attempt
    )
    metrics = {f"eval/{k}": v for k, v in metrics.items()}
    metrics["eval/seconds"] = time.time() - t0
    run.tracker.log(step, metrics)
    return metrics


def save_checkpoint(run: Run, step: int, state: dict, optimizer, scheduler) -> Path:
    state = {
        **state, "fingerprint": run.fingerprint, "tracker": run.tracker.offsets(step),
        "skips_in_a_row": run.skips_in_a_row, "skips_total": run.skips_total, "errored_window": run.errored_window,
        "signal_window": run.signal_window,
    }
    return checkpoint.save(run.out, step, run.model, optimizer, scheduler, state, keep=run.job.run.keep_checkpoints)


def after_step(run: Run, step: int, metrics: dict, samples: list[dict], state: dict, optimizer, scheduler,
               sample_ids: list[str]) -> dict[str, float]:
    """After each step: count skipped updates, log, evaluate and checkpoint when their intervals
    say so, and stop (with a checkpoint) on an interrupt or too many skipped updates in a row."""
    job = run.job
    skipped = bool(metrics.get("skipped_update"))
    run.skips_in_a_row = run.skips_in_a_row + 1 if skipped else 0
    run.skips_total += skipped
    metrics["skipped_updates"] = float(run.skips_total)
    if (rss := rss_mb()) is not None:
        metrics["memory/rss_mb"] = rss
    if (counts := signal_counts(metrics)) is not None:  # RL steps: for the summary's no-signal warning
        run.signal_window = [*run.signal_window, counts][-SIGNAL_WINDOW:]
    run.tracker.log(step, metrics)
    run.tracker.log_samples(step, samples)
    errored = errored_fraction(run, metrics)
    if job.eval.every and step % job.eval.every == 0 and step < job.optim.steps:
        metrics = {**metrics, **run_eval(run, step)}
    too_many = job.optim.max_skipped_updates and run.skips_in_a_row >= job.optim.max_skipped_updates
    grader_broken = errored > job.run.max_errored_fraction
    if (job.run.checkpoint_every and step % job.run.checkpoint_every == 0) or too_many or grader_broken \
            or run.interrupts.requested:
        path = save_checkpoint(run, step, state, optimizer, scheduler)
        if grader_broken:
            attempts = sum(a for _, a in run.errored_window)
            classes = ", ".join(f"{k.split('/', 1)[1]} {int(v)}" for k, v in metrics.items() if k.startswith("errored/"))
            raise RunStopped(
                f"stopped at step {step}: {errored:.0%} of the last {attempts} attempts errored (the grader raised, "
                f"timed out or returned a non-number), over run.max_errored_fraction = {job.run.max_errored_fraction}; "
                f"this step's errors by class: {classes or 'none'}; each errored attempt is in samples.jsonl with "
                f"its sample_id and error; checkpoint: {path}. Fix the grader (rlft check-grader JOB.toml helps), or "
                f"raise run.max_errored_fraction"
            )
        if too_many:
            shown = ", ".join(sample_ids[:8]) + (f" and {len(sample_ids) - 8} more" if len(sample_ids) > 8 else "")
            raise RunStopped(
                f"stopped at step {step}: {run.skips_in_a_row} updates in a row were skipped because the loss or "
                f"gradient norm was not finite (loss {metrics.get('loss')}, grad_norm {metrics.get('grad_norm')}); "
                f"the last batch's samples: {shown}; checkpoint to debug from: {path}. Fix: lower optim.lr or "
                f"check those samples and the grader; optim.max_skipped_updates sets the limit (0 = never stop)"
            )
        if run.interrupts.requested:
            raise RunStopped(
                f"stopped by {run.interrupts.requested} after step {step}; checkpoint saved at {path}; "
                f"run the same command again to resume", exit_code=130,
            )
    return metrics


def errored_fraction(run: Run, metrics: dict) -> float:
    """Errored attempts over the last ``run.errored_window`` steps that sampled any (0 for SFT)."""
    if "attempts" not in metrics:
        return 0.0
    run.errored_window.append((int(metrics.get("errored", 0)), int(metrics["attempts"])))
    del run.errored_window[: -run.job.run.errored_window]
    attempts = sum(a for _, a in run.errored_window)
    return sum(e for e, _ in run.errored_window) / attempts if attempts else 0.0


def finish(run: Run, step: int, summary: dict, state: dict, optimizer, scheduler) -> dict:
    """A checkpoint of the last step, the final evaluation, the model in Hugging Face format
    under final/, a summary.json. Rerunning a finished run returns its summary."""
    if finished(run.job, run.out, run.resume_state):
        run.tracker.close()
        return json.loads((run.out / "summary.json").read_text())
    if not (run.out / "checkpoints" / f"step_{step}" / checkpoint.MANIFEST).exists():
        save_checkpoint(run, step, state, optimizer, scheduler)
    summary = {**summary, **run_eval(run, step)}
    if warning := no_signal_warning(run.signal_window, min_steps=1):  # RL that trained (next to) nothing
        summary["warning"] = warning
        print(f"rlft: warning: {warning}", file=sys.stderr)
    save_final(run.model, run.tokenizer, run.out / "final")
    summary["wall_seconds"] = time.time() - run.started
    summary["final_model"] = str(run.out / "final")
    checkpoint.write_json(run.out / "summary.json", summary)
    run.tracker.close()
    return summary
