"""rlft vs TRL's GRPOTrainer: the same tiny model, task and work per step, side by side.

    python benchmarks/bench_vs_trl.py [--steps N] [--out DIR]

1. Prepare (once, cached in DIR/work): 2-digit addition data (rlft.tasks.arithmetic), the rlft tiny
   Llama sized to ~3.1M parameters, and a short rlft SFT run on the carry-forgetting demonstrator so
   the model starts from sensible but flawed answers. Its greedy accuracy on 100 held-out problems
   is the starting point.
2. Measure the machine's fp32 matmul FLOP/s (1024x1024 @ 1024x1024, median of repeats).
3. In two separate subprocesses (``--only rlft`` / ``--only trl``), RL from that same saved folder
   with the same work per step: 4 prompts x 8 samples, <= 12 new tokens, temperature 1, one
   optimizer update per batch, lr 1e-4 constant, no KL / reference model, fp32 on CPU, 2 threads,
   exact-match reward. Every ``--eval-every`` steps (outside the timed step) both are scored with
   the *same* evaluator (rlft's greedy evaluate on the 100 held-out problems).
4. A table: median s/step (steps after the first), steps, training wall, fraction of matmul FLOP/s,
   steps/seconds to reach start accuracy + ``--gain`` points, final held-out accuracy; the ratio
   TRL/rlft; all of it as JSON in DIR/results.json.

TRL is only needed by this script (``pip install trl``); without it, rlft's numbers are still printed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path



def _from_argv(flag: str, default, kind=int):
    """A flag's value read before argparse runs (module settings shared with the child processes)."""
    argv = sys.argv[1:]
    for i, a in enumerate(argv):
        if a == flag and i + 1 < len(argv):
            return kind(argv[i + 1])
        if a.startswith(flag + "="):
            return kind(a.split("=", 1)[1])
    return default


# Each trainer runs on THREADS torch threads (2 by default); set before torch is imported.
THREADS = _from_argv("--threads", 2)
os.environ["OMP_NUM_THREADS"] = str(THREADS)
os.environ["MKL_NUM_THREADS"] = str(THREADS)
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
from bench_report import compare_seeds, print_table, summarise  # noqa: E402  (beside this script)

# --- the shared setting -----------------------------------------------------------------------

SEED = 0
DIGITS = 2
N_TRAIN, N_HELDOUT_POOL, N_HELDOUT = 5000, 200, 100
FORGET = 0.6
MODEL = dict(  # ~3.1M parameters with the 320-token tokenizer (embeddings tied)
    hidden_size=256,
    intermediate_size=640,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=4,
)
SFT = dict(steps=1200, batch_size=64, lr=3e-3, warmup_steps=50, schedule="linear")
P, G = 4, 8  # prompts per step, samples per prompt -> 32 completions per optimizer step
# --worked: the quickstart's format (worked columns, then "answer N"), which a small model learns in a
# few hundred SFT steps, so that time to accuracy can be compared; it needs 26 new tokens, not 12.
WORKED = "--worked" in sys.argv[1:]
MAX_NEW_TOKENS = 26 if WORKED else 12
GRADER = "numeric" if WORKED else "exact"  # numeric: the last number in the reply
TEMPERATURE = 1.0
LR = _from_argv("--lr", 2e-4, float)
MAX_GRAD_NORM = 1.0


def log(msg: str) -> None:
    print(msg, flush=True)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# --- 1. data, model, SFT ----------------------------------------------------------------------


def prepare(work: Path, sft_steps: int, fresh: bool) -> dict:
    """Data + tiny model + SFT, cached under ``work`` (rebuilt when the settings change)."""
    from rlft import train_sft
    from rlft.config import load_job
    from rlft.models import build_tiny_model
    from rlft.tasks import arithmetic
    from rlft.tasks.quickstart import write_jsonl

    settings = {"seed": SEED, "digits": DIGITS, "n_train": N_TRAIN, "forget": FORGET, "model": MODEL,
                "sft": {**SFT, "steps": sft_steps}, "max_new_tokens": MAX_NEW_TOKENS, "worked": WORKED}
    marker = work / "prepared.json"
    if not fresh and marker.exists():
        prev = json.loads(marker.read_text())
        if prev["settings"] == settings and Path(prev["model_dir"], "config.json").exists():
            log(f"[prep] reusing {prev['model_dir']} (delete {work} or pass --fresh to rebuild)")
            return prev
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    train, pool = arithmetic.make_splits(DIGITS, N_TRAIN, N_HELDOUT_POOL, SEED, forget=FORGET)
    if not WORKED:  # answers only (no worked columns), so that 12 new tokens suffice, as the comparison asks
        train = [{**it, "completion": arithmetic.final_answer(it["completion"])} for it in train]
    write_jsonl(work / "train.jsonl", train)
    write_jsonl(work / "heldout.jsonl", pool[:N_HELDOUT])
    init = build_tiny_model(work / "init-model", arithmetic.corpus(), seed=SEED, **MODEL)
    (work / "sft.toml").write_text(f"""# written by benchmarks/bench_vs_trl.py
[model]
path = "{init}"
dtype = "float32"

[data]
train = "train.jsonl"
eval = "heldout.jsonl"

[grader]
type = "{GRADER}"
reference = "answer"

[sampling]
max_new_tokens = {MAX_NEW_TOKENS}

[optim]
lr = {SFT['lr']}
steps = {sft_steps}
batch_size = {SFT['batch_size']}
warmup_steps = {SFT['warmup_steps']}
schedule = "{SFT['schedule']}"

[eval]
every = 0

[run]
seed = {SEED}
device = "cpu"
progress = false
log_samples = 0
out = "sft"
""")
    log(f"[prep] SFT of the tiny model: {sft_steps} steps x {SFT['batch_size']} demonstrations ...")
    summary = train_sft.train(load_job(work / "sft.toml"))
    prep = {
        "settings": settings,
        "model_dir": summary["final_model"],
        "start_accuracy": summary["eval/pass@1"],
        "prep_seconds": time.perf_counter() - t0,
    }
    marker.write_text(json.dumps(prep, indent=2) + "\n")
    log(f"[prep] done in {prep['prep_seconds']:.0f} s; held-out greedy accuracy after SFT "
        f"{prep['start_accuracy']:.0%}")
    return prep


# --- 2. machine peak --------------------------------------------------------------------------


def matmul_flops(n: int = 1024, reps: int = 30) -> float:
    """Median fp32 FLOP/s of an n x n @ n x n matmul on THREADS threads."""
    torch.set_num_threads(THREADS)
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(5):
        a @ b
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t)
    return 2 * n**3 / statistics.median(times)


# --- the common evaluator ---------------------------------------------------------------------


def make_evaluator(heldout: list[dict], tokenizer):
    """Greedy held-out accuracy with rlft's own evaluator, for both trainers alike."""
    from rlft.config import GraderConfig
    from rlft.eval import evaluate
    from rlft.models import encode_prompt
    from rlft.rewards.graders import make_grader
    from rlft.rollout.sampler import HFSampler, SamplingParams

    grader = make_grader(GraderConfig(type=GRADER, reference="answer"), ".")
    prompts = [encode_prompt(tokenizer, it["prompt"]) for it in heldout]
    params = SamplingParams(MAX_NEW_TOKENS, 0.0, 1.0, 0, ())

    def accuracy(model) -> float:
        return evaluate(HFSampler(model, tokenizer), heldout, prompts, grader, params, 1, seed=SEED)["pass@1"]

    return accuracy


# --- 3a. rlft ---------------------------------------------------------------------------------


def run_rlft(work: Path, model_dir: str, steps: int, eval_every: int, seed: int) -> dict:
    from rlft import train_rl
    from rlft.config import load_job

    torch.set_num_threads(THREADS)
    job = work / "rl_rlft.toml"
    job.write_text(f"""# written by benchmarks/bench_vs_trl.py
[model]
path = "{model_dir}"
dtype = "float32"

[data]
train = "train.jsonl"
eval = "heldout.jsonl"

[grader]
type = "{GRADER}"
reference = "answer"

[algorithm]
name = "grpo"
prompts_per_step = {P}
group_size = {G}
kl_coef = 0.0
updates_per_batch = 1
aggregation = "token_mean"
drop_zero_advantage = false  # TRL trains on all 32 completions; so does rlft here

[sampling]
max_new_tokens = {MAX_NEW_TOKENS}
temperature = {TEMPERATURE}

[optim]
lr = {LR}
steps = {steps}
warmup_steps = 0
max_grad_norm = {MAX_GRAD_NORM}

[eval]
every = {eval_every}

[run]
seed = {seed}
device = "cpu"
checkpoint_every = 0
log_samples = 0
progress = false
out = "rl_rlft"
""")
    out = work / "rl_rlft"
    if out.exists():  # a fresh run, not a resume from an older checkpoint
        import shutil

        shutil.rmtree(out)
    t0 = time.perf_counter()
    summary = train_rl.train(load_job(job))
    wall = time.perf_counter() - t0
    rows = read_jsonl(out / "metrics.jsonl")
    by_step: dict[int, dict] = {}
    for r in rows:
        by_step.setdefault(r["step"], {}).update(r)
    step_s = [by_step[s]["time/step"] for s in range(1, steps + 1)]
    tokens = [round(by_step[s]["completion_len_mean"] * P * G) for s in range(1, steps + 1)]
    evals = [(s, by_step[s]["eval/pass@1"]) for s in sorted(by_step) if "eval/pass@1" in by_step[s]]
    return {"step_seconds": step_s, "completion_tokens": tokens, "evals": evals,
            "final_accuracy": summary["eval/pass@1"], "process_wall": wall}


# --- 3b. TRL ----------------------------------------------------------------------------------


def run_trl(work: Path, model_dir: str, steps: int, eval_every: int, seed: int) -> dict:
    import trl
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    torch.set_num_threads(THREADS)
    t0 = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    train = read_jsonl(work / "train.jsonl")
    dataset = Dataset.from_list(
        [{"prompt": [{"role": "user", "content": it["prompt"]}], "answer": it["answer"]} for it in train]
    )
    accuracy = make_evaluator(read_jsonl(work / "heldout.jsonl"), tokenizer)
    tokens_per_call: list[int] = []

    from rlft.rewards.graders import parse_last_number

    def exact_match(completions, answer, completion_ids=None, **_) -> list[float]:
        """rlft's "exact" grader with normalize = ["strip"] (with --worked: its "numeric" grader)."""
        if completion_ids is not None:
            tokens_per_call.append(sum(len(ids) for ids in completion_ids))
        if WORKED:
            return [float(parse_last_number(c[0]["content"]) == float(a)) for c, a in zip(completions, answer)]
        return [float(c[0]["content"].strip() == a.strip()) for c, a in zip(completions, answer)]

    class Timer(TrainerCallback):
        def __init__(self):
            self.step_s: list[float] = []
            self.evals: list[tuple[int, float]] = []
            self._t = 0.0

        def on_step_begin(self, args, state, control, **kw):
            self._t = time.perf_counter()

        def on_step_end(self, args, state, control, model=None, **kw):
            self.step_s.append(time.perf_counter() - self._t)  # before the (untimed) evaluation
            s = state.global_step
            if (eval_every and s % eval_every == 0) or s == steps:
                self.evals.append((s, accuracy(model)))

    config = GRPOConfig(
        output_dir=str(work / "rl_trl"),
        # one optimizer step = one generation batch of P prompts x G samples
        per_device_train_batch_size=P * G,
        generation_batch_size=P * G,
        num_generations=G,
        gradient_accumulation_steps=1,
        num_iterations=1,
        max_steps=steps,
        max_completion_length=MAX_NEW_TOKENS,
        temperature=TEMPERATURE,
        top_p=1.0,
        top_k=0,
        # the same objective as rlft's grpo + token_mean: group-normalised advantages, DAPO token mean
        loss_type="dapo",
        scale_rewards="group",
        beta=0.0,
        learning_rate=LR,
        lr_scheduler_type="constant",
        warmup_steps=0,
        weight_decay=0.0,
        max_grad_norm=MAX_GRAD_NORM,
        optim="adamw_torch",
        # fp32 on CPU, plain transformers generation
        use_cpu=True,
        bf16=False,
        fp16=False,
        gradient_checkpointing=False,
        use_vllm=False,
        # no logging / checkpoints / eval inside the trainer
        logging_strategy="no",
        report_to="none",
        save_strategy="no",
        eval_strategy="no",
        disable_tqdm=True,
        log_completions=False,
        dataloader_num_workers=0,
        seed=seed,
    )
    timer = Timer()
    trainer = GRPOTrainer(
        model=model, reward_funcs=exact_match, args=config, train_dataset=dataset,
        processing_class=tokenizer, callbacks=[timer],
    )
    assert trainer.ref_model is None if hasattr(trainer, "ref_model") else True
    trainer.train()
    wall = time.perf_counter() - t0
    return {"step_seconds": timer.step_s, "completion_tokens": tokens_per_call, "evals": timer.evals,
            "final_accuracy": timer.evals[-1][1], "process_wall": wall, "trl_version": trl.__version__}


def run_child(name: str, seed: int, args, out: Path) -> dict:
    """One trainer, one seed, in its own subprocess; its results dict (or {"error": ...})."""
    if name == "trl":
        import importlib.util

        if importlib.util.find_spec("trl") is None:
            log("[trl] TRL is not installed (pip install trl); only rlft's numbers are shown")
            return {"error": "not installed"}
    log(f"[{name} seed {seed}] {args.steps} RL steps in a subprocess ...")
    res_file, logfile = out / f"{name}.json", out / f"{name}-s{seed}.log"
    res_file.unlink(missing_ok=True)
    t = time.perf_counter()
    with logfile.open("w") as fh:
        proc = subprocess.run(  # noqa: PLW1510 (the exit code is checked below)
            [sys.executable, __file__, "--only", name, "--seeds", str(seed), "--steps", str(args.steps),
             "--out", str(out), "--eval-every", str(args.eval_every), "--threads", str(THREADS), "--lr", str(LR)]
            + ["--worked"] * WORKED,
            stdout=fh, stderr=subprocess.STDOUT,
        )
    if proc.returncode != 0 or not res_file.exists():
        tail = "\n".join(logfile.read_text().splitlines()[-15:])
        log(f"[{name}] failed (exit {proc.returncode}); last lines of {logfile}:\n{tail}")
        return {"error": f"failed (exit {proc.returncode}), see {logfile.name}"}
    result = json.loads(res_file.read_text())
    log(f"[{name}] {result['error']}" if "error" in result else f"[{name}] done in {time.perf_counter() - t:.0f} s")
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=20, help="RL steps per trainer (default 20)")
    ap.add_argument("--seeds", type=int, default=1, help="RL seeds 0..N-1, each trainer once per seed, "
                    "interleaved so both see the same machine load (default 1)")
    ap.add_argument("--out", default="runs/bench_vs_trl", help="output folder: results.json, logs, work/ (default runs/bench_vs_trl)")
    ap.add_argument("--only", choices=["rlft", "trl"], help="run one trainer in this process, seed --seeds (used internally)")
    ap.add_argument("--eval-every", type=int, default=5, help="held-out eval every N steps (untimed)")
    ap.add_argument("--gain", type=float, default=0.10, help="accuracy gain over the start for time-to-accuracy")
    ap.add_argument("--sft-steps", type=int, default=SFT["steps"], help="SFT steps of the preparation")
    ap.add_argument("--threads", type=int, default=THREADS, help="torch threads for every phase (default 2)")
    ap.add_argument("--lr", type=float, default=LR, help="RL learning rate for both trainers (default 2e-4)")
    ap.add_argument("--fresh", action="store_true", help="rebuild data, model and SFT even if cached")
    ap.add_argument("--worked", action="store_true", help="the quickstart's worked-column format (26 new tokens), "
                    "which SFT learns quickly, for a time-to-accuracy comparison")
    args = ap.parse_args(argv)
    out = Path(args.out).resolve()
    work = out / "work"
    torch.set_num_threads(THREADS)

    if args.only:  # child: one trainer and seed; its results go to OUT/NAME.json
        prep = json.loads((work / "prepared.json").read_text())
        runner = run_rlft if args.only == "rlft" else run_trl
        try:
            result = runner(work, prep["model_dir"], args.steps, args.eval_every, args.seeds)
        except ImportError as e:
            result = {"error": f"import failed: {e}"}
        (out / f"{args.only}.json").write_text(json.dumps(result, indent=2) + "\n")
        return 0

    t_all = time.perf_counter()
    load_before = os.getloadavg()[0]
    if load_before > 0.5:
        log(f"[machine] warning: load average {load_before:.1f} before starting; other processes share the "
            f"CPU cores and the timings will be slower and noisier than on an idle machine")
    prep = prepare(work, args.sft_steps, args.fresh)
    from transformers import AutoModelForCausalLM

    params = sum(p.numel() for p in AutoModelForCausalLM.from_pretrained(prep["model_dir"]).parameters())
    peak = matmul_flops()
    log(f"[machine] fp32 matmul 1024^3 on {THREADS} threads: {peak / 1e9:.1f} GFLOP/s (median)")
    log(f"[model] {params / 1e6:.2f}M parameters; start held-out accuracy {prep['start_accuracy']:.0%}")

    raw: dict[str, list[dict]] = {"rlft": [], "trl": []}
    for seed in range(args.seeds):
        for name in raw:
            raw[name].append(run_child(name, seed, args, out))
    start = prep["start_accuracy"]
    summary = {n: [r if "error" in r else {**summarise(r, params, peak, start, args.gain), "raw": r} for r in rs]
               for n, rs in raw.items()}
    print()
    print(f"rlft vs TRL GRPOTrainer: {DIGITS}-digit addition, {params / 1e6:.2f}M-param Llama, fp32 CPU, "
          f"{THREADS} threads; {P} prompts x {G} samples/step, <= {MAX_NEW_TOKENS} new tokens, lr {LR:g}")
    print(f"start (after SFT) held-out greedy accuracy on {N_HELDOUT} problems: {start:.0%}; "
          f"machine fp32 matmul peak {peak / 1e9:.1f} GFLOP/s")
    print()
    print_table({f"{n} seed {i}": s for i in range(args.seeds) for n, ss in summary.items() for s in ss[i:i + 1]},
                start, args.gain, args.steps)
    print()
    comparison = compare_seeds(summary, start + args.gain)
    print("FLOP/s frac = 8 * params * completion tokens per step / step time / matmul peak "
          "(6N per trained token + 2N per generated token; prompt tokens not counted)")
    print(f"s/step and train wall exclude evaluation (every {args.eval_every} steps, greedy, untimed); "
          f"held-out accuracy by the same evaluator for both")
    results = {
        "settings": {"steps": args.steps, "seeds": args.seeds, "prompts_per_step": P, "group_size": G,
                     "max_new_tokens": MAX_NEW_TOKENS, "temperature": TEMPERATURE, "lr": LR, "threads": THREADS,
                     "eval_every": args.eval_every, "gain": args.gain, "model": MODEL, "parameters": params,
                     "sft": prep["settings"]["sft"]},
        "machine_matmul_flops": peak,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg()[0],
        "start_accuracy": start,
        "summary": {n: [{k: v for k, v in x.items() if k != "raw"} for x in xs] for n, xs in summary.items()},
        "comparison": comparison,
        "raw": raw,
        "total_seconds": time.perf_counter() - t_all,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"results: {out / 'results.json'}  (total {results['total_seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
