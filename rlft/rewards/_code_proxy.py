"""The harness's side of the protocol with the solution's process (``_code_runner.py``).

Not imported by rlft: ``rlft.rewards.code`` joins ``_code_codec.py``, this file and
``_code_harness.py`` into the harness program. ``Solution`` starts the solution's interpreter and
asks it one request at a time, within the time budget; ``remote_class`` makes the handles through
which the tests see the solution's objects.
"""

import builtins
import json
import os
import select
import signal
import sys
import time


class SolutionFault(BaseException):
    """The solution's process is gone, hung or broke the protocol; the test calling it fails."""


class Solution:
    """The solution's process and the one-request-at-a-time protocol with it (``_code_runner.py``)."""

    def __init__(self, runner: str, env: dict, deadline: float, reply_bytes: int):
        request_r, self.request_w = os.pipe()
        self.reply_r, reply_w = os.pipe()
        (out_r, out_w), (err_r, err_w) = os.pipe(), os.pipe()
        for fd in (request_r, reply_w):
            os.set_inheritable(fd, True)  # only these two cross the exec, and fds 0-2 below
        # -S: the harness's sys.path (site-packages and the folders .pth files add) is passed on,
        # so the solution imports what it could, without running site and .pth hooks again.
        argv = [sys.executable, "-I", "-S", "-c", runner, str(request_r), str(reply_w), json.dumps(sys.path)]
        # Its stdout and stderr are pipes to this process, copied on to the harness's own: it holds
        # nothing of the harness's, so it cannot read what the tests print (/proc/self/fd/1).
        actions = [(os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
                   (os.POSIX_SPAWN_DUP2, out_w, 1), (os.POSIX_SPAWN_DUP2, err_w, 2)]
        self.pid = os.posix_spawn(sys.executable, argv, env, setpgroup=0, file_actions=actions)
        for fd in (request_r, reply_w, out_w, err_w):
            os.close(fd)
        for fd in (self.request_w, self.reply_r, out_r, err_r):
            os.set_blocking(fd, False)
        self.outputs = {out_r: 1, err_r: 2}  # its pipe -> the harness's fd it is copied to
        self.deadline, self.reply_bytes = deadline, reply_bytes
        self.buf, self.seq, self.dead, self.unusable, self.ended = bytearray(), 0, None, None, None
        self.remotes = {}
        self.Remote = remote_class(self)

    def fault(self, why: str) -> SolutionFault:
        """Stop the solution for good (every later call fails) and say why."""
        if self.dead is None:
            self.dead = why
            for kill in (os.killpg, os.kill) if self.ended is None else ():  # not reaped: not reused
                try:
                    kill(self.pid, signal.SIGKILL)  # its group (its children with it), then itself
                except OSError:
                    pass
        return SolutionFault(self.dead)

    def _wait(self, fd: int, write: bool) -> None:
        """Until ``fd`` is ready, copying the solution's output meanwhile; past the budget: fault."""
        while True:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise self.fault("the solution did not answer within the time budget")
            ready_r, ready_w, _ = select.select([*self.outputs, *([] if write else [fd])], [fd] if write else [], [], left)
            self._copy_output([f for f in ready_r if f in self.outputs])
            if fd in (ready_w if write else ready_r):
                return

    def _copy_output(self, fds) -> None:
        for fd in fds:
            try:
                chunk = os.read(fd, 1 << 16)
            except BlockingIOError:
                continue
            if chunk:
                os.write(self.outputs[fd], chunk)
            else:
                os.close(fd)
                del self.outputs[fd]

    def _send(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            self._wait(self.request_w, True)
            try:
                view = view[os.write(self.request_w, view):]
            except BrokenPipeError:
                raise self.fault(f"the solution's process ended ({self._ended()})") from None

    def _line(self) -> bytes:
        while (end := self.buf.find(b"\n")) < 0:
            if len(self.buf) > self.reply_bytes:
                raise self.fault(f"the solution's reply passed {self.reply_bytes} bytes")
            self._wait(self.reply_r, False)
            chunk = os.read(self.reply_r, 1 << 20)
            if not chunk:
                raise self.fault(f"the solution's process ended ({self._ended()})")
            self.buf += chunk
        line = bytes(self.buf[:end])
        del self.buf[:end + 1]
        return line

    def _ended(self) -> str:
        """How it ended, after EOF on its replies (a moment for it to exit)."""
        end = time.monotonic() + 0.2
        while self._status() == "still running" and time.monotonic() < end:
            time.sleep(0.005)
        return self._status()

    def _status(self) -> str:
        """How the solution's process ended (reaped once, so its pid is never signalled after)."""
        if self.ended is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid == 0:
                return "still running"
            self.ended = f"signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status) else f"exit {os.WEXITSTATUS(status)}"
        return self.ended

    def ready(self) -> list:
        reply = self._reply(0)
        if reply[1] != "ready" or type(reply[2]) is not list:
            raise self.fault("the solution broke the protocol: no list of names")
        return reply[2]

    def _reply(self, seq: int) -> list:
        line = self._line()
        try:
            reply = json.loads(line)
        except (ValueError, RecursionError, MemoryError) as e:
            raise self.fault(f"the solution broke the protocol: {type(e).__name__}: {str(e)[:200]}") from None
        if type(reply) is not list or len(reply) < 3 or reply[0] != seq or type(reply[0]) is not int:
            raise self.fault(f"the solution broke the protocol: a reply out of turn: {line[:120]!r}")
        return reply

    def _handle_of(self, obj) -> int:
        """The harness's side of ``encode``: only the solution's own objects cross back as handles."""
        if type(obj) is not self.Remote:
            raise Unencodable(f"a {type(obj).__name__} (only builtin values and the solution's objects can)")  # noqa: F821
        return obj._rlft_id

    def remote(self, n: int):
        if n not in self.remotes:
            self.remotes[n] = self.Remote(n)
        return self.remotes[n]

    def request(self, op: str, target, args=(), kwargs=None):
        """The solution's answer to ``op`` on handle ``target``, as a builtin value or a handle."""
        if self.dead is not None:
            raise SolutionFault(self.dead)
        kwargs = kwargs or {}
        try:
            data = dumps([self.seq + 1, op, target, [encode(a, self._handle_of) for a in args],  # noqa: F821
                          [[k, encode(v, self._handle_of)] for k, v in kwargs.items()]])  # noqa: F821
        except (Unencodable, ValueError, RecursionError) as e:  # noqa: F821
            self.unusable = self.unusable or f"{type(e).__name__}: {e}"
            raise TypeError(f"this test passes the solution something that cannot cross: {e}") from None
        self.seq += 1
        self._send(data)
        reply = self._reply(self.seq)
        try:
            value = self._outcome(reply, args, kwargs)
        except (ValueError, TypeError, KeyError, IndexError, RecursionError, MemoryError) as e:
            raise self.fault(f"the solution broke the protocol: {type(e).__name__}: {str(e)[:200]}") from None
        if isinstance(value, BaseException):  # what the solution raised, rebuilt as a builtin exception
            raise value
        return value

    def _outcome(self, reply: list, args, kwargs):
        """The reply's value, or the exception to raise in the test."""
        if reply[1] == "raise":
            name, message = reply[2], str(reply[3])
            cls = vars(builtins).get(name) if type(name) is str else None
            if isinstance(cls, type) and issubclass(cls, Exception):
                try:
                    return cls(message)
                except Exception:
                    return RuntimeError(f"{name}: {message}")
            return SolutionFault(f"the solution raised {str(name)[:80]}: {message}")
        if reply[1] != "ok" or len(reply) != 4 or type(reply[3]) is not list:
            raise ValueError(f"unknown reply {str(reply)[:120]}")
        value = decode(reply[2], self.remote)  # noqa: F821
        for key, new in reply[3]:  # in-place changes to list, dict and set arguments
            old, new = (args[key] if type(key) is int else kwargs[key]), decode(new, self.remote)  # noqa: F821
            if type(old) is type(new) is list:
                old[:] = new
            elif type(old) is type(new) and type(old) in (dict, set):
                old.clear()
                old.update(new)
        return value

    def close(self) -> None:
        """End the solution: EOF on its requests, a moment to exit and flush, SIGKILL, its last output."""
        try:
            os.close(self.request_w)
        except OSError:
            pass
        end = min(self.deadline, time.monotonic() + 0.2)
        while self.dead is None and self._status() == "still running" and time.monotonic() < end:
            self._copy_output(select.select(list(self.outputs), [], [], 0.005)[0])
        self.fault("the tests are done")
        end = time.monotonic() + 0.1  # what is left (its children may hold the pipes: not forever)
        while self.outputs and time.monotonic() < end and (ready := select.select(list(self.outputs), [], [], 0)[0]):
            self._copy_output(ready)


def remote_class(sol: Solution):
    """The class of handles to ``sol``'s objects. It answers ``==``, ``!=``, ``<``, ``hash`` and
    ``isinstance`` itself (identity; no order), never asking the solution, so an object of the
    solution's cannot lie its way through a comparison; ``in`` iterates (its items are plain
    values). What it asks the solution — calls, attributes, items, ``len``, ``iter``/``next``,
    ``str``, ``repr``, ``bool`` — comes back as builtin values or handles, as if a call had
    returned them: nothing in a request says what the test expects."""

    class Remote:
        __slots__ = ("_rlft_id",)

        def __init__(self, n):
            object.__setattr__(self, "_rlft_id", n)

        def __getattr__(self, name):
            if name.startswith("__") and name.endswith("__"):
                raise AttributeError(name)
            return sol.request("getattr", self._rlft_id, (name,))

        def __setattr__(self, name, value):
            sol.request("setattr", self._rlft_id, (name, value))

        def __call__(self, *args, **kwargs):
            return sol.request("call", self._rlft_id, args, kwargs)

        def __getitem__(self, key):
            return sol.request("getitem", self._rlft_id, (key,))

        def __setitem__(self, key, value):
            sol.request("setitem", self._rlft_id, (key, value))

        def __len__(self):
            return sol.request("len", self._rlft_id)

        def __iter__(self):
            return sol.request("iter", self._rlft_id)

        def __next__(self):
            return sol.request("next", self._rlft_id)

        def __str__(self):
            return sol.request("str", self._rlft_id)

        def __repr__(self):
            return sol.request("repr", self._rlft_id)

        def __bool__(self):  # asked once, answered with a plain bool: as if the call had returned it
            truth = sol.request("bool", self._rlft_id)
            if type(truth) is not bool:
                raise TypeError(f"__bool__ should return bool, returned {type(truth).__name__}")
            return truth

    return Remote
