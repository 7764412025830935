"""kill -9 in the middle of a collection, rerun the same command: exactly one record per prompt."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from imitlab.prompts import PromptRecord, write_prompt_set

sys.path.insert(0, str(Path(__file__).parent))
from fake_openai_server import FakeOpenAI

N = 80


def _count(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.is_file() else 0


def test_sigkill_mid_run_then_resume_gives_exactly_one_record_per_prompt(tmp_path: Path) -> None:
    prompts = tmp_path / "prompts.jsonl"
    write_prompt_set(prompts, [PromptRecord(id=f"p{i}", turns=[f"question {i}"]) for i in range(N)])
    out = tmp_path / "out"
    conv = out / "conversations.jsonl"
    with FakeOpenAI(latency_s=0.1) as srv:
        cmd = [
            sys.executable, "-m", "imitlab", "collect", "--teacher", "openai:fake", "--base-url", srv.base_url,
            "--prompts", str(prompts), "--out", str(out), "--concurrency", "4", "--no-progress",
            "--cache-file", str(tmp_path / "cache.sqlite"),
        ]  # fmt: skip
        env = {**os.environ, "IMITLAB_CACHE": str(tmp_path / "imitlab-cache")}
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while _count(conv) < 12 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        at_kill = _count(conv)
        assert 12 <= at_kill < N, f"the kill did not land mid-run ({at_kill} records)"
        requests_before = srv.requests

        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
        # Only what was not yet written is asked again; answers cached but unwritten at the kill cost nothing.
        assert srv.requests - requests_before <= N - at_kill
        assert srv.requests <= N + 4  # at most the 4 requests in flight at the kill were lost

    records = [json.loads(line) for line in conv.read_text().splitlines()]
    ids = [r["prompt_id"] for r in records]
    assert len(ids) == N and sorted(ids) == sorted(f"p{i}" for i in range(N))
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"] == {"expected": N, "collected": N, "failed": 0, "missing": 0, "records": N}
