"""Imitation-set schema, exact/near-duplicate removal, n-gram decontamination against real eval sets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from imitlab.config import data_dir
from imitlab.data import DataFormatError, read_conversations
from imitlab.data.decontaminate import DecontamConfig, build_index, decontaminate
from imitlab.data.dedup import DedupConfig, dedup
from imitlab.eval_sets import CATALOGUE, eval_set_names

BREAD = (
    "How do I bake sourdough bread at home with a starter I made myself last week, using only flour, water and "
    "salt, in a normal kitchen oven?"
)


def conv(rid: str, question: str, answer: str = "an answer", prompt_id: str | None = None) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "id": rid,
        "messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}],
    }
    if prompt_id:
        rec["prompt_id"] = prompt_id
    return rec


def _write(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_schema_errors_name_file_line_and_field(tmp_path: Path) -> None:
    ok = conv("a", "q")
    cases = {
        "not json": ("{oops", r"bad\.jsonl:2: not valid JSON"),
        "no id": ({"messages": ok["messages"]}, r"bad\.jsonl:2: field 'id'"),
        "bad role": (
            {"id": "b", "messages": [{"role": "bot", "content": "x"}]},
            r"bad\.jsonl:2: messages\[0\]\.role is 'bot'",
        ),
        "ends with user": (
            {"id": "b", "messages": [{"role": "user", "content": "x"}]},
            r"bad\.jsonl:2: the last message must be the assistant's",
        ),
        "no alternation": (
            {"id": "b", "messages": [{"role": "user", "content": "x"}, {"role": "user", "content": "y"}]},
            r"messages\[1\]\.role is 'user'; expected 'assistant'",
        ),
        "duplicate": (conv("a", "other"), r"bad\.jsonl:2: duplicate id 'a'"),
    }
    for bad, pattern in cases.values():
        _write(tmp_path / "bad.jsonl", [ok, bad])
        with pytest.raises(DataFormatError, match=pattern):
            read_conversations(tmp_path / "bad.jsonl")
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(DataFormatError, match="empty"):
        read_conversations(tmp_path / "empty.jsonl")
    system_first = {"id": "s", "messages": [{"role": "system", "content": "S"}, *ok["messages"]]}
    assert len(read_conversations(_write(tmp_path / "good.jsonl", [ok, system_first]))) == 2


def test_dedup_exact_near_and_sample_groups() -> None:
    records = [
        conv("a", BREAD, prompt_id="a"),
        conv("a#1", BREAD, "other", prompt_id="a"),
        conv("b", BREAD.lower().replace(",", "")),  # exact after normalizing case and punctuation
        conv("c", BREAD.replace("oven?", "oven, please?")),  # near: one word added
        conv("d", "What is the capital of Australia and why was it chosen over Sydney?"),
    ]
    kept, report = dedup(records)
    assert [r["id"] for r in kept] == ["a", "a#1", "d"]  # both samples of prompt a survive together
    assert report["exact"] == 1 and report["near"] == 1 and report["records_removed"] == 2
    near = next(r for r in report["removed"] if r["kind"] == "near")
    assert near["group"] == "c" and near["dup_of"] == "a" and near["similarity"] >= 0.8
    kept_exact_only, rep = dedup(records, DedupConfig(near=False))
    assert [r["id"] for r in kept_exact_only] == ["a", "a#1", "c", "d"] and rep["near"] == 0
    # Same prompt, different answers: duplicates by prompt, distinct by whole conversation.
    two = [conv("x", "same question here please", "answer one"), conv("y", "same question here please", "answer two")]
    assert len(dedup(two)[0]) == 1
    assert len(dedup(two, DedupConfig(key="conversation", near=False))[0]) == 2


def test_decontaminate_with_an_eval_file(tmp_path: Path) -> None:
    evals = _write(
        tmp_path / "eval.jsonl",
        [
            {"question": "who wrote the novel the old man and the sea"},  # short: matched whole
            {"question": "capital of peru"},  # under min_words: ignored
            {"prompt": " ".join(f"w{i}" for i in range(30))},  # long: any 13-gram
        ],
    )
    records = [
        conv("leak", "Quiz: Who wrote the novel 'The Old Man and the Sea'? Answer briefly."),
        conv("leak-answer", "Tell me something.", "Sure: " + " ".join(f"w{i}" for i in range(5, 18)) + " ok"),
        conv("near-miss", "Who wrote the novel the old man?"),
        conv("short", "What is the capital of Peru?"),
    ]
    cfg = DecontamConfig(eval_sets=[], eval_files=[evals])
    kept, report = decontaminate(records, cfg, CATALOGUE)
    assert [r["id"] for r in kept] == ["near-miss", "short"]
    removed = {r["group"]: r for r in report["removed"]}
    assert removed["leak"]["shared"] == "who wrote the novel the old man and the sea"
    assert removed["leak-answer"]["eval_index"] == 2
    assert report["eval_items_too_short"] == 1
    # Prompt-only checking lets a leak that is only in the answer through.
    kept_p, _ = decontaminate(records, DecontamConfig(eval_sets=[], eval_files=[evals], check="prompt"))
    assert "leak-answer" in {r["id"] for r in kept_p}


def test_decontaminate_against_real_eval_sets() -> None:
    root = data_dir()
    nq_q = json.loads((root / "nq_open/NQ-open.dev.jsonl").read_text().splitlines()[0])["question"]
    he = json.loads(__import__("gzip").open(root / "humaneval/HumanEval.jsonl.gz", "rt").readline())["prompt"]
    records = [
        conv("nq", f"Quick question: {nq_q}?"),
        conv("he", "Complete this code:\n" + he),
        conv("clean", "Write a haiku about autumn leaves falling on a quiet pond."),
    ]
    kept, report = decontaminate(records, DecontamConfig(eval_sets=["nq_open", "humaneval", "mmlu"]), CATALOGUE)
    assert [r["id"] for r in kept] == ["clean"]
    assert report["removed_by_eval_set"] == {"nq_open": 1, "humaneval": 1}
    assert report["eval_sets"]["nq_open"] == 3610 and report["eval_sets"]["humaneval"] == 164
    assert report["eval_sets"]["mmlu"] == 14042


def test_every_named_eval_set_loads_from_the_data_dir() -> None:
    index, sizes = build_index(DecontamConfig(), CATALOGUE)
    assert set(sizes) == set(eval_set_names())
    # one naming scheme: the benchmarks' and the judge prompt sets' own names
    assert {"nq_open", "arc_easy", "arc_challenge", "koala", "vicuna80", "mt-bench", "alpaca-eval"} <= set(sizes)
    assert sizes["arc_challenge"] == 1172 and sizes["vicuna80"] == 80 and sizes["mt-bench"] == 80
    assert all(n > 0 for n in sizes.values())
    assert len(index.items) > 20000


def test_unknown_eval_set_is_an_error() -> None:
    from imitlab.errors import ImitlabError

    with pytest.raises(ImitlabError, match="unknown evaluation set"):
        decontaminate([conv("a", "q")], DecontamConfig(eval_sets=["nq_closed"]), CATALOGUE)
