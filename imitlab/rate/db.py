"""The rating store: one SQLite file (WAL) holding the pairs, the raters and their verdicts.

Raters are known by name and authenticate with a token that is shown once and stored only as a
SHA-256 hash. Which answer a rater sees on the left is derived from a per-database secret
(HMAC of rater and pair), so it is random across raters and pairs, stable across reloads, and never
taken from the browser. A rating's primary key is (rater, pair): each pair is rated once per rater, and
a second submission of the same pair is ignored by the database, whatever the timing.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import secrets
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from imitlab.errors import ImitlabError
from imitlab.fileio import iter_jsonl

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS pairs (
    pair_id INTEGER PRIMARY KEY,
    item_id TEXT NOT NULL UNIQUE,
    prompt TEXT NOT NULL,
    answer_a TEXT NOT NULL,
    answer_b TEXT NOT NULL,
    model_a TEXT NOT NULL DEFAULT 'a',
    model_b TEXT NOT NULL DEFAULT 'b'
);
CREATE TABLE IF NOT EXISTS raters (
    name TEXT PRIMARY KEY,
    token_sha256 TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS ratings (
    rater TEXT NOT NULL REFERENCES raters(name),
    pair_id INTEGER NOT NULL REFERENCES pairs(pair_id),
    left_side TEXT NOT NULL CHECK (left_side IN ('a', 'b')),
    choice TEXT NOT NULL CHECK (choice IN ('A', 'B', 'tie')),
    verdict TEXT NOT NULL CHECK (verdict IN ('a', 'b', 'tie')),
    created_at TEXT NOT NULL,
    PRIMARY KEY (rater, pair_id)
);
"""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Shown:
    """A pair as one rater sees it: ``left`` is the model shown as answer A."""

    pair_id: int
    item_id: str
    prompt: str
    answer_left: str
    answer_right: str
    left: str


class RatingStore:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.connect() as db:
            db.execute("PRAGMA journal_mode=WAL")  # readers never block the writer, and vice versa
            db.executescript(SCHEMA)
            db.execute("INSERT OR IGNORE INTO meta VALUES ('secret', ?)", (secrets.token_hex(32),))
            self._secret = db.execute("SELECT value FROM meta WHERE key='secret'").fetchone()[0].encode()

    @contextlib.contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        """A short-lived connection per request; ``BEGIN IMMEDIATE`` for writes, busy waits up to 30 s."""
        db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        try:
            db.execute("PRAGMA busy_timeout=30000")
            db.execute("PRAGMA foreign_keys=ON")
            yield db
        finally:
            db.close()

    # -- keyed randomness -------------------------------------------------------------------------
    def _mac(self, *parts: object) -> bytes:
        return hmac.new(self._secret, ":".join(map(str, parts)).encode(), hashlib.sha256).digest()

    def left_side(self, rater: str, pair_id: int) -> str:
        return "a" if self._mac("side", rater, pair_id)[0] & 1 else "b"

    def csrf_token(self, rater: str) -> str:
        return self._mac("csrf", rater).hex()[:32]

    # -- setup --------------------------------------------------------------------------------------
    def add_pairs(self, pairs_file: str | Path, *, model_a: str = "a", model_b: str = "b") -> int:
        """Load ``pairs.jsonl`` rows ``{id, prompt, a, b}`` (as ``imitlab judge`` writes); returns how many are new.

        Reloading the same rows is a no-op; a row whose id is loaded with different text is an error.
        """
        path = Path(pairs_file)
        if not path.is_file():
            raise ImitlabError(f"pairs file not found: {path}")
        added = 0
        with self.connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                for n, row in iter_jsonl(path, {"id": (str, int), "prompt": str, "a": str, "b": str}):
                    values = (str(row["id"]), row["prompt"], row["a"], row["b"], model_a, model_b)
                    old = db.execute(
                        "SELECT prompt, answer_a, answer_b, model_a, model_b FROM pairs WHERE item_id=?", values[:1]
                    ).fetchone()
                    if old is None:
                        db.execute(
                            "INSERT INTO pairs (item_id, prompt, answer_a, answer_b, model_a, model_b) "
                            "VALUES (?,?,?,?,?,?)",
                            values,
                        )
                        added += 1
                    elif tuple(old) != values[1:]:
                        raise ImitlabError(f"{path}:{n}: pair {values[0]!r} is already loaded with other text")
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return added

    def add_rater(self, name: str) -> str:
        """Register a rater; returns their token (shown once: only its hash is stored)."""
        if not name or not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
            raise ImitlabError(f"rater name {name!r}: use letters, digits, '-', '_' or '.'")
        token = secrets.token_urlsafe(24)
        with self.connect() as db:
            try:
                db.execute("INSERT INTO raters VALUES (?,?,?)", (name, _hash_token(token), _now()))
            except sqlite3.IntegrityError as exc:
                raise ImitlabError(f"rater {name!r} already exists in {self.path}") from exc
        return token

    def rater_for_token(self, token: str | None) -> str | None:
        if not token:
            return None
        with self.connect() as db:
            row = db.execute("SELECT name FROM raters WHERE token_sha256=?", (_hash_token(token),)).fetchone()
        return row[0] if row else None

    # -- rating -------------------------------------------------------------------------------------
    def progress(self, rater: str) -> tuple[int, int]:
        with self.connect() as db:
            done = db.execute("SELECT COUNT(*) FROM ratings WHERE rater=?", (rater,)).fetchone()[0]
            total = db.execute("SELECT COUNT(*) FROM pairs").fetchone()[0]
        return int(done), int(total)

    def next_pair(self, rater: str) -> Shown | None:
        """The next pair this rater has not rated, in an order of its own (keyed on the rater)."""
        with self.connect() as db:
            rows = db.execute(
                "SELECT pair_id, item_id, prompt, answer_a, answer_b FROM pairs "
                "WHERE pair_id NOT IN (SELECT pair_id FROM ratings WHERE rater=?)",
                (rater,),
            ).fetchall()
        if not rows:
            return None
        pair_id, item_id, prompt, a, b = min(rows, key=lambda r: self._mac("order", rater, r[0]))
        left = self.left_side(rater, pair_id)
        return Shown(pair_id, item_id, prompt, a if left == "a" else b, b if left == "a" else a, left)

    def submit(self, rater: str, pair_id: int, choice: str) -> bool:
        """Record a choice (``A``, ``B`` or ``tie``, as shown on screen); False if this rater already rated it."""
        if choice not in ("A", "B", "tie"):
            raise ImitlabError(f"choice must be A, B or tie, not {choice!r}")
        left = self.left_side(rater, pair_id)
        verdict = "tie" if choice == "tie" else (left if choice == "A" else ("b" if left == "a" else "a"))
        with self.connect() as db:
            if db.execute("SELECT 1 FROM pairs WHERE pair_id=?", (pair_id,)).fetchone() is None:
                raise ImitlabError(f"no pair {pair_id}")
            cur = db.execute(
                "INSERT INTO ratings VALUES (?,?,?,?,?,?) ON CONFLICT (rater, pair_id) DO NOTHING",
                (rater, pair_id, left, choice, verdict, _now()),
            )
            return cur.rowcount == 1

    def ratings(self) -> list[dict[str, Any]]:
        with self.connect() as db:
            db.row_factory = sqlite3.Row
            rows = db.execute(
                "SELECT r.rater, p.item_id, p.pair_id, r.verdict, r.choice, r.left_side, r.created_at, "
                "p.model_a, p.model_b FROM ratings r JOIN pairs p USING (pair_id) ORDER BY p.item_id, r.rater"
            ).fetchall()
        return [dict(r) for r in rows]
