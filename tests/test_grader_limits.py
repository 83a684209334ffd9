"""Graders that run in this process have a time limit (grader.time_limit, rlft.rewards.limits):
past it the attempt is errored with a message naming the grader and the limit, never scored 0.

Run: OMP_NUM_THREADS=1 python -m pytest -q tests/test_grader_limits.py   (about 10 s, no model)
"""

import pickle
import threading
import time

import pytest

from rlft.config import ConfigError, GraderConfig, load_job
from rlft.rewards import probe
from rlft.rewards.graders import make_grader
from rlft.rollout.runner import grade
from rlft.types import Sample

HANGS = r"(a|aa)+$"  # overlapping repeats: exponential backtracking even in the regex package
SLOW = '''import time


def spin(sample, item):
    while True:
        pass


def nap(sample, item):
    time.sleep(0.3)
    return 1.0
'''


def timed(fn, *args):
    t0 = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t0


def test_nested_repeats_that_hang_stdlib_re_return_at_once():
    # (a+)+$ on 'a'*30 + 'b' takes minutes in stdlib re; the regex package sees through it
    (reward, error), seconds = timed(grade, make_grader(GraderConfig(type="regex", pattern=r"(a+)+$")), "a" * 30 + "b", {})
    assert (reward, error) == (0.0, None) and seconds < 0.5


def test_a_backtracking_regex_grader_is_errored_within_its_limit():
    g = make_grader(GraderConfig(type="regex", pattern=HANGS))  # the default limit, 2 s
    (reward, error), seconds = timed(grade, g, "a" * 40 + "b", {})
    # measured 2.06 s on an idle machine; the regex package counts CPU seconds, so a busy one takes longer
    assert 1.9 < seconds < 8.0
    assert error == ("GraderTimeout: regex grader: pattern '(a|aa)+$' ran past grader.time_limit = 2 s on an output "
                     "of 41 characters (catastrophic backtracking, e.g. nested or overlapping repeats like (a|aa)+); "
                     "fix: simplify the pattern, or raise grader.time_limit")
    assert grade(g, "aaaa", {}) == (1.0, None)  # a short output still matches
    again = pickle.loads(pickle.dumps(g))  # ships to environment actors with its limit
    assert again.time_limit == 2.0 and grade(again, "aaaa", {}) == (1.0, None)


def test_format_penalty_and_a_multi_take_the_limit():
    fmt = {"type": "format_penalty", "pattern": HANGS}
    g = make_grader(GraderConfig(type="multi", time_limit=0.2, calculate_output="fmt",
                                 graders={"fmt": GraderConfig(**fmt)}))
    (reward, error), seconds = timed(grade, g, "a" * 40 + "b", {})
    assert error.startswith("GraderTimeout: format_penalty grader: pattern '(a|aa)+$' ran past grader.time_limit = 0.2 s")
    assert seconds < 1.0
    assert grade(g, "aa", {}) == (0.0, None)


def test_a_python_function_grader_that_spins_is_errored(tmp_path):
    (tmp_path / "slow.py").write_text(SLOW)
    g = make_grader(GraderConfig(type="python", function="slow.py:spin", time_limit=0.3), tmp_path)
    (reward, error), seconds = timed(grade, g, "x", {})
    assert seconds < 1.5
    assert error == ("GraderTimeout: grader function 'slow.py:spin' ran past grader.time_limit = 0.3 s; fix: make it "
                     "faster, or raise grader.time_limit (0 = no limit)")
    assert pickle.loads(pickle.dumps(g)).time_limit == 0.3
    nap = make_grader(GraderConfig(type="python", function="slow.py:nap", time_limit=1.0), tmp_path)
    assert grade(nap, "x", {}) == (1.0, None)  # the alarm is cancelled after a grading in time
    time.sleep(1.0)  # and does not fire later


def test_outside_the_main_thread_a_python_grader_runs_unlimited(tmp_path):
    (tmp_path / "slow.py").write_text(SLOW)
    nap = make_grader(GraderConfig(type="python", function="slow.py:nap", time_limit=0.1), tmp_path)
    out = []
    worker = threading.Thread(target=lambda: out.append(grade(nap, "x", {})))
    worker.start()
    worker.join()
    assert out == [(1.0, None)]  # SIGALRM is the main thread's (documented in rlft.rewards.limits)


def test_time_limit_is_validated(tmp_path):
    (tmp_path / "job.toml").write_text('[grader]\ntype = "regex"\npattern = "a"\ntime_limit = -1\n')
    with pytest.raises(ConfigError, match=r"job.toml:4: \[grader\] time_limit = -1: must be >= 0"):
        load_job(tmp_path / "job.toml")


def test_check_grader_on_a_backtracking_regex_finishes(tmp_path, capsys):
    (tmp_path / "data.jsonl").write_text('{"prompt": "say a", "answer": "%s"}\n{"prompt": "say b", "answer": "ab"}\n'
                                         % ("a" * 40 + "b"))
    (tmp_path / "job.toml").write_text(f'[data]\ntrain = "data.jsonl"\n[grader]\ntype = "regex"\n'
                                       f'pattern = "{HANGS}"\ntime_limit = 0.25\n')
    job = load_job(tmp_path / "job.toml")
    _, seconds = timed(probe.main, job, 10)
    assert seconds < 10  # 4 timed-out gradings of 0.25 s, and the rest at once
    rows = probe.check(job, make_grader(job.grader, job.base_dir), [{"prompt": "say a", "answer": "a" * 40 + "b"}])
    assert rows[0].errors == 1  # the reference timed out: counted as errored, as in training
    assert "errored" in capsys.readouterr().out
