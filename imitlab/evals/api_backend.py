"""OpenAI-compatible endpoint backend (hosted APIs, vLLM, llama.cpp server, Ollama): generation, and
multiple choice by the answer letter.

Multiple choice is scored by the log-probabilities the endpoint reports for the first answer token
(``logprobs`` / ``top_logprobs``) when it gives them, else by generating a short answer and parsing the
letter from it. Each answer records which method produced it (``"logprobs"`` or ``"generate"``).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import openai

from imitlab.evals.metrics import parse_letter
from imitlab.models.client import ChatClient

log = logging.getLogger(__name__)

LETTER_INSTRUCTION = "Answer with the letter of the correct option only."
_MAX_STOPS = 4  # the OpenAI API accepts at most four stop strings; the rest are applied here


@dataclass(frozen=True)
class LetterAnswer:
    pred: int | None  # index of the chosen letter; None when the model named none
    method: str  # "logprobs" or "generate"
    text: str  # what the model wrote (for "logprobs": the top token)
    letter_logprobs: dict[str, float] | None = None


class APIBackend:
    name = "api"

    def __init__(self, client: ChatClient, *, concurrency: int = 4, mode: str = "chat") -> None:
        if mode not in ("chat", "completions"):
            raise ValueError(f"mode must be 'chat' or 'completions', got {mode!r}")
        self.client = client
        self.concurrency = concurrency
        self.mode = mode
        self.logprobs_ok: bool | None = None  # unknown until the first multiple-choice request
        self.stats = {"requests": 0, "prompt_tokens": 0, "completion_tokens": 0}
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- low level -------------------------------------------------------------------------------------
    async def _create(self, prompt: str, system: str | None, **params: Any) -> Any:
        self.stats["requests"] += 1
        api = self.client.async_client
        if self.mode == "completions":
            full = f"{system}\n\n{prompt}" if system else prompt
            response = await api.completions.create(model=self.client.model, prompt=full, **params)
        else:
            messages = ([{"role": "system", "content": system}] if system else []) + [
                {"role": "user", "content": prompt}
            ]
            response = await api.chat.completions.create(model=self.client.model, messages=messages, **params)
        usage = getattr(response, "usage", None)
        if usage is not None:
            self.stats["prompt_tokens"] += usage.prompt_tokens or 0
            self.stats["completion_tokens"] += usage.completion_tokens or 0
        return response

    def _text(self, response: Any) -> str:
        if not response.choices:
            return ""
        choice = response.choices[0]
        if self.mode == "completions":
            return choice.text or ""
        return choice.message.content or ""

    def _run(self, jobs: list[Any]) -> list[Any]:
        async def gather() -> list[Any]:
            gate = asyncio.Semaphore(self.concurrency)

            async def one(job: Any) -> Any:
                async with gate:
                    return await job

            return await asyncio.gather(*(one(j) for j in jobs))

        # One event loop for the backend's life: the async client's connection pool is bound to it.
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        return self._loop.run_until_complete(gather())

    def close(self) -> None:
        if self._loop is not None:
            self._loop.run_until_complete(self.client.async_client.close())
            self._loop.close()
            self._loop = None

    # -- generation ------------------------------------------------------------------------------------
    def generate(
        self,
        prompts: Sequence[str],
        *,
        stop: Sequence[str] = (),
        max_tokens: int = 64,
        n: int = 1,
        temperature: float = 0.0,
        system: str | None = None,
    ) -> list[list[str]]:
        async def one(prompt: str) -> str:
            params: dict[str, Any] = {"max_tokens": max_tokens, "temperature": temperature}
            if stop:
                params["stop"] = list(stop)[:_MAX_STOPS]
            text = self._text(await self._create(prompt, system, **params))
            return _cut(text, stop)

        flat = self._run([one(p) for p in prompts for _ in range(n)])
        return [flat[i * n : (i + 1) * n] for i in range(len(prompts))]

    # -- multiple choice by letter ---------------------------------------------------------------------
    def choose_letters(self, prompts: Sequence[str], letters: Sequence[Sequence[str]]) -> list[LetterAnswer]:
        """The letter each prompt's answer starts with, by logprobs when the endpoint reports them."""
        if self.logprobs_ok is None and prompts:
            first = self._run([self._by_logprobs(prompts[0], letters[0])])[0]
            self.logprobs_ok = first is not None
            log.info("endpoint %s logprobs: multiple choice by %s", "gives" if self.logprobs_ok else "lacks",
                     "logprobs" if self.logprobs_ok else "generation")  # fmt: skip
        if self.logprobs_ok:
            answers = self._run([self._by_logprobs(p, ls) for p, ls in zip(prompts, letters, strict=True)])
            # An item whose top tokens hold no letter falls back to generation for that item only.
            retry = [i for i, a in enumerate(answers) if a is None]
        else:
            answers = [None] * len(prompts)
            retry = list(range(len(prompts)))
        if retry:
            generated = self._run([self._by_generation(prompts[i], letters[i]) for i in retry])
            for i, answer in zip(retry, generated, strict=True):
                answers[i] = answer
        return answers  # type: ignore[return-value]

    async def _by_logprobs(self, prompt: str, letters: Sequence[str]) -> LetterAnswer | None:
        params: dict[str, Any] = {"max_tokens": 1, "temperature": 0.0}
        if self.mode == "completions":
            params["logprobs"] = 20
        else:
            params.update(logprobs=True, top_logprobs=20)
        try:
            response = await self._create(prompt, LETTER_INSTRUCTION, **params)
        except openai.BadRequestError as exc:
            log.info("logprobs request refused (%s); using generation", exc)
            return None
        top = _top_logprobs(response, self.mode)
        if not top:
            return None
        best: dict[str, float] = {}
        for token, logprob in top:
            key = token.strip().strip("().:").upper()
            if key in letters and logprob > best.get(key, -math.inf):
                best[key] = logprob
        if not best:
            return None
        chosen = max(best, key=best.__getitem__)
        return LetterAnswer(list(letters).index(chosen), "logprobs", top[0][0], best)

    async def _by_generation(self, prompt: str, letters: Sequence[str]) -> LetterAnswer:
        text = self._text(await self._create(prompt, LETTER_INSTRUCTION, max_tokens=8, temperature=0.0))
        return LetterAnswer(parse_letter(text, letters), "generate", text)


def _top_logprobs(response: Any, mode: str) -> list[tuple[str, float]]:
    """(token, logprob) alternatives for the first generated token, in either response layout."""
    if not response.choices:
        return []
    logprobs = getattr(response.choices[0], "logprobs", None)
    if logprobs is None:
        return []
    content = _get(logprobs, "content")
    if content:  # chat layout (llama.cpp uses it for completions too): content[0].top_logprobs
        return [(_get(t, "token"), _get(t, "logprob")) for t in (_get(content[0], "top_logprobs") or [])]
    top = _get(logprobs, "top_logprobs")
    if top:  # legacy completions layout: top_logprobs[0] = {token: logprob}
        return sorted(top[0].items(), key=lambda kv: -kv[1])
    return []


def _get(obj: Any, name: str) -> Any:
    """A field of an SDK object, or of the plain dict a server's non-standard extra field arrives as."""
    return obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)


def _cut(text: str, stop: Sequence[str]) -> str:
    cut = len(text)
    for s in stop:
        at = text.find(s)
        if at != -1:
            cut = min(cut, at)
    return text[:cut]
