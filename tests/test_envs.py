"""Tools, tool-call formats and the multi-turn episode loop (rlft.envs, rlft.rollout.runner).

Run: OMP_NUM_THREADS=1 python -m pytest -q tests/test_envs.py
"""

from typing import Literal

import pytest
import torch

from rlft.data import collate
from rlft.envs.base import StepResult
from rlft.envs.tools import TOOL_FORMATS, ToolCall, ToolCallError, call_tool, pick_format, tool_schema
from rlft.rollout.render import ChatRenderer
from rlft.rollout.runner import Limits, run_episodes
from rlft.rollout.sampler import Completion, HFSampler, SamplingParams
from rlft.types import Trajectory


def add(db: object, a: int, b: int = 0, mode: Literal["plain", "loud"] = "plain") -> int:
    """Add two numbers.

    Args:
        a: the first number
        b: the second number,
            zero when left out
        mode: how to say it
    """
    if a < 0:
        raise ValueError("negative numbers are not allowed")
    return a + b


def test_schema_comes_from_signature_and_docstring():
    s = tool_schema(add, bound=("db",))
    assert s == {"type": "function", "function": {
        "name": "add", "description": "Add two numbers.",
        "parameters": {"type": "object", "required": ["a"], "properties": {
            "a": {"type": "integer", "description": "the first number"},
            "b": {"type": "integer", "description": "the second number, zero when left out"},
            "mode": {"type": "string", "enum": ["plain", "loud"], "description": "how to say it"},
        }},
    }}


def test_compact_format_parses_renders_and_reports_mistakes():
    fmt = TOOL_FORMATS["compact"]
    call = fmt.parse('call add(a=1, b=2, mode="loud")\nthanks')
    assert call == ToolCall("add", {"a": 1, "b": 2, "mode": "loud"})
    assert fmt.parse(fmt.render(call)) == call
    assert fmt.parse("The refund is 12.50.") is None  # a plain message
    assert fmt.parse("a=1 is small\ncall add(a=1)") == ToolCall("add", {"a": 1})  # a note, then the call
    assert fmt.parse("a=1 is small\nso: call add(a=1)") is None  # the call must start its line
    for bad in ["call add(1, 2)", "call add(a=1", "call add(a=x)", "call 3"]:
        with pytest.raises(ToolCallError):
            fmt.parse(bad)


def test_hermes_format():
    fmt = TOOL_FORMATS["hermes"]
    call = fmt.parse('<tool_call>\n{"name": "add", "arguments": {"a": 1}}\n</tool_call>')
    assert call == ToolCall("add", {"a": 1})
    assert fmt.parse(fmt.render(call)) == call
    with pytest.raises(ToolCallError, match="not valid JSON"):
        fmt.parse("<tool_call>{name: add}</tool_call>")


def test_tool_errors_become_messages():
    tools, schemas = {"add": add}, {"add": tool_schema(add, bound=("db",))}
    assert call_tool(tools, schemas, ToolCall("add", {"a": 2, "b": 3}), db=None) == (5, None)
    cases = [
        (ToolCall("mul", {"a": 1}), "no tool named 'mul'"),
        (ToolCall("add", {"a": "two"}), "a must be integer"),
        (ToolCall("add", {"b": 1}), "add needs a"),
        (ToolCall("add", {"a": 1, "c": 1}), "no argument 'c'"),
        (ToolCall("add", {"a": -1}), "ValueError: negative numbers"),
        (ToolCall("add", {"a": 1, "mode": "quiet"}), "must be one of"),
    ]
    for call, msg in cases:
        result, error = call_tool(tools, schemas, call, db=None)
        assert result is None and msg in error, (call, error)


def test_pick_format(tiny):
    _, tok = tiny
    assert pick_format("auto", tok) is TOOL_FORMATS["compact"]  # the tiny template has no tools


# --- episodes ----------------------------------------------------------------------------------


class AddEnv:
    """Asks for 2+3; the policy may call add; done when it states 5 or after an error."""

    tools = [tool_schema(add, bound=("db",))]

    def __init__(self, fmt):
        self.fmt = fmt

    def initial_observation(self):
        return [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+3?"}]

    def step(self, action):
        try:
            call = self.fmt.parse(action)
        except ToolCallError as e:
            return StepResult([{"role": "tool", "content": f"error: {e}"}])
        if call is None:
            return StepResult(reward=float(action.strip() == "5"), done=True)
        if call.name == "boom":
            raise RuntimeError("env bug")
        result, error = call_tool({"add": add}, {"add": self.tools[0]}, call, db=None)
        return StepResult([{"role": "tool", "content": error or str(result)}])


class ScriptedSampler:
    """Replies from a script, one per call, the same for every row; logprob -0.5 per token."""

    version = 0

    def __init__(self, tokenizer, replies, stop_reasons=None):
        self.tok, self.replies, self.calls = tokenizer, list(replies), 0
        self.stop_reasons = stop_reasons or ["eos"] * len(replies)

    def generate(self, prompts, n, params, generator):
        text, reason = self.replies[self.calls], self.stop_reasons[self.calls]
        self.calls += 1
        toks = self.tok.encode(text, add_special_tokens=False) + ([self.tok.eos_token_id] if reason == "eos" else [])
        return [[Completion(toks, [-0.5] * len(toks), text, reason) for _ in range(n)] for _ in prompts]


def play(tiny, replies, stop_reasons=None, max_turns=8, max_length=1024, G=2):
    _, tok = tiny
    fmt = TOOL_FORMATS["compact"]
    renderer = ChatRenderer(tok, fmt)
    sampler = ScriptedSampler(tok, replies, stop_reasons)
    groups, _ = run_episodes(sampler, renderer, [[AddEnv(fmt) for _ in range(G)]], [{}],
                             SamplingParams(max_new_tokens=16), Limits(max_turns, max_length), torch.Generator())
    return groups[0].trajectories_G, renderer


def test_episode_interleaves_sampled_and_env_tokens(tiny):
    _, tok = tiny
    (t, _), renderer = play(tiny, ["call add(a=2, b=3)", "call add(a=two)", "5"])
    assert t.stop_reason == "env_done" and t.reward == 1.0 and t.metadata["turns"] == 3
    # the token list is exactly the chat template's rendering of the whole conversation
    history = [
        {"role": "system", "content": "Be brief.\n\n" + TOOL_FORMATS["compact"].describe(AddEnv.tools)},
        {"role": "user", "content": "2+3?"},
        {"role": "assistant", "content": "call add(a=2, b=3)"},
        {"role": "tool", "content": "5"},
        {"role": "assistant", "content": "call add(a=two)"},
        {"role": "tool", "content": "error: argument values must be literals (numbers, \"strings\", True/False), got two"},
        {"role": "assistant", "content": "5"},
    ]
    full = renderer.text(history, [], False)
    assert tok.decode(t.tokens_T) == full.rstrip("\n")  # the closing newline after the last EOS is not sampled
    # sampled tokens are exactly the three replies and their EOS
    sampled = [x for x, m in zip(t.tokens_T, t.sampled_mask_T) if m]
    assert tok.decode(sampled) == "call add(a=2, b=3)<|im_end|>call add(a=two)<|im_end|>5<|im_end|>"
    assert all(lp == (-0.5 if m else 0.0) for lp, m in zip(t.sampler_logp_T, t.sampled_mask_T))
    assert "[tool] error: argument values must be literals" in t.text


@pytest.mark.parametrize("replies,reasons,kw,stop", [
    (["call add(a=1)"] * 3, None, {"max_turns": 3}, "max_turns"),
    (["call add(a=1"], ["length"], {}, "length"),
    (["call add(a=1)"] * 9, None, {"max_length": 160}, "length"),
    (["call boom()"], None, {}, "error"),
])
def test_stop_reasons(tiny, replies, reasons, kw, stop):
    (t, _), _ = play(tiny, replies, reasons, **kw)
    assert t.stop_reason == stop
    assert t.errored == (stop == "error") and t.reward == 0.0
    if stop == "max_turns":
        assert t.metadata["turns"] == 3


def test_only_sampled_tokens_are_trained():
    """A hand-built three-turn token list: prompt (0), reply (1), tool text (0), reply (1)."""
    tokens = [10, 11, 12, 20, 21, 30, 31, 32, 40, 41]
    mask = [0, 0, 0, 1, 1, 0, 0, 0, 1, 1]
    t = Trajectory(tokens, mask, [0.0, 0.0, 0.0, -1.0, -1.0, 0.0, 0.0, 0.0, -2.0, -2.0])
    u = Trajectory(tokens[:3] + [22, 0], [0, 0, 0, 1, 1], [0.0] * 5)
    batch = collate([t, u], [1.0, -1.0], pad_id=0)
    assert batch.prefix_ids_PT.tolist() == [[10, 11, 12]]  # the shared prompt, stored once
    assert batch.input_ids_BT.tolist() == [[20, 21, 30, 31, 32, 40, 41], [22, 0, 0, 0, 0, 0, 0]]
    assert batch.loss_mask_BT.tolist() == [[1, 1, 0, 0, 0, 1, 1], [1, 1, 0, 0, 0, 0, 0]]
    assert batch.attention_mask_BT.tolist() == [[1] * 7, [1, 1, 0, 0, 0, 0, 0]]


def test_real_sampler_plays_episodes(tiny):
    model, tok = tiny
    fmt = TOOL_FORMATS["compact"]
    sampler = HFSampler(model, tok)
    envs_P_G = [[AddEnv(fmt) for _ in range(3)] for _ in range(2)]
    groups, times = run_episodes(sampler, ChatRenderer(tok, fmt), envs_P_G, [{}, {}],
                                 SamplingParams(max_new_tokens=6, temperature=1.0), Limits(3, 1024),
                                 torch.Generator().manual_seed(0))
    for t in (t for g in groups for t in g.trajectories_G):
        assert t.stop_reason in ("env_done", "length", "max_turns")
        assert sum(t.sampled_mask_T) >= 1 and len(t.tokens_T) == len(t.sampled_mask_T)
    assert times["time/sample"] > 0


def test_templates_that_take_tools_get_hermes_calls(tiny):
    import copy

    from rlft.models import CHAT_TEMPLATE

    _, tok = tiny
    tok = copy.deepcopy(tok)
    tok.chat_template = ("{% if tools %}<|im_start|>system\nTools: {% for t in tools %}{{ t['function']['name'] }} "
                         "{% endfor %}<|im_end|>\n{% endif %}" + CHAT_TEMPLATE)
    fmt = pick_format("auto", tok)
    assert fmt is TOOL_FORMATS["hermes"]
    renderer = ChatRenderer(tok, fmt)
    sampler = ScriptedSampler(tok, ['<tool_call>{"name": "add", "arguments": {"a": 2, "b": 3}}</tool_call>', "5"])
    groups, _ = run_episodes(sampler, renderer, [[AddEnv(fmt)]], [{}], SamplingParams(max_new_tokens=16),
                             Limits(4, 1024), torch.Generator())
    t = groups[0].trajectories_G[0]
    assert t.reward == 1.0 and t.stop_reason == "env_done"
    assert tok.decode(t.tokens_T).startswith("<|im_start|>system\nTools: add <|im_end|>")
    assert "[tool] 5" in t.text and t.text.endswith("[assistant] 5")  # the last reply is in the transcript too
