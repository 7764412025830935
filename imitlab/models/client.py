"""One chat client for every OpenAI-compatible endpoint: hosted APIs, vLLM, llama.cpp, Ollama.

Built on the official ``openai`` package. The API key is taken from the argument or the environment at
call time and is never stored anywhere but in this object's memory (not in ``repr``, logs or manifests).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

import openai

from imitlab.errors import ImitlabError

Message = dict[str, str]
T = TypeVar("T")

KEY_ENVS = ("IMITLAB_API_KEY", "OPENAI_API_KEY")
# Local servers (llama.cpp, vLLM without --api-key) accept any key, but the openai client wants one.
_NO_KEY = "sk-no-key-needed"


@dataclass(frozen=True)
class ChatResult:
    text: str
    finish_reason: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    model: str
    latency_s: float
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def total_tokens(self) -> int | None:
        if self.prompt_tokens is None or self.completion_tokens is None:
            return None
        return self.prompt_tokens + self.completion_tokens


class ChatClient:
    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        timeout: float = 120.0,
        max_retries: int = 2,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.timeout = timeout
        self.max_retries = max_retries
        self._api_key = api_key or next((os.environ[k] for k in KEY_ENVS if os.environ.get(k)), None) or _NO_KEY
        self._sync: openai.OpenAI | None = None
        self._async: openai.AsyncOpenAI | None = None

    def __repr__(self) -> str:  # never show the key
        return f"ChatClient(base_url={self.base_url!r}, model={self.model!r})"

    @property
    def sync_client(self) -> openai.OpenAI:
        if self._sync is None:
            self._sync = openai.OpenAI(
                base_url=self.base_url, api_key=self._api_key, timeout=self.timeout, max_retries=self.max_retries
            )
        return self._sync

    @property
    def async_client(self) -> openai.AsyncOpenAI:
        if self._async is None:
            self._async = openai.AsyncOpenAI(
                base_url=self.base_url, api_key=self._api_key, timeout=self.timeout, max_retries=self.max_retries
            )
        return self._async

    def chat(self, messages: list[Message], **params: Any) -> ChatResult:
        """One chat completion. ``params`` are OpenAI sampling parameters (temperature, max_tokens, ...)."""
        start = time.perf_counter()
        try:
            response = self.sync_client.chat.completions.create(model=self.model, messages=messages, **params)
        except openai.APIConnectionError as exc:
            raise ImitlabError(f"cannot reach {self.base_url}: {exc}") from exc
        return _to_result(response, time.perf_counter() - start)

    async def achat(self, messages: list[Message], **params: Any) -> ChatResult:
        start = time.perf_counter()
        response = await self.async_client.chat.completions.create(model=self.model, messages=messages, **params)
        return _to_result(response, time.perf_counter() - start)

    async def aclose(self) -> None:
        """Close the async client from inside the event loop that used it.

        Its pooled connections belong to that loop. Left open, the client is closed when garbage-collected,
        inside whatever loop runs then, and that fails with "Event loop is closed"; and a later loop must not
        reuse its connections. The next ``async_client`` access makes a fresh one.
        """
        if self._async is not None:
            client, self._async = self._async, None
            await client.close()

    def close(self) -> None:
        if self._sync is not None:
            self._sync.close()


def run_closing(coro: Coroutine[Any, Any, T], *clients: object) -> T:
    """``asyncio.run(coro)``, closing the clients' async side before the loop ends (see ``ChatClient.aclose``).

    Anything without an ``aclose`` (a test double, a plain judge function) is skipped.
    """

    async def main() -> T:
        try:
            return await coro
        finally:
            for client in clients:
                aclose = getattr(client, "aclose", None)
                if aclose is not None:
                    await aclose()

    return asyncio.run(main())


def _to_result(response: Any, latency: float) -> ChatResult:
    if not response.choices:
        raise ImitlabError(f"endpoint returned no choices: {response!r}"[:500])
    choice = response.choices[0]
    usage = response.usage
    return ChatResult(
        text=choice.message.content or "",
        finish_reason=choice.finish_reason,
        prompt_tokens=getattr(usage, "prompt_tokens", None),
        completion_tokens=getattr(usage, "completion_tokens", None),
        model=response.model or "",
        latency_s=latency,
    )
