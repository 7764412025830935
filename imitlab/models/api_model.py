"""A live model behind an OpenAI-compatible endpoint, and the one way to open one from a spec.

``open_model(spec)`` is the door every stage uses for a teacher, a judge or an API-scored model: an
``openai:`` spec connects to its endpoint; a packaged or ``gguf:`` spec gets a llama.cpp server for the
duration. Either way the stage receives an :class:`APIModel` whose requests all go through one
:class:`~imitlab.models.engine.RequestEngine` (retries, cache, accounting, progress, attribution).

A model's :func:`model_identity` names it for caches and resume. It is stable across processes and ports:
a packaged model by its name and weights digest, a GGUF by its file's digest, a remote API by model name and
endpoint host (never the port, which a local server picks anew on each start).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from imitlab.errors import ImitlabError, ModelSpecError
from imitlab.models import api_scoring
from imitlab.models.base import Capabilities, GenRequest, LLRequest, LLResult, cut_at_stop, prompt_of
from imitlab.models.engine import EngineSettings, Message, Request, RequestEngine, RequestFailed, Response
from imitlab.models.spec import ModelSpec, parse_spec, resolve_gguf

_MAX_STOPS = 4  # the OpenAI API accepts at most four stop strings; the rest are applied here


def model_identity(spec: ModelSpec) -> str:
    """What caches and resumable stages call this model (see the module docstring)."""
    if spec.kind == "packaged":
        from imitlab.models.catalog import get_packaged

        return f"packaged:{spec.target}:{get_packaged(spec.target).sha256[:16]}"
    if spec.kind == "gguf":
        return f"gguf:{_file_digest(str(Path(spec.target).resolve()))[:16]}"
    if spec.kind == "openai":
        parts = urlsplit(spec.base_url or "")
        return f"openai:{spec.target}@{parts.hostname or ''}{parts.path.rstrip('/')}"
    if spec.kind == "hf":
        path = Path(spec.target)
        weights = sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin")) if path.is_dir() else []
        if not weights:
            return f"hf:{spec.target}"  # a hub id: the hub's name is the identity
        digest = functools.reduce(lambda acc, f: acc + _file_digest(str(f.resolve()))[:16], weights, "")
        return f"hf:{path.name}:{_short_hash(digest)}"
    raise ModelSpecError(f"no identity for {spec}")


@functools.lru_cache(maxsize=64)
def _file_digest(path: str) -> str:
    """sha256 of a weights file, remembered on disk by (path, size, mtime): a 7B checkpoint takes tens of seconds
    to hash, and every eval, sweep stage and resume asks for its model's identity again."""
    import json
    import os

    from imitlab.config import cache_dir
    from imitlab.fileio import atomic_write_text, sha256_file

    st = os.stat(path)
    key = f"{path}:{st.st_size}:{st.st_mtime_ns}"
    memo_path = cache_dir() / "digests.json"
    try:
        memo = json.loads(memo_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        memo = {}
    if not isinstance(memo, dict) or not isinstance(memo.get(key), str):
        memo = memo if isinstance(memo, dict) else {}
        memo[key] = sha256_file(path)
        atomic_write_text(memo_path, json.dumps(memo, indent=0))  # a lost race only costs a later re-hash
    return str(memo[key])


def _short_hash(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()[:16]


class APIModel:
    """A model behind an OpenAI-compatible endpoint (llama.cpp here; vLLM, hosted APIs elsewhere).

    Implements :class:`~imitlab.models.base.Model`; log-likelihoods only for one-token continuations (see
    :mod:`imitlab.models.api_scoring`).
    """

    capabilities = Capabilities(loglikelihood="single_token", top_logprobs=api_scoring.TOP_LOGPROBS)

    def __init__(self, engine: RequestEngine, *, spec: str, name: str) -> None:
        self.engine = engine
        self.spec = spec  # the spec string it was opened from (for manifests)
        self.name = name  # a short human name (tables, file names)
        self._tokenizer: api_scoring.Tokenizer | None = None

    def __repr__(self) -> str:
        return f"APIModel({self.spec!r}, identity={self.identity!r})"

    @property
    def identity(self) -> str:
        return self.engine.identity

    @property
    def usage(self) -> dict[str, Any]:
        return self.engine.usage.as_dict()

    def describe(self) -> dict[str, Any]:
        return {"backend": "api", "spec": self.spec, "identity": self.identity, "endpoint": self.engine.base_url}

    def close(self) -> None:
        if self._tokenizer is not None:
            self._tokenizer.close()
        self.engine.close()

    # -- tokens and log-likelihoods --------------------------------------------------------------------
    @property
    def tokenizer(self) -> api_scoring.Tokenizer:
        if self._tokenizer is None:
            self._tokenizer = api_scoring.Tokenizer(self.engine.base_url, timeout=self.engine.settings.timeout)
        return self._tokenizer

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return [len(self.tokenizer.pieces(t)) for t in texts]

    def loglikelihood(self, requests: Sequence[LLRequest]) -> list[LLResult]:
        """Exact for one-token continuations among the top alternatives; anything else raises
        :class:`~imitlab.models.base.UnsupportedRequest`."""
        return api_scoring.loglikelihood(self.engine, self.tokenizer, requests)

    # -- chat ------------------------------------------------------------------------------------------
    def chat(
        self, conversations: Sequence[Sequence[Message]], *, desc: str = "chat", allow_empty: bool = True,
        **params: Any,
    ) -> list[Response | RequestFailed]:  # fmt: skip
        """One answer per conversation, in order; a :class:`RequestFailed` where one failed for good."""
        requests = [Request.chat(c, tag=f"{desc}#{i}", **params) for i, c in enumerate(conversations)]
        return self.engine.map(requests, desc=desc, allow_empty=allow_empty)

    # -- generation from raw prompts -------------------------------------------------------------------
    def generate(
        self,
        prompts: Sequence[str | GenRequest],
        *,
        stop: Sequence[str] = (),
        max_tokens: int = 64,
        n: int = 1,
        temperature: float = 0.0,
        system: str | None = None,
        mode: str = "chat",
        desc: str = "generate",
    ) -> list[list[str]]:
        """``n`` continuations per prompt, cut at the first stop string.

        ``mode="chat"`` sends each prompt as a user turn (after ``system``); ``"completions"`` sends it raw, as
        a base model sees it. Any request that fails for good fails the call (its stage resumes on rerun).
        """
        params: dict[str, Any] = {"max_tokens": max_tokens, "temperature": temperature}
        if stop:
            params["stop"] = list(stop)[:_MAX_STOPS]
        requests = [
            self.request(prompt_of(p).prompt, system=system, mode=mode, sample=s, tag=f"{desc}#{i}", **params)
            for i, p in enumerate(prompts)
            for s in range(n)
        ]
        flat = self.engine.map(requests, desc=desc)
        for r in flat:
            if isinstance(r, RequestFailed):
                raise ImitlabError(f"{self.spec}: {r}")
        texts = [cut_at_stop(r.text, stop) for r in flat if isinstance(r, Response)]
        return [texts[i * n : (i + 1) * n] for i in range(len(prompts))]

    @staticmethod
    def request(prompt: str, *, system: str | None = None, mode: str = "chat", **params: Any) -> Request:
        if mode == "completions":
            return Request.completion(f"{system}\n\n{prompt}" if system else prompt, **params)
        if mode != "chat":
            raise ImitlabError(f"mode must be 'chat' or 'completions', got {mode!r}")
        messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
        return Request.chat(messages, **params)


@contextlib.contextmanager
def open_model(
    spec: ModelSpec | str,
    *,
    settings: EngineSettings | None = None,
    base_url: str | None = None,
    api_key: str | None = None,
    cache: str | Path | None = None,
    ctx_per_slot: int = 4096,
    console: Any = None,
) -> Iterator[APIModel]:
    """A live :class:`APIModel` for any spec that can be served; closed (and its server stopped) on exit.

    A packaged or GGUF model gets a llama.cpp server with one decoding slot per request the engine keeps in
    flight (``settings.concurrency``). A transformers directory cannot be served here: use its GGUF or serve it
    with vLLM and pass ``openai:NAME``.
    """
    spec = parse_spec(spec, base_url=base_url) if isinstance(spec, str) else spec
    settings = settings or EngineSettings()
    identity = model_identity(spec)
    if spec.kind == "openai":
        assert spec.base_url is not None
        engine = RequestEngine(spec.base_url, spec.target, identity=identity, settings=settings, api_key=api_key,
                               console=console)  # fmt: skip
        with contextlib.closing(engine):
            yield APIModel(engine, spec=str(spec), name=spec.name)
        return
    if spec.kind == "hf":
        raise ModelSpecError(
            f"{spec}: a transformers model needs a server to answer requests; serve it with vLLM "
            "(`vllm serve DIR`) and use 'openai:<name>' with --base-url, or use its GGUF"
        )
    from imitlab.models.server import LlamaServer

    gguf = resolve_gguf(spec, cache)
    with LlamaServer(gguf, alias=spec.name, parallel=settings.concurrency, ctx_per_slot=ctx_per_slot) as server:
        engine = RequestEngine(server.base_url, spec.name, identity=identity, settings=settings, console=console)
        with contextlib.closing(engine):
            yield APIModel(engine, spec=str(spec), name=spec.name)
