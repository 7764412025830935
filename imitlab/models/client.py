"""A small synchronous chat client for an OpenAI-compatible endpoint (``imitlab chat``, tests, benchmarks).

Stages send their requests through :mod:`imitlab.models.engine` instead (retries, cache, attribution).

Built on the official ``openai`` package. The API key is taken from the argument or the environment at
call time and is never stored anywhere but in this object's memory (not in ``repr``, logs or manifests).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

import openai

from imitlab.errors import ImitlabError

Message = dict[str, str]

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

    def __repr__(self) -> str:  # never show the key
        return f"ChatClient(base_url={self.base_url!r}, model={self.model!r})"

    @property
    def sync_client(self) -> openai.OpenAI:
        if self._sync is None:
            self._sync = openai.OpenAI(
                base_url=self.base_url, api_key=self._api_key, timeout=self.timeout, max_retries=self.max_retries
            )
        return self._sync

    def chat(self, messages: list[Message], **params: Any) -> ChatResult:
        """One chat completion. ``params`` are OpenAI sampling parameters (temperature, max_tokens, ...)."""
        start = time.perf_counter()
        try:
            response = self.sync_client.chat.completions.create(model=self.model, messages=messages, **params)
        except openai.APIConnectionError as exc:
            raise ImitlabError(f"cannot reach {self.base_url}: {exc}") from exc
        return _to_result(response, time.perf_counter() - start)

    def close(self) -> None:
        if self._sync is not None:
            self._sync.close()


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
