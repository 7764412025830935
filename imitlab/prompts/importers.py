"""Import prompts from the formats imitation data comes in, into one prompt set.

=============  =====================================================================================
``sharegpt``   ``{"id"?, "conversations": [{"from": "human"|"gpt"|"system", "value": str}, ...]}``
``alpaca``     ``{"instruction": str, "input"?: str, "output"?: str}`` (also self-instruct seed tasks,
               whose ``instances[0].input`` stands in for ``input``)
``openai``     ``{"messages": [{"role": "system"|"user"|"assistant", "content": str}, ...]}``
``field``      ``{"prompt"|"question"|"text": str}`` or ``{"turns": [str, ...]}`` (Koala, NQ, Vicuna, MT-Bench)
``text``       a ``.txt`` file, one prompt per line
=============  =====================================================================================

The same formats are read through ``datasets`` (rows instead of JSON records) from a hub dataset
(``hf:OWNER/NAME[:CONFIG]``, e.g. ``hf:tatsu-lab/alpaca`` or a ShareGPT-style repo), one hub data file
(``hf://datasets/OWNER/NAME/FILE``), a folder written by ``save_to_disk``, a folder of data files or a
``.parquet`` file; ``split`` picks the split (default ``train``). See :mod:`imitlab.sources`.

``turns="first"`` keeps the first user turn of each record; ``turns="all"`` keeps every user turn, and
the teacher then answers them one after another as a multi-turn conversation. JSON files may be JSONL
or a JSON array, optionally gzipped. Records without any user text are skipped and counted; records
that lack the format's fields are errors naming the file, line (or record) and the missing field.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from imitlab.prompts.schema import PromptFormatError, PromptRecord, iter_json_records, open_text
from imitlab.sources import Located, load_rows, parse_ref

Format = Literal["auto", "sharegpt", "alpaca", "openai", "field", "text"]
FORMATS: tuple[str, ...] = ("auto", "sharegpt", "alpaca", "openai", "field", "text")
TurnMode = Literal["first", "all"]
_HUMAN = {"human", "user"}
_TEXT_FIELDS = ("prompt", "question", "text")


@dataclass
class ImportResult:
    records: list[PromptRecord]
    skipped: Counter[str] = field(default_factory=Counter)  # reason -> count
    formats: dict[str, str] = field(default_factory=dict)  # file -> detected format


def detect_format(obj: Any, where: str) -> str:
    if isinstance(obj, dict):
        if "conversations" in obj:
            return "sharegpt"
        if "messages" in obj:
            return "openai"
        if "instruction" in obj:
            return "alpaca"
        if "turns" in obj or any(k in obj for k in _TEXT_FIELDS):
            return "field"
        keys = ", ".join(sorted(obj)[:8]) or "none"
    else:
        keys = type(obj).__name__
    raise PromptFormatError(
        f"{where}: unknown prompt format (keys: {keys}); expected one of: ShareGPT 'conversations', OpenAI "
        f"'messages', Alpaca 'instruction', or a 'prompt'/'question'/'text'/'turns' field"
    )


def _need(obj: Any, key: str, kind: type, where: str, fmt: str) -> Any:
    if not isinstance(obj, dict):
        raise PromptFormatError(f"{where}: expected a JSON object ({fmt} format), got {type(obj).__name__}")
    if key not in obj:
        raise PromptFormatError(f"{where}: missing field '{key}' expected by the {fmt} format")
    value = obj[key]
    if not isinstance(value, kind):
        raise PromptFormatError(f"{where}: field '{key}' must be a {kind.__name__} ({fmt} format)")
    return value


def _user_turns(obj: Any, fmt: str, where: str) -> tuple[list[str], str | None]:
    """The user turns (in order) and the system prompt, if the record has one."""
    if not isinstance(obj, dict):
        raise PromptFormatError(f"{where}: expected a JSON object ({fmt} format), got {type(obj).__name__}")
    system = None
    if fmt == "sharegpt":
        turns = []
        for i, turn in enumerate(_need(obj, "conversations", list, where, fmt)):
            value = _need(turn, "value", str, f"{where} conversations[{i}]", fmt)
            speaker = _need(turn, "from", str, f"{where} conversations[{i}]", fmt)
            if speaker in _HUMAN:
                turns.append(value)
            elif speaker == "system" and system is None and not turns:
                system = value
        return turns, system
    if fmt == "openai":
        turns = []
        for i, msg in enumerate(_need(obj, "messages", list, where, fmt)):
            content = _need(msg, "content", str, f"{where} messages[{i}]", fmt)
            role = _need(msg, "role", str, f"{where} messages[{i}]", fmt)
            if role == "user":
                turns.append(content)
            elif role == "system" and system is None and not turns:
                system = content
        return turns, system
    if fmt == "alpaca":
        instruction = _need(obj, "instruction", str, where, fmt)
        extra = obj.get("input") or ""
        instances = obj.get("instances")
        if not extra and isinstance(instances, list) and instances and isinstance(instances[0], dict):
            extra = instances[0].get("input") or ""
        if not isinstance(extra, str):
            raise PromptFormatError(f"{where}: field 'input' must be a string (alpaca format)")
        # Alpaca's own training template puts the input after the instruction, separated by a blank line.
        return [f"{instruction.strip()}\n\n{extra.strip()}" if extra.strip() else instruction], None
    if fmt == "field":
        if isinstance(obj, dict) and "turns" in obj:
            turns = _need(obj, "turns", list, where, fmt)
            if not all(isinstance(t, str) for t in turns):
                raise PromptFormatError(f"{where}: field 'turns' must be a list of strings")
            return list(turns), obj.get("system") if isinstance(obj.get("system"), str) else None
        for key in _TEXT_FIELDS:
            if isinstance(obj, dict) and key in obj:
                return [_need(obj, key, str, where, fmt)], None
        raise PromptFormatError(f"{where}: missing field: expected one of 'prompt', 'question', 'text', 'turns'")
    raise PromptFormatError(f"{where}: unknown format {fmt!r}; expected one of {', '.join(FORMATS[1:])}")


def is_dataset_ref(source: str | os.PathLike[str]) -> bool:
    """Read through ``datasets``: a hub reference, a folder (save_to_disk or data files) or a parquet file."""
    text = os.fspath(source)
    return text.startswith("hf:") or Path(text).is_dir() or text.endswith(".parquet")


def import_file(
    path: str | os.PathLike[str],
    *,
    fmt: Format = "auto",
    turns: TurnMode = "first",
    result: ImportResult | None = None,
    split: str = "train",
) -> ImportResult:
    """Import one file or ``datasets`` source. Ids are ``<file stem>:<line or record number>`` (stable across
    re-imports); the record's own id, if any, is kept in ``meta.orig_id``."""
    result = result or ImportResult(records=[])
    if fmt not in FORMATS:
        raise PromptFormatError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    if is_dataset_ref(path):
        return _import_rows(os.fspath(path), fmt, turns, result, split)
    path = Path(path)
    stem = path.name.removesuffix(".gz").rsplit(".", 1)[0]
    if fmt == "text" or (fmt == "auto" and path.name.removesuffix(".gz").endswith(".txt")):
        result.formats[str(path)] = "text"
        with open_text(path) as f:
            for lineno, line in enumerate(f, 1):
                if line.strip():
                    result.records.append(PromptRecord(id=f"{stem}:{lineno}", turns=[line.strip()], source=path.name))
                else:
                    result.skipped["blank line"] += 1
        return result
    detected = _add_records(iter_json_records(path), stem, path.name, fmt, turns, result)
    result.formats[str(path)] = detected or fmt
    return result


def _import_rows(text: str, fmt: Format, turns: TurnMode, result: ImportResult, split: str) -> ImportResult:
    """Rows of a ``datasets`` source, read as records of the same formats."""
    if fmt == "text":
        raise PromptFormatError(f"{text}: the text format is for .txt files; rows need a JSON format")
    ref = parse_ref(text, "prompts")
    name = ref.path.rstrip("/").rsplit("/", 1)[-1] if not isinstance(ref, Path) else ref.name
    stem = name.split(".")[0] or "dataset"
    rows = load_rows(Located(stem, "datasets", ref=ref), split)
    numbered = ((f"{ref} row {n}", n, row) for n, row in enumerate(rows, 1))
    detected = _add_records(numbered, stem, str(ref), fmt, turns, result)
    result.formats[str(ref)] = detected or fmt
    return result


def _add_records(
    records: Iterator[tuple[str, int, Any]], stem: str, source: str, fmt: Format, turns: TurnMode, result: ImportResult
) -> str | None:
    """Append one prompt per record (numbered ``stem:N``); returns the format detected from the first record."""
    detected: str | None = None if fmt == "auto" else fmt
    for where, number, obj in records:
        if detected is None:
            detected = detect_format(obj, where)
        user, system = _user_turns(obj, detected, where)
        user = [t.strip() for t in user if t.strip()]
        if not user:
            result.skipped["no user turn"] += 1
            continue
        meta: dict[str, Any] = {}
        if isinstance(obj, dict) and isinstance(obj.get("id"), str | int):
            meta["orig_id"] = obj["id"]
        result.records.append(
            PromptRecord(
                id=f"{stem}:{number}",
                turns=user if turns == "all" else user[:1],
                source=source,
                system=system,
                meta=meta,
            )
        )
    return detected


def import_prompts(
    paths: list[str | os.PathLike[str]],
    *,
    fmt: Format = "auto",
    turns: TurnMode = "first",
    dedupe: bool = True,
    split: str = "train",
) -> ImportResult:
    """Import several files or ``datasets`` sources into one prompt set. An empty result is an error, not an empty
    success.

    ``dedupe`` drops prompts whose turns repeat an earlier prompt exactly (counted in ``skipped``); ``split`` is
    the split read from ``datasets`` sources."""
    if turns not in ("first", "all"):
        raise PromptFormatError(f"turns must be 'first' or 'all', not {turns!r}")
    if not paths:
        raise PromptFormatError("no input files given")
    result = ImportResult(records=[])
    for path in paths:
        import_file(path, fmt=fmt, turns=turns, result=result, split=split)
    ids = Counter(r.id for r in result.records)
    clash = [i for i, c in ids.items() if c > 1]
    if clash:  # two inputs with the same file stem
        raise PromptFormatError(f"two input files give the same prompt id {clash[0]!r}; rename one of them")
    if dedupe:
        seen: set[tuple[str | None, tuple[str, ...]]] = set()
        kept = []
        for r in result.records:
            key = (r.system, tuple(r.turns))
            if key in seen:
                result.skipped["exact duplicate"] += 1
                continue
            seen.add(key)
            kept.append(r)
        result.records = kept
    if not result.records:
        skipped = ", ".join(f"{n} {why}" for why, n in result.skipped.items()) or "the files hold no records"
        raise PromptFormatError(f"no prompts found in {', '.join(map(str, paths))} ({skipped})")
    return result
