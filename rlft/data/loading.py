"""Load and validate dataset rows: JSONL, CSV, Parquet, a save_to_disk folder, or a hub name.

Every row comes back as a dict with ``_line`` (1-based line in the file — for CSV the header is
line 1 — or the 0-based row index for Parquet / datasets) and ``_source``. Every row is checked
before training starts; up to ``max_errors`` problems are collected and raised together as
``path:line: what is wrong``, so one run of the command shows a user everything to fix.
"""

from __future__ import annotations

import csv
import json
import re
import sys
from pathlib import Path
from typing import Any, Iterator, Sequence

ROLES = ("system", "user", "assistant", "tool")
SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")


class DataError(ValueError):
    """Bad or missing data; ``errors`` holds one ``path:line: problem`` string per bad row."""

    def __init__(self, message: str, errors: Sequence[str] = ()):
        super().__init__(message)
        self.errors = list(errors)


def load_items(
    source: str,
    *,
    required: Sequence[str] = (),
    prompt_field: str | None = None,
    text_fields: Sequence[str] = (),
    base_dir: str | Path | None = None,
    max_errors: int = 20,
    limit: int | None = None,
    skip_invalid: bool = False,
    role: str = "train",
) -> list[dict]:
    """Read ``source`` and validate every row (up to ``limit`` rows); raise DataError listing problems,
    or with ``skip_invalid`` drop the bad rows and say how many.

    ``required`` fields must be present and not null; ``prompt_field`` (also required) must be a
    non-empty string or a non-empty list of ``{"role", "content"}`` chat messages; ``text_fields``
    (also required) must be non-empty strings. ``role`` ("train" or "eval") picks the defaults of
    a generated source (rlft.data.gym: "reasoning_gym:NAME").
    """
    assert max_errors >= 1, f"max_errors must be >= 1, got {max_errors}"
    if not source:
        raise DataError("no data source given; fix: set data.train (a .jsonl/.csv/.parquet path or a dataset name)")
    label, rows = _open(source, base_dir, role)
    items: list[dict] = []
    errors: list[str] = []
    for where, line, row in rows:
        if limit is not None and len(items) + len(errors) >= limit:
            break
        problem = row if isinstance(row, str) else _check_row(row, required, prompt_field, text_fields)
        if problem:
            errors.append(f"{label}:{where}: {problem}")
            if len(errors) >= max_errors and not skip_invalid:
                break
            continue
        items.append({**row, "_line": line, "_source": label})
    report_bad(errors, f"row(s) in {label}", skip_invalid, max_errors)
    if not items:
        raise DataError(f"{label}: no rows; fix: point data.train / data.eval at a file with at least one item")
    return items


def report_bad(errors: list[str], what: str, skip: bool, max_errors: int) -> None:
    """Nothing when ``errors`` is empty; else raise DataError with the first ``max_errors`` of them,
    or with ``skip`` print how many were skipped and the first few."""
    if not errors:
        return
    shown = "\n".join(errors[:max_errors])
    if skip:
        more = f"\n(and {len(errors) - max_errors} more)" if len(errors) > max_errors else ""
        print(f"rlft: skipped {len(errors)} bad {what} (data.skip_invalid = true):\n{shown}{more}", file=sys.stderr)
        return
    more = (f"\n(stopped after {max_errors} errors; data.max_errors sets how many are reported)"
            if len(errors) >= max_errors else "")
    raise DataError(
        f"{len(errors)} bad {what}:\n{shown}{more}\nfix those rows, or set data.skip_invalid = true to skip them",
        errors,
    )


# --- readers: each yields (where for messages, _line value, row dict or a problem string) -----


def _open(source: str, base_dir: str | Path | None, role: str = "train") -> tuple[str, Iterator[tuple[str, int, Any]]]:
    if source.startswith("reasoning_gym:"):  # procedural data, generated (an optional extra)
        from rlft.data import gym

        return source, gym.read(source, role)
    path = Path(source).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = Path(base_dir) / path
    split = None
    if not path.exists() and ":" in source:  # "folder:split" for a saved DatasetDict
        head, _, tail = str(path).rpartition(":")
        if Path(head).is_dir():
            path, split = Path(head), tail
    if path.is_dir():
        return str(path), _read_saved(path, split)
    if path.is_file():
        readers = {".jsonl": _read_jsonl, ".json": _read_jsonl, ".csv": _read_csv, ".parquet": _read_parquet}
        if path.suffix.lower() not in readers:
            raise DataError(f"{path}: unsupported file type {path.suffix!r}; supported: {', '.join(SUFFIXES)}")
        return str(path), readers[path.suffix.lower()](path)
    if path.suffix.lower() in SUFFIXES:  # clearly meant as a file: don't go to the hub
        raise DataError(
            f"{source}: file not found (looked at {path.resolve()}); fix the path "
            f"(relative paths resolve against the job file's folder)"
        )
    return source, _read_hub(source, path)


MAX_LINE_CHARS = 8 << 20  # a row longer than this is refused before it is parsed or tokenised


def _bad_utf8(text: str) -> str | None:
    """The problem when ``text`` (decoded with surrogateescape) held bytes that are not UTF-8."""
    m = re.search("[\udc80-\udcff]", text)
    if m is None:
        return None
    byte = ord(m.group()) - 0xDC00
    return f"not valid UTF-8 (byte 0x{byte:02x} at column {m.start() + 1}); fix: re-save the file as UTF-8"


def _open_text(path: Path):
    # utf-8-sig: a byte-order mark (Excel, Notepad) is not part of the first line or header;
    # surrogateescape: a bad byte is reported at its line instead of a traceback with a file offset.
    return open(path, encoding="utf-8-sig", errors="surrogateescape", newline="")


def _read_jsonl(path: Path) -> Iterator[tuple[str, int, Any]]:
    with _open_text(path) as f:
        for i, text in enumerate(_bounded_lines(f), 1):
            if text is None:
                yield str(i), i, (f"line longer than {MAX_LINE_CHARS:,} characters; fix: shorten it "
                                  f"(rlft.data.loading.MAX_LINE_CHARS)")
                continue
            if not text.strip():
                continue
            if problem := _bad_utf8(text):
                yield str(i), i, problem
                continue
            try:
                row = json.loads(text.rstrip())  # so a truncated line reports its own column
            except json.JSONDecodeError as e:
                is_array = text.lstrip().startswith("[")
                hint = " (a .json file must hold one object per line, JSON Lines)" if is_array else ""
                yield str(i), i, f"bad JSON: {e.msg} at column {e.colno}{hint}"
                continue
            if not isinstance(row, dict):
                yield str(i), i, f"expected a JSON object {{...}}, got {type(row).__name__}"
                continue
            yield str(i), i, row


def _bounded_lines(f) -> Iterator[str | None]:
    """The lines of ``f``, none held longer than MAX_LINE_CHARS: a longer one is skipped in bounded
    memory and comes as None (the csv module would read the whole line before its field limit)."""
    while text := f.readline(MAX_LINE_CHARS + 1):
        if len(text) > MAX_LINE_CHARS and not text.endswith(("\n", "\r")):
            while (rest := f.readline(MAX_LINE_CHARS)) and not rest.endswith(("\n", "\r")):
                pass
            yield None
        else:
            yield text


class _LineTooLong(Exception):
    """A physical line over MAX_LINE_CHARS, met while the csv reader pulls lines."""


def _csv_lines(f) -> Iterator[str]:
    """``_bounded_lines`` for the csv reader, which cannot go on past a line it did not get."""
    for text in _bounded_lines(f):
        if text is None:
            raise _LineTooLong
        yield text


def _read_csv(path: Path) -> Iterator[tuple[str, int, Any]]:
    csv.field_size_limit(MAX_LINE_CHARS)
    too_long = (f"line longer than {MAX_LINE_CHARS:,} characters, the rest of the file is not read; "
                f"fix: shorten it (rlft.data.loading.MAX_LINE_CHARS)")
    with _open_text(path) as f:
        reader = csv.DictReader(_csv_lines(f))
        try:
            header = reader.fieldnames or []
        except csv.Error as e:
            yield "1", 1, f"bad CSV header: {e}"
            return
        except _LineTooLong:
            yield "1", 1, too_long
            return
        if problem := _bad_utf8(",".join(header)):
            yield "1", 1, problem
            return
        start = reader.line_num + 1
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as e:  # a field over the size limit; the reader cannot go on after it
                yield str(start), start, (f"bad CSV: {e}, the rest of the file is not read; "
                                          f"fix: shorten the field (at most {MAX_LINE_CHARS:,} characters)")
                return
            except _LineTooLong:
                n = reader.line_num + 1
                yield str(n), n, too_long
                return
            i, start = start, reader.line_num + 1  # a quoted field may span lines: report where it starts
            if None in row:
                yield str(i), i, f"{len(header) + len(row[None])} values but the header has {len(header)} columns"
            elif any(v is None for v in row.values()):
                n = sum(v is not None for v in row.values())
                yield str(i), i, f"{n} values but the header has {len(header)} columns"
            elif problem := _bad_utf8("".join(row.values())):
                yield str(i), i, problem
            else:
                yield str(i), i, row


def _read_parquet(path: Path) -> Iterator[tuple[str, int, Any]]:
    import pyarrow.parquet as pq

    try:
        rows = pq.read_table(path).to_pylist()
    except Exception as e:
        raise DataError(f"{path}: cannot read as Parquet: {type(e).__name__}: {e}") from e
    for i, row in enumerate(rows):
        yield f"row {i}", i, row


def _read_saved(path: Path, split: str | None) -> Iterator[tuple[str, int, Any]]:
    import datasets

    try:
        ds = datasets.load_from_disk(str(path))
    except Exception as e:
        raise DataError(
            f"{path}: a folder, but not one saved with datasets' save_to_disk ({type(e).__name__}: {e}); "
            f"fix: point at a .jsonl/.csv/.parquet file or a save_to_disk folder"
        ) from e
    if isinstance(ds, datasets.DatasetDict):
        ds = _pick_split(ds, split, str(path))
    for i, row in enumerate(ds):
        yield f"row {i}", i, row


def _read_hub(source: str, path: Path) -> Iterator[tuple[str, int, Any]]:
    import datasets

    name, _, split = source.partition(":")
    try:
        ds = datasets.load_dataset(name, split=split or "train")
    except Exception as e:
        raise DataError(
            f"{source}: no such file or folder (looked at {path.resolve()}), and no hub dataset could be "
            f"loaded ({type(e).__name__}: {e}); fix: check the path (relative paths resolve against the job "
            f"file's folder) or use a dataset name like \"name\" or \"name:split\""
        ) from e
    if isinstance(ds, datasets.DatasetDict):
        ds = _pick_split(ds, split or None, source)
    for i, row in enumerate(ds):
        yield f"row {i}", i, row


def _pick_split(ds: Any, split: str | None, label: str) -> Any:
    if split is None and len(ds) == 1:
        return next(iter(ds.values()))
    split = split or "train"
    if split not in ds:
        raise DataError(f"{label}: no split {split!r}; splits: {', '.join(ds)}; fix: write \"{label}:<split>\"")
    return ds[split]


# --- row checks ------------------------------------------------------------------------------


def _check_row(row: dict, required: Sequence[str], prompt_field: str | None, text_fields: Sequence[str]) -> str | None:
    fields = list(dict.fromkeys([*required, *([prompt_field] if prompt_field else []), *text_fields]))
    for name in fields:
        if name not in row or row[name] is None:
            present = ", ".join(repr(k) for k in row) or "none"
            what = "missing" if name not in row else "null"
            return f"{what} required field {name!r}; fields present: {present}"
    for name in text_fields:
        if not isinstance(row[name], str):
            return f"{name!r} must be a string, got {type(row[name]).__name__} {row[name]!r:.60}"
        if not row[name].strip():
            return f"{name!r} is empty"
    if prompt_field:
        return _check_prompt(row[prompt_field], prompt_field)
    return None


def _check_prompt(prompt: Any, field: str) -> str | None:
    if isinstance(prompt, str):
        return f"{field!r} is empty" if not prompt.strip() else None
    if not isinstance(prompt, list):
        return f"{field!r} must be a string or a list of chat messages, got {type(prompt).__name__} {prompt!r:.60}"
    if not prompt:
        return f"{field!r} is an empty list of messages"
    for k, msg in enumerate(prompt):
        where = f"{field!r} message {k}"
        if not isinstance(msg, dict):
            return f"{where}: expected {{\"role\": ..., \"content\": ...}}, got {type(msg).__name__} {msg!r:.60}"
        if msg.get("role") not in ROLES:
            return f"{where}: role {msg.get('role')!r} is not one of {', '.join(ROLES)}"
        if not isinstance(msg.get("content"), str):
            got = "missing" if "content" not in msg else f"{type(msg['content']).__name__} {msg['content']!r:.60}"
            return f"{where}: content must be a string, got {got}"
    return None
