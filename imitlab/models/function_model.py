"""A Python function standing in for a chat model, behind the same request engine as a real one.

Tests and custom judges are plain async functions ``messages -> text``. :func:`function_model` wraps one in an
:class:`~imitlab.models.api_model.APIModel` whose engine calls the function instead of an endpoint, so the stage
code has one path: the same worker pool, progress bar, failure classification and accounting as a served model.
An exception from the function is classified like any other (a plain ``RuntimeError`` fails that request for
good; it is not retried). Nothing is cached: a function has no identity that would make its answers reusable.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from imitlab.models.api_model import APIModel
from imitlab.models.engine import EngineSettings, Message, Request, RequestEngine, Response

ChatFn = Callable[[list[Message]], Awaitable[str]]


class FunctionEngine(RequestEngine):
    """A :class:`RequestEngine` whose endpoint is an async function of the chat messages."""

    def __init__(self, fn: ChatFn, name: str, settings: EngineSettings, console: Any = None) -> None:
        no_cache = dataclasses.replace(settings, use_cache=False)
        super().__init__(f"function://{name}", name, identity=f"function:{name}", settings=no_cache, console=console)
        self._fn = fn

    async def _send(self, request: Request, attempt: int) -> Response:
        if request.kind != "chat":
            raise TypeError(f"{self.model}: a function model answers chat requests only")
        start = time.perf_counter()
        text = await self._fn(request.message_list())
        return Response(text=text, finish_reason="stop", prompt_tokens=None, completion_tokens=None, model=self.model,
                        latency_s=round(time.perf_counter() - start, 3), attempts=attempt)  # fmt: skip


@contextlib.contextmanager
def function_model(
    fn: ChatFn, *, name: str = "function", settings: EngineSettings | None = None, console: Any = None
) -> Iterator[APIModel]:
    """An :class:`APIModel` that answers every chat request with ``await fn(messages)``."""
    engine = FunctionEngine(fn, name, settings or EngineSettings(), console=console)
    with contextlib.closing(engine):
        yield APIModel(engine, spec=f"function:{name}", name=name)
