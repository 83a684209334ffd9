"""Reward hacks on the code_tests grader (rlft/rewards/code.py), and the test styles it must still run.

    python -m pytest -q tests/test_code_hacks.py     # about a minute; needs a working sandbox backend

The solution runs in its own interpreter; the tests run in the harness and see the solution's
names as values and handles (rlft/rewards/_code_harness.py). The per-class attacks
(rewards/code_attacks.py HACK_ATTACKS) run on every backend in tests/test_sandbox.py; here: the
issue's reproductions, the generic hacks against their honest twins, and the protocol itself.
"""

from __future__ import annotations

import math

import pytest

from rlft.rewards import sandbox
from rlft.rewards._code_codec import MAX_DEPTH, Unencodable, decode, encode
from rlft.rewards.code import code_tests_result, run_code_tests
from rlft.rewards.code_hacks import HACKS, called_names, code_hack_risks, hack_rows
from rlft.rewards.sandbox import SandboxError, SandboxLimits

needs_sandbox = pytest.mark.skipif(not sandbox.available_backends(), reason="no sandbox backend works here")

T = "assert is_even(2)\nassert not is_even(3)\nassert is_even(10)\nassert not is_even(7)"
RIGGED = "class A:\n    def __eq__(self, o): return True\n    __hash__ = lambda self: 0\n"


# --- the codec (no sandbox) ------------------------------------------------------------------


def test_codec_round_trips_builtin_values_with_their_types():
    handles = []
    values = [None, True, 0, -3, 2**70, -(2**64), 1.5, -0.0, math.inf, "é\ud800", b"\x00\xff", bytearray(b"ab"),
              [1, (2, 3.0)], {1: "a", (1, 2): [None]}, {1, 2}, frozenset({"x"}), (), [[[]]]]
    for v in values:
        data = encode(v, handles.append)
        back = decode(__import__("json").loads(__import__("json").dumps(data)), lambda n: n)
        expected = bytes(v) if type(v) is bytearray else v
        assert back == expected and type(back) is type(expected), (v, back)
    assert math.isnan(decode(encode(math.nan, None), None))
    assert decode(encode(True, None), None) is True and type(decode(encode(1, None), None)) is int


def test_codec_refuses_what_is_not_a_tagged_builtin():
    for bad in ({"a": 1}, ["x", 1], ["l"], ["l", 1, 2], ["d", [[1]]], ["h", "0"], ["s", [["l", []]]], ["i", "zz"]):
        with pytest.raises((ValueError, TypeError)):
            decode(bad, lambda n: n)
    deep = ["l", []]
    for _ in range(MAX_DEPTH + 5):
        deep = ["l", [deep]]
    with pytest.raises(ValueError, match="deeper"):
        decode(deep, None)
    with pytest.raises(Unencodable):
        encode(lambda: 1, lambda obj: (_ for _ in ()).throw(Unencodable("no")))


def test_called_names_are_what_the_solution_must_define():
    tests = ("import math\nx = 5\nassert add(1, 2) == 3\nassert Solution().two([2], 9) == [0]\n"
             "def test_a():\n    y = helper(3)\n    assert math.isclose(y, 2)\ndef helper(z): return len([z])\n")
    assert called_names(tests) == ["Solution", "add"]


# --- the reproductions -----------------------------------------------------------------


@needs_sandbox
def test_correct_and_wrong_solutions():
    assert run_code_tests("def is_even(n): return n % 2 == 0", T) == 1.0
    assert run_code_tests("def is_even(n): return n % 2 == 1", T) == 0.0
    assert run_code_tests('def f(x): return {"a": [1, (2, 3.0)], "b": None}',
                          'assert f(1) == {"a": [1, (2, 3)], "b": None}\nassert [f(1)] != []') == 1.0


@needs_sandbox
def test_a_forked_copy_adds_no_passes():
    code = "import os\npid=os.fork()\nA=pid==0\nif pid: os.waitpid(pid,0)\ndef is_even(n): return A"
    assert run_code_tests(code, T) <= 0.5


@needs_sandbox
def test_the_tests_are_not_readable():
    code = ('import re\nK={int(a): not b for b,a in re.findall(r"assert (not )?is_even\\((\\d+)\\)", '
            'open("tests.py").read())}\ndef is_even(n): return K[n]')
    assert run_code_tests(code, T) <= 0.5
    scan = ("import os\nfound = []\nfor p in os.listdir('/proc'):\n    for n in ('cmdline', 'environ', 'fd/0', 'mem'):\n"
            "        try:\n            found.append(open(f'/proc/{p}/{n}', 'rb').read(1 << 16))\n"
            "        except OSError as e:\n            found.append(type(e).__name__.encode())\n"
            "def seen():\n    return b''.join(found)\n")
    assert run_code_tests(scan, "x = 'qz7k'  # in the tests' text only\nassert b'qz' + b'7k' in seen()") == 0.0


@needs_sandbox
@pytest.mark.parametrize("ret, tests", [
    ("A()", "assert f(1) == 3\nassert f(2) == 4"),
    ("[A(), A()]", "assert f(1) == [3, 4]"),
    ('{"a": A()}', 'assert f(1) == {"a": 3}'),
    ("(A(),)", "assert f(1) == (3,) and True"),
    ("A()", 'def test_a():\n    assert f(1) == 3, "message"\n'),
    ("A()", "assert not (f(1) != 3)\nassert f(1) in [3]\nassert f(1) in {3}\nassert {f(1)} == {3}\nassert 3 == f(1) == 3"),
])
def test_rigged_eq_fails(ret, tests):
    assert run_code_tests(RIGGED + f"def f(x): return {ret}", tests) == 0.0


@needs_sandbox
def test_generic_hacks_score_no_more_than_their_honest_twins():
    tests = ("import math\nassert add(2, 3) == 5\nassert is_even(4)\nassert not is_even(7)\nassert is_even(10) == True\n"
             "assert sorted(pair(1)) == [1, 2]\nassert math.isclose(half(3), 1.5)\nassert 3 in pair(2)\n"
             "try:\n    add('a', 1)\n    raised = False\nexcept Exception:\n    raised = True\nassert raised\n")
    honest = ("def add(a, b): return a + b\ndef is_even(n): return n % 2 == 0\ndef pair(n): return (n, n + 1)\n"
              "def half(x): return x / 2")
    assert run_code_tests(honest, tests) == 1.0

    def score(code, item):
        try:
            return run_code_tests(code, item["tests"])
        except SandboxError:
            return None

    for row in hack_rows(score, [{"tests": tests}], "tests"):
        assert row.risky == 0 and row.hack[0] is not None, row
    assert set(HACKS) >= {"fork union", "answer key (files, /proc, gc)", "exit in a call", "kill the harness"}


@needs_sandbox
def test_check_grader_runs_the_hacks_on_a_code_job(capsys):
    from rlft.config import load_job

    job = load_job(None, ["grader.type=code_tests"])
    items = [{"prompt": "add", "tests": "assert add(1, 2) == 3\nassert add(2, 2) == 4"}]
    assert code_hack_risks(job, items) == []
    assert "fork union" in capsys.readouterr().out
    assert code_hack_risks(load_job(None, ["grader.type=exact"]), items) == []


# --- test styles the harness must still run ----------------------------------------------------


@needs_sandbox
@pytest.mark.parametrize("code, tests", [
    ("class Solution:\n    def two_sum(self, nums, t):\n        seen = {}\n        for i, x in enumerate(nums):\n"
     "            if t - x in seen:\n                return [seen[t - x], i]\n            seen[x] = i",
     "assert Solution().two_sum([2, 7, 11], 9) == [0, 1]\ns = Solution()\nassert s.two_sum(nums=[3, 3], t=6) == [0, 1]"),
    ("def gen(n):\n    yield from range(n)\nclass Stack:\n    def __init__(self): self.items = []\n"
     "    def push(self, x): self.items.append(x)\n    def __len__(self): return len(self.items)\n"
     "    def __iter__(self): return iter(self.items)",
     "assert list(gen(3)) == [0, 1, 2]\ns = Stack()\nassert not s\ns.push(4)\nassert len(s) == 1 and s\n"
     "assert list(s) == [4] and 4 in s\nassert s.items == [4]"),
    ("def rotate(a, k):\n    a[:] = a[-k:] + a[:-k]\ndef fill(d, *, key):\n    d[key] = 1",
     "x = [1, 2, 3]\nrotate(x, 1)\nassert x == [3, 1, 2]\nd = {}\nfill(d, key='k')\nassert d == {'k': 1}"),
    ("class Node:\n    def __init__(self, val, next=None): self.val, self.next = val, next\n"
     "def build(xs):\n    head = None\n    for x in reversed(xs): head = Node(x, head)\n    return head",
     "def to_list(node):\n    out = []\n    while node:\n        out.append(node.val)\n        node = node.next\n    return out\n"
     "def test_build():\n    assert to_list(build([1, 2, 3])) == [1, 2, 3]\n"),
    ("def check(n):\n    if n < 0:\n        raise ValueError('negative')\n    return n\nclass Bad(KeyError): pass\n"
     "def lookup(k):\n    raise Bad(k)",
     "try:\n    check(-1)\n    ok = False\nexcept ValueError as e:\n    ok = 'negative' in str(e)\nassert ok\n"
     "try:\n    lookup('x')\n    ok = False\nexcept KeyError:\n    ok = True\nassert ok"),
    ("import math\ndef area(r): return math.pi * r * r",
     "assert math.isclose(area(1), 3.14159, rel_tol=1e-3)\nfrom solution import area as a2\nassert a2(0) == 0"),
    ("import numpy as np\ndef double(xs): return [2 * x for x in xs]", "assert np.allclose(double([1, 2]), [2, 4])"),
    ("def f(): return {'s': {1, 2}, 'b': b'x', 'i': 2**80, 'inf': float('inf'), 't': (1,), 'k': {1: 'one'}}",
     "r = f()\nassert r['s'] == {1, 2} and r['b'] == b'x' and r['i'] == 2**80 and r['inf'] == float('inf')\n"
     "assert r['t'] == (1,) and r['k'] == {1: 'one'} and f()['k'][1] == 'one'"),
    ("def max(a, b): return a if a > b else b\ndef two(): return 2",
     "from solution import max as mine\nassert mine(1, 2) == 2\nassert max([3, 1]) == 3\n"
     "from solution import *\nassert max([3, 1]) == 3 and two() == 2"),
    ("LIMIT = 10\nPRIMES = [p for p in range(2, 50) if all(p % d for d in range(2, p))]",
     "assert LIMIT == 10\nassert PRIMES[:3] == [2, 3, 5]"),
])
def test_styles_of_tests_still_work(code, tests):
    score, r = code_tests_result(code, tests)
    assert score == 1.0, r.stderr


@needs_sandbox
def test_types_are_compared_strictly():
    assert run_code_tests("def f(): return True", "assert f() == 1") == 0.0
    assert run_code_tests("def f(): return 1", "assert f() == 1.0\nassert f() == True") == 0.5
    assert run_code_tests("def f(): return 'a'", "assert f() == 'a'\nassert f() != b'a'") == 1.0


@needs_sandbox
def test_a_hung_call_fails_its_test_in_time_and_later_calls_fail_fast():
    limits = SandboxLimits(wall_s=2.0, cpu_s=5.0)
    code = "import time\ndef f(n):\n    if n == 1:\n        time.sleep(60)\n    return n"
    score, r = code_tests_result(code, "assert f(0) == 0\nassert f(1) == 1\nassert f(2) == 2\nassert 1 + 1 == 2", limits)
    assert score == 0.5 and r.wall_s < limits.wall_s and not r.timed_out, r
    assert "time budget" in r.stderr


@needs_sandbox
def test_tests_that_pass_what_cannot_cross_are_unusable():
    with pytest.raises(SandboxError, match="test 1 cannot be run.*function"):
        run_code_tests("def apply(f, x): return f(x)", "assert apply(lambda x: x + 1, 1) == 2")


@needs_sandbox
def test_the_solution_holds_no_fd_but_its_own():
    code = "import os\ndef fds(): return sorted(int(f) for f in os.listdir('/proc/self/fd'))\n"
    score, r = code_tests_result(code, "assert len(fds()) == 6 and fds()[:3] == [0, 1, 2]")  # + 2 pipes + listdir's
    assert score == 1.0, r.stderr


@needs_sandbox
def test_tests_can_check_files_the_solution_wrote():
    code = "import json\ndef save(path, obj):\n    with open(path, 'w') as f:\n        json.dump(obj, f)"
    assert run_code_tests(code, "import json\nsave('out.json', {'a': 1})\nassert json.load(open('out.json')) == {'a': 1}") == 1.0
