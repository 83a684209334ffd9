"""Save and resume everything a run needs (DESIGN.md §6).

A checkpoint is a folder ``checkpoints/step_N/``: the model's weights as safetensors, the
optimizer and scheduler state, the RNG state and ``state.json`` (step, sampler version, data
position). It is written to a temporary folder and renamed, so a crash never leaves a
half-written ``step_N``; ``latest`` names the newest complete one. Nothing is unpickled except
through ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_model, save_model


def write_json(path: str | Path, obj) -> None:
    tmp = Path(f"{path}.tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    os.replace(tmp, path)


def save(run_dir: Path, step: int, model, optimizer, scheduler, state: dict) -> Path:
    root = Path(run_dir) / "checkpoints"
    final, tmp = root / f"step_{step}", root / f".tmp_step_{step}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_model(model, str(tmp / "model.safetensors"))
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}, tmp / "optim.pt")
    torch.save({"torch": torch.get_rng_state()}, tmp / "rng.pt")
    write_json(tmp / "state.json", {"step": step, **state})
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    (root / "latest.tmp").write_text(final.name)
    os.replace(root / "latest.tmp", root / "latest")
    return final


def latest(run_dir: Path) -> Path | None:
    pointer = Path(run_dir) / "checkpoints" / "latest"
    if not pointer.exists():
        return None
    path = pointer.parent / pointer.read_text().strip()
    return path if (path / "state.json").exists() else None


def load(path: Path, model, optimizer, scheduler) -> dict:
    """Restore weights, optimizer, scheduler and RNG from ``path``; return its state.json."""
    load_model(model, str(path / "model.safetensors"), device=str(next(model.parameters()).device))
    optim = torch.load(path / "optim.pt", weights_only=True)
    optimizer.load_state_dict(optim["optimizer"])
    scheduler.load_state_dict(optim["scheduler"])
    torch.set_rng_state(torch.load(path / "rng.pt", weights_only=True)["torch"])
    return json.loads((path / "state.json").read_text())
