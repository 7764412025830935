"""The sweep's ray executor on a real local Ray cluster (2 CPUs, 1 logical GPU) started by the test.

Stages run in Ray worker processes through the same StageCache code the sweep uses: independent stages run at
once, GPU stages get their device and never share it, a SIGKILLed worker's stage runs again on a new worker and
resumes inside its directory, a failed stage fails its dependents without retries, and a second pass reuses
every finished stage without running any.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

from imitlab.errors import ImitlabError
from imitlab.study.executors import Executor, RayExecutor, Resources
from imitlab.study.stages import ATTEMPTS, DONE, LOCK, StageCache

from .ray_stages import broken, resumable, sleeper
from .test_train_logic import tiny_model, tokenizer  # noqa: F401  (fixtures)

# The [cluster] extra; `make` installs it with [dev]. Not imported here: the executor imports it first, so the
# cluster it starts keeps to the loopback interface.
pytestmark = pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="ray is not installed")

REPO = Path(__file__).resolve().parents[1]
ALPACA = "${IMITLAB_DATA}/alpaca_gpt4_demo/alpaca_en_demo.json"
CPU = Resources(cpus=1, gpus=0)
GPU = Resources(cpus=0, gpus=1)


# ----------------------------------------------------------------------------------------------------------------
def _wait(condition, what: str, seconds: float = 90.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds:.0f} s waiting for {what}")
        time.sleep(0.1)


def _attempts(d: Path) -> list[dict]:
    return [json.loads(x) for x in (d / ATTEMPTS).read_text().splitlines()] if (d / ATTEMPTS).is_file() else []


def _trace_of(d: Path) -> dict:
    return json.loads((d / "trace.json").read_text())


def _submit_all(ex: Executor) -> dict[str, object]:
    runs: dict[str, object] = {}
    runs["victim"] = victim = ex.submit("victim", {"n": 1}, resumable, where="worker", resources=CPU)
    runs["slow-a"] = slow_a = ex.submit("slow", {"n": "a"}, sleeper, where="worker", resources=CPU)
    runs["slow-a-again"] = ex.submit("slow", {"n": "a"}, sleeper, where="worker", resources=CPU)  # same stage twice
    runs["slow-b"] = ex.submit("slow", {"n": "b"}, sleeper, where="worker", resources=CPU)
    runs["gpu-1"] = ex.submit("gpu", {"n": 1}, sleeper, where="worker", resources=GPU)
    runs["gpu-2"] = ex.submit("gpu", {"n": 2}, sleeper, where="worker", resources=GPU)
    runs["after-victim"] = ex.submit("after", {"up": "victim"}, sleeper, where="worker", resources=CPU,
                                     after=[victim, slow_a])  # fmt: skip
    runs["on-driver"] = ex.submit("driver", {"n": 1}, sleeper, after=[slow_a])
    return runs


def test_ray_executor_runs_stages_in_parallel_and_reruns_a_killed_worker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", str(REPO))  # the cluster's workers import this module's stage functions
    run_dir = tmp_path / "run"
    events: list[tuple[str, str]] = []
    cache = StageCache(run_dir, on_event=lambda what, name: events.append((what, name)))
    first = RayExecutor(cache, num_cpus=2, num_gpus=1)
    try:
        runs = _submit_all(first)
        bad = first.submit("broken", {"n": 1}, broken, where="worker", resources=CPU)
        downstream_of_bad = first.submit("after", {"up": "broken"}, sleeper, where="worker", resources=CPU,
                                         after=[bad])  # fmt: skip
        victim_dir = cache.path("victim", {"n": 1})
        slow_a_dir = cache.path("slow", {"n": "a"})

        # The victim holds one of the two CPUs, mid-stage, while slow-a runs on the other and finishes.
        _wait(lambda: (victim_dir / "progress.txt").is_file(), "the victim's first step")
        _wait(lambda: (slow_a_dir / DONE).is_file(), "slow-a to finish beside the running victim")
        assert not (victim_dir / DONE).is_file()
        holder = json.loads((victim_dir / LOCK).read_text())
        assert holder["pid"] != os.getpid()  # a Ray worker process, not this one
        os.kill(holder["pid"], signal.SIGKILL)

        with pytest.raises(ImitlabError, match=r"2 stage\(s\) failed; the first, broken: .*always fails"):
            first.join()
        with pytest.raises(ImitlabError, match="not run, a stage it reads failed"):
            downstream_of_bad.result()

        # The killed stage ran again in a new worker and resumed after its first step.
        attempts = _attempts(victim_dir)
        assert len(attempts) == 2 and attempts[0]["pid"] == holder["pid"] != attempts[1]["pid"]
        victim = _trace_of(victim_dir)
        assert victim["resumed_from"] == 1 and victim["pid"] == attempts[1]["pid"]
        # Stages downstream of the victim started only after it finished.
        after_dir = cache.path("after", {"up": "victim"})
        assert _trace_of(after_dir)["start"] >= json.loads((victim_dir / DONE).read_text())["finished"] - 0.01
        # The two GPU stages each saw the one GPU and never held it at once; CPU stages saw none.
        g1, g2 = (_trace_of(cache.path("gpu", {"n": n})) for n in (1, 2))
        assert g1["cuda_visible_devices"] == g2["cuda_visible_devices"] == "0"
        assert g1["end"] <= g2["start"] or g2["end"] <= g1["start"]
        assert _trace_of(slow_a_dir)["cuda_visible_devices"] == ""
        # The same stage submitted twice ran once; a stage that raised was not retried.
        assert len(_attempts(slow_a_dir)) == 1
        assert len(_attempts(cache.path("broken", {"n": 1}))) == 1
        assert cache.reused == [slow_a_dir.name]
        assert sorted(cache.ran) == sorted({r.path.name for name, r in runs.items() if name != "slow-a-again"})  # type: ignore[attr-defined]
        assert _trace_of(cache.path("driver", {"n": 1}))["pid"] == os.getpid()  # a driver stage ran here

        # A second pass over the same run directory, on the same cluster, reuses every finished stage.
        before = {p.name: len(_attempts(p)) for p in (run_dir / "stages").iterdir()}
        again = StageCache(run_dir)
        second = RayExecutor(again)
        _submit_all(second)
        second.join()
        second.close()
        assert again.ran == [] and len(again.reused) == 8
        assert {p.name: len(_attempts(p)) for p in (run_dir / "stages").iterdir()} == before

        # An interrupted sweep stops its running stages rather than waiting for them (they resume on a rerun).
        long_dir = cache.path("long", {"n": 1})
        first.submit("long", {"n": 1}, functools.partial(sleeper, seconds=300), where="worker", resources=CPU)
        _wait(lambda: (long_dir / LOCK).is_file() and (long_dir / LOCK).read_text(), "the long stage to start")
        started = time.monotonic()
        first.close(aborted=True)
        assert time.monotonic() - started < 60 and not (long_dir / DONE).is_file()
        # No stage thread is left waiting on the stopped cluster (one was, and hung the process at exit).
        _wait(lambda: not [t for t in threading.enumerate() if t.name.startswith("stage_")], "the stage threads", 30)
    finally:
        first.close()
    assert not sys.modules["ray"].is_initialized()  # the executor that started the cluster stopped it


# -- the sweep itself through the ray executor ---------------------------------------------------------------------
def _teacher_reply(body: dict) -> str:
    text = json.dumps(body.get("messages", ""))
    if "[[A]]" in text:  # a judge prompt: a verdict in the format the judge parses
        return "Both answers are of similar quality. [[C]]"
    return "Here is a short, helpful answer: " + " ".join(["imitation"] * 30)


@pytest.mark.real  # the student's tokenizer is SmolLM2's (tests/test_train_logic.py::tiny_model)
def test_a_tiny_sweep_through_ray_survives_a_killed_training_worker(
    tiny_model: Path,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from imitlab.study.sweep import run_sweep
    from imitlab.study.sweep_config import load_sweep_config

    from .fake_openai_server import FakeOpenAI

    run_dir = tmp_path / "run"
    killed: dict[str, int] = {}

    def kill_the_first_training_worker() -> None:
        while not killed:
            for lock in sorted((run_dir / "stages").glob("train-*/.lock")):
                try:
                    pid = json.loads(lock.read_text())["pid"]  # empty or half-written while its owner writes it
                except (ValueError, KeyError):
                    continue
                if (lock.parent / DONE).is_file():
                    continue
                try:
                    os.kill(pid, signal.SIGKILL)  # a Ray worker, mid-stage (its lock is held, no marker yet)
                except ProcessLookupError:
                    continue  # it finished between the two looks
                killed[lock.parent.name] = pid
                return
            time.sleep(0.05)

    with FakeOpenAI(responder=_teacher_reply, max_requests=5000) as teacher:
        monkeypatch.setenv("IMITLAB_BASE_URL", teacher.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "fake")
        config = load_sweep_config({
            "name": "ray", "teacher": "openai:fake-teacher", "bases": [f"hf:{tiny_model}"], "budgets": [400, 800],
            "data_kinds": ["broad"],
            "broad": {"prompts": [ALPACA], "limit": 16, "max_tokens": 64},
            "train": {"block_size": 64, "batch_size": 2},
            "eval": {"benches": ["nq_open"], "limit": 2, "batch_size": 2},
            "judge": {"prompts": "koala", "limit": 2, "max_tokens": 16, "judge_max_tokens": 32, "style": False},
            "teacher_concurrency": 2, "cache": str(tmp_path / "cache"),  # the fake teacher's answers stay here
        })  # fmt: skip
        killer = threading.Thread(target=kill_the_first_training_worker, daemon=True)
        killer.start()
        results = run_sweep(config, run_dir, executor="ray")
        killer.join(timeout=1)
        ((name, pid),) = killed.items()
        assert pid != os.getpid()
        stages = run_dir / "stages"
        attempts = {d.name: _attempts(d) for d in stages.iterdir()}
        assert len(attempts[name]) == 2 and attempts[name][0]["pid"] == pid  # the killed one ran again
        assert all(len(a) == 1 for n, a in attempts.items() if n != name)  # every other stage ran once
        done = {d.name: json.loads((d / DONE).read_text()) for d in stages.iterdir()}
        on_workers = {n.split("-")[0] for n, marker in done.items() if marker["pid"] != os.getpid()}
        assert on_workers == {"train", "eval", "answers"}  # the students' stages; the teacher's ran here
        imitation = [m for m in results["models"] if m["role"] == "imitation"]
        assert sorted(m["tokens"] for m in imitation) == [400, 800]
        assert all(results["benchmarks"][m["id"]]["nq_open"]["n"] == 2 for m in results["models"])
        assert all(results["preference"][m["id"]]["judge"]["n"] == 2 for m in imitation)
        # The same run directory under the local executor: every stage is reused, none runs.
        again = run_sweep(config, run_dir, executor="local")
    assert again["run"]["stages_run"] == [] and again["benchmarks"] == results["benchmarks"]
    assert sorted(again["run"]["stages_reused"]) == sorted(
        results["run"]["stages_run"] + results["run"]["stages_reused"]
    )
