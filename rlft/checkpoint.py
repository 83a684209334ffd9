"""Save and resume everything a run needs (DESIGN.md §6).

A checkpoint is a folder ``checkpoints/step_N/``: the model's weights as safetensors, the
optimizer and scheduler state, the RNG state, ``state.json`` (step, sampler version, data
position, the settings that decide the result, where the run's logs ended) and
``manifest.json`` (size and SHA-256 of every other file). It is written to a temporary folder,
flushed to disk and renamed, so a crash never leaves a half-written ``step_N``; ``latest``
names the newest complete one. On resume every candidate is checked against its manifest, and a
truncated or corrupted one is skipped with a message. Nothing is unpickled except through
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
from pathlib import Path

import torch
from safetensors.torch import load_model, save_model

MANIFEST = "manifest.json"
_STEP_DIR = re.compile(r"step_(\d+)")


class CheckpointError(RuntimeError):
    """A checkpoint could not be written; the message says what is intact and what to do."""


def write_json(path: str | Path, obj) -> None:
    """Write ``obj`` as JSON through a temporary file and a rename: never half a file."""
    tmp = Path(f"{path}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(json.dumps(obj, indent=2) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def sha256(path: Path) -> str:
    """The file's SHA-256, hex."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _fsync(path: Path) -> None:
    """Flush a file or a folder entry to disk (a rename is durable only once its folder is)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write(tmp: Path, step: int, model, optimizer, scheduler, state: dict) -> None:
    save_model(model, str(tmp / "model.safetensors"))
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}, tmp / "optim.pt")
    torch.save({"torch": torch.get_rng_state()}, tmp / "rng.pt")
    write_json(tmp / "state.json", {"step": step, **state})
    files = sorted(p for p in tmp.iterdir() if p.is_file())
    for p in files:
        _fsync(p)
    write_json(tmp / MANIFEST, {p.name: {"bytes": p.stat().st_size, "sha256": sha256(p)} for p in files})
    _fsync(tmp)


def save(run_dir: Path, step: int, model, optimizer, scheduler, state: dict, keep: int = 0) -> Path:
    """Write ``checkpoints/step_{step}`` atomically, point ``latest`` at it, then keep only the
    newest ``keep`` complete checkpoints (0 = keep all). A failed write (a full disk) removes its
    temporary folder and raises CheckpointError; earlier checkpoints are untouched."""
    root = Path(run_dir) / "checkpoints"
    final, tmp = root / f"step_{step}", root / f".tmp_step_{step}"
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        _write(tmp, step, model, optimizer, scheduler, state)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        (root / "latest.tmp").write_text(final.name)
        os.replace(root / "latest.tmp", root / "latest")
        _fsync(root)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        previous = latest(run_dir, quiet=True)
        intact = f"the previous checkpoint {previous} is intact" if previous else "there is no earlier checkpoint"
        raise CheckpointError(
            f"could not write the checkpoint of step {step} under {root}: {e.strerror or e}; {intact}. "
            f"Fix: free disk space (or fix the cause), then run the same command again to resume"
        ) from e
    prune(root, keep)
    return final


def verify(path: Path) -> str | None:
    """None when ``path`` is a complete checkpoint matching its manifest, else what is wrong."""
    try:
        manifest = json.loads((path / MANIFEST).read_text())
    except FileNotFoundError:
        return f"missing {MANIFEST}"
    except (OSError, ValueError) as e:
        return f"unreadable {MANIFEST} ({e})"
    for name, want in manifest.items():
        p = path / name
        if not p.is_file():
            return f"missing {name}"
        if p.stat().st_size != want["bytes"]:
            return f"{name} is {p.stat().st_size} bytes, the manifest says {want['bytes']} (truncated?)"
        if sha256(p) != want["sha256"]:
            return f"{name} does not match its SHA-256 in the manifest (corrupted)"
    return None


def _steps(root: Path) -> list[tuple[int, Path]]:
    """(step, folder) of every ``step_N`` under ``root``, newest first."""
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := _STEP_DIR.fullmatch(p.name)) and p.is_dir()]
    return sorted(found, reverse=True)


def latest(run_dir: Path, quiet: bool = False) -> Path | None:
    """The newest checkpoint that passes ``verify``; broken ones are skipped with a message."""
    for _, path in _steps(Path(run_dir) / "checkpoints"):
        problem = verify(path)
        if problem is None:
            return path
        if not quiet:
            print(f"rlft: skipping checkpoint {path}: {problem}", file=sys.stderr)
    return None


def prune(root: Path, keep: int) -> None:
    """Delete all but the newest ``keep`` complete checkpoints (and leftover temporary folders)."""
    for tmp in root.glob(".tmp_step_*"):
        shutil.rmtree(tmp, ignore_errors=True)
    if keep <= 0:
        return
    complete = [p for _, p in _steps(root) if (p / MANIFEST).exists()]
    for path in complete[keep:]:
        shutil.rmtree(path, ignore_errors=True)


def read_state(path: Path) -> dict:
    return json.loads((path / "state.json").read_text())


def load(path: Path, model, optimizer, scheduler) -> dict:
    """Restore weights, optimizer, scheduler and RNG from ``path``; return its state.json."""
    load_model(model, str(path / "model.safetensors"), device=str(next(model.parameters()).device))
    optim = torch.load(path / "optim.pt", weights_only=True)
    optimizer.load_state_dict(optim["optimizer"])
    scheduler.load_state_dict(optim["scheduler"])
    torch.set_rng_state(torch.load(path / "rng.pt", weights_only=True)["torch"])
    return read_state(path)
