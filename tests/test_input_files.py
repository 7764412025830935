"""Files people really have: malformed and unusual input files through the real CLI.

Each case is a file and what imitlab must do with it: accept it (and read exactly the given content) or refuse
it with exactly one line, ``error: FILE:LINE: ...``, naming the file, the line and (where it helps) the column.
No case may print a Python traceback; ``--debug`` is the way to see one.
"""

from __future__ import annotations

import codecs
import gzip
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from imitlab.cli import run
from imitlab.errors import ImitlabError
from imitlab.evals.data import read_csv
from imitlab.fileio import iter_text_lines, open_text, read_text

REPO = Path(__file__).resolve().parents[1]


def jl(*records: dict, end: str = "\n") -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + end for r in records)


def P(text: str) -> dict:  # reads like the record it builds
    return {"prompt": text}


TWO = jl(P("héllo"), P("wörld"))
BOM8 = codecs.BOM_UTF8


def _gzip(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


@dataclass(frozen=True)
class Case:
    name: str
    file: str  # the file's name (its suffix picks the reader: .txt, .json, .jsonl, .gz)
    data: bytes
    accepted: tuple[str, ...] = ()  # the prompts read, in order, when the file is accepted
    error: str = ""  # else the one line after "error: ", with {path} for the file


# At least 30 malformed or unusual files; each goes through `imitlab prompts import FILE --out OUT`.
CASES = [
    # -- encodings ------------------------------------------------------------------------------------------------
    Case("utf8", "p.jsonl", TWO.encode(), ("héllo", "wörld")),
    Case("utf8-bom", "p.jsonl", BOM8 + TWO.encode(), ("héllo", "wörld")),
    Case("utf16-le-bom", "p.jsonl", codecs.BOM_UTF16_LE + TWO.encode("utf-16-le"), ("héllo", "wörld")),
    Case("utf16-be-bom", "p.jsonl", codecs.BOM_UTF16_BE + TWO.encode("utf-16-be"), ("héllo", "wörld")),
    Case(
        "utf16-without-bom",
        "p.jsonl",
        TWO.encode("utf-16-le"),
        error="{path}:1: NUL byte at column 2 (a binary file, or UTF-16 without a byte-order mark?); "
        "re-save as UTF-8 text",
    ),
    Case(
        "utf32-bom",
        "p.jsonl",
        codecs.BOM_UTF32_LE + TWO.encode("utf-32-le"),
        error="{path}:1: not UTF-8 (byte 0xff at column 1); re-save as UTF-8",
    ),
    Case(
        "latin1-on-line-2",
        "p.jsonl",
        jl(P("ok")).encode() + jl(P("café")).encode("latin-1"),
        error="{path}:2: not UTF-8 (byte 0xe9 at column 16); re-save as UTF-8",
    ),
    Case(
        "cp1252-smart-quotes",
        "p.jsonl",
        jl(P("say “hi”")).encode("cp1252"),
        error="{path}:1: not UTF-8 (byte 0x93 at column 17); re-save as UTF-8",
    ),
    Case(
        "utf8-encoded-surrogate",
        "p.jsonl",
        b'{"prompt": "x\xed\xa0\x80"}\n',
        error="{path}:1: not UTF-8 (byte 0xed at column 14); re-save as UTF-8",
    ),
    Case(
        "cut-inside-a-character",
        "p.jsonl",
        jl(P("ok")).encode() + b'{"prompt": "caf\xc3',
        error="{path}:2: not UTF-8 (byte 0xc3 at column 16); re-save as UTF-8",
    ),
    Case(
        "utf16-odd-byte-count",
        "p.jsonl",
        TWO.encode("utf-16") + b"A",
        error="{path}:3: not valid UTF-16 (the file ends inside a character); re-save as UTF-8",
    ),
    Case(
        "utf16-unpaired-surrogate",
        "p.jsonl",
        codecs.BOM_UTF16_LE + '{"prompt": "a'.encode("utf-16-le") + b"\x00\xd8" + '"}\n'.encode("utf-16-le"),
        error="{path}:1: not valid UTF-16 (unpaired surrogate 0xd800 at column 14); re-save as UTF-8",
    ),
    # -- what json.loads accepts but cannot be written back ------------------------------------------------------
    Case(
        "lone-surrogate-escape",
        "p.jsonl",
        b'{"prompt": "x\\ud800y"}\n',
        error="{path}:1: field 'prompt' holds an unpaired surrogate \\ud800 (not valid Unicode); fix that \\u escape",
    ),
    Case("surrogate-pair-escape", "p.jsonl", b'{"prompt": "smile \\ud83d\\ude00"}\n', ("smile \U0001f600",)),
    Case(
        "lone-low-surrogate-deep-in-sharegpt",
        "p.jsonl",
        b'{"conversations": [{"from": "human", "value": "ok"}, {"from": "gpt", "value": "a\\udc00"}]}\n',
        error="{path}:1: field 'conversations[1].value' holds an unpaired surrogate \\udc00 (not valid Unicode); "
        "fix that \\u escape",
    ),
    Case(
        "lone-surrogate-in-a-key",
        "p.jsonl",
        b'{"prompt": "ok", "meta": {"\\ud800": 1}}\n',
        error="{path}:1: field 'meta.\\ud800' holds an unpaired surrogate \\ud800 (not valid Unicode); "
        "fix that \\u escape",
    ),
    Case(
        "nested-5000-deep-jsonl",
        "p.jsonl",
        ('{"prompt": "x", "meta": ' + "[" * 5000 + "]" * 5000 + "}\n").encode(),
        error="{path}:1: JSON nested too deeply (imitlab reads at most 100 levels)",
    ),
    Case(
        "nested-150-deep-jsonl",
        "p.jsonl",
        ('{"prompt": "x", "meta": ' + "[" * 150 + "]" * 150 + "}\n").encode(),
        error="{path}:1: JSON nested more than 100 levels deep",
    ),
    Case(
        "nested-5000-deep-json-document",
        "p.json",
        ("[" * 5000 + "]" * 5000).encode(),
        error="{path}: JSON nested too deeply (imitlab reads at most 100 levels)",
    ),
    Case(
        "integer-with-5000-digits",
        "p.jsonl",
        ('{"prompt": "x", "n": ' + "9" * 5000 + "}\n").encode(),
        error="{path}:1: not valid JSON (Exceeds the limit (4300 digits) for integer string conversion: "
        "value has 5000 digits)",
    ),
    Case(
        "nul-byte",
        "p.jsonl",
        jl(P("ok")).encode() + b'{"prompt": "a\x00b"}\n',
        error="{path}:2: NUL byte at column 14 (a binary file, or UTF-16 without a byte-order mark?); "
        "re-save as UTF-8 text",
    ),
    # -- line ends and lines ---------------------------------------------------------------------------------------
    Case("crlf", "p.jsonl", jl(P("a"), P("b"), end="\r\n").encode(), ("a", "b")),
    Case("cr-only", "p.jsonl", jl(P("a"), P("b"), end="\r").encode(), ("a", "b")),
    Case(
        "mixed-line-ends",
        "p.jsonl",
        (jl(P("a")) + jl(P("b"), end="\r\n") + jl(P("c"), end="\r")).encode(),
        ("a", "b", "c"),
    ),
    Case(
        "crlf-error-on-line-3",
        "p.jsonl",
        (jl(P("a"), P("b"), end="\r\n") + '{"prompt": }\r\n').encode(),
        error="{path}:3: not valid JSON at column 12 (Expecting value)",
    ),
    Case(
        "cr-only-error-on-line-2",
        "p.jsonl",
        (jl(P("a"), end="\r") + '{"prompt": "b",}\r').encode(),
        error="{path}:2: not valid JSON at column 16 (Expecting property name enclosed in double quotes)",
    ),
    Case(
        "trailing-garbage",
        "p.jsonl",
        b'{"prompt": "a"} xyz\n',
        error="{path}:1: not valid JSON at column 17 (Extra data)",
    ),
    Case("empty-file", "p.jsonl", b"", error="no prompts found in {path} (the files hold no records)"),
    Case(
        "only-blank-lines", "p.jsonl", b"\n  \r\n\t\n", error="no prompts found in {path} (the files hold no records)"
    ),
    Case("blank-lines-between", "p.jsonl", ("\n" + jl(P("a")) + "\n\n" + jl(P("b"))).encode(), ("a", "b")),
    Case(
        "truncated-last-line",
        "p.jsonl",
        (jl(P("a")) + '{"prompt": "b').encode(),
        error="{path}:2: not valid JSON at column 12 (Unterminated string starting at)",
    ),
    # -- JSON document or JSON lines -------------------------------------------------------------------------------
    Case("json-array", "p.json", json.dumps([P("a"), P("b")], indent=1).encode(), ("a", "b")),
    Case("json-lines-named-json", "p.json", jl(P("a"), P("b")).encode(), ("a", "b")),
    Case("json-array-named-jsonl", "p.jsonl", json.dumps([P("a"), P("b")]).encode(), ("a", "b")),
    Case("json-array-utf16-bom", "p.json", json.dumps([P("ä")], ensure_ascii=False).encode("utf-16"), ("ä",)),
    Case("json-scalar", "p.json", b"42", error="{path}: expected a JSON array of records, got int"),
    Case(
        "json-array-broken-on-line-3",
        "p.json",
        b'[\n {"prompt": "a"},\n {"prompt": ]\n',
        error="{path}:3: not valid JSON at column 13 (Expecting value)",
    ),
    Case(
        "json-array-latin1-on-line-2",
        "p.json",
        '[\r\n {"prompt": "café"}]'.encode("latin-1"),
        error="{path}:2: not UTF-8 (byte 0xe9 at column 17); re-save as UTF-8",
    ),
    # -- fields ------------------------------------------------------------------------------------------------------
    Case(
        "wrong-field-type",
        "p.jsonl",
        jl(P("a"), {"prompt": 5}).encode(),
        error="{path}:2: field 'prompt' must be a str (field format)",
    ),
    Case(
        "missing-fields",
        "p.jsonl",
        jl({"foo": 1}).encode(),
        error="{path}:1: unknown prompt format (keys: foo); expected one of: ShareGPT 'conversations', OpenAI "
        "'messages', Alpaca 'instruction', or a 'prompt'/'question'/'text'/'turns' field",
    ),
    Case(
        "record-not-an-object",
        "p.jsonl",
        (jl(P("a")) + "[1, 2]\n").encode(),
        error="{path}:2: expected a JSON object (field format), got list",
    ),
    # -- gzip ----------------------------------------------------------------------------------------------------------
    Case("gzip", "p.jsonl.gz", _gzip(TWO.encode()), ("héllo", "wörld")),
    Case("gzip-utf16-bom", "p.jsonl.gz", _gzip(TWO.encode("utf-16")), ("héllo", "wörld")),
    Case("gzip-without-gz-name", "p.jsonl", _gzip(TWO.encode()), ("héllo", "wörld")),
    Case("gz-name-but-plain-text", "p.jsonl.gz", TWO.encode(), ("héllo", "wörld")),
    Case(
        "gzip-truncated",
        "p.jsonl.gz",
        _gzip(jl(*(P(f"prompt {i}") for i in range(2000))).encode())[:-200],
        error="{path}:1: gzip data is corrupt or truncated (Compressed file ended before the end-of-stream marker "
        "was reached)",
    ),
    # -- plain-text prompt files -------------------------------------------------------------------------------------
    Case("txt-bom", "p.txt", BOM8 + b"hello\nworld\n", ("hello", "world")),
    Case("txt-utf16-bom", "p.txt", "hello\r\nwörld\r\n".encode("utf-16"), ("hello", "wörld")),
    Case(
        "txt-latin1",
        "p.txt",
        "hello\ncafé\n".encode("latin-1"),
        error="{path}:2: not UTF-8 (byte 0xe9 at column 4); re-save as UTF-8",
    ),
]


def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run ``imitlab ARGS`` in this process through the real entry point; (exit status, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["imitlab", *args])
    with pytest.raises(SystemExit) as done:
        run()
    out = capsys.readouterr()
    code = done.value.code
    return (code if isinstance(code, int) else 1 if code else 0), out.out, out.err


def one_line_error(code: int, out: str, err: str) -> str:
    """The message of a refusal: exit 2, a single stderr line ``error: ...``, no traceback."""
    assert "Traceback" not in out + err
    assert code == 2, (code, out, err)
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0].removeprefix("error: ")


@pytest.fixture(autouse=True)
def _default_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IMITLAB_MAX_LINE_MB", raising=False)
    monkeypatch.delenv("IMITLAB_DEBUG", raising=False)


def test_there_are_at_least_30_cases() -> None:
    assert len(CASES) >= 30 and len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_prompts_import(
    case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / case.file
    path.write_bytes(case.data)
    out = tmp_path / "set.jsonl"
    code, stdout, stderr = cli(monkeypatch, capsys, "prompts", "import", str(path), "--out", str(out))
    if case.error:
        assert one_line_error(code, stdout, stderr) == case.error.format(path=path)
        assert not out.exists()
    else:
        assert code == 0 and "Traceback" not in stdout + stderr, stderr
        assert [json.loads(line)["turns"][0] for line in out.read_text(encoding="utf-8").splitlines()] == list(
            case.accepted
        )


def test_a_50_mb_line_is_refused_with_the_limit_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "huge.jsonl"
    with open(path, "w", encoding="utf-8") as f:
        f.write(jl(P("fine")) + '{"prompt": "' + "x" * 50_000_000 + '"}\n' + jl(P("after")))
    args = ("prompts", "import", str(path), "--out", str(tmp_path / "set.jsonl"))
    assert one_line_error(*cli(monkeypatch, capsys, *args)) == (
        f"{path}:2: line longer than 16 MiB; split the record, or raise the limit with IMITLAB_MAX_LINE_MB"
    )
    monkeypatch.setenv("IMITLAB_MAX_LINE_MB", "64")  # the limit is a setting, not a wall
    code, _, stderr = cli(monkeypatch, capsys, *args)
    assert code == 0, stderr
    assert [len(json.loads(x)["turns"][0]) for x in (tmp_path / "set.jsonl").read_text().splitlines()] == [
        4,
        50_000_000,
        5,
    ]


def test_line_numbers_count_blank_lines_and_every_kind_of_line_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "p.jsonl"
    path.write_bytes(b'{"prompt": "a"}\r\n\r\n{"prompt": "b"}\r{"prompt": "c"}\n')
    code, _, stderr = cli(monkeypatch, capsys, "prompts", "import", str(path), "--out", str(tmp_path / "s.jsonl"))
    assert code == 0, stderr
    assert [json.loads(x)["id"] for x in (tmp_path / "s.jsonl").read_text().splitlines()] == ["p:1", "p:3", "p:4"]


# -- the same reader behind the other commands ------------------------------------------------------------------------
def _conversation(cid: str, answer: str = "fine") -> dict:
    return {"id": cid, "messages": [{"role": "user", "content": f"q {cid}"}, {"role": "assistant", "content": answer}]}


DATA_CASES = [
    ("conversations-utf16-bom", jl(_conversation("a"), _conversation("b")).encode("utf-16"), ""),
    ("conversations-crlf-bom", BOM8 + jl(_conversation("a"), end="\r\n").encode(), ""),
    (
        "conversations-latin1",
        jl(_conversation("a")).encode() + jl(_conversation("b", "très")).encode("latin-1"),
        "{path}:2: not UTF-8 (byte 0xe8 at column "
        f"{json.dumps(_conversation('b', 'très'), ensure_ascii=False).index('è') + 1}); re-save as UTF-8",
    ),
    (
        "conversations-duplicate-id",
        jl(_conversation("a"), _conversation("a")).encode(),
        "{path}:2: duplicate id 'a'",
    ),
    (
        "conversations-wrong-role",
        jl({"id": "a", "messages": [{"role": "bot", "content": "x"}]}).encode(),
        "{path}:1: messages[0].role is 'bot'; expected one of system, user, assistant",
    ),
    (
        "conversations-lone-surrogate",
        jl(_conversation("a")).encode() + jl(_conversation("b", "x\\udfffy")).encode().replace(b"\\\\", b"\\"),
        "{path}:2: field 'messages[1].content' holds an unpaired surrogate \\udfff (not valid Unicode); "
        "fix that \\u escape",
    ),
]


@pytest.mark.parametrize(("name", "data", "error"), DATA_CASES, ids=[c[0] for c in DATA_CASES])
def test_data_dedup_reads_conversation_files(
    name: str,
    data: bytes,
    error: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "conversations.jsonl"
    path.write_bytes(data)
    result = cli(monkeypatch, capsys, "data", "dedup", "--in", str(path), "--out", str(tmp_path / "out"))
    if error:
        assert one_line_error(*result) == error.format(path=path)
    else:
        assert result[0] == 0 and "Traceback" not in result[1] + result[2], result[2]
        written = (tmp_path / "out" / "conversations.jsonl").read_text(encoding="utf-8").splitlines()
        given = data.decode("utf-16" if data.startswith(codecs.BOM_UTF16_LE) else "utf-8-sig").splitlines()
        assert [json.loads(x)["id"] for x in written] == [json.loads(x)["id"] for x in given]


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (jl({"id": "a", "turns": ["x"]}).encode("utf-16-le"),
         "{path}:1: NUL byte at column 2 (a binary file, or UTF-16 without a byte-order mark?); re-save as UTF-8 text"),
        (jl({"id": "a", "turns": ["naïve"]}).encode("latin-1"),
         "{path}:1: not UTF-8 (byte 0xef at column 26); re-save as UTF-8"),
        (b'{"id": "a", "turns": ["\\udbff"]}\n', "{path}:1: field 'turns[0]' holds an unpaired surrogate \\udbff (not "
         "valid Unicode); fix that \\u escape"),
    ],
    ids=["utf16-without-bom", "latin1", "lone-surrogate-escape"],
)  # fmt: skip
def test_collect_refuses_a_bad_prompt_file_before_any_request(
    data: bytes, error: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "set.jsonl"
    path.write_bytes(data)
    args = ("collect", "--teacher", "openai:none", "--base-url", "http://127.0.0.1:9/v1", "--prompts", str(path))
    message = one_line_error(*cli(monkeypatch, capsys, *args, "--out", str(tmp_path / "out")))
    # collect may say which readers it tried; the reader's own line must be in it, whole
    assert error.format(path=path) in message
    assert not (tmp_path / "out" / "conversations.jsonl").exists()


def test_rate_init_reads_pairs_through_the_same_reader(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pairs = tmp_path / "pairs.jsonl"
    row = {"id": 1, "prompt": "p", "a": "x", "b": "y"}
    pairs.write_bytes(jl(row).encode("utf-16"))
    code, _, stderr = cli(monkeypatch, capsys, "rate", "init", "--db", str(tmp_path / "r.db"), "--pairs", str(pairs))
    assert code == 0, stderr
    pairs.write_bytes(jl(row).encode() + b'{"id": 2, "prompt": "p\x00", "a": "x", "b": "y"}\n')
    args = ("rate", "init", "--db", str(tmp_path / "r.db"), "--pairs", str(pairs))
    assert one_line_error(*cli(monkeypatch, capsys, *args)) == (
        f"{pairs}:2: NUL byte at column 23 (a binary file, or UTF-16 without a byte-order mark?); re-save as UTF-8 text"
    )


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ("name: x\r\nteacher: t\r\nbases: [café]\r\n".encode("latin-1"),
         "{path}:3: not UTF-8 (byte 0xe9 at column 12); re-save as UTF-8"),
        (b"name: x\nteacher: [t\nbases: b\n",
         "{path}:3: not valid YAML (expected ',' or ']', but got ':' at column 6)"),
        (b"name: x\nteacher: " + b"[" * 5000 + b"]" * 5000 + b"\n", "{path}: YAML nested too deeply"),
    ],
    ids=["latin1", "unclosed-bracket", "nested-5000-deep"],
)  # fmt: skip
def test_sweep_config_errors_are_one_line(
    data: bytes, error: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "sweep.yaml"
    path.write_bytes(data)
    assert one_line_error(*cli(monkeypatch, capsys, "sweep", str(path))) == error.format(path=path)


def test_benchmark_csv_with_a_bom_keeps_its_first_cell(tmp_path: Path) -> None:
    path = tmp_path / "x_test.csv"
    path.write_bytes(BOM8 + b'Which?,a,b,c,d,A\r\n"two\r\nlines",a,b,c,d,B\r\n')
    rows = list(read_csv(path, 6))
    assert rows == [(1, ["Which?", "a", "b", "c", "d", "A"]), (3, ["two\nlines", "a", "b", "c", "d", "B"])]
    path.write_bytes(b"ok,a,b,c,d,A\nn\xe4h,a,b,c,d,A\n")
    with pytest.raises(ImitlabError, match=r"x_test\.csv:2: not UTF-8 \(byte 0xe4 at column 2\); re-save as UTF-8$"):
        list(read_csv(path, 6))


# -- the text layer on its own ------------------------------------------------------------------------------------
def test_open_text_and_read_text_agree_with_iter_text_lines(tmp_path: Path) -> None:
    path = tmp_path / "t.txt.gz"
    path.write_bytes(_gzip(codecs.BOM_UTF16_BE + "one\r\ntwo\rthree\n\nfour".encode("utf-16-be")))
    assert list(iter_text_lines(path)) == [(1, "one"), (2, "two"), (3, "three"), (4, ""), (5, "four")]
    assert read_text(path) == "one\ntwo\nthree\n\nfour"
    with open_text(path) as f:
        assert f.readline() == "one\n"
        assert list(f) == ["two\n", "three\n", "\n", "four\n"]
    with open_text(path) as f:
        assert f.read(5) == "one\nt" and f.read() == "wo\nthree\n\nfour\n"


def test_a_lower_line_limit_applies_to_lines_not_to_json_documents(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IMITLAB_MAX_LINE_MB", "0.5")
    lines = tmp_path / "l.txt"
    lines.write_text("short\n" + "y" * 600_000 + "\n")
    with pytest.raises(ImitlabError, match=r"l\.txt:2: line longer than 0\.5 MiB"):
        list(iter_text_lines(lines))
    document = tmp_path / "d.json"
    document.write_text(json.dumps([P("y" * 600_000)]))  # one line, but a document: read whole
    assert len(read_text(document)) == 600_000 + len('[{"prompt": ""}]')
    monkeypatch.setenv("IMITLAB_MAX_LINE_MB", "lots")
    with pytest.raises(ImitlabError, match=r"IMITLAB_MAX_LINE_MB='lots': expected a number of MiB"):
        list(iter_text_lines(lines))


def test_a_directory_or_unreadable_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ImitlabError, match=rf"^{tmp_path}: cannot read \(Is a directory\)$"):
        read_text(tmp_path)
    locked = tmp_path / "locked.txt"
    locked.write_text("x")
    locked.chmod(0)
    if os.access(locked, os.R_OK):  # root reads anything
        pytest.skip("running as root: a mode-0 file is still readable")
    with pytest.raises(ImitlabError, match=r"locked\.txt: cannot read \(Permission denied\)$"):
        list(iter_text_lines(locked))


# -- no traceback reaches a user; --debug shows it ---------------------------------------------------------------
def test_an_unexpected_exception_is_one_line_and_debug_shows_the_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import imitlab.prompts.importers as importers

    def broken(*args: object, **kwargs: object) -> None:
        raise KeyError("turns")

    monkeypatch.setattr(importers, "import_prompts", broken)
    args = ("prompts", "import", str(tmp_path / "x.jsonl"), "--out", str(tmp_path / "o.jsonl"))
    code, out, err = cli(monkeypatch, capsys, *args)
    assert code == 1 and "Traceback" not in out + err
    assert err.splitlines() == ["error: KeyError: 'turns' (unexpected; rerun with --debug to see the traceback)"]
    code, _, err = cli(monkeypatch, capsys, "--debug", *args)
    assert code == 1 and "Traceback (most recent call last)" in err and "raise KeyError" in err
    assert err.splitlines()[-1] == "error: KeyError: 'turns' (unexpected; rerun with --debug to see the traceback)"
    monkeypatch.setenv("IMITLAB_DEBUG", "1")
    code, _, err = cli(monkeypatch, capsys, *args)
    assert code == 1 and "Traceback (most recent call last)" in err


def test_a_file_that_cannot_be_written_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "p.jsonl"
    source.write_text(jl(P("a")))
    (tmp_path / "file").write_text("not a directory")
    out = tmp_path / "file" / "set.jsonl"
    message = one_line_error(*cli(monkeypatch, capsys, "prompts", "import", str(source), "--out", str(out)))
    assert message == f"{tmp_path / 'file'}: File exists"


def test_the_installed_entry_point_prints_one_line_and_debug_the_traceback(tmp_path: Path) -> None:
    path = tmp_path / "latin1.jsonl"
    path.write_bytes('{"prompt": "café"}\n'.encode("latin-1"))
    env = {**os.environ, "COLUMNS": "40"}  # a narrow terminal must not wrap the line
    env.pop("IMITLAB_DEBUG", None)
    command = [sys.executable, "-m", "imitlab", "prompts", "import", str(path), "--out", str(tmp_path / "o.jsonl")]
    plain = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
    assert plain.returncode == 2 and plain.stdout == ""
    assert plain.stderr == f"error: {path}:1: not UTF-8 (byte 0xe9 at column 16); re-save as UTF-8\n"
    with_debug = [*command[:3], "--debug", *command[3:]]
    debug = subprocess.run(with_debug, capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
    assert debug.returncode == 2 and "Traceback (most recent call last)" in debug.stderr
    assert debug.stderr.splitlines()[-1] == plain.stderr.strip()
