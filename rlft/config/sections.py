"""The job's sections: frozen dataclasses, one per TOML table. Each field's docstring (the string
literal on the line after it) is its ``--help`` text (``rlft.config.writing.help_text``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

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
    """regex/format_penalty: the pattern searched for in the output (the regex package's search, re-compatible)."""
    time_limit: float = 2.0
    """regex/format_penalty/python function: seconds grading one attempt may take; past it the attempt is errored, not scored 0 (rlft.rewards.limits); 0 = no limit. A multi's sub-graders left at 2 take the multi's."""
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
    ratio_level: str = "token"
    """Importance ratio pi/pi_old, a key of rlft.algos.losses.RATIO_LEVELS: token (PPO) | sequence (GSPO: one length-normalised ratio per sequence, clipped as a whole; the paper's clip range is ~0.0003-0.0004 and its aggregation seq_mean). Matters only when a batch is reused (updates_per_batch > 1)."""
    policy_loss: str = "ppo_clip"
    """Per-token policy term, a key of rlft.algos.losses.POLICY_LOSSES: ppo_clip (a token past the clip range gets no gradient) | cispo (MiniMax-M1: the importance weight is clipped to [1 - clip_low, 1 + clip_high] and its gradient stopped, every token keeps its gradient; the paper uses a wide clip_high)."""
    mismatch: str = "auto"
    """Sampler/learner mismatch correction (rlft.algos.mismatch): off | tis (truncated importance sampling, weight min(pi/mu, cap)) | mis (masked: weight pi/mu, 0 outside [1/cap, cap]) | auto (tis when the sampler's engine or precision differs from the learner's, e.g. vLLM; off when they share the module or when distributed.max_staleness > 0 already corrects)."""
    mismatch_level: str = "token"
    """What one mismatch weight covers, a key of rlft.algos.mismatch.MISMATCH_LEVELS: token (each token's ratio) | sequence (the product over the sequence: unbiased, higher variance)."""
    mismatch_cap: float = 2.0
    """The mismatch weight's bound (>= 1): tis caps it here; mis rejects tokens or sequences outside [1/cap, cap]."""
    overlong_buffer: int = 0
    """DAPO soft overlong penalty: over the last overlong_buffer tokens before sampling.max_new_tokens the reward trained on falls linearly to -overlong_penalty (rlft.algos.overlong; the logged reward stays the grader's); 0 = off."""
    overlong_penalty: float = 1.0
    """The reward term at sampling.max_new_tokens when overlong_buffer > 0 (as -overlong_penalty)."""
    mask_truncated: bool = False
    """Attempts cut by the length limit (stop reason "length") carry no loss (DAPO overlong filtering); they still count in their group's baseline."""
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
    listen_host: str = "127.0.0.1"
    """Address the learner group's rendezvous listens on. 127.0.0.1 (the default) keeps it on this machine, and the learner ranks are then placed on this machine's Ray node; set this machine's address on the cluster's network (e.g. 10.0.0.5) to let ranks run on other nodes."""
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
