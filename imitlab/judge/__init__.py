"""Preference and style evaluation: pairwise LLM judges, templates as data, and the paper's style metrics."""

from imitlab.judge.pairwise import JudgeConfig, run_judge

__all__ = ["JudgeConfig", "run_judge"]
