"""Held-out split, nested token-budget subsets (student's tokenizer), manifests, and the data CLI."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from imitlab.cli import app
from imitlab.data.schema import group_key
from imitlab.data.split import SplitConfig, split
from imitlab.data.subset import SubsetConfig, count_tokens, parse_budget, token_subsets
from imitlab.errors import ImitlabError
from imitlab.fileio import sha256_file


def _records(n: int, samples: int = 1) -> list[dict[str, Any]]:
    out = []
    for i in range(n):
        for s in range(samples):
            out.append(
                {
                    "id": f"p{i}" if s == 0 else f"p{i}#{s}",
                    "prompt_id": f"p{i}",
                    "sample": s,
                    "messages": [
                        {"role": "user", "content": f"Question number {i}: tell me about topic {i}."},
                        {"role": "assistant", "content": " ".join(["word"] * (5 + i % 7)) + f" ({s})"},
                    ],
                }
            )
    return out


class WordTokenizer:
    """One token per whitespace word; no chat template."""

    chat_template = None

    def __call__(self, text: str, **kw: Any) -> dict[str, list[int]]:
        return {"input_ids": list(range(len(text.split())))}


def test_split_is_deterministic_grouped_and_stable() -> None:
    records = _records(100, samples=2)
    train, held, report = split(records, SplitConfig(heldout=0.1, seed=7))
    assert report["heldout_groups"] == 10 and len(held) == 20 and len(train) == 180
    assert {group_key(r) for r in train}.isdisjoint({group_key(r) for r in held})
    assert split(records, SplitConfig(heldout=0.1, seed=7))[1] == held
    assert split(records, SplitConfig(heldout=0.1, seed=8))[1] != held
    # Adding data never moves an existing group across the split (rank by hash, not by position).
    more_held = split(_records(200, samples=2), SplitConfig(heldout=20, seed=7))[1]
    assert {group_key(r) for r in held} <= {group_key(r) for r in more_held} | {f"p{i}" for i in range(100, 200)}
    with pytest.raises(ImitlabError, match="nothing would be left"):
        split(records, SplitConfig(heldout=100))


def test_parse_budget() -> None:
    assert parse_budget("300k") == 300_000 and parse_budget("1.5M") == 1_500_000 and parse_budget("2000") == 2000
    with pytest.raises(ImitlabError, match="not a number"):
        parse_budget("lots")


def _ranking(records: list[dict[str, Any]], tok: Any, seed: int) -> tuple[list[str], dict[str, int]]:
    """Groups in subset order, ranked by sha256("seed:group") as imitlab.data.subset documents, and their tokens."""
    tokens: dict[str, int] = {}
    for r in records:
        tokens[group_key(r)] = tokens.get(group_key(r), 0) + count_tokens(tok, r["messages"])
    ranking = sorted(tokens, key=lambda g: hashlib.sha256(f"{seed}:{g}".encode()).hexdigest())
    return ranking, tokens


def _check_shortest_prefix(
    records: list[dict[str, Any]], subsets: dict[int, list[dict[str, Any]]], report: dict[str, Any], tok: Any, seed: int
) -> None:
    """Each subset is the shortest prefix of the ranking that meets its budget, and the report counts it exactly."""
    ranking, tokens = _ranking(records, tok, seed)
    for budget, recs in subsets.items():
        chosen = {group_key(r) for r in recs}
        prefix = ranking[: len(chosen)]
        assert chosen == set(prefix), f"budget {budget}: not a prefix of the ranking"
        total = sum(tokens[g] for g in prefix)
        assert total == report["subsets"][str(budget)]["tokens"] >= budget
        assert total - tokens[prefix[-1]] < budget, f"budget {budget}: met without its last group {prefix[-1]}"
        assert recs == [r for r in records if group_key(r) in chosen]  # every sample of a chosen group, in order


def _check_as_the_old_test_did(subsets: dict[int, list[dict[str, Any]]], report: dict[str, Any], tok: Any) -> None:
    """The check this file had before issue 15: it subtracted the largest group, not the subset's last one."""
    for budget, recs in subsets.items():
        total = sum(count_tokens(tok, r["messages"]) for r in recs)
        assert total == report["subsets"][str(budget)]["tokens"] >= budget
        assert total - max(count_tokens(tok, r["messages"]) * 2 for r in recs) < budget


def _one_group_too_many(
    records: list[dict[str, Any]], cfg: SubsetConfig, tok: Any
) -> tuple[dict[int, list[dict[str, Any]]], dict[str, Any]]:
    """A broken token_subsets: it meets the budget, then takes the next group of the ranking as well."""
    subsets, report = token_subsets(records, cfg, tokenizer=tok)
    ranking, tokens = _ranking(records, tok, cfg.seed)
    for budget, recs in subsets.items():
        extra = ranking[len({group_key(r) for r in recs})]
        subsets[budget] = recs + [r for r in records if group_key(r) == extra]
        report["subsets"][str(budget)]["tokens"] += tokens[extra]
    return subsets, report


def test_subsets_nest_and_meet_their_budgets() -> None:
    records = _records(60, samples=2)
    tok = WordTokenizer()
    subsets, report = token_subsets(records, SubsetConfig(budgets=[100, 300, 600], seed=3), tokenizer=tok)
    ids = {b: {r["id"] for r in recs} for b, recs in subsets.items()}
    assert ids[100] < ids[300] < ids[600]
    _check_shortest_prefix(records, subsets, report, tok, seed=3)
    for recs in subsets.values():
        assert all(sum(group_key(x) == group_key(r) for x in recs) == 2 for r in recs)  # samples stay together
    again, _ = token_subsets(records, SubsetConfig(budgets=[300], seed=3), tokenizer=tok)
    assert [r["id"] for r in again[300]] == [r["id"] for r in subsets[300]]
    with pytest.raises(ImitlabError, match="fewer than the budget"):
        token_subsets(records, SubsetConfig(budgets=[10**9]), tokenizer=tok)


def test_a_subset_one_group_too_long_is_caught() -> None:
    records = _records(60, samples=2)
    tok = WordTokenizer()
    ranking, tokens = _ranking(records, tok, seed=3)
    # A budget met exactly by the first k groups, where group k+1 is smaller than the largest of them: the old
    # check (total minus the largest group) cannot tell k+1 groups from k.
    k = next(k for k in range(1, len(ranking)) if tokens[ranking[k]] < max(tokens[g] for g in ranking[:k]))
    cfg = SubsetConfig(budgets=[sum(tokens[g] for g in ranking[:k])], seed=3)
    subsets, report = token_subsets(records, cfg, tokenizer=tok)
    _check_shortest_prefix(records, subsets, report, tok, seed=3)  # the budget is met exactly: k groups
    broken, broken_report = _one_group_too_many(records, cfg, tok)
    _check_as_the_old_test_did(broken, broken_report, tok)  # the old check passes it
    with pytest.raises(AssertionError, match="met without its last group"):
        _check_shortest_prefix(records, broken, broken_report, tok, seed=3)


@pytest.mark.real  # the packaged student's tokenizer comes from its pulled weights
def test_subset_counts_with_the_real_student_tokenizer() -> None:
    from imitlab.data.subset import load_tokenizer

    tok = load_tokenizer("smollm2-135m-instruct")
    records = _records(30)
    n = count_tokens(tok, records[0]["messages"])
    # The chat template adds role markers around the turns, so it counts more than the bare text.
    bare = sum(len(tok(m["content"], add_special_tokens=False)["input_ids"]) for m in records[0]["messages"])
    assert n > bare > 10
    subsets, report = token_subsets(records, SubsetConfig(budgets=[200, 500]), tokenizer=tok)
    assert {r["id"] for r in subsets[200]} < {r["id"] for r in subsets[500]}
    assert report["subsets"]["500"]["tokens"] >= 500


def test_data_cli_pipeline_writes_manifests(tmp_path: Path) -> None:
    src = tmp_path / "collected"
    src.mkdir()
    records = _records(40, samples=2)
    records.append({**records[0], "id": "dup", "prompt_id": "dup"})  # an exact duplicate prompt
    (src / "conversations.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (src / "manifest.json").write_text(json.dumps({"operation": "collect", "teacher": "t", "counts": {}}))
    runner = CliRunner()

    def run(*args: str) -> None:
        res = runner.invoke(app, list(args))
        assert res.exit_code == 0, res.output

    run("data", "dedup", "--in", str(src), "--out", str(tmp_path / "dedup"))
    m = json.loads((tmp_path / "dedup/manifest.json").read_text())
    assert m["operation"] == "dedup" and m["counts"] == {"records": 80, "groups": 40}
    assert m["report"]["exact"] == 1
    assert m["sources"][0]["sha256"] == sha256_file(src / "conversations.jsonl")
    assert m["sources"][0]["manifest"]["operation"] == "collect"
    assert m["files"]["conversations.jsonl"]["sha256"] == sha256_file(tmp_path / "dedup/conversations.jsonl")
    assert json.loads((tmp_path / "dedup/dedup_report.json").read_text())["removed"][0]["group"] == "dup"

    run(
        "data", "decontaminate", "--in", str(tmp_path / "dedup"), "--out", str(tmp_path / "clean"), "--evals", "nq_open"
    )
    m = json.loads((tmp_path / "clean/manifest.json").read_text())
    assert m["report"]["eval_sets"] == {"nq_open": 3610} and m["report"]["groups_removed"] == 0
    assert "decontamination_report.json" in m["files"]

    run("data", "split", "--in", str(tmp_path / "clean"), "--out", str(tmp_path / "split"), "--heldout", "4")
    assert json.loads((tmp_path / "split/heldout/manifest.json").read_text())["counts"]["groups"] == 4

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "x", "messages": "nope"}\n')
    res = runner.invoke(app, ["data", "dedup", "--in", str(bad), "--out", str(tmp_path / "x")])
    assert res.exit_code != 0 and "bad.jsonl:1: field 'messages'" in str(res.exception)


@pytest.mark.real  # the default student's tokenizer comes from its pulled weights
def test_data_cli_subset_writes_nested_manifests(tmp_path: Path) -> None:
    src = tmp_path / "train"
    src.mkdir()
    (src / "conversations.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _records(40, samples=2)))
    res = CliRunner().invoke(app, ["data", "subset", "--in", str(src), "--out", str(tmp_path / "sub"),
                                   "--tokens", "500", "--tokens", "1k"])  # fmt: skip
    assert res.exit_code == 0, res.output
    small = json.loads((tmp_path / "sub/500/manifest.json").read_text())
    big = json.loads((tmp_path / "sub/1k/manifest.json").read_text())
    assert small["student_tokens"]["tokens"] >= 500 and big["student_tokens"]["tokens"] >= 1000
    assert small["params"]["student"] == "smollm2-135m-instruct"
    small_ids = {json.loads(x)["id"] for x in (tmp_path / "sub/500/conversations.jsonl").read_text().splitlines()}
    big_ids = {json.loads(x)["id"] for x in (tmp_path / "sub/1k/conversations.jsonl").read_text().splitlines()}
    assert small_ids < big_ids
