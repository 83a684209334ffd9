"""The code-test harness: trusted, in the sandbox, holding the token and the tests; the solution
runs in a process of its own and reaches the tests only as answers to calls.

Not imported by rlft: ``rlft.rewards.code`` joins ``_code_codec.py``, ``_code_proxy.py`` (the
protocol: ``Solution``, ``Remote``) and this file, and runs that as ``python -I -c TEXT`` in the
sandbox. stdin: the token line, then JSON {mode, tests, runner, deadline (on time.monotonic's
clock), reply_bytes}; the verdict channel is fd ``$RLFT_CHANNEL_FD``.

1. Before anything untrusted exists: make this process non-dumpable (``PR_SET_DUMPABLE`` 0, so
   another process of the same uid cannot read ``/proc/<this>/mem``, ``fd/``, ``environ`` or
   ptrace it), read all of stdin, mark the channel close-on-exec, compile the tests, record "start".
2. Start the solution (``Solution``): ``posix_spawn`` of a fresh interpreter running the runner —
   exec, not fork, so it shares no memory with this one; it holds only a /dev/null stdin,
   stdout/stderr pipes of its own (copied on) and the two pipes of the protocol. Then point
   HOME nowhere: ``-I`` keeps /sandbox off ``sys.path``, and packages the tests import find no
   configuration the solution wrote in ~. The tests keep /sandbox as their working directory
   (a test may check a file the solution wrote: that is data, like a reply).
3. Bind the names the solution defines into the tests' namespace (``namespace``): values as
   plain builtins, rebuilt by the codec; functions, classes and other objects as ``Remote``
   handles whose calls, attributes, items, ``len``, ``bool``, iteration and ``str`` are requests
   to the solution's process; modules it imported as this process's own imports (standard
   library, or a name the tests use).
4. Run each test here; record ``pass i`` / ``fail i`` once, from this process. A test's ``x == y``
   inside an assert compares types first (``strict_eq``). A call that outlasts the time budget,
   a solution that exits or breaks the protocol raises ``SolutionFault`` — a BaseException, so a
   test's ``except Exception`` cannot mistake it for an error the solution raised — and every
   later call fails at once. A test that passes the solution something that cannot cross (a
   lambda, an instance of a class the tests define) records ``unusable``: rlft raises for it.
5. Close the requests pipe, give the solution a moment to exit, kill its process group, then
   print what the tests printed and why they failed: only now (``Held``). The solution's own
   output comes through pipes of its own, copied on as it comes.
"""

import ast
import builtins
import ctypes
import io
import json
import os
import signal
import sys
import traceback
import types

PR_SET_DUMPABLE = 4
# Modules the tests may see under a name the solution imported them as: the standard library's,
# imported here afresh (the solution's copies, patched or not, never reach the tests).
STDLIB = frozenset(sys.stdlib_module_names) - {"antigravity", "this", "idlelib", "tkinter", "turtle", "turtledemo",
                                               "test"}


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


def compile_tests(mode: str, source: str) -> list:
    """[(test index or None for setup, code)] in the order they run."""
    tree = ast.fix_missing_locations(Strict().visit(ast.parse(source, "tests.py")))
    if mode == "functions":
        names = [s.name for s in tree.body if isinstance(s, ast.FunctionDef) and s.name.startswith("test")]
        return [(None, compile(tree, "tests.py", "exec"))] + [
            (i, compile(n + "()", "tests.py", "exec")) for i, n in enumerate(names)]
    steps, i = [], 0
    for s in tree.body:
        steps.append((i if isinstance(s, ast.Assert) else None, compile(ast.Module([s], []), "tests.py", "exec")))
        i += isinstance(s, ast.Assert)
    return steps


def strict_eq(a, b, num=(int, float), plain=(int, float, str, bytes, bool, type(None))):
    """``a == b`` with the same type first (int and float mix; ``True`` is not ``1``), lists,
    tuples and dicts element by element. The values are the codec's builtins, so this is about
    types, not trust: a handle equals only itself."""
    ta, tb = type(a), type(b)
    if ta in num and tb in num:
        return a == b
    if ta is not tb:
        return False
    if ta is list or ta is tuple:
        return len(a) == len(b) and all(strict_eq(x, y) for x, y in zip(a, b))
    if ta is dict and all(type(k) in plain for k in b):
        return len(a) == len(b) and all(type(k) in plain for k in a) and all(
            k in b and strict_eq(v, b[k]) for k, v in a.items())
    return (a == b) is True


def namespace(sol: "Solution", names: list, used: set) -> dict:  # noqa: F821 -- _code_proxy.py comes first
    """The tests' globals: the solution's names as the harness's values, handles and modules.

    Never from the solution: a builtin's name (the tests' ``sorted``, ``len``, ``abs`` stay
    Python's) and a module: one it imported is this process's own import of the same name —
    a standard-library one, or another the tests use under that name (``np.allclose`` after the
    solution's ``import numpy as np``). All of its names are in module ``solution`` (``from
    solution import max`` takes its own ``max``)."""
    mine = {}
    for entry in names:
        if type(entry) is not list or len(entry) != 3 or type(entry[0]) is not str:
            raise sol.fault("the solution broke the protocol: a bad name entry")
        name, kind, x = entry
        if kind == "m" and type(x) is str and (x.partition(".")[0] in STDLIB or name in used):
            try:
                __import__(x)
                mine[name] = sys.modules[x]
            except Exception:
                pass
        elif kind == "v" and name not in STDLIB:
            try:
                mine[name] = decode(x, sol.remote)  # noqa: F821
            except (ValueError, TypeError, RecursionError, MemoryError) as e:
                raise sol.fault(f"the solution broke the protocol: {type(e).__name__}: {e}") from None
    ns = {k: v for k, v in mine.items() if k not in vars(builtins)}
    module = types.ModuleType("solution")  # `from solution import f` in the tests
    module.__dict__.update(mine)
    module.__all__ = [k for k in ns if not k.startswith("_")]  # `import *`: no builtin's name either
    sys.modules["solution"] = module
    return {**ns, "__name__": "tests", "__builtins__": builtins, "__rlft_eq": strict_eq}


def run_tests(steps: list, sol: "Solution", ns: dict, emit, log: list) -> None:  # noqa: F821
    for i, step in steps:
        sol.unusable = None
        try:
            exec(step, ns)
        except BaseException as e:
            if len(log) < 20:
                try:
                    log.append(f"{'setup' if i is None else f'test {i}'} failed:\n" + "".join(
                        traceback.format_exception(type(e), e, e.__traceback__.tb_next, limit=3))[-2000:])
                except BaseException:
                    log.append(f"test {i} failed: {type(e).__name__} (unprintable)")
            if i is None:
                break
            emit(f"fail {i}")
        else:
            if i is not None:
                emit(f"pass {i}")
        if sol.unusable is not None and i is not None:
            emit(f"unusable {i} " + json.dumps(sol.unusable[:300]))


class Held(io.StringIO):
    """Text held back (at most ``LIMIT`` characters): under bwrap as an ordinary user, the
    solution can open the harness's stdout pipe through ``/proc/1/fd/1`` (bwrap's PID 1 is
    dumpable), so nothing the tests print reaches it while the solution runs."""

    LIMIT = 1_000_000

    def write(self, text):
        room = self.LIMIT - self.tell()
        if room > 0:
            super().write(text[:room])
        return len(text)


def main():
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "code-test harness: prctl(PR_SET_DUMPABLE, 0) failed")
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    fd = int(os.environ.pop("RLFT_CHANNEL_FD"))
    os.set_inheritable(fd, False)
    token = sys.stdin.readline().strip()
    payload = json.loads(sys.stdin.read())
    steps = compile_tests(payload["mode"], payload["tests"])
    used = {n.id for n in ast.walk(ast.parse(payload["tests"])) if isinstance(n, ast.Name)}

    def emit(text):
        os.write(fd, (token + " " + text + "\n").encode())

    emit("start")
    try:
        sol = Solution(payload["runner"], dict(os.environ), payload["deadline"], payload["reply_bytes"])
    except OSError as e:  # nothing of the solution has run: the sandbox's fault, not the solution's
        emit("error " + json.dumps(f"could not start the solution's interpreter: {e}"))
        os._exit(0)
    os.environ["HOME"] = "/nonexistent"
    log, out, err = [], sys.stdout, sys.stderr
    sys.stdout, sys.stderr = Held(), Held()  # what the tests print, shown once the solution is gone
    try:
        ns = namespace(sol, sol.ready(), used)
    except SolutionFault as e:  # noqa: F821
        log.append(f"the solution did not start: {e}")
    else:
        run_tests(steps, sol, ns, emit, log)
    sol.close()
    out.write(sys.stdout.getvalue())
    out.flush()
    err.write(sys.stderr.getvalue() + "".join(line.rstrip("\n") + "\n" for line in log))
    err.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
