"""What crosses between the code-test harness and the solution's process: type-tagged JSON.

Imported by the tests; ``rlft.rewards.code`` prepends this file's text to the harness
(``_code_harness.py``) and to the solution's runner (``_code_runner.py``), which run in the sandbox
where rlft itself cannot be imported. Standard library only.

JSON's scalars stand for themselves: null, true/false, numbers (``1`` is an int, ``1.0`` a float,
``Infinity`` and ``NaN`` are floats) and strings. Everything else is a pair ``[tag, payload]``:

| tag | value | payload |
| --- | --- | --- |
| l, t, s, f | list, tuple, set, frozenset | the elements |
| d | dict | ``[[key, value], ...]`` (keys keep their types: ``{1: "a"}`` stays an int key) |
| b | bytes (bytearray too) | hex |
| i | an int outside ±2**63 | hex (linear to parse; decimal JSON digits past 4,300 are refused) |
| h | a handle: an object living in the solution's process | its number there |

``decode`` builds only these builtin types (and, through its ``handle`` argument, the harness's
handles), nested at most ``MAX_DEPTH`` deep, and refuses anything else with ``ValueError`` or
``TypeError``. So whatever bytes the solution's process sends, the harness holds plain values whose
``==``, ``bool``, ``hash`` and ``in`` are Python's own: a rigged ``__eq__`` cannot cross.
Subclasses of the builtin types (a namedtuple, a defaultdict, an IntEnum) cross as their base type.
"""

import json

MAX_DEPTH = 100
_SEQUENCES = ((list, "l"), (tuple, "t"), (set, "s"), (frozenset, "f"))
_BUILD = {"l": list, "t": tuple, "s": set, "f": frozenset}
_SCALARS = (type(None), bool, int, float, str)
_JSON_INT = 2**63


class Unencodable(TypeError):
    """A value that cannot cross: nested too deep, or (the harness's side) not a builtin value."""


def encode(v, handle, depth=0):
    """``v`` as type-tagged JSON data. ``handle(obj) -> int`` is called for any other object: the
    solution's side registers it and sends a handle; the harness's side raises ``Unencodable``."""
    if depth > MAX_DEPTH:
        raise Unencodable(f"a value nested deeper than {MAX_DEPTH} levels cannot cross")
    if v is None or v is True or v is False:
        return v
    t = type(v)  # not isinstance: that believes a __class__ property
    if issubclass(t, str):
        return str.__str__(v)
    if issubclass(t, int) and t is not bool:
        v = int.__int__(v)
        return v if -_JSON_INT < v < _JSON_INT else ["i", format(v, "x")]
    if issubclass(t, float):
        return float.__float__(v)
    if issubclass(t, (bytes, bytearray)):
        return ["b", bytes(v).hex()]
    if issubclass(t, dict):
        return ["d", [[encode(k, handle, depth + 1), encode(x, handle, depth + 1)] for k, x in dict.items(v)]]
    for base, tag in _SEQUENCES:
        if issubclass(t, base):
            return [tag, [encode(x, handle, depth + 1) for x in base.__iter__(v)]]
    return ["h", handle(v)]


def decode(x, handle, depth=0):
    """The value ``x`` (parsed JSON) stands for; ``handle(n)`` gives what handle ``n`` is on this side."""
    if type(x) in _SCALARS:
        return x
    if depth > MAX_DEPTH:
        raise ValueError(f"a value nested deeper than {MAX_DEPTH} levels")
    if type(x) is not list or len(x) != 2 or type(x[0]) is not str:
        raise ValueError(f"not a tagged value: {str(x)[:80]}")
    tag, p = x
    if tag in _BUILD and type(p) is list:
        if all(type(e) in _SCALARS for e in p):
            return _BUILD[tag](p)
        return _BUILD[tag](decode(e, handle, depth + 1) for e in p)
    if tag == "d" and type(p) is list and all(type(kv) is list and len(kv) == 2 for kv in p):
        return {decode(k, handle, depth + 1): decode(v, handle, depth + 1) for k, v in p}
    if tag == "b" and type(p) is str:
        return bytes.fromhex(p)
    if tag == "i" and type(p) is str:
        return int(p, 16)
    if tag == "h" and type(p) is int:
        return handle(p)
    raise ValueError(f"not a tagged value: {str(x)[:80]}")


def dumps(data) -> bytes:
    """One line of JSON (the protocol's unit)."""
    return json.dumps(data, separators=(",", ":")).encode() + b"\n"
