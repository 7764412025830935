"""One request engine for every call imitlab makes to an OpenAI-compatible endpoint.

Collection, self-instruct, QA synthesis, API evaluation, answer generation, the pairwise judge and the style
probes all send their requests through :class:`RequestEngine`. It gives each of them the same guarantees:

* **concurrency**: at most ``concurrency`` requests in flight (a llama.cpp teacher gets that many slots);
* **classified retries** (:mod:`imitlab.models.retry`): 408/409/429/5xx, timeouts, connection errors and
  malformed bodies are retried with jittered exponential backoff, never sooner than the server's
  ``Retry-After``, which pauses every worker, not just the one that got it; 401/403/404 stop the run;
* **attribution**: an answer is accepted only if it provably belongs to the request it answers: it carries a
  server-issued id never received before, or it came on a connection that carried no other request. A response
  whose id was already seen (a stale copy delivered on a reused keep-alive connection), one without an id on a
  keep-alive connection, a body cut anywhere (broken JSON, a UTF-8 sequence cut in half), a stream that ends
  without its final event, or one without a completion is retried on a *fresh* connection, never returned.
  Until a response with an id proves the server gives them, every request gets a connection of its own.
  See docs/collect.md, "Attribution" and "Streaming";
* **streaming** (``EngineSettings.stream`` or ``Request.stream``): server-sent events, for long generations
  behind proxies that cut idle connections, under the same retry, cache and attribution rules;
* **the response cache** (:mod:`imitlab.models.response_cache`), keyed by the model's stable identity (never a
  port), the request body and a sample index, so reruns, resumes and other stages asking the same thing cost
  nothing;
* **accounting**: requests, cache hits, retries, failures by reason, prompt/completion tokens and cost;
* **a progress bar** (rich) per batch of work, with tokens/s and ETA.

The engine owns one event loop, so its pooled connections live as long as it does; synchronous callers use
:meth:`RequestEngine.map` / :meth:`RequestEngine.run`, async code awaits :meth:`RequestEngine.submit`.
The API key is read from the argument or the environment and kept only in memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, TypeVar

from imitlab.errors import ImitlabError
from imitlab.models.response_cache import ResponseCache, cache_key, default_cache_path
from imitlab.models.retry import Failure, MalformedResponse, RetryPolicy, classify
from imitlab.models.stream import StreamAssembly

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")
Message = dict[str, str]

KEY_ENVS = ("IMITLAB_API_KEY", "OPENAI_API_KEY")
_NO_KEY = "sk-no-key-needed"  # local servers accept any key, but the openai client wants one
_DRAIN_AFTER_DONE_S = 1.0  # how long the end of a stream's body may take to arrive after [DONE]


@dataclass(frozen=True)
class EngineSettings:
    """How an engine talks to its endpoint. Shared by every stage's config."""

    concurrency: int = 8  # requests in flight (and a local llama.cpp server's parallel slots)
    timeout: float = 120.0  # seconds per request, end to end
    max_retries: int = 6  # retries after the first attempt
    backoff_base: float = 1.0
    backoff_max: float = 60.0
    use_cache: bool = True
    cache_path: Path | None = None  # default: <cache root>/collect/responses.sqlite
    cache_root: Path | None = None  # the imitlab cache root the default cache path lives under
    price_prompt_per_m: float | None = None  # USD per million prompt tokens, for the cost estimate
    price_completion_per_m: float | None = None
    progress: bool = True
    stream: bool = False  # server-sent events (a request's own ``stream`` overrides this)

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ImitlabError(f"concurrency must be at least 1, not {self.concurrency}")
        if self.timeout <= 0:
            raise ImitlabError(f"timeout must be positive, not {self.timeout}")
        if self.max_retries < 0:
            raise ImitlabError(f"max_retries must be 0 or more, not {self.max_retries}")


@dataclass(frozen=True)
class Request:
    """One call: a chat (``messages``) or a raw completion (``prompt``), with its body parameters.

    ``sample`` tells apart repeated draws of the same request (the cache stores one answer per sample).
    ``tag`` names the request in logs and failure records (a prompt id). ``stream`` asks for server-sent events
    (None: the engine's setting); it is how the answer travels, not part of what is asked, so it is not part of
    the cache key.
    """

    messages: tuple[tuple[str, str], ...] | None = None  # ((role, content), ...): hashable and immutable
    prompt: str | None = None
    params: tuple[tuple[str, Any], ...] = ()
    sample: int = 0
    tag: str = ""
    stream: bool | None = None

    @classmethod
    def chat(
        cls, messages: Sequence[Message], *, sample: int = 0, tag: str = "", stream: bool | None = None,
        **params: Any,
    ) -> Request:  # fmt: skip
        return cls(messages=tuple((m["role"], m["content"]) for m in messages), params=_freeze(params),
                   sample=sample, tag=tag, stream=stream)  # fmt: skip

    @classmethod
    def completion(
        cls, prompt: str, *, sample: int = 0, tag: str = "", stream: bool | None = None, **params: Any
    ) -> Request:
        return cls(prompt=prompt, params=_freeze(params), sample=sample, tag=tag, stream=stream)

    @property
    def kind(self) -> Literal["chat", "completion"]:
        return "chat" if self.messages is not None else "completion"

    def message_list(self) -> list[Message]:
        return [{"role": r, "content": c} for r, c in self.messages or ()]

    def param_dict(self) -> dict[str, Any]:
        return {k: _thaw(v) for k, v in self.params}


def _freeze(params: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    def freeze(v: Any) -> Any:
        return tuple(freeze(x) for x in v) if isinstance(v, list | tuple) else v

    return tuple(sorted((k, freeze(v)) for k, v in params.items() if v is not None))


def _thaw(v: Any) -> Any:
    return [_thaw(x) for x in v] if isinstance(v, tuple) else v


@dataclass(frozen=True)
class Response:
    """A completion that belongs to its request."""

    text: str
    finish_reason: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    model: str
    latency_s: float
    response_id: str | None = None
    cached: bool = False
    attempts: int = 1
    # per generated token: [(token, logprob), ...] alternatives, best first (when logprobs were asked for)
    top_logprobs: list[list[tuple[str, float]]] | None = field(default=None, repr=False)

    def to_cache(self) -> dict[str, Any]:
        return {
            "text": self.text, "finish_reason": self.finish_reason, "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens, "model": self.model, "latency_s": self.latency_s,
            "response_id": self.response_id,
            "top_logprobs": [[list(t) for t in pos] for pos in self.top_logprobs] if self.top_logprobs else None,
        }  # fmt: skip

    @classmethod
    def from_cache(cls, value: dict[str, Any]) -> Response:
        top = value.get("top_logprobs")
        return cls(
            text=value["text"], finish_reason=value.get("finish_reason"), prompt_tokens=value.get("prompt_tokens"),
            completion_tokens=value.get("completion_tokens"), model=value.get("model") or "",
            latency_s=value.get("latency_s") or 0.0, response_id=value.get("response_id"), cached=True, attempts=0,
            top_logprobs=[[(str(t), float(lp)) for t, lp in pos] for pos in top] if top else None,
        )  # fmt: skip


class RequestFailed(ImitlabError):
    """A request that failed for good (not retryable, or out of retries). Other requests go on."""

    def __init__(self, request: Request, failure: Failure, attempts: int) -> None:
        super().__init__(f"{request.tag or 'request'}: {failure.reason} (after {attempts} attempt(s))")
        self.request = request
        self.failure = failure
        self.attempts = attempts


class EngineAborted(ImitlabError):
    """A failure that would hit every request alike (bad key, no access, unknown model): the engine stops."""


class EmptyCompletion(Exception):
    """The endpoint answered with an empty completion (only an error where the caller says so)."""


@dataclass
class Usage:
    """What an engine did, for manifests and progress bars."""

    requests: int = 0  # HTTP attempts sent
    cached: int = 0  # answered from the response cache
    retries: int = 0
    failed: int = 0
    prompt_tokens: int = 0  # fresh (not cached) requests only
    completion_tokens: int = 0
    failure_reasons: Counter[str] = field(default_factory=Counter)
    anomalies: Counter[str] = field(default_factory=Counter)  # duplicated ids, cut bodies, ... (all retried)

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests, "cached": self.cached, "retries": self.retries, "failed": self.failed,
            "prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
            "failure_reasons": dict(self.failure_reasons), "anomalies": dict(self.anomalies),
        }  # fmt: skip


class RequestEngine:
    """Sends :class:`Request` objects to one model behind one OpenAI-compatible endpoint."""

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        identity: str,
        settings: EngineSettings | None = None,
        api_key: str | None = None,
        console: Any = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.identity = identity  # stable across processes and ports: keys the response cache
        self.settings = settings or EngineSettings()
        self.console = console
        self.usage = Usage()
        self._api_key = api_key or next((os.environ[k] for k in KEY_ENVS if os.environ.get(k)), None) or _NO_KEY
        self._policy = RetryPolicy(self.settings.max_retries, self.settings.backoff_base, self.settings.backoff_max)
        self._rng = random.Random()
        self._cache: ResponseCache | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pools: dict[bool, _Pool] = {}  # by one_shot: the keep-alive pool and the one-request-per-connection one
        self._retired: list[_Pool] = []  # given up after an anomaly; each is closed once its last request is done
        self._ids_proven = False  # a response carried an id: keep-alive connections may be used (see _send)
        self._gate: asyncio.Semaphore | None = None
        self._pause_until = 0.0  # monotonic time before which no request is sent (a shared Retry-After)
        self._seen_ids: set[str] = set()
        self._fatal: EngineAborted | None = None

    def __repr__(self) -> str:  # never show the key
        return f"RequestEngine(base_url={self.base_url!r}, model={self.model!r}, identity={self.identity!r})"

    # -- lifecycle -------------------------------------------------------------------------------------
    @property
    def cache(self) -> ResponseCache | None:
        if self._cache is None and self.settings.use_cache:
            self._cache = ResponseCache(self.settings.cache_path or default_cache_path(self.settings.cache_root))
        return self._cache

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` to completion on the engine's own event loop (its connections belong to that loop)."""
        if self._loop is None or self._loop.is_closed():
            self._loop = asyncio.new_event_loop()
        return self._loop.run_until_complete(coro)

    def close(self) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.run_until_complete(self._drop_connections())
            self._loop.close()
        self._loop = None
        if self._cache is not None:
            self._cache.close()
            self._cache = None

    def __enter__(self) -> RequestEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _pool(self, one_shot: bool) -> _Pool:
        """The connection pool a request is sent through; ``one_shot``: every request on a connection of its own,
        closed after its response (``Connection: close``, no keep-alive), so no other response can be on it."""
        pool = self._pools.get(one_shot)
        if pool is None:
            import openai  # imported here: it is slow to import, and the CLI must start fast

            limits = openai.DEFAULT_CONNECTION_LIMITS
            if one_shot:
                limits = type(limits)(max_connections=limits.max_connections, max_keepalive_connections=0)
            # Our own retry loop decides (and records) retries, so the openai client must not retry too.
            http = openai.DefaultAsyncHttpxClient(limits=limits)
            client = openai.AsyncOpenAI(base_url=self.base_url, api_key=self._api_key, max_retries=0,
                                        timeout=self.settings.timeout, http_client=http)  # fmt: skip
            pool = self._pools[one_shot] = _Pool(client, http, one_shot)
        return pool

    async def _drop_connections(self) -> None:
        """Close every pooled connection; the next request opens a fresh one."""
        pools, self._retired = [*self._retired, *self._pools.values()], []
        self._pools = {}
        for pool in pools:
            await pool.close()

    async def _retire_connections(self) -> None:
        """After a protocol anomaly: later requests use a fresh keep-alive pool. Requests in flight on the old
        pool finish there (closing it under them would fail them); it is closed when the last of them is done."""
        pool = self._pools.pop(False, None)
        if pool is not None:
            pool.retired = True
            if pool.inflight:
                self._retired.append(pool)
            else:
                await pool.close()

    # -- one request -----------------------------------------------------------------------------------
    async def submit(self, request: Request, *, allow_empty: bool = True) -> Response:
        """One answer for ``request`` (cached or fresh, with retries).

        Raises :class:`RequestFailed` when it fails for good and :class:`EngineAborted` on a fatal failure.
        ``allow_empty=False`` makes an empty completion a failure (not retried: a model that answers nothing
        will answer nothing again at the same settings).
        """
        if self._fatal is not None:
            raise self._fatal
        key = self._cache_key(request)
        cache = self.cache
        if cache is not None and (hit := cache.get(key)) is not None:
            self.usage.cached += 1
            return Response.from_cache(hit)
        if self._gate is None:
            self._gate = asyncio.Semaphore(self.settings.concurrency)
        attempt = 0
        while True:
            attempt += 1
            if (wait := self._pause_until - time.monotonic()) > 0:
                await asyncio.sleep(wait)
            try:
                async with self._gate:
                    self.usage.requests += 1
                    response = await self._send(request, attempt)
                if not allow_empty and not response.text.strip():
                    raise EmptyCompletion()
            except EmptyCompletion:
                failure = Failure("empty completion", retryable=False)
                self._count_failure(failure)
                raise RequestFailed(request, failure, attempt) from None
            except Exception as exc:  # classified below; CancelledError is a BaseException and passes
                failure = classify(exc)
                if failure.fatal:
                    self._fatal = EngineAborted(f"{failure.reason} (from {self.model} at {self.base_url}); stopping")
                    raise self._fatal from None
                if failure.reason.startswith("malformed response"):
                    self.usage.anomalies[_anomaly_kind(failure.reason)] += 1
                    await self._retire_connections()  # nothing more is read from a connection we can't trust
                if not failure.retryable or attempt > self.settings.max_retries:
                    self._count_failure(failure)
                    raise RequestFailed(request, failure, attempt) from None
                delay = self._policy.delay(attempt, failure, self._rng)
                if failure.retry_after is not None:  # the server is rate limiting everyone: all workers wait
                    self._pause_until = max(self._pause_until, time.monotonic() + delay)
                self.usage.retries += 1
                log.debug("%s: attempt %d failed (%s); retrying in %.2f s", request.tag, attempt, failure.reason, delay)
                await asyncio.sleep(delay)
                continue
            if cache is not None:
                cache.put(key, response.to_cache())
            self.usage.prompt_tokens += response.prompt_tokens or 0
            self.usage.completion_tokens += response.completion_tokens or 0
            return response

    def _count_failure(self, failure: Failure) -> None:
        self.usage.failed += 1
        self.usage.failure_reasons[failure.reason.split(":", 1)[0]] += 1

    def _cache_key(self, request: Request) -> str:
        params = request.param_dict()
        if request.kind == "chat":  # the same key collection has always used: old caches stay valid
            return cache_key(self.identity, request.message_list(), params, request.sample)
        return cache_key(self.identity, [], {**params, "__prompt__": request.prompt}, request.sample)

    async def _send(self, request: Request, attempt: int) -> Response:
        stream = self.settings.stream if request.stream is None else request.stream
        # Until a response with an id shows that the server gives them, a request gets a connection of its own.
        one_shot = not self._ids_proven
        pool = self._pool(one_shot)
        pool.inflight += 1
        start = time.perf_counter()
        try:
            async with asyncio.timeout(self.settings.timeout):  # end to end, even if the server trickles bytes
                receive = self._receive_stream if stream else self._receive_body
                reply = await receive(pool.client, request, one_shot)
        finally:
            pool.inflight -= 1
            if pool.retired and not pool.inflight and pool in self._retired:
                self._retired.remove(pool)
                await pool.close()
        if reply.response_id is None and not one_shot:
            # Without an id nothing shows this body is not a stale copy of another request's answer; a response
            # without one is accepted only from a connection that carried nothing else.
            self._ids_proven = False
            raise MalformedResponse("no response id on a keep-alive connection: cannot show it answers this request")
        return replace(reply, latency_s=round(time.perf_counter() - start, 3), attempts=attempt)

    def _register_id(self, response_id: str | None) -> None:
        """Server ids are unique per completion (OpenAI, vLLM, llama.cpp, Ollama). Seeing one twice means this body
        answered an earlier request: a stale copy delivered on a reused connection."""
        if response_id is None:
            return
        if response_id in self._seen_ids:
            raise MalformedResponse(f"duplicate response id: {response_id!r} was already received")
        self._seen_ids.add(response_id)
        self._ids_proven = True

    def _call_args(self, request: Request, one_shot: bool) -> dict[str, Any]:
        args: dict[str, Any] = {"model": self.model, **request.param_dict()}
        if request.kind == "chat":
            args["messages"] = request.message_list()
        else:
            args["prompt"] = request.prompt
        if one_shot:  # the server closes the connection after this response too
            args["extra_headers"] = {"Connection": "close"}
        return args

    async def _receive_body(self, api: Any, request: Request, one_shot: bool) -> Response:
        """One JSON response."""
        endpoint = api.chat.completions if request.kind == "chat" else api.completions
        raw = await endpoint.create(**self._call_args(request, one_shot))
        response_id = getattr(raw, "id", None)
        response_id = response_id if isinstance(response_id, str) and response_id else None
        self._register_id(response_id)  # first: a stale copy is refused as one, whatever else is wrong with it
        choices = getattr(raw, "choices", None)
        if not choices:
            raise MalformedResponse(f"no choices in {str(raw)[:120]!r}")
        choice = choices[0]
        if request.kind == "chat":
            text = getattr(getattr(choice, "message", None), "content", None)
        else:
            text = getattr(choice, "text", None)
        if not isinstance(text, str):
            raise MalformedResponse("the first choice has no text")
        usage = getattr(raw, "usage", None)
        return Response(
            text=text,
            finish_reason=getattr(choice, "finish_reason", None),
            prompt_tokens=getattr(usage, "prompt_tokens", None),
            completion_tokens=getattr(usage, "completion_tokens", None),
            model=getattr(raw, "model", None) or self.model,
            latency_s=0.0,
            response_id=response_id,
            top_logprobs=_top_logprobs(choice),
        )

    async def _receive_stream(self, api: Any, request: Request, one_shot: bool) -> Response:
        """Server-sent events, accepted only whole: one completion id throughout, a finish_reason, then [DONE].

        The events are parsed with the SDK's own SSE decoder, not its stream iterator: that iterator ends the same
        way at ``[DONE]`` and at a body that simply stops, and a stream cut short must be retried, not recorded.
        """
        from openai._streaming import SSEDecoder

        endpoint = api.chat.completions if request.kind == "chat" else api.completions
        args = {**self._call_args(request, one_shot), "stream": True, "stream_options": {"include_usage": True}}
        stream = StreamAssembly(request.kind)
        async with endpoint.with_streaming_response.create(**args) as http:
            events = SSEDecoder().aiter_bytes(http.iter_bytes())
            try:
                async for event in events:
                    if event.data.startswith("[DONE]"):
                        stream.done = True
                        break
                    chunk = json.loads(event.data)
                    if stream.response_id is None and isinstance(chunk, dict) and chunk.get("id"):
                        self._register_id(str(chunk["id"]))  # at the first event: a stale stream is refused at once
                    stream.add(chunk, event.event)
                if stream.done:
                    # What follows [DONE] is read (and ignored) only so that the connection can serve another
                    # request; a server that holds the stream open past it gets a moment, then the connection is
                    # closed instead, and the answer stands.
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(_DRAIN_AFTER_DONE_S):
                            async for _ in events:
                                pass
            finally:
                await events.aclose()
        return stream.finish(self.model)

    # -- many requests ---------------------------------------------------------------------------------
    async def run_jobs(
        self,
        jobs: Iterable[T],
        work: Callable[[T], Awaitable[R]],
        *,
        desc: str,
        total: int | None = None,
        done_before: int = 0,
        on_result: Callable[[T, R | RequestFailed], None] | None = None,
    ) -> list[R | RequestFailed]:
        """Run ``work(job)`` for every job, ``concurrency`` at a time, with a progress bar.

        Returns results in job order; a job that failed for good gives its :class:`RequestFailed` in its place
        (and to ``on_result``) while the others go on. :class:`EngineAborted` (or any other exception) cancels
        the rest and propagates. ``work`` may send several requests (a multi-turn conversation).
        """
        listed = list(jobs)
        results: list[Any] = [None] * len(listed)
        queue = iter(enumerate(listed))
        start = time.perf_counter()
        tokens_before = self.usage.completion_tokens
        with self.progress(desc, total=(total if total is not None else len(listed) + done_before)) as bar:
            bar.advance(done_before)

            async def worker() -> None:
                while (entry := next(queue, None)) is not None:
                    i, job = entry
                    try:
                        result: Any = await work(job)
                    except RequestFailed as exc:
                        result = exc
                    results[i] = result
                    if on_result is not None:
                        on_result(job, result)
                    rate = (self.usage.completion_tokens - tokens_before) / max(time.perf_counter() - start, 1e-9)
                    bar.advance(1, note=f"{rate:.1f} tok/s, {self.usage.failed} failed, "
                                        f"{self.usage.cached} cached, {self.usage.retries} retries")  # fmt: skip

            workers = [
                asyncio.create_task(worker()) for _ in range(min(self.settings.concurrency, max(1, len(listed))))
            ]
            try:
                await asyncio.gather(*workers)
            except BaseException:
                for w in workers:
                    w.cancel()
                await asyncio.gather(*workers, return_exceptions=True)
                raise
        return results

    async def amap(self, requests: Sequence[Request], *, desc: str, allow_empty: bool = True) -> list[Any]:
        return await self.run_jobs(requests, lambda r: self.submit(r, allow_empty=allow_empty), desc=desc)

    def map(
        self, requests: Sequence[Request], *, desc: str, allow_empty: bool = True
    ) -> list[Response | RequestFailed]:
        """Answers for ``requests`` in order (a :class:`RequestFailed` where one failed for good)."""
        return self.run(self.amap(requests, desc=desc, allow_empty=allow_empty))

    def progress(self, desc: str, total: int) -> ProgressBar:
        return ProgressBar(desc, total, enabled=self.settings.progress, console=self.console)


@dataclass(eq=False)
class _Pool:
    """One openai client over one httpx connection pool."""

    client: Any  # openai.AsyncOpenAI
    http: Any  # its httpx AsyncClient
    one_shot: bool  # no keep-alive: one request per connection
    inflight: int = 0
    retired: bool = False

    async def close(self) -> None:
        await self.client.close()
        await self.http.aclose()


class ProgressBar:
    """A rich progress bar with count, rate note, elapsed time and ETA; a no-op when disabled."""

    def __init__(self, desc: str, total: int | None, *, enabled: bool = True, console: Any = None) -> None:
        self.desc, self.total, self.enabled, self.console = desc, total, enabled, console
        self._progress: Any = None
        self._task: Any = None

    def __enter__(self) -> ProgressBar:
        if self.enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,  # fmt: skip
            )

            self._progress = Progress(
                TextColumn(f"[bold]{self.desc}[/]"), BarColumn(), MofNCompleteColumn(),
                TextColumn("[dim]{task.fields[note]}[/]"), TimeElapsedColumn(), TextColumn("ETA"),
                TimeRemainingColumn(), console=self.console, refresh_per_second=4, transient=False,
            )  # fmt: skip
            self._progress.__enter__()
            self._task = self._progress.add_task(self.desc, total=self.total, note="")
        return self

    def advance(self, n: float = 1, *, note: str | None = None) -> None:
        if self._progress is not None:
            fields = {"note": note} if note is not None else {}
            self._progress.update(self._task, advance=n, **fields)

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)


def _top_logprobs(choice: Any) -> list[list[tuple[str, float]]] | None:
    """Per generated token, its (token, logprob) alternatives, in either response layout."""
    logprobs = getattr(choice, "logprobs", None)
    if logprobs is None:
        return None
    content = _get(logprobs, "content")
    if content:  # chat layout (llama.cpp uses it for completions too)
        out = []
        for pos in content:
            top = [(str(_get(t, "token")), float(_get(t, "logprob"))) for t in (_get(pos, "top_logprobs") or [])]
            out.append(top or [(str(_get(pos, "token")), float(_get(pos, "logprob")))])
        return out
    top = _get(logprobs, "top_logprobs")
    if top:  # legacy completions layout: top_logprobs[i] = {token: logprob}
        return [sorted(((str(t), float(lp)) for t, lp in pos.items()), key=lambda kv: -kv[1]) for pos in top if pos]
    return None


_ANOMALY_KINDS = (  # (words in the reason, the kind counted in the manifest), first match wins
    ("duplicate response id", "duplicate response id"),
    ("no response id", "no response id on a keep-alive connection"),
    ("stream spliced", "spliced stream"),
    ("stream ended", "stream without its final event"),
    ("delivered twice", "stream event delivered twice"),
    ("stream has content after", "stream content after its final event"),
    ("decode", "cut body (bad UTF-8)"),
    ("utf-8", "cut body (bad UTF-8)"),
)


def _anomaly_kind(reason: str) -> str:
    lowered = reason.lower()
    return next((kind for words, kind in _ANOMALY_KINDS if words in lowered), "malformed body")


def _get(obj: Any, name: str) -> Any:
    """A field of an SDK object, or of the plain dict a server's non-standard extra field arrives as."""
    return obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)
