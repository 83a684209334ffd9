"""Tools are plain typed Python functions; their schema comes from the signature and docstring.

    def get_order(db: sqlite3.Connection, order_id: int) -> dict:
        '''Look up an order and its items.

        Args:
            order_id: the order number, e.g. 1042
        '''

``tool_schema(get_order, bound=("db",))`` gives the OpenAI function-tool dict
``{"type": "function", "function": {"name", "description", "parameters": {JSON schema}}}``;
``bound`` parameters are supplied by the environment, never by the model.

**Tool-call formats** (``TOOL_FORMATS``), one per way a model writes a call:

- ``compact`` (the default for tokenizers whose chat template knows nothing of tools, e.g. the
  built-in tiny model and SmolLM2-135M-Instruct): a reply with a line that is ``call`` followed
  by a Python-style call with keyword arguments and literal values; lines before it are the
  agent's notes (what it read, a thought), lines after it are ignored::

      status=delivered days_since_delivery=12
      call refund_item(order_id=1042, item=3, reason="damaged")

  A reply without such a line is a plain message to the user. The tools are listed in the
  system message in the same syntax (``get_order(order_id: int) - Look up an order``). It is
  short and regular, which is what a 1M-parameter model can learn: one keyword, one name,
  ``key=value`` pairs.
- ``hermes`` (chosen automatically when the chat template takes ``tools``, as Qwen2.5's does):
  ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``, with the schemas handed to
  ``tokenizer.apply_chat_template(..., tools=...)`` so the model sees them as it was trained to.

A malformed call, an unknown tool, bad arguments, or a tool that raises all come back to the
model as a tool message starting ``error:`` (``call_tool``); none of them ends the episode.
"""

from __future__ import annotations

import ast
import inspect
import json
import re
import types
import typing
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Literal, Sequence


class ToolCallError(ValueError):
    """A reply that tried to call a tool and got the syntax wrong; the message goes to the model."""


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: dict[str, Any]


# --- schemas from signatures -----------------------------------------------------------------

_JSON_TYPES = {int: "integer", float: "number", str: "string", bool: "boolean", dict: "object"}


def _json_type(hint: Any) -> dict:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint in _JSON_TYPES:
        return {"type": _JSON_TYPES[hint]}
    if origin is Literal:
        return {"type": _JSON_TYPES[type(args[0])], "enum": list(args)}
    if origin in (list, tuple, Sequence):
        return {"type": "array", **({"items": _json_type(args[0])} if args else {})}
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return _json_type(inner[0]) if len(inner) == 1 else {"anyOf": [_json_type(a) for a in inner]}
    raise TypeError(f"tool parameter type {hint!r} has no JSON schema; use int, float, str, bool, list or Literal")


def _doc_args(doc: str) -> tuple[str, dict[str, str]]:
    """(description, {param: description}) from a Google-style docstring."""
    doc = inspect.cleandoc(doc or "")
    head, _, rest = doc.partition("Args:")
    params, name = {}, None
    for line in rest.splitlines():
        if m := re.match(r"\s*(\w+)\s*(?:\([^)]*\))?:\s*(.*)", line):
            name = m.group(1)
            params[name] = m.group(2).strip()
        elif name and line.strip():
            params[name] += " " + line.strip()
    return " ".join(head.split()), params


def tool_schema(fn: Callable, bound: Sequence[str] = ()) -> dict:
    """The OpenAI function-tool schema of ``fn``; parameters named in ``bound`` are left out."""
    description, param_docs = _doc_args(fn.__doc__ or "")
    hints = typing.get_type_hints(fn)
    props, required = {}, []
    for p in inspect.signature(fn).parameters.values():
        if p.name in bound:
            continue
        if p.name not in hints:
            raise TypeError(f"tool {fn.__name__}: parameter {p.name!r} needs a type annotation")
        props[p.name] = {**_json_type(hints[p.name]), **({"description": param_docs[p.name]} if p.name in param_docs else {})}
        if p.default is inspect.Parameter.empty:
            required.append(p.name)
    return {
        "type": "function",
        "function": {
            "name": fn.__name__,
            "description": description,
            "parameters": {"type": "object", "properties": props, "required": required},
        },
    }


# --- calling ---------------------------------------------------------------------------------

_COERCE = {"integer": (int,), "number": (int, float), "string": (str,), "boolean": (bool,), "array": (list, tuple)}


def check_arguments(schema: dict, arguments: dict) -> None:
    """Raise ToolCallError, worded for the model, when ``arguments`` don't fit ``schema``."""
    fn = schema["function"]
    props, required = fn["parameters"]["properties"], fn["parameters"]["required"]
    for k, v in arguments.items():
        if k not in props:
            raise ToolCallError(f"{fn['name']} has no argument {k!r}; its arguments: {', '.join(props)}")
        want = _COERCE.get(props[k].get("type", ""), (object,))
        if not isinstance(v, want) or (isinstance(v, bool) and bool not in want):
            raise ToolCallError(f"{fn['name']}: {k} must be {props[k].get('type')}, got {v!r}")
        if "enum" in props[k] and v not in props[k]["enum"]:
            raise ToolCallError(f"{fn['name']}: {k} must be one of {props[k]['enum']}, got {v!r}")
    missing = [k for k in required if k not in arguments]
    if missing:
        raise ToolCallError(f"{fn['name']} needs {', '.join(missing)}")


def call_tool(tools: dict[str, Callable], schemas: dict[str, dict], call: ToolCall, **bound) -> tuple[Any, str | None]:
    """(result, None) or (None, error text for the model). Never raises for the model's mistakes
    or the tool's own errors: both go back to the model as a message."""
    if call.name not in tools:
        return None, f"no tool named {call.name!r}; tools: {', '.join(tools)}"
    try:
        check_arguments(schemas[call.name], call.arguments)
        return tools[call.name](**bound, **call.arguments), None
    except Exception as e:  # a tool's error is an observation, not a crash
        return None, f"{type(e).__name__}: {e}" if not isinstance(e, ToolCallError) else str(e)


# --- formats ---------------------------------------------------------------------------------


def _literal(node: ast.expr) -> Any:
    try:
        return ast.literal_eval(node)
    except ValueError:
        raise ToolCallError(f"argument values must be literals (numbers, \"strings\", True/False), got {ast.unparse(node)}") from None


class CompactFormat:
    """``call name(key=value, ...)`` on a line of its own; lines before it are the agent's notes."""

    template_tools = False  # tools are described in the system message, not by the template

    def parse(self, text: str) -> ToolCall | None:
        lines = [line.strip() for line in text.strip().split("\n")]
        line = next((line for line in lines if line == "call" or line.startswith("call ")), None)
        if line is None:
            return None
        src = line[len("call"):].strip()
        try:
            with warnings.catch_warnings():  # the model's typos ("order_id=12a") are its errors, not ours to print
                warnings.simplefilter("ignore", SyntaxWarning)
                node = ast.parse(src, mode="eval").body
        except SyntaxError:
            raise ToolCallError(f"cannot parse {src!r}; write: call name(key=value, ...)") from None
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
            raise ToolCallError(f"expected name(key=value, ...), got {src!r}")
        if node.args:
            raise ToolCallError(f"{node.func.id}: pass arguments by name, e.g. {node.func.id}(order_id=1)")
        if any(k.arg is None for k in node.keywords):
            raise ToolCallError("no **kwargs; write each argument as key=value")
        return ToolCall(node.func.id, {k.arg: _literal(k.value) for k in node.keywords})

    def render(self, call: ToolCall) -> str:
        args = ", ".join(f"{k}={v!r}" if not isinstance(v, str) else f"{k}={json.dumps(v)}" for k, v in call.arguments.items())
        return f"call {call.name}({args})"

    def describe(self, schemas: Sequence[dict]) -> str:
        lines = ["Tools (reply with one line: call name(key=value, ...)):"]
        for s in schemas:
            fn = s["function"]
            params = ", ".join(f"{k}: {v.get('type', 'any')}" for k, v in fn["parameters"]["properties"].items())
            lines.append(f"{fn['name']}({params}) - {fn['description']}")
        return "\n".join(lines)


class HermesFormat:
    """``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` (Qwen2.5, Hermes)."""

    template_tools = True

    def parse(self, text: str) -> ToolCall | None:
        if "<tool_call>" not in text:
            return None
        m = re.search(r"<tool_call>(.*?)(?:</tool_call>|$)", text, re.S)
        try:
            obj = json.loads(m.group(1).strip())
        except json.JSONDecodeError as e:
            raise ToolCallError(f"the tool call is not valid JSON ({e})") from None
        if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
            raise ToolCallError('expected {"name": "...", "arguments": {...}}')
        args = obj.get("arguments", {})
        if isinstance(args, str):
            try:
                args = json.loads(args)
            except json.JSONDecodeError:
                raise ToolCallError("arguments must be a JSON object") from None
        if not isinstance(args, dict):
            raise ToolCallError("arguments must be a JSON object")
        return ToolCall(obj["name"], args)

    def render(self, call: ToolCall) -> str:
        return "<tool_call>\n" + json.dumps({"name": call.name, "arguments": call.arguments}) + "\n</tool_call>"

    def describe(self, schemas: Sequence[dict]) -> str:
        return ""  # the chat template lists the tools


TOOL_FORMATS = {"compact": CompactFormat(), "hermes": HermesFormat()}


def pick_format(name: str, tokenizer) -> CompactFormat | HermesFormat:
    """``auto``: hermes when the tokenizer's chat template takes ``tools``, compact otherwise."""
    if name == "auto":
        template = tokenizer.chat_template or ""
        name = "hermes" if isinstance(template, str) and "tools" in template else "compact"
    if name not in TOOL_FORMATS:
        raise ValueError(f"unknown tool format {name!r}; valid: auto, {', '.join(TOOL_FORMATS)}")
    return TOOL_FORMATS[name]
