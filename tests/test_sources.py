"""Benchmarks through `datasets` (imitlab.sources): local datasets folders and data files built here from the real
files, the hub path with `datasets.load_dataset` replaced at its boundary, and the offline error.

No test reaches the network: the hub copies are either built locally with the hub's columns or refused offline.
"""

from __future__ import annotations

import csv
import gzip
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import datasets
import pytest

from imitlab.config import data_dir
from imitlab.errors import ImitlabError
from imitlab.evals import EvalConfig, get_task, run_eval
from imitlab.evals.data import open_task_data
from imitlab.extras import MissingExtraError
from imitlab.sources import DataSourceError, HubRef, env_var, parse_overrides, parse_ref
from tests.test_evals_runner import FakeLocal

SUBJECTS = ("abstract_algebra", "anatomy", "world_religions")


@pytest.fixture(autouse=True)
def _datasets_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What `datasets` converts (data files to Arrow) goes to this test's directory, not the user's cache."""
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "datasets-cache")


def _mmlu_rows(split: str, subjects: tuple[str, ...] = SUBJECTS) -> list[dict[str, Any]]:
    """cais/mmlu's columns (question, subject, choices, answer 0-3), made from the local hendrycks CSVs."""
    rows = []
    for subject in subjects:
        with open(data_dir() / "mmlu" / split / f"{subject}_{split}.csv", newline="", encoding="utf-8") as f:
            for question, *options, answer in csv.reader(f):
                rows.append({"question": question, "subject": subject, "choices": options,
                             "answer": "ABCD".index(answer)})  # fmt: skip
    return rows


@pytest.fixture
def mmlu_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "cais_mmlu"
    splits = {s: datasets.Dataset.from_list(_mmlu_rows(s)) for s in ("test", "dev")}
    datasets.DatasetDict(splits).save_to_disk(str(folder))
    return folder


def test_mmlu_from_a_datasets_folder_gives_the_items_of_the_files(mmlu_folder: Path) -> None:
    task = get_task("mmlu")
    files = open_task_data(task, data_dir())
    folder = open_task_data(task, None, {"mmlu": str(mmlu_folder)})
    assert files.located.origin == "files" and folder.located.origin == "datasets"
    want = [i for i in files.items() if i["subject"] in SUBJECTS]
    assert len(want) == 100 + 135 + 171  # the three subjects' test rows
    assert folder.items() == want  # same ids (subject/line), questions, options, gold letters
    assert folder.fewshot_pool() == [i for i in files.fewshot_pool() if i["subject"] in SUBJECTS]
    assert folder.describe() == {"origin": "local datasets", "ref": str(mmlu_folder), "split": "test",
                                 "fewshot_split": "dev"}  # fmt: skip
    assert len(folder.sha256()) == 64 and folder.sha256() != files.sha256()


def test_an_eval_run_reads_a_datasets_folder_like_the_files(mmlu_folder: Path, tmp_path: Path) -> None:
    """Same prompts, same scores, whichever way the rows came; the manifest says where they came from."""
    common = {"model": "fake", "benches": ["mmlu"], "subjects": list(SUBJECTS), "limit": 3, "limit_mode": "first"}
    on_files = EvalConfig(out=tmp_path / "files", data_dir=data_dir(), **common)  # type: ignore[arg-type]
    on_folder = EvalConfig(out=tmp_path / "folder", datasets={"mmlu": str(mmlu_folder)}, **common)  # type: ignore[arg-type]
    a = run_eval(on_files, model=FakeLocal())["mmlu"]
    b = run_eval(on_folder, model=FakeLocal())["mmlu"]
    assert a["n"] == b["n"] == 9 and a["metrics"]["acc"] == b["metrics"]["acc"]
    runs = (tmp_path / "files", tmp_path / "folder")
    records = [[json.loads(x) for x in (d / "mmlu.items.jsonl").read_text().splitlines()] for d in runs]
    assert [r["prompt"] for r in records[0]] == [r["prompt"] for r in records[1]]
    manifest = json.loads((tmp_path / "folder" / "manifest.json").read_text())
    assert manifest["data"]["mmlu"]["origin"] == "local datasets" and manifest["data_dir"] is None


def test_environment_variable_names_one_benchmark(mmlu_folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert env_var("mt-bench") == "IMITLAB_DATASET_MT_BENCH"
    monkeypatch.setenv("IMITLAB_DATASET_MMLU", str(mmlu_folder))
    located = open_task_data(get_task("mmlu"), data_dir()).located  # the variable wins over the data dir
    assert located.origin == "datasets" and located.ref == mmlu_folder


def test_nq_open_from_data_files_and_a_one_split_folder(tmp_path: Path) -> None:
    """A parquet file is one split: it serves the items, but never the few-shot pool (that would score shots)."""
    task = get_task("nq_open")
    want = open_task_data(task, data_dir()).items()[:40]
    rows = [{"question": i["question"], "answer": i["answers"]} for i in want]
    datasets.Dataset.from_list(rows).to_parquet(str(tmp_path / "validation.parquet"))
    source = open_task_data(task, None, {"nq_open": str(tmp_path / "validation.parquet")})
    assert source.items() == want
    with pytest.raises(DataSourceError, match=r"holds one split \(train\), read as the items.*'train' split"):
        source.fewshot_pool()


def test_humaneval_from_a_saved_dataset(tmp_path: Path) -> None:
    task = get_task("humaneval")
    want = open_task_data(task, data_dir()).items()
    rows = [{k: v for k, v in item.items() if k != "id"} for item in want]
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "he"))
    assert open_task_data(task, None, {"humaneval": str(tmp_path / "he")}).items() == want


def test_arc_rows_map_labels_to_the_gold_index(tmp_path: Path) -> None:
    task = get_task("arc_easy")
    local = open_task_data(task, data_dir()).items()[:20]
    rows = [{"id": f"q{n}", "question": i["question"],
             "choices": {"text": i["choices"], "label": list("ABCDE"[: len(i["choices"])])},
             "answerKey": "ABCDE"[i["gold"]]} for n, i in enumerate(local)]  # fmt: skip
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "arc"))
    items = open_task_data(task, None, {"arc_easy": str(tmp_path / "arc")}).items()
    assert [(i["question"], i["choices"], i["gold"]) for i in items] == [
        (i["question"], i["choices"], i["gold"]) for i in local
    ]


def test_gsm8k_splits_by_name(tmp_path: Path) -> None:
    def rows(name: str) -> list[dict[str, str]]:
        path = data_dir() / "gsm8k" / name
        opener = gzip.open if name.endswith(".gz") else open
        with opener(path, "rt", encoding="utf-8") as f:  # type: ignore[operator]
            return [json.loads(line) for line, _ in zip(f, range(30), strict=False)]

    folder = tmp_path / "gsm8k"
    splits = {"test": rows("test.jsonl"), "train": rows("train.jsonl.gz")}
    datasets.DatasetDict({k: datasets.Dataset.from_list(v) for k, v in splits.items()}).save_to_disk(str(folder))
    task = get_task("gsm8k")
    source, files = open_task_data(task, None, {"gsm8k": str(folder)}), open_task_data(task, data_dir())
    assert source.items() == files.items()[:30]
    assert source.fewshot_pool() == files.fewshot_pool()[:30]


def test_hub_default_when_no_local_files(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No data dir: the declared hub id goes to datasets.load_dataset (replaced here: there is no network)."""
    calls: list[tuple[Any, ...]] = []
    hub = {split: datasets.Dataset.from_list(_mmlu_rows(split, SUBJECTS[:1])) for split in ("test", "dev")}

    def fake_load(path: str, name: str | None = None, *, split: str) -> datasets.Dataset:
        calls.append((path, name, split))
        return hub[split]

    monkeypatch.delenv("IMITLAB_DATA", raising=False)
    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    source = open_task_data(get_task("mmlu"), None)
    assert source.located.ref == HubRef("cais/mmlu", "all")
    assert len(source.items()) == 100 and len(source.fewshot_pool()) == 5
    assert calls == [("cais/mmlu", "all", "test"), ("cais/mmlu", "all", "dev")]
    assert source.describe() == {"origin": "hub", "ref": "hf:cais/mmlu:all", "split": "test", "fewshot_split": "dev"}


def test_offline_error_says_what_serves_instead(tmp_path: Path) -> None:
    """The real CLI, offline, with no data directory and an empty datasets cache: one line, naming the local path
    and both environment variables."""
    env = {k: v for k, v in os.environ.items() if k != "IMITLAB_DATA"}
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", HF_HOME=str(tmp_path / "hf"))
    done = subprocess.run(
        [sys.executable, "-m", "imitlab", "eval", "--model", "x", "--bench", "mmlu", "--out", str(tmp_path / "o")],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert done.returncode != 0 and "Traceback" not in done.stderr
    message = " ".join(done.stderr.split())
    assert (
        "its hub copy hf:cais/mmlu:all could not be loaded (split 'test'): offline (HF_HUB_OFFLINE is set)" in message
    )
    assert "--data-dir DIR or set $IMITLAB_DATA=DIR" in message and "(with mmlu/test, mmlu/dev)" in message
    assert "IMITLAB_DATASET_MMLU=REF" in message


def test_bad_references_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(DataSourceError, match=r"mmlu \(--dataset\): .*nowhere does not exist"):
        open_task_data(get_task("mmlu"), None, {"mmlu": str(tmp_path / "nowhere")})
    with pytest.raises(DataSourceError, match="is not a hub dataset id"):
        parse_ref("hf:not a repo")
    assert parse_ref("hf:cais/mmlu:all") == HubRef("cais/mmlu", "all")
    assert parse_ref("hf://datasets/tatsu-lab/alpaca_eval/alpaca_eval.json").is_file
    with pytest.raises(DataSourceError, match="expected NAME=REF"):
        parse_overrides(["mmlu"])
    wrong = tmp_path / "wrong"
    datasets.Dataset.from_list([{"text": "no mmlu columns here"}]).save_to_disk(str(wrong))
    with pytest.raises(DataSourceError, match=r"does not have the columns of hf:cais/mmlu:all \(KeyError"):
        open_task_data(get_task("mmlu"), None, {"mmlu": str(wrong)}).items()
    config = EvalConfig(model="fake", benches=["nq_open"], out=tmp_path / "o", datasets={"mmlu": str(wrong)})
    with pytest.raises(ImitlabError, match="--dataset names mmlu, which this run does not score"):
        run_eval(config, model=FakeLocal())


def test_missing_datasets_package_names_the_extra(mmlu_folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "datasets" else real(name, *a))
    with pytest.raises(MissingExtraError, match=r"needs datasets \(not installed\): pip install 'imitlab\[data\]'"):
        open_task_data(get_task("mmlu"), None, {"mmlu": str(mmlu_folder)}).items()


# -- prompt sets and prompt imports ------------------------------------------------------------------------------
def test_mt_bench_from_a_copy_of_the_hub_set_matches_the_files(tmp_path: Path) -> None:
    """HuggingFaceH4/mt_bench_prompts' columns (prompt: [turns], prompt_id, category, reference: [..]), built from
    the local FastChat files, give the same prompt items."""
    from imitlab.judge.sources import load_prompts

    local = load_prompts("mt-bench", data=data_dir())
    rows = [{"prompt": [p.prompt, "a second turn"], "prompt_id": int(p.id), "category": p.category,
             "reference": [p.reference] if p.reference else []} for p in local]  # fmt: skip
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "mt"))
    assert load_prompts("mt-bench", overrides={"mt-bench": str(tmp_path / "mt")}) == local
    assert sum(p.reference is not None for p in local) == 30


def test_alpaca_eval_hub_file_and_koala_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from imitlab.judge.sources import load_prompts

    alpaca, koala = load_prompts("alpaca-eval", data=data_dir()), load_prompts("koala", data=data_dir())
    calls = []
    rows = [{"instruction": p.prompt, "dataset": p.category, "output": "", "generator": "x"} for p in alpaca]

    def fake_load(path: str, name: str | None = None, *, split: str, data_files: str | None = None) -> Any:
        calls.append((path, data_files, split))
        return datasets.Dataset.from_list(rows)

    monkeypatch.delenv("IMITLAB_DATA")
    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    assert load_prompts("alpaca-eval") == alpaca
    assert calls == [("json", "hf://datasets/tatsu-lab/alpaca_eval/alpaca_eval.json", "train")]
    datasets.Dataset.from_list([{"id": p.id, "prompt": p.prompt} for p in koala]).to_parquet(
        str(tmp_path / "k.parquet")
    )
    monkeypatch.undo()  # the real load_dataset reads the parquet file, which the variable names over the data dir
    monkeypatch.setenv("IMITLAB_DATASET_KOALA", str(tmp_path / "k.parquet"))
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "cache")
    assert load_prompts("koala") == koala


def test_a_set_with_no_hub_copy_says_how_to_serve_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from imitlab.judge.sources import load_prompts

    monkeypatch.delenv("IMITLAB_DATA")
    with pytest.raises(DataSourceError) as err:
        load_prompts("vicuna80")
    message = str(err.value)
    assert message.startswith("vicuna80: neither --data-dir nor $IMITLAB_DATA is set. Pass --data-dir DIR")
    assert "vicuna_bench/question.jsonl" in message and "IMITLAB_DATASET_VICUNA80=REF" in message


def test_prompts_import_reads_datasets_sources_like_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ShareGPT rows from a datasets folder give the prompts the JSON file gives; a hub id goes to load_dataset."""
    from imitlab.prompts.importers import import_prompts

    source = data_dir() / "sharegpt_prompts" / "ShareGPT_V3_filtered_500.json"
    records = json.loads(source.read_text(encoding="utf-8"))[:40]
    (tmp_path / "sg.json").write_text(json.dumps(records))
    datasets.Dataset.from_list(records).save_to_disk(str(tmp_path / "sg"))
    from_file = import_prompts([tmp_path / "sg.json"])
    from_folder = import_prompts([tmp_path / "sg"])
    assert [r.turns for r in from_folder.records] == [r.turns for r in from_file.records]
    assert [r.id for r in from_folder.records] == [r.id for r in from_file.records]  # sg:N both ways
    assert from_folder.formats == {str(tmp_path / "sg"): "sharegpt"}
    calls = []

    def fake_load(path: str, name: str | None = None, *, split: str) -> datasets.Dataset:
        calls.append((path, name, split))
        return datasets.Dataset.from_list([{"instruction": "Name a colour.", "input": "", "output": "Red."}])

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    hub = import_prompts(["hf:tatsu-lab/alpaca"], split="train")
    assert calls == [("tatsu-lab/alpaca", None, "train")]
    assert [(r.id, r.turns) for r in hub.records] == [("alpaca:1", ["Name a colour."])]


def test_completions_scored_against_a_datasets_copy_of_humaneval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`eval --completions` finds its problems the same way: three canonical solutions pass against the copy."""
    from imitlab.evals.completions import CompletionsConfig, score_completions

    problems = open_task_data(get_task("humaneval"), data_dir()).items()[:3]
    datasets.Dataset.from_list([{k: v for k, v in p.items() if k != "id"} for p in problems]).save_to_disk(
        str(tmp_path / "he")
    )
    samples = tmp_path / "samples.jsonl"
    samples.write_text("".join(json.dumps({"task_id": p["task_id"], "completion": p["canonical_solution"]}) + "\n"
                               for p in problems))  # fmt: skip
    monkeypatch.delenv("IMITLAB_DATA")
    monkeypatch.setenv("IMITLAB_DATASET_HUMANEVAL", str(tmp_path / "he"))
    summary = score_completions(CompletionsConfig(completions=samples, out=tmp_path / "out", bench="humaneval"))
    assert (summary["n_problems"], summary["passed_records"], summary["problems_from"]) == (3, 3, str(tmp_path / "he"))
