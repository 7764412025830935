"""``imitlab collect``: send every prompt to the teacher and write its conversations, fast and resumably.

Public entry point: :func:`collect`. Output directory (a data set, see docs/collect.md)::

    conversations.jsonl   one record per (prompt, sample), appended as answers arrive
    failures.jsonl        one line per (prompt, sample) that is failed now: reason, attempts, prompt hash
    settings.json         teacher, sampling parameters and system prompt; a resume must match them
    manifest.json         counts, tokens, cost, failures, hashes (rewritten atomically at the end of a run)
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import openai
from rich.console import Console

from imitlab.collect.config import CollectConfig
from imitlab.collect.store import AppendLog, load_done
from imitlab.errors import ImitlabError
from imitlab.fileio import atomic_write_text, read_jsonl, repair_tail, sha256_file
from imitlab.models.api_model import APIModel, open_model
from imitlab.models.engine import EngineAborted, Request, RequestFailed
from imitlab.prompts.schema import PromptRecord, read_prompt_set

log = logging.getLogger(__name__)

CONVERSATIONS = "conversations.jsonl"
FAILURES = "failures.jsonl"
SETTINGS = "settings.json"
MANIFEST = "manifest.json"


class CollectAborted(ImitlabError):
    """A failure that would hit every prompt alike (bad key, unknown model): the run stops."""


@dataclass
class RunStats:
    """What this run did (the manifest also totals the whole output file)."""

    jobs: int = 0  # (prompt, sample) pairs that were still to do when the run started
    written: int = 0
    cached: int = 0  # answered entirely from the response cache
    failed: int = 0
    retries: int = 0
    prompt_tokens: int = 0  # fresh (not cached) requests only
    completion_tokens: int = 0
    failure_reasons: Counter[str] = field(default_factory=Counter)
    anomalies: Counter[str] = field(default_factory=Counter)  # responses refused as not belonging to a request
    elapsed_s: float = 0.0

    @property
    def completion_tokens_per_s(self) -> float:
        return self.completion_tokens / self.elapsed_s if self.elapsed_s > 0 else 0.0


@dataclass
class CollectResult:
    out: Path
    run: RunStats
    manifest: dict[str, Any]

    @property
    def conversations(self) -> Path:
        return self.out / CONVERSATIONS


def record_id(prompt_id: str, sample: int) -> str:
    return prompt_id if sample == 0 else f"{prompt_id}#{sample}"


def teacher_identity(teacher: str, base_url: str | None = None) -> str:
    """What the cache key and settings.json call the teacher: stable across runs and ports."""
    from imitlab.models.api_model import model_identity
    from imitlab.models.spec import parse_spec

    return model_identity(parse_spec(teacher, base_url=base_url))


def _prompt_sha(prompt: PromptRecord) -> str:
    return hashlib.sha256(json.dumps([prompt.system, prompt.turns], ensure_ascii=False).encode()).hexdigest()[:16]


class _Collector:
    """Runs one (prompt, sample) job through the engine: every turn of the conversation, then one record."""

    def __init__(self, model: APIModel, cfg: CollectConfig, out_log: AppendLog, fail_log: AppendLog,
                 stats: RunStats) -> None:  # fmt: skip
        self.model = model
        self.cfg = cfg
        self.params = cfg.sampling_params()
        self.out_log = out_log
        self.fail_log = fail_log
        self.stats = stats

    async def run_job(self, job: tuple[PromptRecord, int]) -> None:
        prompt, sample = job
        system = prompt.system if prompt.system is not None else self.cfg.system
        messages: list[dict[str, str]] = [{"role": "system", "content": system}] if system else []
        usage = {"prompt_tokens": 0, "completion_tokens": 0}
        all_cached, latency, response = True, 0.0, None
        engine = self.model.engine
        try:
            for turn in prompt.turns:
                messages.append({"role": "user", "content": turn})
                request = Request.chat(messages, sample=sample, tag=record_id(prompt.id, sample),
                                       stream=self.cfg.stream or None, **self.params)  # fmt: skip
                response = await engine.submit(request, allow_empty=False)
                messages.append({"role": "assistant", "content": response.text})
                all_cached &= response.cached
                latency += response.latency_s or 0.0
                usage["prompt_tokens"] += response.prompt_tokens or 0
                usage["completion_tokens"] += response.completion_tokens or 0
        except RequestFailed as exc:
            self.stats.failed += 1
            self.stats.failure_reasons[_reason_kind(exc.failure.reason)] += 1
            self.fail_log.append(
                {
                    "prompt_id": prompt.id,
                    "sample": sample,
                    "prompt_sha256": _prompt_sha(prompt),
                    "prompts_file": str(self.cfg.prompts),
                    "prompt_preview": (prompt.turns[0] if prompt.turns else "")[:200],
                    "reason": exc.failure.reason,
                    "status": exc.failure.status,
                    "attempts": exc.attempts,
                    "time": round(time.time(), 3),
                }
            )
            return
        assert response is not None
        self.stats.written += 1
        self.stats.cached += all_cached
        self.out_log.append(
            {
                "id": record_id(prompt.id, sample),
                "prompt_id": prompt.id,
                "sample": sample,
                "messages": messages,
                "source": prompt.source,
                "teacher": self.cfg.teacher,
                "model": response.model,
                "params": self.params,
                "finish_reason": response.finish_reason,
                "usage": usage,
                "cached": all_cached,
                "latency_s": round(latency, 3),
                "created": round(time.time(), 3),
                "meta": prompt.meta,
            }
        )


def _reason_kind(reason: str) -> str:
    return reason.split(":", 1)[0]


async def collect_async(
    model: APIModel,
    prompts: list[PromptRecord],
    cfg: CollectConfig,
    *,
    stats: RunStats | None = None,
) -> RunStats:
    """Collect the outstanding (prompt, sample) pairs into ``cfg.out``; the core of :func:`collect`."""
    out = cfg.out
    done = load_done(out / CONVERSATIONS)
    failed_before = compact_failures(out / FAILURES, done)
    jobs = [
        (p, s)
        for p in prompts
        for s in range(cfg.n_samples)
        if (p.id, s) not in done and (cfg.retry_failed or (p.id, s) not in failed_before)
    ]
    stats = stats if stats is not None else RunStats()
    stats.jobs = len(jobs)
    out_log, fail_log = AppendLog(out / CONVERSATIONS), AppendLog(out / FAILURES)
    out_log.start()
    fail_log.start()
    collector = _Collector(model, cfg, out_log, fail_log, stats)
    engine = model.engine
    before = engine.usage.as_dict()
    start = time.perf_counter()
    total = len(prompts) * cfg.n_samples
    try:
        await engine.run_jobs(jobs, collector.run_job, desc="collect", total=total, done_before=total - len(jobs))
    except EngineAborted as exc:
        raise CollectAborted(f"{exc} (from {cfg.teacher})") from None
    finally:
        stats.elapsed_s = time.perf_counter() - start
        after = engine.usage.as_dict()
        stats.retries = after["retries"] - before["retries"]
        stats.prompt_tokens = after["prompt_tokens"] - before["prompt_tokens"]
        stats.completion_tokens = after["completion_tokens"] - before["completion_tokens"]
        stats.anomalies = Counter({k: v - before["anomalies"].get(k, 0) for k, v in after["anomalies"].items()})
        await out_log.aclose()
        await fail_log.aclose()
    return stats


def _last_failures(path: Path) -> dict[tuple[str, int], dict[str, Any]]:
    if not path.is_file():
        return {}
    repair_tail(path)
    return {(str(r.get("prompt_id")), int(r.get("sample", 0))): r for r in read_jsonl(path)}


def compact_failures(path: Path, done: dict[tuple[str, int], Any]) -> dict[tuple[str, int], dict[str, Any]]:
    """Rewrite the failures file (atomically) to one current record per (prompt, sample) still unanswered.

    During a run failures are appended (crash-safe); between runs the file is compacted so that, across any
    number of resumes, a prompt is listed at most once and never as both failed and answered.
    """
    last = {k: r for k, r in _last_failures(path).items() if k not in done}
    if path.is_file():
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for _, r in sorted(last.items()))
        if text != path.read_text(encoding="utf-8"):
            atomic_write_text(path, text)
    return last


def _check_settings(out: Path, settings: dict[str, Any]) -> None:
    path = out / SETTINGS
    if path.is_file():
        before = json.loads(path.read_text())
        diff = sorted(k for k in set(before) | set(settings) if before.get(k) != settings.get(k))
        if diff:
            raise ImitlabError(
                f"{out} was collected with different settings ({', '.join(diff)}: "
                + "; ".join(f"{k}={before.get(k)!r} now {settings.get(k)!r}" for k in diff)
                + "). Use a new --out directory, or the same settings to resume."
            )
    else:
        atomic_write_text(path, json.dumps(settings, indent=2, ensure_ascii=False) + "\n")


def _record_cost(record: dict[str, Any], cfg: CollectConfig) -> float:
    """USD for one fresh record at the configured prices, less the discount a batch answer carries."""
    usage = record["usage"]
    full = (usage["prompt_tokens"] * (cfg.price_prompt_per_m or 0)
            + usage["completion_tokens"] * (cfg.price_completion_per_m or 0)) / 1e6  # fmt: skip
    return full * (1.0 - float((record.get("batch") or {}).get("discount", 0.0)))


def build_manifest(out: Path, cfg: CollectConfig, prompts: list[PromptRecord], stats: RunStats) -> dict[str, Any]:
    """Totals over the whole output file (all runs), plus what this run did."""
    import platform

    import imitlab

    records = list(load_done(out / CONVERSATIONS).values())
    wanted = {(p.id, s) for p in prompts for s in range(cfg.n_samples)}
    have = {(r["prompt_id"], r["sample"]) for r in records}
    failures = [f for k, f in _last_failures(out / FAILURES).items() if k in wanted and k not in have]
    fresh = [r for r in records if not r.get("cached")]
    tok = {
        "prompt_tokens": sum(r["usage"]["prompt_tokens"] for r in records),
        "completion_tokens": sum(r["usage"]["completion_tokens"] for r in records),
        "fresh_prompt_tokens": sum(r["usage"]["prompt_tokens"] for r in fresh),
        "fresh_completion_tokens": sum(r["usage"]["completion_tokens"] for r in fresh),
    }
    cost = None
    if cfg.price_prompt_per_m is not None or cfg.price_completion_per_m is not None:
        cost = round(sum(_record_cost(r, cfg) for r in fresh), 6)
    conv = out / CONVERSATIONS
    return {
        "schema": "imitlab.dataset/1",
        "operation": "collect",
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "teacher": cfg.teacher,
        "params": cfg.sampling_params(),
        "system": cfg.system,
        "n_samples": cfg.n_samples,
        "sources": [{"path": str(cfg.prompts), "sha256": sha256_file(cfg.prompts), "prompts": len(prompts)}],
        "counts": {
            "expected": len(wanted),
            "collected": len(have & wanted),
            "failed": len(failures),
            "missing": len(wanted - have) - len(failures),  # only after an interrupted run
            "records": len(records),
        },
        "tokens": tok,
        "cost_usd": cost,
        "prices_per_million": {"prompt": cfg.price_prompt_per_m, "completion": cfg.price_completion_per_m},
        "failures": sorted(failures, key=lambda f: (f["prompt_id"], f["sample"])),
        # Which model each answer says it came from: a name other than the teacher's is an answer from another
        # model (a misrouted load balancer, or a deployment's own naming); each record keeps its own in "model".
        "served_by": dict(Counter(str(r.get("model")) for r in records)),
        "last_run": {
            "jobs": stats.jobs,
            "written": stats.written,
            "cached": stats.cached,
            "failed": stats.failed,
            "retries": stats.retries,
            "failure_reasons": dict(stats.failure_reasons),
            "anomalies_refused": dict(stats.anomalies),
            "elapsed_s": round(stats.elapsed_s, 3),
            "completion_tokens_per_s": round(stats.completion_tokens_per_s, 2),
            "concurrency": cfg.concurrency,
        },
        "files": {
            CONVERSATIONS: {"sha256": sha256_file(conv) if conv.is_file() else None, "records": len(records)}
        },
        "versions": {"imitlab": getattr(imitlab, "__version__", "0"), "openai": openai.__version__,
                     "python": platform.python_version()},
    }  # fmt: skip


def collect(
    cfg: CollectConfig,
    *,
    model: APIModel | None = None,
    console: Console | None = None,
) -> CollectResult:
    """Collect the teacher's answers to every prompt in ``cfg.prompts`` into ``cfg.out``.

    Rerunning the same command resumes: finished (prompt, sample) pairs are skipped, cached answers cost
    nothing, and earlier failures are retried. ``model`` is an open teacher (its engine's settings apply);
    without one the ``cfg.teacher`` spec is opened for the run (``openai:NAME`` with ``cfg.base_url`` for a running
    endpoint). The teacher's identity, never its port, is what a resume must match.
    """
    if cfg.batch or cfg.batch_file_only or cfg.merge_batch_output is not None:
        if model is not None:
            raise ImitlabError("batch collection opens its own Batch API client; pass no model")
        from imitlab.collect.batch import collect_batch  # here: batch imports this module

        return collect_batch(cfg, console=console)
    prompts = read_prompt_set(cfg.prompts)
    teacher_id = model.identity if model is not None else teacher_identity(cfg.teacher, cfg.base_url)
    cfg.out.mkdir(parents=True, exist_ok=True)
    _check_settings(cfg.out, {"teacher": teacher_id, "params": cfg.sampling_params(), "system": cfg.system})
    with contextlib.ExitStack() as stack:
        if model is None:
            model = stack.enter_context(open_model(cfg.teacher, settings=cfg.engine_settings(), base_url=cfg.base_url,
                                                   cache=cfg.cache_root, ctx_per_slot=cfg.ctx_per_slot,
                                                   console=console))  # fmt: skip
        stats = RunStats()
        try:
            model.engine.run(collect_async(model, prompts, cfg, stats=stats))
        finally:
            compact_failures(cfg.out / FAILURES, load_done(cfg.out / CONVERSATIONS))
            manifest = build_manifest(cfg.out, cfg, prompts, stats)
            atomic_write_text(cfg.out / MANIFEST, json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    return CollectResult(out=cfg.out, run=stats, manifest=manifest)
