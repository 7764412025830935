"""LlamaServer's process handling, with a stand-in binary (tests/fake_llama_server.py): ports, death, cleanup."""

from __future__ import annotations

import socket
import stat
import sys
import time
from pathlib import Path

import httpx
import pytest

from imitlab.errors import ServerError
from imitlab.models import server as server_mod
from imitlab.models.server import LlamaServer, free_port

FAKE = Path(__file__).with_name("fake_llama_server.py")


@pytest.fixture
def fake_binary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    binary = tmp_path / "llama-server"
    binary.write_text(f'#!/bin/sh\nexec {sys.executable} {FAKE} "$@"\n')
    binary.chmod(binary.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv(server_mod.SERVER_ENV, str(binary))
    return binary


@pytest.fixture
def gguf(tmp_path: Path) -> Path:
    path = tmp_path / "model.gguf"
    path.write_bytes(b"GGUF")
    return path


def test_starts_answers_and_stops(fake_binary: Path, gguf: Path) -> None:
    with LlamaServer(gguf, startup_timeout=20) as server:
        assert server.base_url.startswith("http://127.0.0.1:") and server.base_url.endswith("/v1")
        assert httpx.get(server.base_url.removesuffix("/v1") + "/health").status_code == 200
        proc = server.process
        assert proc is not None and proc.poll() is None
    assert proc.poll() is not None  # stopped on exit


def test_busy_port_is_avoided(fake_binary: Path, gguf: Path) -> None:
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    try:
        with LlamaServer(gguf, port=port, startup_timeout=20) as server:
            assert server.port != port
            assert httpx.get(f"http://127.0.0.1:{server.port}/health").status_code == 200
    finally:
        busy.close()


def test_free_requested_port_is_used(fake_binary: Path, gguf: Path) -> None:
    port = free_port()
    with LlamaServer(gguf, port=port, startup_timeout=20) as server:
        assert server.port == port


def test_server_that_dies_while_starting_reports_its_log(
    fake_binary: Path, gguf: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_LLAMA_MODE", "die")
    with pytest.raises(ServerError) as info:
        LlamaServer(gguf, startup_timeout=20).start()
    assert "exited with code 1" in str(info.value)
    assert "error loading model" in str(info.value)  # the tail of its log


def test_server_that_dies_later_is_reported(fake_binary: Path, gguf: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_LLAMA_MODE", "die-later")
    monkeypatch.setenv("FAKE_LLAMA_DIE_AFTER", "0.5")
    with LlamaServer(gguf, startup_timeout=20) as server:
        deadline = time.monotonic() + 10
        while server.process is not None and server.process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        with pytest.raises(ServerError, match="out of memory"):
            server.check_alive()


def test_missing_binary_says_how_to_build(tmp_path: Path, gguf: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(server_mod.SERVER_ENV, str(tmp_path / "nope"))
    monkeypatch.setenv("IMITLAB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ServerError, match=r"build_llama_server\.sh"):
        LlamaServer(gguf).start()


def test_missing_gguf_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ServerError, match="GGUF file not found"):
        LlamaServer(tmp_path / "missing.gguf")
