"""Sweep configuration checks and the stage cache (kill and resume), with the real config loader."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from imitlab.errors import ImitlabError
from imitlab.study.demo import demo_config_text
from imitlab.study.stages import StageCache
from imitlab.study.sweep_config import load_sweep_config

BASE = {"name": "t", "teacher": "smollm2-135m-instruct", "bases": ["smollm2-135m-instruct"], "budgets": [100],
        "broad": {"prompts": ["p.json"]}}  # fmt: skip


def test_demo_config_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    import yaml

    config = load_sweep_config(yaml.safe_load(demo_config_text()))
    assert config.teacher == "qwen2.5-coder-0.5b-instruct" and config.bases == ["smollm2-135m-instruct"]
    assert isinstance(config.eval.limit, dict) and set(config.eval.limit) == set(config.eval.benches)


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"learning_rate": 1}, "unknown key 'learning_rate'"),
        ({"train": {"lr": 1}}, "train: unknown key 'lr'"),
        ({"bases": ["smollm3-1b"]}, "bases: unknown packaged model 'smollm3-1b'"),
        ({"teacher": "gpt-5"}, "teacher: unknown packaged model"),
        ({"eval": {"benches": ["nq"]}}, "unknown benchmark 'nq'"),
        ({"data_kinds": ["wide"]}, r"data_kinds\.0: Input should be 'broad' or 'local' \(got 'wide'\)"),
        ({"budgets": [0]}, r"budgets\.0: Input should be greater than 0"),
        ({"train": {"base": "x"}}, r"train\.base: set by the sweep for each cell"),
        ({"train": {"save": "always"}}, "save must be one of final, steps, none"),
        ({"judge": {"verdict": "probs"}}, r"judge\.verdict: Input should be 'text' or 'logprob'"),
        ({"eval": {"teacher_mode": "raw"}}, r"eval\.teacher_mode: Input should be 'auto', 'chat' or 'completions'"),
        ({"eval": {"benches": ["nq_open"], "limit": {"mmlu": 5, "nq_open": 5}}}, "eval.limit: 'mmlu' is not in"),
        ({"eval": {"benches": ["nq_open", "humaneval"], "limit": {"nq_open": 5}}}, "no limit for 'humaneval'"),
        ({"eval": {"limit": 0}}, r"eval\.limit: give a positive"),
        ({"eval": {"benches": ["nq_open"], "limit": {"nq_open": -1}}}, r"eval\.limit\.nq_open: give a positive"),
        ({"resources": {"train": {"gpu": 1}}}, r"resources\.train: unknown key 'gpu'"),
        ({"resources": {"eval": {"gpus": -1}}}, r"resources\.eval\.gpus: Input should be greater than or equal to 0"),
        ({"resources": {"answers": {"cpus": "two"}}}, r"resources\.answers\.cpus: Input should be a valid number"),
        ({"resources": {"train": {"gpus": 1}}, "train": {"processes": 4}}, "needs 4 GPUs, not 1"),
    ],
)
def test_bad_config_fails_before_any_work_naming_the_key(patch: dict, message: str) -> None:
    with pytest.raises(ImitlabError, match=message):
        load_sweep_config({**BASE, **patch})


def test_missing_keys_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ImitlabError, match="missing required key"):
        load_sweep_config({"name": "x"})
    bad = tmp_path / "s.yaml"
    bad.write_text("name: [unclosed")
    with pytest.raises(ImitlabError, match=r"s\.yaml:1: not valid YAML"):
        load_sweep_config(bad)


def test_cli_rejects_unknown_key_without_starting_anything(tmp_path: Path) -> None:
    config = tmp_path / "sweep.yaml"
    config.write_text(
        textwrap.dedent("""
        name: x
        teacher: smollm2-135m-instruct
        bases: [smollm2-135m-instruct]
        budgets: [100]
        broad: {prompts: [a.json], limt: 3}
    """)
    )
    done = subprocess.run([sys.executable, "-m", "imitlab", "sweep", str(config), "--out", str(tmp_path / "run")],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 2 and "unknown key 'limt'" in done.stderr
    assert not (tmp_path / "run").exists()


def test_stage_cache_reuses_done_stages_and_reruns_interrupted_ones(tmp_path: Path) -> None:
    calls: list[str] = []

    def work(name: str, fail: bool = False):  # type: ignore[no-untyped-def]
        def fn(d: Path) -> None:
            calls.append(name)
            (d / "out.txt").write_text(name)
            if fail:
                raise KeyboardInterrupt  # killed mid-stage

        return fn

    cache = StageCache(tmp_path)
    a = cache.run("a", {"x": 1}, work("a"))
    with pytest.raises(KeyboardInterrupt):
        cache.run("b", {"up": a.name}, work("b", fail=True))
    # Restart: a is reused, b (no DONE marker) runs again, c is new.
    cache = StageCache(tmp_path)
    cache.run("a", {"x": 1}, work("a"))
    b = cache.run("b", {"up": a.name}, work("b"))
    cache.run("c", {"up": b.name}, work("c"))
    assert calls == ["a", "b", "b", "c"]
    assert cache.reused == [a.name] and cache.ran == [b.name, cache.path("c", {"up": b.name}).name]
    # A changed parameter is a different stage; the old one stays cached.
    assert cache.path("a", {"x": 2}) != a


def _stage_script(tmp_path: Path) -> Path:
    script = tmp_path / "stages.py"
    script.write_text(
        textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from imitlab.study.stages import StageCache
        cache = StageCache(Path({str(tmp_path / "run")!r}))
        for i in range(4):
            def fn(d, i=i):
                with open({str(tmp_path / "log.txt")!r}, 'a') as f:
                    f.write(f'{{i}}\\n')
                time.sleep(float(sys.argv[1]) if i == 2 else 0)
            cache.run('cell', {{'i': i}}, fn)
    """)
    )
    return script


def test_killed_sweep_redoes_only_unfinished_stages(tmp_path: Path) -> None:
    script = _stage_script(tmp_path)
    proc = subprocess.Popen([sys.executable, str(script), "30"])
    log = tmp_path / "log.txt"
    for _ in range(600):
        if log.is_file() and log.read_text().splitlines()[-1:] == ["2"]:
            break
        subprocess.run(["sleep", "0.1"])
    os.kill(proc.pid, signal.SIGKILL)  # killed inside stage 2
    proc.wait()
    subprocess.run([sys.executable, str(script), "0"], check=True)
    assert log.read_text().split() == ["0", "1", "2", "2", "3"]


def test_gpu_config_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    from importlib import resources

    monkeypatch.setenv("IMITLAB_BASE_URL", "http://127.0.0.1:8000/v1")
    path = resources.files("imitlab.study").joinpath("configs/gpu.yaml")
    config = load_sweep_config(Path(str(path)))
    assert config.teacher.startswith("openai:") and config.train_settings()["processes"] == 8


def test_teacher_is_scored_like_the_students_when_local(monkeypatch: pytest.MonkeyPatch) -> None:
    from imitlab.study.sweep import _teacher_mode

    monkeypatch.setenv("IMITLAB_BASE_URL", "http://127.0.0.1:9/v1")

    assert _teacher_mode(load_sweep_config(BASE)) == "completions"  # a packaged teacher: raw few-shot prompts
    hosted = load_sweep_config({**BASE, "teacher": "openai:gpt-4o"})
    assert _teacher_mode(hosted) == "chat"  # a chat API is the only way into a hosted model
    forced = load_sweep_config({**BASE, "eval": {"teacher_mode": "chat"}})
    assert _teacher_mode(forced) == "chat"


def test_resources_parse_and_a_bad_executor_fails_before_anything_is_written(tmp_path: Path) -> None:
    from imitlab.study.sweep import run_sweep

    config = load_sweep_config({**BASE, "resources": {"train": {"gpus": 2, "cpus": 4}, "eval": {"gpus": 0.5}},
                                "train": {"processes": 2}})  # fmt: skip
    assert (config.resources.train.gpus, config.resources.train.cpus) == (2, 4)
    assert (config.resources.eval.gpus, config.resources.eval.cpus) == (0.5, 1.0)
    assert (config.resources.answers.gpus, config.resources.answers.cpus) == (0.0, 1.0)
    with pytest.raises(ImitlabError, match="--executor 'slurm': known executors are local, ray"):
        run_sweep(config, tmp_path / "run", executor="slurm")
    with pytest.raises(ImitlabError, match="--address is for --executor ray"):
        run_sweep(config, tmp_path / "run", executor="local", address="127.0.0.1:6379")
    assert not (tmp_path / "run").exists()


def test_cli_passes_the_executor_and_address(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from imitlab.cli import app

    config = tmp_path / "sweep.yaml"
    config.write_text("name: x\nteacher: smollm2-135m-instruct\nbases: [smollm2-135m-instruct]\nbudgets: [100]\n"
                      "data_kinds: [local]\n")  # fmt: skip
    result = CliRunner().invoke(app, ["sweep", str(config), "--out", str(tmp_path / "run"), "--executor", "slurm"])
    assert isinstance(result.exception, ImitlabError) and "known executors are local, ray" in str(result.exception)
    result = CliRunner().invoke(app, ["sweep", str(config), "--out", str(tmp_path / "run"), "--address", "h:6379"])
    assert isinstance(result.exception, ImitlabError) and "--address is for --executor ray" in str(result.exception)
    assert not (tmp_path / "run").exists()


def test_the_sweep_bar_counts_finished_stages_and_shrinks_for_skipped_cells() -> None:
    from rich.console import Console

    from imitlab.study.progress import SweepProgress

    console = Console(record=True, width=120)
    bar = SweepProgress(console, planned=6)
    bar.on_event("start", "prompts-broad-1")
    bar.on_event("done", "prompts-broad-1")
    bar.on_event("cached", "collect-broad-2")
    bar.skip(4)
    bar.on_event("done", "decontaminate-3")
    text = console.export_text()
    assert "0/6 stages" in text and "1/6 stages" in text and "2/6 stages" in text and "3/3 stages" in text
    assert "cached collect-broad-2" in text
