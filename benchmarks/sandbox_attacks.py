"""The sandbox attack table: each attack run for real against every sandbox backend that works here.

    python benchmarks/sandbox_attacks.py [--backend bwrap|unshare]

For each attack (rlft/rewards/sandbox_check.py): seconds until it was stopped, what it scored
(model code: the fraction of tests passed, 0.0 when stopped; python graders: SandboxError, i.e. the
attempt is errored), what stopped it, and how many of its processes were still alive afterwards.
Limits are deliberately tight (sandbox_check.LIMITS). Exit status 1 if any attack was not stopped.
"""

from __future__ import annotations

import argparse
import sys

from rlft.rewards.sandbox import BACKENDS, available_backends, probe
from rlft.rewards.sandbox_check import LIMITS, check, table


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--backend", choices=list(BACKENDS), help="only this backend (default: all that work)")
    args = ap.parse_args()
    backends = [args.backend] if args.backend else available_backends()
    for b in BACKENDS:
        print(f"backend {b}: {'works' if probe(b) is None else probe(b)}")
    print(f"limits: {LIMITS}\n")
    bad = 0
    for b in backends:
        rows = check(b)
        bad += sum(not r.ok for r in rows)
        print(f"### backend: {b}\n\n{table(rows)}\n")
    if not backends:
        print("no sandbox backend works here: install bubblewrap or enable unprivileged user namespaces")
        return 1
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
