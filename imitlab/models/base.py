"""The one interface every model has, whichever way it runs: the :class:`Model` protocol.

Two implementations:

* :class:`~imitlab.evals.hf_backend.HFModel`: transformers weights in this process. It sees every
  logit, so it scores any continuation exactly (with the shared-prefix KV cache of k-shot prompts).
* :class:`~imitlab.models.api_model.APIModel`: an OpenAI-compatible endpoint (llama.cpp here; vLLM and hosted
  APIs elsewhere) behind one :class:`~imitlab.models.engine.RequestEngine`. An endpoint reports log-probabilities
  only for the tokens it *generates* (llama.cpp refuses ``echo``), so it scores a continuation exactly only when
  the continuation is one token that appears among the reported top alternatives.

What a model can do is declared in :class:`Capabilities`; callers pick their method from it (the eval runner
scores multiple choice by log-likelihood when ``loglikelihood == "any"``, else by the answer letter) and
never from what kind of model it is. A request a model cannot answer exactly raises :class:`UnsupportedRequest`
rather than returning an approximation.

The request and result types are shared by both implementations (lm-evaluation-harness's ``loglikelihood`` /
``generate_until`` split): :class:`LLRequest` -> :class:`LLResult`, and prompts (or :class:`GenRequest`, whose
``prefix_key`` tells the local model which prompts share a few-shot prefix) -> continuations.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from imitlab.errors import ImitlabError

if TYPE_CHECKING:  # the engine imports openai, which is slow to import; this module must stay light
    from imitlab.models.engine import RequestFailed, Response

Message = dict[str, str]  # {"role": ..., "content": ...}
Mode = Literal["chat", "completions"]  # a prompt sent as a user turn, or continued as raw text


@dataclass(frozen=True)
class LLRequest:
    """Score ``continuation`` after ``context``. Requests with the same ``prefix_key`` share a KV cache."""

    context: str
    continuation: str
    prefix_key: str = ""


@dataclass(frozen=True)
class LLResult:
    logprob: float  # sum of the continuation tokens' log-probabilities
    is_greedy: bool  # every continuation token is the argmax
    n_tokens: int


@dataclass(frozen=True)
class GenRequest:
    """A prompt to continue; prompts with the same ``prefix_key`` share a few-shot prefix (a local model
    computes it once). Where a plain string is accepted, it is a GenRequest with no prefix key."""

    prompt: str
    prefix_key: str = ""


@dataclass(frozen=True)
class Capabilities:
    """What a model can answer exactly; callers choose their method from this, never from the model's kind."""

    # "any": every continuation, of any length (weights in this process, or an endpoint that echoes prompt
    # logprobs); "single_token": only a one-token continuation found among the top alternatives of the
    # first generated token (llama.cpp, OpenAI chat models)
    loglikelihood: Literal["any", "single_token"]
    top_logprobs: int  # alternatives reported per generated token (0: none)


class UnsupportedRequest(ImitlabError):
    """The model cannot answer this request exactly (say, a multi-token log-likelihood over an API)."""


@runtime_checkable
class Model(Protocol):
    """A live model: what every stage receives instead of a spec string."""

    spec: str  # the spec it was opened from (for manifests)
    name: str  # a short human name (tables, file names)

    @property
    def identity(self) -> str:
        """Names the model for caches and resume: stable across processes and ports (weights digest, or model
        name plus endpoint host for a remote API)."""
        ...

    @property
    def capabilities(self) -> Capabilities: ...

    def chat(
        self, conversations: Sequence[Sequence[Message]], *, desc: str = ..., allow_empty: bool = ..., **params: Any
    ) -> list[Response | RequestFailed]:
        """One answer per conversation (``max_tokens``, ``temperature``, ``stop``, ... as in the OpenAI API)."""
        ...

    def generate(
        self,
        prompts: Sequence[str | GenRequest],
        *,
        stop: Sequence[str] = ...,
        max_tokens: int = ...,
        n: int = ...,
        temperature: float = ...,
        system: str | None = ...,
        mode: Mode = ...,
        desc: str = ...,
    ) -> list[list[str]]:
        """``n`` continuations per prompt, each cut before the first stop string."""
        ...

    def loglikelihood(self, requests: Sequence[LLRequest]) -> list[LLResult]:
        """The log-probability of each continuation after its context (tokenized the way lm-eval does)."""
        ...

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """How many tokens the model's tokenizer makes of each text (no special tokens added)."""
        ...

    def describe(self) -> dict[str, Any]:
        """What the model is, for manifests: backend, spec, identity and how it runs."""
        ...

    @property
    def usage(self) -> dict[str, Any]:
        """What it has done so far (requests and tokens, or forward-pass counts), for summaries."""
        ...

    def close(self) -> None: ...


def prompt_of(prompt: str | GenRequest) -> GenRequest:
    return prompt if isinstance(prompt, GenRequest) else GenRequest(prompt)


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """``text`` up to the first occurrence of any stop string."""
    cut = len(text)
    for s in stop:
        at = text.find(s)
        if at != -1:
            cut = min(cut, at)
    return text[:cut]
