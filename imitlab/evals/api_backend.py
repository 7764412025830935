"""Multiple choice by the answer letter, for a model that cannot score every continuation exactly (an
OpenAI-compatible endpoint: hosted APIs, vLLM, llama.cpp server, Ollama).

Each item is asked for one token after a "answer with the letter" instruction, with the top alternatives'
log-probabilities (``Response.top_logprobs``); the most likely letter among them is the answer. When the
endpoint reports no log-probabilities (or refuses the request), or none of the top tokens is a letter, the
item is answered by generating a short answer and parsing the letter from it. Each answer records which
method produced it (``"logprobs"`` or ``"generate"``). Requests go through the model's
:class:`~imitlab.models.engine.RequestEngine` (retries, response cache, accounting, progress).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

from imitlab.errors import ImitlabError
from imitlab.evals.metrics import parse_letter
from imitlab.models.api_model import APIModel
from imitlab.models.base import Mode
from imitlab.models.engine import Request, RequestFailed, Response

log = logging.getLogger(__name__)

LETTER_INSTRUCTION = "Answer with the letter of the correct option only."


@dataclass(frozen=True)
class LetterAnswer:
    pred: int | None  # index of the chosen letter; None when the model named none
    method: str  # "logprobs" or "generate"
    text: str  # what the model wrote (for "logprobs": the top token)
    letter_logprobs: dict[str, float] | None = None


def choose_letters(
    model: APIModel, prompts: Sequence[str], letters: Sequence[Sequence[str]], *, mode: Mode = "chat"
) -> list[LetterAnswer]:
    """The letter each prompt's answer starts with, by logprobs when the endpoint reports them."""
    if not isinstance(model, APIModel):
        raise ImitlabError(
            f"{model}: multiple choice needs a model that scores continuations exactly or an OpenAI-compatible "
            "endpoint that answers by letter"
        )
    if not prompts:
        return []
    # The first item tells whether this endpoint gives logprobs at all; if not, the rest skip straight to
    # generation instead of each paying for a request that cannot help.
    first = _by_logprobs(model, prompts[:1], letters[:1], mode)
    answers: list[LetterAnswer | None] = first
    if first[0] is not None:
        answers += _by_logprobs(model, prompts[1:], letters[1:], mode)
    else:
        log.info("%s gives no logprobs: multiple choice by generation", model.spec)
        answers += [None] * (len(prompts) - 1)
    retry = [i for i, a in enumerate(answers) if a is None]  # no letter among the top tokens: generate
    if retry:
        generated = _by_generation(model, [prompts[i] for i in retry], [letters[i] for i in retry], mode)
        for i, answer in zip(retry, generated, strict=True):
            answers[i] = answer
    return answers  # type: ignore[return-value]


def _by_logprobs(
    model: APIModel, prompts: Sequence[str], letters: Sequence[Sequence[str]], mode: Mode
) -> list[LetterAnswer | None]:
    top = model.capabilities.top_logprobs
    # completions take the number of alternatives as "logprobs"; chat takes a flag and "top_logprobs"
    params: dict[str, object] = {"logprobs": top} if mode == "completions" else {"logprobs": True, "top_logprobs": top}
    params.update(max_tokens=1, temperature=0.0)
    requests = [
        model.request(p, system=LETTER_INSTRUCTION, mode=mode, tag=f"letter#{i}", **params)
        for i, p in enumerate(prompts)
    ]
    answers: list[LetterAnswer | None] = []
    for response, ls in zip(model.engine.map(requests, desc="letters by logprobs"), letters, strict=True):
        if isinstance(response, RequestFailed):
            if response.failure.retryable:
                raise ImitlabError(f"{model.spec}: {response}")
            log.info("logprobs request refused (%s); using generation", response.failure.reason)
            answers.append(None)
        else:
            answers.append(_letter_from_top(response, ls))
    return answers


def _letter_from_top(response: Response, letters: Sequence[str]) -> LetterAnswer | None:
    top = response.top_logprobs[0] if response.top_logprobs else []
    best: dict[str, float] = {}
    for token, logprob in top:
        key = token.strip().strip("().:").upper()
        if key in letters and logprob > best.get(key, -math.inf):
            best[key] = logprob
    if not best:
        return None
    chosen = max(best, key=best.__getitem__)
    return LetterAnswer(list(letters).index(chosen), "logprobs", top[0][0], best)


def _by_generation(
    model: APIModel, prompts: Sequence[str], letters: Sequence[Sequence[str]], mode: Mode
) -> list[LetterAnswer]:
    requests: list[Request] = [
        model.request(p, system=LETTER_INSTRUCTION, mode=mode, max_tokens=8, temperature=0.0, tag=f"letter#{i}")
        for i, p in enumerate(prompts)
    ]
    answers = []
    for response, ls in zip(model.engine.map(requests, desc="letters by generation"), letters, strict=True):
        if isinstance(response, RequestFailed):
            raise ImitlabError(f"{model.spec}: {response}")
        answers.append(LetterAnswer(parse_letter(response.text, ls), "generate", response.text))
    return answers
