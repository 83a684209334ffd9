"""The model's context against what a run will feed it, checked before the model loads.

A model attends over at most ``config.max_position_embeddings`` positions. A prompt plus
``sampling.max_new_tokens`` past that either crashes (learned position embeddings index out of
range) or quietly degrades (rotary embeddings extrapolate), so ``check_context`` refuses it at
start with one line naming the longest prompt's file:line, its tokens, max_new_tokens, the
context and the fixes. It reuses the token ids the run already made (chat template included):
no second tokenisation, and only the config file is read.
"""

from __future__ import annotations

from typing import Any, Sequence

from transformers import AutoConfig

from rlft.config import ConfigError, Job
from rlft.models import resolve_model_path
from rlft.types import Trajectory


def model_context(path: str) -> int | None:
    """Positions the model at ``path`` attends over (its text config's max_position_embeddings),
    read from config.json alone; None for an architecture without the limit."""
    config = AutoConfig.from_pretrained(resolve_model_path(path)).get_text_config()
    # optional by architecture, not by accident: e.g. state-space models have no position limit
    return getattr(config, "max_position_embeddings", None)


def check_context(job: Job, path: str, items: Sequence[dict], prompts: Sequence[Any]) -> None:
    """Every entry of ``prompts`` must fit the context of the model at ``path``: token ids of a
    prompt to be sampled from (plus ``sampling.max_new_tokens``) or a ``Trajectory`` to train on
    (an SFT demonstration, prompt + completion). ``items[i]`` says where ``prompts[i]`` came from."""
    if not prompts or (context := model_context(path)) is None:
        return
    new = job.sampling.max_new_tokens
    need = [len(p.tokens_T) if isinstance(p, Trajectory) else len(p) + new for p in prompts]
    over = [i for i, n in enumerate(need) if n > context]
    if not over:
        return
    i = max(over, key=need.__getitem__)
    where = f"{items[i]['_source']}:{items[i]['_line']}"
    more = f" ({len(over)} of {len(prompts)} do not fit)" if len(over) > 1 else ""
    model = f"the model's context ({context} tokens, config.max_position_embeddings of {path})"
    if isinstance(prompts[i], Trajectory):
        raise ConfigError(f"{where}: prompt + completion is {need[i]} tokens, over {model}{more}; "
                          f"fix: shorter demonstrations, or a model with a longer context")
    n = len(prompts[i])
    lower = f"sampling.max_new_tokens <= {context - n}, " if n < context else ""
    raise ConfigError(
        f"{where}: the prompt is {n} tokens and sampling.max_new_tokens = {new}: {n + new} tokens, "
        f"over {model}{more}; fix: shorter prompts, {lower}or a model with a longer context"
    )
