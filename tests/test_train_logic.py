"""Training logic on a tiny random model: masking, packing, budgets, resume, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from imitlab.errors import ImitlabError
from imitlab.models.packaged import PulledModel
from imitlab.models.tokenizer import PLAIN_CHAT_TEMPLATE, ensure_chat_template
from imitlab.train.packing import IGNORE, build_rows, render_loss_tokens, tokenize_conversation
from imitlab.train.sft_trainer import train
from imitlab.train.train_config import TrainConfig


def _conv(i: int, turns: int = 1, answer_words: int = 12) -> dict:
    messages = []
    for t in range(turns):
        messages.append({"role": "user", "content": f"Question {i}.{t}: what is {i} plus {t}?"})
        messages.append({"role": "assistant", "content": " ".join(["The answer is", str(i + t)] * (answer_words // 4))})
    return {"id": f"c{i}", "messages": messages}


def _write(path: Path, records: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


@pytest.fixture(scope="module")
def tokenizer(smollm2: PulledModel):  # type: ignore[no-untyped-def]
    from transformers import AutoTokenizer

    return ensure_chat_template(AutoTokenizer.from_pretrained(smollm2.hf))


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory, tokenizer) -> Path:  # type: ignore[no-untyped-def]
    """A 2-layer, 64-wide random llama with SmolLM2's tokenizer: trains in well under a second a step."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512, tie_word_embeddings=True,
    )  # fmt: skip
    path = tmp_path_factory.mktemp("tiny")
    LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.mark.real  # SmolLM2's tokenizer comes from its pulled weights
def test_mask_covers_exactly_the_assistant_turns(tokenizer) -> None:  # type: ignore[no-untyped-def]
    conv = _conv(3, turns=2)
    ids, mask = tokenize_conversation(tokenizer, conv["messages"])
    labels = [t if m else IGNORE for t, m in zip(ids, mask, strict=True)]
    shown = render_loss_tokens(tokenizer, {"input_ids": ids, "labels": labels})
    # Both answers, with their end-of-turn marker, carry loss; the system prompt and the questions do not.
    assert shown.count("[[") == 2
    for t in range(2):
        assert f"[[{conv['messages'][2 * t + 1]['content']}<|im_end|>\n]]" in shown
    assert "[[" not in shown.split("<|im_start|>assistant\n")[0]
    print("\n" + shown)


def test_plain_template_for_base_models() -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    raw = Tokenizer(models.WordLevel({"[UNK]": 0, "<eos>": 1}, unk_token="[UNK]"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=raw, eos_token="<eos>", unk_token="[UNK]")
    assert not tok.chat_template
    ensure_chat_template(tok)
    assert tok.chat_template == PLAIN_CHAT_TEMPLATE and tok.pad_token == "<eos>"
    text = tok.apply_chat_template(_conv(1)["messages"], tokenize=False)
    assert text.startswith("### User:\nQuestion 1.0") and "\n\n### Assistant:\nThe answer is" in text
    assert text.endswith("<eos>\n\n")


@pytest.mark.real  # SmolLM2's tokenizer comes from its pulled weights
def test_packing_fills_blocks_and_counts_splits(tokenizer) -> None:  # type: ignore[no-untyped-def]
    records = [_conv(i, answer_words=40) for i in range(20)]
    rows, stats = build_rows(tokenizer, records, block_size=64, packing=True)
    assert all(len(r["input_ids"]) == 64 for r in rows)
    assert stats.conversations == 20 and stats.split_across_blocks > 0
    assert stats.padding_tokens < 64 and stats.packing_efficiency > 0.95
    assert sum(r["attention_mask"].count(1) for r in rows) == stats.tokens
    assert sum(sum(1 for label in r["labels"] if label != IGNORE) for r in rows) == stats.loss_tokens


@pytest.mark.real  # SmolLM2's tokenizer comes from its pulled weights
def test_no_packing_truncates_and_reports(tokenizer) -> None:  # type: ignore[no-untyped-def]
    records = [_conv(i, answer_words=200) for i in range(3)]
    rows, stats = build_rows(tokenizer, records, block_size=64, packing=False)
    assert stats.truncated == 3 and stats.truncated_tokens > 0
    assert all(len(r["input_ids"]) == 64 for r in rows)


@pytest.mark.real  # SmolLM2's tokenizer comes from its pulled weights
def test_no_assistant_turn_is_an_error_not_an_empty_run(tokenizer) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ImitlabError, match="no trainable conversations"):
        build_rows(tokenizer, [{"id": "x", "messages": [{"role": "user", "content": "hi"}]}], block_size=64)


@pytest.mark.real  # SmolLM2's tokenizer comes from its pulled weights
def test_train_resume_and_outputs(tiny_model: Path, tmp_path: Path) -> None:
    data = _write(tmp_path / "data" / "conversations.jsonl", [_conv(i) for i in range(40)])
    out = tmp_path / "run"
    cfg = TrainConfig(base=f"hf:{tiny_model}", data=str(data.parent), out=str(out), block_size=64, batch_size=2,
                      max_steps=4, save="steps", save_steps=2, learning_rate=1e-3, warmup_steps=0)  # fmt: skip
    manifest = train(cfg)
    assert (out / "model" / "config.json").is_file() and (out / "model" / "tokenizer_config.json").is_file()
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines if "loss" in x] == [1, 2, 3, 4]
    assert all("learning_rate" in x and "tokens_per_s" in x for x in lines if "loss" in x)
    assert manifest["results"]["steps"] == 4 and manifest["packing"]["conversations"] == 40
    assert manifest["data"]["sha256"] and manifest["model_sha256"]
    # Resume: a longer run in the same directory starts from checkpoint-4, not from scratch.
    cfg.max_steps = 6
    manifest = train(cfg)
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines if "loss" in x] == [1, 2, 3, 4, 5, 6]
    assert manifest["results"]["steps"] == 6


@pytest.mark.real  # SmolLM2's tokenizer comes from its pulled weights
def test_budget_larger_than_data_is_an_error(tiny_model: Path, tmp_path: Path) -> None:
    data = _write(tmp_path / "d.jsonl", [_conv(i) for i in range(5)])
    cfg = TrainConfig(base=f"hf:{tiny_model}", data=str(data), out=str(tmp_path / "o"), tokens=1_000_000, block_size=64)
    with pytest.raises(ImitlabError, match="fewer than the budget"):
        train(cfg)


@pytest.mark.real  # SmolLM2's tokenizer comes from its pulled weights
def test_budget_selects_a_subset(tiny_model: Path, tmp_path: Path) -> None:
    data = _write(tmp_path / "d.jsonl", [_conv(i) for i in range(30)])
    cfg = TrainConfig(base=f"hf:{tiny_model}", data=str(data), out=str(tmp_path / "o"), tokens=500, block_size=64,
                      max_steps=1)  # fmt: skip
    manifest = train(cfg)
    assert 500 <= manifest["budget"]["tokens"] < 600 and manifest["budget"]["records"] < 30


@pytest.mark.real  # SmolLM2's tokenizer comes from its pulled weights
def test_empty_and_malformed_data_name_the_file(tiny_model: Path, tmp_path: Path) -> None:
    empty = _write(tmp_path / "empty.jsonl", [])
    with pytest.raises(ImitlabError, match="empty"):
        train(TrainConfig(base=f"hf:{tiny_model}", data=str(empty), out=str(tmp_path / "o")))
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        json.dumps(_conv(1)) + "\n" + json.dumps({"id": "q", "messages": [{"role": "user", "content": "x"}]})
    )
    with pytest.raises(ImitlabError, match=r"bad\.jsonl:2"):
        train(TrainConfig(base=f"hf:{tiny_model}", data=str(bad), out=str(tmp_path / "o")))
