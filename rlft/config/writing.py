"""Writing a job back as TOML, and ``--help`` from the field docstrings."""

from __future__ import annotations

import ast
import dataclasses
import json
from pathlib import Path
from typing import Any

from rlft.config.sections import (
    LoraConfig,
    JudgeConfig,
    Job,
    SECTIONS,
)

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
    from rlft.config import sections

    tree = ast.parse(Path(sections.__file__).read_text(encoding="utf-8"))
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
