"""The paper's style metrics (Table 2): how much a model's answers look like the teacher's.

For each model, on the prompts both it and the teacher answered:

- ``list_when_teacher``: of the prompts where the teacher's answer uses a list, the share where the model's does;
- ``summary_when_teacher``: the same for a closing summary paragraph;
- ``unigram_overlap``: unigram F1 between the two answers (x100), averaged over prompts;
- ``length_pearson``: Pearson correlation of the two answers' lengths in words across prompts;
- ``authoritative_tone``: the share of the model's answers a judge model calls confident and authoritative.

A second teacher sample (``teacher2``, sampled at a temperature above 0) scored the same way is the
ceiling: how alike two draws of the teacher itself are. Every number carries a bootstrap 95% CI.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pydantic

from imitlab.errors import ImitlabError
from imitlab.fileio import atomic_write_text
from imitlab.judge.aggregate import json_ready
from imitlab.judge.pairwise import JudgeFn, open_judge
from imitlab.judge.parse import parse_yesno
from imitlab.judge.sources import Answers, GenerationParams, PromptItem, load_prompts, resolve_answers
from imitlab.judge.templates import TONE_TEMPLATE, load_template
from imitlab.stage_config import StageConfig
from imitlab.stats import bootstrap_ci

if TYPE_CHECKING:
    from imitlab.models.api_model import APIModel

log = logging.getLogger(__name__)

_LIST_ITEM = re.compile(r"^\s*(?:[-*•+]|\d{1,3}[.)])\s+\S", re.M)
_CODE_FENCE = re.compile(r"```.*?(?:```|$)", re.S)
# Openers of a closing summary paragraph. The paper does not publish its detector; this list is ours.
_SUMMARY_CUES = re.compile(
    r"^(?:in summary|in conclusion|to summarize|to sum up|in short|overall|ultimately|all in all|in general|"
    r"in brief|summary|conclusion|by following these|remember)\b",
    re.I,
)
_WORD = re.compile(r"\w+", re.U)


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def has_list(text: str) -> bool:
    """Two or more bulleted or numbered lines (outside code blocks)."""
    return len(_LIST_ITEM.findall(_CODE_FENCE.sub("", text))) >= 2


def has_summary(text: str) -> bool:
    """A closing prose paragraph that opens like a summary, after at least one other paragraph."""
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", _CODE_FENCE.sub("", text).strip()) if p.strip()]
    if len(paragraphs) < 2:
        return False
    last = paragraphs[-1]
    return not _LIST_ITEM.match(last) and bool(_SUMMARY_CUES.match(last.lstrip("#*_ ")))


def unigram_f1(candidate: str, reference: str) -> float:
    """Clipped unigram overlap F1 (ROUGE-1 F without stemming), in [0, 1]."""
    c, r = Counter(words(candidate)), Counter(words(reference))
    common = sum((c & r).values())
    if not common:
        return 0.0
    precision, recall = common / sum(c.values()), common / sum(r.values())
    return 2 * precision * recall / (precision + recall)


def _pearson(rows: np.ndarray) -> float:
    x, y = rows[:, 0], rows[:, 1]
    if len(x) < 2 or x.std() == 0 or y.std() == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])


class StyleConfig(StageConfig):
    teacher: str  # model spec or answers file
    models: dict[str, str]  # column name -> model spec or answers file (e.g. base, imitation)
    prompts: str
    out: Path
    teacher2: str | None = None  # a second teacher sample: the ceiling column
    judge: str | None = None  # judge model for the tone probe; None skips it
    limit: int | None = None
    generation: GenerationParams = pydantic.Field(default_factory=GenerationParams)
    teacher2_temperature: float = 0.7  # a second *sample* needs sampling
    judge_max_tokens: int = 64
    judge_temperature: float = 0.0
    parallel: int = 4  # requests in flight when the judge is opened from its spec here (not when one is passed in)
    n_resamples: int = 2000
    seed: int = 0
    data: Path | None = None
    cache: Path | None = None
    base_url: str | None = None


def compare(model: Answers, teacher: Answers, prompts: list[PromptItem], *, n_resamples: int = 2000, seed: int = 0):
    """Style metrics of one model's answers against the teacher's, and per-item rows."""
    ids = [p.id for p in prompts if p.id in model.by_id and p.id in teacher.by_id]
    items = []
    for pid in ids:
        m, t = model.by_id[pid], teacher.by_id[pid]
        items.append({
            "id": pid,
            "teacher_list": has_list(t), "model_list": has_list(m),
            "teacher_summary": has_summary(t), "model_summary": has_summary(m),
            "unigram_f1": unigram_f1(m, t),
            "teacher_words": len(words(t)), "model_words": len(words(m)),
        })  # fmt: skip
    kw = {"n_resamples": n_resamples, "seed": seed}
    lists = [float(i["model_list"]) for i in items if i["teacher_list"]]
    summaries = [float(i["model_summary"]) for i in items if i["teacher_summary"]]
    lengths = np.array([[i["model_words"], i["teacher_words"]] for i in items], dtype=float).reshape(-1, 2)
    metrics = {
        "n": len(items),
        "list_when_teacher": bootstrap_ci(lists, **kw).as_dict(),
        "summary_when_teacher": bootstrap_ci(summaries, **kw).as_dict(),
        "unigram_overlap": bootstrap_ci([100 * i["unigram_f1"] for i in items], **kw).as_dict(),
        "length_pearson": bootstrap_ci(lengths, _pearson, **kw).as_dict(),
        "mean_words": float(lengths[:, 0].mean()) if len(items) else float("nan"),
    }
    return metrics, items


def judge_tone(
    answers: dict[str, str], prompts: dict[str, str], judge: APIModel, *, max_tokens: int = 64,
    temperature: float = 0.0, desc: str = "tone",
) -> dict[str, tuple[bool | None, str]]:  # fmt: skip
    """Ask the judge, per answer, whether its tone is authoritative: id -> (True / False / None, raw reply).

    A call that fails for good is not a verdict: ``None`` with ``"error: ..."`` as its raw reply.
    """
    from imitlab.models.engine import Request, RequestFailed

    template = load_template(TONE_TEMPLATE)
    ids = list(answers)
    params = {"max_tokens": max_tokens, "temperature": temperature}
    requests = [
        Request.chat(template.messages(question=prompts[pid], answer=answers[pid]), tag=f"{desc} {pid}", **params)
        for pid in ids
    ]
    verdicts: dict[str, tuple[bool | None, str]] = {}
    for pid, result in zip(ids, judge.engine.map(requests, desc=desc), strict=True):
        if isinstance(result, RequestFailed):
            log.warning("tone judge failed for %s: %s", pid, result)
            verdicts[pid] = (None, f"error: {result}")
        else:
            verdicts[pid] = (parse_yesno(result.text), result.text)
    return verdicts


def run_style(
    config: StyleConfig, judge: APIModel | JudgeFn | None = None, *, models: Mapping[str, APIModel] | None = None
) -> dict[str, Any]:
    """Compute the style table (one column per model, plus the teacher's second sample) and write it to ``out``.

    ``judge`` (an open model, or a :data:`JudgeFn` standing in for one) runs the tone probe; without it
    ``config.judge`` is opened, and without either the probe is skipped. ``models`` maps spec texts used as
    columns (``teacher``, ``models``, ``teacher2``) to models already open; other specs are opened as needed.
    Output: ``style.json`` (metrics per column, with CIs), ``style_items.jsonl`` (per prompt and column) and
    the generated ``answers_<column>.jsonl`` for columns given as model specs.
    """
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    if not config.models and not config.teacher2:
        raise ImitlabError("style needs at least one --model (or a --teacher2) to compare with the teacher")
    prompts = load_prompts(config.prompts, data=config.data, limit=config.limit)

    def answers(source: str, name: str, params: GenerationParams) -> Answers:
        return resolve_answers(source, prompts, out / f"answers_{name}.jsonl", params, cache=config.cache,
                               base_url=config.base_url, models=models)  # fmt: skip

    teacher = answers(config.teacher, "teacher", config.generation)
    columns = {name: answers(src, name, config.generation) for name, src in config.models.items()}
    if config.teacher2:
        sampled = GenerationParams(**{**asdict(config.generation), "temperature": config.teacher2_temperature})
        columns["teacher2"] = answers(config.teacher2, "teacher2", sampled)
    table: dict[str, Any] = {}
    rows = []
    for name, ans in columns.items():
        metrics, items = compare(ans, teacher, prompts, n_resamples=config.n_resamples, seed=config.seed)
        table[name] = {"source": ans.source, **metrics}
        rows += [{"column": name, **i} for i in items]
    if config.judge or judge is not None:
        text = {p.id: p.prompt for p in prompts}
        with open_judge(config, judge) as model:
            for name, ans in columns.items():
                paired = {r["id"]: ans.by_id[r["id"]] for r in rows if r["column"] == name}
                verdicts = judge_tone(paired, text, model, max_tokens=config.judge_max_tokens,
                                      temperature=config.judge_temperature, desc=f"tone: {name}")  # fmt: skip
                yes = [float(v) for v, _ in verdicts.values() if v is not None]
                table[name]["authoritative_tone"] = bootstrap_ci(yes, n_resamples=config.n_resamples,
                                                                 seed=config.seed).as_dict()  # fmt: skip
                table[name]["tone_unparsed"] = sum(v is None for v, _ in verdicts.values())
                for r in rows:
                    if r["column"] == name and r["id"] in verdicts:
                        r["tone"], r["tone_raw"] = verdicts[r["id"]]
    result = {
        "teacher": teacher.source,
        "prompts": config.prompts,
        "judge": config.judge,
        "columns": table,
        "config": config.as_dict(),
    }
    result = json_ready(result)
    atomic_write_text(out / "style.json", json.dumps(result, indent=2, ensure_ascii=False, allow_nan=False) + "\n")
    atomic_write_text(out / "style_items.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return result
