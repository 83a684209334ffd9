"""Weights from the learner to the samplers (DESIGN.md §4 step 10): the full state dict, or only
the LoRA adapter when the policy is a peft model (a few MB instead of the whole model)."""

from __future__ import annotations

import torch


def _is_peft(model) -> bool:
    from peft import PeftModel

    return isinstance(model, PeftModel)


def export_weights(model) -> dict[str, torch.Tensor]:
    """What a sampler needs to match ``model``: the adapter weights of a peft model, else every
    tensor of the state dict; detached CPU copies (safe to ship while training goes on)."""
    if _is_peft(model):
        from peft import get_peft_model_state_dict

        state = get_peft_model_state_dict(model)
    else:
        state = model.state_dict()
    return {k: v.detach().to("cpu", copy=True) for k, v in state.items()}


def load_weights(model, state: dict[str, torch.Tensor]) -> None:
    """Load ``export_weights``' output into a copy of the same model (peft or not)."""
    if _is_peft(model):
        from peft import set_peft_model_state_dict

        result = set_peft_model_state_dict(model, state)
        unexpected = getattr(result, "unexpected_keys", [])
        assert not unexpected, f"adapter weights the sampler's model does not have: {unexpected[:5]}"
        return
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not missing and not unexpected, (
        f"weights do not match the sampler's model: missing {missing[:5]}, unexpected {unexpected[:5]}"
    )
