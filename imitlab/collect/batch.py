"""``imitlab collect --batch``: collection through the OpenAI Batch API, into the same exactly-once store.

Public entry point: :func:`collect_batch` (``collect(cfg)`` calls it when ``cfg.batch``, ``cfg.batch_file_only``
or ``cfg.merge_batch_output`` is set). Three modes:

* ``--batch``: write the request files, upload them (``/v1/files``), create the batches (``/v1/batches``,
  ``/v1/chat/completions``, 24 h window), poll with backoff, download the output and error files, merge.
* ``--batch-file-only``: write ``OUT/batch/requests.jsonl`` and stop (for vLLM's ``run_batch``, or a provider's
  web upload).
* ``--merge-batch-output FILE``: merge a result file made elsewhere, with the same checks.

Every step is written to ``OUT/batch.json`` (atomically) before the next one starts, so a killed process picks up
where it was: a batch submitted but not finished is polled again, one finished but not merged is merged, one
merged is left alone. A request the server did not run (expired, cancelled), answered with a retryable error, or
whose result line was refused goes into the next batch round; nothing already collected is asked again.
Refused result lines are logged to ``OUT/batch/refused.jsonl`` and counted in the manifest, never written.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from rich.console import Console

from imitlab.collect.batch_lines import (
    ENDPOINT,
    BatchJob,
    ResultCheck,
    build_jobs,
    check_results,
    read_custom_ids,
    request_chunks,
)
from imitlab.collect.config import CollectConfig
from imitlab.collect.runner import (
    CONVERSATIONS,
    FAILURES,
    MANIFEST,
    CollectResult,
    RunStats,
    _check_settings,
    _prompt_sha,
    build_manifest,
    compact_failures,
)
from imitlab.collect.store import load_done
from imitlab.errors import ImitlabError
from imitlab.fileio import atomic_path, atomic_write_text, sha256_file
from imitlab.models.engine import KEY_ENVS, ProgressBar, Response
from imitlab.models.response_cache import ResponseCache, cache_key, default_cache_path
from imitlab.models.retry import classify
from imitlab.models.spec import BASE_URL_ENVS, ModelSpec, parse_spec
from imitlab.prompts.schema import read_prompt_set

log = logging.getLogger(__name__)

STATE = "batch.json"
BATCH_DIR = "batch"
REFUSED = "refused.jsonl"
OFFLINE_REQUESTS = "requests.jsonl"
# The endpoint name a teacher gets when no --base-url is given for an offline request file (vLLM's run_batch):
# it keys the response cache and settings.json, so offline answers never pass for a hosted model's.
OFFLINE_BASE_URL = "offline://vllm-run-batch"
TERMINAL = frozenset({"completed", "expired", "failed", "cancelled"})
_MAX_FAILED_POLLS = 30  # consecutive status polls that fail before the run stops (the batch runs on regardless)
_LIST_MARGIN_S = 3600  # when looking for a batch made from our upload, scan back this far before the upload


class BatchFailed(ImitlabError):
    """The server refused a batch as a whole (status ``failed``: its input did not validate)."""


# -- the state file ------------------------------------------------------------------------------------------
@dataclass
class BatchEntry:
    """One batch: its request file and how far it got. ``stage`` only moves forward:
    written -> uploaded -> submitted -> finished -> downloaded -> merged."""

    n: int
    round: int
    request_file: str  # relative to the output directory
    requests: int
    sha256: str
    stage: str = "written"
    input_file_id: str | None = None
    uploaded_at: float | None = None
    batch_id: str | None = None
    status: str | None = None  # the server's status
    request_counts: dict[str, int] | None = None
    output_file_id: str | None = None
    error_file_id: str | None = None
    errors: list[str] = field(default_factory=list)  # batch-level errors (a failed validation)
    downloaded: list[str] = field(default_factory=list)  # result files on disk, relative to the output directory
    merged: dict[str, Any] | None = None  # what the merge did

    @classmethod
    def from_dict(cls, value: dict[str, Any]) -> BatchEntry:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in value.items() if k in known})


class BatchState:
    """``OUT/batch.json``: every batch this output directory has sent, rewritten atomically at each step."""

    def __init__(self, path: Path, teacher: str, entries: list[BatchEntry]) -> None:
        self.path = path
        self.teacher = teacher
        self.entries = entries

    @classmethod
    def load(cls, out: Path, teacher: str) -> BatchState:
        path = out / STATE
        if not path.is_file():
            return cls(path, teacher, [])
        try:
            value = json.loads(path.read_text(encoding="utf-8"))
            entries = [BatchEntry.from_dict(e) for e in value["batches"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise ImitlabError(f"{path}: not a batch state file ({exc})") from None
        if value.get("teacher") != teacher:
            raise ImitlabError(f"{path}: its batches are for {value.get('teacher')!r}, not {teacher!r}")
        return cls(path, teacher, entries)

    def save(self) -> None:
        value = {"schema": "imitlab.batch/1", "teacher": self.teacher, "batches": [asdict(e) for e in self.entries]}
        atomic_write_text(self.path, json.dumps(value, indent=2, ensure_ascii=False) + "\n")

    def summary(self) -> list[dict[str, Any]]:
        return [{"n": e.n, "round": e.round, "batch_id": e.batch_id, "status": e.status, "stage": e.stage,
                 "requests": e.requests, "merged": e.merged} for e in self.entries]  # fmt: skip


@contextlib.contextmanager
def _exclusive(out: Path) -> Iterator[None]:
    """One batch process per output directory: two pollers could both submit the same missing requests."""
    (out / BATCH_DIR).mkdir(parents=True, exist_ok=True)
    fd = os.open(out / BATCH_DIR / ".lock", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ImitlabError(f"{out}: another `imitlab collect --batch` is working on this directory") from None
        yield
    finally:
        os.close(fd)


# -- the store: the same files live collection writes ---------------------------------------------------------
def _append_jsonl(path: Path, records: list[dict[str, Any]], chunk_bytes: int = 8 << 20) -> None:
    """Append whole lines with ``write`` on an ``O_APPEND`` descriptor, then ``fsync``: a kill never tears a line.
    A merge killed between chunks is simply merged again (records already written are skipped then)."""
    if not records:
        return
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        pending: list[bytes] = []
        size = 0
        for record in records:
            line = (json.dumps(record, ensure_ascii=False) + "\n").encode()
            pending.append(line)
            size += len(line)
            if size >= chunk_bytes:
                _write_all(fd, b"".join(pending))
                pending, size = [], 0
        if pending:
            _write_all(fd, b"".join(pending))
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


@dataclass
class MergeCounts:
    written: int = 0
    already: int = 0  # answers for records already in conversations.jsonl (a re-merge, or collected live)
    failed: int = 0
    not_run: int = 0  # expired or cancelled before they ran
    refused: int = 0
    no_result: int = 0  # asked in this batch, but no line answers them


class _Store:
    """The output directory's exactly-once store, seen from a batch: what is done, what is still to ask."""

    def __init__(self, cfg: CollectConfig, identity: str, jobs: list[BatchJob], stats: RunStats) -> None:
        self.cfg = cfg
        self.identity = identity
        self.jobs = {job.custom_id: job for job in jobs}
        self.stats = stats
        self.params = cfg.sampling_params()
        self.done = set(load_done(cfg.out / CONVERSATIONS))
        self.failed_before = set(compact_failures(cfg.out / FAILURES, dict.fromkeys(self.done)))
        self.failed_for_good: set[tuple[str, int]] = set()  # in this run: not asked again until the next run
        self.cache = ResponseCache(cfg.cache_path or default_cache_path(cfg.cache_root)) if cfg.use_cache else None
        self.refused_log = cfg.out / BATCH_DIR / REFUSED

    def close(self) -> None:
        if self.cache is not None:
            self.cache.close()

    def _cache_key(self, job: BatchJob) -> str:
        return cache_key(self.identity, job.messages, self.params, job.sample)

    def outstanding(self) -> list[BatchJob]:
        """Requests still to ask: not collected, not failed for good in this run, and (with ``--no-retry-failed``)
        not failed before. Answers already in the response cache are written now instead, at no cost."""
        todo, cached = [], []
        for job in self.jobs.values():
            key = job.key
            if key in self.done or key in self.failed_for_good:
                continue
            if not self.cfg.retry_failed and key in self.failed_before:
                continue
            hit = self.cache.get(self._cache_key(job)) if self.cache is not None else None
            if hit is not None:
                cached.append(self._record(job, Response.from_cache(hit), batch=None))
                self.done.add(key)
            else:
                todo.append(job)
        _append_jsonl(self.cfg.out / CONVERSATIONS, cached)
        self.stats.written += len(cached)
        self.stats.cached += len(cached)
        return todo

    def _record(self, job: BatchJob, response: Response, batch: dict[str, Any] | None) -> dict[str, Any]:
        """A conversations.jsonl record, as live collection writes it (plus ``batch`` for batch answers)."""
        record = {
            "id": job.record_id,
            "prompt_id": job.prompt.id,
            "sample": job.sample,
            "messages": [*job.messages, {"role": "assistant", "content": response.text}],
            "source": job.prompt.source,
            "teacher": self.cfg.teacher,
            "model": response.model,
            "params": self.params,
            "finish_reason": response.finish_reason,
            "usage": {
                "prompt_tokens": response.prompt_tokens or 0,
                "completion_tokens": response.completion_tokens or 0,
            },
            "cached": response.cached,
            # a batch has no per-request latency
            "latency_s": None if batch is not None else round(response.latency_s, 3),
            "created": round(time.time(), 3),
            "meta": job.prompt.meta,
        }
        if batch is not None:
            record["batch"] = batch
        return record

    def merge(self, check: ResultCheck, *, asked: list[str], batch_id: str | None, source: str) -> MergeCounts:
        """Write the accepted answers and the failures of one result set; log the refusals."""
        counts = MergeCounts(refused=len(check.refused))
        records, failures = [], []
        for cid, (answer, _) in check.answers.items():
            job = self.jobs[cid]
            if job.key in self.done:
                counts.already += 1
                continue
            response = Response(text=answer.text, finish_reason=answer.finish_reason,
                                prompt_tokens=answer.prompt_tokens, completion_tokens=answer.completion_tokens,
                                model=answer.model, latency_s=0.0, response_id=answer.response_id)  # fmt: skip
            if self.cache is not None:  # stored before it is written, as live collection does
                self.cache.put(self._cache_key(job), response.to_cache())
            batch = {"id": batch_id, "source": source, "custom_id": cid, "request_id": answer.request_id,
                     "discount": self.cfg.batch_discount}  # fmt: skip
            records.append(self._record(job, response, batch))
            self.done.add(job.key)
            self.stats.prompt_tokens += answer.prompt_tokens
            self.stats.completion_tokens += answer.completion_tokens
        for cid, (failure, where) in check.failures.items():
            job = self.jobs[cid]
            if job.key in self.done:
                continue
            if failure.not_run:
                counts.not_run += 1
                continue
            counts.failed += 1
            self.stats.failed += 1
            self.stats.failure_reasons[failure.reason.split(":", 1)[0]] += 1
            if not failure.retryable:
                self.failed_for_good.add(job.key)
            failures.append({
                "prompt_id": job.prompt.id, "sample": job.sample, "prompt_sha256": _prompt_sha(job.prompt),
                "prompts_file": str(self.cfg.prompts), "prompt_preview": job.prompt.turns[0][:200],
                "reason": failure.reason, "status": failure.status, "attempts": 1, "batch_id": batch_id,
                "result_line": where, "time": round(time.time(), 3),
            })  # fmt: skip
        answered = set(check.answers) | set(check.failures)
        counts.no_result = sum(1 for cid in asked if cid not in answered and cid in self.jobs
                               and self.jobs[cid].key not in self.done)  # fmt: skip
        self.stats.anomalies.update(check.refused_kinds)
        self.refused_log.parent.mkdir(parents=True, exist_ok=True)
        _append_jsonl(self.refused_log, [
            {"batch_id": batch_id, "where": r.where, "custom_id": r.custom_id, "kind": r.kind, "detail": r.detail,
             "time": round(time.time(), 3)} for r in check.refused
        ])  # fmt: skip
        _append_jsonl(self.cfg.out / CONVERSATIONS, records)
        _append_jsonl(self.cfg.out / FAILURES, failures)
        counts.written = len(records)
        self.stats.written += len(records)
        return counts


# -- online batches -------------------------------------------------------------------------------------------
class _BatchRun:
    """Drives the batches of one output directory through the Batch API until nothing is left to ask."""

    def __init__(self, cfg: CollectConfig, spec: ModelSpec, store: _Store, state: BatchState,
                 console: Console | None) -> None:  # fmt: skip
        import openai

        self.cfg, self.store, self.state, self.console = cfg, store, state, console or Console(stderr=True)
        api_key = next((os.environ[k] for k in KEY_ENVS if os.environ.get(k)), None) or "sk-no-key-needed"
        # The SDK's own retries (with Retry-After) cover files and status polls: repeating them is harmless.
        self.client = openai.OpenAI(base_url=spec.base_url, api_key=api_key, max_retries=cfg.max_retries,
                                    timeout=cfg.timeout)  # fmt: skip
        # Uploads and downloads of up to 200 MB need longer than one chat request.
        self.transfer = self.client.with_options(timeout=max(cfg.timeout, 1800.0))

    def _path(self, relative: str) -> Path:
        return self.cfg.out / relative

    def run(self) -> None:
        self._drop_unsent()
        rounds = 0
        while True:
            active = [e for e in self.state.entries if e.stage != "merged"]
            if not active:
                todo = self.store.outstanding()
                if not todo:
                    return
                if rounds >= self.cfg.batch_max_rounds:
                    self.console.print(f"{len(todo)} requests are still missing after {rounds} batch round(s) in "
                                       "this run; rerun the command to submit them", markup=False)  # fmt: skip
                    return
                rounds += 1
                active = self.write_round(todo)
            for entry in active:
                self.send(entry)
            self.poll(active)
            for entry in active:
                self.fetch(entry)
                self.merge(entry)
            failed = [e for e in active if e.status == "failed"]
            if failed:
                errors = "; ".join(err for e in failed for err in e.errors) or "no reason given"
                raise BatchFailed(f"batch {failed[0].batch_id} ({failed[0].request_file}) failed: {errors}")
            if any(e.status == "cancelled" for e in active):
                self.console.print("a batch was cancelled; its answers are merged. Rerun the command to submit the "
                                   "requests it did not run", markup=False)  # fmt: skip
                return

    def _drop_unsent(self) -> None:
        """Request files written but never uploaded are written anew from what is outstanding now."""
        unsent = [e for e in self.state.entries if e.stage == "written"]
        if unsent:
            for entry in unsent:
                self._path(entry.request_file).unlink(missing_ok=True)
            self.state.entries = [e for e in self.state.entries if e.stage != "written"]
            self.state.save()

    def write_round(self, todo: list[BatchJob]) -> list[BatchEntry]:
        round_no = max((e.round for e in self.state.entries), default=0) + 1
        first = max((e.n for e in self.state.entries), default=0) + 1
        entries = []
        for i, lines in enumerate(request_chunks(todo, max_requests=self.cfg.batch_max_requests,
                                                 max_bytes=self.cfg.batch_max_bytes)):  # fmt: skip
            relative = f"{BATCH_DIR}/batch-{first + i:03d}.requests.jsonl"
            path = self._path(relative)
            with atomic_path(path) as tmp:
                tmp.write_bytes(b"".join(lines))
            entries.append(BatchEntry(n=first + i, round=round_no, request_file=relative, requests=len(lines),
                                      sha256=sha256_file(path)))  # fmt: skip
        self.state.entries.extend(entries)
        self.state.save()
        return entries

    def send(self, entry: BatchEntry) -> None:
        """Upload the request file and create its batch; each id is saved before the next call."""
        if entry.stage == "written":
            path = self._path(entry.request_file)
            if sha256_file(path) != entry.sha256:
                raise ImitlabError(f"{path}: changed since it was written (sha256 differs from {STATE})")
            with open(path, "rb") as f:
                uploaded = self.transfer.files.create(file=(path.name, f), purpose="batch")
            entry.input_file_id, entry.uploaded_at, entry.stage = uploaded.id, time.time(), "uploaded"
            self.state.save()
        if entry.stage == "uploaded":
            # A process killed after the server created the batch but before its id was saved: adopt that batch
            # rather than pay for a second one.
            batch = self._find_batch(entry) or self._create(entry)
            entry.batch_id, entry.stage = batch.id, "submitted"
            self._observe(entry, batch)
            self.state.save()

    def _find_batch(self, entry: BatchEntry) -> Any:
        import openai

        oldest = (entry.uploaded_at or 0.0) - _LIST_MARGIN_S
        try:
            for batch in self.client.batches.list(limit=100):  # newest first; the SDK pages on
                if batch.input_file_id == entry.input_file_id:
                    return batch
                if batch.created_at < oldest:
                    return None
        except openai.APIStatusError as exc:
            if exc.status_code not in (404, 405, 501):
                raise
            # An OpenAI-compatible server without GET /v1/batches: nothing to adopt can be found.
            log.warning("%s cannot list batches (HTTP %d); a batch lost in a kill cannot be adopted",
                        self.client.base_url, exc.status_code)  # fmt: skip
        return None

    def _create(self, entry: BatchEntry) -> Any:
        """Create the batch without blind retries: a create whose reply was lost may have made one, so after a
        transient error we look for it before asking again."""
        creator = self.client.with_options(max_retries=0)
        assert entry.input_file_id is not None
        for attempt in range(self.cfg.max_retries + 1):
            try:
                return creator.batches.create(
                    input_file_id=entry.input_file_id, endpoint=ENDPOINT, completion_window="24h",
                    metadata={"imitlab_request_file": entry.request_file[-500:], "imitlab_sha256": entry.sha256[:64]},
                )  # fmt: skip
            except Exception as exc:  # classified: only transient failures are tried again
                failure = classify(exc)
                if not failure.retryable or attempt == self.cfg.max_retries:
                    raise ImitlabError(f"creating the batch for {entry.request_file}: {failure.reason}") from None
                log.warning("creating the batch for %s: %s; checking whether it exists", entry.request_file,
                            failure.reason)  # fmt: skip
            if (found := self._find_batch(entry)) is not None:
                return found
            time.sleep(min(self.cfg.backoff_base * 2**attempt, self.cfg.backoff_max))
        raise AssertionError("unreachable")

    def _observe(self, entry: BatchEntry, batch: Any) -> bool:
        """Copy what the server says about a batch into its entry; True if anything changed."""
        counts = batch.request_counts
        errors = [f"{e.code}: {e.message}" + (f" (line {e.line})" if e.line else "")
                  for e in ((batch.errors.data or []) if batch.errors else [])]  # fmt: skip
        new = {
            "status": batch.status,
            "request_counts": {"total": counts.total, "completed": counts.completed, "failed": counts.failed}
            if counts
            else None,
            "output_file_id": batch.output_file_id,
            "error_file_id": batch.error_file_id,
            "errors": errors,
        }
        changed = any(getattr(entry, k) != v for k, v in new.items())
        for k, v in new.items():
            setattr(entry, k, v)
        return changed

    def poll(self, entries: list[BatchEntry]) -> None:
        """Poll every submitted batch until all have ended, waiting longer each time (up to ``batch_poll_s``)."""
        pending = [e for e in entries if e.stage == "submitted"]
        delay = min(2.0, self.cfg.batch_poll_s)
        failed_polls = 0
        total = sum(e.requests for e in entries)
        with ProgressBar("batch", total, enabled=self.cfg.progress, console=self.console) as bar:
            shown = 0
            while True:
                for entry in list(pending):
                    assert entry.batch_id is not None
                    try:
                        batch = self.client.batches.retrieve(entry.batch_id)
                    except Exception as exc:  # classified: a server that is down now may be up at the next poll
                        failure = classify(exc)
                        failed_polls += 1
                        if not failure.retryable or failed_polls > _MAX_FAILED_POLLS:
                            raise ImitlabError(
                                f"batch {entry.batch_id}: status unavailable ({failure.reason}); it runs on at the "
                                "server: rerun the command to resume"
                            ) from None
                        log.warning("batch %s: status poll failed (%s)", entry.batch_id, failure.reason)
                        continue
                    failed_polls = 0
                    changed = self._observe(entry, batch)
                    if batch.status in TERMINAL:
                        entry.stage = "finished"
                        pending.remove(entry)
                    if changed or entry.stage == "finished":
                        self.state.save()
                done = sum(e.requests if e.stage != "submitted" else
                           (e.request_counts or {}).get("completed", 0) + (e.request_counts or {}).get("failed", 0)
                           for e in entries)  # fmt: skip
                statuses = ", ".join(sorted({str(e.status) for e in entries}))
                bar.advance(done - shown, note=statuses)
                shown = done
                if not pending:
                    return
                time.sleep(delay)
                delay = min(delay * 1.5, self.cfg.batch_poll_s)

    def fetch(self, entry: BatchEntry) -> None:
        if entry.stage != "finished":
            return
        downloaded = []
        for kind, file_id in (("output", entry.output_file_id), ("errors", entry.error_file_id)):
            if not file_id:
                continue
            relative = entry.request_file.replace(".requests.jsonl", f".{kind}.jsonl")
            with atomic_path(self._path(relative)) as tmp, open(tmp, "wb") as f:
                with self.transfer.files.with_streaming_response.content(file_id) as response:
                    for chunk in response.iter_bytes():
                        f.write(chunk)
                f.flush()
                os.fsync(f.fileno())
            downloaded.append(relative)
        entry.downloaded, entry.stage = downloaded, "downloaded"
        self.state.save()

    def merge(self, entry: BatchEntry) -> None:
        if entry.stage != "downloaded":
            return
        asked = read_custom_ids(self._path(entry.request_file))
        expected = {cid: self.store.jobs[cid] for cid in asked if cid in self.store.jobs}
        check = check_results([self._path(f) for f in entry.downloaded], expected, self.store.jobs)
        counts = self.store.merge(check, asked=asked, batch_id=entry.batch_id, source=entry.request_file)
        entry.merged, entry.stage = asdict(counts), "merged"
        self.state.save()
        self.console.print(
            f"batch {entry.batch_id} ({entry.status}): {counts.written} written, {counts.already} already collected, "
            f"{counts.failed} failed, {counts.not_run} not run, {counts.no_result} without a result, "
            f"{counts.refused} lines refused", markup=False, highlight=False, soft_wrap=True,
        )  # fmt: skip


# -- the entry point ------------------------------------------------------------------------------------------
def _teacher_spec(cfg: CollectConfig) -> ModelSpec:
    if not cfg.teacher.startswith("openai:"):
        raise ImitlabError(
            f"batch collection needs an openai: teacher (the Batch API's model name), not {cfg.teacher!r}; for a "
            "model you run yourself, write the request file with --batch-file-only --teacher openai:<the name vLLM "
            "serves> and run it with vLLM's run_batch"
        )
    offline = not cfg.batch  # a request file for vLLM, or a result file from it, needs no endpoint
    has_url = cfg.base_url or any(os.environ.get(e) for e in BASE_URL_ENVS)
    return parse_spec(cfg.teacher, base_url=cfg.base_url or (OFFLINE_BASE_URL if offline and not has_url else None))


def collect_batch(cfg: CollectConfig, *, console: Console | None = None) -> CollectResult:
    """Collect (or prepare, or merge) the teacher's answers to ``cfg.prompts`` by batch; see the module docstring.

    Rerunning the same command resumes from ``OUT/batch.json``. The output directory is the one live collection
    writes, with the same settings check: batch and live runs can take turns on one directory.
    """
    from imitlab.models.api_model import model_identity

    modes = [m for m, on in (("batch", cfg.batch), ("file-only", cfg.batch_file_only),
                             ("merge", cfg.merge_batch_output is not None)) if on]  # fmt: skip
    if len(modes) != 1:
        raise ImitlabError(f"choose one of --batch, --batch-file-only, --merge-batch-output (got {modes or 'none'})")
    mode = modes[0]
    console = console or Console(stderr=True)
    prompts = read_prompt_set(cfg.prompts)
    spec = _teacher_spec(cfg)
    identity = model_identity(spec)
    jobs = build_jobs(prompts, model=spec.target, params=cfg.sampling_params(), system=cfg.system,
                      n_samples=cfg.n_samples, prompts_file=cfg.prompts)  # fmt: skip
    cfg.out.mkdir(parents=True, exist_ok=True)
    _check_settings(cfg.out, {"teacher": identity, "params": cfg.sampling_params(), "system": cfg.system})
    stats = RunStats()
    start = time.perf_counter()
    extra: dict[str, Any] = {}
    with _exclusive(cfg.out):
        state = BatchState.load(cfg.out, identity)
        store = _Store(cfg, identity, jobs, stats)
        try:
            if mode == "file-only":
                extra = _write_offline_file(cfg, store, console)
            elif mode == "merge":
                extra = _merge_file(cfg, store, console)
            else:
                _BatchRun(cfg, spec, store, state, console).run()
        finally:
            store.close()
            stats.jobs = len(jobs)
            stats.elapsed_s = time.perf_counter() - start
            compact_failures(cfg.out / FAILURES, load_done(cfg.out / CONVERSATIONS))
            manifest = build_manifest(cfg.out, cfg, prompts, stats)
            manifest["batch"] = _batch_summary(cfg, mode, state, manifest, extra)
            atomic_write_text(cfg.out / MANIFEST, json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    return CollectResult(out=cfg.out, run=stats, manifest=manifest)


def _write_offline_file(cfg: CollectConfig, store: _Store, console: Console) -> dict[str, Any]:
    todo = store.outstanding()
    path = cfg.out / BATCH_DIR / OFFLINE_REQUESTS
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for job in todo:
            f.write(json.dumps(job.request_line(), ensure_ascii=False) + "\n")
    console.print(
        f"{len(todo)} requests -> {path}\nrun them with vLLM, then merge:\n"
        f"  python -m vllm.entrypoints.openai.run_batch -i {path} -o {cfg.out / BATCH_DIR / 'results.jsonl'} "
        f"--model <the model {cfg.teacher.removeprefix('openai:')!r} names>\n"
        f"  imitlab collect ... --merge-batch-output {cfg.out / BATCH_DIR / 'results.jsonl'}",
        markup=False, highlight=False, soft_wrap=True,
    )  # fmt: skip
    return {"request_file": str(path), "requests": len(todo)}


def _merge_file(cfg: CollectConfig, store: _Store, console: Console) -> dict[str, Any]:
    path = cfg.merge_batch_output
    assert path is not None
    if not path.is_file():
        raise ImitlabError(f"{path}: file not found")
    check = check_results([path], store.jobs, store.jobs)
    counts = store.merge(check, asked=[], batch_id=None, source=str(path))
    console.print(f"{path}: {counts.written} written, {counts.already} already collected, {counts.failed} failed, "
                  f"{counts.refused} lines refused", markup=False, highlight=False, soft_wrap=True)  # fmt: skip
    return {"merged_file": str(path), "sha256": sha256_file(path), "merged": asdict(counts)}


def _batch_summary(
    cfg: CollectConfig, mode: str, state: BatchState, manifest: dict[str, Any], extra: dict[str, Any]
) -> dict[str, Any]:
    """The manifest's ``batch`` section: the discount assumed, and what the answers would have cost live."""
    records = list(load_done(cfg.out / CONVERSATIONS).values())
    batch_records = [r for r in records if r.get("batch")]
    full_price = None
    if manifest["cost_usd"] is not None:
        full_price = round(sum(
            (r["usage"]["prompt_tokens"] * (cfg.price_prompt_per_m or 0)
             + r["usage"]["completion_tokens"] * (cfg.price_completion_per_m or 0)) / 1e6
            for r in records if not r.get("cached")
        ), 6)  # fmt: skip
    return {
        "mode": mode,
        "discount": cfg.batch_discount,
        "records": len(batch_records),
        "cost_usd_at_live_prices": full_price,
        "batches": state.summary(),
        **extra,
    }
