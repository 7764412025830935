"""A hostile OpenAI-compatible server: real HTTP/1.1 on raw sockets, so it can misbehave at the byte level.

It listens on 127.0.0.1, serves each connection in its own thread with keep-alive, and answers
``POST /v1/chat/completions`` (a JSON body, or server-sent events when the request says ``"stream": true``) with
``answer to: <last user message> ✓`` (the tick makes every body carry a multi-byte UTF-8 character), so a test
can check that each recorded answer belongs to its own prompt.

**Faults are scripted in the prompt text**, never drawn from timing or arrival order:

* ``[faults: a,b,c]`` in the last user message: attempt 1 gets fault ``a``, attempt 2 ``b``, attempt 3 ``c``;
  later attempts are answered normally;
* ``[always: a]``: every attempt gets fault ``a``.

Attempts are counted per last user message (prompts in one test must not share one). :meth:`HostileOpenAI.events`
tells, per last user message, what each attempt actually got (an :class:`Event`): its fault, whether the request
asked for ``Connection: close``, and whether it was first served what an earlier fault left on its kept-alive
connection (a stale copy of an earlier response, or stray bytes), so a test can derive each prompt's fate from what
the server really did. :data:`FAULTS` lists every fault with what it does.
"""

from __future__ import annotations

import email.utils
import json
import socket
import struct
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

TICK = "✓"  # three bytes in UTF-8: a cut after its first byte leaves an invalid sequence

FAULTS: dict[str, str] = {
    # the connection and the HTTP framing
    "dup": "the response is sent twice: the second copy is written, stale, ahead of the next request's answer on "
    "the same kept-alive connection",
    "dup_eager": "the response is written twice back to back (the extra copy waits unread on the connection)",
    "close_early": "the connection is closed before any response header",
    "reset": "the connection is reset (TCP RST) after the request is read",
    "garbage_status": "a status line that is not HTTP, then close",
    "length_long": "Content-Length is 64 bytes longer than the body, then close",
    "length_short": "Content-Length is 10 bytes shorter than the body (the rest is left on the connection)",
    "chunked_cut": "chunked transfer encoding cut in the middle of a chunk, then close",
    "slowloris": "headers, then one byte of the body every 0.5 s until the client gives up",
    # statuses
    "http429": "429 with Retry-After: 1 (seconds)",
    "http429_date": "429 with Retry-After as an HTTP date one second ahead",
    "http500": "500 with a JSON error",
    "http502": "502 with a proxy's HTML page",
    "http503": "503 with Retry-After: 1",
    "http400": "400 bad request (not retryable)",
    # the body of a 200
    "utf8_cut": "the body is cut inside a multi-byte UTF-8 character (Content-Length says the cut length)",
    "json_cut": "the body is cut in the middle of the JSON (Content-Length says the cut length)",
    "error_200": "200 whose body is an error object",
    "empty_choices": "200 whose choices are empty",
    "null_content": "200 whose message content is null",
    "empty_answer": "200 whose answer is the empty string",
    "html_200": "200 with a text/html page instead of JSON",
    "wrong_model": "the response names another model (the answer itself is right)",
    "no_id": "the response carries no id",
    # server-sent events (stream requests)
    "sse_no_final": "content events, then the stream ends cleanly with no finish_reason and no [DONE]",
    "sse_no_done": "every event but [DONE], then the stream ends cleanly",
    "sse_cut": "the stream stops mid-way and the connection closes (no terminating chunk)",
    "sse_utf8_cut": "the last event is cut inside a multi-byte UTF-8 character, then the stream ends cleanly",
    "sse_spliced": "half a stream, then a whole second stream with another id (a proxy that retried upstream)",
    "sse_dup_chunk": "one content event is sent twice",
    "sse_after_finish": "a content event after the finish_reason event",
    "sse_error": "an error event in the middle of the stream",
    "sse_trailing": "events after [DONE] (a repeated final event and [DONE]): harmless",
    "sse_keepalive": "SSE comment lines (': ping') between events, as proxies send: harmless",
    "sse_hang_after_done": "the whole stream, [DONE] included, then the body is held open (no terminating chunk)",
}
PRE_BODY_FAULTS = {"close_early", "reset", "garbage_status", "http429", "http429_date", "http500", "http502", "http503",
                   "http400"}  # fmt: skip
# Which faults a JSON request and a stream request can get (a script that mixes them up is a test bug).
STREAM_FAULTS = {"ok", "dup", "no_id", "wrong_model", "empty_answer", *PRE_BODY_FAULTS,
                 *(f for f in FAULTS if f.startswith("sse_"))}  # fmt: skip
JSON_FAULTS = {"ok", *(f for f in FAULTS if not f.startswith("sse_"))}


def script_of(text: str) -> tuple[list[str], str | None]:
    """The fault script in a prompt: (per-attempt faults, the fault for every attempt or None)."""
    for marker, always in (("[always:", True), ("[faults:", False)):
        start = text.find(marker)
        if start >= 0:
            end = text.index("]", start)
            names = [n.strip() for n in text[start + len(marker) : end].split(",") if n.strip()]
            unknown = [n for n in names if n not in FAULTS and n != "ok"]
            if unknown:
                raise ValueError(f"unknown faults {unknown} in {text!r}")
            return ([], names[0]) if always else (names, None)
    return [], None


def planned(text: str, attempt: int) -> str:
    """The fault (or "ok") that attempt number ``attempt`` (1-based) of this prompt gets."""
    script, always = script_of(text)
    if always is not None:
        return always
    return script[attempt - 1] if attempt <= len(script) else "ok"


def answer_for(text: str) -> str:
    return f"answer to: {text} {TICK}"


@dataclass(frozen=True)
class Event:
    """What one request got."""

    fault: str  # "ok" or a fault of FAULTS
    close: bool  # the request asked for Connection: close
    left_over: str | None  # "stale" or "garbage": the connection already held an earlier fault's bytes


class _Conn:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""
        self.stale: bytes | None = None  # armed by "dup": written ahead of the next request's answer
        self.left_over: str | None = None  # the connection holds unread bytes ("dup_eager", "length_short")


class _Closed(Exception):
    """The connection is done (the client closed it, or a fault closed it)."""


class HostileOpenAI:
    """Use as a context manager; ``base_url`` points the openai client at it."""

    def __init__(self, *, model: str = "teacher", ids: bool = True, latency_s: float = 0.0) -> None:
        self.model = model
        self.ids = ids  # False: no response carries an id (as some servers do)
        self.latency_s = latency_s  # added to every answer (for tests that must catch a run mid-way)
        self.log: dict[str, list[Event]] = {}
        self.attempts: Counter[str] = Counter()
        self.connections = 0  # accepted so far
        self.open_connections = 0  # open now
        self.requests = 0
        self.stale_sent = 0
        self.bodies: list[dict[str, Any]] = []  # every request body, in arrival order
        self.headers: list[dict[str, str]] = []  # every request's headers, in arrival order
        self.errors: list[str] = []  # mistakes in a test's scripts (a test asserts there are none)
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._socks: set[socket.socket] = set()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}/v1"

    def __enter__(self) -> HostileOpenAI:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._closing.set()
        self._listener.close()
        with self._lock:
            socks = list(self._socks)
        for s in socks:
            _close(s)
        self._thread.join(timeout=5)

    def events(self, text: str) -> list[Event]:
        """What each attempt for this last user message got, in order."""
        with self._lock:
            return list(self.log.get(text, []))

    # -- plumbing --------------------------------------------------------------------------------------
    def _accept_loop(self) -> None:
        while not self._closing.is_set():
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
                self.open_connections += 1
                self._socks.add(sock)
            threading.Thread(target=self._serve, args=(_Conn(sock),), daemon=True).start()

    def _serve(self, conn: _Conn) -> None:
        try:
            while not self._closing.is_set():
                request = self._read_request(conn)
                if request is None:
                    return
                headers, body = request
                left_over, conn.left_over = conn.left_over, None
                if conn.stale is not None:  # the duplicate of the previous answer, delivered late
                    conn.sock.sendall(conn.stale)
                    conn.stale, left_over = None, "stale"
                    with self._lock:
                        self.stale_sent += 1
                self._answer(conn, headers, body, left_over)
                if headers.get("connection", "").lower() == "close":
                    return
        except (_Closed, OSError):
            return
        finally:
            with self._lock:
                self.open_connections -= 1
                self._socks.discard(conn.sock)
            _close(conn.sock)

    def _read_request(self, conn: _Conn) -> tuple[dict[str, str], bytes] | None:
        while b"\r\n\r\n" not in conn.buf:
            data = conn.sock.recv(65536)
            if not data:
                return None
            conn.buf += data
        head, _, rest = conn.buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        length = int(headers.get("content-length", "0"))
        while len(rest) < length:
            data = conn.sock.recv(65536)
            if not data:
                return None
            rest += data
        conn.buf = rest[length:]
        return headers, rest[:length]

    # -- answers ---------------------------------------------------------------------------------------
    def _answer(self, conn: _Conn, headers: dict[str, str], raw: bytes, left_over: str | None) -> None:
        body = json.loads(raw)
        messages = body.get("messages") or []
        text = next((m["content"] for m in reversed(messages) if m.get("role") == "user"), body.get("prompt", ""))
        stream = bool(body.get("stream"))
        close = headers.get("connection", "").lower() == "close"
        with self._lock:
            self.requests += 1
            self.attempts[text] += 1
            fault = planned(text, self.attempts[text])
            self.bodies.append(body)
            self.headers.append(headers)
            self.log.setdefault(text, []).append(Event(fault, close, left_over))
        allowed = STREAM_FAULTS if stream else JSON_FAULTS
        if fault not in allowed:
            self.errors.append(f"fault {fault!r} does not apply to a {'stream' if stream else 'JSON'} request")
            raise _Closed
        if self.latency_s:
            time.sleep(self.latency_s)
        if fault in PRE_BODY_FAULTS:
            self._refuse(conn, fault, close)
            return
        answer = "" if fault == "empty_answer" else answer_for(text)
        reply = _Reply(
            rid=f"chatcmpl-{uuid.uuid4().hex}" if self.ids and fault != "no_id" else None,
            model="impostor-model" if fault == "wrong_model" else str(body.get("model", self.model)),
            answer=answer,
            usage={"prompt_tokens": len(text.split()), "completion_tokens": len(_words(answer))},
        )
        if stream:
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            self._stream(conn, fault, reply, include_usage, close)
        else:
            self._json(conn, fault, reply, close)

    def _refuse(self, conn: _Conn, fault: str, close: bool) -> None:
        """Faults before any body: the same bytes whether or not the request asked for a stream."""
        send = conn.sock.sendall
        if fault == "close_early":
            raise _Closed
        if fault == "reset":
            conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            raise _Closed
        if fault == "garbage_status":
            send(b"HTTP/1.1 banana\r\nContent-Length: 2\r\n\r\nok")
            raise _Closed
        status = int(fault[4:7])
        extra = []
        if fault in ("http429", "http503"):
            extra.append(("Retry-After", "1"))
        elif fault == "http429_date":
            extra.append(("Retry-After", email.utils.formatdate(time.time() + 1, usegmt=True)))
        if fault == "http502":
            page = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
            send(_head(status, "text/html", len(page), extra, close) + page)
        else:
            err = json.dumps({"error": {"message": f"scripted {status}", "type": "server_error"}}).encode()
            send(_head(status, "application/json", len(err), extra, close) + err)

    def _json(self, conn: _Conn, fault: str, reply: _Reply, close: bool) -> None:
        send = conn.sock.sendall
        obj: dict[str, Any] = {"id": reply.rid} if reply.rid else {}
        obj |= {
            "object": "chat.completion", "created": int(time.time()), "model": reply.model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": reply.answer},
                         "finish_reason": "stop"}],
            "usage": {**reply.usage, "total_tokens": sum(reply.usage.values())},
        }  # fmt: skip
        if fault == "error_200":
            obj = {"error": {"message": "upstream overloaded", "type": "server_error", "code": 503}}
        elif fault == "empty_choices":
            obj["choices"] = []
        elif fault == "null_content":
            obj["choices"][0]["message"]["content"] = None
        data = json.dumps(obj, ensure_ascii=False).encode()
        if fault == "html_200":
            page = b"<html><body>Please sign in to continue</body></html>"
            send(_head(200, "text/html", len(page), [], close) + page)
        elif fault == "utf8_cut":
            cut = data.index(TICK.encode()) + 1
            send(_head(200, "application/json", cut, [], close) + data[:cut])
        elif fault == "json_cut":
            cut = data.index(b'"usage"')
            send(_head(200, "application/json", cut, [], close) + data[:cut])
        elif fault == "length_long":
            send(_head(200, "application/json", len(data) + 64, [], close) + data)
            raise _Closed
        elif fault == "length_short":
            send(_head(200, "application/json", len(data) - 10, [], close) + data)
            conn.left_over = "garbage"
        elif fault == "chunked_cut":
            send(
                _head(200, "application/json", None, [], close) + f"{len(data):x}\r\n".encode() + data[: len(data) // 2]
            )
            raise _Closed
        elif fault == "slowloris":
            send(_head(200, "application/json", len(data), [], close))
            for byte in data:
                if self._closing.wait(0.5):
                    break
                send(bytes([byte]))
            raise _Closed
        else:
            message = _head(200, "application/json", len(data), [], close) + data
            send(message)
            if fault == "dup":
                conn.stale = message
            elif fault == "dup_eager":
                send(message)
                conn.left_over = "stale"

    def _stream(self, conn: _Conn, fault: str, reply: _Reply, include_usage: bool, close: bool) -> None:
        def event(delta: dict[str, Any] | None, finish: str | None = None, *, of: str | None = reply.rid,
                  **extra: Any) -> bytes:  # fmt: skip
            obj: dict[str, Any] = {"id": of} if of else {}
            obj |= {"object": "chat.completion.chunk", "created": int(time.time()), "model": reply.model}
            obj["choices"] = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
            return b"data: " + json.dumps({**obj, **extra}, ensure_ascii=False).encode() + b"\n\n"

        def stream_of(of: str | None) -> list[bytes]:
            events = [event({"role": "assistant", "content": ""}, of=of)]
            events += [event({"content": w}, of=of) for w in _words(reply.answer)]
            events.append(event({}, "stop", of=of))
            if include_usage:
                events.append(event(None, of=of, usage={**reply.usage, "total_tokens": sum(reply.usage.values())}))
            return [*events, b"data: [DONE]\n\n"]

        events = stream_of(reply.rid)
        n_words = len(_words(reply.answer))
        if fault == "sse_no_final":
            events = events[: 1 + n_words]
        elif fault == "sse_no_done":
            events = events[:-1]
        elif fault == "sse_utf8_cut":
            last = next(i for i, e in enumerate(events) if TICK.encode() in e)
            events = [*events[:last], events[last][: events[last].index(TICK.encode()) + 1]]
        elif fault == "sse_spliced":
            events = events[: 1 + n_words // 2] + stream_of(f"chatcmpl-{uuid.uuid4().hex}" if reply.rid else None)
        elif fault == "sse_dup_chunk":
            events.insert(2, events[1])
        elif fault == "sse_after_finish":
            events.insert(2 + n_words, event({"content": " and more"}))
        elif fault == "sse_error":
            err = {"error": {"message": "upstream overloaded", "type": "server_error"}}
            events.insert(2, b"data: " + json.dumps(err).encode() + b"\n\n")
        elif fault == "sse_trailing":
            events += [event({}, "stop"), b"data: [DONE]\n\n"]
        elif fault == "sse_keepalive":
            events = [e for pair in zip(events, [b": ping\n\n"] * len(events), strict=True) for e in pair]
        lines = ["HTTP/1.1 200 OK", "Content-Type: text/event-stream", "Cache-Control: no-cache",
                 "Transfer-Encoding: chunked", *(["Connection: close"] if close else [])]  # fmt: skip
        head = ("\r\n".join(lines) + "\r\n\r\n").encode()
        chunks = [f"{len(e):x}\r\n".encode() + e + b"\r\n" for e in events]
        if fault == "sse_cut":
            conn.sock.sendall(head + b"".join(chunks[: 1 + n_words // 2]))
            raise _Closed
        if fault == "sse_hang_after_done":  # the client must stop waiting; it closes the connection
            conn.sock.sendall(head + b"".join(chunks))
            return
        message = head + b"".join(chunks) + b"0\r\n\r\n"
        conn.sock.sendall(message)
        if fault == "dup":
            conn.stale = message


@dataclass(frozen=True)
class _Reply:
    rid: str | None  # the response id (None: the response carries none)
    model: str
    answer: str
    usage: dict[str, int]


def _words(answer: str) -> list[str]:
    """The answer as the server streams it: one word (with its leading space) per event, one token each."""
    parts = answer.split(" ")
    return [parts[0], *(" " + p for p in parts[1:])] if answer else []


_REASONS = {200: "OK", 400: "Bad Request", 429: "Too Many Requests", 500: "Internal Server Error",
            502: "Bad Gateway", 503: "Service Unavailable"}  # fmt: skip


def _head(status: int, content_type: str, length: int | None, extra: list[tuple[str, str]], close: bool) -> bytes:
    lines = [f"HTTP/1.1 {status} {_REASONS[status]}", f"Content-Type: {content_type}"]
    lines.append(f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked")
    lines += [f"{k}: {v}" for k, v in extra]
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _close(sock: socket.socket) -> None:
    try:
        sock.close()
    except OSError:
        pass
