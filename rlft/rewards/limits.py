"""Time limits for the graders that run in this process (``grader.time_limit``, seconds).

A grader that runs past its limit raises ``GraderTimeout``, so the attempt is *errored*: masked
out, counted and logged (DESIGN.md §4), not scored 0. A timeout says the grader could not give a
verdict, not that the output is wrong: scoring it 0 would hide a broken grader behind a reward
and teach the model to avoid whatever makes the grader slow, while errored attempts show up in
``errored/GraderTimeout`` and stop the run past ``run.max_errored_fraction``.

Which grader is bounded how:

- ``regex`` and ``format_penalty``: the ``regex`` package's ``timeout=`` (any thread; it counts
  the process's CPU seconds, so on a busy machine the wall time is longer). The package also
  avoids much of the backtracking stdlib ``re`` would do: ``(a+)+$`` returns at once, while
  ``(a|aa)+$`` on a long run of a's still needs the limit.
- ``python`` with ``function`` (trusted, in-process): SIGALRM, in the main thread on POSIX (where
  the training loop and ``rlft check-grader`` grade). Elsewhere (a grading thread, as a ``multi``
  holding an AI judge uses, or Windows) it runs unlimited. Python handles the signal between
  bytecodes, so a function stuck in one long C call (a stdlib ``re`` match, a C extension) is
  stopped only when that call returns; one that sets its own SIGALRM (math-verify does) replaces
  the limit from then on.
- Bounded by construction, no limit needed: ``exact``, ``contains``, ``numeric``,
  ``string_check``, ``length_penalty`` (linear in the output); ``multi``'s ``calculate_output``
  (a formula tree fixed at load, every value a float, so ``**`` overflows instead of growing);
  ``multi`` itself (its sub-graders, each under its own limit).
- Limited elsewhere: ``code_tests`` and ``python`` with ``source`` (the sandbox's time and memory
  limits), AI judges (``judge.timeout``), ``math`` (math-verify's own timeouts).
- Not limited: ``json_schema``'s ``pattern`` keywords (jsonschema matches them with stdlib ``re``)
  and ``text_similarity`` (polynomial in the lengths).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator

import regex


class GraderTimeout(TimeoutError):
    """A grader ran past ``grader.time_limit``; the attempt is errored."""


def search(pattern: regex.Pattern, text: str, seconds: float, where: str) -> bool:
    """Whether ``pattern`` is found in ``text``, giving up after ``seconds`` (0 = no limit)."""
    try:
        return pattern.search(text, timeout=seconds or None) is not None
    except TimeoutError:
        raise GraderTimeout(
            f"{where}: pattern {pattern.pattern!r} ran past grader.time_limit = {seconds:g} s on an output of "
            f"{len(text)} characters (catastrophic backtracking, e.g. nested or overlapping repeats like (a|aa)+); "
            f"fix: simplify the pattern, or raise grader.time_limit"
        ) from None


def _alarm_free() -> bool:
    """SIGALRM can be ours: POSIX, the main thread, and no timer already running (we would cancel it)."""
    return (hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
            and signal.getitimer(signal.ITIMER_REAL)[0] == 0)


@contextlib.contextmanager
def time_limit(seconds: float, what: str) -> Iterator[None]:
    """Raise ``GraderTimeout`` in the body after ``seconds`` (0 = no limit); see the module
    docstring for where this cannot apply (then the body runs unlimited)."""
    if seconds <= 0 or not _alarm_free():
        yield
        return

    def on_alarm(signum, frame):
        raise GraderTimeout(f"{what} ran past grader.time_limit = {seconds:g} s; fix: make it faster, "
                            f"or raise grader.time_limit (0 = no limit)")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
