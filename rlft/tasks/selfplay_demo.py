"""The self-play evidence run: tic-tac-toe learnt by playing both sides, judged against a random
player and the perfect solver.

1. A tiny model whose tokenizer is trained on game transcripts.
2. SFT on games of a *rules-only* player (uniformly random legal moves, both sides trained):
   the model learns the format and which cells are free, nothing about strategy.
3. Self-play RL (GRPO, ``rlft train`` on the [game] job written next to the results): every
   game is played by the policy on both sides and each side is rewarded by the outcome (win 1,
   draw 0.5, loss 0); evaluation every few steps against the random player and the solver,
   the policy greedy, half the games as x and half as o.
4. results.json, and a plot of win/draw rates against both opponents across training.

Run: ``OMP_NUM_THREADS=1 python -m rlft.tasks.selfplay_demo --out runs/selfplay [--fast]``.
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
from rlft.envs.games import tictactoe as ttt
from rlft.envs.games.env import GameEnv
from rlft.envs.tools import TOOL_FORMATS
from rlft.learner import LossSettings, make_optimizer, update
from rlft.models import TINY_CONFIG, load_model, load_tokenizer, train_tokenizer
from rlft.rollout.render import ChatRenderer
from rlft.types import Trajectory


@dataclass(frozen=True)
class Settings:
    demo_games: int = 2000
    sft_steps: int = 150
    sft_batch: int = 32
    sft_lr: float = 1e-3
    rl_steps: int = 60
    prompts_per_step: int = 8  # opening positions per step; 2 groups (one per side) each
    group_size: int = 8
    rl_lr: float = 3e-4
    eval_every: int = 10
    eval_games: int = 100


FULL = Settings()
FAST = Settings(demo_games=50, sft_steps=3, sft_batch=4, rl_steps=2, prompts_per_step=2, group_size=2,
                eval_every=1, eval_games=4)


def chatml(messages: list[dict]) -> str:
    return "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)


def random_game(rng: random.Random) -> tuple[str, list[str]]:
    """A start position (one of the self-play openings) and random legal replies to its end."""
    start = rng.choice(ttt.openings(2))
    board, replies = start, []
    while ttt.winner(board) is None:
        move = ttt.random_player(board, rng)
        replies.append(str(move))
        board = ttt.play(board, move)
    return start, replies


def demo(renderer: ChatRenderer, start: str, replies: list[str]) -> Trajectory:
    """A rules-only game as a trajectory: every reply (both sides) trained, the boards masked."""
    env = GameEnv(ttt, start)
    history, tokens = renderer.initial(env.initial_observation(), [])
    mask, eos = [0] * len(tokens), renderer.tokenizer.eos_token_id
    for reply in replies:
        ids = renderer.encode(reply) + [eos]
        tokens, mask = tokens + ids, mask + [1] * len(ids)
        result = env.step(reply)
        if result.done:
            break
        between = renderer.between(history, reply, result.messages, [], True)
        history = [*history, {"role": "assistant", "content": reply}, *result.messages]
        tokens, mask = tokens + between, mask + [0] * len(between)
    return Trajectory(tokens, mask, [0.0] * len(tokens))


def build_model(out: Path, games: list[tuple[str, list[str]]], seed: int) -> Path:
    corpus = []
    for start, replies in games[:300]:
        env = GameEnv(ttt, start)
        msgs = env.initial_observation()
        for reply in replies:
            r = env.step(reply)
            msgs += [{"role": "assistant", "content": reply}, *r.messages]
        corpus.append(chatml(msgs))
    tokenizer = train_tokenizer(corpus, vocab_size=300)
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                         bos_token_id=None, **{**TINY_CONFIG, "max_position_embeddings": 512})
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    path = out / "tiny-model"
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def sft(model, examples: list[Trajectory], pad_id: int, s: Settings, seed: int) -> None:
    cfg = OptimConfig(lr=s.sft_lr, steps=s.sft_steps, warmup_steps=min(10, s.sft_steps), schedule="linear")
    optimizer, scheduler = make_optimizer(model, cfg)
    rng = random.Random(seed)
    for step in range(s.sft_steps):
        metrics = update(model, optimizer, collate(rng.sample(examples, s.sft_batch), [1.0] * s.sft_batch, pad_id),
                         LossSettings(), cfg)
        scheduler.step()
        if step % 50 == 0:
            print(f"sft step {step} loss {metrics['loss']:.3f}", flush=True)


def rl_job(out: Path, s: Settings, seed: int) -> Path:
    path = out / "rl.toml"
    path.write_text(f"""# Self-play RL on tic-tac-toe from the SFT model (written by rlft.tasks.selfplay_demo)
[model]
path = "sft"
max_length = 512

[game]
name = "tictactoe"
openings = 2
opponents = ["random", "solver"]
eval_games = {s.eval_games}

[algorithm]
name = "grpo"
prompts_per_step = {s.prompts_per_step}
group_size = {s.group_size}

[sampling]
max_new_tokens = 3
temperature = 1.0

[optim]
lr = {s.rl_lr}
steps = {s.rl_steps}
warmup_steps = 3

[eval]
every = {s.eval_every}

[run]
out = "rl"
seed = {seed}
progress = false
""")
    return path


def plot(rows: list[dict], before: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    evals = [(0, before)] + [(r["step"], {k[5:]: v for k, v in r.items() if k.startswith("eval/")}) for r in rows
                             if "eval/solver/draw" in r]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
    for ax, opp in zip(axes, ("random", "solver")):
        for k, style in (("win", "-o"), ("draw", "-s"), ("loss", "-^")):
            ax.plot([s for s, _ in evals], [m[f"{opp}/{k}"] for _, m in evals], style, label=k, markersize=4)
        ax.set_title(f"against the {opp} player" if opp == "random" else "against the perfect solver")
        ax.set_xlabel("self-play RL step (0 = after SFT on random legal moves)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("fraction of games (policy greedy)")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> dict:
    from rlft import train_rl
    from rlft.envs.games.rollout import GameRollout
    from rlft.rollout.sampler import HFSampler, SamplingParams

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="runs/selfplay")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fast", action="store_true")
    p.add_argument("--plot", default="", help="also save the plot here (e.g. docs/selfplay.png)")
    args = p.parse_args(argv)
    s, out = (FAST if args.fast else FULL), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    rng = random.Random(args.seed)
    games = [random_game(rng) for _ in range(s.demo_games)]
    model_dir = build_model(out, games, args.seed)
    tokenizer = load_tokenizer(model_dir)
    model = load_model(model_dir, device=torch.device("cpu"), dtype=torch.float32)
    renderer = ChatRenderer(tokenizer, TOOL_FORMATS["compact"])
    examples = [demo(renderer, start, replies) for start, replies in games]
    print(f"{len(examples)} rules-only games, mean {sum(len(t.tokens_T) for t in examples) / len(examples):.0f} tokens", flush=True)
    sft(model, examples, tokenizer.pad_token_id, s, args.seed)
    model.save_pretrained(out / "sft")
    tokenizer.save_pretrained(out / "sft")
    job_path = rl_job(out, s, args.seed)
    job = load_job(job_path)
    model.eval()
    before = GameRollout(job).evaluate(HFSampler(model, tokenizer), SamplingParams(max_new_tokens=3, temperature=0.0), args.seed)
    print("after SFT", json.dumps(before), flush=True)
    t1 = time.time()
    summary = train_rl.train(job)
    rows = [json.loads(line) for line in (out / "rl" / "metrics.jsonl").read_text().splitlines()]
    after = {k[5:]: v for k, v in summary.items() if k.startswith("eval/") and k != "eval/seconds"}
    print("after RL", json.dumps(after), flush=True)
    results = {"settings": vars(s), "sft_seconds": t1 - t0, "rl_seconds": time.time() - t1, "sft": before, "rl": after,
               "curve": [{"step": r["step"], **{k[5:]: v for k, v in r.items() if k.startswith("eval/")}}
                         for r in rows if "eval/solver/draw" in r]}
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    plot(rows, before, out / "selfplay.png")
    if args.plot:
        plot(rows, before, Path(args.plot))
    return results


if __name__ == "__main__":
    main()
