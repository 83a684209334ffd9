"""Every TOML file rlft takes is read by one reader (rlft.config.files): a byte-order mark is
accepted, invalid UTF-8 and syntax errors are one line naming the file and line.

Run: OMP_NUM_THREADS=1 python -m pytest -q tests/test_toml_files.py
"""

import pytest

from rlft.compare import load_experiment
from rlft.config import ConfigError
from rlft.rewards.reward_model_job import load_config

EXPERIMENT = '[experiment]\nbudget = 8\n[tasks.add]\nbuiltin = "addition"\n[methods.sft]\noverrides = ["algorithm.name=sft"]\n'
REWARD_MODEL = '[reward_model]\npairs = "pairs.jsonl"\nepochs = 2\n'
BAD_BYTE = "caf\xe9".encode("latin-1")  # é in Latin-1: not UTF-8


def test_experiment_file_with_a_bom_is_read(tmp_path):
    path = tmp_path / "exp.toml"
    path.write_bytes(b"\xef\xbb\xbf" + EXPERIMENT.encode())
    assert load_experiment(path)["experiment"]["budget"] == 8


def test_experiment_file_with_invalid_utf8_names_the_line(tmp_path):
    path = tmp_path / "exp.toml"
    path.write_bytes(EXPERIMENT.encode() + b'# ' + BAD_BYTE + b"\n")
    with pytest.raises(ConfigError) as e:
        load_experiment(path)
    assert str(e.value) == f"{path}:7: not valid UTF-8 (byte 0xe9 at column 6); fix: re-save the file as UTF-8"


def test_experiment_file_syntax_error_and_missing_file_are_one_line(tmp_path):
    path = tmp_path / "exp.toml"
    path.write_text("[experiment]\nbudget = = 8\n")
    with pytest.raises(ConfigError, match=rf"^{path}:2: TOML syntax error") as e:
        load_experiment(path)
    assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="cannot read the experiment file"):
        load_experiment(tmp_path / "missing.toml")


def test_reward_model_job_with_a_bom_is_read(tmp_path):
    path = tmp_path / "rm.toml"
    path.write_bytes(b"\xef\xbb\xbf" + REWARD_MODEL.encode())
    cfg, base = load_config(str(path))
    assert cfg.pairs == "pairs.jsonl" and cfg.epochs == 2 and base == str(tmp_path)


def test_reward_model_job_with_invalid_utf8_names_the_line(tmp_path):
    path = tmp_path / "rm.toml"
    path.write_bytes(b'[reward_model]\nout = "' + BAD_BYTE + b'"\n')
    with pytest.raises(ConfigError) as e:
        load_config(str(path))
    assert str(e.value) == f"{path}:2: not valid UTF-8 (byte 0xe9 at column 11); fix: re-save the file as UTF-8"
