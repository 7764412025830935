"""Assembling one streamed completion (server-sent events) and deciding whether it is whole.

The engine (:mod:`imitlab.models.engine`) feeds each event's JSON to :class:`StreamAssembly` and asks it for the
finished :class:`~imitlab.models.engine.Response` once the body ends. A stream is accepted only when it provably
is one whole completion:

* every event carries the same completion id (a proxy that retried upstream and spliced a second stream onto the
  first shows two ids);
* no content arrives after the ``finish_reason`` event, and no second start (a role) after content;
* it has a ``finish_reason`` and then ``[DONE]`` (a stream that just stops, even cleanly, may be cut short);
* where the server reports usage, there are no more content events than completion tokens (each event carries at
  least one token, so an extra one is an event delivered twice; this catches a duplicate only where the server
  sends about one token per event, as llama.cpp and vLLM do).

Anything else raises :class:`~imitlab.models.retry.MalformedResponse` (retried on a fresh connection); an error
event raises :class:`~imitlab.models.retry.StreamError` (retried like a 5xx).
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, Literal

from imitlab.models.retry import MalformedResponse, StreamError

if TYPE_CHECKING:
    from imitlab.models.engine import Response


class StreamAssembly:
    """The state of one stream being read; :meth:`add` each event, then :meth:`finish`."""

    def __init__(self, kind: Literal["chat", "completion"]) -> None:
        self.kind = kind
        self.response_id: str | None = None
        self.done = False  # [DONE] arrived
        self._events = 0
        self._parts: list[str] = []
        self._content_events = 0
        self._finish_reason: str | None = None
        self._model: str | None = None
        self._usage: dict[str, Any] | None = None
        self._logprobs: list[Any] = []

    def add(self, chunk: Any, event: str | None = None) -> None:
        if not isinstance(chunk, dict):
            raise MalformedResponse(f"a stream event that is not a JSON object: {str(chunk)[:80]!r}")
        if chunk.get("error") or event == "error":
            error = chunk.get("error")
            message = error.get("message") if isinstance(error, dict) else error
            raise StreamError(str(message or chunk)[:200])
        self._events += 1
        chunk_id = chunk.get("id") or None
        if self._events == 1:
            self.response_id = chunk_id
        elif chunk_id != self.response_id:
            raise MalformedResponse(
                f"stream spliced: events of two completions ({self.response_id!r} and {chunk_id!r}) in one stream"
            )
        self._model = self._model or chunk.get("model")
        if isinstance(chunk.get("usage"), dict):
            self._usage = chunk["usage"]
        for choice in chunk.get("choices") or []:
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") if self.kind == "chat" else None
            delta = delta if isinstance(delta, dict) else {}
            piece = delta.get("content") if self.kind == "chat" else choice.get("text")
            if delta.get("role") and self._content_events:
                raise MalformedResponse("stream spliced: a second start (role) after content")
            if piece:
                if self._finish_reason is not None:
                    raise MalformedResponse("stream has content after its final (finish_reason) event")
                self._parts.append(str(piece))
                self._content_events += 1
            logprobs = choice.get("logprobs")
            if isinstance(logprobs, dict) and logprobs.get("content"):
                self._logprobs.extend(logprobs["content"])
            if choice.get("finish_reason"):
                self._finish_reason = str(choice["finish_reason"])

    def finish(self, model: str) -> Response:
        """The whole completion, or :class:`MalformedResponse` when the stream cannot be shown to be whole."""
        from imitlab.models.engine import Response, _top_logprobs

        if self._finish_reason is None:
            raise MalformedResponse("stream ended without its final event (no finish_reason)")
        if not self.done:
            raise MalformedResponse("stream ended without [DONE]")
        usage = self._usage or {}
        completion_tokens = usage.get("completion_tokens")
        if isinstance(completion_tokens, int) and self._content_events > completion_tokens:
            raise MalformedResponse(
                f"stream has {self._content_events} content events for {completion_tokens} completion tokens: "
                "an event was delivered twice"
            )
        logprobs = SimpleNamespace(logprobs={"content": self._logprobs}) if self._logprobs else None
        return Response(
            text="".join(self._parts),
            finish_reason=self._finish_reason,
            prompt_tokens=usage.get("prompt_tokens"),
            completion_tokens=completion_tokens,
            model=self._model or model,
            latency_s=0.0,
            response_id=self.response_id,
            top_logprobs=_top_logprobs(logprobs) if logprobs is not None else None,
        )
