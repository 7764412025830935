"""Collection against a real loopback HTTP server that misbehaves: 429 + Retry-After, 500, 400, malformed JSON,
empty answers, and requests that never get an answer.

Every prompt must end collected or recorded as failed with its reason; nothing crashes; request counts
stay bounded by the retry policy. Faults and timing are kept apart: the fake server decides each fault from
the prompt's text and attempt number (never from delays or arrival order), the fault tests give the client a
timeout no request comes near, and timeouts are tested on their own against a server that never answers.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from imitlab.collect import CollectAborted, CollectConfig, collect
from imitlab.errors import ImitlabError
from imitlab.models.retry import Failure, RetryPolicy, parse_retry_after
from imitlab.prompts import PromptFormatError, PromptRecord, write_prompt_set

sys.path.insert(0, str(Path(__file__).parent))
from fake_openai_server import FakeOpenAI

# Far above any answer time on a loaded machine, so a 400 or a 500 can never turn into a timeout.
NEVER_TIMES_OUT = 60.0
FAULT_REASONS = {"429": "HTTP 429", "500": "HTTP 500", "MALFORMED": "malformed response"}


def _prompts(tmp_path: Path, records: list[PromptRecord]) -> Path:
    path = tmp_path / "prompts.jsonl"
    write_prompt_set(path, records)
    return path


def _cfg(tmp_path: Path, srv: FakeOpenAI, prompts: Path, **kw: Any) -> CollectConfig:
    base: dict[str, Any] = dict(
        teacher="openai:fake", base_url=srv.base_url, prompts=prompts, out=tmp_path / "out", concurrency=4,
        timeout=NEVER_TIMES_OUT, max_retries=4, backoff_base=0.01, backoff_max=0.05,
        cache_path=tmp_path / "cache.sqlite", progress=False,
    )  # fmt: skip
    base.update(kw)
    return CollectConfig(**base)


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _expected_fate(srv: FakeOpenAI, text: str, attempts: int) -> tuple[str, int]:
    """What the server's script gives this prompt: ("ok" or the last fault, requests it takes)."""
    mode = "ok"
    for attempt in range(1, attempts + 1):
        mode = srv.planned(text, attempt)
        if mode == "ok":
            return "ok", attempt
    return mode, attempts


def test_mixed_faults_every_prompt_collected_or_failed_with_reason(tmp_path: Path) -> None:
    normal = [PromptRecord(id=f"q{i}", turns=[f"question {i}"]) for i in range(40)]
    always = {
        "a500": ("ALWAYS_500", "HTTP 500"),
        "a400": ("ALWAYS_400", "HTTP 400"),
        "mal": ("ALWAYS_MALFORMED", "malformed response"),
        "empty": ("ALWAYS_EMPTY", "empty completion"),
    }
    special = [PromptRecord(id=k, turns=[v[0]]) for k, v in always.items()]
    prompts = _prompts(tmp_path, normal + special)
    with FakeOpenAI({"429": 0.15, "500": 0.15, "MALFORMED": 0.1}, seed=12, retry_after=0.05) as srv:
        cfg = _cfg(tmp_path, srv, prompts)
        tries = 1 + cfg.max_retries
        fate = {p.id: _expected_fate(srv, p.turns[0], tries) for p in normal}
        # The seed gives a script with every fault, retries that succeed, and prompts that run out of tries.
        assert {srv.planned(p.turns[0], a) for p in normal for a in range(1, tries + 1)} >= {*FAULT_REASONS, "ok"}
        assert any(mode == "ok" and n > 1 for mode, n in fate.values())
        assert any(mode != "ok" for mode, _ in fate.values())
        result = collect(cfg)
        requests = dict(srv.seen)
    m = result.manifest
    failed = {f["prompt_id"]: f for f in m["failures"]}
    records = _lines(tmp_path / "out/conversations.jsonl")
    collected = {r["prompt_id"] for r in records}
    assert collected.isdisjoint(failed)
    assert collected | set(failed) == {p.id for p in normal + special}
    assert m["counts"]["collected"] + m["counts"]["failed"] == m["counts"]["expected"] == 44
    # Each prompt took exactly the requests the script and the retry policy call for, and ended as scripted.
    for p in normal:
        mode, attempts = fate[p.id]
        assert requests[p.turns[0]] == attempts, p.id
        if mode == "ok":
            assert p.id in collected
        else:
            assert failed[p.id]["reason"].startswith(FAULT_REASONS[mode]) and failed[p.id]["attempts"] == tries
    for pid, (_, reason) in always.items():
        assert failed[pid]["reason"].startswith(reason), failed[pid]
    assert failed["a400"]["attempts"] == requests["ALWAYS_400"] == 1  # a bad request is not retried
    assert failed["empty"]["attempts"] == requests["ALWAYS_EMPTY"] == 1  # nor is an empty answer
    assert failed["a500"]["attempts"] == requests["ALWAYS_500"] == tries
    assert failed["mal"]["attempts"] == requests["ALWAYS_MALFORMED"] == tries
    assert sum(requests.values()) == sum(n for _, n in fate.values()) + 1 + 1 + tries + tries
    for r in records:  # answers belong to their prompts
        assert r["messages"][-1]["content"] == f"answer to: {r['messages'][0]['content']}"
    assert result.run.retries == sum(requests.values()) - len(normal + special)


def test_a_server_that_never_answers_times_out_and_is_retried(tmp_path: Path) -> None:
    """Timeouts on their own: the server holds these requests until it shuts down, so nothing but the client's
    timeout can end them. The margins are wide: 2 s is far above the time a loopback request takes to arrive."""
    texts = ["ALWAYS_HANG one", "ALWAYS_HANG two"]
    prompts = _prompts(tmp_path, [PromptRecord(id=f"h{i}", turns=[t]) for i, t in enumerate(texts)])
    timeout = 2.0
    with FakeOpenAI() as srv:
        cfg = _cfg(tmp_path, srv, prompts, timeout=timeout, max_retries=1, concurrency=2)
        start = time.monotonic()
        result = collect(cfg)
        elapsed = time.monotonic() - start
        times = {t: list(srv.request_times[t]) for t in texts}
    failures = {f["prompt_id"]: f for f in result.manifest["failures"]}
    assert set(failures) == {"h0", "h1"}
    for f in failures.values():
        assert f["reason"] == "timeout" and f["attempts"] == 1 + cfg.max_retries
    for t in texts:  # every attempt reached the server
        assert len(times[t]) == 1 + cfg.max_retries
    # No attempt was given up before its timeout (a lower bound that load can only raise), and the run ends.
    assert (1 + cfg.max_retries) * timeout <= elapsed < 60


def test_retry_after_is_honoured(tmp_path: Path) -> None:
    prompts = _prompts(tmp_path, [PromptRecord(id="r", turns=["ONCE_429 please"])])
    with FakeOpenAI(retry_after=1.0) as srv:
        result = collect(_cfg(tmp_path, srv, prompts))
        first, second = srv.request_times["ONCE_429 please"]
    assert result.manifest["counts"]["collected"] == 1
    assert second - first >= 1.0  # backoff alone would have waited ~0.01 s


def test_retry_policy_and_header_parsing() -> None:
    import httpx

    assert parse_retry_after(httpx.Headers({"retry-after": "3"})) == 3.0
    assert parse_retry_after(httpx.Headers({"retry-after-ms": "250"})) == 0.25
    assert parse_retry_after(httpx.Headers({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"})) == 0.0  # in the past
    assert parse_retry_after(httpx.Headers({})) is None
    policy = RetryPolicy(backoff_base=1.0, backoff_max=8.0)
    plain = Failure("x", retryable=True)
    delays = [policy.delay(a, plain) for a in range(1, 7)]
    for attempt, d in enumerate(delays, 1):
        exp = min(8.0, 2 ** (attempt - 1))
        assert exp / 2 <= d <= exp  # equal jitter: half fixed, half random
    assert policy.delay(1, Failure("x", retryable=True, retry_after=30.0)) == 30.0


def test_fatal_error_stops_the_run_with_a_clear_message(tmp_path: Path) -> None:
    prompts = _prompts(tmp_path, [PromptRecord(id=f"p{i}", turns=[f"ALWAYS_401 {i}"]) for i in range(20)])
    with FakeOpenAI() as srv:
        with pytest.raises(CollectAborted, match="HTTP 401"):
            collect(_cfg(tmp_path, srv, prompts, concurrency=2))
        assert srv.requests <= 2  # stopped at once, not 20 times
    assert (tmp_path / "out/manifest.json").is_file()


def test_cache_makes_a_second_run_free(tmp_path: Path) -> None:
    prompts = _prompts(tmp_path, [PromptRecord(id=f"p{i}", turns=[f"q {i}"]) for i in range(6)])
    with FakeOpenAI() as srv:
        first = collect(_cfg(tmp_path, srv, prompts, price_prompt_per_m=1.0))
        n = srv.requests
        assert n == 6 and first.manifest["cost_usd"] > 0
        again = collect(_cfg(tmp_path, srv, prompts, out=tmp_path / "out2", price_prompt_per_m=1.0))
        assert srv.requests == n  # nothing sent
    assert again.run.cached == 6
    assert again.manifest["cost_usd"] == 0.0 and again.manifest["tokens"]["fresh_completion_tokens"] == 0
    assert all(r["cached"] for r in _lines(tmp_path / "out2/conversations.jsonl"))


def test_samples_multiturn_system_and_token_accounting(tmp_path: Path) -> None:
    bodies: list[dict[str, Any]] = []

    def respond(body: dict[str, Any]) -> str:
        bodies.append(body)
        return f"reply {len(body['messages'])}"

    prompts = _prompts(
        tmp_path, [PromptRecord(id="mt", turns=["t1", "t2"]), PromptRecord(id="own", turns=["x"], system="mine")]
    )
    with FakeOpenAI(responder=respond) as srv:
        cfg = _cfg(tmp_path, srv, prompts, n_samples=2, system="be kind", temperature=0.9, max_tokens=50,
                   price_prompt_per_m=2.0, price_completion_per_m=10.0)  # fmt: skip
        result = collect(cfg)
    recs = {r["id"]: r for r in _lines(tmp_path / "out/conversations.jsonl")}
    assert set(recs) == {"mt", "mt#1", "own", "own#1"}
    mt = recs["mt"]["messages"]
    assert [m["role"] for m in mt] == ["system", "user", "assistant", "user", "assistant"]
    assert mt[0]["content"] == "be kind" and recs["own"]["messages"][0]["content"] == "mine"
    # The second turn was asked with the teacher's first answer in the history.
    assert any(len(b["messages"]) == 4 and b["messages"][2]["content"] == "reply 2" for b in bodies)
    assert all(b["temperature"] == 0.9 and b["max_tokens"] == 50 for b in bodies)
    tok = result.manifest["tokens"]
    assert tok["prompt_tokens"] == sum(r["usage"]["prompt_tokens"] for r in recs.values()) > 0
    assert tok["completion_tokens"] == sum(r["usage"]["completion_tokens"] for r in recs.values()) > 0
    expected_cost = tok["prompt_tokens"] * 2.0 / 1e6 + tok["completion_tokens"] * 10.0 / 1e6
    assert result.manifest["cost_usd"] == pytest.approx(expected_cost)
    assert "api_key" not in json.dumps(result.manifest).lower()


def test_resume_refuses_different_settings(tmp_path: Path) -> None:
    prompts = _prompts(tmp_path, [PromptRecord(id="p", turns=["q"])])
    with FakeOpenAI() as srv:
        collect(_cfg(tmp_path, srv, prompts))
        with pytest.raises(ImitlabError, match=r"different settings.*params"):
            collect(_cfg(tmp_path, srv, prompts, temperature=0.1))


def test_torn_last_line_is_repaired_on_resume(tmp_path: Path) -> None:
    prompts = _prompts(tmp_path, [PromptRecord(id=f"p{i}", turns=[f"q {i}"]) for i in range(4)])
    with FakeOpenAI() as srv:
        collect(_cfg(tmp_path, srv, prompts))
        conv = tmp_path / "out/conversations.jsonl"
        lines = conv.read_text().splitlines(keepends=True)
        conv.write_text("".join(lines[:2]) + lines[2][:25])  # as if power failed mid-write
        result = collect(_cfg(tmp_path, srv, prompts))
    ids = [r["prompt_id"] for r in _lines(conv)]
    assert sorted(ids) == ["p0", "p1", "p2", "p3"]
    assert result.run.jobs == 2


def test_empty_or_bad_prompt_set_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(PromptFormatError, match="empty"):
        collect(CollectConfig(teacher="openai:x", base_url="http://127.0.0.1:9/v1", prompts=tmp_path / "empty.jsonl",
                              out=tmp_path / "o"))  # fmt: skip
    (tmp_path / "bad.jsonl").write_text('{"id": "a", "turns": "not a list"}\n')
    with pytest.raises(PromptFormatError, match=r"bad\.jsonl:1: field 'turns'"):
        collect(CollectConfig(teacher="openai:x", base_url="http://127.0.0.1:9/v1", prompts=tmp_path / "bad.jsonl",
                              out=tmp_path / "o"))  # fmt: skip
