"""A job: one TOML file of frozen dataclasses, one per section (DESIGN.md §6).

Each field has a docstring (the string literal on the line after it); that docstring is the
``--help`` (``help_text`` reads them with ``ast``). ``load_job`` parses the file, applies
``section.key=value`` overrides, and validates everything before any model is loaded, so a
typo costs a second, not a model load. Errors name the file and line (or the override), the
field, the bad value, the valid choices and the fix; all problems are reported at once.

``sections`` holds the dataclasses, ``files`` reads any TOML file rlft takes, ``loading`` reads and
checks a job, ``writing`` writes it back as TOML and builds the help.
"""

from rlft.config.loading import grader_from_dict, load_job
from rlft.config.sections import (
    SECTIONS,
    AlgorithmConfig,
    ConfigError,
    DataConfig,
    DistributedConfig,
    EvalConfig,
    GameConfig,
    GraderConfig,
    Job,
    JudgeConfig,
    LoraConfig,
    ModelConfig,
    OptimConfig,
    RunConfig,
    SamplingConfig,
    WorldConfig,
)
from rlft.config.writing import help_text, job_to_toml

__all__ = [
    "SECTIONS", "AlgorithmConfig", "ConfigError", "DataConfig", "DistributedConfig", "EvalConfig", "GameConfig",
    "GraderConfig", "Job", "JudgeConfig", "LoraConfig", "ModelConfig", "OptimConfig", "RunConfig", "SamplingConfig",
    "WorldConfig", "grader_from_dict", "help_text", "job_to_toml", "load_job",
]
