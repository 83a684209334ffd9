"""Process plumbing for sandbox.py: read a sandboxed run's pipes under its limits, kill its
process group, and sweep its PID namespace afterwards."""

from __future__ import annotations

import logging
import os
import selectors
import signal
import subprocess
import time

log = logging.getLogger("rlft.rewards.sandbox")

CHANNEL_BYTES = 1_000_000


def kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL the session's process group (bwrap/unshare and whatever is left in it), then reap.

    Killed before reaping, so the group id cannot have been reused. Processes inside the PID
    namespace die with its init, which dies with its parent (PDEATHSIG) or this kill."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()
    for f in (proc.stdin, proc.stdout, proc.stderr):
        try:
            f.close()
        except BrokenPipeError:
            pass


def in_namespace(pidns: str) -> list[int]:
    """Live (non-zombie) processes in PID namespace ``pidns`` ("pid:[inode]")."""
    found = []
    for d in os.listdir("/proc"):
        try:
            if d.isdigit() and os.readlink(f"/proc/{d}/ns/pid") == pidns:
                with open(f"/proc/{d}/stat") as f:
                    if f.read().rsplit(")", 1)[1].split()[0] != "Z":
                        found.append(int(d))
        except OSError:  # exited meanwhile
            pass
    return found


def sweep(pidns: str, seconds: float = 2.0) -> None:
    """Kill whatever is still alive in the sandbox's PID namespace (normally nothing: it died with
    its init), by pidfd so a reused pid is never hit; log if something survives ``seconds``."""
    if pidns == os.readlink("/proc/self/ns/pid"):  # unsandboxed: that namespace is everyone's
        return
    end = time.monotonic() + seconds
    while (pids := in_namespace(pidns)) and time.monotonic() < end:
        for pid in pids:
            try:
                fd = os.pidfd_open(pid)
            except OSError:
                continue
            try:
                if os.readlink(f"/proc/{pid}/ns/pid") == pidns:
                    signal.pidfd_send_signal(fd, signal.SIGKILL)
            except OSError:
                pass
            finally:
                os.close(fd)
        time.sleep(0.01)
    if pids:
        log.error("sandbox: %d process(es) of namespace %s survived SIGKILL for %.0f s: %s", len(pids), pidns, seconds, pids)


def collect(proc, stdin: str, limits, t0: float, status_r: int, chan_r: int | None):
    """Read every pipe until all close, the deadline passes or output overflows.

    Returns ({"stdout", "stderr", "status", "channel"}: bytes, why it stopped early or None)."""
    names = {proc.stdout.fileno(): "stdout", proc.stderr.fileno(): "stderr", status_r: "status"}
    if chan_r is not None:
        names[chan_r] = "channel"
    caps = {"stdout": limits.output_bytes, "stderr": limits.output_bytes, "status": 64_000, "channel": CHANNEL_BYTES}
    data = dict.fromkeys(caps, b"")
    sel = selectors.DefaultSelector()
    for fd in names:
        sel.register(fd, selectors.EVENT_READ)
    pending, in_fd = stdin.encode(), proc.stdin.fileno()
    if pending:
        os.set_blocking(in_fd, False)
        sel.register(in_fd, selectors.EVENT_WRITE)
    else:
        proc.stdin.close()
    reason, deadline = None, t0 + limits.wall_s
    try:
        while sel.get_map() and reason is None:
            left = deadline - time.monotonic()
            if left <= 0:
                reason = "wall"
                break
            for key, _ in sel.select(left):
                if key.fd == in_fd:
                    try:
                        pending = pending[os.write(in_fd, pending[:65536]):]
                    except BrokenPipeError:
                        pending = b""
                    if not pending:
                        sel.unregister(in_fd)
                        proc.stdin.close()
                    continue
                name, chunk = names[key.fd], os.read(key.fd, 65536)
                data[name] += chunk
                if len(data["stdout"]) + len(data["stderr"]) > limits.output_bytes:
                    reason = "output"
                    break
                if not chunk or len(data[name]) > caps[name]:
                    sel.unregister(key.fd)  # closed, or an over-long status/channel: stop reading it
    finally:
        sel.close()
        for fd in (status_r, chan_r):
            if fd is not None:
                os.close(fd)
    data["channel"] = data["channel"][:CHANNEL_BYTES]
    return data, reason


def cap(out: bytes, err: bytes, limit: int) -> tuple[str, str]:
    out = out[:limit]
    err = err[: max(0, limit - len(out))]
    return out.decode(errors="replace"), err.decode(errors="replace")
