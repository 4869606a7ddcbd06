"""The embedding cache: one vector per image content, per backbone, kept across runs.

Keyed by the sha256 of the file's bytes and by the model key (backbone, alpha, weights sha256,
precision, and the code key of embeddings: codeversion.py), so a renamed or moved crop is still a
hit, while a changed one, another backbone, or an upgrade that changed how crops are embedded, is
a miss. A second run on the same Samples, a run with only head options
changed, or one with 100 new crops embeds only what is new.

It is one SQLite file. Each batch is committed as it is computed, so a killed preprocess loses at
most one batch, and array tasks on one machine can share a cache. SQLite's locking is unreliable on
some network file systems: for array jobs across nodes, give each task its own --cache-dir or
accept that a busy cache slows the tasks down.
"""

import hashlib
import json
import sqlite3
from contextlib import contextmanager
from dataclasses import asdict

import numpy as np

from meerkat.core import atomic, codeversion
from meerkat.core.errors import MeerkatError

SQL_CHUNK = 500  # parameters per query, well under SQLite's limit


def model_key(spec) -> str:
    identity = {k: v for k, v in asdict(spec).items() if k != "weights"}  # the file may move; its hash may not
    parts = [identity, codeversion.key("embedding")]
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:32]


@contextmanager
def _named_errors(path):
    try:
        yield
    except sqlite3.Error as e:
        raise MeerkatError(
            f"embedding cache {path}: {e}; free some space, or choose another --cache-dir "
            "(delete the file to start an empty cache)"
        ) from e


class EmbeddingCache:
    def __init__(self, folder, spec):
        folder = atomic.ensure_dir(folder)
        self.key = model_key(spec)
        self.path = folder / "embeddings.sqlite"
        with _named_errors(self.path):
            self._open()

    def _open(self):
        self.db = sqlite3.connect(self.path, timeout=300, isolation_level=None)
        try:
            self.db.execute("PRAGMA journal_mode=WAL")
        except sqlite3.OperationalError:
            pass  # a file system without shared memory: the default journal still works
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS embeddings (model TEXT, sha256 BLOB, vector BLOB, "
            "PRIMARY KEY (model, sha256)) WITHOUT ROWID"
        )

    def get(self, hashes: list[bytes]) -> dict[bytes, np.ndarray]:
        with _named_errors(self.path):
            return self._get(hashes)

    def _get(self, hashes):
        found = {}
        for i in range(0, len(hashes), SQL_CHUNK):
            chunk = hashes[i : i + SQL_CHUNK]
            marks = ",".join("?" * len(chunk))
            rows = self.db.execute(
                f"SELECT sha256, vector FROM embeddings WHERE model = ? AND sha256 IN ({marks})", [self.key, *chunk]
            )
            found.update((h, np.frombuffer(v, np.float32)) for h, v in rows)
        return found

    def put(self, items) -> None:
        """Store (sha256, vector) pairs in one transaction."""
        rows = [(self.key, h, np.asarray(v, np.float32).tobytes()) for h, v in items]
        with _named_errors(self.path):
            self.db.execute("BEGIN IMMEDIATE")
            try:
                self.db.executemany("INSERT OR REPLACE INTO embeddings VALUES (?, ?, ?)", rows)
                self.db.execute("COMMIT")
            except sqlite3.Error:
                if self.db.in_transaction:  # SQLite may have rolled back already
                    self.db.execute("ROLLBACK")
                raise

    def close(self) -> None:
        self.db.close()


def content_hash(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()
