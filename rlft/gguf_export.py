"""``rlft export RUN_OR_MODEL --gguf OUT.gguf``: a model written back as GGUF, for llama.cpp,
Ollama and LM Studio (DESIGN.md §8; reading GGUF is ``rlft.gguf``).

RUN_OR_MODEL is a Hugging Face model folder (config.json, weights, tokenizer), or a run folder:
its ``final/`` when the run finished, else its newest complete checkpoint's weights loaded onto
the run's base model (``config.toml``'s ``model.path``; LoRA merged, a PPO value head left out).

The file is written the way llama.cpp's ``convert_hf_to_gguf.py`` writes these architectures,
through the ``gguf`` package's writer and name mapping, so llama.cpp and transformers' GGUF
loader both read it back:

1. Hyperparameters under ``{arch}.*``: blocks, context length, widths, heads, RoPE base and
   dimension, RMS-norm epsilon, vocabulary size, ``general.file_type``.
2. Tensors under llama.cpp's names (``gguf.get_tensor_name_map``), f16 or f32; 1-D tensors
   (norms, biases) stay f32, as llama.cpp keeps them. Tied embeddings: no ``output.weight``
   (llama.cpp and transformers then use ``token_embd.weight`` for the head too).
3. Llama only: Q and K rows permuted from Hugging Face's rotate-half order to llama.cpp's
   interleaved one (``LlamaModel.permute`` in convert_hf_to_gguf.py); transformers'
   ``LlamaTensorProcessor`` undoes exactly this on load.
4. The tokenizer as byte-level BPE: ``tokenizer.ggml.model = "gpt2"``, tokens, token types
   (special added tokens CONTROL, other added tokens USER_DEFINED, padding rows UNUSED), merges,
   special token ids, add_bos/add_eos as the tokenizer behaves, ``tokenizer.chat_template``
   (``gguf.SpecialVocab``), and ``tokenizer.ggml.pre``: llama.cpp's name for how text is split
   before BPE, read off the tokenizer's pre-tokenizer (``PRE_TOKENIZERS``).

Supported: ``ARCHS``. Anything else fails before a byte is written, one line each (``GGUFError``
or ``FileExistsError``, both ``OSError``): another architecture, scaled RoPE, a tokenizer that
is not byte-level BPE or splits text in a way llama.cpp has no name for, a missing source, a
folder without a model, an existing OUT without ``force``. OUT is written to a temporary file
beside it and renamed, so an interrupted export leaves no half file.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from rlft.gguf import GGUFError, GGUF_MAGIC


@dataclass(frozen=True)
class Arch:
    gguf_name: str  # general.architecture: a gguf.MODEL_ARCH_NAMES value, llama.cpp's name
    permute_qk: bool  # llama.cpp stores Q/K rows interleaved for its RoPE kernel (Llama family)
    examples: str  # for the docs and the refusal message


# Hugging Face config.model_type -> how llama.cpp stores it
ARCHS = {
    "llama": Arch("llama", True, "Llama 3, SmolLM/SmolLM2, rlft's tiny model"),
    "qwen2": Arch("qwen2", False, "Qwen2, Qwen2.5"),
}

# --dtype -> (torch dtype of 2-D tensors, general.file_type: gguf.LlamaFileType)
DTYPES = {"f32": (torch.float32, 0), "f16": (torch.float16, 1)}

# The regexes of the two Split pre-tokenizers llama.cpp names (from their tokenizer.json files).
QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
               r"|\s*[\r\n]+|\s+(?!\S)|\s+")
LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")

# The tokenizer's pre-tokenizer, step by step (``pre_tokenizer_steps``) -> tokenizer.ggml.pre.
# llama.cpp's regexes for each (llama-vocab.cpp): gpt-2 is GPT-2's; smollm is \p{N} (every digit
# alone) then GPT-2's; qwen2 and llama-bpe are the Split patterns above.
PRE_TOKENIZERS = {
    ("ByteLevel(regex)",): "gpt-2",
    ("Digits(individual)", "ByteLevel(regex)"): "smollm",
    (f"Split({QWEN2_SPLIT})", "ByteLevel"): "qwen2",
    (f"Split({LLAMA3_SPLIT})", "ByteLevel"): "llama-bpe",
}


def _gguf_package():
    try:
        import gguf
    except ImportError:
        raise GGUFError("writing GGUF needs the gguf package: pip install 'rlft[gguf]'") from None
    return gguf


def check_out(out: Path, force: bool) -> None:
    if out.is_dir():
        raise GGUFError(f"--gguf {out} is a folder; give a file name, e.g. {out / 'model.gguf'}")
    if out.exists() and not force:
        raise FileExistsError(f"{out} already exists; pass --force to overwrite it, or choose another file name")


def checkpoint_model(run_dir: Path, ckpt: Path, scratch: Path) -> Path:
    """A Hugging Face folder under ``scratch`` holding checkpoint ``ckpt`` of the run in ``run_dir``:
    the run's base model (its config.toml) with the checkpoint's weights, LoRA merged."""
    from safetensors.torch import load_model as load_safetensors

    from rlft import run as run_mod
    from rlft.config import load_job
    from rlft.models import VALUE_HEAD, load_model, load_tokenizer, save_final

    if not (run_dir / "config.toml").is_file():
        raise GGUFError(f"{run_dir} has {ckpt.name} but no config.toml naming the base model it was trained from; "
                        "export a model folder instead")
    job = load_job(run_dir / "config.toml")
    base = run_mod.model_path(job, run_dir)
    lora = None if job.model.lora is None else vars(job.model.lora)
    model = load_model(base, device=torch.device("cpu"), dtype=torch.float32, lora=lora)
    missing, unexpected = load_safetensors(model, str(ckpt / "model.safetensors"), strict=False)
    unexpected = [k for k in unexpected if not k.startswith(f"{VALUE_HEAD}.")]  # PPO's value head: not the policy
    if missing or unexpected:
        raise GGUFError(f"{ckpt}/model.safetensors does not fit the base model {base} "
                        f"(missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]})")
    return save_final(model, load_tokenizer(base), scratch / "model")


def source_folder(src: Path, scratch: Path) -> tuple[Path, str]:
    """The Hugging Face folder to export for RUN_OR_MODEL ``src``, and where it came from."""
    from rlft import checkpoint

    if not src.exists():
        raise FileNotFoundError(f"{src} does not exist; give a run folder (runs/NAME) or a Hugging Face model folder")
    if src.is_file():
        with open(src, "rb") as f:
            already = f.read(4) == GGUF_MAGIC
        raise GGUFError(f"{src} is {'already a GGUF file' if already else 'a file'}; give a run folder "
                        "or a Hugging Face model folder")
    if (src / "config.json").is_file():
        return src, "model folder"
    if (src / "final" / "config.json").is_file():
        return src / "final", "the run's final/"
    ckpt = checkpoint.latest(src)
    if ckpt is not None:
        return checkpoint_model(src, ckpt, scratch), f"the run's checkpoints/{ckpt.name} (no final/ yet)"
    if (src / "adapter_config.json").is_file():
        raise GGUFError(f"{src} is a LoRA adapter without its base model; export the run's final/ "
                        "(rlft saves it with the adapter merged)")
    raise GGUFError(f"{src} holds no model: expected a Hugging Face folder (config.json and weights) "
                    "or a run folder with final/ or checkpoints/step_N/")


def check_arch(config, folder: Path) -> Arch:
    arch = ARCHS.get(config.model_type)
    if arch is None:
        supported = "; ".join(f"{name} ({a.examples})" for name, a in ARCHS.items())
        raise GGUFError(f"{folder}: architecture {config.model_type!r} ({', '.join(config.architectures or [])}) "
                        f"cannot be exported to GGUF by rlft; supported: {supported}")
    rope_type = config.rope_parameters.get("rope_type", "default")
    if rope_type != "default" or config.hidden_act != "silu":
        raise GGUFError(f"{folder}: {config.model_type} with RoPE {rope_type!r} and activation "
                        f"{config.hidden_act!r}; rlft's GGUF export writes unscaled RoPE and silu only")
    return arch


def pre_tokenizer_steps(state: dict) -> tuple[str, ...]:
    """The pre-tokenizer of a tokenizer.json ``state`` as a tuple of steps, e.g.
    ("Digits(individual)", "ByteLevel(regex)"): the key of ``PRE_TOKENIZERS``."""
    pre = state["pre_tokenizer"] or {"type": "none"}
    steps = pre["pretokenizers"] if pre["type"] == "Sequence" else [pre]
    out = []
    for s in steps:
        if s["type"] == "ByteLevel":
            out.append("ByteLevel(regex)" if s.get("use_regex", True) else "ByteLevel")
        elif s["type"] == "Digits":
            out.append("Digits(individual)" if s["individual_digits"] else "Digits")
        elif s["type"] == "Split":
            out.append(f"Split({s['pattern'].get('Regex', s['pattern'].get('String'))})")
        else:
            out.append(s["type"])
    return tuple(out)


def pre_tokenizer_name(tokenizer, folder: Path) -> str:
    """tokenizer.ggml.pre for ``tokenizer``, or one line saying why llama.cpp could not run it."""
    state = json.loads(tokenizer.backend_tokenizer.to_str())
    model, decoder = state["model"], state["decoder"] or {}
    if model["type"] != "BPE" or model.get("byte_fallback") or decoder.get("type") != "ByteLevel":
        kind = f"{model['type']}{' with byte fallback' if model.get('byte_fallback') else ''}"
        raise GGUFError(f"{folder}: the tokenizer is {kind} (decoder {decoder.get('type')}); rlft's GGUF export "
                        "writes byte-level BPE tokenizers only (GPT-2 style: SmolLM2, Qwen2, Llama 3)")
    steps = pre_tokenizer_steps(state)
    if steps not in PRE_TOKENIZERS:
        raise GGUFError(f"{folder}: the tokenizer's pre-tokenizer {' + '.join(steps)} has no llama.cpp name rlft "
                        f"knows ({', '.join(PRE_TOKENIZERS.values())}); llama.cpp would split text differently")
    return PRE_TOKENIZERS[steps]


def add_hparams(writer, config, file_type: int, name: str) -> None:
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads  # Qwen2: none
    writer.add_type("model")
    writer.add_name(name)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_rope_freq_base(config.rope_parameters["rope_theta"])
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_vocab_size(config.vocab_size)
    writer.add_rope_dimension_count(head_dim)
    if head_dim != config.hidden_size // config.num_attention_heads:
        writer.add_key_length(head_dim)
        writer.add_value_length(head_dim)
    writer.add_file_type(file_type)


def add_tokenizer(writer, gguf, folder: Path, tokenizer, vocab_size: int, pre: str) -> None:
    """Tokens, types, merges, special ids, add_bos/add_eos and chat template, as llama.cpp's
    converter writes a byte-level BPE vocabulary (``TextModel.get_vocab_base``)."""
    vocab = {i: t for t, i in tokenizer.get_vocab().items()}
    if max(vocab) >= vocab_size:
        raise GGUFError(f"{folder}: the tokenizer has token id {max(vocab)} but the model embeds only {vocab_size} "
                        "tokens; fix: resize the embeddings (model.resize_token_embeddings) or drop the added tokens "
                        "past them from tokenizer.json")
    added, T = tokenizer.added_tokens_decoder, gguf.TokenType  # T.NORMAL, T.CONTROL, ...
    tokens, types = [], []
    for i in range(vocab_size):  # rows past the tokenizer (padding to a round size) are unused
        if i in added:
            tokens.append(added[i].content)
            types.append(T.CONTROL if added[i].special else T.USER_DEFINED)
        else:
            tokens.append(vocab.get(i, f"[PAD{i}]"))
            types.append(T.NORMAL if i in vocab else T.UNUSED)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    special = gguf.SpecialVocab(folder, load_merges=True, n_vocab=vocab_size)
    if not special.merges:
        raise GGUFError(f"{folder}: tokenizer.json has no BPE merges; llama.cpp cannot tokenize without them")
    # special ids from the tokenizer, not from config.json (a config's default bos_token_id = 1
    # would name a token the tokenizer never uses)
    ids = {"bos": tokenizer.bos_token_id, "eos": tokenizer.eos_token_id, "unk": tokenizer.unk_token_id,
           "pad": tokenizer.pad_token_id}
    special.special_token_ids = {**{k: v for k, v in special.special_token_ids.items() if k not in ids},
                                 **{k: v for k, v in ids.items() if v is not None}}
    # what the tokenizer does, not what a config claims: a BOS / EOS added around plain text
    with_special = tokenizer("a").input_ids
    bare = tokenizer("a", add_special_tokens=False).input_ids
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    special.add_special_token["bos"] = bos is not None and with_special[:1] == [bos] and bare[:1] != [bos]
    special.add_special_token["eos"] = eos is not None and with_special[-1:] == [eos] and bare[-1:] != [eos]
    special.add_to_gguf(writer, quiet=True)
    if special.chat_template is None and tokenizer.chat_template:
        writer.add_chat_template(tokenizer.chat_template)


def permute(w: torch.Tensor, n_head: int) -> torch.Tensor:
    """Hugging Face's rotate-half Q or K rows (``n_head`` heads: the KV head count for K) ->
    llama.cpp's interleaved ones (convert_hf_to_gguf.py ``LlamaModel.permute``)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def add_tensors(writer, gguf, model, config, arch: Arch, dtype: torch.dtype, folder: Path) -> int:
    """Every weight under its llama.cpp name; the head left out when tied to the embeddings."""
    arch_enum = {v: k for k, v in gguf.MODEL_ARCH_NAMES.items()}[arch.gguf_name]
    names = gguf.get_tensor_name_map(arch_enum, config.num_hidden_layers)
    heads, kv_heads = config.num_attention_heads, config.num_key_value_heads
    count = 0
    for hf_name, w in model.state_dict().items():
        if hf_name == "lm_head.weight" and config.tie_word_embeddings:
            continue
        name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise GGUFError(f"{folder}: weight {hf_name} has no GGUF name in llama.cpp's {arch.gguf_name} layout")
        w = w.detach().float()
        if arch.permute_qk and hf_name.endswith(("q_proj.weight", "q_proj.bias")):
            w = permute(w, heads)
        elif arch.permute_qk and hf_name.endswith(("k_proj.weight", "k_proj.bias")):
            w = permute(w, kv_heads)
        writer.add_tensor(name, w.to(dtype if w.dim() > 1 else torch.float32).contiguous().numpy())
        count += 1
    return count


def export_name(src: Path) -> str:
    src = src.resolve()
    return src.parent.name if src.name == "final" else src.name


def export_gguf(source, out, dtype: str = "f16", force: bool = False) -> dict:
    """Write RUN_OR_MODEL ``source`` to the GGUF file ``out`` (``dtype`` f16 or f32); return what
    was written: path, source, architecture, dtype, tensor count, bytes, seconds."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    gguf = _gguf_package()
    if dtype not in DTYPES:
        raise GGUFError(f"--dtype {dtype!r}: expected one of {', '.join(DTYPES)}")
    src, out = Path(source).expanduser(), Path(out).expanduser()
    check_out(out, force)
    t0 = time.perf_counter()
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{out.name}-", dir=out.parent) as scratch:
        folder, origin = source_folder(src, Path(scratch))
        config = AutoConfig.from_pretrained(folder)
        arch = check_arch(config, folder)
        tokenizer = AutoTokenizer.from_pretrained(folder)
        pre = pre_tokenizer_name(tokenizer, folder)  # all checks before the weights load
        model = AutoModelForCausalLM.from_pretrained(folder, dtype="auto")
        tensor_dtype, file_type = DTYPES[dtype]
        tmp = Path(scratch) / out.name
        writer = gguf.GGUFWriter(str(tmp), arch.gguf_name)
        add_hparams(writer, config, file_type, export_name(src))
        add_tokenizer(writer, gguf, folder, tokenizer, config.vocab_size, pre)
        count = add_tensors(writer, gguf, model, config, arch, tensor_dtype, folder)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(tmp, out)
    return {
        "gguf": str(out), "source": f"{src} ({origin})", "architecture": arch.gguf_name, "dtype": dtype,
        "tensors": count, "bytes": out.stat().st_size, "seconds": round(time.perf_counter() - t0, 2),
    }
