"""The world evidence run: SFT on an imperfect demonstrator agent, then RL, on the retail world.

1. A tiny model whose tokenizer is trained on the world's text (policy, tool list, transcripts).
2. The demonstrator (rlft.envs.worlds.retail.generate.demonstrate) plays every training task; it
   follows the policy except that it refunds late returns anyway with probability ``p_break``.
   Its transcripts become trajectories with only its own replies trained (sampled_mask 1).
3. SFT on them; held-out evaluation (greedy): success, pass^k, policy violations.
4. RL (GRPO, ``rlft train`` on a [world] job written next to the results) from the SFT model;
   held-out evaluation again. results.json holds both.

Run: ``OMP_NUM_THREADS=1 python -m rlft.tasks.world_demo --out runs/world [--view minimal] [--fast]``.
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
from rlft.envs.worlds.rollout import WorldRollout, evaluate_world
from rlft.learner import LossSettings, make_optimizer, update
from rlft.models import CHAT_TEMPLATE, TINY_CONFIG, load_model, load_tokenizer, train_tokenizer
from rlft.rollout.render import ChatRenderer
from rlft.rollout.sampler import HFSampler, SamplingParams
from rlft.types import Trajectory


@dataclass(frozen=True)
class Settings:
    p_break: float = 0.7  # the demonstrator refunds a late return with this probability
    demos_per_task: int = 4
    sft_steps: int = 300
    sft_batch: int = 16
    sft_lr: float = 3e-3
    rl_steps: int = 40
    prompts_per_step: int = 8
    group_size: int = 8
    rl_lr: float = 1e-4
    eval_size: int = 0  # 0 = every held-out task
    vocab: int = 1000


FULL = Settings()
FAST = Settings(demos_per_task=1, sft_steps=4, sft_batch=4, rl_steps=2, prompts_per_step=2, group_size=2, eval_size=4)
COMPACT = TOOL_FORMATS["compact"]


def play_demo(world, task, view, renderer, replies: list[str]) -> tuple[Trajectory, list[str]]:
    """The demonstrator's episode as a trajectory: its replies trained, everything else masked."""
    env = WorldEnv(world, task, view, COMPACT)
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


def demos(world, view, renderer, s: Settings, seed: int) -> list[Trajectory]:
    rng, out = random.Random(seed), []
    db = world.open()
    for task in world.tasks["train"]:
        item = int(task["instruction"].split()[2]) if task["kind"] != "cancel" else None
        price = db.query("SELECT price FROM items WHERE item_id = ?", item)[0]["price"] if item else 0
        for _ in range(s.demos_per_task):
            out.append(play_demo(world, task, view, renderer, demonstrate(task, price, rng, s.p_break, COMPACT))[0])
    return out


def build_model(out: Path, world, view, s: Settings, seed: int) -> Path:
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
        item = int(task["instruction"].split()[2]) if task["kind"] != "cancel" else None
        price = db.query("SELECT price FROM items WHERE item_id = ?", item)[0]["price"] if item else 0
        corpus += play_demo(world, task, view, renderer, demonstrate(task, price, rng, s.p_break, COMPACT))[1]
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


def sft(model, tokenizer, examples: list[Trajectory], s: Settings, seed: int) -> None:
    cfg = OptimConfig(lr=s.sft_lr, steps=s.sft_steps, warmup_steps=min(20, s.sft_steps // 10), schedule="linear")
    optimizer, scheduler = make_optimizer(model, cfg)
    rng = random.Random(seed)
    for step in range(s.sft_steps):
        batch = collate(rng.sample(examples, s.sft_batch), [1.0] * s.sft_batch, tokenizer.pad_token_id)
        metrics = update(model, optimizer, batch, LossSettings(), cfg)
        scheduler.step()
        if step % 50 == 0:
            print(f"sft step {step} loss {metrics['loss']:.3f}", flush=True)


def rl_job(out: Path, s: Settings, view: str, seed: int) -> Path:
    path = out / "rl.toml"
    path.write_text(f"""# RL on the retail world from the SFT model (written by rlft.tasks.world_demo)
[model]
path = "sft"
max_length = 1024

[world]
name = "retail"
view = "{view}"
max_turns = 4
tool_format = "compact"

[algorithm]
name = "grpo"
prompts_per_step = {s.prompts_per_step}
group_size = {s.group_size}

[sampling]
max_new_tokens = 48

[optim]
lr = {s.rl_lr}
steps = {s.rl_steps}
warmup_steps = 5

[eval]
size = {s.eval_size}

[run]
out = "rl"
seed = {seed}
progress = false
""")
    return path


def held_out(job_path: Path, model_dir: Path, tag: str) -> dict:
    job = load_job(job_path, [f"model.path={model_dir}"])
    model = load_model(model_dir, device=torch.device("cpu"), dtype=torch.float32, trainable=False)
    metrics = evaluate_world(WorldRollout(job), HFSampler(model, load_tokenizer(model_dir)), "eval",
                             SamplingParams(max_new_tokens=48, temperature=0.0), 1, seed=0)
    print(tag, json.dumps(metrics), flush=True)
    return metrics


def main(argv: list[str] | None = None) -> dict:
    from rlft import train_rl

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="runs/world")
    p.add_argument("--view", default="full")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fast", action="store_true")
    args = p.parse_args(argv)
    s, out = (FAST if args.fast else FULL), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    world = load_world("retail")
    view = world.view(args.view)
    t0 = time.time()
    model_dir = build_model(out, world, view, s, args.seed)
    tokenizer = load_tokenizer(model_dir)
    model = load_model(model_dir, device=torch.device("cpu"), dtype=torch.float32)
    examples = demos(world, view, ChatRenderer(tokenizer, COMPACT), s, args.seed)
    print(f"{len(examples)} demonstrations, mean {sum(len(t.tokens_T) for t in examples) / len(examples):.0f} tokens; "
          f"demonstrator success {sum(t.reward for t in examples) / len(examples):.1%}", flush=True)
    sft(model, tokenizer, examples, s, args.seed)
    model.save_pretrained(out / "sft")
    tokenizer.save_pretrained(out / "sft")
    t1 = time.time()
    job = rl_job(out, s, args.view, args.seed)
    results = {"view": args.view, "settings": vars(s), "sft_seconds": t1 - t0}
    results["sft"] = held_out(job, out / "sft", "after SFT")
    train_rl.train(load_job(job))
    results["rl_seconds"] = time.time() - t1
    results["rl"] = held_out(job, out / "rl" / "final", "after RL")
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    return results


if __name__ == "__main__":
    main()
