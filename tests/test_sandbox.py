"""The code sandbox (rlft/rewards/sandbox.py, code.py): real attacks, each stopped, with nothing left.

    python -m pytest -q tests/test_sandbox.py        # about 60-100 s: wall-time limits are waited out

Every test runs once per backend that works on this machine (bwrap, unshare); one that does not
work is skipped with the reason. Semantics under test: model code that misbehaves scores 0.0 for
the tests it breaks; a python grader that gives no number raises SandboxError (errored attempt).
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import signal
import subprocess
import threading
import warnings
from pathlib import Path

import pytest

from rlft.rewards import sandbox
from rlft.rewards.code import code_grader, last_code_block, run_code_tests, run_python_grader
from rlft.rewards.sandbox import SandboxError, SandboxLimits, UnsandboxedWarning, run
from rlft.rewards.sandbox_check import GRADER_ATTACKS, LIMITS, TEST_ATTACKS, run_grader_attack, run_test_attack
from rlft.types import Sample


def _backend_param(name: str):
    why = sandbox.probe(name)
    return pytest.param(name, id=name, marks=pytest.mark.skipif(why is not None, reason=f"{name}: {why}"))


BACKENDS = [_backend_param(b) for b in sandbox.BACKENDS]
TIGHT = SandboxLimits(wall_s=3.0, cpu_s=1.0, memory_mb=512, processes=16, output_bytes=100_000, file_bytes=1_000_000)


# --- attacks ---------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("attack", list(TEST_ATTACKS))
def test_model_code_attack_is_stopped(attack, backend):
    row = run_test_attack(attack, backend)
    assert row.ok, row
    assert row.leftovers == 0, row
    assert row.seconds < LIMITS.wall_s + 1.0, row  # stopped by the wall-time limit at the latest
    if attack == "fork bomb":  # the process limit held while it ran (+1: a fork between polls)
        assert row.peak <= LIMITS.processes + 1, row
    if attack == "detached daemon":  # the daemon did run, and was killed with the namespace
        assert row.peak >= 2, row
    if attack in ("10 GiB allocation", "1 GiB of output", "TCP connect to 127.0.0.1", "read a file outside",
                  "write a file outside", "env secrets"):
        assert row.stopped_by != "wall-time kill", row  # refused outright, not waited out
    if attack == "10 GiB allocation":
        assert "MemoryError" in row.stopped_by, row
    if attack == "1 GiB of output":
        assert row.stopped_by == "output limit (truncated)", row


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("attack", list(GRADER_ATTACKS))
def test_grader_attack_raises(attack, backend):
    row = run_grader_attack(attack, backend)
    assert row.ok and row.outcome == "SandboxError" and row.leftovers == 0, row
    assert row.seconds < LIMITS.wall_s + 1.0, row


def _nobody_can_read(path: Path) -> bool:
    return all(os.stat(p).st_mode & 0o005 == 0o005 for p in [path, *path.parents])


REPO = Path(__file__).resolve().parents[1]
SYSTEM_PYTHON = Path("/usr/bin/python3")


def as_nobody(script: str):
    """What ``script`` (run by the system Python as uid 65534, rlft importable) prints, as JSON."""
    cmd = ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", "env", "-i", "PATH=/usr/bin:/bin",
           str(SYSTEM_PYTHON), "-B", "-c", script]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd="/")
    if r.returncode != 0 and "SyntaxError" in r.stderr:
        pytest.skip(f"{SYSTEM_PYTHON} is too old for rlft: {r.stderr.strip()[-200:]}")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None or not SYSTEM_PYTHON.exists()
                    or not _nobody_can_read(REPO),
                    reason="needs root, setpriv, /usr/bin/python3 and a checkout readable by nobody")
def test_attacks_as_an_unprivileged_user():
    """CI runs as root (no user namespace, a sandbox uid of its own); this covers the other path:
    rlft as an ordinary user, where the sandbox is a user namespace whose root has no capabilities."""
    script = (f"import json, sys; sys.path.insert(0, {str(REPO)!r})\n"
              "from rlft.rewards.sandbox import available_backends\n"
              "from rlft.rewards.sandbox_check import run_test_attack\n"
              "attacks = ['fork bomb', 'read a file outside', 'write a file outside', 'env secrets', 'detached daemon']\n"
              "print(json.dumps({b: [run_test_attack(a, b).ok for a in attacks] for b in available_backends()}))")
    oks = as_nobody(script)
    assert oks and all(all(v) for v in oks.values()), oks


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None or not SYSTEM_PYTHON.exists()
                    or not _nobody_can_read(REPO) or shutil.which("unshare") is None,
                    reason="needs root, setpriv, unshare, /usr/bin/python3 and a checkout readable by nobody")
def test_no_nested_user_namespaces_as_an_unprivileged_user():
    script = (f"import json, sys; sys.path.insert(0, {str(REPO)!r})\n"
              "from rlft.rewards.sandbox import available_backends, run\n"
              "print(json.dumps({b: run(['unshare', '-U', 'true'], backend=b).returncode for b in available_backends()}))")
    rcs = as_nobody(script)
    assert rcs and all(rc != 0 for rc in rcs.values()), rcs


# --- run() -----------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_run_files_stdin_cwd_env(backend, monkeypatch):
    monkeypatch.setenv("RLFT_TEST_SECRET", "sk-should-not-leak")
    prog = ("import os, sys; print(os.getcwd()); print(open('data/in.txt').read()); print(sys.stdin.read()); "
            "open('out.txt', 'w').write('ok'); print(sorted(os.environ)); sys.exit(3)")
    r = run(["python", "-c", prog], files={"data/in.txt": "hello"}, stdin="from stdin", limits=TIGHT, backend=backend)
    lines = r.stdout.splitlines()
    assert (r.returncode, lines[:3]) == (3, [sandbox.SANDBOX_CWD, "hello", "from stdin"]), r
    assert "RLFT_TEST_SECRET" not in r.stdout and "sk-should" not in r.stdout
    assert set(eval(lines[3])) <= {"PATH", "HOME", "TMPDIR", "LANG", "PYTHONDONTWRITEBYTECODE", "OMP_NUM_THREADS",
                                   "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"}
    assert not r.timed_out and r.killed_reason is None and not r.output_truncated


@pytest.mark.parametrize("backend", BACKENDS)
def test_nothing_writable_but_the_sandbox_folder(backend):
    prog = """
import os
for d in ["/", "/usr", "/etc", "/tmp", "/dev", "/proc", "/root", os.path.dirname(os.__file__), "/sandbox"]:
    try:
        open(os.path.join(d, "rlft-probe"), "w").close()
        print(d, "writable")
    except OSError as e:
        print(d, "refused")
"""
    r = run(["python", "-c", prog], limits=TIGHT, backend=backend)
    writable = [line.split()[0] for line in r.stdout.splitlines() if line.endswith(" writable")]
    assert writable == ["/sandbox"], r


@pytest.mark.parametrize("backend", BACKENDS)
def test_cpu_limit_kills(backend):
    # a generous wall limit: on a loaded machine one CPU-second can take several wall seconds
    r = run(["python", "-c", "while True: pass"], limits=SandboxLimits(wall_s=15, cpu_s=1), backend=backend)
    assert r.killed_reason == "cpu" and not r.timed_out, r
    assert r.returncode in (-signal.SIGXCPU, -signal.SIGKILL), r


@pytest.mark.parametrize("backend", BACKENDS)
def test_wall_output_and_file_limits(backend):
    r = run(["sleep", "30"], limits=SandboxLimits(wall_s=0.5), backend=backend)
    assert r.timed_out and r.killed_reason == "wall" and 0.5 <= r.wall_s < 2, r
    r = run(["python", "-c", "while True: print('x' * 1000)"], limits=TIGHT, backend=backend)
    assert r.output_truncated and r.killed_reason == "output" and len(r.stdout) + len(r.stderr) <= 100_000, r
    r = run(["python", "-c", "open('big', 'wb').write(b'x' * 2_000_000)"], limits=TIGHT, backend=backend)
    assert r.returncode != 0 and "File too large" in r.stderr, r


@pytest.mark.parametrize("backend", BACKENDS)
def test_process_limit(backend):
    prog = ("import os, time\nn = 0\ntry:\n    while True:\n        if os.fork() == 0:\n            time.sleep(5)\n"
            "            os._exit(0)\n        n += 1\nexcept OSError as e:\n    print(n, e.errno)")
    r = run(["python", "-c", prog], limits=SandboxLimits(wall_s=5, processes=8), backend=backend)
    n, errno = map(int, r.stdout.split())
    assert errno == 11 and 4 <= n <= 8, r  # EAGAIN after at most `processes` children
    assert r.wall_s < 4, r  # the parent exited at once; its sleeping children died with the namespace


@pytest.mark.parametrize("backend", BACKENDS)
def test_concurrent_runs(backend):
    results = [None] * 4

    def one(i):
        results[i] = run(["python", "-c", f"print({i})"], limits=TIGHT, backend=backend).stdout.strip()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == ["0", "1", "2", "3"]


def test_bad_arguments():
    with pytest.raises(SandboxError, match="relative path"):
        run(["true"], files={"../escape": "x"})
    with pytest.raises(SandboxError, match="argv is empty"):
        run([])
    with pytest.raises(ValueError, match="valid: bwrap, unshare"):
        sandbox.probe("docker")


def test_refuses_without_a_sandbox_unless_opted_in(monkeypatch):
    monkeypatch.setattr(sandbox, "probe", lambda b: f"{b} does not work (test)")
    with pytest.raises(SandboxError, match=r"refusing.*install bubblewrap.*user namespaces.*allow_unsandboxed=True"):
        run(["true"])
    with pytest.raises(SandboxError, match="refusing"):
        run_python_grader("def grade(s, i): return 1", {}, {})
    for _ in range(2):  # warns on every call
        with pytest.warns(UnsandboxedWarning, match="WITHOUT a sandbox"):
            r = run(["python", "-c", "print('ran')"], limits=TIGHT, allow_unsandboxed=True)
        assert r.stdout == "ran\n"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnsandboxedWarning)
        assert run_code_tests("def f(): return 1", "assert f() == 1", TIGHT, allow_unsandboxed=True) == 1.0


# --- python graders --------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_python_grader(backend):
    src = "def grade(sample, item):\n    return float(sample['output_text'].strip() == item['answer'])"
    assert run_python_grader(src, {"output_text": " 4 "}, {"answer": "4"}, TIGHT, backend=backend) == 1.0
    assert run_python_grader(src, {"output_text": "5"}, {"answer": "4"}, TIGHT, backend=backend) == 0.0
    assert run_python_grader("def grade(s, i): return True", {}, {}, TIGHT, backend=backend) == 1.0


@pytest.mark.parametrize("source, error", [
    ("def grade(s, i): raise ValueError('bad item')", "raised ValueError: bad item"),
    ("def grade(s, i): return float('nan')", "finite number"),
    ("def grade(s, i): return 'PASS'", "must return a finite number"),
    ("def score(s, i): return 1", "defines no function grade"),
    ("def grade(s, i):\n    import sys\n    sys.exit(0)", "SystemExit"),
    ("def grade(s, i):\n    import os\n    print('1.0')\n    os._exit(0)", "no result"),
    ("def grade(s, i): return [][1]", "IndexError"),
])
def test_python_grader_errors(source, error):
    with pytest.raises(SandboxError, match=error):
        run_python_grader(source, {"output_text": "x"}, {}, TIGHT)


def test_python_grader_needs_json():
    with pytest.raises(SandboxError, match="JSON-serialisable"):
        run_python_grader("def grade(s, i): return 1", {"output_text": object()}, {})


# --- code tests ------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_code_tests_score_is_the_fraction_passed(backend):
    tests = "assert add(1, 2) == 3\nassert add(2, 2) == 4\nx = 5\nassert add(x, 0) == 5\nassert add(0, 0) == 1"
    assert run_code_tests("def add(a, b): return a + b", tests, TIGHT, backend=backend) == 0.75
    assert run_code_tests("def add(a, b): return 3", tests, TIGHT, backend=backend) == 0.25
    assert run_code_tests("def add(a, b) return", tests, TIGHT, backend=backend) == 0.0  # syntax error
    funcs = "def test_one():\n    assert add(1, 1) == 2\ndef test_two():\n    assert add(1, 1) == 3\n"
    assert run_code_tests("def add(a, b): return a + b", funcs, TIGHT, backend=backend) == 0.5


def test_code_tests_resist_patching_the_harness():
    tests = "assert add(1, 2) == 3\nassert sorted([2, 1]) == [0]"
    cheats = [
        "import builtins\nbuiltins.compile = lambda *a, **k: compile('pass', '', 'exec')\ndef add(a, b): return 0",
        "import builtins\nbuiltins.exec = lambda *a, **k: None\ndef add(a, b): return 0",
        "import builtins\nbuiltins.sorted = lambda x: [0]\ndef add(a, b): return 0",
        "import os\nos.write = lambda fd, b: len(b)\ndef add(a, b): return 0",
    ]
    for cheat in cheats:
        assert run_code_tests(cheat, tests, TIGHT) == 0.0, cheat


def test_code_tests_reject_unusable_tests():
    with pytest.raises(SandboxError, match="do not parse"):
        run_code_tests("x = 1", "assert (")
    with pytest.raises(SandboxError, match="no test_\\* functions and no top-level assert"):
        run_code_tests("x = 1", "print(x)")


def test_code_grader():
    grader = code_grader("tests", limits=TIGHT)
    text = "Sure:\n```python\ndef add(a, b):\n    return a + b\n```\nand a sketch:\n```\ndef add(a, b): return 0\n```"
    assert last_code_block(text) == "def add(a, b): return 0\n"
    item = {"tests": "assert add(1, 2) == 3"}
    assert grader(Sample(output_text=text.split("and a sketch")[0]), item) == 1.0
    assert grader(Sample(output_text=text), item) == 0.0
    assert pickle.loads(pickle.dumps(grader)) == grader
    with pytest.raises(KeyError, match="tests field 'tests' is missing.*item fields: prompt"):
        grader(Sample(output_text=text), {"prompt": "p"})
    with pytest.raises(ValueError, match="valid: last_code_block, output"):
        code_grader(extract="first")


# --- cleanup whatever the program left ----------------------------------------------------------


def test_cleanup_survives_deep_trees_locked_folders_and_links(tmp_path):
    """The red team's three: 1,000 nested folders (shutil.rmtree hit RecursionError), a folder
    chmod 000 with a file in it (TypeError), a link to a host folder (its mode was changed)."""
    base, host = tmp_path / "base", tmp_path / "host"
    host.mkdir(mode=0o755)
    (host / "keep.txt").write_text("mine")
    os.chmod(host, 0o755)
    deep = base / "work"
    deep.mkdir(parents=True)
    d = os.open(deep, os.O_RDONLY)
    for _ in range(1000):  # relative to a folder fd: the path itself would pass PATH_MAX
        os.mkdir("d", dir_fd=d)
        nd = os.open("d", os.O_RDONLY, dir_fd=d)
        os.close(d)
        d = nd
    os.symlink(host, "host-link", dir_fd=d)
    os.close(d)
    locked = base / "work" / "locked"
    locked.mkdir()
    (locked / "f").write_text("x")
    os.symlink(host, base / "work" / "link")
    os.symlink(host / "keep.txt", locked / "file-link")
    os.chmod(locked, 0)
    sandbox._remove(base)
    assert not base.exists()
    assert (host / "keep.txt").read_text() == "mine" and (host.stat().st_mode & 0o777) == 0o755


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_program_that_leaves_a_deep_locked_tree_is_cleaned_up(backend, monkeypatch, tmp_path):
    monkeypatch.setattr(sandbox.tempfile, "tempdir", str(tmp_path))
    prog = ("import os\nfor i in range(1000):\n    os.mkdir('d'); os.chdir('d')\n"
            "os.mkdir('x'); os.chmod('x', 0)\nos.symlink('/tmp', 'l')\nprint('done')")
    r = run(["python", "-c", prog], limits=TIGHT, backend=backend)
    assert r.stdout.strip() == "done", r
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_memfd_bounded_by_file_size_and_open_files(backend):
    """memfd_create files are not counted by the address-space limit (1.7 GB were held under 64
    MiB); RLIMIT_FSIZE bounds each and RLIMIT_NOFILE their number."""
    prog = ("import os, signal\nsignal.signal(signal.SIGXFSZ, signal.SIG_IGN)\nfd = os.memfd_create('x')\n"
            "try:\n    [os.write(fd, b'x' * 2**20) for _ in range(64)]\nexcept OSError as e:\n    print(os.lseek(fd, 0, 1))\n"
            "n = 0\ntry:\n    while True:\n        os.memfd_create('y'); n += 1\nexcept OSError:\n    print(n)")
    r = run(["python", "-c", prog], limits=SandboxLimits(wall_s=5, file_bytes=2**20), backend=backend)
    written, files = map(int, r.stdout.split())
    assert written == 2**20 and files < 256, r


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_link_to_a_host_folder_left_by_the_program_keeps_its_mode(backend, monkeypatch, tmp_path):
    """The cleanup's permission fix (chmod 0700 of what it cannot list) never goes through a link:
    the program leaves links to a host folder (absolute, as the host sees it) next to a chmod-000
    folder; the host folder's mode and contents are unchanged and the sandbox folder is gone."""
    work_tmp, host = tmp_path / "tmp", tmp_path / "host"
    work_tmp.mkdir()
    host.mkdir()
    os.chmod(host, 0o755)
    (host / "keep.txt").write_text("mine")
    monkeypatch.setattr(sandbox.tempfile, "tempdir", str(work_tmp))
    prog = (f"import os\nos.symlink({str(host)!r}, 'l')\nos.mkdir('x')\nos.symlink({str(host)!r}, 'x/l')\n"
            f"os.symlink('../l', 'x/rel')\nos.chmod('x', 0)\nprint('done')")
    r = run(["python", "-c", prog], limits=TIGHT, backend=backend)
    assert r.stdout.strip() == "done", r
    assert list(work_tmp.iterdir()) == []
    assert (host.stat().st_mode & 0o777) == 0o755 and (host / "keep.txt").read_text() == "mine"


@pytest.mark.parametrize("backend", BACKENDS)
def test_open_files_are_limited(backend):
    prog = ("fs = []\ntry:\n    for i in range(1000):\n        fs.append(open(f'f{i}', 'w'))\n"
            "except OSError as e:\n    print(len(fs), e.errno)")
    r = run(["python", "-c", prog], limits=SandboxLimits(wall_s=5, open_files=64), backend=backend)
    opened, errno_ = map(int, r.stdout.split())
    assert opened < 64 and errno_ == 24, r  # EMFILE


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_program_that_kills_its_sandbox_init_just_fails(backend):
    """Under bwrap the init is not PID 1 of the namespace, so the program can SIGKILL it; that was
    reported as a sandbox failure (an errored attempt instead of a 0). Now it is a failed run
    (unshare: the init is PID 1 and ignores the kill; the program goes on)."""
    prog = "import os, time\nos.kill(os.getppid(), 9)\ntime.sleep(0.5)\nprint('alive')"
    r = run(["python", "-c", prog], limits=TIGHT, backend=backend)
    assert r.returncode != 0 or r.stdout.strip() == "alive", r
    if r.returncode != 0:
        assert r.returncode == -signal.SIGKILL and "init was killed" in r.stderr and not r.timed_out, r


def test_a_sandbox_that_never_started_the_program_still_raises():
    """Only an init that got as far as exec'ing the program makes its death the program's fault."""
    empty = {"stdout": b"", "stderr": b"bwrap: oops", "channel": b""}
    for status in (b"", b'{"pidns": "pid:[1]"}\n', b'{"pidns": "pid:[1]"}\n{"setup_error": "mount"}\n'):
        with pytest.raises(SandboxError):
            sandbox._result({**empty, "status": status}, None, 1, TIGHT, 0.1, "bwrap")
    r = sandbox._result({**empty, "status": b'{"pidns": "pid:[1]"}\n{"started": true}\n'}, None, 137, TIGHT, 0.1, "bwrap")
    assert r.returncode == -signal.SIGKILL and "init was killed" in r.stderr
    r = sandbox._result({**empty, "status": b'{"pidns": "pid:[1]"}\n{"started": true}\n{"exit": 3, "cpu_s": 0}\n'},
                        None, 0, TIGHT, 0.1, "bwrap")
    assert r.returncode == 3


def test_bwrap_blocks_nested_user_namespaces_where_it_can():
    paths = sandbox._Paths(Path("/nonexistent"), None)
    cmd = sandbox._bwrap(paths)[0]
    assert ("--disable-userns" in cmd) == sandbox._bwrap_disables_userns()
    assert "--disable-userns" not in sandbox._bwrap(sandbox._Paths(Path("/nonexistent"), 2_000_000_001))[0]
