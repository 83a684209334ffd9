"""Graders that run code in the sandbox: user ``grade(sample, item)`` functions and unit tests
of model-written code.

Where the verdict comes from. Each run starts a small harness program in the sandbox. rlft passes
it a fresh random token (128 bits) as the first line of stdin; the harness reads all of stdin
before any untrusted code runs. The harness reports on its own pipe (``sandbox.run_channel``), one
line per event, each starting with the token; rlft reads only that pipe and only lines with the
token. So printing "PASS", a fake score or a fake record counts for nothing (not read), and an
exit, a signal, a crash or a timeout before the harness records an outcome leaves no record (python
grader: SandboxError; code tests: those tests fail).

Code tests (``run_code_tests``) run in two processes inside the one sandbox run
(``_code_harness.py``, ``_code_runner.py``, ``_code_codec.py``). The harness, trusted, holds the
token and the tests and runs the tests; it starts the solution as a fresh interpreter (exec, not
fork: no memory shared) that gets only fds 0-2 (stdin /dev/null) and the two pipes of a
request/reply protocol. The names the solution defines are, in the tests, plain builtin values
rebuilt by the harness, or handles: calling one, reading an attribute, ``len``, ``bool``,
iterating or ``str`` sends a request; the reply is again a builtin value or a handle. Closed, each
as a class:

- *the answer key*: the tests are only in the harness's memory — no file holds them, the
  harness is non-dumpable (no ``/proc/<harness>/mem``, ``fd/``, ``environ``; no ptrace), the
  solution's stdin is empty, and failure messages are printed after the solution is killed;
- *forged records*: only the harness holds the verdict channel (close-on-exec; the sandbox init
  closes its copy), so nothing in the solution's process — a fork, a thread, code walking
  ``gc`` or frames — has the token or the channel; each test is recorded once, by the harness;
- *rigged objects*: no object of the solution's exists in the harness; a handle compares,
  hashes and passes ``isinstance`` by its own identity, never by asking the solution, so a
  rigged ``__eq__``, ``__ne__``, ``__hash__``, ``__contains__`` or ``__class__`` reaches no
  comparison; ``bool``, ``len``, ``str`` of a handle are asked once and answered with a plain
  value, exactly as if the call had returned that value (nothing in a request says what the
  test expects);
- *patched modules*: the solution patches only its own process; the tests see Python's builtins
  under builtin names (a solution's ``def sorted`` is reachable only as ``from solution import
  sorted``) and, for a module the solution imported, the harness's own import of it (standard
  library, or a name the tests use: ``np`` after ``import numpy as np``), and the harness
  imports nothing from the folder the solution can write (``-I``; HOME points nowhere — a
  package the tests import that reads its working directory, like matplotlib's ./matplotlibrc,
  would still find what the solution wrote there);
- *exits, kills, hangs*: a solution that exits, dies, hangs past the time budget (0.9 of the
  wall limit) or breaks the protocol fails the test in progress and every later call, with
  ``SolutionFault`` — a BaseException, so a test's ``except Exception`` does not take it for
  an error the solution raised; killing or stopping the harness leaves the rest unrecorded:
  failed, a score, never an errored attempt.

Every ``x == y`` inside an assert also compares types first (int and float mix; ``True`` is not
``1``); lists, tuples and dicts element by element. The price: ``numpy.int64(3)`` for ``3`` fails.

What remains possible: a solution that special-cases the inputs it was shown in the prompt, or
that it sees as call arguments (it sees every argument and may keep state across calls, e.g.
answer by call order); whatever the tests ask the solution itself — ``assert f(x) == g(x)`` with
both its own, ``str(obj)``, a name the tests use without defining or importing it (other than a
builtin or a standard-library module: ``sqrt`` from the solution's ``from math import sqrt`` is
the solution's); a test that prints its expected values while the solution runs (it can read its
own stdout pipe); killing the harness (same uid), which only loses it its unrecorded tests.
``rlft check-grader`` runs ``rewards/code_hacks.py`` (tricks against honest twins) on a code
grader's items to probe for these.

What crosses: None, bool, int (any size), float (inf, nan), str, bytes, list, tuple, dict, set,
frozenset and handles; subclasses as their base (a namedtuple as a tuple). Arguments the tests
pass must be such values or the solution's own objects: a test passing a lambda or an instance of
a class the tests define is *unusable* (``SandboxError``). List, dict and set arguments changed by
a call are changed in the tests too. A reply over ``memory_mb / 32`` MiB breaks the protocol;
module-level values over 100,000 elements reach the tests as handles.

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
import time
from dataclasses import dataclass, field
from pathlib import Path
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

# run_code_tests: the trusted harness and the solution's runner, each a program of joined files.
_HERE = Path(__file__).parent
_TESTS_HARNESS = "\n".join((_HERE / f).read_text() for f in ("_code_codec.py", "_code_proxy.py", "_code_harness.py"))
_RUNNER = "\n".join((_HERE / f).read_text() for f in ("_code_codec.py", "_code_runner.py"))


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
    limits = limits or SandboxLimits()
    token = secrets.token_hex(16)
    payload = {"mode": mode, "tests": tests, "runner": _RUNNER, "deadline": time.monotonic() + _budget_s(limits),
               "reply_bytes": max(2**20, limits.memory_mb * 2**20 // 32)}
    r, channel = run_channel([sys.executable, "-I", "-c", _TESTS_HARNESS], files={"solution.py": code},
                             stdin=f"{token}\n{json.dumps(payload)}", limits=limits,
                             allow_unsandboxed=allow_unsandboxed, backend=backend)
    recs = [rec.split(" ", 2) for rec in _records(channel, token)]
    if not recs or recs[0] != ["start"]:
        raise SandboxError(f"code tests: the harness did not start: it {_why(r)}")
    for rec in recs:
        if rec[0] == "error":
            raise SandboxError(f"code tests: the harness failed: {json.loads(rec[1])}")
        if rec[0] == "unusable":
            raise SandboxError(f"code tests: test {int(rec[1]) + 1} cannot be run against a solution in its own "
                               f"process: {json.loads(rec[2])}; fix the dataset's tests: pass the solution only "
                               f"builtin values (numbers, strings, lists, tuples, dicts, sets, bytes, None) or "
                               f"objects it returned")
    passed = {int(rec[1]) for rec in recs if rec[0] == "pass"}
    failed = {int(rec[1]) for rec in recs if rec[0] == "fail"}
    return len((passed - failed) & set(range(n))) / n, r  # a test recorded both ways failed


def _budget_s(limits: SandboxLimits) -> float:
    """Seconds the solution gets, from now: inside the sandbox's wall time (which starts a little
    later), with room for the harness to record the rest and exit before the sandbox kills it.
    The harness reads the deadline on the same clock (CLOCK_MONOTONIC: no time namespace)."""
    return max(0.05, 0.9 * limits.wall_s - 0.05)


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
