"""Which request failures are worth retrying, and how long to wait before the next try.

Retryable: 408, 409, 429 and 5xx answers, timeouts, connection errors, malformed response bodies (cut, spliced or
incomplete streams included) and error events in a stream.
Not retryable: other 4xx (a bad request stays bad); 401, 403 and 404 are *fatal* because they would
fail every prompt alike (bad key, no access, unknown model), so the run stops and says so.
The wait is exponential backoff with "equal jitter" (half fixed, half random, so synchronized clients
spread out), and never shorter than the server's ``Retry-After`` / ``retry-after-ms``.
"""

from __future__ import annotations

import email.utils
import json
import random
import time
from dataclasses import dataclass

import httpx
import openai
import pydantic

# openai >= 3 talks through httpx2, older releases through httpx; transport errors of either are retryable.
_HTTP_ERRORS: tuple[type[Exception], ...] = (httpx.HTTPError,)
_TRANSPORT_ERRORS: tuple[type[Exception], ...] = (httpx.TransportError,)  # the connection failed under a request
_TIMEOUT_ERRORS: tuple[type[Exception], ...] = (httpx.TimeoutException, TimeoutError)
try:
    import httpx2

    _HTTP_ERRORS += (httpx2.HTTPError,)
    _TRANSPORT_ERRORS += (httpx2.TransportError,)
    _TIMEOUT_ERRORS += (httpx2.TimeoutException,)
except ImportError:  # pragma: no cover - depends on the openai release
    pass

_RETRY_STATUS = {408, 409, 429}
_FATAL_STATUS = {401, 403, 404}


@dataclass(frozen=True)
class Failure:
    """One failed attempt, classified."""

    reason: str  # short, human-readable; ends up in the manifest
    retryable: bool
    fatal: bool = False
    status: int | None = None
    retry_after: float | None = None  # seconds the server asked us to wait


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 6  # retries after the first attempt
    backoff_base: float = 1.0  # seconds before the first retry (before jitter)
    backoff_max: float = 60.0  # cap on the exponential part
    max_retry_after: float = 600.0  # longer server-requested waits are honoured only up to this

    def delay(self, attempt: int, failure: Failure, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        rng = rng or random
        exp = min(self.backoff_max, self.backoff_base * 2 ** (attempt - 1))
        wait = exp / 2 + rng.uniform(0, exp / 2)
        if failure.retry_after is not None:
            wait = max(wait, min(failure.retry_after, self.max_retry_after))
        return wait


def parse_retry_after(headers: httpx.Headers | None) -> float | None:
    """Seconds from ``retry-after-ms`` (OpenAI), ``Retry-After: <seconds>`` or ``Retry-After: <HTTP date>``."""
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def classify(exc: BaseException) -> Failure:
    """Turn an exception from one request into a :class:`Failure`."""
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        message = _short(getattr(exc, "message", "") or str(exc))
        retry_after = parse_retry_after(exc.response.headers)
        reason = f"HTTP {status}: {message}"
        if status in _RETRY_STATUS or status >= 500:
            return Failure(reason, retryable=True, status=status, retry_after=retry_after)
        return Failure(reason, retryable=False, fatal=status in _FATAL_STATUS, status=status)
    if isinstance(exc, (openai.APITimeoutError, *_TIMEOUT_ERRORS)):
        return Failure("timeout", retryable=True)
    if isinstance(exc, openai.APIConnectionError):
        cause = exc.__cause__ or exc
        return Failure(f"connection error: {_short(str(cause) or type(cause).__name__)}", retryable=True)
    # A 200 whose body is not the JSON we expect: the openai client raises a decode or validation error.
    # A body cut inside a multi-byte UTF-8 character fails to decode: the same cut body, so retryable too.
    if isinstance(exc, json.JSONDecodeError | UnicodeDecodeError | openai.APIResponseValidationError
                  | pydantic.ValidationError):  # fmt: skip
        return Failure(f"malformed response: {_short(str(exc))}", retryable=True)
    if isinstance(exc, MalformedResponse):
        return Failure(f"malformed response: {exc}", retryable=True)
    if isinstance(exc, StreamError):  # the server gave up mid-stream: like a 5xx, worth another try
        return Failure(f"stream error: {_short(str(exc))}", retryable=True)
    if isinstance(exc, _TRANSPORT_ERRORS):  # raised as is while a stream's body is read
        return Failure(f"connection error: {_short(str(exc) or type(exc).__name__)}", retryable=True)
    if isinstance(exc, _HTTP_ERRORS):
        return Failure(f"HTTP error: {_short(str(exc))}", retryable=True)
    return Failure(f"{type(exc).__name__}: {_short(str(exc))}", retryable=False)


class MalformedResponse(Exception):
    """The endpoint answered 200 but without a usable completion."""


class StreamError(Exception):
    """The endpoint sent an error event in the middle of a stream."""


def _short(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
