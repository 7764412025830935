"""Writing a data set: ``conversations.jsonl`` plus a ``manifest.json`` that traces it to its inputs.

The manifest records the operation and its parameters, each input's path and sha256 (and the input's own
manifest, so the chain back to the teacher and the prompt files is kept), counts, token statistics and
the sha256 of every file written.
"""

from __future__ import annotations

import json
import platform
import statistics
import time
from pathlib import Path
from typing import Any

from imitlab.data.schema import CONVERSATIONS, MANIFEST, group_key, write_conversations
from imitlab.fileio import atomic_write_text, sha256_file


def read_manifest(path: Path) -> dict[str, Any] | None:
    """The manifest next to a conversations file, if there is one."""
    candidate = (path if path.is_dir() else path.parent) / MANIFEST
    if not candidate.is_file():
        return None
    try:
        return json.loads(candidate.read_text(encoding="utf-8"))
    except (ValueError, RecursionError):  # not JSON, not UTF-8 (UnicodeDecodeError is a ValueError), absurd
        return None


def token_stats(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Word and character counts per role, and the teacher's own token counts where recorded."""
    words = {"user": 0, "assistant": 0, "system": 0}
    answer_words = []
    for rec in records:
        for m in rec["messages"]:
            words[m["role"]] += len(m["content"].split())
        answer_words.append(sum(len(m["content"].split()) for m in rec["messages"] if m["role"] == "assistant"))
    usage = [r["usage"] for r in records if isinstance(r.get("usage"), dict)]
    stats: dict[str, Any] = {
        "words": words,
        "chars": sum(len(m["content"]) for r in records for m in r["messages"]),
        "assistant_words_mean": round(statistics.fmean(answer_words), 2) if answer_words else 0,
        "assistant_words_median": statistics.median(answer_words) if answer_words else 0,
    }
    if usage:
        stats["teacher_prompt_tokens"] = sum(u.get("prompt_tokens") or 0 for u in usage)
        stats["teacher_completion_tokens"] = sum(u.get("completion_tokens") or 0 for u in usage)
    return stats


def _source_entry(path: Path) -> dict[str, Any]:
    entry: dict[str, Any] = {"path": str(path), "sha256": sha256_file(path)}
    parent = read_manifest(path)
    if parent is not None:
        entry["manifest"] = {k: parent.get(k) for k in ("operation", "teacher", "params", "counts", "sources")}
    return entry


def write_dataset(
    out: Path,
    records: list[dict[str, Any]],
    *,
    operation: str,
    inputs: list[Path],
    params: dict[str, Any],
    extra: dict[str, Any] | None = None,
    extra_files: list[str] | None = None,
) -> dict[str, Any]:
    """Write ``out/conversations.jsonl`` and ``out/manifest.json`` (both atomically); return the manifest."""
    out.mkdir(parents=True, exist_ok=True)
    write_conversations(out / CONVERSATIONS, records)
    sources = [_source_entry(p) for p in inputs]
    teachers = sorted({str(r["teacher"]) for r in records if r.get("teacher")})
    files = {CONVERSATIONS: {"sha256": sha256_file(out / CONVERSATIONS), "records": len(records)}}
    for name in extra_files or []:
        files[name] = {"sha256": sha256_file(out / name)}
    manifest = {
        "schema": "imitlab.dataset/1",
        "operation": operation,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "params": params,
        "teacher": teachers[0] if len(teachers) == 1 else teachers,
        "sources": sources,
        "counts": {"records": len(records), "groups": len({group_key(r) for r in records})},
        "token_stats": token_stats(records),
        **(extra or {}),
        "files": files,
        "versions": {"python": platform.python_version()},
    }
    atomic_write_text(out / MANIFEST, json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    return manifest
