"""The world evidence run: SFT on an imperfect demonstrator agent, then RL, on the retail world.

1. A tiny model whose tokenizer is trained on the world's text (requests, calls, tool results).
2. Copy pretraining: a few hundred steps on random strings that repeat (``copy_batch``). A
   pretrained LM can copy an order id from the request into a call; a freshly initialised 1M
   model cannot, and does not learn to from demonstrations alone (it wrote one memorised id for
   every task). Repeated strings make it copy ids (digit accuracy 0.11 -> 0.72); they do not make
   it a general copier (it still miscopies order totals: docs/worlds.md).
3. The demonstrator (rlft.envs.worlds.retail.generate.demonstrate) plays every training task,
   through each view in ``--views``, noting the fields its decision rests on before deciding; it
   follows the policy except that it refunds late returns anyway with probability ``p_break``.
   Its transcripts become trajectories with only its own replies trained (sampled_mask 1). The
   opening is the request alone (``world.instructions = false``): the policy and the tool list
   are 230 tokens the tiny model cannot read anyway, and leaving them out halves every episode.
4. SFT on them (one model for every view); held-out evaluation (greedy) through each view.
5. For each view: RL (GRPO, ``rlft train`` on the [world] job ``rl-VIEW.toml`` written next to
   the results) from the SFT model, held-out evaluation every ``eval_every`` steps.
   results.json holds everything; world-curves.png the held-out success and violations by step.

Run: ``OMP_NUM_THREADS=2 python -m rlft.tasks.world_demo --out runs/world [--views minimal,full] [--seed N] [--fast]``;
a second run with the same --out reuses its SFT model (delete OUT/sft to redo it).
"""

from __future__ import annotations

import argparse
import json
import random
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from rlft.config import OptimConfig, load_job
from rlft.data import collate
from rlft.envs.tools import TOOL_FORMATS
from rlft.envs.worlds import load_world
from rlft.envs.worlds.env import WorldEnv
from rlft.envs.worlds.retail.generate import demonstrate
from rlft.envs.worlds.rollout import WorldRollout
from rlft.learner import LossSettings, make_optimizer, update
from rlft.models import CHAT_TEMPLATE, TINY_CONFIG, load_model, load_tokenizer, train_tokenizer
from rlft.rollout.render import ChatRenderer
from rlft.rollout.sampler import HFSampler, SamplingParams
from rlft.types import Trajectory


@dataclass(frozen=True)
class Settings:
    p_break: float = 0.7  # the demonstrator refunds a late return with this probability
    demos_per_task: int = 1  # per view
    copy_steps: int = 500
    copy_lr: float = 1e-3
    sft_steps: int = 500
    sft_batch: int = 16
    sft_copy: int = 8  # copy strings mixed into each SFT batch: copying stays cheaper than memorising ids
    sft_lr: float = 1e-3
    rl_steps: int = 200
    prompts_per_step: int = 8
    group_size: int = 8
    rl_lr: float = 1e-4
    rl_temperature: float = 0.7
    eval_every: int = 20
    eval_size: int = 0  # 0 = every held-out task
    vocab: int = 1000


FULL = Settings()
FAST = Settings(demos_per_task=1, copy_steps=2, sft_steps=4, sft_batch=4, sft_copy=2, rl_steps=2, prompts_per_step=2, group_size=2,
                eval_every=1, eval_size=4)
COMPACT = TOOL_FORMATS["compact"]


def play_demo(world, task, view, renderer, replies: list[str]) -> tuple[Trajectory, list[str]]:
    """The demonstrator's episode as a trajectory: its replies trained, everything else masked."""
    env = WorldEnv(world, task, view, COMPACT, instructions=False)
    history, tokens = renderer.initial(env.initial_observation(), env.tools)
    mask, eos = [0] * len(tokens), renderer.tokenizer.eos_token_id
    for reply in replies:
        ids = renderer.encode(reply) + [eos]
        tokens, mask = tokens + ids, mask + [1] * len(ids)
        result = env.step(reply)
        if result.done:
            break
        between = renderer.between(history, reply, result.messages, env.tools, True)
        history = [*history, {"role": "assistant", "content": reply}, *result.messages]
        tokens, mask = tokens + between, mask + [0] * len(between)
    texts = [renderer.text([*history, {"role": "assistant", "content": replies[-1]}], env.tools, False)]
    return Trajectory(tokens, mask, [0.0] * len(tokens), reward=result.reward), texts


def looked_up(world, db, task: dict) -> dict:
    """get_order's result for the task's order, as the demonstrator reads it."""
    return db.call(world.tools["get_order"], **task["gold_actions"][0]["arguments"])


def demos(world, view, renderer, s: Settings, seed: int) -> list[Trajectory]:
    rng, out = random.Random(seed), []
    db = world.open()
    for task in world.tasks["train"]:
        for _ in range(s.demos_per_task):
            out.append(play_demo(world, task, view, renderer, demonstrate(task, looked_up(world, db, task), rng, s.p_break, COMPACT))[0])
    return out


def build_model(out: Path, world, views: list, s: Settings, seed: int) -> Path:
    """A tiny Llama with a tokenizer trained on the world's own text (so its words are tokens)."""
    class _Tok:  # a stand-in with the chat template, to render the corpus before the tokenizer exists
        chat_template, eos_token, eos_token_id = CHAT_TEMPLATE, "<|im_end|>", 0

        def apply_chat_template(self, messages, tools=None, tokenize=False, add_generation_prompt=False):
            from jinja2 import Template
            return Template(CHAT_TEMPLATE).render(messages=messages, add_generation_prompt=add_generation_prompt)

        def encode(self, text, add_special_tokens=False):
            return [0] * len(text)

    renderer = ChatRenderer(_Tok(), COMPACT)
    rng = random.Random(seed)
    db = world.open()
    corpus = []
    for task in world.tasks["train"]:
        for view in views:
            corpus += play_demo(world, task, view, renderer, demonstrate(task, looked_up(world, db, task), rng, s.p_break, COMPACT))[1]
    tokenizer = train_tokenizer(corpus, vocab_size=s.vocab)
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                         bos_token_id=None, **{**TINY_CONFIG, "max_position_embeddings": 1024})
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    path = out / "tiny-model"
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def copy_batch(tokenizer, rng: random.Random, n: int = 32) -> list[Trajectory]:
    """Random strings (digits more often than not) that come back after some noise; only the
    repeat after its first token is trained, so the only way to lower the loss is to copy."""
    digits = [i for i in range(len(tokenizer)) if tokenizer.decode([i]).strip().isdigit()]
    first = len(tokenizer.all_special_ids)
    out = []
    for _ in range(n):
        x = [rng.choice(digits) if rng.random() < 0.6 else rng.randrange(first, len(tokenizer)) for _ in range(rng.randint(4, 14))]
        pre, noise = ([rng.randrange(first, len(tokenizer)) for _ in range(rng.randint(lo, hi))] for lo, hi in ((0, 8), (1, 10)))
        tokens = pre + x + noise + x
        mask = [0] * (len(tokens) - len(x) + 1) + [1] * (len(x) - 1)
        out.append(Trajectory(tokens, mask, [0.0] * len(tokens)))
    return out


def train_steps(model, batches, steps: int, lr: float, pad_id: int, tag: str) -> None:
    """``steps`` optimizer steps with the SFT loss on ``batches()`` (advantage 1 on sampled tokens)."""
    cfg = OptimConfig(lr=lr, steps=steps, warmup_steps=min(20, steps // 10), schedule="linear")
    optimizer, scheduler = make_optimizer(model, cfg)
    for step in range(steps):
        batch = batches()
        metrics = update(model, optimizer, collate(batch, [1.0] * len(batch), pad_id), LossSettings(), cfg)
        scheduler.step()
        if step % 50 == 0 or step == steps - 1:
            print(f"{tag} step {step} loss {metrics['loss']:.3f}", flush=True)


def rl_job(out: Path, s: Settings, view: str, seed: int) -> Path:
    path = out / f"rl-{view}.toml"
    path.write_text(f"""# RL on the retail world from the SFT model (written by rlft.tasks.world_demo)
[model]
path = "sft"
max_length = 1024

[world]
name = "retail"
view = "{view}"
instructions = false
require_reads = true     # the policy's "look the order up first": denying blindly is not a success
max_turns = 4
tool_format = "compact"

[algorithm]
name = "grpo"
prompts_per_step = {s.prompts_per_step}
group_size = {s.group_size}

[sampling]
max_new_tokens = 64
temperature = {s.rl_temperature}

[optim]
lr = {s.rl_lr}
steps = {s.rl_steps}
warmup_steps = 3

[eval]
every = {s.eval_every}
size = {s.eval_size}

[run]
out = "rl-{view}"
seed = {seed}
progress = false
""")
    return path


def held_out(job_path: Path, model_dir: Path, tag: str) -> dict:
    job = load_job(job_path, [f"model.path={model_dir}"])
    model = load_model(model_dir, device=torch.device("cpu"), dtype=torch.float32, trainable=False)
    rollout = WorldRollout(job)
    metrics = rollout.evaluate(HFSampler(model, load_tokenizer(model_dir)), SamplingParams(max_new_tokens=64, temperature=0.0), 0)
    print(tag, json.dumps(metrics), flush=True)
    return metrics


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for view, r in results["views"].items():
        steps = [0] + [c["step"] for c in r["curve"]]
        for ax, key in zip(axes, ("pass@1", "violation_rate")):
            ax.plot(steps, [r["sft"][key]] + [c[key] for c in r["curve"]], "-o", markersize=4, label=f"{view} view")
    for ax, title in zip(axes, ("held-out task success (pass@1, greedy)", "held-out policy violations")):
        ax.set_title(title)
        ax.set_xlabel("RL step (0 = the SFT model)")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def sft_model(out: Path, world, views: list, s: Settings, seed: int) -> None:
    """Build, copy-pretrain and SFT the model into OUT/sft."""
    model_dir = build_model(out, world, views, s, seed)
    tokenizer = load_tokenizer(model_dir)
    model = load_model(model_dir, device=torch.device("cpu"), dtype=torch.float32)
    renderer = ChatRenderer(tokenizer, COMPACT)
    examples = [t for view in views for t in demos(world, view, renderer, s, seed)]
    print(f"{len(examples)} demonstrations, mean {sum(len(t.tokens_T) for t in examples) / len(examples):.0f} tokens; "
          f"demonstrator success {sum(t.reward for t in examples) / len(examples):.1%}", flush=True)
    rng = random.Random(seed)
    train_steps(model, lambda: copy_batch(tokenizer, rng), s.copy_steps, s.copy_lr, tokenizer.pad_token_id, "copy")
    train_steps(model, lambda: rng.sample(examples, s.sft_batch) + copy_batch(tokenizer, rng, s.sft_copy), s.sft_steps,
                s.sft_lr, tokenizer.pad_token_id, "sft")
    model.save_pretrained(out / "sft")
    tokenizer.save_pretrained(out / "sft")


def main(argv: list[str] | None = None) -> dict:
    from rlft import train_rl

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="runs/world")
    p.add_argument("--views", default="minimal,full", help="comma-separated views; SFT sees all, RL runs once per view")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fast", action="store_true")
    p.add_argument("--plot", default="", help="also save the plot here (e.g. docs/world-curves.png)")
    args = p.parse_args(argv)
    s, out = (FAST if args.fast else FULL), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    world = load_world("retail")
    names = args.views.split(",")
    results_path = out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {"settings": vars(s), "views": {}}
    t0 = time.time()
    if not (out / "sft" / "config.json").exists():
        sft_model(out, world, [world.view(v) for v in names], s, args.seed)
        results["sft_seconds"] = time.time() - t0
    for view in names:
        t1 = time.time()
        job = rl_job(out, s, view, args.seed)
        r = {"sft": held_out(job, out / "sft", f"{view} view, after SFT")}
        summary = train_rl.train(load_job(job))
        rows = [json.loads(line) for line in (out / f"rl-{view}" / "metrics.jsonl").read_text().splitlines()]
        r["curve"] = [{"step": x["step"], **{k[5:]: v for k, v in x.items() if k.startswith("eval/")}} for x in rows if "eval/pass@1" in x]
        r["train_pass_rate"] = [x["pass_rate"] for x in rows if "pass_rate" in x]
        r["rl"] = {k[5:]: v for k, v in summary.items() if k.startswith("eval/")}
        r["rl_seconds"] = time.time() - t1
        print(f"{view} view, after RL", json.dumps(r["rl"]), flush=True)
        results["views"][view] = r
        results_path.write_text(json.dumps(results, indent=2, default=str) + "\n")
    plot(results, out / "world-curves.png")
    if args.plot:
        plot(results, Path(args.plot))
    return results


if __name__ == "__main__":
    main()
