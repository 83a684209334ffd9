"""``text_similarity`` metrics: ``METRICS[name](text, reference) -> float`` in [0, 1].

Each uses the library that defines it, as OpenAI's text_similarity grader describes them:

| metric | library | value |
| --- | --- | --- |
| fuzzy_match | rapidfuzz | ``fuzz.WRatio(text, reference) / 100`` |
| bleu | sacrebleu | ``sentence_bleu(text, [reference]).score / 100`` (smoothed "exp", 13a tokens) |
| gleu | nltk | ``sentence_gleu([reference.split()], text.split())`` (Google BLEU) |
| meteor | nltk | ``meteor_score([reference.split()], text.split())``; needs nltk's wordnet data |
| rouge_1 .. rouge_5, rouge_l | rouge-score | F-measure of ``RougeScorer(["rougeN"]).score(reference, text)`` |
| cosine | sentence-transformers | cosine of the two embeddings from a *local* model folder |

``check_metric(name, embedding_model)`` runs at job load and says what is missing (wordnet, a
local embedding model) instead of failing mid-run. Libraries are imported on first use.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path
from typing import Callable

from rlft.config import ConfigError


def fuzzy_match(text: str, reference: str) -> float:
    from rapidfuzz import fuzz

    return fuzz.WRatio(text, reference) / 100.0


def bleu(text: str, reference: str) -> float:
    import sacrebleu

    return min(1.0, sacrebleu.sentence_bleu(text, [reference]).score / 100.0)  # 100.00000000000004 happens


def gleu(text: str, reference: str) -> float:
    from nltk.translate.gleu_score import sentence_gleu

    return float(sentence_gleu([reference.split()], text.split()))


def meteor(text: str, reference: str) -> float:
    from nltk.translate.meteor_score import meteor_score

    return float(meteor_score([reference.split()], text.split()))


@functools.lru_cache(maxsize=None)
def _rouge_scorer(key: str):
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer([key])


def _rouge(key: str) -> Callable[[str, str], float]:
    def rouge(text: str, reference: str) -> float:
        return float(_rouge_scorer(key).score(reference, text)[key].fmeasure)  # score(target, prediction)

    rouge.__name__ = key
    return rouge


@functools.lru_cache(maxsize=2)
def _embedder(path: str):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(path, local_files_only=True)


def cosine(text: str, reference: str, model: str) -> float:
    a, b = _embedder(model).encode([text, reference], normalize_embeddings=True)
    return float(max(0.0, min(1.0, float(a @ b))))


METRICS: dict[str, Callable[..., float]] = {
    "fuzzy_match": fuzzy_match,
    "bleu": bleu,
    "gleu": gleu,
    "meteor": meteor,
    **{f"rouge_{n}": _rouge(f"rouge{n}") for n in range(1, 6)},
    "rouge_l": _rouge("rougeL"),
    "cosine": cosine,  # also takes the model folder
}


def check_metric(name: str, embedding_model: str, base_dir: Path, where: str) -> str:
    """ConfigError when ``name`` cannot run here; returns the embedding model folder for cosine ("" else)."""
    if name not in METRICS:
        raise ConfigError(f"{where}.evaluation_metric = {name!r}: unknown metric; valid: {', '.join(METRICS)}")
    if name == "meteor":
        import nltk

        try:
            nltk.data.find("corpora/wordnet")
        except LookupError:
            raise ConfigError(
                f"{where}.evaluation_metric = 'meteor' needs nltk's wordnet data, which is not installed; fix: "
                f"python -m nltk.downloader wordnet (once, with network), or use bleu / rouge_l"
            ) from None
    if name != "cosine":
        return ""
    if importlib.util.find_spec("sentence_transformers") is None:
        raise ConfigError(
            f"{where}.evaluation_metric = 'cosine' needs a local embedding model and the sentence-transformers "
            f"package, which is not installed; fix: pip install sentence-transformers and set "
            f"{where}.embedding_model = \"path/to/model\", or use fuzzy_match / bleu / rouge_l"
        )
    path = Path(embedding_model)
    path = path if path.is_absolute() else base_dir / path
    if not embedding_model or not path.is_dir():
        raise ConfigError(
            f"{where}.embedding_model = {embedding_model!r}: cosine needs a local sentence-transformers model "
            f"folder{f' (not found: {path})' if embedding_model else ''}; nothing is downloaded during a run"
        )
    return str(path)
