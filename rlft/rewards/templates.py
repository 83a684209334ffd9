"""Grader templates: ``{{item.field}}``, ``{{item.a.b}}``, ``{{sample.output_text}}``,
``{{sample.output_json.field}}``, ``{{sample.output_tools}}`` (OpenAI's grader templating).

A tag is ``{{ namespace.path }}``; the namespace is ``item`` (the dataset row) or ``sample`` (the
attempt: ``SAMPLE_FIELDS``); the path walks dict keys and list indices (``item.choices.0``).
Strings render as themselves, numbers with ``str``, None as "", anything else as JSON.

What is missing decides who is wrong. A missing *item* field is a data or spec bug: a
``KeyError`` naming the template and the fields the item has (the attempt is marked errored,
DESIGN.md §4). A missing part of the *sample's* JSON or tool calls is the model's doing: it
renders as "" and scores as whatever "" scores, so a model that stops emitting JSON is
penalised rather than hidden. Namespaces and sample fields are checked at job load
(``check_template``).
"""

from __future__ import annotations

import json
import re
from typing import Any, Callable

from rlft.config import ConfigError
from rlft.types import Sample

TAG = re.compile(r"\{\{(.*?)\}\}")

SAMPLE_FIELDS: dict[str, Callable[[Sample], Any]] = {
    "output_text": lambda s: s.output_text,
    "output_json": lambda s: s.output_json,
    "output_tools": lambda s: list(s.output_tools),
}
NAMESPACES = ("item", "sample")


def _parts(tag: str) -> list[str]:
    return [p.strip() for p in tag.strip().split(".")]


def check_template(template: str, where: str) -> None:
    """ConfigError unless every tag is ``item.<path>`` or ``sample.<known field>[.<path>]``."""
    stray = TAG.sub("", template)
    if "{{" in stray or "}}" in stray:
        raise ConfigError(f"{where} = {template!r}: unbalanced '{{{{' / '}}}}'; fix: write tags as {{{{item.field}}}}")
    for m in TAG.finditer(template):
        parts = _parts(m.group(1))
        ns = parts[0]
        if ns not in NAMESPACES or len(parts) < 2 or not all(parts):
            raise ConfigError(
                f"{where} = {template!r}: tag {m.group(0)!r} must be {{{{item.FIELD}}}} or {{{{sample.FIELD}}}} "
                f"(sample fields: {', '.join(SAMPLE_FIELDS)})"
            )
        if ns == "sample" and parts[1] not in SAMPLE_FIELDS:
            raise ConfigError(
                f"{where} = {template!r}: unknown sample field {parts[1]!r}; sample fields: {', '.join(SAMPLE_FIELDS)}"
            )


def _item_fields(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(str(k) for k in value if not str(k).startswith("_")) or "none"
    if isinstance(value, list):
        return f"a list of {len(value)} (use an index 0..{len(value) - 1})"
    return f"a {type(value).__name__}, which has no fields"


def _step(value: Any, key: str) -> tuple[bool, Any]:
    if isinstance(value, dict) and key in value:
        return True, value[key]
    if isinstance(value, list) and key.lstrip("-").isdigit() and -len(value) <= int(key) < len(value):
        return True, value[int(key)]
    return False, None


def lookup(tag: str, sample: Sample, item: dict, template: str = "") -> Any:
    """The value a tag (``"item.a.b"``) names; see the module docstring for what is missing."""
    ns, first, *rest = _parts(tag)
    if ns == "sample":
        value = SAMPLE_FIELDS[first](sample)
        for key in rest:
            found, value = _step(value, key)
            if not found:
                return None
        return value
    value, path = item, "item"
    for key in [first, *rest]:
        found, nxt = _step(value, key)
        if not found:
            where = f" ({item['_source']}:{item['_line']})" if "_source" in item and "_line" in item else ""
            raise KeyError(
                f"template {template or tag!r}: {path} has no field {key!r}{where}; "
                f"available fields of {path}: {_item_fields(value)}"
            )
        value, path = nxt, f"{path}.{key}"
    return value


def to_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return json.dumps(value, ensure_ascii=False)


def render(template: str, sample: Sample, item: dict) -> str:
    """The template with every tag replaced by its value's text."""
    return TAG.sub(lambda m: to_text(lookup(m.group(1), sample, item, template)), template)
