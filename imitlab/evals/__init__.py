"""Targeted capability benchmarks (NQ, TriviaQA, MMLU, ARC, HumanEval): declarations, backends, sandbox.

Public entry point: :func:`run_eval` with an :class:`EvalConfig`; benchmarks are listed by
:func:`known_tasks` and declared in ``imitlab/evals/tasks/``.
"""

from imitlab.evals.runner import EvalConfig, run_eval
from imitlab.evals.task import Task, get_task, known_tasks, register

__all__ = ["EvalConfig", "Task", "get_task", "known_tasks", "register", "run_eval"]
