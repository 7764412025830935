"""``imitlab collect``: send every prompt to the teacher and write its conversations, fast and resumably.

Public entry point: :func:`collect`. Output directory (a data set, see docs/collect.md)::

    conversations.jsonl   one record per (prompt, sample), appended as answers arrive
    failures.jsonl        one line per prompt that ended failed in some run, with the reason
    settings.json         teacher, sampling parameters and system prompt; a resume must match them
    manifest.json         counts, tokens, cost, failures, hashes (rewritten atomically at the end of a run)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import openai
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from imitlab.collect.config import CollectConfig
from imitlab.collect.store import AppendLog, load_done
from imitlab.errors import ImitlabError
from imitlab.fileio import atomic_write_text, read_jsonl, repair_tail, sha256_file
from imitlab.models.client import ChatClient, run_closing
from imitlab.models.response_cache import ResponseCache, cache_key, default_cache_path
from imitlab.models.retry import Failure, MalformedResponse, RetryPolicy, classify
from imitlab.prompts.schema import PromptRecord, read_prompt_set

log = logging.getLogger(__name__)

CONVERSATIONS = "conversations.jsonl"
FAILURES = "failures.jsonl"
SETTINGS = "settings.json"
MANIFEST = "manifest.json"


class CollectAborted(ImitlabError):
    """A failure that would hit every prompt alike (bad key, unknown model): the run stops."""


class _JobFailed(Exception):
    def __init__(self, failure: Failure, attempts: int) -> None:
        super().__init__(failure.reason)
        self.failure = failure
        self.attempts = attempts


class _EmptyCompletion(Exception):
    pass


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
    """What the cache key calls the teacher: stable across runs (a local server's port changes each time)."""
    from imitlab.models.spec import parse_spec

    spec = parse_spec(teacher, base_url=base_url)
    if spec.kind == "packaged":
        from imitlab.models.catalog import get_packaged

        return f"packaged:{spec.target}:{get_packaged(spec.target).sha256[:16]}"
    if spec.kind == "gguf":
        return f"gguf:{sha256_file(spec.target)[:16]}"
    return f"{spec.kind}:{spec.target}@{spec.base_url or ''}"


class _Collector:
    def __init__(
        self,
        client: ChatClient,
        cfg: CollectConfig,
        teacher_id: str,
        cache: ResponseCache | None,
        out_log: AppendLog,
        fail_log: AppendLog,
        stats: RunStats,
    ) -> None:
        self.cfg = cfg
        self.model = client.model
        # Our own retry loop decides (and records) retries, so the openai client must not retry too. A fresh
        # HTTP client per run: connection pools are bound to the event loop that opened them.
        self.http = openai.DefaultAsyncHttpxClient()
        self.api = client.async_client.with_options(max_retries=0, timeout=cfg.timeout, http_client=self.http)
        self.params = cfg.sampling_params()
        self.teacher_id = teacher_id
        self.cache = cache
        self.out_log = out_log
        self.fail_log = fail_log
        self.stats = stats
        self.policy = RetryPolicy(cfg.max_retries, cfg.backoff_base, cfg.backoff_max)
        self.rng = random.Random()
        self.pause_until = 0.0  # monotonic time before which no request is sent (shared Retry-After)
        self.fatal: Failure | None = None

    async def _request(self, messages: list[dict[str, str]]) -> dict[str, Any]:
        start = time.perf_counter()
        async with asyncio.timeout(self.cfg.timeout):  # end to end, even if the server trickles bytes
            response = await self.api.chat.completions.create(model=self.model, messages=messages, **self.params)
        choices = getattr(response, "choices", None)
        if not choices:
            raise MalformedResponse(f"no choices in {str(response)[:120]!r}")
        message = getattr(choices[0], "message", None)
        text = getattr(message, "content", None)
        if not isinstance(text, str):
            raise MalformedResponse("the first choice has no message content")
        if not text.strip():
            raise _EmptyCompletion()
        usage = getattr(response, "usage", None)
        return {
            "text": text,
            "finish_reason": choices[0].finish_reason,
            "prompt_tokens": getattr(usage, "prompt_tokens", None),
            "completion_tokens": getattr(usage, "completion_tokens", None),
            "model": getattr(response, "model", None) or self.model,
            "latency_s": round(time.perf_counter() - start, 3),
        }

    async def _call(self, messages: list[dict[str, str]], sample: int) -> tuple[dict[str, Any], bool]:
        """One teacher answer (cached or fresh, with retries); raises _JobFailed or CollectAborted."""
        key = cache_key(self.teacher_id, messages, self.params, sample)
        if self.cache is not None and (hit := self.cache.get(key)) is not None:
            return hit, True
        attempt = 0
        while True:
            attempt += 1
            wait = self.pause_until - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            try:
                result = await self._request(messages)
            except _EmptyCompletion:
                raise _JobFailed(Failure("empty completion", retryable=False), attempt) from None
            except Exception as exc:  # classified below; CancelledError is a BaseException and passes
                failure = classify(exc)
                if failure.fatal:
                    self.fatal = failure
                    raise CollectAborted(f"{failure.reason} (from {self.cfg.teacher}); stopping") from None
                if not failure.retryable or attempt > self.cfg.max_retries:
                    raise _JobFailed(failure, attempt) from None
                delay = self.policy.delay(attempt, failure, self.rng)
                if failure.retry_after is not None:  # the server is rate limiting everyone: all workers wait
                    self.pause_until = max(self.pause_until, time.monotonic() + delay)
                self.stats.retries += 1
                log.debug("attempt %d failed (%s); retrying in %.2f s", attempt, failure.reason, delay)
                await asyncio.sleep(delay)
                continue
            if self.cache is not None:
                self.cache.put(key, result)
            self.stats.prompt_tokens += result["prompt_tokens"] or 0
            self.stats.completion_tokens += result["completion_tokens"] or 0
            return result, False

    async def run_job(self, prompt: PromptRecord, sample: int) -> None:
        system = prompt.system if prompt.system is not None else self.cfg.system
        messages: list[dict[str, str]] = [{"role": "system", "content": system}] if system else []
        usage = {"prompt_tokens": 0, "completion_tokens": 0}
        all_cached, latency, result = True, 0.0, {}
        try:
            for turn in prompt.turns:
                messages.append({"role": "user", "content": turn})
                result, cached = await self._call(list(messages), sample)
                messages.append({"role": "assistant", "content": result["text"]})
                all_cached &= cached
                latency += result.get("latency_s") or 0.0
                for k in usage:
                    usage[k] += result.get(k) or 0
        except _JobFailed as exc:
            self.stats.failed += 1
            self.stats.failure_reasons[_reason_kind(exc.failure.reason)] += 1
            self.fail_log.append(
                {
                    "prompt_id": prompt.id,
                    "sample": sample,
                    "reason": exc.failure.reason,
                    "status": exc.failure.status,
                    "attempts": exc.attempts,
                    "time": round(time.time(), 3),
                }
            )
            return
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
                "model": result.get("model"),
                "params": self.params,
                "finish_reason": result.get("finish_reason"),
                "usage": usage,
                "cached": all_cached,
                "latency_s": round(latency, 3),
                "created": round(time.time(), 3),
                "meta": prompt.meta,
            }
        )


def _reason_kind(reason: str) -> str:
    return reason.split(":", 1)[0]


def _progress(enabled: bool, console: Console | None) -> Progress:
    return Progress(
        TextColumn("[bold]collect[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TextColumn("[dim]{task.fields[note]}[/]"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
        disable=not enabled,
        refresh_per_second=4,
    )


async def collect_async(
    client: ChatClient,
    prompts: list[PromptRecord],
    cfg: CollectConfig,
    *,
    teacher_id: str,
    console: Console | None = None,
    stats: RunStats | None = None,
) -> RunStats:
    """Collect the outstanding (prompt, sample) pairs into ``cfg.out``; the core of :func:`collect`."""
    out = cfg.out
    done = load_done(out / CONVERSATIONS)
    failed_before = _last_failures(out / FAILURES)
    jobs = [
        (p, s)
        for p in prompts
        for s in range(cfg.n_samples)
        if (p.id, s) not in done and (cfg.retry_failed or (p.id, s) not in failed_before)
    ]
    stats = stats if stats is not None else RunStats()
    stats.jobs = len(jobs)
    cache = ResponseCache(cfg.cache_path or default_cache_path(cfg.cache_root)) if cfg.use_cache else None
    out_log, fail_log = AppendLog(out / CONVERSATIONS), AppendLog(out / FAILURES)
    out_log.start()
    fail_log.start()
    collector = _Collector(client, cfg, teacher_id, cache, out_log, fail_log, stats)
    it: Iterator[tuple[PromptRecord, int]] = iter(jobs)
    start = time.perf_counter()
    total = len(prompts) * cfg.n_samples
    with _progress(cfg.progress, console) as progress:
        task = progress.add_task("collect", total=total, completed=total - len(jobs), rate="", note="")

        async def worker() -> None:
            while collector.fatal is None and (job := next(it, None)) is not None:
                await collector.run_job(*job)
                elapsed = time.perf_counter() - start
                progress.update(
                    task,
                    advance=1,
                    rate=f"{stats.completion_tokens / max(elapsed, 1e-9):.1f} tok/s",
                    note=f"{stats.failed} failed, {stats.cached} cached, {stats.retries} retries",
                )

        try:
            workers = [asyncio.create_task(worker()) for _ in range(min(cfg.concurrency, max(1, len(jobs))))]
            try:
                await asyncio.gather(*workers)
            except BaseException:
                for w in workers:
                    w.cancel()
                await asyncio.gather(*workers, return_exceptions=True)
                raise
        finally:
            stats.elapsed_s = time.perf_counter() - start
            await collector.http.aclose()
            await out_log.aclose()
            await fail_log.aclose()
            if cache is not None:
                cache.close()
    return stats


def _last_failures(path: Path) -> dict[tuple[str, int], dict[str, Any]]:
    if not path.is_file():
        return {}
    repair_tail(path)
    return {(str(r.get("prompt_id")), int(r.get("sample", 0))): r for r in read_jsonl(path)}


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
        cost = round(
            tok["fresh_prompt_tokens"] * (cfg.price_prompt_per_m or 0) / 1e6
            + tok["fresh_completion_tokens"] * (cfg.price_completion_per_m or 0) / 1e6,
            6,
        )
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
        "last_run": {
            "jobs": stats.jobs,
            "written": stats.written,
            "cached": stats.cached,
            "failed": stats.failed,
            "retries": stats.retries,
            "failure_reasons": dict(stats.failure_reasons),
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


def collect(cfg: CollectConfig, *, client: ChatClient | None = None, console: Console | None = None) -> CollectResult:
    """Collect the teacher's answers to every prompt in ``cfg.prompts`` into ``cfg.out``.

    Rerunning the same command resumes: finished (prompt, sample) pairs are skipped, cached answers cost
    nothing, and earlier failures are retried. ``client`` overrides the teacher spec's own client (tests).
    """
    prompts = read_prompt_set(cfg.prompts)
    teacher_id = teacher_identity(cfg.teacher, cfg.base_url) if client is None else f"{cfg.teacher}@{client.base_url}"
    cfg.out.mkdir(parents=True, exist_ok=True)
    _check_settings(cfg.out, {"teacher": teacher_id, "params": cfg.sampling_params(), "system": cfg.system})
    with contextlib.ExitStack() as stack:
        if client is None:
            from imitlab.models.spec import open_chat, parse_spec

            spec = parse_spec(cfg.teacher, base_url=cfg.base_url)
            # a local teacher's llama.cpp server gets one slot per request in flight
            server = {"parallel": cfg.concurrency, "ctx_per_slot": cfg.ctx_per_slot}
            client = stack.enter_context(open_chat(spec, cache=cfg.cache_root, **server))
        stats = RunStats()
        try:
            work = collect_async(client, prompts, cfg, teacher_id=teacher_id, console=console, stats=stats)
            run_closing(work, client)
        finally:
            manifest = build_manifest(cfg.out, cfg, prompts, stats)
            atomic_write_text(cfg.out / MANIFEST, json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    return CollectResult(out=cfg.out, run=stats, manifest=manifest)
