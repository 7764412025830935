"""Self-instruct bootstrap and task-specific QA synthesis: parsing and filters, scripted teacher, real teacher."""

from __future__ import annotations

import itertools
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from imitlab.config import data_dir
from imitlab.errors import ImitlabError
from imitlab.models.api_model import APIModel, open_model
from imitlab.models.engine import EngineSettings
from imitlab.prompts.schema import PromptFormatError
from imitlab.prompts.selfinstruct import (
    SelfInstructConfig,
    _RougeFilter,
    drop_reason,
    parse_instructions,
    self_instruct,
)
from imitlab.prompts.synthesize import (
    QAPair,
    SynthConfig,
    load_qa_seeds,
    parse_qa,
    qa_conversations,
    synthesize_qa,
)

sys.path.insert(0, str(Path(__file__).parent))
from fake_openai_server import FakeOpenAI


@contextmanager
def _teacher(base_url: str, tmp_path: Path, name: str = "fake", concurrency: int = 1) -> Iterator[APIModel]:
    """The teacher as the stages receive it, with a response cache of its own (never the user's)."""
    settings = EngineSettings(concurrency=concurrency, cache_path=tmp_path / "responses.sqlite", progress=False)
    with open_model(f"openai:{name}", base_url=base_url, settings=settings) as model:
        yield model


def test_parse_instructions_numbered_and_continued() -> None:
    text = (
        "Here you go:\n1. Instruction: Name three rivers in Africa.\n"
        "2) Rewrite the sentence\nin the past tense.\n- Sort the list.\n"
    )
    assert parse_instructions(text) == [
        "Name three rivers in Africa.",
        "Rewrite the sentence in the past tense.",
        "Sort the list.",
    ]


def test_drop_reasons_follow_alpaca() -> None:
    cfg = SelfInstructConfig(seeds=[])
    assert drop_reason("Describe the image below in detail.", cfg) == "blacklisted"
    assert drop_reason("Write a program to sort numbers in place.", cfg) == "blacklisted"
    assert drop_reason("Say hi.", cfg) == "too short"
    assert drop_reason("#Give me five tips for sleeping better.", cfg) == "starts with punctuation"
    assert drop_reason("Give me five tips for sleeping better.", cfg) is None
    assert drop_reason("Profile the filesystem usage", cfg) is None  # "file" is matched as a word only


def test_rouge_filter_rejects_near_copies() -> None:
    rouge = _RougeFilter(0.7)
    rouge.add("Give me five tips for sleeping better at night.")
    assert rouge.max_similarity("Give me five tips for sleeping better.") >= 0.7
    assert rouge.max_similarity("Translate this sentence into French.") < 0.7


def _seeds(tmp_path: Path) -> Path:
    f = tmp_path / "seeds.jsonl"
    f.write_text(
        "".join(
            json.dumps({"id": f"s{i}", "instruction": t, "instances": [{"input": "", "output": ""}]}) + "\n"
            for i, t in enumerate(
                ["Suggest a healthy breakfast.", "Explain photosynthesis simply.", "List prime numbers."]
            )
        )
    )
    return f


def test_self_instruct_against_scripted_teacher(tmp_path: Path) -> None:
    batches = iter(
        [
            "1. Summarize the story of Hamlet in three sentences.\n2. Draw a picture of a cat.\n"
            "3. Summarize the story of Hamlet in three short sentences.\n4. Suggest a healthy breakfast.\n",
            "1. Convert 30 degrees Celsius to Fahrenheit and explain.\n2. Hi.\n",
        ]
        + ["nothing useful"] * 20
    )
    with FakeOpenAI(responder=lambda body: next(batches)) as srv:
        cfg = SelfInstructConfig(seeds=[_seeds(tmp_path)], n_instructions=2, max_requests=5)
        with _teacher(srv.base_url, tmp_path) as teacher:
            result = self_instruct(teacher, cfg)
        assert srv.requests == 2  # stopped as soon as 2 were kept
    assert [r.turns[0] for r in result.records] == [
        "Summarize the story of Hamlet in three sentences.",
        "Convert 30 degrees Celsius to Fahrenheit and explain.",
    ]
    assert result.dropped == {"blacklisted": 1, "similar (ROUGE-L)": 2}  # stops before "Hi."
    assert result.completion_tokens > 0


def test_self_instruct_that_keeps_nothing_is_an_error(tmp_path: Path) -> None:
    with FakeOpenAI(responder=lambda body: "I cannot help.") as srv:
        cfg = SelfInstructConfig(seeds=[_seeds(tmp_path)], n_instructions=2, max_requests=4)
        with _teacher(srv.base_url, tmp_path, concurrency=2) as teacher:
            with pytest.raises(ImitlabError, match="kept no instructions from 4 requests"):
                self_instruct(teacher, cfg)
        assert srv.requests == 4


def test_parse_and_validate_qa() -> None:
    text = (
        "Sure!\n1. Q: who painted the mona lisa\nA: Leonardo da Vinci\n\n**Question:** what is the capital of peru\n"
        "**Answer:** Lima.\nQ: a question without answer\nQ: when did ww2 end\nAnswer: 1945\n"
    )
    assert parse_qa(text) == [
        QAPair("who painted the mona lisa", "Leonardo da Vinci"),
        QAPair("what is the capital of peru", "Lima"),
        QAPair("when did ww2 end", "1945"),
    ]


def test_qa_seed_errors(tmp_path: Path) -> None:
    f = tmp_path / "qa.jsonl"
    f.write_text('{"question": "q one here", "answer": ["a"]}\n{"question": "q", "answer": []}\n')
    with pytest.raises(PromptFormatError, match=r"qa\.jsonl:2: field 'answer'"):
        load_qa_seeds(f)


def _qa_seed_file(tmp_path: Path) -> Path:
    f = tmp_path / "nq.jsonl"
    rows = [{"question": f"who wrote book number {i}", "answer": [f"Author {i}"]} for i in range(10)]
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return f


def test_synthesize_against_scripted_teacher(tmp_path: Path) -> None:
    shown: list[str] = []

    def respond(body: dict[str, Any]) -> str:
        shown.append(body["messages"][-1]["content"])
        return (
            "Q: who discovered penicillin\nA: Alexander Fleming\n"
            "Q: who wrote book number 3\nA: Author 3\n"  # a seed copy
            "Q: what is the tallest mountain in africa\nA: Kilimanjaro\n"
            "Q: who discovered penicillin\nA: Fleming\n"  # a duplicate
            "Q: when was the eiffel tower built\nA: it was built a very long time ago in the nineteenth century\n"
        )

    with FakeOpenAI(responder=respond) as srv:
        cfg = SynthConfig(seed_file=_qa_seed_file(tmp_path), n_pairs=10, k=5, n_seed=10, max_requests=1)
        with _teacher(srv.base_url, tmp_path) as teacher:
            result = synthesize_qa(teacher, cfg)
    assert [(r.turns[0], r.meta["answer"]) for r in result.records] == [
        ("who discovered penicillin", "Alexander Fleming"),
        ("what is the tallest mountain in africa", "Kilimanjaro"),
    ]
    assert result.dropped == {"duplicate or seed copy": 2, "answer length": 1}
    assert shown[0].count("\nA: Author") == 5  # k=5 examples shown
    assert len(result.records[0].meta["seed_ids"]) == 5
    conv = qa_conversations(result.records, "fake")
    assert conv[0]["messages"][1] == {"role": "assistant", "content": "Alexander Fleming"}


def test_synthesis_goes_on_past_requests_that_fail_for_good(tmp_path: Path) -> None:
    seeds = _qa_seed_file(tmp_path)
    rows = [json.loads(x) for x in seeds.read_text().splitlines()]
    rows[4]["question"] += " ALWAYS_400"  # the fake server refuses every request that shows this seed
    seeds.write_text("".join(json.dumps(r) + "\n" for r in rows))
    fresh = itertools.count()

    def respond(body: dict[str, Any]) -> str:
        return f"Q: what is the name of fact number {next(fresh)}\nA: Fact {next(fresh)}\n"

    with FakeOpenAI(responder=respond) as srv:
        cfg = SynthConfig(seed_file=seeds, n_pairs=100, k=5, n_seed=10, max_requests=8)
        with _teacher(srv.base_url, tmp_path, concurrency=2) as teacher:
            result = synthesize_qa(teacher, cfg)
        refused = sum(n for text, n in srv.seen.items() if "ALWAYS_400" in text)
    assert result.requests == 8 and 0 < result.failed_requests == refused < 8  # each refused once, not retried
    assert len(result.records) == 8 - refused
    [(reason, count)] = result.failure_reasons.items()
    assert reason.startswith("HTTP 400") and count == refused


@pytest.mark.real
def test_synthesis_real_teacher_yields_parsed_qa_pairs(smollm2_server: Any, tmp_path: Path) -> None:
    """The paper's NQ-synthetic recipe end to end through a real llama.cpp teacher, on NQ-open dev seeds."""
    cfg = SynthConfig(
        seed_file=data_dir() / "nq_open/NQ-open.dev.jsonl",
        n_pairs=2,
        per_request=3,
        concurrency=2,
        max_requests=4,
        max_tokens=80,
        temperature=0.8,
    )
    with _teacher(smollm2_server.base_url, tmp_path, "smollm2-135m-instruct", concurrency=2) as teacher:
        result = synthesize_qa(teacher, cfg)
    assert 1 <= len(result.records) <= 2
    seeds = {s.question for s in result.seeds}
    assert len(seeds) == 10
    for r in result.records:
        assert r.turns[0] not in seeds and r.meta["answer"].strip()
        assert 3 <= len(r.turns[0].split()) <= 30 and len(r.meta["answer"].split()) <= 10
    assert result.completion_tokens > 0


def test_cli_synthesize_and_self_instruct_write_prompt_sets_and_a_data_set(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from imitlab.cli import app
    from imitlab.data import read_conversations
    from imitlab.prompts import read_prompt_set

    def respond(body: dict[str, Any]) -> str:
        if "trivia" in body["messages"][-1]["content"]:
            return "Q: who discovered penicillin\nA: Alexander Fleming\nQ: what is the tallest mountain\nA: Everest\n"
        return "1. Summarize the story of Hamlet in three sentences.\n2. Explain how tides work in simple words.\n"

    runner = CliRunner()
    with FakeOpenAI(responder=respond) as srv:
        res = runner.invoke(app, [
            "prompts", "synthesize", "--teacher", "openai:fake", "--base-url", srv.base_url,
            "--seeds", str(_qa_seed_file(tmp_path)), "--out", str(tmp_path / "qa.jsonl"), "-n", "2",
            "--conversations", str(tmp_path / "qa_set"), "--max-requests", "2", "--cache", str(tmp_path / "cache"),
        ])  # fmt: skip
        assert res.exit_code == 0, res.output
        res = runner.invoke(app, [
            "prompts", "self-instruct", "--teacher", "openai:fake", "--base-url", srv.base_url,
            "--seeds", str(_seeds(tmp_path)), "--out", str(tmp_path / "si.jsonl"), "-n", "2", "--max-requests", "2",
            "--cache", str(tmp_path / "cache"),
        ])  # fmt: skip
        assert res.exit_code == 0, res.output
    assert [r.meta["answer"] for r in read_prompt_set(tmp_path / "qa.jsonl")] == ["Alexander Fleming", "Everest"]
    conv = read_conversations(tmp_path / "qa_set")
    assert conv[1]["messages"] == [
        {"role": "user", "content": "what is the tallest mountain"},
        {"role": "assistant", "content": "Everest"},
    ]
    manifest = json.loads((tmp_path / "qa_set/manifest.json").read_text())
    assert manifest["operation"] == "synthesize" and len(manifest["params"]["seed_ids"]) == 10
    assert len(read_prompt_set(tmp_path / "si.jsonl")) == 2
