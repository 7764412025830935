"""`imitlab eval`'s lm-eval-style options: --limit (first N, per MMLU subject) vs --sample (seeded), --num-fewshot,
--subjects with lm-eval's MMLU groups, and the results file in lm-eval's layout, read by lm-eval's own code."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from imitlab.config import data_dir
from imitlab.errors import ImitlabError
from imitlab.evals import EvalConfig, get_task, run_eval
from imitlab.evals.tasks.mmlu import GROUPS
from tests.test_evals_runner import FakeLocal


def _config(tmp_path: Path, benches: list[str], **kw: Any) -> EvalConfig:
    return EvalConfig(model="fake", benches=benches, out=tmp_path / "out", data_dir=data_dir(), **kw)


def _records(out: Path, bench: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / f"{bench}.items.jsonl").read_text().splitlines()]


def _results(out: Path) -> dict[str, Any]:
    (path,) = sorted(out.glob("results_*.json"))
    return json.loads(path.read_text())


def test_mmlu_groups_are_lm_evals() -> None:
    """imitlab's copy of the four MMLU groups equals the tags in lm-eval 0.4.13's task files, and covers every
    subject of the local data exactly once."""
    import lm_eval

    folder = Path(lm_eval.__file__).parent / "tasks" / "mmlu" / "default"
    theirs: dict[str, set[str]] = {}
    for path in folder.glob("mmlu_*.yaml"):
        spec = yaml.safe_load(path.read_text())
        theirs.setdefault(spec["tag"].removesuffix("_tasks"), set()).add(spec["dataset_name"])
    assert {g: set(s) for g, s in GROUPS.items()} == theirs
    local = {p.name.removesuffix("_test.csv") for p in (data_dir() / "mmlu" / "test").glob("*_test.csv")}
    assert sorted(s for subjects in GROUPS.values() for s in subjects) == sorted(local)


def test_limit_takes_the_first_items_of_each_subject(tmp_path: Path) -> None:
    config = _config(tmp_path, ["mmlu"], subjects=["mmlu_humanities"], limit=2, limit_mode="first")
    summary = run_eval(config, model=FakeLocal())["mmlu"]
    records = _records(config.out, "mmlu")
    assert summary["n"] == 2 * 13 and summary["limit_mode"] == "first"
    items = get_task("mmlu").load(data_dir())
    first_two = [[i["id"] for i in items if i["subject"] == s][:2] for s in GROUPS["mmlu_humanities"]]
    assert sorted(r["id"] for r in records) == sorted(i for ids in first_two for i in ids)
    assert summary["subjects"] == list(GROUPS["mmlu_humanities"])


def test_sample_is_seeded_and_differs_from_first(tmp_path: Path) -> None:
    runs = []
    for name, mode, seed in (("a", "sample", 7), ("b", "sample", 7), ("c", "first", 7), ("d", "sample", 8)):
        config = EvalConfig(model="fake", benches=["nq_open"], out=tmp_path / name, data_dir=data_dir(), limit=5,
                            limit_mode=mode, seed=seed, num_fewshot=0)  # fmt: skip
        run_eval(config, model=FakeLocal("x"))
        runs.append([r["id"] for r in _records(config.out, "nq_open")])
    assert runs[0] == runs[1] and runs[2] == ["1", "2", "3", "4", "5"]
    assert runs[0] != runs[2] and runs[0] != runs[3]


def test_num_fewshot_sets_the_shots(tmp_path: Path) -> None:
    for k in (0, 1, 3):
        config = EvalConfig(model="fake", benches=["nq_open"], out=tmp_path / str(k), data_dir=data_dir(), limit=2,
                            limit_mode="first", num_fewshot=k)  # fmt: skip
        summary = run_eval(config, model=FakeLocal("x"))["nq_open"]
        records = _records(config.out, "nq_open")
        assert summary["num_fewshot"] == k and all(len(r["fewshot_ids"]) == k for r in records)
        assert all(r["prompt"].count("\nA:") == k + 1 for r in records)  # k solved shots + the question
    with pytest.raises(ImitlabError, match="arc_easy has no few-shot examples to draw from"):
        run_eval(_config(tmp_path, ["arc_easy"], num_fewshot=2), model=FakeLocal())
    with pytest.raises(ImitlabError, match="only 5 few-shot examples for 'anatomy', need 6"):
        run_eval(_config(tmp_path, ["mmlu"], num_fewshot=6, subjects=["anatomy"]), model=FakeLocal())
    with pytest.raises(ImitlabError, match="--num-fewshot must be 0 or more"):
        run_eval(_config(tmp_path, ["mmlu"], num_fewshot=-1), model=FakeLocal())


def test_subjects_errors(tmp_path: Path) -> None:
    with pytest.raises(ImitlabError, match=r"unknown subject 'astrology'; use a group \(mmlu_stem, mmlu_humanities"):
        run_eval(_config(tmp_path, ["mmlu"], subjects=["astrology"]), model=FakeLocal())
    with pytest.raises(ImitlabError, match="--subjects applies to benchmarks with subjects"):
        run_eval(_config(tmp_path, ["nq_open"], subjects=["anatomy"]), model=FakeLocal())


def test_results_file_is_read_by_lm_eval(tmp_path: Path) -> None:
    """lm-eval's make_table renders it; the subject stderr is lm-eval's mean_stderr of the items, and the group
    row is the size-weighted mean with lm-eval's pooled stderr."""
    from lm_eval.api.metrics import mean_stderr, pooled_sample_stderr
    from lm_eval.utils import make_table

    subjects = ["abstract_algebra", "anatomy", "astronomy", "philosophy"]
    config = _config(tmp_path, ["mmlu", "nq_open"], subjects=subjects, limit=6, limit_mode="first")
    summaries = run_eval(config, model=FakeLocal("Paris"))
    doc = _results(config.out)
    table, groups = make_table(doc), make_table(doc, "groups")
    assert re.search(r"\|\s*- abstract_algebra\s*\|", table) and "exact_match" in table and "| - stem " in groups
    records = _records(config.out, "mmlu")
    for subject in subjects:
        accs = [r["acc"] for r in records if r["group"] == subject]
        row = doc["results"][f"mmlu_{subject}"]
        assert row["acc,none"] == pytest.approx(sum(accs) / len(accs))
        assert row["acc_stderr,none"] == pytest.approx(mean_stderr(accs))
        assert doc["n-samples"][f"mmlu_{subject}"]["effective"] == 6
    stem = subjects[:3]
    sizes = [6, 6, 6]
    ses = [doc["results"][f"mmlu_{s}"]["acc_stderr,none"] for s in stem]
    assert doc["groups"]["mmlu_stem"]["acc_stderr,none"] == pytest.approx(pooled_sample_stderr(ses, sizes))
    assert doc["group_subtasks"]["mmlu"] == ["mmlu_stem", "mmlu_humanities"]
    assert doc["results"]["mmlu"]["acc,none"] == summaries["mmlu"]["metrics"]["acc"]["value"]
    nq = doc["results"]["nq_open"]
    assert nq["exact_match,remove_whitespace"] == summaries["nq_open"]["metrics"]["em"]["value"]
    assert doc["n-shot"]["nq_open"] == 3 and doc["n-samples"]["nq_open"] == {"original": 3610, "effective": 6}
    assert doc["configs"]["nq_open"]["doc_to_text"] == "Q: {question}?\nA:"
    assert doc["configs"]["nq_open"]["generation_kwargs"]["until"] == ["\n", ".", ","]


def test_cli_maps_limit_and_sample(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    import imitlab.evals
    from imitlab.cli import app

    seen: list[EvalConfig] = []

    def fake_run(config: EvalConfig, progress: Any = None) -> dict[str, Any]:
        seen.append(config)
        return {}

    monkeypatch.setattr(imitlab.evals, "run_eval", fake_run)
    base = ["eval", "--model", "m", "--bench", "mmlu", "--out", str(tmp_path)]
    assert CliRunner().invoke(app, [*base, "--limit", "5", "--num-fewshot", "0", "--subjects", "mmlu_stem,anatomy",
                                    "--dataset", "mmlu=hf:cais/mmlu:all"]).exit_code == 0  # fmt: skip
    assert CliRunner().invoke(app, [*base, "--sample", "7", "--seed", "3"]).exit_code == 0
    first, sample = seen
    assert (first.limit, first.limit_mode, first.num_fewshot) == (5, "first", 0)
    assert first.subjects == ["mmlu_stem", "anatomy"] and first.datasets == {"mmlu": "hf:cais/mmlu:all"}
    assert (sample.limit, sample.limit_mode, sample.seed, sample.num_fewshot) == (7, "sample", 3, None)
    both = CliRunner().invoke(app, [*base, "--limit", "5", "--sample", "5"])
    assert both.exit_code != 0 and "exclude each other" in str(both.exception or both.output)
    assert get_task("mmlu").subsets == GROUPS
