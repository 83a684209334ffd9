"""Graders that run code in the sandbox: user ``grade(sample, item)`` functions and unit tests
of model-written code.

Where the verdict comes from. Each run starts a small harness program (below) in the sandbox.
rlft passes it a fresh random token (128 bits) as the first line of stdin; the harness reads all of
stdin before any untrusted code runs, so the code cannot read the token there. The harness reports
on its own pipe (``sandbox.run_channel``), one line per event, each starting with the token; rlft
reads only that pipe and only lines with the token. So:

- printing "PASS", a fake score or a fake record on stdout/stderr counts for nothing (not read);
- ``sys.exit(0)``, ``os._exit(0)``, a signal, a crash or a timeout before the harness records an
  outcome leaves no record: no score (python grader: SandboxError; code tests: those tests fail);
- a test passes only when the harness saw it return; each test is recorded as it finishes.

For code tests (``run_code_tests``) also: the tests reach the harness over stdin, read before the
model's code runs, so no file in the sandbox holds them (reading ``tests.py`` for the answer key
found nothing to read); only the process that started records, so a forked copy of the solution
cannot add its passes to the parent's; a test recorded as failed is failed, whatever else was
recorded; and every single ``x == y`` inside an assert is rewritten to compare types first (int
and float mix), lists, tuples and dicts (keys of builtin scalar types) element by element, so an
object whose ``__eq__`` always returns True fails, alone or inside a container. The price: an
equal value of another type fails too (``numpy.int64(3) == 3``, a ``defaultdict`` for a dict,
``True`` for ``1``).

What this does not stop: code running *in the harness's process* that digs the token or the
compiled tests out of the interpreter's memory (``gc``, frame objects) and writes records itself
or reads the expected values. No in-process scheme can (CPython has no isolation inside a
process). It takes deliberate introspection of rlft's harness, not a print, a fork or an exit.
Nor: patching a module the tests import (tests and solution share ``sys.modules``), rigged
objects in sets, in dicts with non-scalar keys, or compared by ``!=``, ``in``, chained ``==`` or
outside an assert, an object whose ``__bool__`` lies in ``assert f(x)``, or a solution that
special-cases the test inputs it was shown in the prompt; ``rlft check-grader`` runs the attacks
of ``rewards/sandbox_check.py`` to probe a grader for these.

Failure semantics (DESIGN.md §4): ``run_python_grader`` raises ``SandboxError`` for anything but a
finite number returned by ``grade`` — the attempt is *errored*. ``run_code_tests`` scores model
code: code that crashes, loops, floods output or exits early fails the affected tests (score in
[0, 1]); it raises only when the tests themselves are unusable or the sandbox cannot run.
"""

from __future__ import annotations

import ast
import json
import math
import re
import secrets
import sys
from dataclasses import dataclass, field
from typing import Callable

from rlft.rewards.sandbox import SandboxError, SandboxLimits, SandboxResult, run_channel
from rlft.types import Sample

# Harness for run_python_grader. argv: none; stdin: token line, then JSON {sample, item}.
_GRADE_HARNESS = r"""
import json, math, numbers, os, sys, traceback
def main(write=os.write, exit=os._exit, isfinite=math.isfinite, Real=numbers.Real):
    fd = int(os.environ.pop("RLFT_CHANNEL_FD"))
    token = sys.stdin.readline().strip()
    payload = json.loads(sys.stdin.read())
    emit = lambda kind, text: write(fd, (token + " " + kind + " " + json.dumps(text) + "\n").encode())
    try:
        ns = {"__name__": "grader"}
        exec(compile(open("grader.py").read(), "grader.py", "exec"), ns)
        grade = ns.get("grade")
        if not callable(grade):
            raise TypeError("the grader source defines no function grade(sample, item)")
        r = grade(payload["sample"], payload["item"])
        if not isinstance(r, Real) or not isfinite(float(r)):
            raise TypeError(f"grade() returned {type(r).__name__} {r!r}; it must return a finite number")
        emit("result", float(r))
    except BaseException as e:
        traceback.print_exc()
        emit("error", f"{type(e).__name__}: {e}")
    sys.stdout.flush(); sys.stderr.flush()
    exit(0)
main()
"""

# Harness for run_code_tests. stdin: token line, then JSON {mode, tests}; solution.py in cwd.
# Everything the harness needs is compiled and bound before the model's code runs, and the tests
# run with the builtins as they were then, so patching compile/exec/builtins cannot skip a test.
# The tests come over stdin, read before the model's code runs: no file holds them. Records are
# written only by the process that started (a forked copy of the solution cannot add passes), and
# `x == y` in asserts compares with a type check first (an object whose __eq__ is always true fails).
_TESTS_HARNESS = r"""
import ast, builtins, json, os, sys, traceback
class Eq(ast.NodeTransformer):  # every `a == b` (one operator) in an assert -> __rlft_eq(a, b)
    def visit_Compare(self, t):
        self.generic_visit(t)
        if len(t.ops) == 1 and isinstance(t.ops[0], ast.Eq):
            return ast.Call(ast.Name("__rlft_eq", ast.Load()), [t.left, t.comparators[0]], [])
        return t
class Strict(ast.NodeTransformer):
    def visit_Assert(self, node):
        self.generic_visit(node)
        node.test = Eq().visit(node.test)
        return node
def main(write=os.write, exit=os._exit, run=exec, print_exc=traceback.print_exc, getpid=os.getpid):
    fd = int(os.environ.pop("RLFT_CHANNEL_FD"))
    token = sys.stdin.readline().strip()
    payload = json.loads(sys.stdin.read())
    mode, tree = payload.pop("mode"), ast.parse(payload.pop("tests"), "tests.py")
    pristine = dict(vars(builtins))
    tree = ast.fix_missing_locations(Strict().visit(tree))
    if mode == "functions":
        names = [s.name for s in tree.body if isinstance(s, ast.FunctionDef) and s.name.startswith("test")]
        steps = [(None, compile(tree, "tests.py", "exec"))]
        steps += [(i, compile(n + "()", "tests.py", "exec")) for i, n in enumerate(names)]
    else:
        steps, i = [], 0
        for s in tree.body:
            steps.append((i if isinstance(s, ast.Assert) else None, compile(ast.Module([s], []), "tests.py", "exec")))
            i += isinstance(s, ast.Assert)
    del tree
    source = open("solution.py").read()
    me = getpid()
    def emit(text):
        if getpid() == me:  # not a forked copy
            write(fd, (token + " " + text + "\n").encode())
    def strict_eq(a, b, type=type, len=len, all=all, zip=zip, num=(int, float),
                  plain=(int, float, str, bytes, bool, type(None))):
        # the same type first: an int expected is matched only by an int, whatever __eq__ says;
        # lists, tuples and dicts element by element, so a list of rigged objects fails too
        ta, tb = type(a), type(b)
        if ta in num and tb in num:
            return a == b
        if ta is not tb:
            return False
        if ta is list or ta is tuple:
            return len(a) == len(b) and all(strict_eq(x, y) for x, y in zip(a, b))
        if ta is dict and all(type(k) in plain for k in b):  # keys of builtin scalars hash honestly
            return len(a) == len(b) and all(type(k) in plain for k in a) and all(
                k in b and strict_eq(v, b[k]) for k, v in a.items())
        return (a == b) is True
    emit("start")
    ns = {"__name__": "solution"}
    try:
        run(compile(source, "solution.py", "exec"), ns)
    except BaseException:
        print_exc()
        exit(0)
    tns = {**ns, "__name__": "tests", "__builtins__": pristine, "__rlft_eq": strict_eq}
    for i, step in steps:
        try:
            run(step, tns)
        except BaseException:
            print_exc()
            if i is None:
                break
            emit(f"fail {i}")
        else:
            if i is not None:
                emit(f"pass {i}")
    exit(0)
main()
"""


def _records(channel: bytes, token: str) -> list[str]:
    """The harness's lines (token stripped); lines without the token are ignored."""
    lines = channel.decode(errors="replace").splitlines()
    return [line[len(token) + 1:] for line in lines if line.startswith(token + " ")]


def _why(r: SandboxResult) -> str:
    if r.killed_reason:
        return {"wall": f"timed out after {r.wall_s:.1f} s", "cpu": "ran out of CPU time",
                "output": "printed more than the output limit"}[r.killed_reason]
    tail = r.stderr.strip().splitlines()[-1:] or ["no stderr"]
    return f"exited with status {r.returncode} ({tail[0][:300]})"


def run_python_grader(source: str, sample: dict, item: dict, limits: SandboxLimits | None = None, *,
                      allow_unsandboxed: bool = False, backend: str | None = None) -> float:
    """``grade(sample, item)`` from ``source``, run in the sandbox; its return value as a float.

    ``sample`` and ``item`` must be JSON-serialisable (they reach ``grade`` as parsed JSON).
    Raises SandboxError when grade raises, returns a non-number or non-finite value, or the
    program exits, crashes or times out before returning (printed output is never a score).
    """
    try:
        payload = json.dumps({"sample": sample, "item": item})
    except (TypeError, ValueError) as e:
        raise SandboxError(f"python grader: sample/item are not JSON-serialisable ({e}); pass plain "
                           f"dicts of str, numbers, lists and dicts") from None
    token = secrets.token_hex(16)
    r, channel = run_channel([sys.executable, "-I", "-c", _GRADE_HARNESS], files={"grader.py": source},
                             stdin=f"{token}\n{payload}", limits=limits, allow_unsandboxed=allow_unsandboxed,
                             backend=backend)
    recs = [rec.split(" ", 1) for rec in _records(channel, token)]
    if len(recs) != 1:
        what = "no result" if not recs else f"{len(recs)} results (something forged one)"
        raise SandboxError(f"python grader gave {what}: it {_why(r)}")
    kind, text = recs[0]
    value = json.loads(text)
    if kind == "error":
        raise SandboxError(f"python grader raised {value}")
    assert kind == "result" and isinstance(value, float) and math.isfinite(value), f"bad record {recs[0]}"
    return value


def _test_mode(tests: str) -> tuple[str, int]:
    """("functions", number of test_* functions) or ("asserts", number of top-level asserts)."""
    try:
        tree = ast.parse(tests, "tests.py")
    except SyntaxError as e:
        raise SandboxError(f"code tests: the tests do not parse (tests.py line {e.lineno}: {e.msg}); fix the "
                           f"dataset's tests") from None
    names = [s.name for s in tree.body if isinstance(s, ast.FunctionDef) and s.name.startswith("test")]
    if names:
        return "functions", len(names)
    asserts = sum(isinstance(s, ast.Assert) for s in tree.body)
    if not asserts:
        raise SandboxError("code tests: no test_* functions and no top-level assert statements; write tests "
                           "like `assert add(1, 2) == 3` (one per line) or functions named test_*")
    return "asserts", asserts


def run_code_tests(code: str, tests: str, limits: SandboxLimits | None = None, *,
                   allow_unsandboxed: bool = False, backend: str | None = None) -> float:
    """The fraction of ``tests`` that pass against model-written ``code``, run in the sandbox.

    ``tests`` is Python: either functions named ``test*`` (each one test; the rest of the file is
    setup) or top-level ``assert`` statements (each one test; other statements run in order as
    setup, and a failing setup statement fails the tests after it). The code runs first, as module
    ``solution``; tests see its names. Passes are counted by the harness (module docstring).
    """
    return code_tests_result(code, tests, limits, allow_unsandboxed=allow_unsandboxed, backend=backend)[0]


def code_tests_result(code: str, tests: str, limits: SandboxLimits | None = None, *,
                      allow_unsandboxed: bool = False, backend: str | None = None) -> tuple[float, SandboxResult]:
    """``run_code_tests``'s score and the run behind it (how it ended, its output)."""
    mode, n = _test_mode(tests)
    token = secrets.token_hex(16)
    r, channel = run_channel([sys.executable, "-I", "-c", _TESTS_HARNESS], files={"solution.py": code},
                             stdin=f"{token}\n{json.dumps({'mode': mode, 'tests': tests})}", limits=limits,
                             allow_unsandboxed=allow_unsandboxed, backend=backend)
    recs = _records(channel, token)
    if not recs or recs[0] != "start":
        raise SandboxError(f"code tests: the harness did not start: it {_why(r)}")
    passed = {int(rec.split()[1]) for rec in recs if rec.startswith("pass ")}
    failed = {int(rec.split()[1]) for rec in recs if rec.startswith("fail ")}
    return len((passed - failed) & set(range(n))) / n, r  # a test recorded both ways failed


# --- grader factory --------------------------------------------------------------------------

_FENCE = re.compile(r"```[ \t]*([\w+-]*)[^\n]*\n(.*?)```", re.DOTALL)


def last_code_block(text: str) -> str:
    """The last ```python (or unlabelled) fenced block of ``text``; the whole text if it has none."""
    blocks = [body for lang, body in _FENCE.findall(text) if lang.lower() in ("", "python", "py", "python3")]
    return blocks[-1] if blocks else text


EXTRACTORS: dict[str, Callable[[str], str]] = {
    "last_code_block": last_code_block,
    "output": lambda text: text,
}


@dataclass(frozen=True)
class CodeTestsGrader:
    """``(sample, item) -> float``: the fraction of ``item[tests]`` passed by the sample's code."""

    tests: str = "tests"
    extract: str = "last_code_block"
    limits: SandboxLimits = field(default_factory=SandboxLimits)
    allow_unsandboxed: bool = False

    def __call__(self, sample: Sample, item: dict) -> float:
        if self.tests not in item:
            fields = ", ".join(k for k in item if not k.startswith("_")) or "none"
            raise KeyError(f"code grader: tests field {self.tests!r} is missing from the item; item fields: "
                           f"{fields}; fix: set the grader's tests field to the one holding the test code")
        code = EXTRACTORS[self.extract](sample.output_text)
        return run_code_tests(code, item[self.tests], self.limits, allow_unsandboxed=self.allow_unsandboxed)


def code_grader(tests_field: str = "tests", extract: str = "last_code_block", limits: SandboxLimits | None = None,
                *, allow_unsandboxed: bool = False) -> CodeTestsGrader:
    """A grader running the sample's code (``EXTRACTORS[extract]`` of its text) against ``item[tests_field]``."""
    if extract not in EXTRACTORS:
        raise ValueError(f"code grader: extract = {extract!r} is unknown; valid: {', '.join(EXTRACTORS)}")
    return CodeTestsGrader(tests_field, extract, limits or SandboxLimits(), allow_unsandboxed)
