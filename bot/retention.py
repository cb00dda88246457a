"""Data lifecycle jobs: scheduled retention, and re-encrypting the reply vault after a key change.

`RetentionJob.run_once(now)` deletes, each kind in its own transactions (storage/retention.py
does the deleting):

    tips            final (closed, rejected, duplicate) for `retention_days`, not on legal
                    hold, with their files, notes, tags, follow-ups, message thread...
    vault entries   past `expires_at`
    inbound rows    processed, older than `inbound_retention_hours`
    reporter rows   silent for `tracker_retention_days`, no vault entry, nothing pending
    unattached files  older than `tracker_retention_days`, never part of a tip
    tracker events  Rasa events older than `tracker_retention_days`, per sender, each while
                    holding that sender's lock (`SenderLock`)

`run_forever()` repeats it every `retention_interval_minutes`; the gateway's lifespan starts
it, `tipline retention run` runs it once. `rotate_vault` is `tipline vault rotate`.

This module must never delete a sender's tracker rows without holding that sender's lock
(without a lock it skips the tracker and says so), never log a pseudonym, a text or an
address (only counts and error class names), and never let one failing kind stop the others.

Exceptions: none of its own. A failing kind is logged and listed in `RetentionReport.failed`;
it is tried again on the next run.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Protocol, runtime_checkable

from bot.privacy import VaultCipher, VaultError
from config import Settings
from storage import retention as store
from storage.db import Database, run_in_thread
from storage.models import utcnow

logger = logging.getLogger(__name__)


@runtime_checkable
class SenderLock(Protocol):
    """The gateway's per-sender turn: while it is held, no dialogue turn of that reporter runs
    (so Rasa is not saving that tracker) and no other holder gets it.

    Implemented with `@contextlib.asynccontextmanager` on an `async def hold(...)`: waits until
    the sender is free, holds it for the `async with` body, then frees it."""

    def hold(self, reporter_id: str) -> AbstractAsyncContextManager[None]: ...


@dataclass(frozen=True)
class RetentionPolicy:
    retention_days: int = 90
    tracker_retention_days: int = 30
    inbound_retention_hours: int = 48
    interval_minutes: int = 60
    # Tips deleted per transaction: short transactions keep the console responsive.
    batch_size: int = 100

    @classmethod
    def from_settings(cls, settings: Settings) -> RetentionPolicy:
        privacy = settings.privacy
        return cls(
            retention_days=privacy.retention_days,
            tracker_retention_days=privacy.tracker_retention_days,
            inbound_retention_hours=privacy.inbound_retention_hours,
            interval_minutes=privacy.retention_interval_minutes,
        )


@dataclass
class RetentionReport:
    """What one run deleted, per kind ("tip", "attachment", "tip_note"... "tracker_events")."""

    counts: dict[str, int] = field(default_factory=dict)
    # Kinds that raised: logged (class name only) and tried again next run.
    failed: list[str] = field(default_factory=list)
    # Kinds not attempted, e.g. tracker events with no sender lock to hold.
    skipped: list[str] = field(default_factory=list)

    def add(self, kind: str, count: int) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + count


class RetentionJob:
    def __init__(
        self,
        *,
        db: Database,
        policy: RetentionPolicy,
        tracker: store.TrackerStore | None = None,
        sender_lock: SenderLock | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._db = db
        self._policy = policy
        self._tracker = tracker
        self._lock = sender_lock
        self._clock = clock

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        db: Database,
        sender_lock: object = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> RetentionJob:
        """`sender_lock` is used only if it provides `SenderLock.hold` (the gateway passes its
        pipeline); otherwise tracker events are left alone rather than deleted unlocked."""
        return cls(
            db=db,
            policy=RetentionPolicy.from_settings(settings),
            tracker=store.TrackerStore(settings.rasa.tracker_store_url),
            sender_lock=sender_lock if isinstance(sender_lock, SenderLock) else None,
            clock=clock,
        )

    async def run_once(self, now: datetime | None = None) -> RetentionReport:
        now = now or self._clock()
        policy, report = self._policy, RetentionReport()
        tips_before = now - timedelta(days=policy.retention_days)
        idle_before = now - timedelta(days=policy.tracker_retention_days)
        inbound_before = now - timedelta(hours=policy.inbound_retention_hours)

        async def tips() -> None:
            while True:
                counts = await self._db.run(lambda s: store.delete_expired_tips(
                    s, closed_before=tips_before, now=now, limit=policy.batch_size))
                for kind, count in counts.items():
                    report.add(kind, count)
                if counts["tip"] < policy.batch_size:
                    return

        async def one(kind: str, work: Callable[..., int]) -> None:
            report.add(kind, await self._db.run(work))

        # Vault first: a reporter whose address just expired has its state deleted below.
        steps: list[tuple[str, Callable[[], Awaitable[None]]]] = [
            ("tip", tips),
            ("vault_entry", partial(one, "vault_entry", partial(
                store.purge_expired_vault_entries, now=now))),
            ("inbound_message", partial(one, "inbound_message", partial(
                store.delete_processed_inbound, received_before=inbound_before))),
            ("reporter", partial(one, "reporter", partial(
                store.delete_silent_reporters, last_contact_before=idle_before))),
            ("unattached_file", partial(one, "unattached_file", partial(
                store.delete_unattached_files, received_before=idle_before))),
            ("tracker_events", partial(self._prune_trackers, idle_before, report)),
        ]
        for kind, step in steps:
            try:
                await step()
            except Exception as exc:
                # The class name only: database errors carry statement parameters (pseudonyms).
                logger.error("retention.step_failed", extra={"kind": kind, "error": type(exc).__name__})
                report.failed.append(kind)
        logger.info("retention.run", extra={"counts": dict(report.counts), "failed": report.failed,
                                            "skipped": report.skipped})
        return report

    async def _prune_trackers(self, before: datetime, report: RetentionReport) -> None:
        if self._tracker is None:
            return
        if self._lock is None:
            report.skipped.append("tracker_events")
            logger.warning("retention.tracker.skipped_no_sender_lock")
            return
        tracker = self._tracker
        # run_in_thread: if the gateway stops meanwhile, the sender's lock is released and
        # the tracker's engine disposed only once the query or deletion in flight is done.
        senders = await run_in_thread(partial(tracker.senders_with_events_before, before=before))
        report.add("tracker_events", 0)
        for sender in senders:
            # Held per sender and only for its own deletion: a reporter writing right now waits
            # one short transaction, never the whole run.
            async with self._lock.hold(sender):
                deleted = await run_in_thread(
                    partial(tracker.delete_events_before, sender_id=sender, before=before))
            report.add("tracker_events", deleted)

    async def run_forever(self, *, first_delay_seconds: float = 60.0) -> None:
        """Run every `interval_minutes` until cancelled. The first run waits a little, so a
        starting gateway serves its backlog first."""
        delay = min(first_delay_seconds, self._policy.interval_minutes * 60.0)
        try:
            while True:
                await asyncio.sleep(delay)
                delay = self._policy.interval_minutes * 60.0
                try:
                    await self.run_once()
                except Exception as exc:  # keep the schedule alive whatever happens
                    logger.error("retention.run_failed", extra={"error": type(exc).__name__})
        finally:
            self.close()

    def close(self) -> None:
        if self._tracker is not None:
            self._tracker.dispose()


# --- Vault key rotation ----------------------------------------------------------------------


@dataclass
class RotationReport:
    # Re-encrypted from an older key to the first one.
    rotated: int = 0
    # Already sealed with the first key: left as they are.
    current: int = 0
    # No configured key opens them: left untouched (count only, nothing about them is shown).
    unreadable: int = 0
    # Refreshed or deleted by the gateway while we worked: already current or gone.
    changed_meanwhile: int = 0


def rotate_vault(db: Database, cipher: VaultCipher, *, batch_size: int = 500) -> RotationReport:
    """Re-encrypt every vault entry with the cipher's first key (MultiFernet.rotate), one
    transaction per batch, so it can run while the gateway is live: a write only lands if the
    entry still holds the ciphertext that was read."""
    report = RotationReport()
    after: str | None = None
    while True:
        batch = db.run_sync(partial(store.list_vault_batch, after=after, limit=batch_size))
        if not batch:
            return report
        after = batch[-1][0]
        updates: list[tuple[str, bytes, bytes]] = []
        for reporter_id, ciphertext in batch:
            if cipher.is_current(ciphertext):
                report.current += 1
                continue
            try:
                updates.append((reporter_id, ciphertext, cipher.rotate(ciphertext)))
            except VaultError:
                report.unreadable += 1
        written = db.run_sync(partial(store.replace_vault_ciphertexts, updates=updates)) if updates else 0
        report.rotated += written
        report.changed_meanwhile += len(updates) - written
