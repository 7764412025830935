"""Options that more than one command takes, each declared once: one flag, one help text, everywhere.

A command names the alias (``cache: CacheOpt = None``) and keeps its own default; an option only one command
takes is declared in that command's signature. A flag option keeps typer's ``--x/--no-x`` pair: its alias names
no flag, so the parameter's name (``private``) gives it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from imitlab.devices import DEVICE_HELP, DTYPE_HELP

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
