"""A sweep killed with SIGKILL during broad collection resumes that collection in a new process.

The teacher is a real llama.cpp server, started anew (on a new port) by each process. The collection stage
is keyed by the teacher's identity (its weights), not by its server's URL, so the second process accepts the
directory, keeps every answer the first one wrote, and asks the teacher only for the rest.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from imitlab.collect.runner import teacher_identity
from imitlab.models.packaged import PulledModel

pytestmark = pytest.mark.real

N_PROMPTS = 24


def _config(tmp_path: Path, prompts: Path) -> Path:
    config = {
        "name": "resume",
        "teacher": "smollm2-135m-instruct",
        "bases": ["smollm2-135m-instruct"],
        "budgets": [250],
        "data_kinds": ["broad"],
        "broad": {"prompts": [str(prompts)], "limit": N_PROMPTS, "max_tokens": 64},
        "train": {"block_size": 128, "batch_size": 2, "learning_rate": 1e-4},
        "eval": {"benches": ["nq_open"], "limit": 4},
        "judge": {"prompts": "vicuna80", "limit": 2, "max_tokens": 48, "judge_max_tokens": 48},
        "teacher_concurrency": 2,
    }
    path = tmp_path / "resume.json"
    path.write_text(json.dumps(config))
    return path


# The second process runs the sweep's own collection stage (serve the teacher, build the broad data set)
# and stops there: the later stages (training, evaluation) are not what this test is about.
_RESUME = """
import json, sys
from pathlib import Path
from imitlab.study.executors import Executor
from imitlab.study.stages import StageCache
from imitlab.study.sweep import _broad, serve_teacher
from imitlab.study.sweep_config import load_sweep_config
config = load_sweep_config(json.loads(Path(sys.argv[1]).read_text()))
with serve_teacher(config) as teacher, Executor(StageCache(Path(sys.argv[2]))) as stages:
    print(_broad(config, stages, teacher).result())
"""


def _lines(path: Path) -> list[str]:
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()] if path.is_file() else []


def test_sweep_killed_during_collection_resumes_it_in_a_new_process(smollm2: PulledModel, tmp_path: Path) -> None:
    nonce = uuid.uuid4().hex[:8]  # fresh prompts: no earlier run's response cache can answer them
    prompts = tmp_path / "prompts.json"
    prompts.write_text(json.dumps([{"instruction": f"[{nonce}-{i}] Write two sentences about the number {i}.",
                                    "input": "", "output": ""} for i in range(N_PROMPTS)]))  # fmt: skip
    config = _config(tmp_path, prompts)
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    sweep = subprocess.Popen([sys.executable, "-m", "imitlab", "sweep", str(config), "--out", str(run)], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    written: list[str] = []
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and sweep.poll() is None:
            dirs = list((run / "stages").glob("collect-broad-*"))
            written = _lines(dirs[0] / "conversations.jsonl") if dirs else []
            if len(written) >= 3:
                break
            time.sleep(0.2)
        assert sweep.poll() is None, "the sweep ended before it could be killed"
        assert len(written) >= 3, "collection did not start within 5 minutes"
    finally:
        os.killpg(sweep.pid, signal.SIGKILL)  # the sweep and its llama.cpp server
        sweep.wait()
    stage = next((run / "stages").glob("collect-broad-*"))
    assert not (stage / "DONE.json").exists()
    before = _lines(stage / "conversations.jsonl")
    assert 3 <= len(before) < N_PROMPTS, "kill the sweep while it is collecting"
    settings_before = json.loads((stage / "settings.json").read_text())
    # the teacher is named by its weights, not by the URL of the server this process started
    assert settings_before["teacher"] == teacher_identity("smollm2-135m-instruct")
    assert "127.0.0.1" not in settings_before["teacher"]

    done = subprocess.run([sys.executable, "-c", _RESUME, str(config), str(run)], env=env, capture_output=True,
                          text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert Path(done.stdout.strip().splitlines()[-1]) == stage  # the same stage directory, now finished
    assert (stage / "DONE.json").exists()
    after = _lines(stage / "conversations.jsonl")
    assert after[: len(before)] == before  # nothing the first process wrote is lost or rewritten
    records = [json.loads(line) for line in after]
    ids = [r["prompt_id"] for r in records]
    assert len(ids) == len(set(ids)) == N_PROMPTS  # every prompt once
    manifest = json.loads((stage / "manifest.json").read_text())
    # the second process only scheduled the prompts that had no answer on disk
    assert manifest["last_run"]["jobs"] == N_PROMPTS - len(before)
    assert manifest["counts"] == {"expected": N_PROMPTS, "collected": N_PROMPTS, "failed": 0, "missing": 0,
                                  "records": N_PROMPTS}  # fmt: skip
    for r in records:  # each answer is stored under its own prompt
        assert r["messages"][0]["content"].startswith(f"[{nonce}-")
        assert r["messages"][-1]["role"] == "assistant" and r["messages"][-1]["content"].strip()
