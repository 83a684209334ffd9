"""Model and tokenizer loading: the tiny model round trip, prompt encoding with and without a
chat template, dtype choice.

Run: python -m pytest -q tests/test_models.py
"""

import pytest
import torch

from rlft.models import check_model_dir, encode_completion, encode_prompt, load_tokenizer, pick_dtype


def test_tiny_model_reloads_with_from_pretrained(tiny_dir, tiny):
    model, tokenizer = tiny
    assert model.config.model_type == "llama" and tokenizer.chat_template
    # digits are one token each: the property the arithmetic task relies on
    assert tokenizer.tokenize("1234") == ["1", "2", "3", "4"]
    assert tokenizer.decode(tokenizer.encode("482+359= answer 841")) == "482+359= answer 841"


def test_prompts_use_the_chat_template_when_there_is_one(tiny_dir):
    tokenizer = load_tokenizer(tiny_dir)
    ids = encode_prompt(tokenizer, "1+2=")
    assert tokenizer.decode(ids) == "<|im_start|>user\n1+2=<|im_end|>\n<|im_start|>assistant\n"
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "1+2="}]
    assert tokenizer.decode(encode_prompt(tokenizer, messages)).startswith("<|im_start|>system\nbe brief")
    # a completion is its text then EOS, as the sampler would produce it
    assert encode_completion(tokenizer, "3")[-1] == tokenizer.eos_token_id


def test_plain_text_prompts_without_a_chat_template(tiny_dir):
    tokenizer = load_tokenizer(tiny_dir)
    tokenizer.chat_template = None
    assert encode_prompt(tokenizer, "1+2=") == tokenizer.encode("1+2=")
    text = tokenizer.decode(encode_prompt(tokenizer, [{"role": "user", "content": "1+2="}]))
    assert text == "user: 1+2=\nassistant:"


def test_dtype_and_missing_files(tmp_path):
    assert pick_dtype("auto", torch.device("cpu")) == torch.float32
    assert pick_dtype("auto", torch.device("cuda")) == torch.bfloat16
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="model.safetensors.*tokenizer.json"):
        check_model_dir(tmp_path)
