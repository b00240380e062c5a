"""Durable on-disk cache of finished teacher answers (SQLite).

Keyed by everything that determines an answer: teacher, model, sampling parameters,
system message and prompt. Each answer is committed (and synced) the moment it arrives,
so a run killed at any point and restarted re-queries nothing that finished. Requests,
API keys and headers are never stored, only the request's content and its outcome.
"""

import hashlib
import json
import os
import sqlite3

from orca_jax.teacher.client import ChatOutcome


def request_key(*, teacher: str, model: str, sampling: dict, system_message: str, prompt: str) -> str:
    """Stable hex digest of the request's content (canonical JSON, sorted keys)."""
    payload = json.dumps({"teacher": teacher, "model": model, "sampling": sampling,
                          "system_message": system_message, "prompt": prompt},
                         sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class AnswerCache:
    """`get(key) -> ChatOutcome | None`, `put(key, outcome)`; one SQLite file, safe to reopen after a crash."""

    def __init__(self, path: str):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self._db = sqlite3.connect(path)
        # WAL + FULL sync: a committed answer survives SIGKILL and power loss.
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("CREATE TABLE IF NOT EXISTS answers (key TEXT PRIMARY KEY, outcome TEXT NOT NULL)")
        self._db.commit()

    def get(self, key: str) -> ChatOutcome | None:
        row = self._db.execute("SELECT outcome FROM answers WHERE key = ?", (key,)).fetchone()
        return ChatOutcome.from_dict(json.loads(row[0])) if row else None

    def put(self, key: str, outcome: ChatOutcome) -> None:
        # INSERT OR IGNORE: the first answer for a key is the one kept, so a trace is never replaced.
        self._db.execute("INSERT OR IGNORE INTO answers (key, outcome) VALUES (?, ?)",
                         (key, json.dumps(outcome.to_dict(), ensure_ascii=False)))
        self._db.commit()

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM answers").fetchone()[0]

    def close(self) -> None:
        self._db.close()
