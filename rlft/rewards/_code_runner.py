"""The solution's side of the code tests: its own interpreter, started by the harness.

Not imported by rlft: ``rlft.rewards.code`` prepends ``_code_codec.py`` to this file's text, and the
harness (``_code_proxy.py``) runs that as ``python -I -S -c TEXT REQUEST_FD REPLY_FD SYS_PATH`` —
exec'd, not forked, so nothing of the harness's memory is here: not the tests, not the token, not
the verdict channel. Everything in this process is the solution's to change, this code included,
and the harness trusts none of it: this is only the honest way to answer the harness.

1. Run ``solution.py`` as module ``solution``, then send ``[0, "ready", [[name, kind, x], ...]]``:
   each name the module defines (dunders left out), kind "m" with a module's name, or "v" with its
   value encoded (functions, classes and other objects as handles; big values too).
2. Answer each request ``[seq, op, handle, args, kwargs]`` (``OPS``; ``kwargs`` as
   ``[[name, value], ...]``) with ``[seq, "ok", value, changed]`` — ``changed`` lists the list, dict
   and set arguments the call modified, ``[[position or keyword, new value], ...]``, so a test that
   checks an in-place change sees it — or ``[seq, "raise", name, message]``, ``name`` being the
   nearest builtin exception class (``StopIteration`` ends an iteration).
"""

import builtins
import json
import operator
import os
import sys
import traceback
import types

OPS = {
    "call": lambda f, *args, **kwargs: f(*args, **kwargs),
    "getattr": getattr,
    "setattr": setattr,
    "getitem": operator.getitem,
    "setitem": operator.setitem,
    "len": len,
    "bool": bool,
    "iter": iter,
    "next": next,
    "str": str,
    "repr": repr,
}
EXPORT_BYTES = 100_000  # a module-level value bigger than this (elements + characters) is sent as a handle
_MUTABLE = (list, dict, set)


class Objects:
    """The objects handed to the harness as handles: handle n is ``self.items[n]`` (kept alive)."""

    def __init__(self):
        self.items, self.ids = [], {}

    def handle(self, obj) -> int:
        n = self.ids.get(id(obj))
        if n is None or self.items[n] is not obj:
            n = self.ids[id(obj)] = len(self.items)
            self.items.append(obj)
        return n


def small(v, budget: int = EXPORT_BYTES) -> bool:
    """Whether ``v`` surely encodes short: a walk that stops past ``budget`` elements and characters."""
    stack, seen = [v], 0
    while stack:
        x = stack.pop()
        seen += 1 + (len(x) if isinstance(x, (str, bytes, bytearray)) else 0)
        if isinstance(x, (dict, list, tuple, set, frozenset)):
            seen += len(x)
            if seen <= budget:
                stack.extend((*x.keys(), *x.values()) if isinstance(x, dict) else x)
        if seen > budget:
            return False
    return True


def exports(ns: dict, objects: Objects) -> list:
    out = []
    for name, v in list(ns.items()):
        if name.startswith("__") and name.endswith("__"):
            continue
        if isinstance(v, types.ModuleType):
            out.append([name, "m", v.__name__])
            continue
        x = ["h", objects.handle(v)]  # functions, classes, objects, and values too big to send
        if not callable(v) and small(v):
            try:
                x = encode(v, objects.handle)  # noqa: F821 -- the codec's text is prepended
            except Unencodable:  # noqa: F821
                pass
        out.append([name, "v", x])
    return out


def nearest_builtin(e: BaseException) -> str:
    for cls in type(e).__mro__:
        if vars(builtins).get(cls.__name__) is cls:
            return cls.__name__
    return "Exception"


def answer(req: list, objects: Objects) -> list:
    seq, op, target, args, kwargs = req
    try:
        get = objects.items.__getitem__
        a = [decode(x, get) for x in args]  # noqa: F821
        k = {key: decode(x, get) for key, x in kwargs}  # noqa: F821
        value = encode(OPS[op](objects.items[target], *a, **k), objects.handle)  # noqa: F821
        changed = []
        if op == "call":
            was = dict(enumerate(args)) | dict(kwargs)
            for key, v in (*enumerate(a), *k.items()):
                if type(v) in _MUTABLE and (now := encode(v, objects.handle)) != was[key]:  # noqa: F821
                    changed.append([key, now])
        return [seq, "ok", value, changed]
    except BaseException as e:  # SystemExit, KeyboardInterrupt too: they end the call, not this process
        try:
            message = str(e)[:2000]
        except BaseException:
            message = f"<{type(e).__name__} with an unprintable message>"
        return [seq, "raise", nearest_builtin(e), message]


def send(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def main():
    request_fd, reply_fd, sys.path[:] = int(sys.argv[1]), int(sys.argv[2]), json.loads(sys.argv[3])
    sys.argv = ["solution.py"]
    module = types.ModuleType("solution")
    module.__file__ = "solution.py"
    sys.modules["solution"] = module
    try:
        with open("solution.py") as f:
            exec(compile(f.read(), "solution.py", "exec"), module.__dict__)
    except BaseException:
        traceback.print_exc()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1)
    objects = Objects()
    send(reply_fd, dumps([0, "ready", exports(module.__dict__, objects)]))  # noqa: F821
    with os.fdopen(request_fd, "rb") as requests:
        for line in requests:
            send(reply_fd, dumps(answer(json.loads(line), objects)))  # noqa: F821
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
