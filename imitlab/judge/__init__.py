"""Preference and style evaluation: pairwise LLM judges, templates as data, and the paper's style metrics."""

from __future__ import annotations

from typing import Any

__all__ = ["JudgeConfig", "StyleConfig", "run_judge", "run_style"]


def __getattr__(name: str) -> Any:  # lazy: `imitlab --help` must not import numpy, openai, ...
    if name in ("JudgeConfig", "run_judge"):
        from imitlab.judge import pairwise

        return getattr(pairwise, name)
    if name in ("StyleConfig", "run_style"):
        from imitlab.judge import style

        return getattr(style, name)
    raise AttributeError(name)
