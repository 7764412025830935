"""A real HTTP server on 127.0.0.1 that speaks the OpenAI Batch API (``/v1/files``, ``/v1/batches``) well enough
to test batch collection, including the ways batches go wrong.

Endpoints: ``POST /v1/files`` (multipart upload), ``GET /v1/files/{id}`` and ``/v1/files/{id}/content``,
``POST /v1/batches``, ``GET /v1/batches/{id}``, ``GET /v1/batches`` (newest first, ``limit``/``after`` paging),
``POST /v1/batches/{id}/cancel``. A batch validates its input file as OpenAI does (JSON lines with ``custom_id``,
``method: POST``, the batch's ``url``, a ``body`` with ``model`` and ``messages``; custom ids unique) and fails
as a whole if it does not. It stays ``in_progress`` for ``run_s`` seconds after creation, then ends.

Each request gets a deterministic answer, ``"batch answer to: <last user message>"``, with word-count usage. The
i-th batch created follows ``faults[i]`` (:class:`BatchFaults`): expire or be cancelled part-way (the requests
not run come back in the error file with ``batch_expired``/``batch_cancelled``), per-request error lines chosen
by a marker in the user message, duplicated output lines, a line with a custom id nobody asked for, or any
rewrite of the output lines (``tamper``). :func:`run_batch_offline` answers a request file the way vLLM's
``run_batch`` writes its one output file.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

try:  # these fakes are imported both as tests.fake_* and, with tests/ on sys.path, as fake_*
    from tests.loopback_server import LoopbackServer
except ModuleNotFoundError:
    from loopback_server import LoopbackServer

ENDPOINTS = ("/v1/chat/completions",)


@dataclass
class BatchFaults:
    expire_after: int | None = None  # run only the first k requests; the batch ends expired
    cancel_after: int | None = None  # run only the first k requests; the batch ends cancelled
    error_status: dict[str, int] = field(default_factory=dict)  # marker in the user message -> error status
    duplicate: int = 0  # the first k output lines are written twice
    unknown_line: bool = False  # add a line whose custom_id no request has
    fail_validation: str | None = None  # the batch fails as a whole with this message
    tamper: Callable[[list[dict[str, Any]]], list[dict[str, Any]]] | None = None  # rewrite the output lines


def answer_text(body: dict[str, Any]) -> str:
    user = [m["content"] for m in body["messages"] if m["role"] == "user"]
    return f"batch answer to: {user[-1]}"


def completion(body: dict[str, Any]) -> dict[str, Any]:
    """The chat.completion a batch request gets: deterministic text, word-count usage."""
    text = answer_text(body)
    prompt_tokens = sum(len(m["content"].split()) for m in body["messages"])
    completion_tokens = len(text.split())
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body["model"],
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    }  # fmt: skip


def _user_text(request: dict[str, Any]) -> str:
    return " ".join(m["content"] for m in request["body"]["messages"] if m["role"] == "user")


def run_requests(requests: list[dict[str, Any]], faults: BatchFaults) -> tuple[list[dict], list[dict]]:
    """OpenAI's output and error file lines for these requests under these faults."""
    out: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    stop = faults.expire_after if faults.expire_after is not None else faults.cancel_after
    code = "batch_expired" if faults.expire_after is not None else "batch_cancelled"
    for i, request in enumerate(requests):
        rid = f"batch_req_{uuid.uuid4().hex}"
        if stop is not None and i >= stop:
            errors.append({"id": rid, "custom_id": request["custom_id"], "response": None,
                           "error": {"code": code, "message": "not executed before the batch ended"}})  # fmt: skip
            continue
        status = next((s for marker, s in faults.error_status.items() if marker in _user_text(request)), None)
        if status is not None:
            body = {"error": {"message": f"fake error {status}", "type": "invalid_request_error", "code": None}}
            errors.append({"id": rid, "custom_id": request["custom_id"],
                           "response": {"status_code": status, "request_id": f"req_{uuid.uuid4().hex}", "body": body},
                           "error": None})  # fmt: skip
            continue
        out.append({"id": rid, "custom_id": request["custom_id"],
                    "response": {"status_code": 200, "request_id": f"req_{uuid.uuid4().hex}",
                                 "body": completion(request["body"])},
                    "error": None})  # fmt: skip
    out = out[: faults.duplicate] + out  # duplicates first, so the copies are not simply the last lines
    if faults.unknown_line:
        out.append({"id": "batch_req_stray", "custom_id": "im-000000000000-" + "0" * 32,
                    "response": {"status_code": 200, "request_id": "req_stray",
                                 "body": completion({"model": "x", "messages": [{"role": "user", "content": "?"}]})},
                    "error": None})  # fmt: skip
    if faults.tamper is not None:
        out = faults.tamper(out)
    return out, errors


def run_batch_offline(request_file: Path, result_file: Path, *, error_marker: str | None = None) -> int:
    """Answer a request file as vLLM's ``run_batch`` does: one output file, errors as status 400 lines with an
    ``error`` string and no body. Returns the number of lines written."""
    lines = []
    for text in request_file.read_text(encoding="utf-8").splitlines():
        request = json.loads(text)
        rid = f"vllm-batch-{uuid.uuid4().hex}"
        if error_marker is not None and error_marker in _user_text(request):
            lines.append({"id": f"vllm-{uuid.uuid4().hex}", "custom_id": request["custom_id"],
                          "response": {"status_code": 400, "request_id": rid, "body": None},
                          "error": "fake vLLM error"})  # fmt: skip
        else:
            lines.append({"id": f"vllm-{uuid.uuid4().hex}", "custom_id": request["custom_id"],
                          "response": {"status_code": 200, "request_id": rid, "body": completion(request["body"])},
                          "error": None})  # fmt: skip
    result_file.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return len(lines)


def validate_requests(data: bytes, endpoint: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The request lines of an input file, and the validation errors OpenAI would report for it."""
    requests, errors, seen = [], [], set()
    for n, text in enumerate(data.decode("utf-8").splitlines(), 1):
        if not text.strip():
            continue
        try:
            request = json.loads(text)
            ok = (
                isinstance(request, dict) and isinstance(request.get("custom_id"), str)
                and request.get("method") == "POST" and request.get("url") == endpoint
                and isinstance(request.get("body"), dict) and isinstance(request["body"].get("model"), str)
                and isinstance(request["body"].get("messages"), list)
            )  # fmt: skip
        except json.JSONDecodeError:
            ok = False
        if not ok:
            errors.append({"code": "invalid_request", "message": "not a valid batch request line", "line": n})
        elif request["custom_id"] in seen:
            errors.append({"code": "duplicate_custom_id", "message": "custom_id must be unique", "line": n})
        else:
            seen.add(request["custom_id"])
            requests.append(request)
    if not requests and not errors:
        errors.append({"code": "empty_file", "message": "the input file has no requests", "line": None})
    return requests, errors


class FakeBatchAPI(LoopbackServer):
    def __init__(
        self, faults: list[BatchFaults] | None = None, *, run_s: float = 0.0, retrieve_errors: int = 0
    ) -> None:
        self.faults = faults or []
        self.run_s = run_s
        self.retrieve_errors = retrieve_errors  # the first N status polls get 503
        self.lock = threading.Lock()
        self.calls: Counter[str] = Counter()  # "POST /v1/files", "GET /v1/batches/{id}", ...
        self.files: dict[str, dict[str, Any]] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self.order: list[str] = []  # batch ids, oldest first
        self._start_server()

    @property
    def batches_created(self) -> int:
        return self.calls["POST /v1/batches"]

    @property
    def uploads(self) -> int:
        return self.calls["POST /v1/files"]

    def request_lines(self, batch_number: int) -> list[dict[str, Any]]:
        """The requests of the n-th batch created (from 1), as the server received them."""
        batch = self.batches[self.order[batch_number - 1]]
        return [json.loads(t) for t in self.files[batch["input_file_id"]]["data"].decode().splitlines() if t.strip()]

    # -- state ------------------------------------------------------------------------------------------------
    def _new_file(self, data: bytes, filename: str, purpose: str) -> dict[str, Any]:
        fid = f"file-{uuid.uuid4().hex[:24]}"
        meta = {"id": fid, "object": "file", "bytes": len(data), "created_at": int(time.time()), "filename": filename,
                "purpose": purpose, "status": "processed"}  # fmt: skip
        self.files[fid] = {"meta": meta, "data": data}
        return meta

    def _create_batch(self, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        file = self.files.get(params.get("input_file_id", ""))
        if file is None:
            return 404, {"error": {"message": "no such file", "type": "invalid_request_error"}}
        if params.get("endpoint") not in ENDPOINTS or params.get("completion_window") != "24h":
            return 400, {"error": {"message": "bad endpoint or completion_window", "type": "invalid_request_error"}}
        faults = self.faults[len(self.order)] if len(self.order) < len(self.faults) else BatchFaults()
        requests, errors = validate_requests(file["data"], params["endpoint"])
        if faults.fail_validation:
            errors.append({"code": "invalid", "message": faults.fail_validation, "line": None})
        bid = f"batch_{uuid.uuid4().hex[:24]}"
        now = int(time.time())
        batch = {
            "id": bid, "object": "batch", "endpoint": params["endpoint"], "input_file_id": params["input_file_id"],
            "completion_window": "24h", "status": "failed" if errors else "validating", "output_file_id": None,
            "error_file_id": None, "created_at": now, "expires_at": now + 86400, "metadata": params.get("metadata"),
            "request_counts": {"total": len(requests), "completed": 0, "failed": 0},
            "errors": {"object": "list", "data": [{**e, "param": None} for e in errors]} if errors else None,
            "_created": time.monotonic(), "_requests": requests, "_faults": faults, "_cancel": False,
        }  # fmt: skip
        self.batches[bid] = batch
        self.order.append(bid)
        return 200, self._public(batch)

    def _advance(self, batch: dict[str, Any]) -> None:
        if batch["status"] in ("failed", "completed", "expired", "cancelled"):
            return
        elapsed = time.monotonic() - batch["_created"]
        total = batch["request_counts"]["total"]
        if elapsed < self.run_s and not batch["_cancel"]:
            batch["status"] = "in_progress"
            batch["request_counts"]["completed"] = int(total * elapsed / self.run_s)
            return
        faults: BatchFaults = batch["_faults"]
        if batch["_cancel"]:
            faults = BatchFaults(cancel_after=0)
        out, errors = run_requests(batch["_requests"], faults)
        for kind, lines in (("output_file_id", out), ("error_file_id", errors)):
            if lines:
                data = "".join(json.dumps(line) + "\n" for line in lines).encode()
                batch[kind] = self._new_file(data, f"{batch['id']}_{kind}.jsonl", "batch_output")["id"]
        batch["request_counts"]["completed"] = len(out)
        batch["request_counts"]["failed"] = len(errors)
        batch["status"] = ("expired" if faults.expire_after is not None
                           else "cancelled" if faults.cancel_after is not None else "completed")  # fmt: skip

    @staticmethod
    def _public(batch: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in batch.items() if not k.startswith("_")}

    # -- HTTP -------------------------------------------------------------------------------------------------
    def _handler(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _send(self, status: int, payload: Any, content_type: str = "application/json") -> None:
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _body(self) -> bytes:
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _route(self, method: str) -> None:
                url = urlsplit(self.path)
                parts = [p for p in url.path.split("/") if p]
                body = self._body() if method == "POST" else b""
                if not (self.headers.get("Authorization") or "").startswith("Bearer "):
                    return self._send(401, {"error": {"message": "no key", "type": "invalid_request_error"}})
                key = f"{method} /" + "/".join(parts[:2] + ["{id}"] * (len(parts) > 2) + parts[3:])
                with api.lock:
                    api.calls[key] += 1
                    status, payload, ctype = api.dispatch(method, parts, url.query, body, self.headers)
                self._send(status, payload, ctype)

            def do_GET(self) -> None:
                self._route("GET")

            def do_POST(self) -> None:
                self._route("POST")

        return Handler

    def dispatch(self, method: str, parts: list[str], query: str, body: bytes, headers: Any) -> tuple[int, Any, str]:
        json_type = "application/json"
        not_found = (404, {"error": {"message": f"no route {method} /{'/'.join(parts)}"}}, json_type)
        if parts[:2] == ["v1", "files"]:
            if method == "POST" and len(parts) == 2:
                message = BytesParser(policy=HTTP).parsebytes(
                    b"Content-Type: " + headers["Content-Type"].encode() + b"\r\n\r\n" + body
                )
                form = {part.get_param("name", header="content-disposition"): part for part in message.iter_parts()}
                upload = form["file"]
                purpose = form["purpose"].get_payload(decode=True).decode()
                meta = self._new_file(upload.get_payload(decode=True), upload.get_filename() or "upload", purpose)
                return 200, meta, json_type
            file = self.files.get(parts[2]) if len(parts) > 2 else None
            if file is None:
                return not_found
            if len(parts) == 4 and parts[3] == "content":
                return 200, file["data"], "application/octet-stream"
            return 200, file["meta"], json_type
        if parts[:2] == ["v1", "batches"]:
            if method == "POST" and len(parts) == 2:
                status, payload = self._create_batch(json.loads(body))
                return status, payload, json_type
            if method == "GET" and len(parts) == 2:
                args = parse_qs(query)
                limit = int(args.get("limit", ["20"])[0])
                newest = list(reversed(self.order))
                if "after" in args:
                    newest = newest[newest.index(args["after"][0]) + 1 :]
                page = newest[:limit]
                for bid in page:
                    self._advance(self.batches[bid])
                data = [self._public(self.batches[b]) for b in page]
                listing = {"object": "list", "data": data, "first_id": page[0] if page else None,
                           "last_id": page[-1] if page else None, "has_more": len(newest) > limit}  # fmt: skip
                return 200, listing, json_type
            batch = self.batches.get(parts[2])
            if batch is None:
                return not_found
            if method == "POST" and parts[3:] == ["cancel"]:
                batch["_cancel"] = True
                batch["status"] = "cancelling"
                return 200, self._public(batch), json_type
            if self.retrieve_errors > 0:
                self.retrieve_errors -= 1
                return 503, {"error": {"message": "overloaded", "type": "server_error"}}, json_type
            self._advance(batch)
            return 200, self._public(batch), json_type
        return not_found
