"""The vLLM sampler (rlft.rollout.vllm_sampler): on a CUDA machine with vLLM, its logprobs match
the learner's and pushed weights take effect; on CPU, a clear error and no vllm import.

Run on a GPU machine: python -m pytest -q -m gpu tests/test_vllm_sampler.py   (pip install 'rlft[vllm]')
The default run (no GPU) keeps only the CPU test.
"""

import sys

import pytest
import torch

from rlft.config import load_job


def test_on_cpu_the_error_says_what_is_missing_and_vllm_is_not_imported():
    from rlft.rollout.engines import ENGINES
    from rlft.rollout.vllm_sampler import VLLMUnavailable

    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the GPU test covers this machine")
    with pytest.raises(VLLMUnavailable, match=r"needs a CUDA GPU.*distributed.sampler=hf"):
        ENGINES["vllm"]("unused", load_job(None, ["distributed.sampler=hf"]), torch.device("cpu"))
    assert "vllm" not in sys.modules


@pytest.mark.gpu
def test_vllm_logprobs_match_the_learner_and_weights_sync(tmp_path):
    pytest.importorskip("vllm")
    from rlft.data import collate
    from rlft.distributed.weights import export_weights
    from rlft.learner import fill_logprobs
    from rlft.models import build_tiny_model, encode_prompt, load_model, load_tokenizer
    from rlft.rollout.runner import to_trajectory
    from rlft.rollout.sampler import SamplingParams
    from rlft.rollout.vllm_sampler import VLLMSampler
    from rlft.tasks import arithmetic

    path = build_tiny_model(tmp_path / "tiny", arithmetic.corpus(200), seed=0)  # head_dim 32: every attention backend
    job = load_job(None, [f"model.path={path}", "model.dtype=float32", "distributed.sampler=vllm",
                          "distributed.vllm_gpu_memory=0.2", "model.max_length=256"])
    tok = load_tokenizer(path)
    learner = load_model(path, device=torch.device("cuda"), dtype=torch.float32)
    sampler = VLLMSampler(str(path), job)
    sampler.load_weights(export_weights(learner), 0)
    prompts = [encode_prompt(tok, "12+34="), encode_prompt(tok, "5+6=")]
    params = SamplingParams(max_new_tokens=8, temperature=1.0)

    def gap() -> float:
        out = sampler.generate(prompts, 4, params, torch.Generator().manual_seed(0))
        trajs = [to_trajectory(p, c, 0.0, None, sampler.version) for p, cs in zip(prompts, out) for c in cs]
        batch = collate(trajs, [1.0] * len(trajs), tok.pad_token_id)
        learner_BT = fill_logprobs(learner, batch, 0, 1.0)
        return float(((learner_BT - batch.sampler_logp_BT).abs() * batch.loss_mask_BT).sum() / batch.loss_mask_BT.sum())

    assert gap() < 1e-3  # float32 on both sides: only kernel differences
    with torch.no_grad():  # a different policy: the gap stays small only if the push took effect
        for p in learner.parameters():
            p.add_(0.05 * torch.randn_like(p))
    sampler.load_weights(export_weights(learner), 1)
    assert sampler.version == 1 and gap() < 1e-3
