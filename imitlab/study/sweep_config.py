"""The sweep's configuration: a YAML file, checked completely before any work starts.

Every section is a pydantic model (:class:`imitlab.stage_config.StageConfig`), so an unknown key anywhere is an
error naming the key, where it was and the known keys, and every model name is parsed as a model spec up front (an
unknown one lists the known names). The ``train`` section is not re-declared here: it is a partial
:class:`~imitlab.train.train_config.TrainConfig` (any of its keys but those the sweep sets per cell), checked by
``TrainConfig`` itself, over the sweep's CPU-sized defaults.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import pydantic

from imitlab.errors import ImitlabError
from imitlab.stage_config import StageConfig, key_lines, read_config_file


class BroadData(StageConfig):
    """General-purpose imitation prompts (the paper's ShareGPT-Mix role), answered by the teacher."""

    prompts: list[str] = pydantic.Field(default_factory=list)  # files in any importable format; ${IMITLAB_DATA} expands
    limit: int = 60  # prompts taken (fixed order after import)
    max_tokens: int = 160  # teacher answer cap


class LocalData(StageConfig):
    """Task-specific imitation (the paper's NQ-synthetic): QA pairs the teacher writes from seed examples."""

    seeds: str = "${IMITLAB_DATA}/nq_open/NQ-open.dev.jsonl"
    n_pairs: int = 80
    k: int = 5
    n_seed: int = 10


# The sweep's training defaults, sized for a CPU; the `train:` section overrides them with any TrainConfig key.
TRAIN_DEFAULTS: dict[str, Any] = {
    "block_size": 256,
    "batch_size": 4,
    "learning_rate": 1e-4,
    "warmup_steps": 0.0,
    "scheduler": "constant",
    "epochs": 1.0,
    "lora": False,
    "processes": 1,  # data-parallel processes per training run (accelerate; one per GPU on a GPU node)
}
# Set by the sweep for every cell (the cell's base, data, budget, directory and tracker name, the sweep's seed and
# cache), so a `train:` section may not.
TRAIN_SET_PER_CELL = ("base", "data", "out", "tokens", "seed", "cache", "run_name", "report_to")
# How a train stage saves unless the section says otherwise: resumable, so a killed stage picks up its checkpoint.
TRAIN_SAVE_DEFAULTS: dict[str, Any] = {"save": "steps", "save_steps": 25}


class EvalSection(StageConfig):
    benches: list[str] = pydantic.Field(default_factory=lambda: ["nq_open", "humaneval"])
    # Items per benchmark (a fixed-seed sample; None = all): one number for every benchmark, or a mapping
    # such as {nq_open: 100, humaneval: 20}, since a code problem costs far more than a short answer.
    limit: int | dict[str, int | None] | None = 40
    batch_size: int = 8
    # How the teacher is scored. "completions": the raw few-shot prompt, as the students (and lm-eval) see
    # it; "chat": through the chat API, the only way into a proprietary model. "auto" picks completions for
    # a local teacher (packaged, gguf:, hf:) and chat for an openai: endpoint.
    teacher_mode: Literal["auto", "chat", "completions"] = "auto"


class JudgeSection(StageConfig):
    judge: str | None = None  # default: the teacher
    prompts: str = "koala"
    limit: int = 8
    max_tokens: int = 192  # answer cap for the compared models
    judge_max_tokens: int = 256  # verdict cap (the judge explains, then gives [[A]], [[B]] or [[C]])
    # text: the judge's parsed reply; logprob: P(label) at the verdict token, both orders averaged, which removes a
    # constant position preference (needs an API that returns logprobs: llama.cpp's server, vLLM, OpenAI)
    verdict: Literal["text", "logprob"] = "text"
    template: str = "default"  # default | label (verdict first; pair with verdict: logprob) | mt-bench | ... | PATH
    style: bool = True  # style metrics vs the teacher on the same prompts


class StageResources(StageConfig):
    """What one stage asks of a cluster worker (Ray's num_cpus / num_gpus; fractions share a device)."""

    cpus: float = pydantic.Field(1.0, ge=0)
    gpus: float = pydantic.Field(0.0, ge=0)


class ResourcesSection(StageConfig):
    """Per-stage requirements under ``imitlab sweep --executor ray`` (the local executor runs stages in its own
    process and ignores them). On GPUs a training cell asks for ``train.processes`` GPUs, one per process."""

    train: StageResources = StageResources()
    eval: StageResources = StageResources()
    answers: StageResources = StageResources()


class SweepConfig(StageConfig):
    name: str
    teacher: str
    bases: list[str]
    budgets: list[pydantic.PositiveInt]
    data_kinds: list[Literal["broad", "local"]] = pydantic.Field(default_factory=lambda: ["broad", "local"])
    broad: BroadData = BroadData()
    local: LocalData = LocalData()
    # TrainConfig keys over TRAIN_DEFAULTS (see train_settings); checked by TrainConfig at load
    train: dict[str, Any] = pydantic.Field(default_factory=dict)
    eval: EvalSection = EvalSection()
    judge: JudgeSection = JudgeSection()
    resources: ResourcesSection = ResourcesSection()
    teacher_concurrency: int = 4
    seed: int = 0
    data_dir: str | None = None
    cache: str | None = None

    @pydantic.field_validator("broad", "local", "train", "eval", "judge", "resources", mode="before")
    @classmethod
    def _empty_section(cls, value: Any) -> Any:
        return {} if value is None else value  # `judge:` with nothing under it means the defaults

    def train_settings(self) -> dict[str, Any]:
        """The training settings every cell shares (and its stage key): the defaults with the section over them.
        Saving is not part of it: how a run saves does not change the model it trains."""
        return {**TRAIN_DEFAULTS, **self.train}

    def train_config(self, *, base: str, data: str, out: str, tokens: int, run_name: str, report_to: str) -> Any:
        from imitlab.train.train_config import TrainConfig

        return TrainConfig(**{**TRAIN_SAVE_DEFAULTS, **self.train_settings()}, base=base, data=data, out=out,
                           tokens=tokens, seed=self.seed, cache=self.cache, run_name=run_name,
                           report_to=report_to)  # fmt: skip


def expand(path: str, data_dir: str | None) -> str:
    """Expand ${IMITLAB_DATA} (from the config's data_dir or the environment) and ~ in a path."""
    if "${IMITLAB_DATA}" in path:
        from imitlab.config import data_dir as find_data_dir

        path = path.replace("${IMITLAB_DATA}", str(find_data_dir(data_dir)))
    return os.path.expanduser(path)


def load_sweep_config(source: str | Path | dict[str, Any]) -> SweepConfig:
    """Parse and check a sweep config (a YAML path or an already-loaded mapping)."""
    where = str(source) if not isinstance(source, dict) else "sweep config"
    if isinstance(source, dict):
        raw = dict(source)
    else:
        if not Path(source).is_file():
            raise ImitlabError(f"sweep config not found: {source}")
        raw = read_config_file(source)  # encodings, NUL bytes and YAML errors, naming line and column
    lines = None if isinstance(source, dict) else key_lines(source)
    config = SweepConfig.build(raw, where, lines=lines)
    check(config, where)
    return config


def _check_train(config: SweepConfig, where: str) -> None:
    """The train section through TrainConfig itself: its keys, types and checks, with the sweep's per-cell values."""
    from imitlab.train.train_config import TrainConfig

    for key in config.train:
        if key in TRAIN_SET_PER_CELL:
            raise ImitlabError(f"{where}: train.{key}: set by the sweep for each cell, not in the train section")
    settings = {**TRAIN_SAVE_DEFAULTS, **config.train_settings()}
    TrainConfig.build(settings, f"{where}: train", base="-", data="-", out="-", tokens=1).validate()


def check(config: SweepConfig, where: str) -> None:
    from imitlab.evals import get_task
    from imitlab.models.spec import parse_spec

    for label, spec in [("teacher", config.teacher), *[("bases", b) for b in config.bases]]:
        try:
            parse_spec(spec)
        except ImitlabError as exc:
            raise ImitlabError(f"{where}: {label}: {exc}") from None
    if config.judge.judge:
        parse_spec(config.judge.judge)
    if not config.bases:
        raise ImitlabError(f"{where}: bases: name at least one base model")
    if not config.budgets:
        raise ImitlabError(f"{where}: budgets: give positive token counts, e.g. [4000, 8000]")
    if "broad" in config.data_kinds and not config.broad.prompts:
        raise ImitlabError(f"{where}: broad.prompts: name at least one prompt file")
    for bench in config.eval.benches:
        try:
            get_task(bench)
        except ImitlabError as exc:
            raise ImitlabError(f"{where}: eval.benches: {exc}") from None
    _check_train(config, where)
    train_gpus, processes = config.resources.train.gpus, config.train_settings()["processes"]
    if train_gpus and processes > 1 and train_gpus != processes:
        raise ImitlabError(
            f"{where}: resources.train.gpus: train.processes is {processes}, one process per GPU, so a training "
            f"cell needs {processes} GPUs, not {train_gpus:g}"
        )
    limits = config.eval.limit if isinstance(config.eval.limit, dict) else {"": config.eval.limit}
    benches = ", ".join(config.eval.benches)
    if isinstance(config.eval.limit, dict):
        for bench in limits:
            if bench not in config.eval.benches:
                raise ImitlabError(f"{where}: eval.limit: {bench!r} is not in eval.benches ({benches})")
        for bench in config.eval.benches:
            if bench not in limits:
                raise ImitlabError(f"{where}: eval.limit: no limit for {bench!r}; give one per benchmark (null = all)")
    for bench, n in limits.items():
        if n is not None and (not isinstance(n, int) or isinstance(n, bool) or n < 1):
            name = f"eval.limit.{bench}" if bench else "eval.limit"
            raise ImitlabError(f"{where}: {name}: give a positive item count or null")
