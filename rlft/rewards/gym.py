"""The ``reasoning_gym`` grader: a reasoning-gym dataset's own scorer (``score_answer``).

The answer scored is the text of the last ``<answer>...</answer>`` in the output (the tag
reasoning-gym's system prompts ask for), or, without the tag, the whole output stripped.
``grader.input`` (a template) changes the text it starts from.

Which dataset scores an item comes from the item: ``_gym`` (written by the reader in
rlft.data.gym, with the dataset's options, which some scorers use) or, for items exported to a
file, ``metadata.source_dataset``. A job whose data.train is a reasoning_gym source gets this
grader when [grader] sets no type.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rlft.config import ConfigError, GraderConfig
from rlft.rewards.checks import templates
from rlft.rewards.templates import render
from rlft.types import Sample


def _scorer(item: dict):
    """The dataset that scores ``item``."""
    from rlft.data import gym

    if "_gym" in item:
        spec = gym.parse(item["_gym"])
        return gym.dataset(spec.name, spec.config)
    name = (item.get("metadata") or {}).get("source_dataset") if isinstance(item.get("metadata"), dict) else None
    if not name:
        where = f" ({item['_source']}:{item['_line']})" if "_source" in item else ""
        raise KeyError(f"item{where} is not from reasoning-gym: it has no _gym and no metadata.source_dataset; "
                       f"fix: use data.train = \"reasoning_gym:NAME\", or another grader type")
    return gym.dataset(name, ())


def extract(text: str) -> str:
    """The last ``<answer>...</answer>``'s content, else the whole text, stripped."""
    from reasoning_gym.utils import extract_answer

    found = extract_answer(text)
    return found if found is not None else text.strip()


@dataclass(frozen=True)
class ReasoningGymScore:
    """``dataset.score_answer(answer, entry)`` in [0, 1] (some datasets give partial credit)."""

    input: str = "{{sample.output_text}}"  # a template

    def __call__(self, sample: Sample, item: dict) -> float:
        text = render(self.input, sample, item)
        entry = {"question": item.get("question"), "answer": item["answer"], "metadata": item.get("metadata", {})}
        return float(_scorer(item).score_answer(extract(text), entry))


def reasoning_gym(cfg: GraderConfig, base_dir: Path, where: str) -> ReasoningGymScore:
    from rlft.data import gym

    try:
        gym.import_gym()
    except gym.GymError as e:
        raise ConfigError(f"{where}.type = \"reasoning_gym\": {e}") from None
    return ReasoningGymScore(templates(cfg, where, reference=False)[0])
