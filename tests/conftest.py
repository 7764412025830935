"""Shared fixtures, and what the ``real`` marker promises.

Tests marked ``real`` need what a fresh checkout does not have: the packaged model's weights (pulled into the
cache on first use, about a minute) or llama.cpp's server (built by ``make``). ``pytest -m "not real"`` is the
quick suite and runs with neither. Two rules keep the marker honest:

* a test that uses the ``smollm2`` or ``smollm2_server`` fixture is marked ``real`` at collection, written or not;
* every other test runs with ``$IMITLAB_CACHE`` pointing at an empty directory of its own (so this machine's
  pulled models and server build are out of its reach, in this process and in any subprocess), and errors if a
  model or a server build appears there.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from imitlab.models.packaged import PulledModel, pull
from imitlab.models.server import LlamaServer

# The tests never reach the Hugging Face hub (these machines have no network): offline, `datasets` and
# huggingface_hub fail at once instead of retrying for 30 s. Set before either is imported; a test of the hub path
# builds its data locally or replaces datasets.load_dataset (tests/test_sources.py).
os.environ.setdefault("HF_HUB_OFFLINE", "1")

REAL_FIXTURES = {"smollm2", "smollm2_server"}
# What a pull or a server build leaves in the cache root (imitlab.models.packaged, scripts/build_llama_server.sh).
WEIGHTS_AND_SERVER = ("models", "llama.cpp")


@pytest.fixture(scope="session")
def smollm2() -> PulledModel:
    return pull("smollm2-135m-instruct", convert=True)


@pytest.fixture(scope="session")
def smollm2_server(smollm2: PulledModel) -> Iterator[LlamaServer]:
    with LlamaServer(smollm2.gguf, alias="smollm2-135m-instruct", parallel=2, ctx_per_slot=2048) as server:
        yield server


@pytest.hookimpl(tryfirst=True)  # before `-m "not real"` deselects anything
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if REAL_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.real)


@pytest.fixture(autouse=True)
def _no_weights_unless_real(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    if request.node.get_closest_marker("real") is not None:
        yield
        return
    cache = tmp_path_factory.mktemp("empty-imitlab-cache")
    monkeypatch.setenv("IMITLAB_CACHE", str(cache))
    yield
    fetched = sorted(str(p.relative_to(cache)) for name in WEIGHTS_AND_SERVER for p in (cache / name).rglob("*"))
    if fetched:
        pytest.fail(
            f"{request.node.nodeid} is not marked real but pulled a model or built the server into the cache: "
            f"{fetched[:5]}; mark it real, or give it a cache of its own",
            pytrace=False,
        )
