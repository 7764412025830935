"""Task-specific ("local") imitation data, the paper's NQ-synthetic method.

Show the teacher ``k`` random examples from a small seed set (default 5 of 10) and ask for similar but
distinct question/answer pairs; parse, validate and deduplicate what comes back. Any JSON/JSONL file of
``{"question": str, "answer": str | [str, ...]}`` works as the seed file; NQ-open dev is the reference.

Public entry point: :func:`synthesize_qa`. Its records are prompts (``turns=[question]``) carrying the
teacher's answer in ``meta.answer``; :func:`qa_conversations` turns them into imitation-set records
(user question, assistant answer), which is the data the paper trained on.
"""

from __future__ import annotations

import random
import re
import string
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imitlab.errors import ImitlabError
from imitlab.models.api_model import APIModel
from imitlab.models.engine import Request, Response
from imitlab.prompts.ask import TeacherRun, ask_until, nothing_kept
from imitlab.prompts.schema import PromptFormatError, PromptRecord, iter_json_records
from imitlab.stage_config import StageConfig

TEMPLATE = """Here are some examples of trivia questions with short answers:

{examples}

Write {n} new questions like these: different facts and topics, not copies of the examples, each with a \
short answer of a few words. Use exactly the same format, a line "Q: <question>" followed by a line \
"A: <answer>"."""

_Q = re.compile(r"^\s*(?:\d+\s*[.):]\s*)?(?:\*\*)?(?:Q|Question)\s*\d*\s*[:.]\s*(?:\*\*)?\s*(.+?)\s*$", re.IGNORECASE)
_A = re.compile(r"^\s*(?:\*\*)?(?:A|Answer)\s*\d*\s*[:.]\s*(?:\*\*)?\s*(.+?)\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class QAPair:
    question: str
    answer: str
    id: str = ""


class SynthConfig(StageConfig):
    seed_file: Path
    n_pairs: int = 100  # how many new pairs to keep
    n_seed: int = 10  # size of the seed set drawn from seed_file
    k: int = 5  # examples shown per request
    per_request: int = 5  # pairs asked for per request
    max_requests: int | None = None  # default: 2 requests per pair wanted
    concurrency: int = 4  # requests in flight when the teacher is opened from a spec (the CLI)
    temperature: float = 1.0
    max_tokens: int = 400
    min_question_words: int = 3
    max_question_words: int = 30
    max_answer_words: int = 10
    seed: int = 0
    source: str = "qa-synthetic"


@dataclass
class SynthResult(TeacherRun):
    records: list[PromptRecord]
    seeds: list[QAPair]
    parsed: int = 0
    dropped: Counter[str] = field(default_factory=Counter)


def load_qa_seeds(path: str | Path) -> list[QAPair]:
    """QA pairs from a JSON/JSONL file with ``question`` and ``answer`` (a string or a list, first used)."""
    pairs = []
    for where, number, obj in iter_json_records(path):
        if not isinstance(obj, dict):
            raise PromptFormatError(f"{where}: expected a JSON object with 'question' and 'answer'")
        q, a = obj.get("question"), obj.get("answer")
        if isinstance(a, list):
            a = next((x for x in a if isinstance(x, str) and x.strip()), None)
        if not isinstance(q, str) or not q.strip():
            raise PromptFormatError(f"{where}: field 'question' must be a non-empty string")
        if not isinstance(a, str) or not a.strip():
            raise PromptFormatError(f"{where}: field 'answer' must be a non-empty string or list of strings")
        pairs.append(QAPair(q.strip(), a.strip(), id=f"{Path(path).name}:{number}"))
    if not pairs:
        raise PromptFormatError(f"{path}: no QA pairs")
    return pairs


def normalize(text: str) -> str:
    text = text.lower().translate(str.maketrans("", "", string.punctuation))
    return " ".join(text.split())


def parse_qa(text: str) -> list[QAPair]:
    """Q:/A: pairs from the teacher's text; a question without an answer line is ignored."""
    pairs, question = [], None
    for line in text.splitlines():
        if m := _Q.match(line):
            question = m.group(1)
        elif (m := _A.match(line)) and question is not None:
            pairs.append(QAPair(question.strip(), m.group(1).strip().rstrip(".")))
            question = None
    return pairs


def drop_reason(pair: QAPair, cfg: SynthConfig, seen: set[str]) -> str | None:
    q_words, a_words = pair.question.split(), pair.answer.split()
    if not cfg.min_question_words <= len(q_words) <= cfg.max_question_words:
        return "question length"
    if not a_words or len(a_words) > cfg.max_answer_words:
        return "answer length"
    nq, na = normalize(pair.question), normalize(pair.answer)
    if not na or na in {"unknown", "none", "n a", "i dont know"}:
        return "no answer"
    if f" {na} " in f" {nq} ":
        return "answer in question"
    if nq in seen:
        return "duplicate or seed copy"
    return None


def _requests(cfg: SynthConfig, seeds: list[QAPair]) -> list[tuple[list[QAPair], Request]]:
    """Every request the run may send, with the seed pairs it shows, drawn up front from ``cfg.seed``.

    Request ``i`` is sample ``i``, so equal prompts still get separate draws and a rerun is answered by the cache.
    """
    rng = random.Random(cfg.seed)
    max_requests = cfg.max_requests or max(4, 2 * cfg.n_pairs)
    requests = []
    for i in range(max_requests):
        shown = rng.sample(seeds, min(cfg.k, len(seeds)))
        examples = "\n\n".join(f"Q: {s.question}\nA: {s.answer}" for s in shown)
        messages = [{"role": "user", "content": TEMPLATE.format(examples=examples, n=cfg.per_request)}]
        request = Request.chat(messages, sample=i, tag=f"synthesize#{i}", temperature=cfg.temperature,
                               max_tokens=cfg.max_tokens)  # fmt: skip
        requests.append((shown, request))
    return requests


def synthesize_qa(teacher: APIModel, cfg: SynthConfig) -> SynthResult:
    """Generate up to ``cfg.n_pairs`` new QA pairs in the style of ``cfg.seed_file`` with ``teacher``.

    Requests go through the teacher's engine (its concurrency, retries, cache and progress bar); a request that
    fails for good is counted in ``failed_requests`` and the run goes on.
    """
    if cfg.k < 1 or cfg.n_seed < 1:
        raise ImitlabError("k and n_seed must be at least 1")
    pool = load_qa_seeds(cfg.seed_file)
    seeds = random.Random(cfg.seed).sample(pool, min(cfg.n_seed, len(pool)))
    result = SynthResult(records=[], seeds=seeds)
    seen = {normalize(s.question) for s in seeds}
    planned = _requests(cfg, seeds)

    def keep(index: int, answer: Response) -> bool:
        shown = planned[index][0]
        for pair in parse_qa(answer.text):
            result.parsed += 1
            reason = drop_reason(pair, cfg, seen)
            if reason:
                result.dropped[reason] += 1
                continue
            seen.add(normalize(pair.question))
            result.records.append(
                PromptRecord(
                    id=f"{cfg.source}:{len(result.records)}",
                    turns=[pair.question],
                    source=cfg.source,
                    meta={"answer": pair.answer, "seed_ids": [s.id for s in shown]},
                )
            )
            if len(result.records) >= cfg.n_pairs:
                return True
        return False

    ask_until(teacher, [r for _, r in planned], keep, result, desc="synthesize QA")
    if not result.records:
        raise nothing_kept("synthesis", "QA pairs", result, result.parsed, result.dropped, "Q:/A: format")
    return result


def qa_conversations(records: list[PromptRecord], teacher: str) -> list[dict[str, Any]]:
    """Imitation-set records (the conversations JSONL schema) from synthesized QA prompts."""
    return [
        {
            "id": r.id,
            "prompt_id": r.id,
            "sample": 0,
            "messages": [{"role": "user", "content": r.turns[0]}, {"role": "assistant", "content": r.meta["answer"]}],
            "source": r.source,
            "teacher": teacher,
            "meta": {"seed_ids": r.meta.get("seed_ids", [])},
        }
        for r in records
    ]
