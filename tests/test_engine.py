"""The request engine on its own, against a real HTTP server with scripted faults (tests/fake_openai_server.py).

Each test pins one guarantee every stage relies on: the response cache answers a rerun, a Retry-After pauses
every worker, a fatal status stops the engine, a stale (duplicate-id) body is retried and never returned, a
request that fails for good leaves the others running, and the progress bar can be switched off.
"""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from imitlab.models.engine import EngineAborted, EngineSettings, Request, RequestEngine, RequestFailed, Response

sys.path.insert(0, str(Path(__file__).parent))
import fake_openai_server
from fake_openai_server import FakeOpenAI


def _engine(srv: FakeOpenAI, tmp_path: Path, console: Any = None, **settings: Any) -> RequestEngine:
    fast = {"cache_path": tmp_path / "responses.sqlite", "progress": False, "backoff_base": 0.01, "backoff_max": 0.05}
    return RequestEngine(srv.base_url, "fake", identity="test:fake", settings=EngineSettings(**{**fast, **settings}),
                         console=console)  # fmt: skip


def _ask(*texts: str, sample: int = 0) -> list[Request]:
    return [Request.chat([{"role": "user", "content": t}], tag=t, sample=sample, max_tokens=8) for t in texts]


def _texts(results: list[Response | RequestFailed]) -> list[str]:
    return [r.text if isinstance(r, Response) else "FAILED" for r in results]


def test_a_rerun_is_answered_from_the_cache(tmp_path: Path) -> None:
    with FakeOpenAI() as srv:
        with _engine(srv, tmp_path) as engine:
            first = engine.map(_ask("a", "b", "c"), desc="first")
        assert srv.requests == 3 and not any(isinstance(r, Response) and r.cached for r in first)
        with _engine(srv, tmp_path) as engine:  # a new process would open the same cache file
            again = engine.map(_ask("a", "b", "c"), desc="again")
            assert engine.usage.cached == 3 and engine.usage.requests == 0
        assert srv.requests == 3
        assert _texts(again) == _texts(first) == ["answer to: a", "answer to: b", "answer to: c"]
        assert all(isinstance(r, Response) and r.cached for r in again)
        with _engine(srv, tmp_path) as engine:  # another sample of the same request is another answer
            engine.map(_ask("a", sample=1), desc="sample 1")
        assert srv.requests == 4


def test_retry_after_pauses_every_worker(tmp_path: Path) -> None:
    limited = "ONCE_429 limited"
    others = [f"q{i}" for i in range(60)]
    with FakeOpenAI(retry_after=1.0, latency_s=0.05) as srv:
        with _engine(srv, tmp_path, concurrency=3) as engine:
            results = engine.map(_ask(limited, *others), desc="rate limited")
        assert _texts(results) == [f"answer to: {t}" for t in (limited, *others)]
        first, retry = srv.request_times[limited]
        assert retry - first >= 1.0  # the limited request waited as long as the server asked
        # ... and so did everyone else: once the 429 was back (about 0.05 s after it was sent), no worker sent
        # anything until the pause ended. Without a shared pause, ~3 requests go out every 0.05 s in this window.
        window = (first + 0.3, first + 0.95)
        sent_in_window = [t for text in others for t in srv.request_times[text] if window[0] < t < window[1]]
        assert sent_in_window == []
        assert sum(t > first + 0.95 for text in others for t in srv.request_times[text]) >= 30  # the rest waited
        assert engine.usage.retries == 1


def test_a_fatal_401_stops_the_engine(tmp_path: Path) -> None:
    with FakeOpenAI(latency_s=0.02) as srv:
        with _engine(srv, tmp_path, concurrency=2) as engine:
            with pytest.raises(EngineAborted, match="HTTP 401"):
                engine.map(_ask("ALWAYS_401 bad key", *(f"q{i}" for i in range(30))), desc="fatal")
            assert srv.seen["ALWAYS_401 bad key"] == 1  # not retried: it would fail every request alike
            assert srv.requests <= 4  # the rest were never sent
            with pytest.raises(EngineAborted):  # and nothing later is sent either
                engine.run(engine.submit(_ask("later")[0]))
        assert srv.seen["later"] == 0


def test_a_duplicate_response_id_is_retried_and_never_returned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeOpenAI() as srv:
        real_completion = fake_openai_server._completion

        def same_id_on_first_attempt(body: dict[str, Any], text: str, content: str | None = None) -> bytes:
            # Every first answer carries one id: the second prompt's looks like a stale copy of the first's.
            raw = json.loads(real_completion(body, text, content))
            if srv.seen[text] == 1:
                raw["id"] = "chatcmpl-same"
            return json.dumps(raw).encode()

        monkeypatch.setattr(fake_openai_server, "_completion", same_id_on_first_attempt)
        with _engine(srv, tmp_path, concurrency=1) as engine:
            first, second = engine.map(_ask("first", "second"), desc="duplicate id")
            assert engine.usage.anomalies["duplicate response id"] == 1 and engine.usage.retries == 1
        assert isinstance(first, Response) and isinstance(second, Response)
        assert first.response_id == "chatcmpl-same" and first.attempts == 1
        assert second.response_id != "chatcmpl-same" and second.attempts == 2
        assert second.text == "answer to: second" and srv.seen["second"] == 2
        with _engine(srv, tmp_path) as engine:  # the cache holds the accepted answer, not the stale one
            cached = engine.map(_ask("second"), desc="cached")[0]
        assert isinstance(cached, Response) and cached.cached and cached.response_id == second.response_id


def test_a_request_that_fails_for_good_leaves_the_others_running(tmp_path: Path) -> None:
    texts = ["q0", "ALWAYS_400 bad request", "q2", "ALWAYS_500 broken", "q4"]
    with FakeOpenAI() as srv:
        with _engine(srv, tmp_path, concurrency=2, max_retries=2) as engine:
            results = engine.map(_ask(*texts), desc="failures")
            assert engine.usage.failed == 2
            assert dict(engine.usage.failure_reasons) == {"HTTP 400": 1, "HTTP 500": 1}
        assert _texts(results) == ["answer to: q0", "FAILED", "answer to: q2", "FAILED", "answer to: q4"]
        bad, broken = results[1], results[3]
        assert isinstance(bad, RequestFailed) and bad.failure.status == 400 and bad.attempts == 1
        assert srv.seen["ALWAYS_400 bad request"] == 1  # a bad request stays bad: not retried
        assert isinstance(broken, RequestFailed) and broken.attempts == 3  # first try + max_retries
        assert srv.seen["ALWAYS_500 broken"] == 3
        with _engine(srv, tmp_path) as engine:  # failures are not cached: a rerun asks them again
            engine.map(_ask(*texts), desc="rerun")
        assert srv.seen["ALWAYS_400 bad request"] == 2 and srv.seen["q0"] == 1


@pytest.mark.parametrize("progress", [True, False])
def test_the_progress_bar_can_be_switched_off(tmp_path: Path, progress: bool) -> None:
    out = io.StringIO()
    with FakeOpenAI() as srv, _engine(srv, tmp_path, Console(file=out, width=120), progress=progress) as engine:
        results = engine.map(_ask("a", "b"), desc="probe-bar")
    assert _texts(results) == ["answer to: a", "answer to: b"]
    if progress:
        assert "probe-bar" in out.getvalue() and "2/2" in out.getvalue()
    else:
        assert out.getvalue() == ""
