"""The sandbox attack table: each attack run for real against every sandbox backend that works here.

    python benchmarks/sandbox_attacks.py [--backend bwrap|unshare] [--overhead N]

For each attack (rlft/rewards/sandbox_check.py, rlft/rewards/code_attacks.py): seconds until it was
stopped, what it scored (model code: the fraction of tests passed, 0.0 when stopped; python
graders: SandboxError, i.e. the attempt is errored), what stopped it, and how many of its processes
were still alive afterwards. Limits are deliberately tight (sandbox_check.LIMITS). Then the generic
reward hacks (code_hacks.HACKS) against their honest twins on a fixed set of tests. Exit status 1
if any attack was not stopped or a hack beat its twin.

``--overhead N``: only the cost of one honest ``run_code_tests`` call (median of N, per backend),
for tests of a few shapes — to compare the code-test harness across versions. The CPU column is
the sandboxed process tree's (RUSAGE_CHILDREN): steadier than wall time on a loaded machine, but
only the unshare backend's tree is reaped by this process (bwrap's shows ~0).
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time

from rlft.rewards.code import run_code_tests
from rlft.rewards.code_hacks import hack_rows
from rlft.rewards.sandbox import BACKENDS, SandboxError, available_backends, probe
from rlft.rewards.sandbox_check import LIMITS, check, table

HACK_TESTS = ("import math\nassert add(2, 3) == 5\nassert is_even(4)\nassert not is_even(7)\nassert is_even(10) == True\n"
              "assert sorted(pair(1)) == [1, 2]\nassert math.isclose(half(3), 1.5)\nassert 3 in pair(2)\n"
              "try:\n    add('a', 1)\n    raised = False\nexcept Exception:\n    raised = True\nassert raised\n")

# name -> (honest code, tests): each scores 1.0
OVERHEAD_CASES = {
    "4 asserts": ("def is_even(n): return n % 2 == 0",
                  "assert is_even(2)\nassert not is_even(3)\nassert is_even(10)\nassert not is_even(7)"),
    "50 asserts": ("def add(a, b): return a + b", "\n".join(f"assert add({i}, {i}) == {2 * i}" for i in range(50))),
    "class, 10 calls": ("class Solution:\n    def twice(self, xs): return [2 * x for x in xs]",
                        "\n".join(f"assert Solution().twice([{i}, 1]) == [{2 * i}, 2]" for i in range(10))),
}


def hack_table(backend: str) -> tuple[str, int]:
    def score(code: str, item: dict) -> float | None:
        try:
            return run_code_tests(code, item["tests"], backend=backend)
        except SandboxError:
            return None

    rows = hack_rows(score, [{"tests": HACK_TESTS}], "tests")
    lines = ["| hack | hack score | best honest twin | ok |", "|---|---:|---:|---|"]
    for r in rows:
        fmt = lambda x: "errored" if x is None else f"{x:.2f}"  # noqa: E731
        lines.append(f"| {r.name} | {fmt(r.hack[0])} | {fmt(r.twin[0])} | {'NO' if r.risky else 'yes'} |")
    return "\n".join(lines), sum(r.risky for r in rows)


def overhead(backend: str, n: int) -> str:
    """Wall time per run, and the CPU time of the whole sandboxed process tree (steadier on a loaded machine)."""
    lines = ["| tests | median ms | min ms | CPU ms (median) |", "|---|---:|---:|---:|"]
    for name, (code, tests) in OVERHEAD_CASES.items():
        times, cpu = [], []
        for _ in range(n):
            t0, c0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
            score = run_code_tests(code, tests, backend=backend)
            c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            times.append(time.perf_counter() - t0)
            cpu.append(c1.ru_utime + c1.ru_stime - c0.ru_utime - c0.ru_stime)
            assert score == 1.0, (name, score)
        lines.append(f"| {name} | {1000 * statistics.median(times):.0f} | {1000 * min(times):.0f} | "
                     f"{1000 * statistics.median(cpu):.0f} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--backend", choices=list(BACKENDS), help="only this backend (default: all that work)")
    ap.add_argument("--overhead", type=int, metavar="N", help="only time N honest code-test runs per case")
    args = ap.parse_args()
    backends = [args.backend] if args.backend else available_backends()
    for b in BACKENDS:
        print(f"backend {b}: {'works' if probe(b) is None else probe(b)}")
    if not backends:
        print("no sandbox backend works here: install bubblewrap or enable unprivileged user namespaces")
        return 1
    if args.overhead:
        for b in backends:
            print(f"\n### backend: {b}, {args.overhead} runs each\n\n{overhead(b, args.overhead)}")
        return 0
    print(f"limits: {LIMITS}\n")
    bad = 0
    for b in backends:
        rows = check(b)
        bad += sum(not r.ok for r in rows)
        hacks, risky = hack_table(b)
        bad += risky
        print(f"### backend: {b}\n\n{table(rows)}\n\nGeneric hacks against their honest twins (default limits):\n\n{hacks}\n")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
