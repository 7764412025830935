"""``imitlab judge probe``: does the judge reward the teacher's style over correct content? (The paper's mechanism.)

Imitation models copy the teacher's style (lists, bold headings, a closing summary, a confident tone) far more than
its knowledge, and raters then prefer them. This probe measures the judge's half of that directly, on pairs built
from real data where only one thing differs:

- ``style``: the same correct solution written in the teacher's style and in plain prose (GSM8K rationales:
  numbered steps, a bold final answer and an "In summary" paragraph vs the same sentences as one paragraph).
  A content-only judge prefers neither: 50%.
- ``substance``: the same plain style, with the correct final answer and with a subtly wrong one (the last step's
  result and the stated answer changed by a few units, nothing else). A judge that checks content prefers the
  correct one: 100%.
- ``crossed``: the teacher's style with the wrong answer against plain prose with the right one. The share of
  pairs where the judge prefers the styled wrong answer is **how often it prefers style over correctness**.
- ``teacher_style`` (opt-in): real GPT-4 answers from AlpacaEval that use lists, against the same answers with the
  formatting removed (list items become sentences of one paragraph; headers, bold and a closing summary paragraph
  go). Same reading as ``style``.

Each pair is judged in both orders (text verdicts and, with ``logprobs``, the probability verdict of
:mod:`imitlab.judge.logprob`). Side ``a`` is always the styled answer (in ``substance``: the correct one), so every
rate is "a preferred", with ties counting half, and a 95% bootstrap CI. ``pairs.jsonl`` has the same layout as the
judge's, so people can rate the same pairs with ``imitlab rate init --pairs DIR/pairs.jsonl``.
"""

from __future__ import annotations

import gzip
import json
import os
import random
import re
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imitlab.config import data_dir
from imitlab.errors import ImitlabError
from imitlab.fileio import atomic_write_text, iter_jsonl
from imitlab.judge.aggregate import combine, json_ready, tally
from imitlab.judge.logprob import outcome_of, p_a_better
from imitlab.judge.pairwise import Pair, judge_pairs_in_time
from imitlab.judge.style import has_list, has_summary, words
from imitlab.judge.templates import LABEL_TEMPLATE, load_template
from imitlab.stage_config import StageConfig
from imitlab.stats import bootstrap_ci

if TYPE_CHECKING:
    from imitlab.judge.pairwise import JudgeFn
    from imitlab.models.api_model import APIModel

KINDS = ("style", "substance", "crossed", "teacher_style")
DEFAULT_KINDS = ("style", "substance", "crossed")
# What "a preferred" means for each kind, for tables and docs.
A_IS = {
    "style": "the styled answer (same content)",
    "substance": "the correct answer (same style)",
    "crossed": "the styled but wrong answer, over the plain correct one",
    "teacher_style": "GPT-4's formatted answer, over the same answer unformatted",
}
_CALC = re.compile(r"<<[^>]*>>")
_LIST_ITEM = re.compile(r"^\s*(?:[-*•+]|\d{1,3}[.)])\s+", re.M)
_EMPHASIS = re.compile(r"(\*\*|__|\*|`)")


# -- building the pairs ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Solution:
    """A GSM8K solution: its steps (calculator annotations removed) and its final integer answer."""

    question: str
    steps: tuple[str, ...]
    answer: int


def gsm8k_solutions(path: Path) -> Iterator[tuple[int, Solution]]:
    """(line, solution) for GSM8K rows whose answer is an integer that the last step states."""
    for n, row in iter_jsonl(path):
        if not isinstance(row.get("question"), str) or not isinstance(row.get("answer"), str):
            raise ImitlabError(f"{path}:{n}: needs string fields 'question' and 'answer'")
        body, sep, final = row["answer"].rpartition("####")
        final = final.strip().replace(",", "")
        if not sep or not re.fullmatch(r"-?\d+", final):
            continue
        steps = tuple(s.strip() for s in _CALC.sub("", body).strip().split("\n") if s.strip())
        answer = int(final)
        if steps and _number_at_end(steps[-1], answer) is not None:
            yield n, Solution(row["question"].strip(), steps, answer)


def _number_forms(value: int) -> tuple[str, ...]:
    return tuple(dict.fromkeys((f"{value:,}", str(value))))


def _number_at_end(step: str, value: int) -> re.Match[str] | None:
    """The last standalone occurrence of ``value`` (with or without thousands commas) in ``step``."""
    found = None
    for form in _number_forms(value):
        for match in re.finditer(rf"(?<![\d.,]){re.escape(form)}(?![\d]|[.,]\d)", step):
            if found is None or match.start() > found.start():
                found = match
    return found


def wrong_answer(value: int, rng: random.Random) -> int:
    """A nearby integer: off by a few units (or ~10% for large values), never the same, never negative."""
    step = max(1, round(abs(value) * 0.1)) if abs(value) >= 20 else 1
    deltas = [d * step for d in (-2, -1, 1, 2) if value + d * step >= 0 and d * step != 0]
    return value + rng.choice(deltas)


def with_answer(solution: Solution, value: int) -> tuple[str, ...]:
    """The steps with the last step's result replaced by ``value`` (the subtle error: one number, nothing else)."""
    last = solution.steps[-1]
    match = _number_at_end(last, solution.answer)
    assert match is not None  # gsm8k_solutions keeps only solutions whose last step states the answer
    form = f"{value:,}" if "," in match.group(0) else str(value)
    return (*solution.steps[:-1], last[: match.start()] + form + last[match.end() :])


def plain(steps: Sequence[str], answer: int) -> str:
    """One paragraph of prose, as a terse answer is written."""
    sentences = [s if s.endswith((".", "!", "?")) else s + "." for s in steps]
    return " ".join(sentences) + f" The answer is {answer}."


def styled(steps: Sequence[str], answer: int) -> str:
    """The same sentences in the style imitation copies: a heading, numbered steps, a bold answer, a summary."""
    numbered = "\n".join(f"{i}. {s}" for i, s in enumerate(steps, start=1))
    return (
        f"**Step-by-step solution:**\n\n{numbered}\n\n**Final answer: {answer}**\n\n"
        f"In summary, working through each step carefully, the answer is {answer}."
    )


def unformat(text: str) -> str:
    """A formatted answer as plain prose: list items become sentences of one paragraph; headers, emphasis and a
    closing summary paragraph go. The sentences themselves are kept."""
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", text.strip()) if p.strip()]
    if has_summary(text):
        paragraphs = paragraphs[:-1]
    sentences = []
    for line in "\n".join(paragraphs).split("\n"):
        line = _EMPHASIS.sub("", _LIST_ITEM.sub("", line.strip().lstrip("#").strip()))
        if line:
            sentences.append(line if line.endswith((".", "!", "?", ":")) else line + ".")
    return " ".join(sentences)


@dataclass(frozen=True)
class ProbePair:
    kind: str
    id: str
    question: str
    a: str  # the styled answer (substance: the correct one)
    b: str
    source: str


def gsm8k_pairs(root: Path, n: int, *, seed: int, max_words: int | None) -> dict[str, list[ProbePair]]:
    """``n`` pairs of each GSM8K kind, from the same seeded solutions (so the kinds differ only in the rendering)."""
    path = root / "gsm8k" / "test.jsonl"
    if not path.is_file():
        raise ImitlabError(f"GSM8K not found: {path} (set $IMITLAB_DATA or --data-dir)")
    pool = [(line, s) for line, s in gsm8k_solutions(path) if max_words is None or _words(s) <= max_words]
    random.Random(seed).shuffle(pool)
    out: dict[str, list[ProbePair]] = {"style": [], "substance": [], "crossed": []}
    for line, s in pool[:n]:
        wrong = wrong_answer(s.answer, random.Random(f"{seed}:{line}"))
        bad = with_answer(s, wrong)
        src = f"gsm8k/test.jsonl:{line}"
        out["style"].append(ProbePair("style", f"style/{line}", s.question, styled(s.steps, s.answer),
                                      plain(s.steps, s.answer), src))  # fmt: skip
        out["substance"].append(ProbePair("substance", f"substance/{line}", s.question, plain(s.steps, s.answer),
                                          plain(bad, wrong), src))  # fmt: skip
        out["crossed"].append(ProbePair("crossed", f"crossed/{line}", s.question, styled(bad, wrong),
                                        plain(s.steps, s.answer), src))  # fmt: skip
    return out


def _words(s: Solution) -> int:
    return len(words(s.question)) + sum(len(words(step)) for step in s.steps)


def teacher_style_pairs(root: Path, n: int, *, seed: int, max_words: int | None) -> list[ProbePair]:
    """GPT-4's AlpacaEval answers that use a list (and hold no code), against the same answers unformatted."""
    path = root / "alpaca_eval" / "model_outputs" / "gpt4.json.gz"
    if not path.is_file():
        raise ImitlabError(f"GPT-4 outputs not found: {path} (set $IMITLAB_DATA or --data-dir)")
    rows = json.loads(gzip.decompress(path.read_bytes()))
    pool = []
    for i, row in enumerate(rows, start=1):
        if not isinstance(row, dict) or not isinstance(row.get("output"), str) or "instruction" not in row:
            raise ImitlabError(f"{path}: item {i}: needs fields 'instruction' and 'output'")
        text = row["output"]
        short = max_words is None or len(words(text)) + len(words(row["instruction"])) <= max_words
        if has_list(text) and "```" not in text and short:  # code would not survive being made into prose
            pool.append(ProbePair("teacher_style", f"teacher_style/{i}", row["instruction"], text, unformat(text),
                                  f"alpaca_eval/model_outputs/gpt4.json.gz:{i}"))  # fmt: skip
    random.Random(seed).shuffle(pool)
    return pool[:n]


def build_pairs(
    kinds: Sequence[str], n: int, *, seed: int = 0, max_words: int | None = 90, data: str | Path | None = None
) -> list[ProbePair]:
    """``n`` pairs of each kind, interleaved (one of each kind in turn), so a time budget keeps the kinds even."""
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise ImitlabError(f"unknown probe kind(s) {', '.join(unknown)}; known: {', '.join(KINDS)}")
    root = data_dir(data)
    by_kind: dict[str, list[ProbePair]] = {}
    if set(kinds) & {"style", "substance", "crossed"}:
        by_kind.update(gsm8k_pairs(root, n, seed=seed, max_words=max_words))
    if "teacher_style" in kinds:
        by_kind["teacher_style"] = teacher_style_pairs(root, n, seed=seed, max_words=max_words)
    lists = [by_kind[k] for k in kinds]
    return [p for row in zip(*lists, strict=False) for p in row]


# -- judging and the numbers ----------------------------------------------------------------------------------
class ProbeConfig(StageConfig):
    judge: str
    out: Path
    n: int = 20  # pairs per kind
    kinds: tuple[str, ...] = DEFAULT_KINDS
    max_words: int | None = 90  # question + solution words (GSM8K) or instruction + answer words (teacher_style)
    template: str = LABEL_TEMPLATE
    logprobs: bool = False
    max_seconds: float | None = None  # stop starting new pairs after this long; score those done
    judge_max_tokens: int = 8
    judge_temperature: float = 0.0
    parallel: int = 1
    n_resamples: int = 2000
    seed: int = 0
    data: Path | None = None
    cache: Path | None = None
    base_url: str | None = None


def kind_summary(items: Sequence[dict[str, Any]], *, n_resamples: int = 2000, seed: int = 0) -> dict[str, Any]:
    """How often side a (styled / correct) was preferred, text and probability verdicts, with 95% CIs."""
    text = tally([i["text"] for i in items], n_resamples=n_resamples, seed=seed).as_dict()
    out: dict[str, Any] = {"n": len(items), "text": text}
    if items and all("logprob" in i for i in items):
        hard = tally([i["logprob"] for i in items], n_resamples=n_resamples, seed=seed).as_dict()
        probs = [i["p_a"] for i in items if i.get("p_a") is not None]
        out["logprob"] = {**hard, "p_a": bootstrap_ci(probs, n_resamples=n_resamples, seed=seed).as_dict()}
    return out


def run_probe(config: ProbeConfig, judge: APIModel | JudgeFn | None = None) -> dict[str, Any]:
    """Build the pairs, judge them in both orders, write the output directory and return the summary."""
    if config.n < 1:
        raise ImitlabError(f"--n must be at least 1, not {config.n}")
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    template = load_template(config.template, data=config.data)
    probe_pairs = build_pairs(config.kinds, config.n, seed=config.seed, max_words=config.max_words, data=config.data)
    pairs = [Pair(p.id, p.question, p.a, p.b) for p in probe_pairs]
    rows = "".join(json.dumps(asdict(p), ensure_ascii=False) + "\n" for p in pairs)
    atomic_write_text(out / "pairs.jsonl", rows)  # imitlab rate's input layout
    atomic_write_text(out / "probe_pairs.jsonl", "".join(json.dumps(asdict(p)) + "\n" for p in probe_pairs))
    chunk = max(len(config.kinds), 2 * config.parallel)  # every kind gets judged before a time budget stops it
    timed = judge_pairs_in_time(pairs, template, config, judge, out / "judgments.jsonl", chunk=chunk,
                                verdict="logprob" if config.logprobs else "text")  # fmt: skip
    records, usage, seconds, load_before = timed.records, timed.usage, timed.seconds, timed.load_before
    by_key = {(r["id"], r["order"]): r for r in records}
    items = []
    for p in probe_pairs:
        if (p.id, "ab") not in by_key:
            continue
        ab, ba = by_key[(p.id, "ab")], by_key[(p.id, "ba")]
        item: dict[str, Any] = {"id": p.id, "kind": p.kind, "source": p.source,
                                "text": combine(ab["winner"], ba["winner"], "tie")}  # fmt: skip
        if config.logprobs:
            item["p_a"] = p_a_better(ab.get("p_first"), ba.get("p_first"))
            item["logprob"] = outcome_of(item["p_a"])
        items.append(item)
    atomic_write_text(out / "items.jsonl", "".join(json.dumps(json_ready(i)) + "\n" for i in items))
    kinds = {k: kind_summary([i for i in items if i["kind"] == k], n_resamples=config.n_resamples, seed=config.seed)
             for k in config.kinds}  # fmt: skip
    result = json_ready({
        "judge": config.judge,
        "template": {"name": template.name, "source": template.source},
        "a_is": {k: A_IS[k] for k in config.kinds},
        "kinds": kinds,
        "n_pairs": len(items),
        "n_built": len(probe_pairs),
        "stopped_by_time": len(items) < len(probe_pairs),
        "n_call_errors": sum(1 for r in records if r.get("error")),
        "run": {"seconds": round(seconds, 1), "calls": usage.get("requests"), "cached": usage.get("cached"),
                "loadavg_before": [round(x, 2) for x in load_before],
                "loadavg_after": [round(x, 2) for x in os.getloadavg()], "cpu_count": os.cpu_count()},
        "config": config.as_dict(),
    })  # fmt: skip
    atomic_write_text(out / "probe.json", json.dumps(result, indent=2, allow_nan=False) + "\n")
    return result
