"""Procedural data from reasoning-gym: "reasoning_gym:NAME" sources with seeds (train and eval
disjoint), the dataset's own scorer as a grader, and the errors when names, options or the
package are wrong. Skipped when reasoning-gym is not installed (pip install 'rlft[gym]').

Run: OMP_NUM_THREADS=1 python -m pytest -q tests/test_reasoning_gym.py
"""

import sys

import pytest

pytest.importorskip("reasoning_gym")

from rlft.config import ConfigError, GraderConfig, load_job  # noqa: E402
from rlft.data import DataError, load_items  # noqa: E402
from rlft.data import gym  # noqa: E402
from rlft.rewards.graders import make_grader  # noqa: E402
from rlft.types import Sample  # noqa: E402

SRC = "reasoning_gym:leg_counting"


def questions(items):
    return [it["question"] for it in items]


def test_items_are_generated_with_seeds():
    a = load_items(f"{SRC}?size=6&seed=3", prompt_field="prompt")
    assert len(a) == 6 and questions(a) == questions(load_items(f"{SRC}?size=6&seed=3", prompt_field="prompt"))
    assert a[0]["prompt"] == a[0]["question"] and a[0]["answer"].isdigit()
    assert a[0]["_source"] == f"{SRC}?size=6&seed=3" and [it["_line"] for it in a] == list(range(6))
    other = load_items(f"{SRC}?size=6&seed=500", prompt_field="prompt")
    assert not set(questions(a)) & set(questions(other))
    # reasoning-gym makes item i from seed + i: seeds 3 and 4 share five items, which is why rlft's
    # eval default is far away and overlapping ranges are refused (below)
    assert questions(load_items(f"{SRC}?size=6&seed=4", prompt_field="prompt"))[:5] == questions(a)[1:]


def test_eval_defaults_are_disjoint_from_train():
    train = load_items(f"{SRC}?size=50", prompt_field="prompt")
    held_out = load_items(f"{SRC}?size=20", prompt_field="prompt", role="eval")
    assert gym.parse(SRC, "eval").seed == gym.DEFAULTS["eval"]["seed"] != gym.parse(SRC).seed
    assert len(held_out) == 20 and not set(questions(train)) & set(questions(held_out))


def test_options_and_system_prompt():
    items = load_items(f"{SRC}?size=3&min_animals=2&max_animals=2&system=default", prompt_field="prompt")
    assert [m["role"] for m in items[0]["prompt"]] == ["system", "user"]
    assert "<answer>" in items[0]["prompt"][0]["content"]
    assert all(it["metadata"]["num_animals"] == 2 for it in items)
    assert items[0]["_gym"] == "reasoning_gym:leg_counting?max_animals=2&min_animals=2"


def test_the_datasets_scorer_grades():
    [item] = load_items(f"{SRC}?size=1", prompt_field="prompt")
    grader = make_grader(GraderConfig(type="reasoning_gym"))
    answer = item["answer"]
    assert grader(Sample(answer), item) == 1.0
    assert grader(Sample(f"let me count... <answer>{answer}</answer>"), item) == 1.0
    assert grader(Sample("<answer>-1</answer>"), item) == 0.0
    # an item exported to a file keeps metadata.source_dataset, enough to find the scorer
    exported = {k: v for k, v in item.items() if k != "_gym"}
    assert grader(Sample(answer), exported) == 1.0
    with pytest.raises(KeyError, match="not from reasoning-gym"):
        grader(Sample(answer), {"answer": "1", "_source": "x.jsonl", "_line": 3})


def test_job_picks_the_grader_and_refuses_shared_items():
    job = load_job(None, [f"data.train={SRC}?size=100", f"data.eval={SRC}"])
    assert job.grader.type == "reasoning_gym"
    assert load_job(None, [f"data.train={SRC}", "grader.type=contains"]).grader.type == "contains"
    with pytest.raises(ConfigError, match=r"overlap: reasoning-gym makes item i from seed \+ i.*seed at least 103"):
        load_job(None, [f"data.train={SRC}?seed=3&size=100", f"data.eval={SRC}?seed=50"])
    # another dataset or other options: nothing shared
    load_job(None, [f"data.train={SRC}?seed=3&size=100", f"data.eval={SRC}?seed=50&min_animals=4"])


def test_bad_names_and_options():
    with pytest.raises(DataError, match="no such reasoning-gym dataset; did you mean 'leg_counting'"):
        load_items("reasoning_gym:leg_countin", prompt_field="prompt")
    with pytest.raises(DataError, match=r"unknown option\(s\) \['min_animal'\].*min_animals"):
        load_items(f"{SRC}?min_animal=3", prompt_field="prompt")
    with pytest.raises(DataError, match="size = 0 must be an integer >= 1"):
        load_items(f"{SRC}?size=0", prompt_field="prompt")
    with pytest.raises(DataError, match="not key=value"):
        load_items(f"{SRC}?size", prompt_field="prompt")
    with pytest.raises(DataError, match="refused its options"):
        load_items(f"{SRC}?min_animals=5&max_animals=2", prompt_field="prompt")


def test_missing_package_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "reasoning_gym", None)  # import reasoning_gym -> ImportError
    with pytest.raises(DataError, match=r"reasoning-gym is not installed.*pip install 'rlft\[gym\]'"):
        gym.import_gym()
    with pytest.raises(ConfigError, match=r"type = \"reasoning_gym\": reasoning-gym is not installed"):
        make_grader(GraderConfig(type="reasoning_gym"))
