"""The ``calculate_output`` formula of a ``multi`` grader, parsed and evaluated safely.

A formula combines the scores of named sub-graders, as in OpenAI's multigrader:
``"0.8 * correct + 0.2 * format"``, ``"min(correct, 1 - length / 100)"``, ``"correct ^ 2"``.

It is never given to ``eval``. ``parse_formula`` parses it with ``ast`` (``^`` is rewritten to
``**`` first: in these formulas it means a power, as in OpenAI's) and walks the tree once,
accepting only

- numbers, and names of the sub-graders;
- ``+ - * / ** ^`` (binary), unary ``-`` and ``+``, parentheses;
- comparisons ``< <= > >= == !=`` (true = 1.0, false = 0.0), so a penalty can switch on;
- calls of the functions in ``FUNCTIONS`` by name, with positional arguments.

Anything else (attributes, subscripts, strings, lambdas, other calls, ``().__class__``...) is a
``ConfigError`` that names the formula, the offending piece and its position, at job load.
Evaluation walks the same tree with the ``EVAL`` table; every value is a float, so ``**`` is
float power (it overflows instead of building a huge integer).
"""

from __future__ import annotations

import ast
import math
import operator
from dataclasses import dataclass
from typing import Callable, Mapping

from rlft.config import ConfigError

# name -> (function, fewest args, most args)
FUNCTIONS: dict[str, tuple[Callable[..., float], int, int]] = {
    "min": (min, 1, 64),
    "max": (max, 1, 64),
    "abs": (abs, 1, 1),
    "sqrt": (math.sqrt, 1, 1),
    "log": (math.log, 1, 2),  # log(x) natural, log(x, base)
    "exp": (math.exp, 1, 1),
    "floor": (lambda x: float(math.floor(x)), 1, 1),
    "ceil": (lambda x: float(math.ceil(x)), 1, 1),
}

BINARY: dict[type, Callable[[float, float], float]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Pow: operator.pow,
}
UNARY: dict[type, Callable[[float], float]] = {ast.USub: operator.neg, ast.UAdd: operator.pos}
COMPARE: dict[type, Callable[[float, float], bool]] = {
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
}

_WHAT = {
    ast.Attribute: "attribute access",
    ast.Subscript: "subscripts",
    ast.Lambda: "lambda",
    ast.Constant: "a non-number constant",
    ast.JoinedStr: "strings",
    ast.BoolOp: "and/or (use min/max)",
    ast.IfExp: "if/else (use a comparison: (a > 0.5) * b)",
    ast.NamedExpr: "assignment",
    ast.Tuple: "tuples",
    ast.List: "lists",
}


@dataclass(frozen=True)
class Formula:
    """A checked formula; ``evaluate({name: score})`` -> float."""

    text: str
    tree: ast.Expression

    @property
    def names(self) -> set[str]:
        return {n.id for n in ast.walk(self.tree) if isinstance(n, ast.Name) and n.id not in FUNCTIONS}

    def evaluate(self, values: Mapping[str, float]) -> float:
        try:
            return float(_eval(self.tree.body, values))
        except (ArithmeticError, ValueError) as e:  # 1/0, log(0), overflow: the attempt is errored
            raise ValueError(f"calculate_output = {self.text!r} with {dict(values)}: {type(e).__name__}: {e}") from None


def _position(text: str, src: str, node: ast.AST | None = None, col: int | None = None) -> int:
    """1-based character position in ``text`` of a node (or of a 0-based byte offset) in ``src``."""
    if node is not None:
        col = node.col_offset  # type: ignore[attr-defined]  (a UTF-8 byte offset)
    chars = len(src.encode("utf-8")[: col or 0].decode("utf-8", errors="ignore"))
    to_text = [i for i, c in enumerate(text) for _ in range(2 if c == "^" else 1)]  # src index -> text index
    return (to_text[chars] if chars < len(to_text) else len(text)) + 1


def parse_formula(text: str, names: set[str] | list[str], where: str = "calculate_output") -> Formula:
    """Parse and check ``text``; ``names`` are the sub-graders it may use."""
    head = f"{where} = {text!r}"
    text = text.strip()
    src = text.replace("^", "**")
    if not text:
        raise ConfigError(f"{head}: empty; fix: combine the graders, e.g. \"0.5 * {next(iter(names), 'a')} + 0.5 * ...\"")
    try:
        tree = ast.parse(src, mode="eval")
    except SyntaxError as e:
        pos = _position(text, src, col=(e.offset or 1) - 1)
        raise ConfigError(f"{head}: syntax error at position {pos} ({e.msg}); fix the formula") from None
    valid = sorted(names)

    def bad(node: ast.AST, why: str) -> ConfigError:
        pos = _position(text, src, node)
        piece = ast.get_source_segment(src, node) or type(node).__name__
        return ConfigError(f"{head}: {why} at position {pos} ({piece!r}); a formula may use numbers, the graders "
                           f"{', '.join(valid)}, + - * / ^ **, comparisons, and {', '.join(FUNCTIONS)}")

    for node in ast.walk(tree.body):
        if isinstance(node, ast.Name):
            if node.id not in names and not (node.id in FUNCTIONS and _is_callee(tree, node)):
                what = "function used as a value" if node.id in FUNCTIONS else "unknown grader name"
                raise bad(node, f"{what} {node.id!r}")
        elif isinstance(node, ast.Constant):
            if not isinstance(node.value, (int, float)) or isinstance(node.value, bool):
                raise bad(node, "a non-number constant")
        elif isinstance(node, ast.Call):
            _check_call(node, bad)
        elif isinstance(node, ast.BinOp) and type(node.op) not in BINARY:
            raise bad(node, f"operator {type(node.op).__name__} not allowed")
        elif isinstance(node, ast.UnaryOp) and type(node.op) not in UNARY:
            raise bad(node, f"operator {type(node.op).__name__} not allowed")
        elif isinstance(node, ast.Compare) and not all(type(op) in COMPARE for op in node.ops):
            raise bad(node, "only < <= > >= == != comparisons are allowed")
        elif not isinstance(node, (ast.BinOp, ast.UnaryOp, ast.Compare, ast.Load, ast.operator, ast.unaryop, ast.cmpop)):
            raise bad(node, f"{_WHAT.get(type(node), type(node).__name__)} not allowed")
    return Formula(text, tree)


def _is_callee(tree: ast.Expression, name: ast.Name) -> bool:
    return any(isinstance(n, ast.Call) and n.func is name for n in ast.walk(tree))


def _check_call(node: ast.Call, bad: Callable[[ast.AST, str], ConfigError]) -> None:
    if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
        what = node.func.id if isinstance(node.func, ast.Name) else ast.unparse(node.func)
        raise bad(node, f"calling {what!r} not allowed (only {', '.join(FUNCTIONS)})")
    if node.keywords or any(isinstance(a, ast.Starred) for a in node.args):
        raise bad(node, f"{node.func.id}() takes plain positional arguments")
    _, lo, hi = FUNCTIONS[node.func.id]
    if not lo <= len(node.args) <= hi:
        n = f"{lo}" if lo == hi else f"{lo} to {hi}"
        raise bad(node, f"{node.func.id}() takes {n} argument(s), got {len(node.args)}")


def _eval(node: ast.AST, values: Mapping[str, float]) -> float:
    return EVAL[type(node)](node, values)


def _compare(node: ast.Compare, values: Mapping[str, float]) -> float:
    left = _eval(node.left, values)
    for op, right_node in zip(node.ops, node.comparators):  # a < b < c chains, as in Python
        right = _eval(right_node, values)
        if not COMPARE[type(op)](left, right):
            return 0.0
        left = right
    return 1.0


# node type -> evaluator; parse_formula guarantees no other node reaches here
EVAL: dict[type, Callable[[ast.AST, Mapping[str, float]], float]] = {
    ast.Constant: lambda n, v: float(n.value),
    ast.Name: lambda n, v: float(v[n.id]),
    ast.BinOp: lambda n, v: BINARY[type(n.op)](_eval(n.left, v), _eval(n.right, v)),
    ast.UnaryOp: lambda n, v: UNARY[type(n.op)](_eval(n.operand, v)),
    ast.Compare: _compare,
    ast.Call: lambda n, v: float(FUNCTIONS[n.func.id][0](*(_eval(a, v) for a in n.args))),
}
