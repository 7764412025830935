"""Token counts and log-likelihoods from an OpenAI-compatible endpoint: what an API model can say exactly.

An endpoint reports log-probabilities only for the tokens it generates: llama.cpp's server refuses ``echo``
("Only no echo is supported"), and OpenAI's chat models never had it. So the log-likelihood of a continuation
is exact here only when the continuation is a single token: ask for one generated token after the context
with its top alternatives, and read the continuation's log-probability from them. llama.cpp reports them
before sampling (``post_sampling_probs`` is off by default), so they are the model's softmax, not the
sampler's. A continuation of several tokens, or one outside the top alternatives, raises
:class:`~imitlab.models.base.UnsupportedRequest` instead of returning a guess.

Tokenization uses the server's ``/tokenize`` (llama.cpp: ``{"content": ...}``; vLLM also serves one), split the
way lm-evaluation-harness splits a context/continuation pair, so both backends see the same tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from imitlab.errors import ImitlabError
from imitlab.models.base import LLRequest, LLResult, UnsupportedRequest
from imitlab.models.engine import Request, RequestFailed, Response

if TYPE_CHECKING:
    from imitlab.models.engine import RequestEngine

TOP_LOGPROBS = 20  # alternatives asked for per generated token (OpenAI's cap for chat models)


def server_root(base_url: str) -> str:
    """The server's root URL: ``/tokenize`` lives beside ``/v1``, not under it."""
    root = base_url.rstrip("/")
    return root[: -len("/v1")] if root.endswith("/v1") else root


class Tokenizer:
    """The endpoint's own tokenizer, through ``POST /tokenize`` (remembered per text)."""

    def __init__(self, base_url: str, *, timeout: float = 60.0) -> None:
        self.url = server_root(base_url) + "/tokenize"
        self.timeout = timeout
        self._client: Any = None
        self._known: dict[str, list[str]] = {}

    def pieces(self, text: str) -> list[str]:
        """The tokens of ``text`` (no special tokens added), as the text pieces the endpoint decodes them to."""
        if text not in self._known:
            body = self._post({"content": text, "add_special": False, "with_pieces": True})
            tokens = body.get("tokens")
            if not isinstance(tokens, list):
                raise ImitlabError(f"{self.url}: answer has no 'tokens' list: {str(body)[:200]}")
            self._known[text] = [_piece(t) for t in tokens]
        return self._known[text]

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        import httpx

        if self._client is None:
            self._client = httpx.Client(timeout=self.timeout)
        try:
            response = self._client.post(self.url, json=body)
        except httpx.HTTPError as exc:
            raise ImitlabError(f"{self.url}: {exc}") from None
        if response.status_code == 404:
            raise UnsupportedRequest(f"{self.url}: the endpoint has no tokenizer route (HTTP 404); "
                                     "token counts need llama.cpp's or vLLM's server")  # fmt: skip
        if response.status_code != 200:
            raise ImitlabError(f"{self.url}: HTTP {response.status_code}: {response.text[:200]}")
        return response.json()

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def _piece(token: Any) -> str:
    """A token as llama.cpp's ``with_pieces`` gives it: {"id", "piece"}, piece a string or a list of bytes."""
    if isinstance(token, dict):
        piece = token.get("piece")
        if isinstance(piece, list):  # not valid UTF-8 on its own
            return bytes(piece).decode("utf-8", errors="replace")
        return str(piece)
    return str(token)  # a bare id, from a server without pieces


def split_pair(tokenizer: Tokenizer, context: str, continuation: str) -> tuple[str, list[str]]:
    """lm-eval's split: trailing spaces of the context move to the continuation; the pair is tokenized whole
    and the context's tokens are cut off the front. Returns the context text and the continuation's tokens."""
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces:
        continuation = context[-n_spaces:] + continuation
        context = context[:-n_spaces]
    whole = tokenizer.pieces(context + continuation)
    ctx = tokenizer.pieces(context) if context else []
    return context, whole[len(ctx) :]


def loglikelihood(
    engine: RequestEngine, tokenizer: Tokenizer, requests: Sequence[LLRequest], *, desc: str = "loglikelihood"
) -> list[LLResult]:
    """Exact log-likelihoods of single-token continuations (see the module docstring)."""
    split = [split_pair(tokenizer, r.context, r.continuation) for r in requests]
    for r, (_, tokens) in zip(requests, split, strict=True):
        if len(tokens) != 1:
            raise UnsupportedRequest(
                f"log-likelihood of {r.continuation!r}: it is {len(tokens)} tokens, and an OpenAI-compatible "
                "endpoint reports log-probabilities only for generated tokens, so only a one-token continuation "
                "can be scored exactly; score it with the local backend (hf:DIR)"
            )
    # One request per distinct context: a multiple-choice item's letters share it.
    contexts = list(dict.fromkeys(context for context, _ in split))
    asked = [
        Request.completion(c, max_tokens=1, temperature=0.0, logprobs=TOP_LOGPROBS, tag=f"{desc}#{i}")
        for i, c in enumerate(contexts)
    ]
    answers = dict(zip(contexts, engine.map(asked, desc=desc), strict=True))
    results = []
    for r, (context, tokens) in zip(requests, split, strict=True):
        answer = answers[context]
        if isinstance(answer, RequestFailed):
            raise ImitlabError(f"{engine.model}: {answer}")
        results.append(_from_top(answer, tokens[0], r))
    return results


def _from_top(answer: Response, token: str, request: LLRequest) -> LLResult:
    if not answer.top_logprobs:
        raise UnsupportedRequest(f"{answer.model}: the endpoint returned no log-probabilities for the first token")
    top = answer.top_logprobs[0]
    found = [lp for t, lp in top if t == token]
    if not found:
        raise UnsupportedRequest(
            f"log-likelihood of {request.continuation!r}: its token {token!r} is not among the endpoint's top "
            f"{len(top)} alternatives, so its log-probability is unknown (only bounded by {top[-1][1]:.3f})"
        )
    best = max(top, key=lambda t: t[1])[0]
    return LLResult(logprob=found[0], is_greedy=best == token, n_tokens=1)
