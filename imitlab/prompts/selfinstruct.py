"""Self-Instruct bootstrap (Wang et al. 2022, as Stanford Alpaca ran it): the teacher writes new instructions.

Each request shows the teacher ``num_prompt_instructions`` random instructions from the pool (seeds plus
what was kept so far) and asks for more. A generated instruction is kept only if it

- parses from the numbered list, has 4 to 150 words, starts with a letter or digit,
- names none of the blacklisted kinds of task a text model cannot do (images, files, drawing, ...),
- does not start with "Write a program" (Alpaca's rule; such tasks are ill-posed without a language),
- and has ROUGE-L F below ``rouge_threshold`` (0.7) against every instruction kept before it.

Public entry point: :func:`self_instruct`.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from rouge_score import rouge_scorer

from imitlab.errors import ImitlabError
from imitlab.models.api_model import APIModel
from imitlab.models.engine import Request, Response
from imitlab.prompts.ask import TeacherRun, ask_until, nothing_kept
from imitlab.prompts.importers import import_prompts
from imitlab.prompts.schema import PromptRecord
from imitlab.stage_config import StageConfig

# Alpaca's generate_instruction.py blacklist, plus a few words for other non-text media.
DEFAULT_BLACKLIST = (
    "image", "images", "graph", "graphs", "picture", "pictures", "file", "files", "map", "maps",
    "draw", "plot", "go to", "video", "audio", "music", "flowchart", "diagram", "photo", "photos",
)  # fmt: skip

TEMPLATE = """You are asked to come up with a set of {n} diverse task instructions for a helpful AI assistant.
Requirements:
1. Do not repeat verbs; use diverse language and diverse kinds of tasks (open-ended generation, classification, \
editing, question answering, brainstorming, rewriting, reasoning, coding, ...).
2. The assistant can only read and write text: no images, files, audio or actions in the world.
3. Each instruction is one or two sentences, in English, and self-contained (include any input text it needs).

Examples:
{examples}

Now write {n} new instructions, one per line, numbered like the examples:
"""

_LINE = re.compile(r"^\s*(?:\d+\s*[.):]|[-*•])\s*(?:instruction\s*:\s*)?(.+?)\s*$", re.IGNORECASE)


class SelfInstructConfig(StageConfig):
    seeds: list[Path]  # any importable prompt files; self_instruct/seed_tasks.jsonl is the reference
    n_instructions: int = 100  # how many new instructions to keep
    num_prompt_instructions: int = 3  # examples shown per request (Alpaca used 3)
    per_request: int = 10  # new instructions asked for per request
    rouge_threshold: float = 0.7
    blacklist: tuple[str, ...] = DEFAULT_BLACKLIST
    min_words: int = 4
    max_words: int = 150
    max_requests: int | None = None  # default: 4 requests per instruction wanted, so a weak teacher ends
    concurrency: int = 4  # requests in flight when the teacher is opened from a spec (the CLI)
    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int = 512
    seed: int = 0


@dataclass
class SelfInstructResult(TeacherRun):
    records: list[PromptRecord]
    generated: int = 0
    dropped: Counter[str] = field(default_factory=Counter)  # reason -> count


def parse_instructions(text: str) -> list[str]:
    """Instructions from a numbered (or bulleted) list; a line that continues the previous item is joined."""
    items: list[str] = []
    for line in text.splitlines():
        m = _LINE.match(line)
        if m:
            items.append(m.group(1).strip())
        elif items and line.strip() and not line.strip().lower().startswith(("input", "output", "examples")):
            items[-1] += " " + line.strip()
    return [re.sub(r"\s+", " ", i).strip().strip('"') for i in items if i.strip()]


def drop_reason(instruction: str, cfg: SelfInstructConfig) -> str | None:
    """Why a generated instruction is rejected before the similarity check (None if it passes)."""
    words = instruction.split()
    if len(words) < cfg.min_words:
        return "too short"
    if len(words) > cfg.max_words:
        return "too long"
    lower = instruction.lower()
    for term in cfg.blacklist:
        if re.search(rf"\b{re.escape(term)}\b", lower):
            return "blacklisted"
    if lower.startswith("write a program"):
        return "blacklisted"
    if not instruction[0].isalnum():
        return "starts with punctuation"
    if not instruction[0].isascii():
        return "non-ascii start"
    return None


class _RougeFilter:
    """ROUGE-L F of a candidate against every kept instruction; tokenized once per kept instruction."""

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        self.scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
        self.kept_tokens: list[list[str]] = []

    # Pre-tokenizing and calling _score_lcs directly is what Alpaca's generate_instruction.py does too:
    # RougeScorer.score would re-tokenize every kept instruction for every candidate.
    def add(self, text: str) -> None:
        self.kept_tokens.append(self.scorer._tokenizer.tokenize(text))

    def max_similarity(self, text: str) -> float:
        tokens = self.scorer._tokenizer.tokenize(text)
        best = 0.0
        for kept in self.kept_tokens:
            best = max(best, rouge_scorer._score_lcs(kept, tokens).fmeasure)
            if best >= self.threshold:
                break
        return best


def _requests(cfg: SelfInstructConfig, seeds: list[str]) -> list[Request]:
    """Every request the run may send, drawn up front from ``cfg.seed``.

    Examples come from the seeds only, as in Alpaca; drawing from kept generations would let drift compound.
    Request ``i`` is sample ``i``: two requests that happen to show the same examples still get two draws, and a
    rerun with the same seed asks exactly the same questions (so the response cache answers it).
    """
    rng = random.Random(cfg.seed)
    max_requests = cfg.max_requests or max(4, 4 * cfg.n_instructions)
    requests = []
    for i in range(max_requests):
        examples = rng.sample(seeds, min(cfg.num_prompt_instructions, len(seeds)))
        body = "\n".join(f"{n}. {e}" for n, e in enumerate(examples, 1))
        prompt = TEMPLATE.format(n=cfg.per_request, examples=body)
        messages = [{"role": "user", "content": prompt}]
        params = {"temperature": cfg.temperature, "top_p": cfg.top_p, "max_tokens": cfg.max_tokens}
        requests.append(Request.chat(messages, sample=i, tag=f"self-instruct#{i}", **params))
    return requests


def self_instruct(teacher: APIModel, cfg: SelfInstructConfig) -> SelfInstructResult:
    """Bootstrap new instructions from seed tasks with ``teacher`` (see :func:`imitlab.models.open_model`).

    Requests go through the teacher's engine (its concurrency, retries, cache and progress bar); a request that
    fails for good is counted in ``failed_requests`` and the run goes on.
    """
    seeds = [r.turns[0] for r in import_prompts(list(cfg.seeds)).records]
    if not seeds:
        raise ImitlabError("self-instruct needs at least one seed instruction")
    result = SelfInstructResult(records=[])
    rouge = _RougeFilter(cfg.rouge_threshold)
    for s in seeds:
        rouge.add(s)

    def keep(index: int, answer: Response) -> bool:
        for inst in parse_instructions(answer.text):
            result.generated += 1
            reason = drop_reason(inst, cfg)
            if reason is None and rouge.max_similarity(inst) >= cfg.rouge_threshold:
                reason = "similar (ROUGE-L)"
            if reason:
                result.dropped[reason] += 1
                continue
            rouge.add(inst)
            n = len(result.records)
            result.records.append(PromptRecord(id=f"self-instruct:{n}", turns=[inst], source="self-instruct"))
            if len(result.records) >= cfg.n_instructions:
                return True
        return False

    ask_until(teacher, _requests(cfg, seeds), keep, result, desc="self-instruct")
    if not result.records:
        raise nothing_kept("self-instruct", "instructions", result, result.generated, result.dropped, "format")
    return result
