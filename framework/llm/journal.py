"""Append-only JSONL journal of finished records: what makes a killed generation resumable.

Each finished record (rows or an error) is one line, written with a single ``os.write`` on an ``O_APPEND``
descriptor as soon as it finishes, so a killed process loses nothing it reported done; ``fsync`` runs in
batches (every ``fsync_every`` lines or ``fsync_seconds``) so a power cut loses at most one batch. On
opening, a torn last line (no newline, or not JSON) is cut off and its record runs again. A key may appear
more than once (an error record requested again on resume): its last line wins. One process at a time owns a
journal: it holds an exclusive ``flock`` on the file while open (the pipeline's stage lock already serializes
runs; this refuses any other writer instead of letting two ask for the same records).
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from pathlib import Path
from typing import Any

from framework.errors import UserInputError
from framework.redact import redact, secret_values


class Journal:
    """One generator's journal file.

    Args:
        path: The JSONL file (created with its directory).
        fsync_every: Lines between fsyncs.
        fsync_seconds: Longest time between fsyncs while lines arrive.
    """

    def __init__(self, path: Path, fsync_every: int = 64, fsync_seconds: float = 1.0) -> None:
        self.path = path
        self.fsync_every = fsync_every
        self.fsync_seconds = fsync_seconds
        self.dropped_torn_line = False
        self.records: dict[str, dict[str, Any]] = {}
        self._secrets = secret_values()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            self._own()
            self._load()
        except BaseException:
            os.close(self._fd)  # releases the lock, if it was taken
            raise
        self._unsynced = 0
        self._synced_at = time.monotonic()

    def _own(self) -> None:
        """Take the journal's exclusive lock, or refuse: another process is writing it."""
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserInputError(
                f"{self.path} is being written by another process (another run of the same stage). Wait for it "
                "to finish, or stop it, then run again: the finished records are reused."
            ) from None

    def _load(self) -> None:
        data = self.path.read_bytes()
        good = 0  # byte offset just past the last complete, parseable line
        lines = data.split(b"\n")
        for number, line in enumerate(lines[:-1], start=1):
            try:
                record = json.loads(line)
                key = record["key"]
            except (ValueError, KeyError, TypeError):
                if number == len(lines) - 1 and not lines[-1]:
                    break  # the last line is torn but has a newline (killed mid-write): drop it
                raise UserInputError(
                    f"{self.path}: line {number} is not a journal record. The journal is append-only and only its "
                    "last line can be torn by a crash, so the file was changed by hand. Delete the file to request "
                    "everything again, or restore it."
                ) from None
            self.records[key] = record  # a later line is a later attempt at the same record
            good += len(line) + 1
        if good != len(data):
            self.dropped_torn_line = True
            with open(self.path, "r+b") as handle:
                handle.truncate(good)
                handle.flush()
                os.fsync(handle.fileno())

    def __contains__(self, key: str) -> bool:
        return key in self.records

    def append(self, record: dict[str, Any]) -> None:
        """Write one finished record (it must have a ``key``), secrets redacted; fsync when the batch is due."""
        record = redact(record, self._secrets, by_name=False)
        line = (json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")
        view = memoryview(line)
        while view:  # os.write may write less than asked (rare for files): finish the line
            written = os.write(self._fd, view)
            view = view[written:]
        self.records[record["key"]] = record
        self._unsynced += 1
        if self._unsynced >= self.fsync_every or time.monotonic() - self._synced_at >= self.fsync_seconds:
            self.sync()

    def sync(self) -> None:
        """fsync what was written."""
        if self._unsynced:
            os.fsync(self._fd)
            self._unsynced = 0
        self._synced_at = time.monotonic()

    def close(self) -> None:
        """fsync and close."""
        if self._fd >= 0:
            self.sync()
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
