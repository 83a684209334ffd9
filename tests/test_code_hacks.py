"""Reward hacks on the code_tests grader (rlft/rewards/code.py), each scored at most 0.5.

    python -m pytest -q tests/test_code_hacks.py     # a few seconds; needs a working sandbox backend
"""

from __future__ import annotations

import pytest

from rlft.rewards import sandbox
from rlft.rewards.code import run_code_tests

pytestmark = pytest.mark.skipif(not sandbox.available_backends(), reason="no sandbox backend works here")

T = "assert is_even(2)\nassert not is_even(3)\nassert is_even(10)\nassert not is_even(7)"
RIGGED = "class A:\n    def __eq__(self, o): return True\n    __hash__ = lambda self: 0\n"


def test_correct_and_wrong_solutions():
    assert run_code_tests("def is_even(n): return n % 2 == 0", T) == 1.0
    assert run_code_tests("def is_even(n): return n % 2 == 1", T) == 0.0
    assert run_code_tests('def f(x): return {"a": [1, (2, 3.0)], "b": None}',
                          'assert f(1) == {"a": [1, (2, 3)], "b": None}\nassert [f(1)] != []') == 1.0


def test_a_forked_copy_adds_no_passes():
    code = "import os\npid=os.fork()\nA=pid==0\nif pid: os.waitpid(pid,0)\ndef is_even(n): return A"
    assert run_code_tests(code, T) <= 0.5


def test_the_tests_are_not_readable():
    code = ('import re\nK={int(a): not b for b,a in re.findall(r"assert (not )?is_even\\((\\d+)\\)", '
            'open("tests.py").read())}\ndef is_even(n): return K[n]')
    assert run_code_tests(code, T) <= 0.5


@pytest.mark.parametrize("ret, tests", [
    ("A()", "assert f(1) == 3\nassert f(2) == 4"),
    ("[A(), A()]", "assert f(1) == [3, 4]"),
    ('{"a": A()}', 'assert f(1) == {"a": 3}'),
    ("(A(),)", "assert f(1) == (3,) and True"),
    ("A()", 'def test_a():\n    assert f(1) == 3, "message"\n'),
])
def test_rigged_eq_fails(ret, tests):
    assert run_code_tests(RIGGED + f"def f(x): return {ret}", tests) == 0.0
