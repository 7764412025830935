"""The imitation-set schema: one OpenAI-style conversation per JSONL line.

Required fields::

    {"id": "sharegpt_500:17", "messages": [{"role": "user", "content": "..."},
                                           {"role": "assistant", "content": "..."}]}

``messages`` may start with one ``system`` message, alternates user/assistant and ends with an assistant
turn. Optional fields written by ``imitlab collect``: ``prompt_id`` and ``sample`` (records with the same
``prompt_id`` are samples of one prompt and are kept or dropped together), ``source``, ``teacher``,
``model``, ``params``, ``finish_reason``, ``usage`` {prompt_tokens, completion_tokens}, ``cached``,
``latency_s``, ``created``, ``meta``. Readers must ignore fields they do not know.

A *data set* is a directory holding ``conversations.jsonl`` and ``manifest.json``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from imitlab.errors import ImitlabError
from imitlab.fileio import atomic_path, iter_records

CONVERSATIONS = "conversations.jsonl"
MANIFEST = "manifest.json"
_ROLES = ("system", "user", "assistant")


class DataFormatError(ImitlabError, ValueError):
    """A conversations file does not follow the schema (the message names file, line and field)."""


def conversations_path(path: str | os.PathLike[str]) -> Path:
    """A data-set directory or a conversations file -> the conversations file."""
    path = Path(path)
    if path.is_dir():
        path = path / CONVERSATIONS
    if not path.is_file():
        raise DataFormatError(f"{path}: not found (expected a data-set directory or a conversations .jsonl file)")
    return path


def validate_record(obj: Any, where: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise DataFormatError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    if not isinstance(obj.get("id"), str) or not obj["id"]:
        raise DataFormatError(f"{where}: field 'id' must be a non-empty string")
    messages = obj.get("messages")
    if not isinstance(messages, list) or not messages:
        raise DataFormatError(f"{where}: field 'messages' must be a non-empty list")
    expected = "user"
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("content"), str):
            raise DataFormatError(f"{where}: messages[{i}] must be an object with a string 'content'")
        role = m.get("role")
        if role not in _ROLES:
            raise DataFormatError(f"{where}: messages[{i}].role is {role!r}; expected one of {', '.join(_ROLES)}")
        if role == "system" and i == 0:
            continue
        if role != expected:
            raise DataFormatError(f"{where}: messages[{i}].role is {role!r}; expected {expected!r} (turns alternate)")
        expected = "assistant" if role == "user" else "user"
    if messages[-1]["role"] != "assistant":
        raise DataFormatError(f"{where}: the last message must be the assistant's")
    return obj


def read_conversations(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read and validate a conversations file (or a data-set directory). Duplicate ids and emptiness are errors."""
    path = conversations_path(path)
    records, seen = [], set()
    try:  # the shared reader: encodings, line ends, gzip and JSON errors, each naming file and line
        for where, _, obj in iter_records(path):
            rec = validate_record(obj, where)
            if rec["id"] in seen:
                raise DataFormatError(f"{where}: duplicate id {rec['id']!r}")
            seen.add(rec["id"])
            records.append(rec)
    except DataFormatError:
        raise
    except ImitlabError as exc:
        raise DataFormatError(str(exc)) from None
    if not records:
        raise DataFormatError(f"{path}: the data set is empty")
    return records


def write_conversations(path: str | os.PathLike[str], records: Iterable[dict[str, Any]]) -> int:
    n = 0
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for rec in records:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
            n += 1
    return n


def group_key(rec: dict[str, Any]) -> str:
    """Samples of one prompt share a group; they are deduplicated, split and subset together."""
    return str(rec.get("prompt_id") or rec["id"])


def user_text(rec: dict[str, Any]) -> str:
    return "\n".join(m["content"] for m in rec["messages"] if m["role"] == "user")


def all_text(rec: dict[str, Any]) -> str:
    return "\n".join(m["content"] for m in rec["messages"])
