"""A job: one TOML file of frozen dataclasses, one per section (DESIGN.md §6).

Each field has a docstring (the string literal on the line after it); that docstring is the
``--help`` (``help_text`` reads them with ``ast``). ``load_job`` parses the file, applies
``section.key=value`` overrides, and validates everything before any model is loaded, so a
typo costs a second, not a model load. Errors name the file and line (or the override), the
field, the bad value, the valid choices and the fix; all problems are reported at once.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import json
import re
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence


class ConfigError(ValueError):
    """A job file or override that cannot be used; the message says where and how to fix it."""


@dataclass(frozen=True)
class LoraConfig:
    """LoRA adapters (peft) instead of full fine-tuning."""

    rank: int = 16
    """LoRA rank r of the low-rank update."""
    alpha: float = 32.0
    """LoRA scaling alpha; the update is scaled by alpha / rank."""
    dropout: float = 0.0
    """Dropout on the LoRA branch, in [0, 1)."""
    target_modules: str = "all-linear"
    """Which modules get adapters: "all-linear" or a comma-separated list of module names."""


@dataclass(frozen=True)
class ModelConfig:
    """The policy model."""

    path: str = "tiny"
    """A hub id, a local folder, or "tiny" for the built-in model."""
    dtype: str = "auto"
    """auto | float32 | bfloat16 | float16; auto = bfloat16 on GPU, float32 on CPU."""
    max_length: int = 1024
    """Cap on prompt + completion tokens."""
    lora: LoraConfig | None = None
    """Optional LoRA table, e.g. lora = { rank = 16, alpha = 32 }; absent = full fine-tuning."""


@dataclass(frozen=True)
class DataConfig:
    """Where the prompts (and demonstrations) come from."""

    train: str = ""
    """JSONL / CSV / Parquet path, a folder saved with datasets' save_to_disk, or a hub name."""
    eval: str = ""
    """Held-out data, same forms as train; empty = no evaluation set."""
    prompt: str = "prompt"
    """Field holding the prompt: text or a list of chat messages."""
    completion: str = "completion"
    """Field holding the demonstration (used by SFT)."""
    eval_size: int = 0
    """How many eval items to use; 0 = all."""
    max_errors: int = 20
    """How many bad rows to report before stopping."""
    skip_invalid: bool = False
    """Skip bad rows (reported with a count) instead of stopping; the default stops before any training."""


@dataclass(frozen=True)
class JudgeConfig:
    """Where an AI judge (score_model, label_model, rank_model) runs, and how it is called (rlft.rewards.judge)."""

    backend: str = "openai"
    """openai (any OpenAI-compatible chat endpoint, over HTTP) | hf (grader.model is a local Hugging Face model, greedy)."""
    base_url: str = ""
    """openai: the endpoint, e.g. "https://api.openai.com/v1" or "http://127.0.0.1:8000/v1" (rlft serve)."""
    api_key_env: str = ""
    """openai: the NAME of the environment variable holding the API key (e.g. "OPENAI_API_KEY"); empty = no key sent."""
    max_concurrency: int = 8
    """Judge calls in flight at once."""
    timeout: float = 60.0
    """Seconds a request may wait on the endpoint (per socket operation) before it counts as timed out."""
    max_retries: int = 4
    """Retries after a connection error, timeout, HTTP 429 or 5xx (never after another 4xx)."""
    backoff: float = 1.0
    """Seconds before the first retry, doubled at each next one (or the server's Retry-After, when longer); at most 60."""
    price_input: float = 0.0
    """USD per 1M prompt tokens, for the judge/cost_usd metric."""
    price_output: float = 0.0
    """USD per 1M completion tokens, for the judge/cost_usd metric."""
    cache: bool = True
    """Reuse the reply to a request already made (same rubric, input and output)."""
    disk_cache: bool = False
    """Also keep the cache in RUN/judge_cache.jsonl, so a resumed run or a rerun asks nothing twice."""
    device: str = "cpu"
    """hf: the device the judge model runs on (cpu | cuda)."""


@dataclass(frozen=True)
class GraderConfig:
    """How an attempt is scored (rlft.rewards.graders; OpenAI's grader format in rlft.rewards.specs)."""

    type: str = "exact"
    """A key of rlft.rewards.graders.GRADERS: exact | numeric | regex | contains | python | code_tests | string_check | text_similarity | multi | math | json_schema | length_penalty | format_penalty | score_model | label_model | rank_model | reward_model | reasoning_gym."""
    file: str = ""
    """A grader JSON file in OpenAI's format, relative to the job file; when set, [grader] holds nothing else."""
    reference: str = ""
    """exact/numeric/contains: the item field holding the answer. string_check/text_similarity/math: a template like "{{item.answer}}". Empty = the item's "answer"."""
    input: str = ""
    """string_check/text_similarity/math/json_schema/*_penalty: the text graded, a template; empty = "{{sample.output_text}}"."""
    normalize: list[str] = field(default_factory=lambda: ["strip"])
    """exact/contains: applied in order to output and reference: strip, lower, collapse_whitespace, remove_punctuation."""
    tolerance: float = 1e-6
    """numeric: absolute tolerance."""
    rel_tolerance: float = 0.0
    """numeric: relative tolerance (fraction of the reference)."""
    pattern: str = ""
    """regex/format_penalty: the pattern searched for in the output (re.search)."""
    function: str = ""
    """python, trusted, in-process: "path/to/file.py:fn" relative to the job file, or "package.module:fn"."""
    source: str = ""
    """python, sandboxed (OpenAI format): code defining grade(sample, item) -> float; sample and item are dicts."""
    allow_unsandboxed: bool = False
    """python source, code_tests: run it even where no sandbox works (warned at every step); only for code you trust."""
    extract: str = "last_code_block"
    """code_tests: the code to run from the output: last_code_block (the last ``` fenced block, else all) | output."""
    operation: str = "eq"
    """string_check: eq | ne | like (input contains reference) | ilike (like, ignoring case); 1.0 or 0.0."""
    evaluation_metric: str = "fuzzy_match"
    """text_similarity: fuzzy_match | bleu | gleu | meteor | rouge_1 .. rouge_5 | rouge_l | cosine; a score in [0, 1]."""
    embedding_model: str = ""
    """text_similarity cosine: a local sentence-transformers model folder (nothing is downloaded)."""
    graders: dict[str, GraderConfig] = field(default_factory=dict)
    """multi: the named sub-graders, each a table like [grader] itself: [grader.graders.NAME]."""
    calculate_output: str = ""
    """multi: a formula over the sub-grader names, e.g. "0.8 * correct + 0.2 * format" (+ - * / ^, min max abs sqrt log exp floor ceil)."""
    schema: dict[str, Any] = field(default_factory=dict)
    """json_schema: the JSON Schema that the input, parsed as JSON, must satisfy (1.0 or 0.0)."""
    max_chars: int = 0
    """length_penalty: characters allowed with no penalty."""
    buffer_chars: int = 0
    """length_penalty: over the next buffer_chars the penalty grows linearly to -penalty (DAPO's soft overlong penalty); 0 = a step."""
    penalty: float = 1.0
    """length_penalty/format_penalty: the score when the output is too long / not in the format (as -penalty); else 0."""
    model: str = ""
    """score_model/label_model/rank_model: the judge model the endpoint serves (judge.backend = "hf": a local folder or hub id). reward_model: the folder rlft reward-model train wrote, relative to the job file."""
    messages: list[dict[str, Any]] = field(default_factory=list)
    """judges: the prompt, chat messages like { role = "user", content = "... {{item.prompt}} ... {{sample.output_text}}" } (OpenAI's "input"); empty = the rubric's."""
    rubric: str = ""
    """judges: a built-in prompt (rlft.rewards.judge_prompts.RUBRICS: correctness, helpfulness) used when messages is empty; empty = correctness."""
    range: list[float] = field(default_factory=lambda: [0.0, 1.0])
    """score_model: [low, high]; the judge's score, in this range, is the reward."""
    labels: list[str] = field(default_factory=list)
    """label_model: the labels the judge chooses from."""
    passing_labels: list[str] = field(default_factory=list)
    """label_model: labels that score 1.0 (the others score 0.0)."""
    sampling_params: dict[str, Any] = field(default_factory=dict)
    """judges: sent with each request, e.g. { temperature = 0, max_completion_tokens = 512, seed = 0 }; temperature defaults to 0."""
    judge: JudgeConfig = field(default_factory=JudgeConfig)
    """judges: the endpoint or local model and how it is called, a table [grader.judge]."""
    prompt_field: str = "prompt"
    """reward_model: the item field holding the prompt, scored with the attempt (set it to data.prompt's field)."""
    monitor: dict[str, GraderConfig] = field(default_factory=dict)
    """Graders logged, not trained on: [grader.monitor.NAME] tables like [grader] give NAME/mean and NAME/pass_rate in metrics.jsonl and the scores in samples.jsonl (a gold grader beside a reward model shows over-optimisation; rlft.rewards.monitor)."""


@dataclass(frozen=True)
class WorldConfig:
    """A multi-turn world instead of [data] and [grader] (rlft.envs.worlds): tool-using episodes
    on a SQLite database, rewarded by its end state."""

    name: str = ""
    """A built-in world (retail) or a world folder relative to the job file; empty = a single-turn job."""
    split: str = "train"
    """The task file trained on (tasks/SPLIT.jsonl in the world folder)."""
    eval_split: str = "eval"
    """The held-out task file (rlft world eval); empty = none."""
    view: str = "full"
    """Which view of tool results the agent sees: "full" or one of the world's views.toml tables."""
    tool_format: str = "auto"
    """How tool calls are written, a key of rlft.envs.tools.TOOL_FORMATS or auto (hermes when the chat template takes tools, else compact)."""
    max_turns: int = 8
    """Policy replies per episode before it is cut (stop reason max_turns)."""
    partial_credit: bool = False
    """Reward the fraction of end-state checks that pass instead of all-or-nothing."""
    instructions: bool = True
    """Show the policy and the tool list in the system message; false = the request alone (for a small model that learns both from demonstrations; halves the retail world's episodes)."""
    require_reads: bool = False
    """Also require the read calls among a task's gold actions (e.g. retail's "look the order up first"): the end state alone cannot tell a denial made after looking from one made blindly."""


@dataclass(frozen=True)
class GameConfig:
    """A two-player board game learnt by self-play instead of [data] and [grader] (rlft.envs.games):
    the policy plays both sides, each side rewarded by the outcome (win 1, draw 0.5, loss 0)."""

    name: str = ""
    """A key of rlft.envs.games.GAMES (tictactoe); empty = no game."""
    openings: int = 2
    """Self-play starts from every unfinished position with at most this many stones."""
    opponents: list[str] = field(default_factory=lambda: ["random", "solver"])
    """Fixed players the policy is evaluated against (win/draw/loss rates): random, solver (perfect play)."""
    eval_games: int = 100
    """Games against each opponent at every evaluation, the policy x in half of them and o in the rest."""


@dataclass(frozen=True)
class AlgorithmConfig:
    """The RL algorithm (rlft.algos)."""

    name: str = "grpo"
    """The method, a key of rlft.methods.METHODS, from imitation to RL: sft (the demonstrations in data.completion), expert_iteration (SFT on the model's own accepted attempts), an outcome-reward advantage of rlft.algos.advantages.ADVANTAGES (grpo, dr_grpo, rloo, reinforce, reinforce_pp, ...), or ppo (a learned value function and GAE)."""
    group_size: int = 8
    """G: samples per prompt."""
    prompts_per_step: int = 4
    """P: prompts per step (B = P * G sequences)."""
    kl_coef: float = 0.0
    """Weight of the KL penalty to the reference model; 0 = off (no reference model)."""
    kl_estimator: str = "k3"
    """KL estimator, a key of rlft.algos.losses.KL_ESTIMATORS."""
    clip_low: float = 0.2
    """PPO clip range below 1: ratio >= 1 - clip_low."""
    clip_high: float = 0.28
    """PPO clip range above 1: ratio <= 1 + clip_high (DAPO clip-higher)."""
    updates_per_batch: int = 1
    """Optimizer passes over each sampled batch; > 1 needs old logprobs and clipping."""
    aggregation: str = "token_mean"
    """How token losses are reduced, a key of rlft.algos.losses.AGGREGATIONS."""
    value_coef: float = 0.1
    """ppo: weight of the value loss added to the policy loss (its gradient reaches the shared trunk)."""
    value_clip: float = 0.2
    """ppo: a value may move at most this far from its rollout-time value before the clipped loss stops it; 0 = no clipping."""
    value_lr: float = 1e-3
    """ppo: peak learning rate of the value head (it starts at 0 and must catch up); 0 = optim.lr."""
    gamma: float = 1.0
    """ppo: discount per step (token or turn) in GAE."""
    gae_lambda: float = 0.95
    """ppo: GAE lambda; 1 = Monte Carlo returns minus the value, 0 = one-step TD."""
    gae_level: str = "token"
    """ppo: what a GAE step is, a key of rlft.algos.values.GAE: token (each sampled token) or turn (each policy reply of a multi-turn episode)."""
    drop_zero_advantage: bool = True
    """Drop attempts whose advantage is 0 before the update: zero-variance groups, and for
    expert_iteration the rejected attempts (which makes it SFT on the accepted ones)."""


@dataclass(frozen=True)
class SamplingConfig:
    """Generation during rollouts."""

    max_new_tokens: int = 256
    """Cap on sampled tokens per turn."""
    temperature: float = 1.0
    """Sampling temperature; 0 = greedy."""
    top_p: float = 1.0
    """Nucleus sampling mass, in (0, 1]; 1 = off."""
    top_k: int = 0
    """Keep only the k most likely tokens; 0 = off."""
    stop: list[str] = field(default_factory=list)
    """Stop strings that end a completion (besides EOS)."""


@dataclass(frozen=True)
class OptimConfig:
    """Optimisation (AdamW with warmup)."""

    lr: float = 1e-6
    """Peak learning rate."""
    steps: int = 100
    """Optimizer steps to run."""
    warmup_steps: int = 0
    """Linear warmup steps."""
    schedule: str = "constant"
    """Learning rate after warmup, a key of rlft.learner.SCHEDULES: constant | linear | cosine (to 0 at the last step)."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    max_grad_norm: float = 1.0
    """Gradient-norm clip; 0 = no clipping."""
    batch_size: int = 8
    """SFT: sequences per step."""
    micro_batch_size: int = 0
    """Sequences per forward/backward pass; 0 = the whole batch in one pass."""
    max_skipped_updates: int = 5
    """Stop (with a checkpoint) after this many updates in a row skipped for a non-finite loss or gradient norm; 0 = never."""


@dataclass(frozen=True)
class EvalConfig:
    """Held-out evaluation."""

    every: int = 0
    """Evaluate every N steps; 0 = only at the end."""
    size: int = 0
    """How many eval prompts; 0 = all."""
    samples: int = 1
    """Samples per prompt (the k of pass@k)."""
    temperature: float = 0.0
    """Sampling temperature for evaluation; 0 = greedy."""


@dataclass(frozen=True)
class RunConfig:
    """Outputs, seeds, devices."""

    out: str = "runs/job"
    """Run directory (metrics, samples, checkpoints, final model)."""
    seed: int = 0
    """Base seed; per-step seeds derive from (seed, step, index)."""
    checkpoint_every: int = 0
    """Checkpoint every N steps; 0 = only the final one. Rerunning the same command resumes from the newest."""
    keep_checkpoints: int = 3
    """Keep the newest N checkpoints, delete older ones; 0 = keep all."""
    max_errored_fraction: float = 0.2
    """Stop (with a checkpoint) when more than this fraction of recent attempts errored (grader raised, timed out, non-number); 1 = never."""
    errored_window: int = 10
    """How many recent RL steps max_errored_fraction looks at."""
    force_resume: bool = False
    """Resume even when settings that change the result (model, data, seed, batch shape...) differ from the checkpoint's."""
    log_samples: int = 4
    """Transcripts per step written to samples.jsonl."""
    device: str = "auto"
    """auto | cpu | cuda; auto = cuda when available."""
    progress: bool = True
    """Show a progress bar."""


@dataclass(frozen=True)
class DistributedConfig:
    """Past one process (rlft.distributed, docs/distributed.md): sampler actors on Ray, the learner
    as a torch.distributed group. Off (samplers = 0) by default: one process, nothing running."""

    samplers: int = 0
    """Ray sampler actors, each holding a copy of the policy; 0 = one process (the default). `rlft train --ray` sets 1 when 0."""
    learner_ranks: int = 1
    """Processes in the learner's torch.distributed group (gloo on CPU, NCCL on GPU); this process is rank 0."""
    ray_address: str = ""
    """Empty = start a local Ray cluster for the run (token authentication, shut down at the end); "auto" = the running local cluster; else a cluster address."""
    sampler: str = "hf"
    """Sampler engine in each actor, a key of rlft.rollout.engines.ENGINES: hf (in-process transformers) | vllm (GPU, pip install 'rlft[vllm]')."""
    max_staleness: int = 0
    """Weight versions a sample may lag the learner by; 0 = strictly on-policy (stale samples are refused and re-sampled). > 0 overlaps sampling with learning and corrects with truncated importance weights."""
    is_cap: float = 2.0
    """Cap on the importance weight learner/sampler probability of each token when max_staleness > 0 (truncated IS)."""
    sampler_restarts: int = 3
    """How many times Ray restarts a sampler actor that died; its unfinished work is issued again."""
    learner_timeout: float = 120.0
    """Seconds a learner collective may wait for a rank before the run stops with a message."""
    vllm_gpu_memory: float = 0.5
    """vllm: fraction of the GPU's memory each vLLM engine may take (gpu_memory_utilization)."""


@dataclass(frozen=True)
class Job:
    """A whole job: one field per section, plus the folder relative paths resolve against."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    grader: GraderConfig = field(default_factory=GraderConfig)
    world: WorldConfig = field(default_factory=WorldConfig)
    game: GameConfig = field(default_factory=GameConfig)
    algorithm: AlgorithmConfig = field(default_factory=AlgorithmConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    run: RunConfig = field(default_factory=RunConfig)
    distributed: DistributedConfig = field(default_factory=DistributedConfig)
    base_dir: str = "."


# section name -> its dataclass, in file order
SECTIONS: dict[str, type] = {
    f.name: f.default_factory for f in dataclasses.fields(Job) if f.name != "base_dir"  # type: ignore[misc]
}

# --- value checks: "section.key" -> (predicate, what the value must be) ----------------------

_RANGES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "model.max_length": (lambda v: v >= 1, ">= 1"),
    "model.lora.rank": (lambda v: v >= 1, ">= 1"),
    "model.lora.alpha": (lambda v: v > 0, "> 0"),
    "model.lora.dropout": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "data.eval_size": (lambda v: v >= 0, ">= 0 (0 = all)"),
    "data.max_errors": (lambda v: v >= 1, ">= 1"),
    "grader.tolerance": (lambda v: v >= 0, ">= 0"),
    "grader.rel_tolerance": (lambda v: v >= 0, ">= 0"),
    "grader.max_chars": (lambda v: v >= 0, ">= 0"),
    "grader.buffer_chars": (lambda v: v >= 0, ">= 0 (0 = a step)"),
    "grader.penalty": (lambda v: v >= 0, ">= 0 (the score goes down to -penalty)"),
    "grader.judge.max_concurrency": (lambda v: v >= 1, ">= 1"),
    "grader.judge.timeout": (lambda v: v > 0, "> 0 (seconds)"),
    "grader.judge.max_retries": (lambda v: v >= 0, ">= 0"),
    "grader.judge.backoff": (lambda v: v >= 0, ">= 0 (seconds)"),
    "grader.judge.price_input": (lambda v: v >= 0, ">= 0 (USD per 1M tokens)"),
    "grader.judge.price_output": (lambda v: v >= 0, ">= 0 (USD per 1M tokens)"),
    "algorithm.group_size": (lambda v: v >= 1, ">= 1"),
    "algorithm.prompts_per_step": (lambda v: v >= 1, ">= 1"),
    "algorithm.kl_coef": (lambda v: v >= 0, ">= 0"),
    "algorithm.clip_low": (lambda v: v >= 0, ">= 0"),
    "algorithm.clip_high": (lambda v: v >= 0, ">= 0"),
    "algorithm.updates_per_batch": (lambda v: v >= 1, ">= 1"),
    "algorithm.value_coef": (lambda v: v >= 0, ">= 0"),
    "algorithm.value_clip": (lambda v: v >= 0, ">= 0 (0 = no clipping)"),
    "algorithm.value_lr": (lambda v: v >= 0, ">= 0 (0 = optim.lr)"),
    "algorithm.gamma": (lambda v: 0 <= v <= 1, "in [0, 1]"),
    "algorithm.gae_lambda": (lambda v: 0 <= v <= 1, "in [0, 1]"),
    "sampling.max_new_tokens": (lambda v: v >= 1, ">= 1"),
    "sampling.temperature": (lambda v: v >= 0, ">= 0 (0 = greedy)"),
    "sampling.top_p": (lambda v: 0 < v <= 1, "in (0, 1]"),
    "sampling.top_k": (lambda v: v >= 0, ">= 0 (0 = off)"),
    "optim.lr": (lambda v: v > 0, "> 0"),
    "optim.steps": (lambda v: v >= 0, ">= 0"),
    "optim.warmup_steps": (lambda v: v >= 0, ">= 0"),
    "optim.weight_decay": (lambda v: v >= 0, ">= 0"),
    "optim.max_grad_norm": (lambda v: v >= 0, ">= 0 (0 = no clipping)"),
    "optim.batch_size": (lambda v: v >= 1, ">= 1"),
    "optim.micro_batch_size": (lambda v: v >= 0, ">= 0 (0 = whole batch)"),
    "optim.max_skipped_updates": (lambda v: v >= 0, ">= 0 (0 = never stop)"),
    "run.keep_checkpoints": (lambda v: v >= 0, ">= 0 (0 = keep all)"),
    "run.max_errored_fraction": (lambda v: 0 <= v <= 1, "in [0, 1] (1 = never stop)"),
    "run.errored_window": (lambda v: v >= 1, ">= 1"),
    "world.max_turns": (lambda v: v >= 1, ">= 1"),
    "game.openings": (lambda v: 0 <= v <= 8, "in [0, 8]"),
    "game.eval_games": (lambda v: v >= 2, ">= 2 (half as each side)"),
    "eval.every": (lambda v: v >= 0, ">= 0 (0 = only at the end)"),
    "eval.size": (lambda v: v >= 0, ">= 0 (0 = all)"),
    "eval.samples": (lambda v: v >= 1, ">= 1"),
    "eval.temperature": (lambda v: v >= 0, ">= 0 (0 = greedy)"),
    "run.checkpoint_every": (lambda v: v >= 0, ">= 0 (0 = only final)"),
    "run.log_samples": (lambda v: v >= 0, ">= 0"),
    "distributed.samplers": (lambda v: v >= 0, ">= 0 (0 = one process)"),
    "distributed.learner_ranks": (lambda v: v >= 1, ">= 1"),
    "distributed.max_staleness": (lambda v: v >= 0, ">= 0 (0 = strictly on-policy)"),
    "distributed.is_cap": (lambda v: v >= 1, ">= 1 (an importance-weight cap below 1 would shrink on-policy samples)"),
    "distributed.sampler_restarts": (lambda v: v >= 0, ">= 0"),
    "distributed.learner_timeout": (lambda v: v > 0, "> 0 (seconds)"),
    "distributed.vllm_gpu_memory": (lambda v: 0 < v <= 1, "in (0, 1]"),
}


def _table(module: str, name: str) -> Callable[[], list[str]]:
    """The keys of ``module.name``, imported when first needed (the algos pull in torch)."""

    def keys() -> list[str]:
        import importlib

        return list(getattr(importlib.import_module(module), name))

    return keys


# "section.key" -> (what it is, its valid names); fields that pick from a table
_CHOICES: dict[str, tuple[str, Callable[[], list[str]]]] = {
    "model.dtype": ("dtype", lambda: ["auto", "float32", "bfloat16", "float16"]),
    "run.device": ("device", lambda: ["auto", "cpu", "cuda"]),
    "algorithm.name": ("algorithm", _table("rlft.methods", "METHODS")),
    "algorithm.gae_level": ("GAE level", _table("rlft.algos.values", "GAE")),
    "algorithm.kl_estimator": ("KL estimator", _table("rlft.algos.losses", "KL_ESTIMATORS")),
    "algorithm.aggregation": ("aggregation", _table("rlft.algos.losses", "AGGREGATIONS")),
    "world.tool_format": ("tool-call format", lambda: ["auto", *_table("rlft.envs.tools", "TOOL_FORMATS")()]),
    "game.opponents": ("opponent", _table("rlft.envs.games.tictactoe", "PLAYERS")),
    "optim.schedule": ("learning-rate schedule", _table("rlft.learner", "SCHEDULES")),
    "grader.type": ("grader type", _table("rlft.rewards.graders", "GRADERS")),
    "grader.normalize": ("normalize option", _table("rlft.rewards.graders", "NORMALIZERS")),
    "grader.operation": ("string_check operation", _table("rlft.rewards.specs", "OPERATIONS")),
    "grader.evaluation_metric": ("text_similarity metric", _table("rlft.rewards.similarity", "METRICS")),
    "distributed.sampler": ("sampler engine", _table("rlft.rollout.engines", "ENGINES")),
    "grader.judge.backend": ("judge backend", _table("rlft.rewards.judge_client", "BACKENDS")),
}


def _choices(name: str) -> tuple[str, list[str]] | None:
    """(what it is, valid names) for fields that pick from a table."""
    if name not in _CHOICES:
        return None
    what, keys = _CHOICES[name]
    return what, keys()


def _did_you_mean(bad: str, valid: Sequence[str]) -> str:
    close = difflib.get_close_matches(bad, list(valid), n=1)
    return f"did you mean {close[0]!r}? " if close else ""


class _Bad(Exception):
    """One problem with one value; the caller adds where it came from."""


# --- loading ---------------------------------------------------------------------------------


def load_job(path: str | Path | None, overrides: Sequence[str] = ()) -> Job:
    """Read a job file (None = all defaults), apply ``section.key=value`` overrides, validate."""
    raw: dict[str, Any] = {}
    lines: dict[tuple[str, ...], int] = {}
    base_dir = str(Path.cwd())
    fname = "<defaults>"
    if path is not None:
        p = Path(path)
        fname = str(path)
        try:
            text = p.read_text(encoding="utf-8")
        except OSError as e:
            raise ConfigError(f"{fname}: cannot read the job file ({e.strerror}); fix: check the path") from None
        try:
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            m = re.search(r"at line (\d+)", str(e))
            where = f"{fname}:{m.group(1)}" if m else fname
            raise ConfigError(f"{where}: TOML syntax error: {e}; fix the syntax (strings need quotes)") from None
        lines = _key_lines(text)
        base_dir = str(p.resolve().parent)
    # where each value came from, for messages: (section, key) -> prefix
    src: dict[tuple[str, str], str] = {}
    errors: list[str] = []
    if "base_dir" in raw:  # written by job_to_toml so a saved config resolves paths as the original did
        base_dir = raw.pop("base_dir")
        if not isinstance(base_dir, str):
            raise ConfigError(f"{fname}: base_dir = {base_dir!r}: expected a string (a folder)")
    for name, value in raw.items():
        line = lines.get((name,)) or lines.get(("", name))
        where = f"{fname}:{line}" if line else fname
        if name not in SECTIONS:
            owners = [s for s, cls in SECTIONS.items() if name in _field_names(cls)]
            hint = f"did you mean [{owners[0]}] {name}? " if owners else _did_you_mean(name, list(SECTIONS))
            errors.append(f"{where}: [{name}]: unknown section; {hint}valid sections: {', '.join(SECTIONS)}")
        elif not isinstance(value, dict):
            keys = ", ".join(_field_names(SECTIONS[name]))
            errors.append(f"{where}: {name} = {value!r}: expected a table [{name}] with keys {keys}")
        else:
            for key, v in value.items():
                kl = lines.get((name, key))
                src[(name, key)] = f"{fname}:{kl}: [{name}] {key} = {v!r}" if kl else f"{fname}: [{name}] {key} = {v!r}"
    if errors:
        raise ConfigError("\n".join(errors))
    for ov in overrides:
        try:
            section, key, value = _parse_override(ov)
        except _Bad as e:
            errors.append(f"override {ov!r}: {e}")
            continue
        if section not in SECTIONS:
            errors.append(
                f"override {ov}: unknown section {section!r}; {_did_you_mean(section, list(SECTIONS))}"
                f"valid sections: {', '.join(SECTIONS)}"
            )
            continue
        table = raw.setdefault(section, {})
        head, *rest = key.split(".")
        if rest:  # model.lora.rank=8, grader.graders.fmt.penalty=0.5: merge into the nested tables
            value = _merged(table.get(head), rest, value)
        table[head] = value
        src[(section, head)] = f"override {ov}"
    sections = {}
    for name, cls in SECTIONS.items():
        table = raw.get(name, {})
        sections[name] = _build(cls, name, table, lambda k, n=name: src.get((n, k), f"{fname}: [{n}] {k}"), errors)
    if not errors:
        sections["grader"] = _gym_grader(sections, src)
        errors += _cross_checks(sections, src)
    if not errors:  # still before any model loads
        errors += _grader_checks(sections["grader"], base_dir, f"{fname}: [grader]")
    if errors:
        raise ConfigError("\n".join(errors))
    return Job(**sections, base_dir=base_dir)


def _merged(table: Any, keys: list[str], value: Any) -> dict:
    """A copy of ``table`` (a dict, else {}) with ``value`` set at the nested path ``keys``."""
    out = dict(table) if isinstance(table, dict) else {}
    out[keys[0]] = _merged(out.get(keys[0]), keys[1:], value) if len(keys) > 1 else value
    return out


def _parse_override(ov: str) -> tuple[str, str, Any]:
    name, eq, text = ov.partition("=")
    name = name.strip()
    if not eq or "." not in name or not all(name.split(".")):
        raise _Bad("expected section.key=value, e.g. algorithm.group_size=4 or run.out=runs/x")
    try:
        value = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        value = text  # a bare string: run.out=runs/x
    section, key = name.split(".", 1)
    return section, key, value


def _field_names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def _build(cls: type, dotted: str, table: dict, where: Callable[[str], str], errors: list[str]) -> Any:
    """Type-check and range-check one table, appending problems to ``errors``."""
    hints = typing.get_type_hints(cls)
    names = _field_names(cls)
    kwargs = {}
    for key, value in table.items():
        name = f"{dotted}.{key}"
        if key not in names:
            valid = ", ".join(names)
            errors.append(f"{where(key)}: unknown key; {_did_you_mean(key, names)}valid keys for [{dotted}]: {valid}")
            continue
        try:
            if hints[key] in (LoraConfig | None, JudgeConfig):  # nested tables: [model.lora], [grader.judge]
                sub = LoraConfig if hints[key] == LoraConfig | None else JudgeConfig
                if not isinstance(value, dict):
                    raise _Bad(f"expected a table like {_EXAMPLES[sub]}, got {type(value).__name__}")
                n_before = len(errors)
                value = _build(sub, name, value, lambda k, w=where(key), n=key: f"{w}: {n}.{k}", errors)
                if len(errors) > n_before:
                    continue
            elif hints[key] == dict[str, GraderConfig]:  # multi's sub-graders: tables like [grader] itself
                n_before = len(errors)
                value = _build_graders(value, where(key), errors)
                if len(errors) > n_before:
                    continue
            else:
                value = _coerce(hints[key], value)
                _check_value(name, value)
        except _Bad as e:
            errors.append(f"{where(key)}: {e}")
            continue
        kwargs[key] = value
    return cls(**kwargs)


_EXAMPLES = {LoraConfig: "{ rank = 16, alpha = 32 }", JudgeConfig: "{ base_url = \"http://127.0.0.1:8000/v1\" }"}
_TYPE_WORDS = {int: "an integer", float: "a number", str: "a string (in quotes)", bool: "true or false"}


def grader_from_dict(table: dict, where: str) -> GraderConfig:
    """A checked GraderConfig from a [grader]-shaped table (a grader JSON file); ``where`` names its source."""
    errors: list[str] = []
    cfg = _build(GraderConfig, "grader", table, lambda k: f"{where}: {k} = {table[k]!r}", errors)
    if errors:
        raise ConfigError("\n".join(errors))
    return cfg


def _build_graders(value: Any, where: str, errors: list[str]) -> dict[str, GraderConfig]:
    if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
        raise _Bad("expected named tables, e.g. [grader.graders.correct] with keys like [grader]'s")
    at = where.split(" = ", 1)[0]  # "job.toml:7: [grader] graders", without the value
    return {n: _build(GraderConfig, "grader", t, lambda k, n=n: f"{at}.{n}.{k}", errors) for n, t in value.items()}


def _coerce(hint: Any, value: Any) -> Any:
    if hint == dict[str, Any]:
        if not isinstance(value, dict):
            raise _Bad(f"expected a table, e.g. {{ type = \"object\" }}, got {type(value).__name__} {value!r}")
        return dict(value)
    if hint == list[str]:
        if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
            raise _Bad(f"expected a list of strings like [\"a\", \"b\"], got {value!r}")
        return list(value)
    if hint == list[float]:
        if not isinstance(value, list) or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in value):
            raise _Bad(f"expected a list of numbers like [0, 1], got {value!r}")
        return [float(x) for x in value]
    if hint == list[dict[str, Any]]:
        if not isinstance(value, list) or not all(isinstance(x, dict) for x in value):
            raise _Bad(f"expected a list of tables like [{{ role = \"user\", content = \"...\" }}], got {value!r}")
        return [dict(x) for x in value]
    ok = isinstance(value, hint) and not (hint is int and isinstance(value, bool))
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)  # an int is accepted where a float is expected
    if not ok:
        raise _Bad(f"expected {_TYPE_WORDS[hint]}, got {type(value).__name__} {value!r}")
    return value


def _check_value(name: str, value: Any) -> None:
    if name in _RANGES:
        ok, allowed = _RANGES[name]
        if not ok(value):
            raise _Bad(f"must be {allowed}, got {value!r}")
    picked = _choices(name)
    if picked is not None:
        what, valid = picked
        for v in value if isinstance(value, list) else [value]:
            if v not in valid:
                entry = f" {v!r}" if isinstance(value, list) else ""
                raise _Bad(f"unknown {what}{entry}; {_did_you_mean(v, valid)}valid: {', '.join(valid)}")


def _gym_grader(s: dict[str, Any], src: dict[tuple[str, str], str]) -> GraderConfig:
    """A reasoning_gym data source is scored by its dataset's scorer unless [grader] says otherwise."""
    g: GraderConfig = s["grader"]
    if s["data"].train.startswith("reasoning_gym:") and ("grader", "type") not in src and not g.file:
        return dataclasses.replace(g, type="reasoning_gym")
    return g


def _cross_checks(s: dict[str, Any], src: dict[tuple[str, str], str]) -> list[str]:
    g: GraderConfig = s["grader"]
    out = []
    if s["data"].train.startswith("reasoning_gym:"):  # train and eval must not share generated items
        from rlft.data.gym import overlap_errors

        out += overlap_errors(s["data"].train, s["data"].eval)
    where = src.get(("grader", "type"), "[grader] type")
    if g.type == "regex":
        try:
            re.compile(g.pattern)
        except re.error as e:
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


def _grader_checks(g: GraderConfig, base_dir: str, where: str) -> list[str]:
    """The whole grader spec (files, sub-graders, formulas, templates), checked by building it."""
    from rlft.rewards.graders import make_grader  # lazy: the graders import this module
    from rlft.rewards.monitor import make_monitors

    try:
        make_grader(g, base_dir)
        make_monitors(g, base_dir)
    except ConfigError as e:
        return [f"{where}: {e}"]
    return []


def _key_lines(text: str) -> dict[tuple[str, ...], int]:
    """Best-effort 1-based line of each ``[section]`` and ``key =`` (first occurrence), for messages."""
    out: dict[tuple[str, ...], int] = {}
    section = ""
    for i, line in enumerate(text.splitlines(), 1):
        if m := re.match(r"\s*\[\s*([A-Za-z0-9_\-]+)\s*\]", line):
            section = m.group(1)
            out.setdefault((section,), i)
        elif m := re.match(r"\s*([A-Za-z0-9_\-]+)\s*[.=]", line):
            out.setdefault((section, m.group(1)), i)
    return out


# --- writing ---------------------------------------------------------------------------------


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)  # repr(1e-06) == '1e-06', repr(inf) == 'inf': both valid TOML
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False).replace("\x7f", "\\u007f")  # JSON escapes are TOML escapes
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):  # grader.graders, grader.schema: an inline table with quoted keys
        return "{ " + ", ".join(f"{json.dumps(str(k))} = {_toml_value(x)}" for k, x in v.items()) + " }"
    if dataclasses.is_dataclass(v):
        return "{ " + ", ".join(f"{f.name} = {_toml_value(getattr(v, f.name))}" for f in dataclasses.fields(v)) + " }"
    raise TypeError(f"cannot write {type(v).__name__} {v!r} as TOML")


def job_to_toml(job: Job) -> str:
    """The resolved job as TOML; ``load_job`` on it gives back an equal Job (base_dir included)."""
    out = ["# resolved rlft job", f"base_dir = {_toml_value(job.base_dir)}"]
    for name in SECTIONS:
        out += ["", f"[{name}]"]
        cfg = getattr(job, name)
        for f in dataclasses.fields(cfg):
            v = getattr(cfg, f.name)
            if v is not None:  # TOML has no null: an absent optional table means None
                out.append(f"{f.name} = {_toml_value(v)}")
    return "\n".join(out) + "\n"


# --- help ------------------------------------------------------------------------------------


def _field_docs() -> dict[str, dict[str, tuple[str, str]]]:
    """class name -> field -> (type as written, docstring), read from this module's source."""
    tree = ast.parse(Path(__file__).read_text(encoding="utf-8"))
    docs: dict[str, dict[str, tuple[str, str]]] = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            body = node.body
            for stmt, nxt in zip(body, body[1:] + [None]):
                if (
                    isinstance(stmt, ast.AnnAssign)
                    and isinstance(stmt.target, ast.Name)
                    and isinstance(nxt, ast.Expr)
                    and isinstance(nxt.value, ast.Constant)
                    and isinstance(nxt.value.value, str)
                ):
                    doc = " ".join(nxt.value.value.split())
                    docs.setdefault(node.name, {})[stmt.target.id] = (ast.unparse(stmt.annotation), doc)
    return docs


def help_text() -> str:
    """Every ``section.key (type, default): docstring``, grouped by section."""
    docs = _field_docs()
    out = []

    def emit(cls: type, prefix: str) -> None:
        for f in dataclasses.fields(cls):
            default = f.default_factory() if f.default is dataclasses.MISSING else f.default  # type: ignore[misc]
            typ, doc = docs[cls.__name__][f.name]
            out.append(f"  {prefix}.{f.name} ({typ}, {default!r}): {doc}")
            if f.name in ("lora", "judge"):
                emit(LoraConfig if f.name == "lora" else JudgeConfig, f"{prefix}.{f.name}")

    for name, cls in SECTIONS.items():
        out.append(f"[{name}] {cls.__doc__}")
        emit(cls, name)
    return "\n".join(out)
