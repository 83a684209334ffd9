"""Run untrusted code — user graders, model-written programs — with limits and isolation.

``run(argv, files=..., stdin=..., limits=...)`` starts ``argv`` in a throwaway directory that is
its working directory (``/sandbox`` inside) and the only writable place, and returns a
``SandboxResult``. What the program gets:

- **limits** (``SandboxLimits``): wall time and output size, enforced here (the whole process tree
  is killed); CPU seconds, address space, processes (and threads), file size and open files as
  rlimits set in the program's process (``_sandbox_init.py``). Memory the address-space limit does
  not count — memfd_create files, /dev/shm — is bounded per process by open files x file size:
  RLIMIT_FSIZE applies to memfds (measured: write stops at ``file_bytes`` with EFBIG, ftruncate
  past it fails with EFBIG; with ``open_files=256`` about 252 more can be opened, then EMFILE).
  Not bounded: the sum over processes (no cgroups), and the /sandbox folder's total size on disk
  (each file is capped, their number is not).
- **no network**: a new network namespace with no interfaces up (even 127.0.0.1 is unreachable).
- **a private file tree**: read-only binds of /usr, the few /etc files the dynamic loader and
  Python need, and this Python's prefix; nothing else of the host (no /home, /root, /tmp, /work).
- **a minimal environment**: PATH, HOME, TMPDIR, LANG and thread counts; none of rlft's variables
  (no API keys).
- **no leftovers**: a new PID namespace whose init is rlft's own (or bwrap's), so when it exits
  every process of the program dies; a new session, killed as a group at the end.
- **no privileges**: no capabilities, no_new_privs, and — when rlft runs as root — a random uid of
  its own (the kernel does not apply RLIMIT_NPROC to uid 0, so a fork bomb would otherwise run free).
- **nested user namespaces**: blocked when rlft is not root (the sandbox is a user namespace): bwrap
  gets ``--disable-userns`` (0.8+, used where ``bwrap --help`` lists it) and the init sets the
  namespace's own ``max_user_namespaces`` to 0 before dropping its capabilities (unshare backend;
  measured: ``unshare -U`` inside fails with ENOSPC on both backends). When rlft is root (a uid of
  its own, no user namespace: that knob would be the host's) the program can still create user
  namespaces if the host allows unprivileged ones: they grant nothing on the host's files or
  network, but expose more kernel surface.
- **an honest outcome**: under bwrap the init is not PID 1, so the program can kill it; a run whose
  init had started the program and then died without reporting is a failed run (returncode -9, a
  note on stderr), not ``SandboxError`` — only a sandbox that never got to start the program is.
- **cleanup**: the throwaway folder is removed in a ``finally`` whatever the program left in it
  (deep trees, chmod-000 folders, links to host folders — never followed), without raising.

Backends are tried in the order of ``BACKENDS`` (bottom) and the first that actually runs a program
is used (detected once per process, cached): ``bwrap`` (bubblewrap, where installed), then
``unshare`` (util-linux; user namespaces when not root, with the file tree built by the init).
Where neither works, ``run`` refuses with ``SandboxError`` naming why and the fix, unless the
caller passes ``allow_unsandboxed=True``: then limits still apply but isolation does not, and every
call warns.

The verdict channel used by ``rlft.rewards.code`` (grader scores, test outcomes) is ``run_channel``:
a pipe that only the harness program writes, read here; never the program's stdout or exit status.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import random
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable

from rlft.rewards._sandbox_proc import cap, collect, kill_tree, sweep

log = logging.getLogger(__name__)

SANDBOX_CWD = "/sandbox"
_INIT_SOURCE = (Path(__file__).parent / "_sandbox_init.py").read_text()
_HOST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Whole folders the loader and Python need; /etc is bound file by file (no secrets, no shadow).
_SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
_ETC_FILES = ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/alternatives",
              "/etc/localtime", "/etc/passwd", "/etc/group", "/etc/nsswitch.conf", "/etc/hosts",
              "/etc/ssl", "/etc/mime.types")
_UID_RANGE = (2_000_000_000, 2_100_000_000)  # sandbox uids when rlft runs as root: no user owns them


@dataclass(frozen=True)
class SandboxLimits:
    """What one sandboxed run may use. Tight defaults for graders; raise them per job."""

    wall_s: float = 10.0
    """Seconds from start until the whole process tree is killed (``timed_out``)."""
    cpu_s: float = 10.0
    """CPU seconds of the program's main process (RLIMIT_CPU; SIGXCPU then SIGKILL)."""
    memory_mb: int = 1024
    """Address space per process, MiB (RLIMIT_AS): allocations beyond it fail. Per process: the
    program's total can reach ``processes`` times this (no cgroups here to cap the sum)."""
    processes: int = 64
    """Processes and threads the program may have at once (RLIMIT_NPROC, plus the sandbox's own 2)."""
    output_bytes: int = 1_000_000
    """stdout + stderr kept; past it the program is killed (``output_truncated``)."""
    file_bytes: int = 10_000_000
    """Largest file the program may write (RLIMIT_FSIZE); applies to memfd and /dev/shm files too."""
    open_files: int = 256
    """Files (and pipes, sockets, memfds) the program may hold open per process (RLIMIT_NOFILE).
    With ``file_bytes`` it bounds what memfd_create files can hold, which RLIMIT_AS does not count."""


@dataclass(frozen=True)
class SandboxResult:
    returncode: int
    """The program's exit code, or -N when signal N ended it (as in ``subprocess``)."""
    stdout: str
    stderr: str
    wall_s: float
    timed_out: bool
    killed_reason: str | None
    """Why the sandbox stopped it: "wall", "cpu", "output", or None when it ended by itself (or
    killed the sandbox's init: returncode -9, with a note on stderr)."""
    output_truncated: bool


class SandboxError(RuntimeError):
    """The code could not be run safely, or (graders) it gave no verdict; the attempt is errored."""


class UnsandboxedWarning(RuntimeWarning):
    """Untrusted code ran without isolation because the caller opted in."""


# --- backends: (paths) -> command prefix and the init's mount plan ---------------------------


@dataclass(frozen=True)
class _Paths:
    base: Path  # holds work/ (the throwaway folder) and root/ (the unshare backend's mount point)
    uid: int | None  # the sandbox's own uid when rlft is root; None inside a user namespace

    @property
    def work(self) -> Path:
        return self.base / "work"


def _readonly_tree() -> tuple[list[str], dict[str, str]]:
    """(folders/files to bind read-only, symlinks to recreate) — the host tree the program sees."""
    prefixes = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
                os.path.dirname(os.path.dirname(os.path.realpath(sys.executable)))}
    binds, links = [], {}
    for path in (*_SYSTEM_DIRS, *_ETC_FILES, *sorted(prefixes)):
        if not os.path.lexists(path):
            continue
        if os.path.islink(path) and path in _SYSTEM_DIRS:  # merged /usr: /bin -> usr/bin
            links[path] = os.readlink(path)
        elif not any(PurePosixPath(path).is_relative_to(b) for b in binds):
            binds.append(os.path.realpath(path) if path in prefixes else path)
    return binds, links


@functools.cache
def _bwrap_disables_userns() -> bool:
    """Whether the installed bwrap has --disable-userns (0.8+): no user namespaces inside."""
    try:
        return "--disable-userns" in subprocess.run(["bwrap", "--help"], capture_output=True, text=True,
                                                    timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return False


def _bwrap(p: _Paths) -> tuple[list[str], dict | None]:
    binds, links = _readonly_tree()
    cmd = ["bwrap", "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts",
           "--unshare-cgroup-try", "--die-with-parent", "--new-session", "--clearenv"]
    if p.uid is None:
        cmd += ["--unshare-user"] + (["--disable-userns"] if _bwrap_disables_userns() else [])
    else:  # real root, no user namespace: the init keeps only what it needs to switch uid
        cmd += ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    parents = sorted({str(a) for b in binds for a in PurePosixPath(b).parents if str(a) != "/"})
    for d in parents:  # bwrap 0.8 would create them 0700: unreadable to the sandbox's own uid
        cmd += ["--perms", "0755", "--dir", d]
    for path in binds:
        cmd += ["--ro-bind", path, path]
    for link, target in links.items():
        cmd += ["--symlink", target, link]
    cmd += ["--proc", "/proc", "--dev", "/dev", "--bind", str(p.work), SANDBOX_CWD, "--remount-ro", "/"]
    return cmd + ["--"], None


def _unshare(p: _Paths) -> tuple[list[str], dict | None]:
    binds, links = _readonly_tree()
    cmd = ["unshare", "--net", "--pid", "--mount", "--ipc", "--uts", "--kill-child", "--propagation", "private"]
    if p.uid is None:
        cmd[1:1] = ["--user", "--map-root-user"]
    (p.base / "root").mkdir()
    mounts = {"root": str(p.base / "root"), "ro": binds, "symlinks": links, "work": str(p.work), "cwd": SANDBOX_CWD}
    return cmd + ["--"], mounts


BACKENDS: dict[str, Callable[[_Paths], tuple[list[str], dict | None]]] = {
    "bwrap": _bwrap,
    "unshare": _unshare,
}


@functools.cache
def probe(backend: str) -> str | None:
    """None when ``backend`` runs a program here, else why not (tried once per process)."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown sandbox backend {backend!r}; valid: {', '.join(BACKENDS)}")
    if shutil.which(backend) is None:
        return f"{backend} is not installed"
    try:
        r = _execute([sys.executable, "-I", "-c", "print('ok')"], {}, "", SandboxLimits(wall_s=20), backend, False)[0]
    except (SandboxError, OSError) as e:
        return str(e)
    if r.returncode != 0 or r.stdout.strip() != "ok":
        return f"{backend} failed (exit {r.returncode}): {r.stderr.strip()[-300:]}"
    return None


def available_backends() -> list[str]:
    """The backends that work on this machine, in order of preference."""
    return [b for b in BACKENDS if probe(b) is None]


def _choose_backend(allow_unsandboxed: bool) -> str | None:
    for b in BACKENDS:
        if probe(b) is None:
            return b
    why = "; ".join(f"{b}: {probe(b)}" for b in BACKENDS)
    if not allow_unsandboxed:
        raise SandboxError(
            f"refusing to run untrusted code: no sandbox works on this machine ({why}); fix: install "
            f"bubblewrap (apt-get install bubblewrap), or enable unprivileged user namespaces "
            f"(sysctl -w kernel.unprivileged_userns_clone=1 and user.max_user_namespaces > 0); or, "
            f"knowing the code can read and write everything you can, pass allow_unsandboxed=True"
        )
    msg = f"running untrusted code WITHOUT a sandbox (allow_unsandboxed=True): {why}"
    log.warning(msg)
    warnings.warn(msg, UnsandboxedWarning, stacklevel=3)
    return None


# --- running ---------------------------------------------------------------------------------


def _program_env() -> dict[str, str]:
    return {"PATH": f"{os.path.dirname(sys.executable)}:{_HOST_PATH}", "HOME": SANDBOX_CWD,
            "TMPDIR": SANDBOX_CWD, "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1",
            "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _rlimits(lim: SandboxLimits) -> dict[str, tuple[int, int]]:
    cpu = max(1, math.ceil(lim.cpu_s))
    mem = lim.memory_mb * 2**20
    return {"cpu": (cpu, cpu + 1), "as": (mem, mem), "nproc": (lim.processes + 2, lim.processes + 2),
            "fsize": (lim.file_bytes, lim.file_bytes), "core": (0, 0),
            "nofile": (lim.open_files, lim.open_files)}  # with fsize it bounds memfd / tmpfs files too


def _write_files(work: Path, files: dict[str, str], uid: int | None) -> None:
    for name, text in files.items():
        rel = PurePosixPath(name)
        if rel.is_absolute() or ".." in rel.parts or not rel.parts:
            raise SandboxError(f"files: {name!r} must be a relative path inside the sandbox folder, without '..'")
        path = work / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    if uid is not None:
        for root, dirs, names in os.walk(work):
            for n in (root, *(os.path.join(root, x) for x in dirs + names)):
                os.chown(n, uid, uid)


def _chmod_dir(name: str, dir_fd: int) -> None:
    """chmod 0700 the folder ``name`` in ``dir_fd`` — never what a link there points to.

    Opened O_PATH | O_NOFOLLOW | O_DIRECTORY (needs no read permission; fails on a link), then
    chmod'ed through /proc/self/fd, which acts on the opened inode itself."""
    try:
        fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_DIRECTORY, dir_fd=dir_fd)
    except OSError:
        if stat.S_ISLNK(os.lstat(name, dir_fd=dir_fd).st_mode):
            return
        raise
    try:
        os.chmod(f"/proc/self/fd/{fd}", 0o700)
    except FileNotFoundError:  # no /proc: the folder was lstat'ed as one and the program is gone
        os.chmod(name, 0o700, dir_fd=dir_fd)
    finally:
        os.close(fd)


def _remove(base: Path) -> None:
    """Delete the sandbox folder whatever the program left in it, and never raise for it.

    Not recursive (a thousand nested folders overflowed shutil.rmtree): every sub-folder is moved
    up into ``base`` under a fresh name and emptied there, so at most two folders are open at once
    and no path grows long. Never through a symlink: entries are looked at with lstat, folders
    opened with O_NOFOLLOW, links unlinked as links. A folder the program made unreadable
    (chmod 000) is given back 0700 first; it is known to be a real folder by then, and the
    program's processes are gone, so nothing can swap it for a link in between."""
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
    left: list[str] = []
    try:
        os.chmod(base, 0o700)
        base_fd = os.open(base, flags)
    except OSError as e:
        print(f"rlft sandbox: could not clean up {base}: {e}", file=sys.stderr)
        return
    try:
        try:
            queue = os.listdir(base_fd)
        except OSError as e:
            queue = []
            left.append(str(e))
        while queue:
            name = queue.pop()
            try:
                if not stat.S_ISDIR(os.lstat(name, dir_fd=base_fd).st_mode):
                    os.unlink(name, dir_fd=base_fd)
                    continue
                _chmod_dir(name, base_fd)
                fd = os.open(name, flags, dir_fd=base_fd)
                try:
                    for child in os.listdir(fd):
                        if stat.S_ISDIR(os.lstat(child, dir_fd=fd).st_mode):
                            _chmod_dir(child, fd)  # moving a folder writes its ".."
                            moved = f".rm-{uuid.uuid4().hex}"
                            os.rename(child, moved, src_dir_fd=fd, dst_dir_fd=base_fd)
                            queue.append(moved)
                        else:
                            os.unlink(child, dir_fd=fd)
                finally:
                    os.close(fd)
                os.rmdir(name, dir_fd=base_fd)
            except OSError as e:
                left.append(f"{name}: {e}")
    finally:
        os.close(base_fd)
    try:
        os.rmdir(base)
    except OSError as e:
        left.append(str(e))
    if left:
        print(f"rlft sandbox: left in {base}: {'; '.join(left[:3])}", file=sys.stderr)


def run(argv: list[str], *, files: dict[str, str] | None = None, stdin: str = "",
        limits: SandboxLimits | None = None, allow_unsandboxed: bool = False,
        backend: str | None = None) -> SandboxResult:
    """Run ``argv`` sandboxed in a throwaway working directory holding ``files`` (name -> text).

    ``backend`` forces one of ``BACKENDS`` (tests); by default the first that works is used.
    Raises SandboxError when no sandbox works (see the module docstring) or the sandbox fails.
    """
    return run_channel(argv, files=files, stdin=stdin, limits=limits,
                       allow_unsandboxed=allow_unsandboxed, backend=backend, channel=False)[0]


def run_channel(argv: list[str], *, files: dict[str, str] | None = None, stdin: str = "",
                limits: SandboxLimits | None = None, allow_unsandboxed: bool = False,
                backend: str | None = None, channel: bool = True) -> tuple[SandboxResult, bytes]:
    """``run``, plus a verdict channel: a pipe whose write end the program holds as fd
    ``int(os.environ["RLFT_CHANNEL_FD"])``; returns what was written to it (at most 1 MB)."""
    if not argv:
        raise SandboxError("run: argv is empty; pass the program and its arguments, e.g. ['python', 'x.py']")
    if backend is None:
        backend = _choose_backend(allow_unsandboxed)
    elif probe(backend) is not None:
        raise SandboxError(f"sandbox backend {backend!r} does not work here: {probe(backend)}")
    return _execute(list(argv), files or {}, stdin, limits or SandboxLimits(), backend, channel)


def _execute(argv: list[str], files: dict[str, str], stdin: str, limits: SandboxLimits,
             backend: str | None, channel: bool) -> tuple[SandboxResult, bytes]:
    uid = random.randrange(*_UID_RANGE) if os.geteuid() == 0 and backend is not None else None
    p = _Paths(Path(tempfile.mkdtemp(prefix="rlft-sandbox-")), uid)
    try:
        p.work.mkdir()
        _write_files(p.work, files, uid)
        if backend is None:
            prefix, mounts, cwd = [], None, str(p.work)
        else:
            (prefix, mounts), cwd = BACKENDS[backend](p), SANDBOX_CWD
        return _spawn(prefix, mounts, cwd, p, argv, stdin, limits, channel, backend)
    finally:
        _remove(p.base)


def _spawn(prefix, mounts, cwd, p: _Paths, argv, stdin, limits, channel, backend):
    status_r, status_w = os.pipe()
    chan_r, chan_w = os.pipe() if channel else (None, None)
    env = _program_env() | ({"RLFT_CHANNEL_FD": str(chan_w)} if channel else {})
    if backend is None:
        env.update(HOME=cwd, TMPDIR=cwd)
    cfg = {"mounts": mounts, "uid": p.uid, "unsandboxed": backend is None, "argv": argv, "env": env,
           "cwd": cwd, "rlimits": _rlimits(limits), "keep_fds": [chan_w] if channel else [],
           "status_fd": status_w, "wall_s": limits.wall_s}
    cmd = [*prefix, sys.executable, "-I", "-S", "-c", _INIT_SOURCE, json.dumps(cfg)]
    t0 = time.monotonic()
    try:
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env={"PATH": _HOST_PATH}, cwd=p.base, start_new_session=True,
                                pass_fds=[status_w] + ([chan_w] if channel else []))
    finally:
        os.close(status_w)
        if channel:
            os.close(chan_w)
    try:
        out, reason = collect(proc, stdin, limits, t0, status_r, chan_r)
    finally:
        kill_tree(proc)
    wall = time.monotonic() - t0
    first = out["status"].split(b"\n", 1)[0]
    if backend is not None and first.startswith(b'{"pidns"'):
        sweep(json.loads(first)["pidns"])
    return _result(out, reason, proc.returncode, limits, wall, backend), out["channel"]


def _result(data, reason, outer_rc, limits: SandboxLimits, wall: float, backend) -> SandboxResult:
    status = {}  # the init's lines, in order: {"pidns"}, {"started"} (child, just before exec), the report
    for line in data["status"].decode(errors="replace").strip().splitlines():
        try:
            status.update(json.loads(line))
        except ValueError:  # a line cut short by the init's death: nothing after it counts
            break
    if "setup_error" in status:
        raise SandboxError(f"sandbox ({backend}) could not be set up: {status['setup_error']}")
    stdout, stderr = cap(data["stdout"], data["stderr"], limits.output_bytes)
    if "exit" in status:
        rc = status["exit"]
    elif "signal" in status:
        rc = -status["signal"]
        if reason is None and (status["signal"] == signal.SIGXCPU or
                               (status["signal"] == signal.SIGKILL and status["cpu_s"] >= limits.cpu_s - 0.5)):
            reason = "cpu"
    elif status.get("started"):
        # The program was exec'd but the init never reported: the program killed it (possible
        # under bwrap, where the init is not PID 1) or a limit stopped it; bwrap's PID 1 then took
        # down the whole namespace. The program's doing, so an ordinary failed run, not an error.
        rc = -signal.SIGKILL
        if reason is None:
            stderr = (stderr.rstrip("\n") + "\n" if stderr else "") + (
                f"sandbox: the program's sandbox init was killed before it reported (exit {outer_rc}); "
                f"the run counts as killed")
    else:
        rc = outer_rc if reason is None else -signal.SIGKILL
        if reason is None:  # the init never got as far as starting the program: bwrap/unshare failed
            raise SandboxError(f"sandbox ({backend}) failed before the program ran (exit {outer_rc}): "
                               f"{stderr.strip()[-500:]}")
    return SandboxResult(rc, stdout, stderr, wall, reason == "wall", reason, reason == "output")
