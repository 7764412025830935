"""The CLI for scripts and narrow terminals: `models list` piped or at 80 columns never cuts a model name,
`--json` output, and `collect --prompts` taking any file `prompts import` reads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from rich.console import Console

from imitlab.cli.table import Column, fit_table, print_table
from imitlab.models.catalog import packaged_models

sys.path.insert(0, str(Path(__file__).parent))
from fake_openai_server import FakeOpenAI


def _imitlab(*args: str, columns: int | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    environ.update(env)
    if columns is not None:
        environ["COLUMNS"] = str(columns)
    # stdout is a pipe here, as in a script: rich sees no terminal.
    return subprocess.run([sys.executable, "-m", "imitlab", *args], capture_output=True, text=True, env=environ,
                          timeout=120)  # fmt: skip


def test_models_list_piped_and_at_80_columns_shows_every_name_whole(tmp_path: Path) -> None:
    names = list(packaged_models())
    assert max(map(len, names)) > 22  # a name that rich used to cut to 'qwen2.5-coder-0.5b-ins…'
    for columns in (None, 80, 60):  # piped with no $COLUMNS (rich's default, 80), then 80 and 60 columns
        done = _imitlab("models", "list", "--cache", str(tmp_path), columns=columns)
        assert done.returncode == 0, done.stderr
        lines = done.stdout.splitlines()
        assert "…" not in done.stdout
        assert all(len(line) <= (columns or 80) for line in lines), (columns, done.stdout)
        for name in names:
            row = next(line for line in lines if line.split() and line.split()[0] == name)
            sha_prefix = packaged_models()[name].sha256[:8]
            # this cache is empty: at most the packages are installed (in the venv), nothing is assembled
            assert row.split()[-1] == sha_prefix and ("not pulled" in row or "installed" in row)
    wide = _imitlab("models", "list", "--cache", str(tmp_path), columns=200).stdout
    assert all(col in wide for col in ("arch", "quant", "kind", "params", "size"))  # optional columns when room


def test_models_list_json_is_complete(tmp_path: Path) -> None:
    done = _imitlab("models", "list", "--json", "--cache", str(tmp_path))
    assert done.returncode == 0, done.stderr
    records = json.loads(done.stdout)
    assert [r["name"] for r in records] == list(packaged_models())
    for record in records:
        model = packaged_models()[record["name"]]
        assert record["sha256"] == model.sha256 and record["bytes"] == model.size
        assert record["installed"] in (True, False) and record["assembled"] is False and record["converted"] is False


def test_fit_table_keeps_key_columns_whole_even_when_they_alone_are_too_wide() -> None:
    columns = [Column("name", key=True), Column("note", drop_rank=0), Column("id", key=True)]
    rows = [["a-very-long-model-name-that-must-stay-whole", "some optional text", "abc123"]]
    console = Console(width=30, record=True, color_system=None)
    table = fit_table(console, "t", columns, rows)
    assert [c.header for c in table.columns] == ["name", "id"]
    print_table(console, "t", columns, rows)
    text = console.export_text()
    assert "a-very-long-model-name-that-must-stay-whole" in text and "abc123" in text and "…" not in text


def _collect(prompts: Path, out: Path, srv: FakeOpenAI, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return _imitlab(
        "collect", "--teacher", "openai:fake", "--base-url", srv.base_url, "--prompts", str(prompts),
        "--out", str(out), "--concurrency", "2", "--no-progress", "--cache-file", str(tmp_path / "cache.sqlite"),
        IMITLAB_CACHE=str(tmp_path / "imitlab-cache"),
    )  # fmt: skip


def test_collect_takes_a_plain_prompt_jsonl_and_an_alpaca_file(tmp_path: Path) -> None:
    plain = tmp_path / "questions.jsonl"
    plain.write_text("".join(json.dumps({"prompt": f"question {i}"}) + "\n" for i in range(5)))
    alpaca = tmp_path / "alpaca.json"
    alpaca.write_text(json.dumps([{"instruction": "Sum these", "input": "1 2", "output": "3"},
                                  {"instruction": "Name a colour", "output": "red"}]))  # fmt: skip
    with FakeOpenAI() as srv:
        done = _collect(plain, tmp_path / "plain", srv, tmp_path)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "field format, 5 prompts" in done.stderr
        rerun = _collect(plain, tmp_path / "plain", srv, tmp_path)  # resumes: the converted ids are stable
        assert rerun.returncode == 0, rerun.stdout + rerun.stderr
        done_alpaca = _collect(alpaca, tmp_path / "alpaca", srv, tmp_path)
        assert done_alpaca.returncode == 0, done_alpaca.stdout + done_alpaca.stderr
    records = [json.loads(x) for x in (tmp_path / "plain" / "conversations.jsonl").read_text().splitlines()]
    assert sorted(r["prompt_id"] for r in records) == [f"questions:{i}" for i in range(1, 6)]
    first = next(r for r in records if r["prompt_id"] == "questions:1")
    assert first["messages"][0] == {"role": "user", "content": "question 0"}
    assert first["messages"][-1]["content"] == "answer to: question 0"
    manifest = json.loads((tmp_path / "plain" / "manifest.json").read_text())
    assert manifest["sources"][0]["path"] == str(tmp_path / "plain" / "prompts.jsonl")
    assert manifest["counts"]["collected"] == 5 and manifest["counts"]["records"] == 5
    alpaca_records = [json.loads(x) for x in (tmp_path / "alpaca" / "conversations.jsonl").read_text().splitlines()]
    assert sorted(r["messages"][0]["content"] for r in alpaca_records) == ["Name a colour", "Sum these\n\n1 2"]


def test_collect_still_reads_a_prompt_set_as_it_is(tmp_path: Path) -> None:
    prompt_set = tmp_path / "set.jsonl"
    prompt_set.write_text(json.dumps({"id": "mine-1", "turns": ["hello"]}) + "\n")
    with FakeOpenAI() as srv:
        done = _collect(prompt_set, tmp_path / "out", srv, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert not (tmp_path / "out" / "prompts.jsonl").exists()
    assert json.loads((tmp_path / "out" / "conversations.jsonl").read_text())["prompt_id"] == "mine-1"


def test_collect_names_file_line_and_field_of_a_bad_prompt_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "fine"}) + "\n" + json.dumps({"prompt": 42}) + "\n")
    with FakeOpenAI() as srv:
        done = _collect(bad, tmp_path / "out", srv, tmp_path)
        assert srv.requests == 0
    assert done.returncode == 2
    message = " ".join(done.stderr.split())  # rich wraps the one-line error to the terminal width
    assert f"{bad}:2: field 'prompt' must be a str" in message and "Traceback" not in done.stderr
