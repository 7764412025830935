"""Batch collection against a real loopback Batch API (tests/fake_batch_server.py) that also misbehaves."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from imitlab.collect import CollectConfig, collect
from imitlab.collect import batch as batch_mod
from imitlab.collect.batch_lines import custom_id
from imitlab.errors import ImitlabError
from imitlab.prompts import PromptRecord, write_prompt_set

sys.path.insert(0, str(Path(__file__).parent))
from fake_batch_server import BatchFaults, FakeBatchAPI, completion, run_batch_offline

MODEL = "gpt-fake"


def _prompts(path: Path, n: int, text: str = "question {i}") -> Path:
    write_prompt_set(path, [PromptRecord(id=f"p{i}", turns=[text.format(i=i)]) for i in range(n)])
    return path


def _cfg(tmp: Path, srv: FakeBatchAPI | None, prompts: Path, **kw: Any) -> CollectConfig:
    defaults: dict[str, Any] = dict(
        teacher=f"openai:{MODEL}", base_url=srv.base_url if srv else None, prompts=prompts, out=tmp / "out",
        cache_path=tmp / "cache.sqlite", batch=True, batch_poll_s=0.05, max_retries=0, progress=False,
    )  # fmt: skip
    defaults.update(kw)
    return CollectConfig(**defaults)


def _records(out: Path) -> list[dict[str, Any]]:
    path = out / "conversations.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def _body(prompt: str, **params: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": [{"role": "user", "content": prompt}], "temperature": 0.7,
            "max_tokens": 1024, **params}  # fmt: skip


def _assert_exactly_once(out: Path, keys: set[tuple[str, int]]) -> list[dict[str, Any]]:
    records = _records(out)
    got = [(r["prompt_id"], r["sample"]) for r in records]
    assert len(got) == len(set(got)), "a record was written twice"
    assert set(got) == keys
    for r in records:  # every answer is the one the fake gives to that record's own prompt
        assert r["messages"][-1]["content"] == f"batch answer to: {r['messages'][0]['content']}"
    return records


def test_batches_collect_every_record_once_at_the_discounted_price(tmp_path: Path) -> None:
    prompts = _prompts(tmp_path / "p.jsonl", 12)
    with FakeBatchAPI(retrieve_errors=2) as srv:  # two status polls fail: polling goes on
        cfg = _cfg(tmp_path, srv, prompts, n_samples=2, batch_max_requests=10, price_prompt_per_m=3.0,
                   price_completion_per_m=10.0)  # fmt: skip
        result = collect(cfg)
        sent = [line for n in (1, 2, 3) for line in srv.request_lines(n)]
        assert srv.batches_created == 3 and srv.uploads == 3  # 24 requests in files of at most 10
    assert [len(srv.request_lines(n)) for n in (1, 2, 3)] == [10, 10, 4]
    for line in sent:  # the format OpenAI and vLLM read, each custom id binding its record and body
        assert set(line) == {"custom_id", "method", "url", "body"} and line["url"] == "/v1/chat/completions"
    expected_ids = {custom_id(f"p{i}" + (f"#{s}" if s else ""), _body(f"question {i}")) for i in range(12)
                    for s in range(2)}  # fmt: skip
    assert {line["custom_id"] for line in sent} == expected_ids and len(sent) == 24

    records = _assert_exactly_once(cfg.out, {(f"p{i}", s) for i in range(12) for s in range(2)})
    assert all(r["batch"]["discount"] == 0.5 and r["batch"]["id"].startswith("batch_") for r in records)
    # The fake's usage is word counts: recompute the price from the prompts, independently of the records.
    full = sum((2 * 3.0 + len(f"batch answer to: question {i}".split()) * 10.0) / 1e6 for i in range(12)) * 2
    m = result.manifest
    assert m["cost_usd"] == pytest.approx(full * 0.5, abs=1e-6)
    assert m["batch"]["cost_usd_at_live_prices"] == pytest.approx(full, abs=1e-6)
    assert m["counts"] == {"expected": 24, "collected": 24, "failed": 0, "missing": 0, "records": 24}
    state = json.loads((cfg.out / "batch.json").read_text())
    assert [b["stage"] for b in state["batches"]] == ["merged"] * 3


def test_expired_batch_resubmits_only_the_requests_it_did_not_run(tmp_path: Path) -> None:
    prompts = _prompts(tmp_path / "p.jsonl", 12)
    with FakeBatchAPI([BatchFaults(expire_after=5)]) as srv:
        cfg = _cfg(tmp_path, srv, prompts)
        collect(cfg)
        first = {line["custom_id"] for line in srv.request_lines(1)}
        second = {line["custom_id"] for line in srv.request_lines(2)}
        assert srv.batches_created == 2
    records = _assert_exactly_once(cfg.out, {(f"p{i}", 0) for i in range(12)})
    from_first = {r["batch"]["custom_id"] for r in records if r["batch"]["id"] == srv.order[0]}
    assert len(from_first) == 5 and second == first - from_first  # exactly the 7 that expired


def test_cancelled_batch_stops_and_a_rerun_submits_the_rest(tmp_path: Path) -> None:
    prompts = _prompts(tmp_path / "p.jsonl", 8)
    with FakeBatchAPI([BatchFaults(cancel_after=3)]) as srv:
        cfg = _cfg(tmp_path, srv, prompts)
        first = collect(cfg)
        assert srv.batches_created == 1 and first.manifest["counts"]["collected"] == 3
        assert first.manifest["counts"]["missing"] == 5
        collect(cfg)
        assert srv.batches_created == 2 and len(srv.request_lines(2)) == 5
    _assert_exactly_once(cfg.out, {(f"p{i}", 0) for i in range(8)})


def test_error_file_lines_become_failures_and_only_retryable_ones_go_again(tmp_path: Path) -> None:
    texts = ["question 0 ERR400", "question 1", "question 2 ERR503", "question 3 ERR400", "question 4"]
    write_prompt_set(tmp_path / "p.jsonl", [PromptRecord(id=f"p{i}", turns=[t]) for i, t in enumerate(texts)])
    faults = [
        BatchFaults(error_status={"ERR400": 400, "ERR503": 503}),
        BatchFaults(),
        BatchFaults(error_status={"ERR400": 400}),
    ]
    with FakeBatchAPI(faults) as srv:
        cfg = _cfg(tmp_path, srv, tmp_path / "p.jsonl")
        result = collect(cfg)
        # Round 2 holds only the 503: a 400 would fail again the same way.
        assert [json.loads(json.dumps(r))["body"]["messages"][0]["content"] for r in srv.request_lines(2)] == [texts[2]]
        assert result.manifest["counts"] == {"expected": 5, "collected": 3, "failed": 2, "missing": 0, "records": 3}
        failures = [json.loads(line) for line in (cfg.out / "failures.jsonl").read_text().splitlines()]
        assert sorted(f["prompt_id"] for f in failures) == ["p0", "p3"]
        assert all(f["reason"] == "HTTP 400: fake error 400" and f["status"] == 400 for f in failures)

        calls = sum(srv.calls.values())
        collect(_cfg(tmp_path, srv, tmp_path / "p.jsonl", retry_failed=False))  # nothing to ask
        assert sum(srv.calls.values()) == calls
        again = collect(cfg)  # a new run retries earlier failures; the third batch fails them again
        assert srv.batches_created == 3 and len(srv.request_lines(3)) == 2
    assert again.manifest["counts"]["failed"] == 2
    assert len((cfg.out / "failures.jsonl").read_text().splitlines()) == 2  # one current line per prompt
    _assert_exactly_once(cfg.out, {("p1", 0), ("p2", 0), ("p4", 0)})


def _line_for(lines: list[dict[str, Any]], prompt: str) -> dict[str, Any]:
    return next(x for x in lines if x["response"]["body"]["choices"][0]["message"]["content"].endswith(prompt))


def test_refused_result_lines_are_never_written_and_their_requests_go_again(tmp_path: Path) -> None:
    prompts = _prompts(tmp_path / "p.jsonl", 10)

    def tamper(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
        lines = [json.loads(json.dumps(x)) for x in lines]
        # p1: a line from a request file written at another temperature (its custom id names p1, not this body)
        _line_for(lines, "question 1")["custom_id"] = custom_id("p1", _body("question 1", temperature=0.1))
        # p2: two different answers for one request
        p2 = _line_for(lines, "question 2")
        other = json.loads(json.dumps(p2))
        other["response"]["body"]["choices"][0]["message"]["content"] = "TAMPERED second answer"
        lines.append(other)
        # p3 and p4: one completion id answering two requests
        reused = _line_for(lines, "question 3")["response"]["body"]["id"]
        _line_for(lines, "question 4")["response"]["body"]["id"] = reused
        # p5: a 200 without a completion
        _line_for(lines, "question 5")["response"]["body"]["choices"] = []
        return lines

    faults = [BatchFaults(duplicate=1, unknown_line=True, tamper=tamper)]  # p0 written twice
    with FakeBatchAPI(faults) as srv:
        cfg = _cfg(tmp_path, srv, prompts)
        result = collect(cfg)
        resent = sorted(r["body"]["messages"][0]["content"] for r in srv.request_lines(2))
    assert resent == [f"question {i}" for i in (1, 2, 3, 4, 5)]
    records = _assert_exactly_once(cfg.out, {(f"p{i}", 0) for i in range(10)})
    assert not any("TAMPERED" in r["messages"][-1]["content"] for r in records)
    refused = result.manifest["last_run"]["anomalies_refused"]
    assert refused == {"duplicate line": 1, "unknown custom_id": 1, "answers a different body": 1,
                       "conflicting lines": 2, "response id reused": 2, "no completion": 1}  # fmt: skip
    log = [json.loads(line) for line in (cfg.out / "batch" / "refused.jsonl").read_text().splitlines()]
    assert len(log) == 8 and all(e["where"].startswith(str(cfg.out)) and e["batch_id"] for e in log)


def test_a_batch_that_fails_validation_stops_the_run_with_its_reason(tmp_path: Path) -> None:
    prompts = _prompts(tmp_path / "p.jsonl", 3)
    with FakeBatchAPI([BatchFaults(fail_validation="model gpt-fake is not available for batch")]) as srv:
        cfg = _cfg(tmp_path, srv, prompts)
        with pytest.raises(batch_mod.BatchFailed, match="not available for batch"):
            collect(cfg)
    manifest = json.loads((cfg.out / "manifest.json").read_text())
    assert manifest["counts"]["missing"] == 3 and manifest["batch"]["batches"][0]["status"] == "failed"


# -- resuming at every point ----------------------------------------------------------------------------------
def test_killed_after_the_server_created_the_batch_adopts_it_instead_of_paying_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prompts = _prompts(tmp_path / "p.jsonl", 6)
    original = batch_mod._BatchRun._create

    def create_then_die(self: Any, entry: Any) -> Any:
        original(self, entry)
        raise KeyboardInterrupt  # the batch exists on the server; its id was never saved

    with FakeBatchAPI() as srv:
        cfg = _cfg(tmp_path, srv, prompts)
        monkeypatch.setattr(batch_mod._BatchRun, "_create", create_then_die)
        with pytest.raises(KeyboardInterrupt):
            collect(cfg)
        entry = json.loads((cfg.out / "batch.json").read_text())["batches"][0]
        assert entry["stage"] == "uploaded" and entry["batch_id"] is None and srv.batches_created == 1
        monkeypatch.setattr(batch_mod._BatchRun, "_create", original)
        collect(cfg)
        assert srv.batches_created == 1 and srv.uploads == 1
    _assert_exactly_once(cfg.out, {(f"p{i}", 0) for i in range(6)})


def test_killed_after_download_merges_without_asking_the_server_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prompts = _prompts(tmp_path / "p.jsonl", 6)
    with FakeBatchAPI() as srv:
        cfg = _cfg(tmp_path, srv, prompts)
        monkeypatch.setattr(batch_mod._BatchRun, "merge", lambda self, entry: (_ for _ in ()).throw(KeyboardInterrupt))
        with pytest.raises(KeyboardInterrupt):
            collect(cfg)
        assert json.loads((cfg.out / "batch.json").read_text())["batches"][0]["stage"] == "downloaded"
        assert not _records(cfg.out)
        monkeypatch.undo()
        calls = srv.calls.copy()
        collect(cfg)
        assert srv.calls == calls  # merged from the files on disk: no upload, poll or download
    _assert_exactly_once(cfg.out, {(f"p{i}", 0) for i in range(6)})


def test_killed_mid_merge_writes_nothing_twice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    prompts = _prompts(tmp_path / "p.jsonl", 6)
    original = batch_mod._Store.merge

    def merge_then_die(self: Any, *args: Any, **kw: Any) -> Any:
        original(self, *args, **kw)
        raise KeyboardInterrupt  # records written, the entry not yet marked merged

    with FakeBatchAPI() as srv:
        cfg = _cfg(tmp_path, srv, prompts)
        monkeypatch.setattr(batch_mod._Store, "merge", merge_then_die)
        with pytest.raises(KeyboardInterrupt):
            collect(cfg)
        assert len(_records(cfg.out)) == 6
        monkeypatch.undo()
        collect(cfg)
        assert srv.batches_created == 1
    _assert_exactly_once(cfg.out, {(f"p{i}", 0) for i in range(6)})
    entry = json.loads((cfg.out / "batch.json").read_text())["batches"][0]
    assert entry["merged"]["already"] == 6 and entry["merged"]["written"] == 0


def test_a_merged_collection_reruns_for_free_and_its_answers_serve_live_collection(tmp_path: Path) -> None:
    prompts = _prompts(tmp_path / "p.jsonl", 5)
    with FakeBatchAPI() as srv:
        cfg = _cfg(tmp_path, srv, prompts)
        collect(cfg)
        before = (cfg.out / "conversations.jsonl").read_bytes()
        calls = srv.calls.copy()
        collect(cfg)
        assert srv.calls == calls and (cfg.out / "conversations.jsonl").read_bytes() == before
        # Live collection of the same prompts at the same settings finds every answer in the response cache.
        live = collect(_cfg(tmp_path, srv, prompts, batch=False, out=tmp_path / "live"))
        assert srv.calls == calls and live.run.cached == 5
    assert [r["messages"] for r in _records(tmp_path / "live")] == [r["messages"] for r in _records(cfg.out)]


def _count_lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.is_file() else 0


def test_sigkill_while_polling_then_rerun_picks_up_the_same_batch(tmp_path: Path) -> None:
    n = 20
    prompts = _prompts(tmp_path / "p.jsonl", n)
    out = tmp_path / "out"
    with FakeBatchAPI(run_s=4.0) as srv:
        cmd = [sys.executable, "-m", "imitlab", "collect", "--teacher", f"openai:{MODEL}", "--base-url", srv.base_url,
               "--prompts", str(prompts), "--out", str(out), "--batch", "--batch-poll", "0.2", "--no-progress",
               "--cache-file", str(tmp_path / "cache.sqlite"), "--price-prompt", "1",
               "--price-completion", "1"]  # fmt: skip
        env = {**os.environ, "IMITLAB_CACHE": str(tmp_path / "imitlab-cache")}
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while srv.calls["GET /v1/batches/{id}"] < 2 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        state = json.loads((out / "batch.json").read_text())["batches"]
        assert [e["stage"] for e in state] == ["submitted"] and state[0]["batch_id"] == srv.order[0]
        assert _count_lines(out / "conversations.jsonl") == 0  # killed while the batch was still running

        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        assert srv.batches_created == 1 and srv.uploads == 1
    _assert_exactly_once(out, {(f"p{i}", 0) for i in range(n)})
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["collected"] == n and manifest["cost_usd"] == pytest.approx(
        manifest["batch"]["cost_usd_at_live_prices"] * 0.5
    )
    assert "cost at live prices" in done.stdout


# -- offline: the request file through vLLM's run_batch -------------------------------------------------------
def test_request_file_only_then_merge_a_result_file_made_elsewhere(tmp_path: Path) -> None:
    texts = [f"question {i}" for i in range(6)] + ["question 6 ERR"]
    write_prompt_set(tmp_path / "p.jsonl", [PromptRecord(id=f"p{i}", turns=[t]) for i, t in enumerate(texts)])
    out = tmp_path / "out"
    base = [sys.executable, "-m", "imitlab", "collect", "--teacher", f"openai:{MODEL}", "--prompts",
            str(tmp_path / "p.jsonl"), "--out", str(out), "--cache-file", str(tmp_path / "cache.sqlite")]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k not in ("IMITLAB_BASE_URL", "OPENAI_BASE_URL")}
    written = subprocess.run([*base, "--batch-file-only"], env=env, capture_output=True, text=True, timeout=120)
    assert written.returncode == 0, written.stdout + written.stderr
    requests = out / "batch" / "requests.jsonl"
    assert "vllm.entrypoints.openai.run_batch" in written.stderr and not _records(out)
    lines = [json.loads(x) for x in requests.read_text().splitlines()]
    assert [x["custom_id"] for x in lines] == [custom_id(f"p{i}", _body(t)) for i, t in enumerate(texts)]
    assert json.loads((out / "settings.json").read_text())["teacher"] == f"openai:{MODEL}@vllm-run-batch"

    results = tmp_path / "results.jsonl.gz"  # as vLLM writes it, then gzipped, with a stray and a broken line
    plain = tmp_path / "results.jsonl"
    assert run_batch_offline(requests, plain, error_marker="ERR") == 7
    body = plain.read_bytes() + b'{"custom_id": "im-nope", "response": null, "error": null}\n' + b"\xff\xfe not utf-8\n"
    results.write_bytes(gzip.compress(body))
    merged = subprocess.run([*base, "--merge-batch-output", str(results)], env=env, capture_output=True, text=True,
                            timeout=120)  # fmt: skip
    assert merged.returncode == 0, merged.stdout + merged.stderr
    _assert_exactly_once(out, {(f"p{i}", 0) for i in range(6)})
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["failed"] == 1 and manifest["failures"][0]["reason"] == "HTTP 400: fake vLLM error"
    assert manifest["last_run"]["anomalies_refused"] == {"unknown custom_id": 1, "not JSON": 1}

    again = subprocess.run([*base, "--merge-batch-output", str(results)], env=env, capture_output=True, text=True,
                           timeout=120)  # fmt: skip
    assert again.returncode == 0 and "0 written, 6 already collected" in again.stderr.replace("\n", " ")
    assert len(_records(out)) == 6


# -- what cannot go by batch ----------------------------------------------------------------------------------
def test_multi_turn_prompts_and_local_teachers_are_refused_clearly(tmp_path: Path) -> None:
    write_prompt_set(tmp_path / "multi.jsonl", [PromptRecord(id="a", turns=["hi"]),
                                                PromptRecord(id="b", turns=["hi", "and then?"])])  # fmt: skip
    cfg = _cfg(tmp_path, None, tmp_path / "multi.jsonl", base_url="http://127.0.0.1:9/v1")
    with pytest.raises(ImitlabError, match=r"single-turn prompts only, and 1 of 2 prompts .* \(first: 'b'\)"):
        collect(cfg)
    cfg = _cfg(tmp_path, None, _prompts(tmp_path / "p.jsonl", 2), teacher="smollm2-135m-instruct")
    with pytest.raises(ImitlabError, match="needs an openai: teacher"):
        collect(cfg)
    with pytest.raises(ImitlabError, match="choose one of"):
        collect(_cfg(tmp_path, None, tmp_path / "p.jsonl", batch_file_only=True))
    with pytest.raises(ImitlabError, match="batch_discount"):
        _cfg(tmp_path, None, tmp_path / "p.jsonl", batch_discount=1.5)


def test_one_batch_process_per_output_directory(tmp_path: Path) -> None:
    import fcntl

    cfg = _cfg(tmp_path, None, _prompts(tmp_path / "p.jsonl", 2), base_url="http://127.0.0.1:9/v1")
    (cfg.out / "batch").mkdir(parents=True)
    with open(cfg.out / "batch" / ".lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(ImitlabError, match="another `imitlab collect --batch` is working"):
            collect(cfg)


def test_the_fake_answers_like_the_real_api_shapes() -> None:
    """The fake's completion parses as the openai SDK's own ChatCompletion type (so the tests test real shapes)."""
    from openai.types.chat import ChatCompletion

    parsed = ChatCompletion.model_validate(completion(_body("hello there")))
    assert parsed.choices[0].message.content == "batch answer to: hello there"
