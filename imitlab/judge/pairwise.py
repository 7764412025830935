"""Pairwise LLM-as-judge: model a vs model b on a prompt set, both orders, with honest aggregation.

Each prompt is judged twice, with a's answer in position A and then in position B. A verdict that flips
with the order is a tie (``flip="tie"``, the MT-Bench convention), excluded (``"exclude"``) or read from
the first order only (``"first"``). Unparseable replies are recorded and counted on their own.

With ``verdict="logprob"`` each judgment also records ``p_first``, the probability the judge gives the answer in
slot A at its verdict token (:mod:`imitlab.judge.logprob`), and an item's outcome comes from the two orders'
probabilities averaged, so a judge's constant preference for a slot cancels out instead of turning into ties.

Output directory::

    answers_a.jsonl / answers_b.jsonl   answers generated from model specs (absent for answers files)
    pairs.jsonl        {id, prompt, a, b, reference}: what was judged (also the input of ``imitlab rate``)
    judgments.jsonl    one row per (id, order), append-only; a rerun resumes and skips rows already done
    items.jsonl        {id, outcome, ab, ba}: the per-prompt outcome
    summary.json       counts, rates with bootstrap CIs, exclusions, position bias, and a manifest
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import platform
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import pydantic

from imitlab.errors import ImitlabError
from imitlab.fileio import atomic_write_text, repair_tail, sha256_file
from imitlab.judge.aggregate import FlipPolicy, combine, json_ready, position_bias, side_of, tally
from imitlab.judge.parse import parse_verdict
from imitlab.judge.sources import (
    Answers,
    GenerationParams,
    PromptItem,
    is_answers_file,
    load_prompts,
    read_records,
    resolve_answers,
)
from imitlab.judge.templates import JudgeTemplate, load_template
from imitlab.stage_config import StageConfig
from imitlab.stats import bootstrap_ci

if TYPE_CHECKING:
    from imitlab.models.api_model import APIModel
    from imitlab.models.engine import RequestFailed, Response

log = logging.getLogger(__name__)

JudgeFn = Callable[[list[dict[str, str]]], Awaitable[str]]
ORDERS = ("ab", "ba")
VerdictMode = Literal["text", "logprob"]
VERDICT_MODES = ("text", "logprob")


class JudgeConfig(StageConfig):
    a: str  # model spec or answers file: usually the imitation model
    b: str  # model spec or answers file: usually the teacher
    prompts: str  # koala | vicuna80 | mt-bench | alpaca-eval | a JSON/JSONL file
    judge: str  # model spec of the judge
    out: Path
    template: str = "default"  # default | mt-bench | alpaca-eval | vicuna | path to a JSON template
    reference: Literal["auto", "off"] = "auto"  # auto: reference-guided when the item has a reference
    flip: FlipPolicy = "tie"
    verdict: VerdictMode = "text"  # logprob: P(label) at the verdict token, both orders averaged (needs logprobs)
    limit: int | None = None
    judge_max_tokens: int = 512
    judge_temperature: float = 0.0
    generation: GenerationParams = pydantic.Field(default_factory=GenerationParams)
    parallel: int = 4  # requests in flight when the judge is opened from its spec here (not when one is passed in)
    n_resamples: int = 2000
    seed: int = 0
    data: Path | None = None
    cache: Path | None = None
    base_url: str | None = None


@dataclass(frozen=True)
class Pair:
    id: str
    prompt: str
    a: str
    b: str
    reference: str | None = None

    @property
    def digest(self) -> str:
        """Identifies exactly what was judged, so a resumed run never reuses a verdict on other answers."""
        blob = json.dumps([self.prompt, self.a, self.b, self.reference], ensure_ascii=False)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def build_pairs(prompts: list[PromptItem], a: Answers, b: Answers) -> tuple[list[Pair], list[dict[str, Any]]]:
    """Pairs for the prompts both sides answered; the rest are returned as exclusions naming the missing side."""
    pairs, excluded = [], []
    for item in prompts:
        missing = [side for side, ans in (("a", a), ("b", b)) if item.id not in ans.by_id]
        if missing:
            excluded.append({"id": item.id, "missing": missing})
            continue
        pairs.append(Pair(item.id, item.prompt, a.by_id[item.id], b.by_id[item.id], item.reference))
    return pairs, excluded


def _load_done(path: Path) -> dict[tuple[str, str], dict[str, Any]]:
    done: dict[tuple[str, str], dict[str, Any]] = {}
    repair_tail(path)
    if path.is_file():
        for _, row in read_records(path):
            if not row.get("error"):  # failed calls are retried on resume
                done[(row["id"], row["order"])] = row
    return done


def judge_pairs(
    pairs: list[Pair],
    template: JudgeTemplate,
    judge: APIModel,
    judgments_path: Path,
    *,
    use_reference: bool = True,
    judge_name: str = "",
    max_tokens: int = 512,
    temperature: float = 0.0,
    verdict: VerdictMode = "text",
) -> list[dict[str, Any]]:
    """Judge every pair in both orders (resuming from ``judgments_path``); returns one record per (id, order).

    The calls go through ``judge.engine``: its concurrency, retries, response cache and progress bar. A call
    that fails for good is recorded with its ``error`` (never a verdict) and asked again on the next run.
    ``verdict="logprob"`` asks for the top log-probabilities of each token and records ``p_first``; a judge whose
    endpoint returns none stops the run with :class:`~imitlab.judge.logprob.NoLogprobs`.
    """
    from imitlab.judge.logprob import TOP_LOGPROBS, NoLogprobs, p_first
    from imitlab.models.engine import Request, RequestFailed

    done = _load_done(judgments_path)
    judgments_path.parent.mkdir(parents=True, exist_ok=True)
    records: dict[tuple[str, str], dict[str, Any]] = {}
    todo: list[tuple[Pair, str]] = []
    for pair in pairs:
        for order in ORDERS:
            prev = done.get((pair.id, order))
            # reuse only a verdict on exactly these answers, by the same judge with the same template
            key = (pair.digest, template.name, judge_name, verdict)
            if prev and (prev.get("pair_digest"), prev.get("template"), prev.get("judge"),
                         prev.get("verdict", "text")) == key:  # fmt: skip
                records[(pair.id, order)] = prev
            else:
                todo.append((pair, order))

    def reference(pair: Pair) -> str | None:
        return pair.reference if use_reference and template.has_reference_mode else None

    def ask(job: tuple[Pair, str]) -> Awaitable[Response]:
        pair, order = job
        first, second = (pair.a, pair.b) if order == "ab" else (pair.b, pair.a)
        messages = template.messages(question=pair.prompt, answer_a=first, answer_b=second, reference=reference(pair))
        logprobs = {"logprobs": True, "top_logprobs": TOP_LOGPROBS} if verdict == "logprob" else {}
        request = Request.chat(messages, tag=f"judge {pair.id} {order}", max_tokens=max_tokens, temperature=temperature,
                               **logprobs)  # fmt: skip
        return judge.engine.submit(request)

    def record(job: tuple[Pair, str], result: Response | RequestFailed) -> None:
        pair, order = job
        row: dict[str, Any] = {
            "id": pair.id,
            "order": order,
            "template": template.name,
            "judge": judge_name,
            "reference_used": reference(pair) is not None,
            "pair_digest": pair.digest,
            "verdict": verdict,
        }
        if isinstance(result, RequestFailed):  # recorded (and asked again on resume), never a verdict
            log.warning("judge call failed for %s (%s): %s", pair.id, order, result)
            row.update(raw=None, position=None, winner=None, scores=None, error=str(result))
        else:
            parsed = parse_verdict(template.parser, result.text)
            row.update(raw=result.text, position=parsed.position, winner=side_of(parsed.position, order))
            row["scores"] = list(parsed.scores) if parsed.scores else None
            if verdict == "logprob":
                try:
                    row["p_first"] = p_first(result.top_logprobs)
                except NoLogprobs:
                    raise NoLogprobs(
                        f"judge {judge_name or judge.spec} returned no token log-probabilities; --verdict logprob needs"
                        " an endpoint that gives them (llama.cpp, vLLM, OpenAI): use --verdict text"
                    ) from None
        records[(pair.id, order)] = row
        with judgments_path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")

    engine = judge.engine
    engine.run(engine.run_jobs(todo, ask, desc=f"judge: {judge.name}", on_result=record, done_before=len(records)))
    return [records[(pair.id, order)] for pair in pairs for order in ORDERS]


def summarize(
    pairs: list[Pair], records: list[dict[str, Any]], flip: FlipPolicy, *, n_resamples: int = 2000, seed: int = 0,
    verdict: VerdictMode = "text",
) -> tuple[list[dict[str, Any]], dict[str, Any]]:  # fmt: skip
    """Per-item outcomes and the summary numbers.

    With ``verdict="logprob"`` an item's outcome is decided by ``p_a``, a's probability of being better averaged
    over both orders (the flip policy does not apply: nothing flips), and the summary adds ``p_a_better``, the mean
    of ``p_a`` over items with a 95% CI (a win rate weighted by the judge's confidence).
    """
    from imitlab.judge.logprob import outcome_of, p_a_better

    by_key = {(r["id"], r["order"]): r for r in records}
    items = []
    for pair in pairs:
        ab, ba = by_key[(pair.id, "ab")], by_key[(pair.id, "ba")]
        item = {"id": pair.id, "outcome": combine(ab["winner"], ba["winner"], flip), "ab": ab["winner"],
                "ba": ba["winner"]}  # fmt: skip
        if verdict == "logprob":
            item["p_a"] = p_a_better(ab.get("p_first"), ba.get("p_first"))
            item["outcome"] = outcome_of(item["p_a"])
        items.append(item)
    both = [i for i in items if i["ab"] is not None and i["ba"] is not None]
    summary = {
        "n_pairs": len(pairs),
        **tally([i["outcome"] for i in items], n_resamples=n_resamples, seed=seed).as_dict(),
        "n_flipped": sum(i["ab"] != i["ba"] for i in both),
        "order_consistency": (sum(i["ab"] == i["ba"] for i in both) / len(both)) if both else None,
        "n_call_errors": sum(1 for r in records if r.get("error")),
        "position_bias": position_bias([r["position"] for r in records if not r.get("error")]),
        "verdict": verdict,
    }
    if verdict == "logprob":
        firsts = [r["p_first"] for r in records if r.get("p_first") is not None]
        scored = [i["p_a"] for i in items if i.get("p_a") is not None]
        summary["p_a_better"] = bootstrap_ci(scored, n_resamples=n_resamples, seed=seed).as_dict()
        # the judge's lean towards slot A, whatever the answers (0.5: none); averaging the orders removes it
        summary["mean_p_first"] = sum(firsts) / len(firsts) if firsts else None
    return items, summary


def _source_info(source: str, answers: Answers, generated: Path) -> dict[str, Any]:
    if is_answers_file(source):
        return {"answers_file": source, "sha256": sha256_file(source), "model": answers.model}
    return {"spec": source, "answers_file": str(generated), "model": answers.model}


class JudgeSettings(Protocol):
    """What opening a judge needs; both :class:`JudgeConfig` and the style table's config have it."""

    judge: str | None
    judge_max_tokens: int
    judge_temperature: float
    parallel: int
    cache: Path | None
    base_url: str | None


@contextlib.contextmanager
def open_judge(
    settings: JudgeSettings, judge: APIModel | JudgeFn | None = None, timeout: float = 600.0
) -> Iterator[APIModel]:
    """The judge as a live model: ``judge`` itself when it is one, a :data:`JudgeFn` wrapped in a function
    model (tests, custom judges), else the ``settings.judge`` spec opened with ``open_model`` for the duration.
    """
    from imitlab.models.api_model import APIModel, open_model
    from imitlab.models.engine import EngineSettings
    from imitlab.models.function_model import function_model

    if isinstance(judge, APIModel):  # an open model: the caller owns it
        yield judge
        return
    engine_settings = EngineSettings(concurrency=settings.parallel, timeout=timeout, cache_root=settings.cache)
    if judge is not None:
        with function_model(judge, name=settings.judge or "judge", settings=engine_settings) as model:
            yield model
        return
    if not settings.judge:
        raise ImitlabError("no judge model given")
    with open_model(settings.judge, settings=engine_settings, base_url=settings.base_url, cache=settings.cache) as m:
        yield m


def run_judge(
    config: JudgeConfig, judge: APIModel | JudgeFn | None = None, *, models: Mapping[str, APIModel] | None = None
) -> dict[str, Any]:
    """Run the whole comparison and write the output directory; returns the summary.

    ``judge`` is an open judge model, or a :data:`JudgeFn` standing in for one (tests, a custom judge); without
    it ``config.judge`` is opened with ``open_model``. Either way the judge is asked with ``judge_max_tokens``
    and ``judge_temperature``. ``models`` maps spec texts used as ``a``/``b`` to models already open.
    """
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    if config.flip not in ("tie", "exclude", "first"):
        raise ImitlabError(f"flip policy must be tie, exclude or first, not {config.flip!r}")
    if config.verdict not in VERDICT_MODES:
        raise ImitlabError(f"verdict must be text or logprob, not {config.verdict!r}")
    template = load_template(config.template, data=config.data)
    prompts = load_prompts(config.prompts, data=config.data, limit=config.limit)
    if not prompts:
        raise ImitlabError(f"prompt set {config.prompts!r} is empty")
    answers = {}
    for side, source in (("a", config.a), ("b", config.b)):
        answers[side] = resolve_answers(
            source,
            prompts,
            out / f"answers_{side}.jsonl",
            config.generation,
            cache=config.cache,
            base_url=config.base_url,
            models=models,
        )
    pairs, excluded = build_pairs(prompts, answers["a"], answers["b"])
    for ex in excluded:
        log.warning("prompt %s excluded: no answer from %s", ex["id"], " and ".join(ex["missing"]))
    if not pairs:
        raise ImitlabError(f"no prompt has answers from both sides ({len(excluded)} excluded); check the answer files")
    atomic_write_text(out / "pairs.jsonl", "".join(json.dumps(asdict(p), ensure_ascii=False) + "\n" for p in pairs))
    with open_judge(config, judge) as model:
        records = judge_pairs(pairs, template, model, out / "judgments.jsonl", use_reference=config.reference == "auto",
                              judge_name=config.judge or model.spec, max_tokens=config.judge_max_tokens,
                              temperature=config.judge_temperature, verdict=config.verdict)  # fmt: skip
    items, numbers = summarize(pairs, records, config.flip, n_resamples=config.n_resamples, seed=config.seed,
                               verdict=config.verdict)  # fmt: skip
    atomic_write_text(out / "items.jsonl", "".join(json.dumps(json_ready(i)) + "\n" for i in items))
    summary = {
        "a": _source_info(config.a, answers["a"], out / "answers_a.jsonl"),
        "b": _source_info(config.b, answers["b"], out / "answers_b.jsonl"),
        "judge": config.judge,
        "template": {"name": template.name, "source": template.source},
        "prompts": config.prompts,
        "flip": config.flip,
        "reference": config.reference,
        "n_reference_guided": sum(1 for r in records if r.get("reference_used")) // 2,
        **numbers,
        "excluded": excluded,
        "unmatched_answers": {"a": answers["a"].unmatched[:50], "b": answers["b"].unmatched[:50]},
        "manifest": {
            "config": config.as_dict(),
            "python": platform.python_version(),
        },
    }
    summary = json_ready(summary)
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2, ensure_ascii=False, allow_nan=False) + "\n")
    return summary


@dataclass
class TimedJudging:
    """What :func:`judge_pairs_in_time` judged and what it cost (for a run's manifest)."""

    records: list[dict[str, Any]]
    usage: dict[str, Any]
    seconds: float
    load_before: tuple[float, float, float]


def judge_pairs_in_time(
    pairs: list[Pair], template: JudgeTemplate, settings: Any, judge: Any, judgments_path: Path, *,
    chunk: int, verdict: str,
) -> TimedJudging:  # fmt: skip
    """Judge ``pairs`` (both orders) in chunks of ``chunk``, stopping after the chunk that passes
    ``settings.max_seconds`` (None: all at once). Used by calibration and the probe, whose runs must fit a budget."""
    import os
    import time

    load_before, start = os.getloadavg(), time.perf_counter()
    records: list[dict[str, Any]] = []
    with open_judge(settings, judge) as model:
        step = chunk if settings.max_seconds is not None else max(1, len(pairs))
        for at in range(0, len(pairs), step):
            if at and settings.max_seconds is not None and time.perf_counter() - start > settings.max_seconds:
                break
            records += judge_pairs(pairs[at : at + step], template, model, judgments_path, use_reference=False,
                                   judge_name=settings.judge or model.spec, max_tokens=settings.judge_max_tokens,
                                   temperature=settings.judge_temperature, verdict=verdict)  # fmt: skip
        usage = model.usage
    return TimedJudging(records, usage, time.perf_counter() - start, load_before)
