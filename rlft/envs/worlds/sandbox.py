"""Each episode's own SQLite database, and the rules it runs under.

A world's pristine database is built once in memory from ``schema.sql`` and its seed data.
Every episode gets a private in-memory copy (``sqlite3`` backup API), so an episode can neither
see another's writes nor touch the pristine one. On that copy:

- an authorizer (``set_authorizer``) refuses ATTACH/DETACH, extension loading, PRAGMA and every
  schema change (CREATE/DROP/ALTER), and refuses INSERT/UPDATE/DELETE unless the tool running
  is marked ``write``;
- a progress handler interrupts any statement that runs past ``Limits.seconds``;
- results are capped at ``Limits.max_rows`` rows and ``Limits.max_bytes`` bytes.

Each refusal surfaces as an ``sqlite3.DatabaseError`` (or ``ResultTooLarge``), which the
environment hands back to the model as a tool error.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator

_SCHEMA_CHANGES = {
    getattr(sqlite3, name) for name in dir(sqlite3)
    if name.startswith(("SQLITE_CREATE_", "SQLITE_DROP_")) or name in ("SQLITE_ALTER_TABLE", "SQLITE_REINDEX", "SQLITE_ANALYZE")
}
_ALWAYS_REFUSED = _SCHEMA_CHANGES | {sqlite3.SQLITE_ATTACH, sqlite3.SQLITE_DETACH, sqlite3.SQLITE_PRAGMA}
_WRITES = {sqlite3.SQLITE_INSERT, sqlite3.SQLITE_UPDATE, sqlite3.SQLITE_DELETE}


class ResultTooLarge(sqlite3.DatabaseError):
    """A query returned more rows or bytes than the episode's limits allow."""


@dataclass(frozen=True)
class Limits:
    seconds: float = 1.0  # per statement
    max_rows: int = 200
    max_bytes: int = 64_000


def read(fn: Callable) -> Callable:
    """Mark a world tool as read-only: its writes are refused."""
    fn.kind = "read"
    return fn


def write(fn: Callable) -> Callable:
    """Mark a world tool as one that may change the database (INSERT/UPDATE/DELETE, not schema)."""
    fn.kind = "write"
    return fn


class ScriptError(sqlite3.DatabaseError):
    """A statement of a world's SQL file failed: the file's name, the line where the statement
    starts (1-based), the statement and SQLite's message."""

    def __init__(self, file: str, line: int, statement: str, message: str):
        super().__init__(message)
        self.file, self.line, self.statement = file, line, statement


# what a ";" inside does not end a statement at: quoted strings and names, comments
_QUOTED_OR_SEMICOLON = re.compile(
    r"'[^']*(?:''[^']*)*'|\"[^\"]*(?:\"\"[^\"]*)*\"|`[^`]*`|\[[^\]]*\]|--[^\n]*|/\*.*?(?:\*/|\Z)|;", re.S)
_LEADING = re.compile(r"(?:\s+|--[^\n]*|/\*.*?\*/)*", re.S)  # whitespace and comments before a statement


def statements(script: str) -> Iterator[tuple[int, str]]:
    """(line, text) of each statement of ``script`` in order, from its first token (comments
    before it left out) to its ";". A ";" ends one only outside quotes and comments and where
    SQLite agrees the statement is complete (a trigger's body holds several). Linear in the
    script's length."""
    start, line = 0, 1
    for m in _QUOTED_OR_SEMICOLON.finditer(script):
        if m.group() == ";" and sqlite3.complete_statement(script[start:m.end()]):
            lead = _LEADING.match(script, start).end()
            yield line + script.count("\n", start, lead), script[lead:m.end()]
            line += script.count("\n", start, m.end())
            start = m.end()
    lead = _LEADING.match(script, start).end()
    if lead < len(script):  # a last statement without its ";"
        yield line + script.count("\n", start, lead), script[lead:]


def run_script(conn: sqlite3.Connection, script: str, name: str) -> None:
    """Run the SQL file ``name``'s text statement by statement (as fast as ``executescript``), so
    a failure is a ``ScriptError`` naming the statement and its line. ``conn`` is in autocommit
    mode (``isolation_level=None``), so the script's own BEGIN/COMMIT work as in ``executescript``."""
    for line, sql in statements(script):
        try:
            conn.execute(sql)
        except sqlite3.Error as e:
            raise ScriptError(name, line, sql, str(e)) from None


def build(schema_sql: str, seed_sql: str) -> sqlite3.Connection:
    """The pristine database, in memory; a failing statement raises ``ScriptError``."""
    conn = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
    try:
        run_script(conn, schema_sql, "schema.sql")
        run_script(conn, seed_sql, "seed.sql")
    except ScriptError:
        conn.close()
        raise
    if conn.in_transaction:  # a seed that began a transaction and left it open
        conn.commit()
    return conn


def db_hash(conn: sqlite3.Connection) -> str:
    """sha256 of the database's SQL dump: equal hashes, equal databases."""
    return hashlib.sha256("\n".join(conn.iterdump()).encode()).hexdigest()


class Database:
    """An episode's private copy of a world database, under the rules in the module docstring.

    Tools call ``query`` (rows as dicts) and ``execute`` (a write; returns rows changed).
    """

    _copy_lock = threading.Lock()  # the pristine connection is shared by all episodes

    def __init__(self, pristine: sqlite3.Connection, limits: Limits = Limits()):
        self.limits = limits
        self.conn = sqlite3.connect(":memory:", check_same_thread=False)
        with self._copy_lock:
            pristine.backup(self.conn)
        self.writable = False
        self.touched: set[str] = set()  # tables a write statement was prepared against
        self._deadline = float("inf")
        self.conn.set_authorizer(self._authorize)
        self.conn.set_progress_handler(self._progress, 1000)

    def _authorize(self, action: int, arg1: Any, arg2: Any, db_name: Any, trigger: Any) -> int:
        if action in _ALWAYS_REFUSED:
            return sqlite3.SQLITE_DENY
        if action == sqlite3.SQLITE_FUNCTION and str(arg2).lower() == "load_extension":
            return sqlite3.SQLITE_DENY
        if action in _WRITES:
            if not self.writable:
                return sqlite3.SQLITE_DENY
            self.touched.add(arg1)
        return sqlite3.SQLITE_OK

    def _progress(self) -> int:
        return int(time.monotonic() > self._deadline)  # non-zero interrupts the statement

    def _run(self, sql: str, params: tuple) -> sqlite3.Cursor:
        self._deadline = time.monotonic() + self.limits.seconds
        return self.conn.execute(sql, params)

    def query(self, sql: str, *params: Any) -> list[dict]:
        cur = self._run(sql, params)
        names = [d[0] for d in cur.description or ()]
        rows = cur.fetchmany(self.limits.max_rows + 1)
        if len(rows) > self.limits.max_rows:
            raise ResultTooLarge(f"query returned more than {self.limits.max_rows} rows; narrow it")
        size = sum(len(str(v)) for r in rows for v in r)
        if size > self.limits.max_bytes:
            raise ResultTooLarge(f"query returned {size} bytes, over {self.limits.max_bytes}; narrow it")
        return [dict(zip(names, r)) for r in rows]

    def execute(self, sql: str, *params: Any) -> int:
        return self._run(sql, params).rowcount

    def call(self, fn: Callable, **arguments: Any) -> Any:
        """Run a world tool; writes are allowed only while a ``write`` tool runs. A tool that
        fails leaves nothing half-done: its changes are rolled back."""
        self.writable = fn.kind == "write"
        try:
            result = fn(self, **arguments)
            self.conn.commit()
            return result
        except Exception:
            self.conn.rollback()
            raise
        finally:
            self.writable = False

    def tables(self, names: set[str] | None = None) -> dict[str, list[tuple]]:
        """The rows of the tables ``names`` (default: every table), sorted: the end state that
        rewards compare. Tables no write touched equal the pristine ones (schema changes are refused)."""
        if names is None:
            names = {r["name"] for r in self.query("SELECT name FROM sqlite_master WHERE type = 'table'")}
        return {n: sorted(self._run(f'SELECT * FROM "{n}"', ()).fetchall(), key=repr) for n in names}

    def close(self) -> None:
        self.conn.close()
