"""The eval runner with stand-in backends: registry, bad input, sampling, resume, empty outputs, summaries."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from imitlab.config import data_dir
from imitlab.errors import ImitlabError
from imitlab.evals import EvalConfig, Task, get_task, known_tasks, register, run_eval
from imitlab.evals import task as task_module
from imitlab.models.api_model import APIModel
from imitlab.models.base import Capabilities, GenRequest, LLRequest, LLResult, Model
from imitlab.models.engine import EngineSettings
from imitlab.models.function_model import function_model


class FakeLocal:
    """A Model that scores any continuation (like HFModel): by how often its text occurs in the context."""

    spec = name = identity = "fake-local"
    capabilities = Capabilities(loglikelihood="any", top_logprobs=0)

    def __init__(self, output: str = "", fail_after: int | None = None) -> None:
        self.output = output
        self.calls = 0
        self.fail_after = fail_after
        self.usage: dict[str, int] = {}
        self.modes: set[str] = set()

    def describe(self) -> dict[str, Any]:
        return {"backend": "fake", "spec": self.spec, "identity": self.identity}

    def chat(self, conversations: Sequence[object], **kw: object) -> list[Any]:
        raise NotImplementedError

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return [len(t.split()) for t in texts]

    def close(self) -> None:
        pass

    def _tick(self) -> None:
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise KeyboardInterrupt("simulated crash")

    def loglikelihood(self, requests: Sequence[LLRequest]) -> list[LLResult]:
        self._tick()
        return [LLResult(float(r.context.count(r.continuation.strip())), False, 1) for r in requests]

    def generate(self, requests: Sequence[GenRequest], **kw: object) -> list[list[str]]:
        self._tick()
        self.modes.add(str(kw.get("mode")))
        return [[self.output] * int(kw.get("n", 1)) for _ in requests]  # type: ignore[call-overload]


@contextmanager
def fake_api(answer: str = "") -> Iterator[APIModel]:
    """A real APIModel (engine, letters by logprobs then by generation) whose endpoint always says ``answer``."""

    async def reply(messages: list[dict[str, str]]) -> str:
        return answer

    with function_model(reply, name="fake-api", settings=EngineSettings(progress=False)) as model:
        yield model


def test_fakes_are_models() -> None:
    assert isinstance(FakeLocal(), Model)
    with fake_api() as api:
        assert isinstance(api, Model)


def _config(tmp_path: Path, benches: list[str], **kw: object) -> EvalConfig:
    return EvalConfig(model="fake", benches=benches, out=tmp_path / "out", data_dir=data_dir(), **kw)  # type: ignore[arg-type]


def _records(out: Path, bench: str) -> list[dict]:
    return [json.loads(line) for line in (out / f"{bench}.items.jsonl").read_text().splitlines()]


def test_unknown_benchmark_lists_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(ImitlabError) as err:
        run_eval(_config(tmp_path, ["mmlu", "nq-open"]), model=FakeLocal())
    message = str(err.value)
    assert "'nq-open'" in message
    for name in ("arc_challenge", "arc_easy", "humaneval", "mmlu", "nq_open", "triviaqa"):
        assert name in message


def test_missing_data_dir_says_where_it_looked_and_how_to_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IMITLAB_DATA", raising=False)
    config = EvalConfig(model="fake", benches=["mmlu"], out=tmp_path / "out")
    with pytest.raises(ImitlabError, match=r"neither --data-dir nor \$IMITLAB_DATA is set.*--data-dir DIR"):
        run_eval(config, model=FakeLocal())
    config.data_dir = tmp_path / "nowhere"
    with pytest.raises(ImitlabError, match=r"--data-dir = .*nowhere \(not a directory\)"):
        run_eval(config, model=FakeLocal())
    config.data_dir = tmp_path  # exists, but holds no benchmark files
    with pytest.raises(ImitlabError, match=r"mmlu: data not found: .*mmlu/test.*IMITLAB_DATA"):
        run_eval(config, model=FakeLocal())


def test_cli_unknown_benchmark_is_one_clear_line(tmp_path: Path) -> None:
    env = {**os.environ, "IMITLAB_DATA": str(data_dir())}
    done = subprocess.run(
        [sys.executable, "-c", "from imitlab.cli import run; run()", "eval", "--model", "x", "--bench", "nope",
         "--out", str(tmp_path)],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2
    assert "unknown benchmark 'nope'" in done.stderr and "humaneval" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_new_benchmark_needs_only_a_declaration(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "capitals").mkdir(parents=True)
    rows = [{"q": "France", "a": ["Paris"]}, {"q": "Japan", "a": ["Tokyo"]}, {"q": "Peru", "a": ["Lima"]}]
    (data / "capitals" / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))

    def load(d: Path) -> list[dict]:
        lines = (d / "capitals" / "test.jsonl").read_text().splitlines()
        return [
            {"id": str(i), "question": json.loads(x)["q"], "answers": json.loads(x)["a"]} for i, x in enumerate(lines)
        ]

    task = Task(name="capitals_test", kind="generate", files=("capitals/test.jsonl",), load=load,
                template="Capital of {question}?", max_tokens=8)  # fmt: skip
    register(task)
    try:
        assert "capitals_test" in known_tasks()
        config = EvalConfig(model="fake", benches=["capitals_test"], out=tmp_path / "out", data_dir=data)
        summary = run_eval(config, model=FakeLocal(output=" Paris"))["capitals_test"]
        assert summary["metrics"]["em"]["value"] == pytest.approx(1 / 3)
        assert [r["em"] for r in _records(config.out, "capitals_test")] == [1.0, 0.0, 0.0]
        with pytest.raises(ValueError, match="registered twice"):
            register(task)
    finally:
        task_module._REGISTRY.pop("capitals_test")


@pytest.mark.parametrize("kind", ["local", "api"])
def test_empty_model_output_scores_zero(tmp_path: Path, kind: str) -> None:
    config = _config(tmp_path, ["nq_open", "triviaqa", "humaneval", "arc_easy"], limit=3)
    if kind == "local":
        config.benches.remove("arc_easy")  # log-likelihood has no "empty output"
        local = FakeLocal(output="")
        summaries = run_eval(config, model=local)
        assert local.modes == {"completions"}  # scored on raw prompts whatever api_mode says, like lm-eval
    else:
        with fake_api() as api:
            summaries = run_eval(config, model=api)
    for name in ("nq_open", "triviaqa"):
        assert summaries[name]["metrics"]["em"]["value"] == 0.0
        assert summaries[name]["metrics"]["f1"]["value"] == 0.0
        assert all(r["output"] == "" for r in _records(config.out, name))
    assert summaries["humaneval"]["metrics"]["pass@1"]["value"] == 0.0
    if "arc_easy" in summaries:
        assert summaries["arc_easy"]["metrics"]["acc"]["value"] == 0.0
        assert {r["pred"] for r in _records(config.out, "arc_easy")} == {None}


def test_limit_gives_both_models_the_same_items(tmp_path: Path) -> None:
    a = _config(tmp_path / "a", ["mmlu", "arc_challenge"], limit=7)
    b = _config(tmp_path / "b", ["mmlu", "arc_challenge"], limit=7)
    run_eval(a, model=FakeLocal())
    with fake_api() as api:
        run_eval(b, model=api)
    for bench in ("mmlu", "arc_challenge"):
        ids_a = sorted(r["id"] for r in _records(a.out, bench))
        ids_b = sorted(r["id"] for r in _records(b.out, bench))
        assert ids_a == ids_b and len(ids_a) == 7
    c = _config(tmp_path / "c", ["mmlu"], limit=7, seed=99)
    run_eval(c, model=FakeLocal())
    assert sorted(r["id"] for r in _records(c.out, "mmlu")) != sorted(r["id"] for r in _records(a.out, "mmlu"))


def test_limit_per_benchmark_in_one_run(tmp_path: Path) -> None:
    backend = FakeLocal()
    config = _config(tmp_path, ["mmlu", "arc_challenge"], limit={"mmlu": 5, "arc_challenge": 3})
    summaries = run_eval(config, model=backend)  # one backend (one model load) for both
    assert summaries["mmlu"]["n"] == 5 and summaries["arc_challenge"]["n"] == 3
    assert summaries["mmlu"]["limit"] == 5
    # a per-benchmark limit of 5 picks the same items as a plain limit of 5
    plain = _config(tmp_path / "plain", ["mmlu"], limit=5)
    run_eval(plain, model=FakeLocal())
    assert sorted(r["id"] for r in _records(config.out, "mmlu")) == sorted(r["id"] for r in _records(plain.out, "mmlu"))
    missing = _config(tmp_path / "missing", ["mmlu", "arc_challenge"], limit={"mmlu": 5})
    with pytest.raises(ImitlabError, match="no item count for 'arc_challenge'"):
        run_eval(missing, model=FakeLocal())
    assert not (tmp_path / "missing" / "out" / "mmlu.items.jsonl").exists()  # refused before scoring anything


def test_mmlu_records_and_summary(tmp_path: Path) -> None:
    config = _config(tmp_path, ["mmlu"], limit=12)
    summary = run_eval(config, model=FakeLocal())["mmlu"]
    records = _records(config.out, "mmlu")
    for r in records:
        assert r["prompt"].startswith(
            f"The following are multiple choice questions (with answers) about {r['group'].replace('_', ' ')}."
        )
        assert r["prompt"].count("\nAnswer:") == 6  # five shots and the question
        assert r["choices"] == ["A", "B", "C", "D"] and r["acc"] in (0.0, 1.0) and r["method"] == "loglikelihood"
    metrics = summary["metrics"]
    assert metrics["acc"]["value"] == pytest.approx(sum(r["acc"] for r in records) / 12)
    assert metrics["acc"]["low"] <= metrics["acc"]["value"] <= metrics["acc"]["high"]
    groups = summary["groups"]
    assert sum(g["n"] for g in groups.values()) == 12
    macro = sum(g["acc"] for g in groups.values()) / len(groups)
    assert metrics["acc_macro"]["value"] == pytest.approx(macro)
    on_disk = json.loads((config.out / "summary.json").read_text())
    assert on_disk["mmlu"]["metrics"] == metrics
    manifest = json.loads((config.out / "manifest.json").read_text())
    assert len(manifest["data_sha256"]["mmlu"]) == 64


def test_resume_scores_only_what_is_missing(tmp_path: Path) -> None:
    config = _config(tmp_path, ["arc_easy"], limit=6, chunk=2)
    with pytest.raises(KeyboardInterrupt):
        run_eval(config, model=FakeLocal(fail_after=2))
    assert len(_records(config.out, "arc_easy")) == 4
    with open(config.out / "arc_easy.items.jsonl", "a") as f:
        f.write('{"id": "torn')  # a write cut off by the crash
    backend = FakeLocal()
    summary = run_eval(config, model=backend)["arc_easy"]
    assert backend.calls == 1 and summary["scored_this_run"] == 2 and summary["n"] == 6
    assert len({r["id"] for r in _records(config.out, "arc_easy")}) == 6
    config.seed = 7  # other settings: the old records are not mixed in
    summary = run_eval(config, model=FakeLocal())["arc_easy"]
    assert summary["scored_this_run"] == 6


def test_bad_record_names_file_line_and_field(tmp_path: Path) -> None:
    (tmp_path / "arc").mkdir()
    (tmp_path / "arc" / "arc_easy_test.jsonl").write_text(
        '{"query": "Q", "choices": ["a"], "gold": 0}\n{"query": "Q", "choices": ["a"]}\n'
    )
    with pytest.raises(ImitlabError, match=r"arc_easy_test.jsonl:2: missing field 'gold'"):
        get_task("arc_easy").load(tmp_path)


def test_gsm8k_declares_its_own_metric(tmp_path: Path) -> None:
    config = _config(tmp_path, ["gsm8k"], limit=2)
    summary = run_eval(config, model=FakeLocal(output=" 2 + 2 = 4. #### 4"))["gsm8k"]
    assert list(summary["metrics"]) == ["number"]
    records = _records(config.out, "gsm8k")
    assert all(r["prompt"].count("Question:") == 6 for r in records)  # five shots and the question
    assert all(len(r["gold"]) == 1 for r in records)
    bad = Task(name="bad_metric", kind="generate", files=(), load=lambda d: [], template="", metrics=("bleu",))
    with pytest.raises(ValueError, match="unknown metric"):
        register(bad)


def test_benchmarks_own_their_facts(tmp_path: Path) -> None:
    from imitlab.evals.task import contamination_texts

    for name in known_tasks():
        task = get_task(name)
        assert task.title and task.headline_metric in task.metric_names()
    assert get_task("nq_open").headline_metric == "em" and get_task("humaneval").headline_metric == "pass@1"
    assert get_task("arc_challenge").title == "ARC-Challenge"
    prompts = list(contamination_texts(get_task("humaneval"), data_dir()))
    assert len(prompts) == 164 and all("def " in p for p in prompts)
    bad = Task(name="bad_headline", kind="generate", files=(), load=lambda d: [], template="", headline="acc")
    with pytest.raises(ValueError, match=r"headline 'acc' is not one of its metrics \(em, contains, f1\)"):
        register(bad)
    config = _config(tmp_path, ["arc_easy"], limit=2)
    summary = run_eval(config, model=FakeLocal())["arc_easy"]
    assert summary["display_name"] == "ARC-Easy" and summary["headline"] == "acc"
