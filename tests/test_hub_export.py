"""Imitation sets and students out: `imitlab data export` (a datasets folder in TRL's conversational format, the
manifest as its card) and `--push-to-hub` for data and students, with the hub calls replaced (no network here)
and the offline and no-token errors raised before any work."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import datasets
import huggingface_hub
import pytest
from huggingface_hub import DatasetCard, ModelCard

from imitlab.config import data_dir
from imitlab.data.dataset import write_dataset
from imitlab.data.export import export_dataset
from imitlab.hub import HubPushError, check_push
from imitlab.train.push import check_train_push, push_student


@pytest.fixture
def imitation_set(tmp_path: Path) -> Path:
    """20 real Alpaca-GPT4 instructions and GPT-4 answers as an imitlab data set (conversations + manifest)."""
    rows = json.loads((data_dir() / "alpaca_gpt4_demo" / "alpaca_en_demo.json").read_text(encoding="utf-8"))[:20]
    records = []
    for n, row in enumerate(rows):
        user = row["instruction"] + (f"\n\n{row['input']}" if row["input"] else "")
        messages = [{"role": "user", "content": user}, {"role": "assistant", "content": row["output"]}]
        if n % 5 == 0:
            messages.insert(0, {"role": "system", "content": "You are helpful."})
        records.append({"id": f"alpaca:{n}", "messages": messages, "teacher": "gpt-4", "prompt_id": f"p{n // 2}",
                        "usage": {"prompt_tokens": 10, "completion_tokens": 20}})  # fmt: skip
    src = tmp_path / "set"
    write_dataset(src, records, operation="collect", inputs=[], params={"max_tokens": 512})
    return src


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "imitlab", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=300)  # fmt: skip


def test_export_writes_trl_messages_and_the_manifest_as_card(imitation_set: Path, tmp_path: Path) -> None:
    done = _run("data", "export", "--in", str(imitation_set), "--out", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    out = tmp_path / "out"
    exported = datasets.load_from_disk(str(out))
    source = [json.loads(line) for line in (imitation_set / "conversations.jsonl").read_text().splitlines()]
    assert exported.column_names == ["messages", "id", "prompt_id", "teacher"]
    assert exported["messages"] == [r["messages"] for r in source]  # role/content lists, system turns kept
    assert exported["id"] == [r["id"] for r in source] and set(exported["teacher"]) == {"gpt-4"}
    card = DatasetCard.load(out / "README.md")
    assert {"imitlab", "conversational"} <= set(card.data.tags) and card.data.size_categories == ["n<1K"]
    assert "**gpt-4**" in card.text and "operation: `collect`" in card.text
    assert "teacher tokens (prompt / completion): 200 / 400" in card.text
    manifest = json.loads((imitation_set / "manifest.json").read_text())
    assert json.loads((out / "manifest.json").read_text()) == manifest
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]  # written atomically


def test_export_refuses_a_bad_set_naming_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "conversations.jsonl").write_text(
        '{"id": "a", "messages": [{"role": "user", "content": "x"}]}\n'
    )
    with pytest.raises(Exception, match=r"conversations.jsonl:1: the last message must be the assistant's"):
        export_dataset(tmp_path / "bad", tmp_path / "out")
    assert not (tmp_path / "out").exists()


class FakeHub:
    """huggingface_hub's HfApi and Dataset.push_to_hub replaced at their boundary: records every call."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        calls: list[tuple[str, Any]] = []
        self.calls = calls

        def create_repo(api: Any, repo: str, **kw: Any) -> str:
            calls.append(("create_repo", (repo, kw["repo_type"], kw["private"])))
            return f"https://huggingface.co/{repo}"

        def upload_folder(api: Any, **kw: Any) -> None:
            files = sorted(p.name for p in Path(kw["folder_path"]).iterdir())
            calls.append(("upload_folder", (kw["repo_id"], kw["repo_type"], kw.get("allow_patterns"), files)))

        def push_to_hub(dataset: datasets.Dataset, repo: str, **kw: Any) -> None:
            calls.append(("push_to_hub", (repo, len(dataset), kw["private"])))

        monkeypatch.setattr(huggingface_hub.constants, "is_offline_mode", lambda: False)
        monkeypatch.setattr(huggingface_hub, "get_token", lambda: "hf_test")
        monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", create_repo)
        monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", upload_folder)
        monkeypatch.setattr(datasets.Dataset, "push_to_hub", push_to_hub)


def test_export_push_sends_card_then_data(imitation_set: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from imitlab.cli import app

    hub = FakeHub(monkeypatch)
    args = ["data", "export", "--in", str(imitation_set), "--out", str(tmp_path / "out"), "--push-to-hub", "me/set"]
    result = CliRunner().invoke(app, [*args, "--private"])
    assert result.exit_code == 0, result.output
    files = ["README.md", "data-00000-of-00001.arrow", "dataset_info.json", "manifest.json", "state.json"]
    assert hub.calls == [
        ("create_repo", ("me/set", "dataset", True)),
        ("upload_folder", ("me/set", "dataset", ["README.md", "manifest.json"], files)),
        ("push_to_hub", ("me/set", 20, True)),
    ]
    assert "https://huggingface.co/me/set" in result.output


def test_push_offline_fails_before_anything_is_written(imitation_set: Path, tmp_path: Path) -> None:
    """The real CLI with HF_HUB_OFFLINE=1: one line, nothing exported, no training started."""
    done = _run("data", "export", "--in", str(imitation_set), "--out", str(tmp_path / "out"), "--push-to-hub",
                "me/set", env={"HF_HUB_OFFLINE": "1"})  # fmt: skip
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "--push-to-hub me/set: the hub is offline here (HF_HUB_OFFLINE is set)" in " ".join(done.stderr.split())
    assert not (tmp_path / "out").exists()
    done = _run("train", "--base", "smollm2-135m-instruct", "--data", str(imitation_set), "--out",
                str(tmp_path / "run"), "--push-to-hub", "me/student", env={"HF_HUB_OFFLINE": "1"})  # fmt: skip
    assert done.returncode != 0 and "the hub is offline here" in " ".join(done.stderr.split())
    assert not (tmp_path / "run").exists()


def test_push_checks_repo_token_and_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(huggingface_hub.constants, "is_offline_mode", lambda: False)
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    with pytest.raises(HubPushError, match="expected a repo id OWNER/NAME"):
        check_push("not a repo", "x")
    with pytest.raises(HubPushError, match=r"no Hugging Face token; run `hf auth login` or set \$HF_TOKEN"):
        check_push("me/x", "x")
    with pytest.raises(Exception, match="--save none keeps none"):
        check_train_push("me/x", "none")


def test_push_student_writes_the_card_from_the_run_manifest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hub = FakeHub(monkeypatch)
    (tmp_path / "run" / "model").mkdir(parents=True)
    (tmp_path / "run" / "model" / "model.safetensors").write_bytes(b"weights")
    manifest = {
        "config": {"lora": True, "lora_r": 8, "merge_lora": True, "tokens": 3000, "block_size": 256,
                   "batch_size": 4, "learning_rate": 1e-4},
        "base": {"spec": "hf:HuggingFaceTB/SmolLM2-135M-Instruct"},
        "data": {"path": "runs/d/conversations.jsonl", "sha256": "ab" * 32, "manifest": {"teacher": "gpt-4"}},
        "packing": {"conversations": 20, "tokens": 3000, "loss_tokens": 2100},
        "results": {"steps": 8, "train_loss": 1.9, "eval_loss_before": 1.84, "eval_loss_after": 1.77},
        "processes": 1, "versions": {"imitlab": "0.1.0", "transformers": "5.24.0"},
    }  # fmt: skip
    url = push_student(tmp_path / "run", manifest, "me/student")
    card = ModelCard.load(tmp_path / "run" / "model" / "README.md")
    assert card.data.base_model == "HuggingFaceTB/SmolLM2-135M-Instruct" and card.data.library_name == "transformers"
    assert "lora" in card.data.tags and "LoRA r=8 (merged)" in card.text and "eval_loss_after: 1.7700" in card.text
    assert "**gpt-4**" in card.text
    assert url == "https://huggingface.co/me/student"
    upload = ("upload_folder", ("me/student", "model", None, ["README.md", "model.safetensors"]))
    assert hub.calls == [("create_repo", ("me/student", "model", False)), upload]
