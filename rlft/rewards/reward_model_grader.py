"""The ``reward_model`` grader: a trained Bradley–Terry model's score of the prompt and attempt
(rlft.rewards.reward_model trains one). Light to import: torch and transformers load when it
first scores, not when a job is checked."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Sequence

from rlft.config import ConfigError, GraderConfig
from rlft.types import Sample


class RewardModelScore:
    """``type = "reward_model"``: the model's score of the item's prompt and the attempt. The
    model loads on first use (not when the job is checked) and once per process."""

    def __init__(self, path: str, prompt_field: str = "prompt", batch_size: int = 32, device: str = "auto"):
        self.path, self.prompt_field, self.batch_size, self.device = path, prompt_field, batch_size, device
        self._lock = threading.Lock()
        self._loaded = None  # (tokenizer, model, device, max_tokens)

    def __reduce__(self):  # another process loads its own copy
        return (RewardModelScore, (self.path, self.prompt_field, self.batch_size, self.device))

    def _load(self):
        from rlft.models import load_tokenizer, pick_device, pick_dtype
        from rlft.rewards.reward_model import load_scorer

        with self._lock:
            if self._loaded is None:
                device = pick_device(self.device)
                tokenizer = load_tokenizer(self.path)
                model = load_scorer(self.path, device, pick_dtype("auto", device), tokenizer.pad_token_id)
                model.eval().requires_grad_(False)
                max_tokens = getattr(model.config, "max_position_embeddings", None) or 4096
                self._loaded = (tokenizer, model, device, max_tokens)
        return self._loaded

    def scores(self, samples: Sequence[Sample], items: Sequence[dict]) -> list[float]:
        import torch

        from rlft.rewards.reward_model import encode, rewards

        tokenizer, model, device, max_tokens = self._load()
        seqs = []
        for sample, item in zip(samples, items):
            if self.prompt_field not in item:
                fields = ", ".join(k for k in item if not k.startswith("_"))
                raise KeyError(f"reward_model: the item has no field {self.prompt_field!r} (fields: {fields}); "
                               f"fix: set grader.prompt_field to the field holding the prompt")
            seqs.append(encode(tokenizer, item[self.prompt_field], sample.output_text)[-max_tokens:])  # keep the end
        out = []
        with torch.no_grad():
            for i in range(0, len(seqs), self.batch_size):
                out += rewards(model, seqs[i : i + self.batch_size], tokenizer.pad_token_id, device).tolist()
        return out

    def __call__(self, sample: Sample, item: dict) -> float:
        return self.scores([sample], [item])[0]

    def grade_group(self, samples: Sequence[Sample], items: Sequence[dict]) -> list[float | Exception]:
        """One batch for the group; an error marks every attempt in it errored."""
        try:
            return list(self.scores(samples, items))
        except Exception as e:  # the runner counts and logs it per attempt
            return [e] * len(samples)


def reward_model(cfg: GraderConfig, base_dir: Path, where: str) -> RewardModelScore:
    if not cfg.model:
        raise ConfigError(f"{where}.model is empty; the reward_model grader needs the folder rlft reward-model train "
                          f"wrote, e.g. model = \"runs/reward-model\"")
    path = Path(cfg.model) if Path(cfg.model).is_absolute() else Path(base_dir) / cfg.model
    if not (path / "config.json").is_file():
        raise ConfigError(f"{where}.model = {cfg.model!r}: no model at {path} (no config.json); fix: point it at the "
                          f"folder rlft reward-model train wrote (relative paths resolve against the job file's folder)")
    return RewardModelScore(str(path), cfg.prompt_field or "prompt")
