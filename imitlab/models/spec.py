"""Model specs: one string names a model wherever a model goes (teacher, student, judge).

=============================  ===============================================================
``openai:<model>``             any OpenAI-compatible endpoint; base URL from the argument,
                               ``$IMITLAB_BASE_URL`` or ``$OPENAI_BASE_URL``; key from the
                               environment (``$IMITLAB_API_KEY`` / ``$OPENAI_API_KEY``)
``hf:<local dir or hub id>``   a transformers model (the hub only when online)
``gguf:<path>``                a GGUF file, served by llama.cpp, converted for training
``<packaged name>``            a packaged offline model (``imitlab models list``)
=============================  ===============================================================
A bare existing directory is taken as ``hf:`` and a bare ``*.gguf`` file as ``gguf:``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from imitlab.errors import ModelSpecError
from imitlab.models.catalog import get_packaged, packaged_models
from imitlab.models.client import ChatClient

SpecKind = Literal["openai", "hf", "gguf", "packaged"]
BASE_URL_ENVS = ("IMITLAB_BASE_URL", "OPENAI_BASE_URL")
_PREFIXES = ("openai", "hf", "gguf")


@dataclass(frozen=True)
class ModelSpec:
    kind: SpecKind
    target: str  # the model name, path, hub id or packaged name
    base_url: str | None = None  # openai only

    def __str__(self) -> str:
        return self.target if self.kind == "packaged" else f"{self.kind}:{self.target}"

    @property
    def name(self) -> str:
        """A short human name (for tables and file names)."""
        return Path(self.target).name if self.kind in ("hf", "gguf") else self.target


def parse_spec(text: str, *, base_url: str | None = None) -> ModelSpec:
    text = text.strip()
    if not text:
        raise ModelSpecError("empty model spec")
    prefix, sep, rest = text.partition(":")
    if sep and prefix in _PREFIXES:
        if not rest:
            raise ModelSpecError(f"model spec {text!r} names no model after '{prefix}:'")
        if prefix == "openai":
            url = base_url or next((os.environ[e] for e in BASE_URL_ENVS if os.environ.get(e)), None)
            if not url:
                raise ModelSpecError(
                    f"{text!r} needs a base URL: pass --base-url or set $IMITLAB_BASE_URL "
                    "(e.g. https://api.openai.com/v1 or http://127.0.0.1:8000/v1)"
                )
            return ModelSpec("openai", rest, base_url=url)
        if prefix == "gguf" and not Path(rest).is_file():
            raise ModelSpecError(f"GGUF file not found: {rest}")
        return ModelSpec(prefix, rest)  # type: ignore[arg-type]
    if text in packaged_models():
        return ModelSpec("packaged", text)
    path = Path(text)
    if path.is_dir():
        return ModelSpec("hf", text)
    if path.is_file() and path.suffix == ".gguf":
        return ModelSpec("gguf", text)
    get_packaged(text)  # raises UnknownModelError listing the known names
    raise AssertionError("unreachable")


def resolve_gguf(spec: ModelSpec, cache: str | Path | None = None) -> Path:
    """A GGUF file for this spec (pulling a packaged model if needed)."""
    if spec.kind == "gguf":
        return Path(spec.target)
    if spec.kind == "packaged":
        from imitlab.models.packaged import pull

        return pull(spec.target, cache=cache, convert=False).gguf
    raise ModelSpecError(f"{spec} is not a GGUF model; llama.cpp serves 'gguf:<path>' or packaged models")


def resolve_hf(spec: ModelSpec, cache: str | Path | None = None) -> str:
    """A transformers-loadable directory or hub id for this spec (converting GGUF once, cached)."""
    if spec.kind == "hf":
        return spec.target
    if spec.kind == "packaged":
        from imitlab.models.packaged import pull

        hf = pull(spec.target, cache=cache, convert=True).hf
        assert hf is not None
        return str(hf)
    if spec.kind == "gguf":
        from imitlab.config import cache_dir
        from imitlab.fileio import sha256_file
        from imitlab.models.convert import gguf_to_hf

        digest = sha256_file(spec.target)
        dest = cache_dir(cache) / "converted" / digest[:16]
        if not (dest / "config.json").is_file():
            gguf_to_hf(spec.target, dest, source_sha256=digest)
        return str(dest)
    raise ModelSpecError(f"{spec} is an API endpoint; its weights cannot be loaded locally")


@contextlib.contextmanager
def open_chat(
    spec: ModelSpec, *, cache: str | Path | None = None, api_key: str | None = None, **server_kwargs: Any
) -> Iterator[ChatClient]:
    """A chat client for any spec; GGUF and packaged models get a llama.cpp server for the duration.

    ``server_kwargs`` (``parallel``, ``ctx_per_slot``, ...) configure that server; an ``openai:`` endpoint has
    none to start, so callers pass them whatever the spec and they are ignored there.
    """
    if spec.kind == "openai":
        assert spec.base_url is not None
        client = ChatClient(spec.base_url, spec.target, api_key=api_key)
        try:
            yield client
        finally:
            client.close()
        return
    if spec.kind == "hf":
        raise ModelSpecError(
            f"{spec}: chatting with a transformers model needs a server; serve it with vLLM "
            "(`vllm serve DIR`) and use 'openai:<name>' with --base-url, or use its GGUF"
        )
    from imitlab.models.server import LlamaServer

    gguf = resolve_gguf(spec, cache)
    with LlamaServer(gguf, alias=spec.name, **server_kwargs) as server:
        client = ChatClient(server.base_url, spec.name)
        try:
            yield client
        finally:
            client.close()
