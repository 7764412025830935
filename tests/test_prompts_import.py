"""Prompt importers: every format into one prompt set; bad input names file, line and field."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from imitlab.config import data_dir
from imitlab.prompts import PromptFormatError, import_prompts, read_prompt_set, write_prompt_set
from imitlab.prompts.schema import PromptRecord


def _jsonl(path: Path, rows: list[object]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_sharegpt_first_and_all_turns(tmp_path: Path) -> None:
    f = tmp_path / "sg.json"
    f.write_text(
        json.dumps(
            [
                {
                    "id": "a",
                    "conversations": [
                        {"from": "system", "value": "be brief"},
                        {"from": "human", "value": "hi"},
                        {"from": "gpt", "value": "hello"},
                        {"from": "human", "value": "how are you"},
                    ],
                },
                {"id": "b", "conversations": [{"from": "gpt", "value": "I start"}]},  # no human turn: skipped
            ]
        )
    )
    first = import_prompts([f])
    assert [(r.id, r.turns, r.system, r.meta["orig_id"]) for r in first.records] == [("sg:1", ["hi"], "be brief", "a")]
    assert first.skipped["no user turn"] == 1
    assert first.formats[str(f)] == "sharegpt"
    assert import_prompts([f], turns="all").records[0].turns == ["hi", "how are you"]


def test_alpaca_openai_field_and_text(tmp_path: Path) -> None:
    alpaca = _jsonl(
        tmp_path / "alp.jsonl",
        [{"instruction": "Translate", "input": "bonjour", "output": "hello"}, {"instruction": "Say hi", "input": ""}],
    )
    assert [r.turns[0] for r in import_prompts([alpaca]).records] == ["Translate\n\nbonjour", "Say hi"]
    seeds = _jsonl(tmp_path / "seed.jsonl", [{"instruction": "Sort these", "instances": [{"input": "3 1 2"}]}])
    assert import_prompts([seeds]).records[0].turns == ["Sort these\n\n3 1 2"]
    oai = _jsonl(
        tmp_path / "oai.jsonl",
        [{"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "Q1"}]}],
    )
    rec = import_prompts([oai]).records[0]
    assert (rec.system, rec.turns) == ("S", ["Q1"])
    field = _jsonl(tmp_path / "koala.jsonl", [{"id": "k0", "prompt": "P"}, {"question": "Q"}, {"turns": ["T1", "T2"]}])
    assert [r.turns for r in import_prompts([field], turns="all").records] == [["P"], ["Q"], ["T1", "T2"]]
    txt = tmp_path / "plain.txt"
    txt.write_text("one\n\n two \n")
    res = import_prompts([txt])
    assert [(r.id, r.turns) for r in res.records] == [("plain:1", ["one"]), ("plain:3", ["two"])]


def test_gzip_and_exact_dedupe(tmp_path: Path) -> None:
    f = tmp_path / "p.jsonl.gz"
    with gzip.open(f, "wt") as g:
        g.write(json.dumps({"prompt": "same"}) + "\n" + json.dumps({"prompt": "same"}) + "\n")
    res = import_prompts([f])
    assert len(res.records) == 1 and res.skipped["exact duplicate"] == 1
    assert len(import_prompts([f], dedupe=False).records) == 2


def test_malformed_line_names_file_and_line(tmp_path: Path) -> None:
    f = tmp_path / "bad.jsonl"
    f.write_text('{"prompt": "ok"}\n{"prompt": oops}\n')
    with pytest.raises(PromptFormatError, match=r"bad\.jsonl:2: not valid JSON"):
        import_prompts([f])


def test_missing_field_and_unknown_format_are_named(tmp_path: Path) -> None:
    f = _jsonl(tmp_path / "sg.jsonl", [{"conversations": [{"from": "human", "value": "x"}]}, {"conversations": "no"}])
    with pytest.raises(PromptFormatError, match=r"sg\.jsonl:2: field 'conversations' must be a list"):
        import_prompts([f])
    g = _jsonl(tmp_path / "alp.jsonl", [{"instruction": "x"}, {"input": "y"}])
    with pytest.raises(PromptFormatError, match=r"alp\.jsonl:2: missing field 'instruction'"):
        import_prompts([g])
    h = _jsonl(tmp_path / "weird.jsonl", [{"foo": 1, "bar": 2}])
    with pytest.raises(PromptFormatError, match=r"weird\.jsonl:1: unknown prompt format \(keys: bar, foo\)"):
        import_prompts([h])
    with pytest.raises(PromptFormatError, match="unknown format 'csv'"):
        import_prompts([h], fmt="csv")  # type: ignore[arg-type]


def test_empty_prompt_set_is_an_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    with pytest.raises(PromptFormatError, match="no prompts found"):
        import_prompts([empty])
    (tmp_path / "e.jsonl").write_text("")
    with pytest.raises(PromptFormatError, match="empty"):
        read_prompt_set(tmp_path / "e.jsonl")
    with pytest.raises(PromptFormatError, match="empty"):
        write_prompt_set(tmp_path / "x.jsonl", [])


def test_prompt_set_roundtrip_and_validation(tmp_path: Path) -> None:
    recs = [PromptRecord(id="a", turns=["x"], meta={"k": 1}), PromptRecord(id="b", turns=["y", "z"], system="s")]
    write_prompt_set(tmp_path / "p.jsonl", recs)
    assert read_prompt_set(tmp_path / "p.jsonl") == recs
    (tmp_path / "bad.jsonl").write_text('{"id": "a", "turns": ["x"]}\n{"id": "b", "turns": []}\n')
    with pytest.raises(PromptFormatError, match=r"bad\.jsonl:2: field 'turns'"):
        read_prompt_set(tmp_path / "bad.jsonl")
    (tmp_path / "dup.jsonl").write_text('{"id": "a", "turns": ["x"]}\n{"id": "a", "turns": ["y"]}\n')
    with pytest.raises(PromptFormatError, match="duplicate id 'a'"):
        read_prompt_set(tmp_path / "dup.jsonl")


def test_import_real_files() -> None:
    root = data_dir()
    res = import_prompts(
        [
            root / "sharegpt_prompts/ShareGPT_V3_filtered_500.json",
            root / "sharegpt_prompts/sg_90k_part1_html_cleaned_lang_first_sampled_sorted.json.gz",
            root / "self_instruct/seed_tasks.jsonl",
            root / "koala_test_set/koala_test_set.jsonl",
            root / "alpaca/alpaca_data_1k.json",
        ]
    )
    by_source = {}
    for r in res.records:
        by_source[r.source] = by_source.get(r.source, 0) + 1
    assert by_source["seed_tasks.jsonl"] == 175
    # Some Koala test prompts repeat ShareGPT prompts verbatim; exact dedupe keeps the first occurrence.
    koala = import_prompts([root / "koala_test_set/koala_test_set.jsonl"]).records
    assert len(koala) == 180
    assert by_source["koala_test_set.jsonl"] + res.skipped["exact duplicate"] >= 180
    assert 490 <= by_source["ShareGPT_V3_filtered_500.json"] <= 500
    # The 2,978-row file has 20 records whose first turn is not human; those with no human turn are skipped,
    # and every row is accounted for as kept or skipped with a reason.
    sg = import_prompts([root / "sharegpt_prompts/sg_90k_part1_html_cleaned_lang_first_sampled_sorted.json.gz"])
    assert len(sg.records) + sum(sg.skipped.values()) == 2978
    assert 0 < sg.skipped["no user turn"] <= 25
    assert all(r.turns and r.turns[0].strip() for r in res.records)
    assert set(res.formats.values()) == {"sharegpt", "alpaca", "field"}
