"""Files that survive crashes and files people really have: atomic writes (a reader, or a crash, never sees a
half-written file or directory), torn-tail repair for append-only logs, and the one text/JSON/JSONL reader every
input file goes through (UTF-8 with or without a BOM, UTF-16 with a BOM, gzip; one-line errors naming file,
line and column for anything else)."""

from __future__ import annotations

import codecs
import contextlib
import gzip
import hashlib
import io
import json
import logging
import os
import re
import shutil
import tempfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from imitlab.errors import ImitlabError

log = logging.getLogger(__name__)


def sha256_file(path: str | os.PathLike[str], block: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(block):
            digest.update(chunk)
    return digest.hexdigest()


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike[str], *, is_dir: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling of ``dest``; on success rename it onto ``dest``, on error delete it.

    The temporary lives in the same directory so the final ``os.replace`` is a same-filesystem rename,
    which POSIX makes atomic. Its name starts with ``.tmp-`` so a crashed leftover is never mistaken
    for a cache entry (and :func:`clean_stale_temps` can sweep it).
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if is_dir:
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{dest.name}-", dir=dest.parent))
    else:
        fd, name = tempfile.mkstemp(prefix=f".tmp-{dest.name}-", dir=dest.parent)
        os.close(fd)
        tmp = Path(name)
    try:
        yield tmp
        # mkstemp/mkdtemp create private (0600/0700) entries; give the result the usual umask-based mode.
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod((0o777 if is_dir else 0o666) & ~umask)
        if is_dir and dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(dest: str | os.PathLike[str], text: str) -> None:
    with atomic_path(dest) as tmp:
        tmp.write_text(text, encoding="utf-8")


def clean_stale_temps(directory: str | os.PathLike[str]) -> None:
    """Remove ``.tmp-*`` leftovers of writes that were killed before they could clean up."""
    directory = Path(directory)
    if not directory.is_dir():
        return
    for leftover in directory.glob(".tmp-*"):
        if leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)


# -- reading -------------------------------------------------------------------------------------------------
# Every reader of a user's file (prompts, data sets, answers, benchmark files, configs) comes through here, so
# every file gets the same rules: UTF-8 with or without a byte-order mark, UTF-16 with one, gzip by its magic
# bytes, \n, \r\n and \r line ends; anything else is refused with one line naming the file, line and column.
MAX_LINE_MB = 16  # a longer line is refused (IMITLAB_MAX_LINE_MB overrides); JSON documents are not lines
MAX_JSON_DEPTH = 100  # deeper JSON could not be written back or walked without hitting Python's recursion limit
_GZIP_MAGIC = b"\x1f\x8b"
_BOMS = ((codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"))
_UTF32_BOMS = (codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)  # checked first: the LE one starts like UTF-16 LE's
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_GZIP_ERRORS = (OSError, EOFError, zlib.error)


def max_line_chars() -> int:
    raw = os.environ.get("IMITLAB_MAX_LINE_MB", "")
    try:
        megabytes = float(raw) if raw else MAX_LINE_MB
    except ValueError:
        raise ImitlabError(f"IMITLAB_MAX_LINE_MB={raw!r}: expected a number of MiB") from None
    return max(1, int(megabytes * 2**20))


def _unreadable(path: Path, line: int | None, exc: BaseException) -> ImitlabError:
    where = f"{path}:{line}" if line else str(path)
    if isinstance(exc, OSError) and not isinstance(exc, gzip.BadGzipFile) and exc.strerror:
        return ImitlabError(f"{where}: cannot read ({exc.strerror})")
    return ImitlabError(f"{where}: gzip data is corrupt or truncated ({exc})")


@contextlib.contextmanager
def _open_bytes(path: Path) -> Iterator[tuple[IO[bytes], str]]:
    """The file's bytes after its byte-order mark (gunzipped when it starts with gzip's magic bytes),
    and the encoding they are in."""
    try:
        f = open(path, "rb")  # closed by the with below, also when the caller stops early
    except OSError as exc:
        raise ImitlabError(f"{path}: cannot read ({exc.strerror or exc})") from None
    with f:
        stream: IO[bytes] = f
        try:
            if f.read(2) == _GZIP_MAGIC:
                f.seek(0)
                stream = gzip.GzipFile(fileobj=f, mode="rb")
            f.seek(0)
            head = stream.read(4)
        except _GZIP_ERRORS as exc:
            raise _unreadable(path, 1, exc) from None
        if head.startswith(_UTF32_BOMS):
            raise ImitlabError(f"{path}:1: not UTF-8 (byte 0x{head[0]:02x} at column 1); re-save as UTF-8")
        encoding, skip = next(((enc, len(bom)) for bom, enc in _BOMS if head.startswith(bom)), ("utf-8", 0))
        stream.seek(skip)
        yield stream, encoding


def _nul_error(path: Path, line: int, column: int) -> ImitlabError:
    return ImitlabError(
        f"{path}:{line}: NUL byte at column {column} (a binary file, or UTF-16 without a byte-order mark?); "
        "re-save as UTF-8 text"
    )


def _decode_utf8(data: bytes, path: Path, lineno: int) -> str:
    """One line's bytes as UTF-8; the first bad byte or NUL byte is reported with its column."""
    nul = data.find(b"\x00")  # looked for first: UTF-16 without a BOM shows as NULs before any bad byte
    try:
        text = (data if nul < 0 else data[:nul]).decode("utf-8")
    except UnicodeDecodeError as exc:
        column = len(data[: exc.start].decode("utf-8")) + 1  # everything before the first bad byte decodes
        raise ImitlabError(
            f"{path}:{lineno}: not UTF-8 (byte 0x{data[exc.start]:02x} at column {column}); re-save as UTF-8"
        ) from None
    if nul >= 0:
        raise _nul_error(path, lineno, len(text) + 1)
    return text


def _check_utf16(text: str, path: Path, line: int, offset: int = 0) -> None:
    """Refuse unpaired surrogates and NUL characters in decoded UTF-16 (``offset``: where ``text`` starts on
    its line)."""
    if surrogate := _LONE_SURROGATE.search(text):
        raise ImitlabError(
            f"{path}:{line}: not valid UTF-16 (unpaired surrogate 0x{ord(surrogate.group()):04x} at column "
            f"{offset + surrogate.start() + 1}); re-save as UTF-8"
        )
    if (nul := text.find("\x00")) >= 0:
        raise _nul_error(path, line, offset + nul + 1)


def iter_text_lines(path: str | os.PathLike[str]) -> Iterator[tuple[int, str]]:
    """Yield ``(line number, line)`` for every line of a text file, blank ones included, without line ends.

    \\n, \\r\\n and a lone \\r each end a line (so numbers match what an editor shows). Errors name the file,
    the line and the column: bytes that are not UTF-8, broken UTF-16, NUL bytes, a line longer than
    :func:`max_line_chars`, corrupt gzip data.
    """
    path = Path(path)
    limit = max_line_chars()
    with _open_bytes(path) as (raw, encoding):
        utf8 = encoding == "utf-8"
        # UTF-8 is read as Latin-1 (one character per byte, never an error) and decoded line by line, so that a
        # bad byte is reported on its own line and column; a TextIOWrapper decodes whole chunks ahead of the
        # line it returns. UTF-16 keeps unpaired surrogates (surrogatepass) for _check_text to place.
        text = io.TextIOWrapper(
            raw, encoding="latin-1" if utf8 else encoding, errors="strict" if utf8 else "surrogatepass", newline=None
        )
        lineno = 0
        while True:
            lineno += 1
            try:
                line = text.readline(limit + 1)
            except UnicodeDecodeError:  # UTF-16 with an odd number of bytes: only the final decode can fail
                raise ImitlabError(
                    f"{path}:{lineno}: not valid UTF-16 (the file ends inside a character); re-save as UTF-8"
                ) from None
            except _GZIP_ERRORS as exc:
                raise _unreadable(path, lineno, exc) from None
            if not line:
                return
            if line.endswith("\n"):
                line = line[:-1]
            elif len(line) > limit:
                raise ImitlabError(
                    f"{path}:{lineno}: line longer than {limit / 2**20:g} MiB; split the record, or raise the "
                    "limit with IMITLAB_MAX_LINE_MB"
                )
            if utf8:
                line = _decode_utf8(line.encode("latin-1"), path, lineno)
            else:
                _check_utf16(line, path, lineno)
            yield lineno, line


def _line_and_column(text: str) -> tuple[int, int]:
    """Where the end of ``text`` (newlines already \\n) is: 1-based line and column."""
    return text.count("\n") + 1, len(text) - (text.rfind("\n") + 1) + 1


def _universal_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n") if "\r" in text else text


def read_text(path: str | os.PathLike[str]) -> str:
    """A whole text file, decoded and checked as :func:`iter_text_lines` does (line ends become \\n), with no
    limit on line length: for JSON documents, YAML configs and templates."""
    path = Path(path)
    with _open_bytes(path) as (raw, encoding):
        try:
            data = raw.read()
        except _GZIP_ERRORS as exc:
            raise _unreadable(path, None, exc) from None
    if encoding == "utf-8":
        nul = data.find(b"\x00")
        try:
            text = (data if nul < 0 else data[:nul]).decode("utf-8")
        except UnicodeDecodeError as exc:
            line, column = _line_and_column(_universal_newlines(data[: exc.start].decode("utf-8")))
            raise ImitlabError(
                f"{path}:{line}: not UTF-8 (byte 0x{data[exc.start]:02x} at column {column}); re-save as UTF-8"
            ) from None
        if nul >= 0:
            raise _nul_error(path, *_line_and_column(_universal_newlines(text)))
        return _universal_newlines(text)
    try:
        text = _universal_newlines(data.decode(encoding, "surrogatepass"))
    except UnicodeDecodeError as exc:
        line, _ = _line_and_column(_universal_newlines(data[: exc.start].decode(encoding, "surrogatepass")))
        raise ImitlabError(
            f"{path}:{line}: not valid UTF-16 (the file ends inside a character); re-save as UTF-8"
        ) from None
    problem = _LONE_SURROGATE.search(text) or re.search("\x00", text)
    if problem:
        line, column = _line_and_column(text[: problem.start()])
        _check_utf16(text[problem.start() :], path, line, column - 1)
    return text


class _CheckedText(io.TextIOBase):
    """A read-only text stream over :func:`iter_text_lines` (each line given back with a \\n)."""

    def __init__(self, path: Path) -> None:
        self._lines = iter_text_lines(path)
        self._pending = ""

    def readable(self) -> bool:
        return True

    def readline(self, size: int | None = -1) -> str:  # type: ignore[override]
        if not self._pending:
            self._pending = next((line + "\n" for _, line in self._lines), "")
        cut = len(self._pending) if size is None or size < 0 else size
        line, self._pending = self._pending[:cut], self._pending[cut:]
        return line

    def read(self, size: int | None = -1) -> str:
        parts, wanted = [], -1 if size is None else size
        while wanted != 0 and (part := self.readline(wanted)):
            parts.append(part)
            wanted = wanted - len(part) if wanted > 0 else wanted
        return "".join(parts)

    def close(self) -> None:
        self._lines.close()  # type: ignore[attr-defined]  # a generator: closing it closes the file
        super().close()


def open_text(path: str | os.PathLike[str]) -> IO[str]:
    """Open a text file for reading with the checks of :func:`iter_text_lines` (gzip, BOM, UTF-16 included)."""
    return _CheckedText(Path(path))  # type: ignore[return-value]


def _type_names(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(k.__name__ for k in kinds)


def _parse_json(text: str, path: Path, lineno: int | None) -> Any:
    """One JSON value: a JSONL line (``lineno``) or a whole document (``None``). Errors name file and line."""
    where = f"{path}:{lineno}" if lineno is not None else str(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        line = lineno if lineno is not None else exc.lineno
        raise ImitlabError(f"{path}:{line}: not valid JSON at column {exc.colno} ({exc.msg})") from None
    except RecursionError:
        raise ImitlabError(f"{where}: JSON nested too deeply (imitlab reads at most {MAX_JSON_DEPTH} levels)") from None
    except ValueError as exc:  # an integer longer than int() converts (4300 digits), say
        raise ImitlabError(f"{where}: not valid JSON ({str(exc).split(';')[0]})") from None


def _risks(source: str) -> tuple[bool, bool]:
    """Whether JSON text could hold an unpaired surrogate (a ``"\\ud800"`` escape) or nest too deeply: the
    walk in :func:`_check_json` runs only when it could find something."""
    return _SURROGATE_ESCAPE.search(source) is not None, source.count("[") + source.count("{") > MAX_JSON_DEPTH


def _check_json(value: Any, where: str, risks: tuple[bool, bool]) -> None:
    """Refuse what ``json.loads`` accepts but imitlab could not write back or walk: strings holding an unpaired
    surrogate and nesting deeper than :data:`MAX_JSON_DEPTH`."""
    surrogates, deep = risks
    if not (surrogates or deep):
        return

    def field(entry: tuple[Any, ...] | None) -> str:  # the path to a node, built only for the message
        parts: list[str] = []
        while entry is not None and entry[2] is not None:
            key = entry[2]  # a key may hold the surrogate itself: escaped, or printing the message would fail
            parts.append(f"[{key}]" if isinstance(key, int) else "." + key.encode("utf-8", "backslashreplace").decode())
            entry = entry[3]
        return "".join(reversed(parts)).lstrip(".") or "(top level)"

    stack: list[tuple[Any, int, str | int | None, Any]] = [(value, 1, None, None)]  # node, depth, key, parent
    while stack:
        entry = stack.pop()
        node, depth = entry[0], entry[1]
        if isinstance(node, str):
            if surrogates and (bad := _LONE_SURROGATE.search(node)):
                raise ImitlabError(
                    f"{where}: field '{field(entry)}' holds an unpaired surrogate \\u{ord(bad.group()):04x} "
                    "(not valid Unicode); fix that \\u escape"
                )
        elif isinstance(node, dict | list):
            if depth > MAX_JSON_DEPTH:
                raise ImitlabError(f"{where}: JSON nested more than {MAX_JSON_DEPTH} levels deep")
            items = list(node.items()) if isinstance(node, dict) else list(enumerate(node))
            for key, item in reversed(items):  # reversed: the first problem in file order is the one reported
                if surrogates and isinstance(key, str) and _LONE_SURROGATE.search(key):
                    stack.append((key, depth, key, entry))
                stack.append((item, depth + 1, key, entry))


def _first_character(path: Path) -> str:
    """The first non-blank character of a file (decoded, BOM skipped), to tell a JSON document from JSONL."""
    with _open_bytes(path) as (raw, encoding):
        try:
            head = raw.read(65536)
        except _GZIP_ERRORS as exc:
            raise _unreadable(path, 1, exc) from None
    return head.decode(encoding, "ignore").lstrip()[:1]


def iter_records(path: str | os.PathLike[str]) -> Iterator[tuple[str, int, Any]]:
    """Yield ``(where, number, record)`` from a JSONL file or a JSON document (gzipped or not).

    A file whose text starts with ``[``, or is named ``*.json``, is one JSON document: an array of records,
    or a single record (a ``*.json`` file holding one object per line is read as JSONL). Anything else is
    JSONL, blank lines skipped. ``where`` is ``file:LINE`` (JSONL) or ``file: record N`` (array), for error
    messages. Records are not checked; callers check their shape.
    """
    path = Path(path)
    if not path.is_file():
        raise ImitlabError(f"file not found: {path}")
    if _first_character(path) == "[" or path.name.removesuffix(".gz").endswith(".json"):
        text = read_text(path)
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            if exc.msg == "Extra data" and text.lstrip().startswith("{"):  # JSONL under a .json name
                yield from _numbered(_json_lines(path))
                return
            data = _parse_json(text, path, None)  # raises, with the message
        except (RecursionError, ValueError):
            data = _parse_json(text, path, None)  # raises, with the message
        if isinstance(data, dict):  # a single record; {"data": [...]}-style wrappers are not guessed at
            data = [data]
        if not isinstance(data, list):
            raise ImitlabError(f"{path}: expected a JSON array of records, got {type(data).__name__}")
        risks = _risks(text)
        for number, record in enumerate(data, 1):
            where = f"{path}: record {number}"
            _check_json(record, where, risks)
            yield where, number, record
        return
    yield from _numbered(_json_lines(path))


def _numbered(lines: Iterator[tuple[Path, int, Any]]) -> Iterator[tuple[str, int, Any]]:
    for path, lineno, record in lines:
        yield f"{path}:{lineno}", lineno, record


def iter_jsonl(
    path: str | os.PathLike[str], required: dict[str, type | tuple[type, ...]] | None = None
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, record) for every non-blank line of a JSONL file (gzipped or not).

    Every error names the file and line: a line that is not JSON, not an object, or lacks a ``required``
    field of the given type (and the encoding errors of :func:`iter_text_lines`).
    """
    path = Path(path)
    if not path.is_file():
        raise ImitlabError(f"file not found: {path}")
    for _, lineno, record in _json_lines(path):
        if not isinstance(record, dict):
            raise ImitlabError(f"{path}:{lineno}: expected a JSON object, got {type(record).__name__}")
        for name, kind in (required or {}).items():
            if name not in record:
                raise ImitlabError(f"{path}:{lineno}: missing field {name!r}")
            if not isinstance(record[name], kind):
                raise ImitlabError(
                    f"{path}:{lineno}: field {name!r} should be {_type_names(kind)}, got {type(record[name]).__name__}"
                )
        yield lineno, record


def _json_lines(path: Path) -> Iterator[tuple[Path, int, Any]]:
    """(path, line number, parsed value) for every non-blank line; every error names file and line."""
    for lineno, line in iter_text_lines(path):
        if not line.strip():
            continue
        value = _parse_json(line, path, lineno)
        _check_json(value, f"{path}:{lineno}", _risks(line))
        yield path, lineno, value


def read_jsonl(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every record of a JSONL file, in order (see :func:`iter_jsonl` for the errors)."""
    return [record for _, record in iter_jsonl(path)]


def repair_tail(path: str | os.PathLike[str]) -> int:
    """Cut a torn last line (no trailing newline: a write killed mid-line) off an append-only JSONL file,
    so the next append starts on a clean line. Returns the number of bytes removed."""
    path = Path(path)
    if not path.is_file():
        return 0
    size = path.stat().st_size
    if size == 0:
        return 0
    with open(path, "rb+") as f:
        f.seek(-1, os.SEEK_END)
        if f.read(1) == b"\n":
            return 0
        keep, pos = 0, size  # walk back to the previous newline in blocks, never reading the whole file
        while pos > 0:
            step = min(65536, pos)
            pos -= step
            f.seek(pos)
            idx = f.read(step).rfind(b"\n")
            if idx >= 0:
                keep = pos + idx + 1
                break
        f.truncate(keep)
        f.flush()
        os.fsync(f.fileno())
    log.warning("%s: removed a torn last line (%d bytes) left by an interrupted write", path, size - keep)
    return size - keep
