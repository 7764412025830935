"""imitlab.fileio: atomic writes, the shared JSONL reader and torn-tail repair."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from imitlab.errors import ImitlabError
from imitlab.fileio import (
    atomic_path,
    atomic_write_text,
    clean_stale_temps,
    iter_jsonl,
    iter_records,
    read_jsonl,
    repair_tail,
)


def test_atomic_write_leaves_the_old_file_when_the_writer_fails(tmp_path: Path) -> None:
    dest = tmp_path / "out.json"
    atomic_write_text(dest, "old\n")
    with pytest.raises(RuntimeError), atomic_path(dest) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed mid-write")
    assert dest.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]  # no temporary left behind


def test_clean_stale_temps_removes_only_leftovers(tmp_path: Path) -> None:
    (tmp_path / ".tmp-x-123").write_text("leftover")
    (tmp_path / ".tmp-d-456").mkdir()
    (tmp_path / "keep.jsonl").write_text("{}\n")
    clean_stale_temps(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.jsonl"]


def test_iter_jsonl_gives_line_numbers_and_reads_gzip(tmp_path: Path) -> None:
    plain = tmp_path / "a.jsonl"
    plain.write_text('{"id": 1}\n\n{"id": 2}\n')
    assert list(iter_jsonl(plain)) == [(1, {"id": 1}), (3, {"id": 2})]
    packed = tmp_path / "a.jsonl.gz"
    with gzip.open(packed, "wt", encoding="utf-8") as f:
        f.write('{"id": "x"}\n')
    assert read_jsonl(packed) == [{"id": "x"}]


@pytest.mark.parametrize(
    ("text", "required", "message"),
    [
        ('{"a": 1}\n{oops\n', None, r"bad\.jsonl:2: not valid JSON"),
        ('{"a": 1}\n[1, 2]\n', None, r"bad\.jsonl:2: expected a JSON object, got list"),
        ('{"a": 1}\n{"b": 1}\n', {"a": int}, r"bad\.jsonl:2: missing field 'a'"),
        ('{"a": "1"}\n', {"a": (int, float)}, r"bad\.jsonl:1: field 'a' should be int or float, got str"),
    ],
)
def test_iter_jsonl_errors_name_file_line_and_field(
    tmp_path: Path, text: str, required: dict[str, type | tuple[type, ...]] | None, message: str
) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(text)
    with pytest.raises(ImitlabError, match=message):
        list(iter_jsonl(path, required))


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ImitlabError, match=r"file not found: .*nope\.jsonl"):
        read_jsonl(tmp_path / "nope.jsonl")


def test_repair_tail_cuts_only_a_torn_last_line(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    whole = "".join(f'{{"i": {i}, "pad": "{"x" * 5000}"}}\n' for i in range(30))  # spans several 64 KiB blocks
    path.write_text(whole)
    assert repair_tail(path) == 0 and path.read_text() == whole
    path.write_text(whole + '{"i": 30, "pa')
    assert repair_tail(path) == len('{"i": 30, "pa')
    assert path.read_text() == whole
    path.write_text('{"torn": ')  # a file that is nothing but a torn line
    assert repair_tail(path) == 9 and path.read_text() == ""
    assert repair_tail(tmp_path / "absent.jsonl") == 0


def test_iter_records_reads_arrays_single_objects_and_jsonl(tmp_path: Path) -> None:
    array = tmp_path / "a.json"
    array.write_text('[{"id": 1},\n {"id": 2}]')
    assert [(w.rsplit("/", 1)[1], n, r) for w, n, r in iter_records(array)] == [
        ("a.json: record 1", 1, {"id": 1}),
        ("a.json: record 2", 2, {"id": 2}),
    ]
    single = tmp_path / "one.json"
    single.write_text('{\n  "id": "x"\n}\n')  # a pretty-printed single record is one record, not three lines
    assert [r for _, _, r in iter_records(single)] == [{"id": "x"}]
    lines = tmp_path / "l.jsonl"
    lines.write_text('{"id": 1}\n\n[1, 2]\n')  # records are not checked here: callers check their shape
    assert [(n, r) for _, n, r in iter_records(lines)] == [(1, {"id": 1}), (3, [1, 2])]
    unlabelled = tmp_path / "arr.txt"
    unlabelled.write_text('  [{"id": 3}]')  # an array is recognised by its first character, whatever the name
    assert [r for _, _, r in iter_records(unlabelled)] == [{"id": 3}]


def test_iter_records_errors_name_file_and_line(tmp_path: Path) -> None:
    broken = tmp_path / "b.json"
    broken.write_text('[{"id": 1},\n {"id": ]')
    with pytest.raises(ImitlabError, match=r"b\.json:2: not valid JSON"):
        list(iter_records(broken))
    scalar = tmp_path / "s.json"
    scalar.write_text("42")
    with pytest.raises(ImitlabError, match=r"s\.json: expected a JSON array of records, got int"):
        list(iter_records(scalar))
