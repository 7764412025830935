"""The sweep's configuration: a YAML file, checked completely before any work starts.

Every section is a dataclass; an unknown key anywhere is an error naming the key and where it was, and
every model name is parsed as a model spec up front (an unknown one lists the known names).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

import yaml

from imitlab.errors import ImitlabError
from imitlab.fileio import read_text

T = TypeVar("T")


@dataclass
class BroadData:
    """General-purpose imitation prompts (the paper's ShareGPT-Mix role), answered by the teacher."""

    prompts: list[str] = field(default_factory=list)  # files in any importable format; ${IMITLAB_DATA} expands
    limit: int = 60  # prompts taken (fixed order after import)
    max_tokens: int = 160  # teacher answer cap


@dataclass
class LocalData:
    """Task-specific imitation (the paper's NQ-synthetic): QA pairs the teacher writes from seed examples."""

    seeds: str = "${IMITLAB_DATA}/nq_open/NQ-open.dev.jsonl"
    n_pairs: int = 80
    k: int = 5
    n_seed: int = 10


@dataclass
class TrainSection:
    block_size: int = 256
    batch_size: int = 4
    learning_rate: float = 1e-4
    warmup_steps: float = 0.0
    scheduler: str = "constant"
    epochs: float = 1.0
    lora: bool = False
    processes: int = 1  # data-parallel processes per training run (accelerate; one per GPU on a GPU node)


@dataclass
class EvalSection:
    benches: list[str] = field(default_factory=lambda: ["nq_open", "humaneval"])
    # Items per benchmark (a fixed-seed sample; None = all): one number for every benchmark, or a mapping
    # such as {nq_open: 100, humaneval: 20}, since a code problem costs far more than a short answer.
    limit: int | dict[str, int | None] | None = 40
    batch_size: int = 8
    # How the teacher is scored. "completions": the raw few-shot prompt, as the students (and lm-eval) see
    # it; "chat": through the chat API, the only way into a proprietary model. "auto" picks completions for
    # a local teacher (packaged, gguf:, hf:) and chat for an openai: endpoint.
    teacher_mode: str = "auto"


@dataclass
class JudgeSection:
    judge: str | None = None  # default: the teacher
    prompts: str = "koala"
    limit: int = 8
    max_tokens: int = 192  # answer cap for the compared models
    judge_max_tokens: int = 256  # verdict cap (the judge explains, then gives [[A]], [[B]] or [[C]])
    # text: the judge's parsed reply; logprob: P(label) at the verdict token, both orders averaged, which removes a
    # constant position preference (needs an API that returns logprobs: llama.cpp's server, vLLM, OpenAI)
    verdict: str = "text"
    template: str = "default"  # default | label (verdict first; pair with verdict: logprob) | mt-bench | ... | PATH
    style: bool = True  # style metrics vs the teacher on the same prompts


@dataclass
class StageResources:
    """What one stage asks of a cluster worker (Ray's num_cpus / num_gpus; fractions share a device)."""

    cpus: float = 1.0
    gpus: float = 0.0


@dataclass
class ResourcesSection:
    """Per-stage requirements under ``imitlab sweep --executor ray`` (the local executor runs stages in its own
    process and ignores them). On GPUs a training cell asks for ``train.processes`` GPUs, one per process."""

    train: StageResources = field(default_factory=StageResources)
    eval: StageResources = field(default_factory=StageResources)
    answers: StageResources = field(default_factory=StageResources)


@dataclass
class SweepConfig:
    name: str
    teacher: str
    bases: list[str]
    budgets: list[int]
    data_kinds: list[str] = field(default_factory=lambda: ["broad", "local"])
    broad: BroadData = field(default_factory=BroadData)
    local: LocalData = field(default_factory=LocalData)
    train: TrainSection = field(default_factory=TrainSection)
    eval: EvalSection = field(default_factory=EvalSection)
    judge: JudgeSection = field(default_factory=JudgeSection)
    resources: ResourcesSection = field(default_factory=ResourcesSection)
    teacher_concurrency: int = 4
    seed: int = 0
    data_dir: str | None = None
    cache: str | None = None


_SECTIONS = {"broad": BroadData, "local": LocalData, "train": TrainSection, "eval": EvalSection, "judge": JudgeSection}


def _build(cls: type[T], raw: Any, where: str) -> T:
    if not isinstance(raw, dict):
        raise ImitlabError(f"{where}: expected a mapping, got {type(raw).__name__}")
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    for key in raw:
        if key not in known:
            raise ImitlabError(f"{where}: unknown key {key!r}; known keys: {', '.join(sorted(known))}")
    return cls(**raw)


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
        try:
            raw = yaml.safe_load(read_text(source))  # read_text: encodings and NUL bytes, naming line and column
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            at = f":{mark.line + 1}" if mark else ""
            column = f" at column {mark.column + 1}" if mark else ""
            raise ImitlabError(f"{source}{at}: not valid YAML ({exc.problem or exc.context}{column})") from None
        except yaml.YAMLError as exc:
            raise ImitlabError(f"{source}: not valid YAML ({str(exc).splitlines()[0]})") from None
        except RecursionError:
            raise ImitlabError(f"{source}: YAML nested too deeply") from None
    if not isinstance(raw, dict):
        raise ImitlabError(f"{where}: expected a mapping at the top level")
    for name, cls in _SECTIONS.items():
        if name in raw:
            raw[name] = _build(cls, raw[name] or {}, f"{where}: {name}")
    if "resources" in raw:
        raw["resources"] = _build_resources(raw["resources"] or {}, f"{where}: resources")
    missing = [k for k in ("name", "teacher", "bases", "budgets") if k not in raw]
    if missing:
        raise ImitlabError(f"{where}: missing required key(s) {', '.join(missing)}")
    config = _build(SweepConfig, raw, where)
    check(config, where)
    return config


def _build_resources(raw: Any, where: str) -> ResourcesSection:
    section = _build(ResourcesSection, raw, where)
    for name in ("train", "eval", "answers"):
        given = getattr(section, name)
        stage = given if isinstance(given, StageResources) else _build(StageResources, given or {}, f"{where}.{name}")
        for item in ("cpus", "gpus"):
            value = getattr(stage, item)
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ImitlabError(f"{where}.{name}.{item}: give a number of at least 0, got {value!r}")
        setattr(section, name, stage)
    return section


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
    if config.judge.verdict not in ("text", "logprob"):
        raise ImitlabError(f"{where}: judge.verdict: give text or logprob, got {config.judge.verdict!r}")
    if not config.bases:
        raise ImitlabError(f"{where}: bases: name at least one base model")
    if not config.budgets or any(not isinstance(b, int) or b <= 0 for b in config.budgets):
        raise ImitlabError(f"{where}: budgets: give positive token counts, e.g. [4000, 8000]")
    for kind in config.data_kinds:
        if kind not in ("broad", "local"):
            raise ImitlabError(f"{where}: data_kinds: unknown kind {kind!r}; known: broad, local")
    if "broad" in config.data_kinds and not config.broad.prompts:
        raise ImitlabError(f"{where}: broad.prompts: name at least one prompt file")
    if config.eval.teacher_mode not in ("auto", "chat", "completions"):
        raise ImitlabError(
            f"{where}: eval.teacher_mode: {config.eval.teacher_mode!r} is not one of auto, chat, completions"
        )
    for bench in config.eval.benches:
        try:
            get_task(bench)
        except ImitlabError as exc:
            raise ImitlabError(f"{where}: eval.benches: {exc}") from None
    train_gpus, processes = config.resources.train.gpus, config.train.processes
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
