"""``imitlab demo``: the paper's study in miniature, offline, on a laptop CPU.

Teacher ``qwen2.5-coder-0.5b-instruct`` (llama.cpp), student ``smollm2-135m-instruct``; broad imitation
(teacher answers to Alpaca-GPT4 instructions) and local imitation (NQ-style QA pairs the teacher writes from
10 NQ seeds) at two token budgets; NQ and HumanEval subsets; a judge and style metrics on Koala prompts;
then the report. The grid is ``configs/demo.yaml``; every stage is cached, so a second run reuses it all.
"""

from __future__ import annotations

import time
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console

from imitlab.stage_config import StageConfig
from imitlab.study.report import write_report
from imitlab.study.sweep import run_sweep
from imitlab.study.sweep_config import load_sweep_config


class DemoConfig(StageConfig):
    out: Path = Path("runs/demo")
    cache: Path | None = None
    data_dir: Path | None = None


def demo_config_text() -> str:
    return resources.files("imitlab.study").joinpath("configs/demo.yaml").read_text()


def run_demo(config: DemoConfig, console: Console | None = None) -> dict[str, Any]:
    console = console or Console()
    raw = yaml.safe_load(demo_config_text())
    if config.cache:
        raw["cache"] = str(config.cache)
    if config.data_dir:
        raw["data_dir"] = str(config.data_dir)
    sweep_config = load_sweep_config(raw)
    started = time.perf_counter()
    console.rule("imitlab demo: imitate qwen2.5-coder-0.5b-instruct with smollm2-135m-instruct")
    results = run_sweep(sweep_config, config.out, console)
    html, _ = write_report(config.out)
    console.print(f"[green]report[/]: {html}")
    console.print(
        f"demo finished in {time.perf_counter() - started:.0f} s "
        f"({len(results['run']['stages_run'])} stages run, {len(results['run']['stages_reused'])} reused)"
    )
    return results
