"""vLLM as the sampler on GPUs (``[distributed] sampler = "vllm"``; ``pip install 'rlft[vllm]'``).

Imported only when a job asks for it (rlft.rollout.engines), never by the CPU tests. Written
against vLLM's documented offline API: ``LLM(...)``, ``LLM.generate`` with token-id prompts
(``{"prompt_token_ids": ids}``) and ``SamplingParams(n, temperature, top_p, top_k, max_tokens,
stop, seed, logprobs=0)``; ``logprobs_mode="processed_logprobs"`` (vLLM >= 0.10.2) so the
reported logprob is of the temperature-scaled distribution, as the learner computes it. (vLLM
applies top-p/top-k before "processed" logprobs; rlft's HF sampler and learner do not, so with
top_p < 1 or top_k > 0 the gap metric includes that truncation.)

Weights: full weights go through ``LLM.collective_rpc`` to a worker extension
(``worker_extension_cls``, vLLM's documented RLHF hook) that calls the model's own
``load_weights``; a LoRA adapter is written to a folder and used through a ``LoRARequest`` per
version. Every step the learner compares its logprobs of the sampled tokens with the ones vLLM
reported: the ``logp_gap`` metric (rlft.learner.update).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Sequence

import torch

from rlft.config import Job
from rlft.rollout.sampler import Completion, SamplingParams


class VLLMUnavailable(RuntimeError):
    """vLLM or a GPU is missing; the message says how to get them or what to use instead."""


def _import_vllm():
    if not torch.cuda.is_available():
        raise VLLMUnavailable(
            "distributed.sampler = \"vllm\" needs a CUDA GPU and none is visible; fix: set distributed.sampler=hf "
            "(the transformers sampler, any device)"
        )
    try:
        import vllm
    except ImportError:
        raise VLLMUnavailable(
            "distributed.sampler = \"vllm\" needs vLLM, which is not installed; fix: pip install 'rlft[vllm]' "
            "(on a machine with a CUDA GPU), or set distributed.sampler=hf"
        ) from None
    return vllm


class WeightLoader:
    """Mixed into vLLM's GPU worker (``worker_extension_cls``): loads a safetensors file of full
    weights into the running model. ``self.model_runner`` is the worker's, as in vLLM's RLHF example."""

    def rlft_load_weights(self, path: str) -> int:
        from safetensors.torch import load_file

        weights = load_file(path, device="cpu")
        self.model_runner.model.load_weights(weights=list(weights.items()))
        torch.cuda.synchronize()
        return len(weights)


class VLLMSampler:
    """The Sampler protocol on a vLLM engine in this process (one GPU)."""

    def __init__(self, model_path: str, job: Job):
        vllm = _import_vllm()
        self.lora = job.model.lora
        self.dir = Path(tempfile.mkdtemp(prefix="rlft-vllm-"))
        kwargs = dict(enable_lora=True, max_lora_rank=self.lora.rank) if self.lora else {}
        self.llm = vllm.LLM(
            model=model_path,
            dtype={"auto": "auto", "float32": "float32", "bfloat16": "bfloat16", "float16": "float16"}[job.model.dtype],
            gpu_memory_utilization=job.distributed.vllm_gpu_memory,
            max_model_len=job.model.max_length,
            seed=job.run.seed,
            logprobs_mode="processed_logprobs",
            worker_extension_cls="rlft.rollout.vllm_sampler.WeightLoader",
            **kwargs,
        )
        self.tokenizer = self.llm.get_tokenizer()
        self.version = -1
        self.lora_request = None

    def load_weights(self, state: dict[str, torch.Tensor], version: int) -> None:
        """Full weights into the engine, or (LoRA) an adapter folder for the next requests."""
        from safetensors.torch import save_file

        if self.lora:
            from peft import LoraConfig
            from vllm.lora.request import LoRARequest

            folder = self.dir / f"adapter_v{version}"
            folder.mkdir(parents=True, exist_ok=True)
            save_file(state, str(folder / "adapter_model.safetensors"))
            # the adapted modules by name ("...q_proj.lora_A.weight" -> q_proj): vLLM needs names, not "all-linear"
            targets = sorted({k.split(".")[-3] for k in state})
            LoraConfig(r=self.lora.rank, lora_alpha=self.lora.alpha, target_modules=targets,
                       task_type="CAUSAL_LM").save_pretrained(str(folder))
            self.lora_request = LoRARequest(f"rlft-v{version}", version + 1, str(folder))
        else:
            path = self.dir / "weights.safetensors"
            save_file({k: v.contiguous() for k, v in state.items()}, str(path))
            self.llm.collective_rpc("rlft_load_weights", args=(str(path),))
            self.llm.reset_prefix_cache()  # cached prefixes were computed with the old weights
        self.version = version

    def generate(self, prompts: Sequence[list[int]], n: int, params: SamplingParams,
                 generator: torch.Generator) -> list[list[Completion]]:
        from vllm import SamplingParams as VParams

        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
        vparams = VParams(
            n=n, temperature=params.temperature, top_p=params.top_p, top_k=params.top_k or -1,
            max_tokens=params.max_new_tokens, stop=list(params.stop) or None, seed=seed, logprobs=0,
        )
        outs = self.llm.generate([{"prompt_token_ids": list(p)} for p in prompts], vparams,
                                 lora_request=self.lora_request, use_tqdm=False)
        return [[self._completion(c) for c in out.outputs] for out in outs]

    @staticmethod
    def _completion(c) -> Completion:
        tokens = list(c.token_ids)
        logp = [step[t].logprob for step, t in zip(c.logprobs, tokens)]  # logprobs=0: the sampled token's
        # finish_reason "length", or "stop" with stop_reason None (EOS) or the stop string that matched
        reason = "length" if c.finish_reason == "length" else "eos" if c.stop_reason is None else "stop"
        return Completion(tokens=tokens, logp=logp, text=c.text, stop_reason=reason)
