"""The batch file formats: request lines out, result lines in, and the checks that tie each result to its request.

A request line is what the OpenAI Batch API and vLLM's ``run_batch`` read::

    {"custom_id": "im-<12 hex>-<32 hex>", "method": "POST", "url": "/v1/chat/completions", "body": {...}}

The custom id binds the record id (``prompt_id`` or ``prompt_id#sample``) *and* the exact request body: its
first part is a digest of the record id, its second a digest of (record id, body). So a result line names the
one request it answers, and a line from a request file written with other settings (another temperature, model
or system prompt) is recognised as answering a different body, not taken for an answer to this one.

:func:`check_results` sorts result lines (OpenAI's output and error files, or vLLM's single output file) into
accepted answers, failures and refusals. Nothing here touches the network or the output directory.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imitlab.errors import ImitlabError
from imitlab.prompts.schema import PromptRecord

ENDPOINT = "/v1/chat/completions"
# Per-request error codes that mean "not run", not "failed": the request goes into the next batch.
NOT_RUN_CODES = frozenset({"batch_expired", "batch_cancelled"})
_RETRY_STATUS = frozenset({408, 409, 429})


def _digest(value: Any) -> str:
    canonical = json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def record_id(prompt_id: str, sample: int) -> str:
    """The same record id live collection writes (``P`` for sample 0, ``P#s`` after)."""
    return prompt_id if sample == 0 else f"{prompt_id}#{sample}"


def record_prefix(rid: str) -> str:
    return "im-" + hashlib.sha256(rid.encode()).hexdigest()[:12]


def custom_id(rid: str, body: dict[str, Any]) -> str:
    """``im-<record digest>-<(record, body) digest>``: names one record and the one body asked for it."""
    return f"{record_prefix(rid)}-{_digest({'record': rid, 'body': body})[:32]}"


@dataclass(frozen=True)
class BatchJob:
    """One (prompt, sample) pair as one batch request."""

    prompt: PromptRecord
    sample: int
    body: dict[str, Any]
    custom_id: str

    @property
    def key(self) -> tuple[str, int]:
        return (self.prompt.id, self.sample)

    @property
    def record_id(self) -> str:
        return record_id(self.prompt.id, self.sample)

    @property
    def messages(self) -> list[dict[str, str]]:
        return list(self.body["messages"])

    def request_line(self) -> dict[str, Any]:
        return {"custom_id": self.custom_id, "method": "POST", "url": ENDPOINT, "body": self.body}


def build_jobs(
    prompts: list[PromptRecord], *, model: str, params: dict[str, Any], system: str | None, n_samples: int,
    prompts_file: Path,
) -> list[BatchJob]:  # fmt: skip
    """Every (prompt, sample) pair as a batch request, in prompt order.

    Only single-turn prompts can go by batch: a later turn needs the teacher's earlier answer in its history,
    which does not exist until the batch holding the earlier turn has finished.
    """
    multi = [p for p in prompts if len(p.turns) != 1]
    if multi:
        raise ImitlabError(
            f"{prompts_file}: batch collection takes single-turn prompts only, and {len(multi)} of {len(prompts)} "
            f"prompts have {len(multi[0].turns)} or more turns (first: {multi[0].id!r}); a later turn needs the "
            "teacher's earlier answer. Collect them live (without --batch), or import first turns only "
            "(imitlab prompts import --turns first)"
        )
    jobs = []
    for prompt in prompts:
        sys_prompt = prompt.system if prompt.system is not None else system
        messages = ([{"role": "system", "content": sys_prompt}] if sys_prompt else []) + [
            {"role": "user", "content": prompt.turns[0]}
        ]
        body = {"model": model, "messages": messages, **params}
        for sample in range(n_samples):
            jobs.append(BatchJob(prompt, sample, body, custom_id(record_id(prompt.id, sample), body)))
    return jobs


def request_chunks(jobs: list[BatchJob], *, max_requests: int, max_bytes: int) -> Iterator[list[bytes]]:
    """The request lines (encoded, newline-terminated) cut into files the Batch API accepts: at most
    ``max_requests`` lines and ``max_bytes`` bytes each (OpenAI: 50,000 requests, 200 MB)."""
    chunk: list[bytes] = []
    size = 0
    for job in jobs:
        line = (json.dumps(job.request_line(), ensure_ascii=False) + "\n").encode()
        if len(line) > max_bytes:
            raise ImitlabError(f"prompt {job.prompt.id!r}: its request ({len(line)} bytes) exceeds {max_bytes} bytes")
        if chunk and (len(chunk) >= max_requests or size + len(line) > max_bytes):
            yield chunk
            chunk, size = [], 0
        chunk.append(line)
        size += len(line)
    if chunk:
        yield chunk


def read_custom_ids(path: Path) -> list[str]:
    """The custom ids of a request file this module wrote, in order."""
    ids = []
    for lineno, data in _lines(path):
        try:
            ids.append(str(json.loads(data)["custom_id"]))
        except (ValueError, KeyError, TypeError):
            raise ImitlabError(f"{path}:{lineno}: not a batch request line (no custom_id)") from None
    return ids


# -- result lines ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Answer:
    """A 200 result whose body holds a completion."""

    text: str
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int
    model: str
    response_id: str | None
    request_id: str | None


@dataclass(frozen=True)
class Failure:
    reason: str
    status: int | None
    retryable: bool  # worth a place in the next batch (429, 5xx, timeouts)
    not_run: bool = False  # the batch ended before running it (expired, cancelled): simply missing


@dataclass(frozen=True)
class Refusal:
    where: str  # FILE:LINE
    custom_id: str | None
    kind: str  # short, for counters: "unknown custom_id", "duplicate line", ...
    detail: str


@dataclass
class ResultCheck:
    answers: dict[str, tuple[Answer, str]] = field(default_factory=dict)  # custom_id -> (answer, where)
    failures: dict[str, tuple[Failure, str]] = field(default_factory=dict)
    refused: list[Refusal] = field(default_factory=list)

    @property
    def refused_kinds(self) -> Counter[str]:
        return Counter(r.kind for r in self.refused)


def check_results(files: Iterable[Path], expected: dict[str, BatchJob], all_jobs: dict[str, BatchJob]) -> ResultCheck:
    """Sort the lines of result files into answers, failures and refusals.

    ``expected`` are the requests these files answer (one batch's request file, or every job for a file made
    elsewhere); ``all_jobs`` every request of the collection. A line is refused, never accepted, when:
    it is not a result line; its custom id names no request (``unknown custom_id``), names a record whose body
    was different (``answers a different body``: a request file written with other settings), or a request
    not in this batch (``not in this batch``); it repeats a line already seen (``duplicate line``: the first
    copy counts) or disagrees with another line for the same custom id (``conflicting lines``: none counts,
    the request is asked again); its response id already answered another request (``response id reused``);
    or its 200 body holds no completion text (``no completion``).
    """
    prefixes = {record_prefix(job.record_id): job for job in all_jobs.values()}
    check = ResultCheck()
    # Per custom id, every line's place, digest and verdict: lines are not kept (a batch's file can be 200 MB).
    by_id: dict[str, list[tuple[str, str, Answer | Failure | Refusal]]] = defaultdict(list)
    for path in files:
        for lineno, data in _lines(path):
            where = f"{path}:{lineno}"
            try:
                line = json.loads(data.decode("utf-8"))
            except UnicodeDecodeError as exc:
                check.refused.append(Refusal(where, None, "not JSON", f"not UTF-8 ({exc.reason} at byte {exc.start})"))
                continue
            except json.JSONDecodeError as exc:
                check.refused.append(Refusal(where, None, "not JSON", str(exc)))
                continue
            cid = line.get("custom_id") if isinstance(line, dict) else None
            if not isinstance(cid, str):
                check.refused.append(Refusal(where, None, "not a result line", "no string 'custom_id'"))
                continue
            if cid not in expected:
                check.refused.append(Refusal(where, cid, *_why_unexpected(cid, all_jobs, prefixes)))
                continue
            by_id[cid].append((where, _digest(line), _verdict(line)))

    answer_ids: dict[str, list[str]] = defaultdict(list)  # response id -> custom ids it answers
    for cid, copies in by_id.items():
        first_where, first_digest, verdict = copies[0]
        if any(digest != first_digest for _, digest, _ in copies[1:]):
            check.refused.extend(Refusal(w, cid, "conflicting lines", "several different results for one request")
                                 for w, _, _ in copies)  # fmt: skip
            continue
        check.refused.extend(Refusal(w, cid, "duplicate line", f"repeats {first_where}") for w, _, _ in copies[1:])
        if isinstance(verdict, Refusal):
            check.refused.append(Refusal(first_where, cid, verdict.kind, verdict.detail))
        elif isinstance(verdict, Failure):
            check.failures[cid] = (verdict, first_where)
        else:
            check.answers[cid] = (verdict, first_where)
            if verdict.response_id:
                answer_ids[verdict.response_id].append(cid)
    for response_id, cids in answer_ids.items():
        if len(cids) > 1:  # one completion cannot answer two requests: none of them is trusted
            for cid in cids:
                _, where = check.answers.pop(cid)
                check.refused.append(Refusal(where, cid, "response id reused", f"{response_id!r} answers {len(cids)} "
                                             "requests"))  # fmt: skip
    return check


def _why_unexpected(cid: str, all_jobs: dict[str, BatchJob], prefixes: dict[str, BatchJob]) -> tuple[str, str]:
    if cid in all_jobs:
        return "not in this batch", f"{all_jobs[cid].record_id} was not asked in this batch's request file"
    job = prefixes.get(cid[: len("im-") + 12])
    if job is not None:
        return "answers a different body", (
            f"names record {job.record_id!r} but not the body asked now (a request file written with other settings)"
        )
    return "unknown custom_id", "no request of this collection has it"


def _verdict(line: dict[str, Any]) -> Answer | Failure | Refusal:
    """What one result line says: an answer, a failure (OpenAI error file or vLLM error line), or a refusal."""
    response = line.get("response")
    response = response if isinstance(response, dict) else {}
    status = response.get("status_code")
    status = status if isinstance(status, int) else None
    error = line.get("error")
    body = response.get("body")
    if error is not None or (status is not None and status != 200):
        return _failure(error, status, body)
    if not isinstance(body, dict):
        return Refusal("", None, "no completion", "a 200 result without a body")
    choices = body.get("choices")
    choice = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else {}
    message = choice.get("message")
    text = message.get("content") if isinstance(message, dict) else None
    if not isinstance(text, str):
        return Refusal("", None, "no completion", "the body's first choice has no message content")
    if not text.strip():  # as in live collection: a model that answers nothing will answer nothing again
        return Failure("empty completion", status, retryable=False)
    usage = body.get("usage") if isinstance(body.get("usage"), dict) else {}
    response_id = body.get("id")
    request_id = response.get("request_id")
    return Answer(
        text=text,
        finish_reason=choice.get("finish_reason"),
        prompt_tokens=_int(usage.get("prompt_tokens")),
        completion_tokens=_int(usage.get("completion_tokens")),
        model=str(body.get("model") or ""),
        response_id=response_id if isinstance(response_id, str) and response_id else None,
        request_id=request_id if isinstance(request_id, str) else None,
    )


def _failure(error: Any, status: int | None, body: Any) -> Failure:
    code, message = None, None
    for source in (error, body.get("error") if isinstance(body, dict) else None):
        if isinstance(source, dict) and isinstance(source.get("error"), dict):  # vLLM's ErrorResponse
            source = source["error"]
        if isinstance(source, dict):
            code = code or source.get("code")
            message = message or source.get("message")
        elif isinstance(source, str):
            message = message or source
    code = str(code) if code is not None else None
    if code in NOT_RUN_CODES:
        return Failure(f"batch: {code}", status, retryable=True, not_run=True)
    reason = f"HTTP {status}: " if status is not None else "batch error: "
    reason += " ".join(str(message or code or "no message").split())[:200]
    retryable = status in _RETRY_STATUS or (status is not None and status >= 500) or code == "request_timeout"
    return Failure(reason, status, retryable=retryable)


def _int(value: Any) -> int:
    return value if isinstance(value, int) and value >= 0 else 0


def _lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """Non-blank lines of a JSONL file as bytes (gzip by its magic, a UTF-8 BOM dropped). Decoding is left to the
    caller, so one line that is not UTF-8 is refused on its own, not the whole file with it."""
    with open(path, "rb") as raw:
        gzipped = raw.read(2) == b"\x1f\x8b"
    opener = gzip.open if gzipped else open
    with opener(path, "rb") as f:
        for lineno, data in enumerate(f, 1):
            if lineno == 1 and data.startswith(b"\xef\xbb\xbf"):
                data = data[3:]
            data = data.strip()
            if data:
                yield lineno, data
