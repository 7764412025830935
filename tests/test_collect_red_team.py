"""Red team for collection: every answer belongs to its request, nothing is lost, nothing is recorded twice.

The hostile server (tests/hostile_openai_server.py) misbehaves at the byte level with the faults scripted in each
prompt's text, and logs what each attempt really got. From that log alone the test derives what the client must
have concluded about every attempt (accept, retry, or give up) and checks the output directory against it:
every prompt ends with exactly one record, answered with its own answer or failed with the reason of its last
attempt; conversations.jsonl, failures.jsonl and manifest.json agree; a SIGKILL in the middle changes none of it.

For each way the pre-engine client (commit fa8cd1d) and the first engine (commit 4940f20) were fooled, a test runs
that old code, unchanged, against the same server and shows the bad outcome next to the test of today's code.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from imitlab.collect import CollectConfig, collect
from imitlab.models.engine import EngineSettings, Request, RequestEngine, RequestFailed
from imitlab.prompts import PromptRecord, write_prompt_set

sys.path.insert(0, str(Path(__file__).parent))
from hostile_openai_server import FAULTS, JSON_FAULTS, STREAM_FAULTS, Event, HostileOpenAI, answer_for

REPO = Path(__file__).resolve().parents[1]
PRE_ENGINE = "fa8cd1d"  # the collection client before the request engine
FIRST_ENGINE = "4940f20"  # the request engine before this red team
MAX_RETRIES = 6
TIMEOUT = 10.0  # far above any loopback answer on a loaded machine; only the slowloris fault comes near it

# What the client must conclude from each fault when an attempt gets it.
ACCEPTED = {"ok", "dup", "dup_eager", "wrong_model", "sse_trailing", "sse_keepalive", "sse_hang_after_done"}
FAILS_AT_ONCE = {"http400": "HTTP 400", "empty_answer": "empty completion"}  # not retried
RETRIED = {  # fault -> how the failure reads if it is also the last attempt's
    "close_early": "connection error", "reset": "connection error", "garbage_status": "connection error",
    "length_long": "connection error", "chunked_cut": "connection error", "slowloris": "timeout",
    "http429": "HTTP 429", "http429_date": "HTTP 429", "http500": "HTTP 500", "http502": "HTTP 502",
    "http503": "HTTP 503", "utf8_cut": "malformed response", "json_cut": "malformed response",
    "length_short": "malformed response", "error_200": "malformed response", "empty_choices": "malformed response",
    "null_content": "malformed response", "html_200": "malformed response",
    "no_id": "malformed response: no response id",  # on a kept-alive connection; on one of its own it is accepted
    "sse_no_final": "malformed response: stream ended", "sse_no_done": "malformed response: stream ended",
    "sse_cut": "connection error", "sse_utf8_cut": "malformed response", "sse_spliced": "malformed response: stream",
    "sse_dup_chunk": "malformed response: stream", "sse_after_finish": "malformed response: stream",
    "sse_error": "stream error",
}  # fmt: skip
LEFT_OVER = {"stale": "malformed response: duplicate response id", "garbage": "connection error"}
# Faults whose every attempt takes seconds (Retry-After, a trickle up to the timeout): used once, never "always".
SLOW = {"http429", "http429_date", "http503", "slowloris"}


def test_every_fault_has_an_expected_verdict() -> None:
    assert set(FAULTS) == set(RETRIED) | set(FAILS_AT_ONCE) | ACCEPTED - {"ok"}
    assert len(FAULTS) >= 10


@dataclass
class Fate:
    """What the client must have done with one prompt, given what the server did."""

    answered: bool
    reason: str | None = None  # the failure's reason starts with this
    attempts: int = 0  # of the failing turn
    model: str = "teacher"


def verdict(event: Event) -> tuple[str, str | None]:
    """("accept" | "retry" | "fail", reason) for one attempt, from what the server did to it."""
    if event.left_over is not None:  # the client read an earlier fault's bytes as this request's answer
        return "retry", LEFT_OVER[event.left_over]
    if event.fault in ACCEPTED or (event.fault == "no_id" and event.close):
        return "accept", None
    if event.fault in FAILS_AT_ONCE:
        return "fail", FAILS_AT_ONCE[event.fault]
    return "retry", RETRIED[event.fault]


def fate(srv: HostileOpenAI, prompt: PromptRecord, since: dict[str, int] | None = None) -> Fate:
    """``since``: how many requests of each turn came before a resumed run; what that run asked decides."""
    for i, turn in enumerate(prompt.turns):
        events = srv.events(turn)
        events = events[(since or {}).get(turn, 0) :] or events  # a turn not asked again was settled before
        verdicts = [verdict(e) for e in events]
        assert events, f"{prompt.id}: turn {i} was never asked"
        assert all(v == "retry" for v, _ in verdicts[:-1]), f"{prompt.id}: retried after {verdicts}"
        last, reason = verdicts[-1]
        if last == "fail" or (last == "retry" and len(events) == 1 + MAX_RETRIES):
            for later in prompt.turns[i + 1 :]:
                assert not srv.events(later), f"{prompt.id}: a turn after a failed one was asked"
            return Fate(False, reason, len(events))
        assert last == "accept", f"{prompt.id}: gave up after {len(events)} attempts: {events}"
        model = "impostor-model" if events[-1].fault == "wrong_model" else "teacher"
    return Fate(True, model=model)


def _cfg(tmp_path: Path, srv: HostileOpenAI, prompts: Path, **kw: Any) -> CollectConfig:
    base: dict[str, Any] = dict(
        teacher="openai:teacher", base_url=srv.base_url, prompts=prompts, out=tmp_path / "out", concurrency=4,
        timeout=TIMEOUT, max_retries=MAX_RETRIES, backoff_base=0.01, backoff_max=0.05,
        cache_path=tmp_path / "cache.sqlite", progress=False,
    )  # fmt: skip
    return CollectConfig(**{**base, **kw})


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] if path.is_file() else []


def red_team_prompts(faults: set[str], *, n_scripted: int = 40) -> list[PromptRecord]:
    """Scripted prompts that use every fault several times, 'always' prompts for every fault that fails
    (so each failure's reason and attempt count is checked), slow faults once each, and two multi-turn prompts."""
    retried = sorted(faults & set(RETRIED) - SLOW)
    last = sorted(faults - SLOW - set(FAILS_AT_ONCE) - {"ok"})  # an accepted fault ends a script: it goes last
    prompts = [PromptRecord(id=f"w{i}", turns=[f"warm-up {i}"]) for i in range(4)]
    for i in range(n_scripted):  # one fault after another through each cycle, so every fault is used
        script = [retried[(2 * i + j) % len(retried)] for j in range(i % 3)] + [last[i % len(last)]]
        script = ",".join(script)
        prompts.append(PromptRecord(id=f"s{i}", turns=[f"prompt {i} é [faults: {script}]"]))
    # A run of duplicates: each arms its connection with a stale copy for whichever request comes next on it.
    prompts += [PromptRecord(id=f"dup{i}", turns=[f"duplicated {i} [faults: dup]"]) for i in range(8)]
    for fault in sorted(faults & SLOW):
        prompts.append(PromptRecord(id=f"slow-{fault}", turns=[f"slow {fault} [faults: {fault}]"]))
    for fault in sorted((set(RETRIED) | set(FAILS_AT_ONCE)) & faults - SLOW - {"no_id"}):
        prompts.append(PromptRecord(id=f"always-{fault}", turns=[f"always {fault} [always: {fault}]"]))
    prompts.append(PromptRecord(id="multi-a", turns=["multi a one [faults: dup]", "multi a two [faults: http500]"]))
    prompts.append(PromptRecord(id="multi-b", turns=["multi b one", "multi b two [always: http500]"]))
    return prompts


def check_output(
    out: Path, prompts: list[PromptRecord], srv: HostileOpenAI, since: dict[str, int] | None = None
) -> dict[str, Fate]:
    """Exactly one current record per prompt, as the server's log says it must be, and the files agree."""
    assert not srv.errors, srv.errors
    records = _lines(out / "conversations.jsonl")
    failures = _lines(out / "failures.jsonl")
    manifest = json.loads((out / "manifest.json").read_text())
    answered = {r["prompt_id"]: r for r in records}
    failed = {f["prompt_id"]: f for f in failures}
    assert len(answered) == len(records), "a prompt was recorded twice"
    assert len(failed) == len(failures), "a prompt is listed as failed twice"
    assert answered.keys().isdisjoint(failed), "a prompt is both answered and failed"
    assert answered.keys() | failed.keys() == {p.id for p in prompts}, "a prompt has no record"
    fates = {p.id: fate(srv, p, since) for p in prompts}
    by_id = {p.id: p for p in prompts}
    for pid, f in fates.items():
        if f.answered:
            assert pid in answered, f"{pid}: should be answered ({srv.events(by_id[pid].turns[-1])}), {failed.get(pid)}"
            record = answered[pid]
            expected = [
                m
                for t in by_id[pid].turns
                for m in ({"role": "user", "content": t}, {"role": "assistant", "content": answer_for(t)})
            ]
            assert record["messages"] == expected, f"{pid}: not its own answer"
            assert record["model"] == f.model
        else:
            assert pid in failed, f"{pid}: should have failed with {f.reason!r}"
            record = failed[pid]
            assert record["reason"].startswith(f.reason or "?"), (pid, record["reason"], f)
            assert record["attempts"] == f.attempts, (pid, record, f)
            assert record["prompt_sha256"] and record["prompt_preview"] == by_id[pid].turns[0][:200]
    assert manifest["counts"] == {
        "expected": len(prompts), "collected": len(answered), "failed": len(failed), "missing": 0,
        "records": len(records),
    }  # fmt: skip
    assert manifest["failures"] == sorted(failures, key=lambda r: (r["prompt_id"], r["sample"]))
    assert manifest["served_by"] == dict(Counter(r["model"] for r in records))
    return fates


# -- the red team -------------------------------------------------------------------------------------------------
def test_red_team_json(tmp_path: Path) -> None:
    prompts = red_team_prompts(JSON_FAULTS)
    assert 60 <= len(prompts) <= 80
    path = tmp_path / "prompts.jsonl"
    write_prompt_set(path, prompts)
    with HostileOpenAI() as srv:
        result = collect(_cfg(tmp_path, srv, path))
        fates = check_output(tmp_path / "out", prompts, srv)
        events = [e for text in srv.log for e in srv.events(text)]
    seen = Counter(e.fault for e in events)
    assert set(seen) == JSON_FAULTS, f"faults never used: {JSON_FAULTS - set(seen)}"
    assert any(e.left_over == "stale" for e in events), "no stale duplicate reached a request: the test proves nothing"
    assert sum(f.answered for f in fates.values()) > 40 and sum(not f.answered for f in fates.values()) > 10
    anomalies = result.manifest["last_run"]["anomalies_refused"]
    assert anomalies["duplicate response id"] == sum(e.left_over == "stale" for e in events)
    assert anomalies["cut body (bad UTF-8)"] == sum(e.fault == "utf8_cut" and e.left_over is None for e in events)


def test_red_team_stream(tmp_path: Path) -> None:
    """The same rules for server-sent events (``collect --stream``), with the stream faults."""
    prompts = red_team_prompts(STREAM_FAULTS, n_scripted=30)
    path = tmp_path / "prompts.jsonl"
    write_prompt_set(path, prompts)
    with HostileOpenAI() as srv:
        collect(_cfg(tmp_path, srv, path, stream=True))
        check_output(tmp_path / "out", prompts, srv)
        events = [e for text in srv.log for e in srv.events(text)]
        assert all(b["stream"] is True and b["stream_options"] == {"include_usage": True} for b in srv.bodies)
        assert set(Counter(e.fault for e in events)) == STREAM_FAULTS
        assert any(e.left_over == "stale" for e in events)
        # Streaming is how an answer travels, not what is asked: a plain run gets the same answers from the cache.
        again = collect(_cfg(tmp_path, srv, path, out=tmp_path / "plain"))
    streamed = _answers(tmp_path / "out")
    assert again.run.cached == len(streamed) and _answers(tmp_path / "plain").items() >= streamed.items()


def test_sigkill_mid_run_then_resume(tmp_path: Path) -> None:
    """`imitlab collect` killed with SIGKILL mid-way against the hostile server, then the same command again."""
    prompts = red_team_prompts(JSON_FAULTS - SLOW, n_scripted=50)
    prompts.sort(key=lambda p: not p.id.startswith("always-"))  # failures first: some are on file before the kill
    path = tmp_path / "prompts.jsonl"
    write_prompt_set(path, prompts)
    out = tmp_path / "out"
    conv = out / "conversations.jsonl"
    with HostileOpenAI(latency_s=0.05) as srv:
        settings = {"concurrency": 4, "max_retries": MAX_RETRIES, "timeout": TIMEOUT}
        cmd = _collect_command(REPO, srv, path, out, tmp_path / "cache.sqlite", settings)
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 300
        while len(_lines(conv)) < 15 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        at_kill = len(_lines(conv))
        assert 15 <= at_kill < len(prompts) - 10, f"the kill did not land mid-run ({at_kill} records)"
        failed_at_kill = _lines(out / "failures.jsonl")
        time.sleep(1.0)  # requests sent just before the kill reach the server's log
        asked_before = {text: len(srv.events(text)) for text in srv.log}

        done = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout + done.stderr
        check_output(out, prompts, srv, since=asked_before)
    # Failures written before the kill were retried on resume and are now listed once, with their latest attempt.
    failed_now = {f["prompt_id"]: f for f in _lines(out / "failures.jsonl")}
    assert failed_at_kill, "no failure was on file at the kill"
    for before in failed_at_kill:
        assert before["prompt_id"] in failed_now and failed_now[before["prompt_id"]]["time"] > before["time"]


# -- what fooled the old code, and what today's code does with the same server --------------------------------------
@pytest.fixture(scope="module")
def old_trees(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """The imitlab package as it was at PRE_ENGINE and FIRST_ENGINE, extracted from git (unchanged)."""
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("needs the git history of the repository")
    trees = {}
    for commit in (PRE_ENGINE, FIRST_ENGINE):
        root = tmp_path_factory.mktemp(f"imitlab-{commit}")
        archive = subprocess.run(["git", "-C", str(REPO), "archive", commit, "imitlab"], capture_output=True)
        if archive.returncode != 0:
            pytest.skip(f"commit {commit} is not in this repository's history")
        subprocess.run(["tar", "-x", "-C", str(root)], input=archive.stdout, check=True)
        trees[commit] = root
    yield trees


COLLECT_SCRIPT = """
import json, sys
from pathlib import Path
from imitlab.collect import CollectConfig, collect
from imitlab.models.client import ChatClient
root, base, prompts, out, cache, settings = sys.argv[1:7]
assert __import__("imitlab").__file__.startswith(root), "not the tree asked for"
cfg = CollectConfig(teacher="openai:teacher", base_url=base, prompts=Path(prompts), out=Path(out), backoff_base=0.01,
                    backoff_max=0.05, cache_path=Path(cache), progress=False, **json.loads(settings))
# the trees before today's took a running endpoint as client=; today's open the openai: spec at base_url itself
import inspect
old = "client" in inspect.signature(collect).parameters
collect(cfg, **({"client": ChatClient(base, "teacher")} if old else {}))
"""


def _collect_command(
    root: Path, srv: HostileOpenAI, prompts: Path, out: Path, cache: Path, settings: dict[str, Any]
) -> list[str]:
    """A new Python process that collects with the imitlab package found in ``root`` (run it with cwd=root)."""
    args = [str(root), srv.base_url, str(prompts), str(out), str(cache), json.dumps(settings)]
    return [sys.executable, "-c", COLLECT_SCRIPT, *args]


def _collect_with(tree: Path | None, srv: HostileOpenAI, prompts: list[PromptRecord], tmp_path: Path) -> Path:
    """Run a collection (concurrency 1, 2 retries) with the code in ``tree`` (None: today's) in a new process."""
    path = tmp_path / "prompts.jsonl"
    write_prompt_set(path, prompts)
    root = tree or REPO
    settings = {"concurrency": 1, "max_retries": 2, "timeout": TIMEOUT}
    cmd = _collect_command(root, srv, path, tmp_path / "out", tmp_path / "cache.sqlite", settings)
    run = subprocess.run(cmd, cwd=root, env={**os.environ, "PYTHONPATH": str(root)}, capture_output=True, text=True,
                         timeout=300)  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    return tmp_path / "out"


def _answers(out: Path) -> dict[str, str]:
    return {r["prompt_id"]: r["messages"][-1]["content"] for r in _lines(out / "conversations.jsonl")}


DUP_PROMPTS = [
    PromptRecord(id="a", turns=["first"]),
    PromptRecord(id="b", turns=["second [faults: dup]"]),  # its answer is sent again, late, to the next request
    PromptRecord(id="c", turns=["third"]),
]


@pytest.mark.parametrize("code", ["pre-engine", "today"])
def test_a_duplicate_on_a_kept_alive_connection(code: str, old_trees: dict[str, Path], tmp_path: Path) -> None:
    with HostileOpenAI() as srv:
        out = _collect_with(old_trees[PRE_ENGINE] if code == "pre-engine" else None, srv, DUP_PROMPTS, tmp_path)
        assert srv.events("third")[0].left_over == "stale"  # the stale copy did reach the next request
    answers = _answers(out)
    if code == "pre-engine":  # saved the second prompt's answer as the third's
        assert answers["c"] == answer_for("second [faults: dup]")
    else:
        assert answers == {p.id: answer_for(p.turns[0]) for p in DUP_PROMPTS}
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["last_run"]["anomalies_refused"] == {"duplicate response id": 1}


@pytest.mark.parametrize("code", ["pre-engine", "today"])
def test_a_body_cut_inside_a_utf8_character(code: str, old_trees: dict[str, Path], tmp_path: Path) -> None:
    prompts = [PromptRecord(id="a", turns=["first"]), PromptRecord(id="cut", turns=["cut [faults: utf8_cut]"])]
    with HostileOpenAI() as srv:
        out = _collect_with(old_trees[PRE_ENGINE] if code == "pre-engine" else None, srv, prompts, tmp_path)
        asked = len(srv.events("cut [faults: utf8_cut]"))
    failures = _lines(out / "failures.jsonl")
    if code == "pre-engine":  # failed for good at the first cut body: never retried
        assert [(f["prompt_id"], f["attempts"]) for f in failures] == [("cut", 1)] and asked == 1
        assert failures[0]["reason"].startswith("UnicodeDecodeError")
    else:
        assert failures == [] and asked == 2
        assert _answers(out)["cut"] == answer_for("cut [faults: utf8_cut]")


@pytest.mark.parametrize("code", ["pre-engine", "today"])
def test_failures_file_after_a_resume(code: str, old_trees: dict[str, Path], tmp_path: Path) -> None:
    prompts = [PromptRecord(id="a", turns=["first"]), PromptRecord(id="bad", turns=["bad [always: http500]"])]
    with HostileOpenAI() as srv:
        for _ in range(2):  # a run, then the same command again (a resume retries failed prompts)
            out = _collect_with(old_trees[PRE_ENGINE] if code == "pre-engine" else None, srv, prompts, tmp_path)
        assert len(srv.events("bad [always: http500]")) == 2 * 3
    failures = _lines(out / "failures.jsonl")
    if code == "pre-engine":
        assert [f["prompt_id"] for f in failures] == ["bad", "bad"]
    else:
        assert [(f["prompt_id"], f["attempts"]) for f in failures] == [("bad", 3)]
        assert failures[0]["reason"].startswith("HTTP 500") and failures[0]["prompt_preview"] == "bad [always: http500]"


ENGINE_SCRIPT = """
import json, sys
from imitlab.models.engine import EngineSettings, Request, RequestEngine
base, root = sys.argv[1], sys.argv[2]
texts = json.loads(sys.argv[3])
assert __import__("imitlab").__file__.startswith(root), "not the tree asked for"
settings = EngineSettings(concurrency=1, timeout=10, max_retries=2, backoff_base=0.01, backoff_max=0.02,
                          use_cache=False, progress=False)
with RequestEngine(base, "teacher", identity="t", settings=settings) as engine:
    answers = engine.map([Request.chat([{"role": "user", "content": t}]) for t in texts], desc="x")
print(json.dumps([getattr(a, "text", None) for a in answers]))
"""


@pytest.mark.parametrize("code", ["first engine", "today"])
def test_a_server_without_response_ids(code: str, old_trees: dict[str, Path]) -> None:
    """Response ids cannot prove anything when the server gives none: today each request then gets a connection
    of its own, so no stale copy can be on it; the first engine kept connections alive and was fooled."""
    texts = ["first", "second [faults: dup]", "third [faults: dup]", "fourth"]
    root = old_trees[FIRST_ENGINE] if code == "first engine" else REPO
    with HostileOpenAI(ids=False) as srv:
        run = subprocess.run([sys.executable, "-c", ENGINE_SCRIPT, srv.base_url, str(root), json.dumps(texts)],
                             cwd=root, env={**os.environ, "PYTHONPATH": str(root)}, capture_output=True, text=True,
                             timeout=300)  # fmt: skip
        assert run.returncode == 0, run.stderr[-3000:]
        answers = json.loads(run.stdout.splitlines()[-1])
        connections, stale = srv.connections, srv.stale_sent
    if code == "first engine":
        assert stale >= 1 and answers[2] == answer_for("second [faults: dup]")
    else:
        assert answers == [answer_for(t) for t in texts]
        assert connections == len(texts) and stale == 0
        assert all(h.get("connection") == "close" for h in srv.headers)


def test_ids_prove_the_pairing_so_connections_are_kept_alive(tmp_path: Path) -> None:
    """With ids, one connection serves many requests (no cost on a well-behaved server)."""
    texts = [f"q{i}" for i in range(12)]
    settings = EngineSettings(concurrency=1, timeout=TIMEOUT, use_cache=False, progress=False)
    with HostileOpenAI() as srv, RequestEngine(srv.base_url, "teacher", identity="t", settings=settings) as engine:
        answers = engine.map([Request.chat([{"role": "user", "content": t}]) for t in texts], desc="x")
        assert [a.text for a in answers if not isinstance(a, RequestFailed)] == [answer_for(t) for t in texts]
        assert srv.connections == 2  # the first request on a connection of its own, then one kept alive


def test_pools_given_up_after_anomalies_are_closed(tmp_path: Path) -> None:
    """Each refused body retires the connection pool; a retired pool is closed once its requests are done, not
    kept open until the engine closes (a long run against a flaky server would run out of file descriptors)."""
    texts = ["first"] + [f"cut {i} [faults: json_cut]" for i in range(20)]
    settings = EngineSettings(concurrency=2, timeout=TIMEOUT, max_retries=2, backoff_base=0.01, backoff_max=0.02,
                              use_cache=False, progress=False)  # fmt: skip
    with HostileOpenAI() as srv, RequestEngine(srv.base_url, "teacher", identity="t", settings=settings) as engine:
        answers = engine.map([Request.chat([{"role": "user", "content": t}]) for t in texts], desc="x")
        assert [a.text for a in answers if not isinstance(a, RequestFailed)] == [answer_for(t) for t in texts]
        assert engine.usage.anomalies["malformed body"] == 20
        deadline = time.monotonic() + 10
        while srv.open_connections > 2 and time.monotonic() < deadline:
            time.sleep(0.05)  # the server notices a closed socket at its next read
        assert srv.open_connections <= 2, f"{srv.open_connections} connections still open"


def test_cli_collect_stream(tmp_path: Path) -> None:
    from imitlab.cli import app

    path = tmp_path / "prompts.jsonl"
    texts = ["one [faults: sse_no_done]", "two [faults: sse_spliced]", "three"]
    write_prompt_set(path, [PromptRecord(id=f"p{i}", turns=[t]) for i, t in enumerate(texts)])
    with HostileOpenAI() as srv:
        args = [
            "collect",
            "--teacher",
            "openai:teacher",
            "--base-url",
            srv.base_url,
            "--prompts",
            str(path),
            "--out",
            str(tmp_path / "out"),
            "--stream",
            "--no-progress",
            "--cache-file",
            str(tmp_path / "c.db"),
        ]
        res = CliRunner().invoke(app, args)  # fmt: skip
        assert res.exit_code == 0, res.output
        assert all(b.get("stream") is True for b in srv.bodies) and srv.requests == 5
    assert _answers(tmp_path / "out") == {f"p{i}": answer_for(t) for i, t in enumerate(texts)}


@pytest.mark.real
def test_stream_from_a_real_llama_server_matches_the_plain_answers(smollm2_server: Any, tmp_path: Path) -> None:
    """llama.cpp's server-sent events, assembled, are the answer its JSON endpoint gives (greedy, one at a time)."""
    questions = ["What is the capital of France?", "Name a primary colour.", "Write one word: yes or no."]
    path = tmp_path / "prompts.jsonl"
    write_prompt_set(path, [PromptRecord(id=f"q{i}", turns=[q]) for i, q in enumerate(questions)])
    runs = {}
    for stream in (True, False):
        cfg = CollectConfig(
            teacher="openai:smollm2-135m-instruct", base_url=smollm2_server.base_url, prompts=path,
            out=tmp_path / f"out-{stream}", concurrency=1, temperature=0.0, max_tokens=24, use_cache=False,
            progress=False, stream=stream,
        )  # fmt: skip
        result = collect(cfg)
        assert result.manifest["counts"]["collected"] == 3 and result.run.anomalies == Counter()
        runs[stream] = {r["prompt_id"]: r for r in _lines(cfg.out / "conversations.jsonl")}
    for pid, plain in runs[False].items():
        streamed = runs[True][pid]
        assert streamed["messages"] == plain["messages"] and streamed["messages"][-1]["content"].strip()
        assert streamed["usage"] == plain["usage"] and 0 < streamed["usage"]["completion_tokens"] <= 24
        assert streamed["finish_reason"] == plain["finish_reason"] in ("stop", "length")
