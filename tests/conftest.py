"""Shared fixtures: a tiny model built locally and loaded back with from_pretrained."""

import pytest
import torch

from rlft.models import build_tiny_model, load_model, load_tokenizer
from rlft.tasks import arithmetic


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    """A randomly initialised tiny Llama + locally trained tokenizer, saved with save_pretrained."""
    return build_tiny_model(
        tmp_path_factory.mktemp("tiny"),
        arithmetic.corpus(200),
        seed=0,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
    )


@pytest.fixture()
def tiny(tiny_dir):
    tokenizer = load_tokenizer(tiny_dir)
    model = load_model(tiny_dir, device=torch.device("cpu"), dtype=torch.float32)
    return model, tokenizer
