"""The spool: where inbound messages wait when the database cannot take them.

Twilio does not retry an SMS webhook that failed, so an outage of the database must not
lose the message. The webhook's records are encrypted (by the caller's `seal`, the vault's
Fernet key: they hold message texts and sealed addresses), appended to a local file and
fsynced before the webhook is answered; the worker replays them once the database is back.
Replay goes through the same dedupe key as a webhook, so a record replayed twice is stored
once. One file per process; a process replays every spool file it can lock (a crashed
process's file included).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import os
from collections.abc import Callable, Iterator
from pathlib import Path


class Spool:
    def __init__(
        self, directory: Path, *, seal: Callable[[bytes], bytes], unseal: Callable[[bytes], bytes]
    ) -> None:
        self._directory = directory
        self._seal = seal
        self._unseal = unseal
        self._path = directory / f"spool-{os.getpid()}.bin"

    def append(self, record: bytes) -> None:
        """Durably keep one record (returns only after fsync)."""
        self._directory.mkdir(parents=True, exist_ok=True)
        line = base64.b64encode(self._seal(record)) + b"\n"
        with open(self._path, "ab") as file:
            fcntl.flock(file, fcntl.LOCK_EX)
            file.write(line)
            file.flush()
            os.fsync(file.fileno())

    def pending(self) -> bool:
        return any(p.stat().st_size for p in self._files())

    def _files(self) -> list[Path]:
        return sorted(self._directory.glob("spool-*.bin")) if self._directory.exists() else []

    @contextlib.contextmanager
    def _locked(self, path: Path) -> Iterator[list[bytes] | None]:
        with open(path, "r+b") as file:
            try:
                fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield None  # another process is replaying it
                return
            records = [self._unseal(base64.b64decode(line)) for line in file.read().splitlines()]
            yield records
            # Only reached when the caller stored them all: the file can go.
            path.unlink()

    def replay(self, store: Callable[[list[bytes]], None]) -> int:
        """Hand every spooled record to `store` (one call per file); a file is deleted only
        after `store` returned. Raises what `store` raises (the database is still down)."""
        done = 0
        for path in self._files():
            with self._locked(path) as records:
                if records is None:
                    continue
                if records:
                    store(records)
                done += len(records)
        return done
