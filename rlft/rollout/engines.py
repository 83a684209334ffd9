"""Sampler engines a sampler actor can hold (``[distributed] sampler``), chosen from a table.

Every entry has the same signature, ``(model_path, job, device) -> Sampler``, and returns an
object with ``generate`` (rlft.rollout.sampler.Sampler), ``version``, and
``load_weights(state, version)``. vLLM is imported only when its entry is called, so nothing here
pulls it in on a CPU machine.
"""

from __future__ import annotations

import torch

from rlft.config import Job
from rlft.distributed.weights import load_weights
from rlft.models import load_model, load_tokenizer, pick_dtype
from rlft.rollout.sampler import HFSampler


class HFEngine(HFSampler):
    """The in-process transformers sampler, holding its own copy of the policy."""

    def load_weights(self, state: dict[str, torch.Tensor], version: int) -> None:
        load_weights(self.model, state)
        self.version = version


def hf(model_path: str, job: Job, device: torch.device) -> HFEngine:
    lora = None if job.model.lora is None else vars(job.model.lora)
    # trainable=True keeps the peft wrapper, so LoRA adapter weights have somewhere to go
    model = load_model(model_path, device=device, dtype=pick_dtype(job.model.dtype, device), lora=lora)
    model.requires_grad_(False)
    return HFEngine(model, load_tokenizer(model_path), version=-1)


def vllm(model_path: str, job: Job, device: torch.device):
    from rlft.rollout.vllm_sampler import VLLMSampler  # lazy: the optional extra, GPU only

    return VLLMSampler(model_path, job)


ENGINES = {"hf": hf, "vllm": vllm}
