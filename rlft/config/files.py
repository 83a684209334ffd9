"""Reading the files people write by hand: one reader for every TOML file rlft takes (job,
experiment, reward-model job, a world's views.toml), so each gets the same one-line errors.

A byte-order mark (Notepad writes one) is not part of the first line; a byte that is not UTF-8
and a TOML syntax error are named by file and line; an unreadable file says why.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

from rlft.config.sections import ConfigError


def decode_utf8(data: bytes, name: str) -> str:
    """``data`` as text (a leading BOM dropped), or a ConfigError naming the line and column of
    the first byte that is not UTF-8."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        col = e.start - data.rfind(b"\n", 0, e.start)
        raise ConfigError(f"{name}:{line}: not valid UTF-8 (byte 0x{data[e.start]:02x} at column {col}); "
                          f"fix: re-save the file as UTF-8") from None


def read_text(path: str | Path, what: str = "file") -> str:
    """The text of ``path`` (see ``decode_utf8``); a file that cannot be read is a ConfigError."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the {what} ({e.strerror}); fix: check the path") from None
    return decode_utf8(data, str(path))


def read_toml(path: str | Path, what: str = "job file") -> tuple[dict[str, Any], str]:
    """(table, text) of the TOML file ``path``; every problem is a one-line ConfigError naming
    the file (and the line, where there is one). ``what`` names the file in messages."""
    text = read_text(path, what)
    try:
        return tomllib.loads(text), text
    except tomllib.TOMLDecodeError as e:
        m = re.search(r"at line (\d+)", str(e))
        where = f"{path}:{m.group(1)}" if m else str(path)
        raise ConfigError(f"{where}: TOML syntax error: {e}; fix the syntax (strings need quotes)") from None
