"""Options that more than one command takes, each declared once: one flag, one help text, everywhere.

A command names the alias (``cache: CacheOpt = None``) and keeps its own default; an option only one command
takes is declared in that command's signature. A flag option keeps typer's ``--x/--no-x`` pair: its alias names
no flag, so the parameter's name (``private``) gives it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from imitlab.devices import DEVICE_HELP, DTYPE_HELP

T = TypeVar("T")

# -- everywhere: where things live, how models are reached ----------------------------------------------------
CacheOpt = Annotated[
    Path | None, typer.Option("--cache", help="Cache root (default $IMITLAB_CACHE or ~/.cache/imitlab).")
]
DataDirOpt = Annotated[Path | None, typer.Option("--data-dir", help="Data root (default $IMITLAB_DATA).")]
BaseUrlOpt = Annotated[str | None, typer.Option("--base-url", help="Base URL for openai: specs.")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Random seed.")]

# -- local weights (eval, train) --------------------------------------------------------------------------------
DeviceOpt = Annotated[
    str,
    typer.Option(
        "--device",
        help=f"Where local weights run: {DEVICE_HELP}. Training takes cuda, not cuda:N (more GPUs: --processes).",
    ),
]
DtypeOpt = Annotated[
    str,
    typer.Option(
        "--dtype",
        help=f"{DTYPE_HELP}: the weights' dtype for inference, the mixed-precision compute dtype for training.",
    ),
]

# -- requests to a model ------------------------------------------------------------------------------------------
ConcurrencyOpt = Annotated[int, typer.Option("--concurrency", help="Requests in flight (= llama.cpp parallel slots).")]
ParallelOpt = Annotated[int, typer.Option("--parallel", help="Concurrent requests (llama.cpp slots).")]
TemperatureOpt = Annotated[float, typer.Option("--temperature", help="Sampling temperature.")]
CtxPerSlotOpt = Annotated[
    int, typer.Option("--ctx-per-slot", help="llama.cpp context length of each slot (local models).")
]
MaxRequestsOpt = Annotated[int | None, typer.Option("--max-requests", help="Stop after this many requests.")]
TeacherOpt = Annotated[
    str, typer.Option("--teacher", help="Teacher model spec: packaged name, gguf:PATH, openai:MODEL.")
]
TeacherOrNoneOpt = Annotated[
    str | None, typer.Option("--teacher", help="Teacher model spec: packaged name, gguf:PATH, openai:MODEL.")
]

# -- prompt sets and imitation sets (prompts, data) ---------------------------------------------------------------
PromptSetOutOpt = Annotated[Path, typer.Option("--out", help="Prompt-set JSONL to write.")]
InOpt = Annotated[Path, typer.Option("--in", help="Input data set (directory or conversations .jsonl).")]
OutOpt = Annotated[Path, typer.Option("--out", help="Output data-set directory.")]

# -- judging (judge, judge calibrate, judge probe, style) --------------------------------------------------------
_judge = typer.Option("--judge", help="Judge model spec (packaged name, gguf:PATH, openai:M).")
JudgeOpt = Annotated[str, _judge]
JudgeOrNoneOpt = Annotated[str | None, _judge]  # `imitlab judge` checks it only when no sub-command is named
_prompts = typer.Option("--prompts", help="koala | vicuna80 | mt-bench | alpaca-eval | a JSON/JSONL file.")
PromptsOpt = Annotated[str, _prompts]
PromptsOrNoneOpt = Annotated[str | None, _prompts]
TemplateOpt = Annotated[
    str,
    typer.Option(
        "--template",
        help="Judge template: default | label (verdict first) | mt-bench | alpaca-eval | vicuna | PATH.json.",
    ),
]
JudgeTokensOpt = Annotated[int, typer.Option("--judge-max-tokens", help="Judge reply token cap.")]
AnswerTokensOpt = Annotated[int, typer.Option("--max-tokens", help="Answer token cap when a side is a model spec.")]
LimitOpt = Annotated[int | None, typer.Option("--limit", help="Only the first N prompts.")]
MaxSecondsOpt = Annotated[
    float | None, typer.Option("--max-seconds", help="Stop starting new pairs after this long; score the pairs done.")
]
LogprobsOpt = Annotated[
    bool, typer.Option("--logprobs", help="Also score the probability verdict (needs an endpoint's logprobs).")
]

# -- ratings ---------------------------------------------------------------------------------------------------------
DbOpt = Annotated[Path, typer.Option("--db", help="The rating database (SQLite).")]

# -- the hub (data export, train) ------------------------------------------------------------------------------------
PrivateOpt = Annotated[bool, typer.Option(help="With --push-to-hub: create the repo private.")]

# -- a stage's settings from a file ------------------------------------------------------------------------------
ConfigFileOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help="Settings from a YAML or JSON file: this stage's config keys (docs/configs.md); options given on the "
        "command line win over the file.",
    ),
]


def stage_config(
    ctx: typer.Context,
    cls: type[T],
    config_file: Path | None,
    values: dict[str, Any],
    *,
    options: dict[str, str] | None = None,
) -> T:
    """The stage's config from ``--config FILE`` and the command line: a key in the file is used unless its option
    was given on the command line; an option left at its default fills the keys the file does not set.

    ``values`` maps config keys to what the command line makes of them; ``options`` names the command's parameter
    for a key when it has another name (``learning_rate`` <- ``lr``). A required key given by neither is named
    with its option.
    """
    from imitlab.errors import ImitlabError
    from imitlab.stage_config import key_lines, read_config_file

    options = options or {}
    from_file = read_config_file(config_file) if config_file else {}
    merged = dict(from_file)
    for key, value in values.items():
        source = ctx.get_parameter_source(options.get(key, key))  # by name: typer may vendor its own click
        at_default = source is None or source.name in ("DEFAULT", "DEFAULT_MAP")
        if key not in from_file or not at_default:
            merged[key] = value
    for key, field in cls.model_fields.items():  # type: ignore[attr-defined]
        if field.is_required() and merged.get(key) is None:
            flag = "--" + options.get(key, key).replace("_", "-")
            also = f" or `{key}:` in {config_file}" if config_file else " (or --config FILE with it)"
            raise ImitlabError(f"missing {flag}{also}")
    where = f"{config_file}" if config_file else "command line"
    lines = key_lines(config_file) if config_file else None
    return cls.build(merged, where, lines=lines)  # type: ignore[attr-defined, no-any-return]
