"""Retention deletions and vault re-encryption, at the storage level.

Owns what the retention job (bot/retention.py) deletes: tips past their retention period with
every row that hangs off them, expired reply-vault entries, processed inbound ledger rows,
long-silent reporter rows, files never attached to a tip, and aged events in Rasa's SQL
tracker store (`TrackerStore`). Also the batched reads and compare-and-swap writes of vault key
rotation: ciphertext only, the keys and the addresses stay in bot/privacy.py.

It must never delete an open tip or a tip on legal hold, never delete a pending inbound
message, never delete a sender's tracker rows unless the caller holds that sender's lock, and
never write tip text, a reporter identifier or an address into the audit log.

Deleting a tip keeps its audit rows (who viewed, unmasked, exported it, and when: the record
officers are accountable to), but clears their details where officers type free text (status
and urgency reasons, tag names, legal hold reasons), since those can quote the tip. One audit
row by "(retention)" records the deletion itself.

Functions are `verb_noun(session, *, ...)`, keyword-only, and never commit: the caller owns
the transaction. On PostgreSQL deleted rows stay in the table files until VACUUM reclaims them;
on SQLite `secure_delete` (storage/db.py) overwrites them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Column,
    Engine,
    MetaData,
    Table,
    create_engine,
    delete,
    event,
    exists,
    insert,
    inspect,
    not_,
    text,
    update,
)
from sqlmodel import Session, col, select

from storage.console import AuditAction, AuditEntry
from storage.db import begin_write
from storage.models import Attachment, InboundMessage, InboundState, Reporter, Tip, TipStatus, VaultEntry

# A tip in one of these statuses is finished: its retention period runs from `closed_at`.
FINAL_STATUSES = (TipStatus.CLOSED, TipStatus.REJECTED, TipStatus.DUPLICATE)
# Audit actions whose detail holds an officer's free text about the tip.
_FREE_TEXT_ACTIONS = (AuditAction.STATUS, AuditAction.URGENCY, AuditAction.TAG, AuditAction.LEGAL_HOLD)
CLEARED_DETAIL = "(detail removed with the tip)"
# Not a valid console username (no parentheses allowed), so it cannot be mistaken for one.
RETENTION_ACTOR = "(retention)"


def _utc(moment: datetime) -> datetime:
    # SQLite stores the wall time of the value it is given: compare in UTC, as everything is written.
    return moment.astimezone(UTC)


# --- Tips ------------------------------------------------------------------------------------


def _tables_hanging_off_tip(session: Session) -> list[tuple[Table, list[Column[Any]]]]:
    """Every table with a foreign key to tip.id, children before parents.

    Read from the database itself, not listed here nor taken from the models: other modules add
    tables that hang off a tip (the message thread, status notices, sent alerts...), and this
    process may not have imported them. A forgotten one would either block the deletion or
    leave tip text behind."""
    connection = session.connection()
    inspector = inspect(connection)
    names = [
        name for name in inspector.get_table_names()
        if name != "tip" and any(fk["referred_table"] == "tip" for fk in inspector.get_foreign_keys(name))
    ]
    if not names:
        return []
    reflected = MetaData()
    reflected.reflect(bind=connection, only=names)
    found: list[tuple[Table, list[Column[Any]]]] = []
    for table in reversed(reflected.sorted_tables):
        columns = [fk.parent for fk in table.foreign_keys if fk.column.table.name == "tip"]
        if table.name != "tip" and columns:
            found.append((table, columns))
    return found


def delete_expired_tips(
    session: Session, *, closed_before: datetime, now: datetime, limit: int = 100
) -> dict[str, int]:
    """Delete up to `limit` tips that reached a final status before `closed_before` and are not
    on legal hold, with every row that hangs off them. Returns rows deleted per table ("tip"
    included); call again until it deletes fewer than `limit` tips.

    The tips are selected under a write lock (row locks with SKIP LOCKED on PostgreSQL), so a
    legal hold set concurrently either wins (the tip is skipped) or comes too late (the tip is
    gone and the console says so); a tip an officer is changing right now waits for a later run.
    """
    # The check "final, old enough, not on hold" and the deletion see the same rows.
    begin_write(session)
    statement = (
        select(Tip.id, Tip.status, Tip.closed_at)
        .where(col(Tip.status).in_([s.value for s in FINAL_STATUSES]))
        .where(col(Tip.closed_at).is_not(None))
        .where(col(Tip.closed_at) < _utc(closed_before))
        .where(not_(col(Tip.legal_hold)))
        .order_by(col(Tip.id))
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        statement = statement.with_for_update(skip_locked=True)
    rows = list(session.execute(statement))
    counts: dict[str, int] = {"tip": 0}
    if not rows:
        return counts
    ids = [int(row[0]) for row in rows]
    for table, columns in _tables_hanging_off_tip(session):
        deleted = 0
        for column in columns:
            result = session.execute(delete(table).where(column.in_(ids)))
            deleted += int(result.rowcount or 0)  # type: ignore[attr-defined]
        counts[table.name] = counts.get(table.name, 0) + deleted
    session.execute(
        update(AuditEntry)
        .where(col(AuditEntry.tip_id).in_(ids))
        .where(col(AuditEntry.action).in_([a.value for a in _FREE_TEXT_ACTIONS]))
        .values(detail=CLEARED_DETAIL)
    )
    session.execute(insert(AuditEntry), [
        {"at": now, "officer_id": None, "officer_username": RETENTION_ACTOR,
         "action": AuditAction.RETENTION.value, "tip_id": int(tip_id),
         "detail": f"deleted: {status} since {_utc_date(closed_at)}"}
        for tip_id, status, closed_at in rows
    ])
    result = session.execute(delete(Tip).where(col(Tip.id).in_(ids)))
    counts["tip"] = int(result.rowcount or 0)  # type: ignore[attr-defined]
    return counts


def _utc_date(moment: datetime) -> str:
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return aware.astimezone(UTC).strftime("%Y-%m-%d")


# --- Vault, inbound ledger, conversation state ---------------------------------------------


def purge_expired_vault_entries(session: Session, *, now: datetime) -> int:
    """Delete reply addresses past `expires_at` (they are no longer used, see
    repo.get_vault_entry). An entry refreshed by a new message meanwhile is not expired."""
    result = session.execute(delete(VaultEntry).where(col(VaultEntry.expires_at) <= _utc(now)))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def delete_processed_inbound(session: Session, *, received_before: datetime) -> int:
    """Delete processed ledger rows (hashed provider ids and contact times) older than the
    window in which a provider may still retry. Pending rows are the work queue: never."""
    result = session.execute(
        delete(InboundMessage)
        .where(col(InboundMessage.state) == InboundState.DONE.value)
        .where(col(InboundMessage.received_at) < _utc(received_before))
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def delete_silent_reporters(session: Session, *, last_contact_before: datetime) -> int:
    """Delete the conversation state (language, last choices, a shared location not yet on a
    tip) of reporters silent since `last_contact_before` who have no reply address left and no
    message waiting. One conditional statement: a message recorded meanwhile moves
    `last_contact_at` and refreshes the vault entry, so that reporter stays."""
    no_vault = ~exists().where(col(VaultEntry.reporter_id) == col(Reporter.reporter_id))
    nothing_pending = ~exists().where(
        (col(InboundMessage.reporter_id) == col(Reporter.reporter_id))
        & (col(InboundMessage.state) == InboundState.PENDING.value)
    )
    result = session.execute(
        delete(Reporter)
        .where(col(Reporter.last_contact_at) < _utc(last_contact_before))
        .where(no_vault)
        .where(nothing_pending)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def delete_unattached_files(session: Session, *, received_before: datetime) -> int:
    """Delete files received before `received_before` that never became part of a tip (the
    reporter sent a photo and never finished the report)."""
    result = session.execute(
        delete(Attachment)
        .where(col(Attachment.tip_id).is_(None))
        .where(col(Attachment.received_at) < _utc(received_before))
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


# --- Vault key rotation ----------------------------------------------------------------------


def list_vault_batch(
    session: Session, *, after: str | None, limit: int
) -> list[tuple[str, bytes]]:
    """(reporter_id, ciphertext) of up to `limit` entries after `after`, in key order: a
    keyset page, so entries added during the rotation never shift the pages."""
    statement = select(VaultEntry.reporter_id, VaultEntry.ciphertext).order_by(
        col(VaultEntry.reporter_id)
    )
    if after is not None:
        statement = statement.where(col(VaultEntry.reporter_id) > after)
    return [(str(r), bytes(c)) for r, c in session.execute(statement.limit(limit))]


def replace_vault_ciphertext(
    session: Session, *, reporter_id: str, old: bytes, new: bytes
) -> bool:
    """Swap `old` for `new` only if the entry still holds `old`: a message that refreshed the
    entry meanwhile (already sealed with the current key) is never overwritten with stale
    data. False when the entry changed or is gone."""
    result = session.execute(
        update(VaultEntry)
        .where(col(VaultEntry.reporter_id) == reporter_id)
        .where(col(VaultEntry.ciphertext) == old)
        .values(ciphertext=new)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def replace_vault_ciphertexts(
    session: Session, *, updates: Sequence[tuple[str, bytes, bytes]]
) -> int:
    """`replace_vault_ciphertext` for (reporter_id, old, new) triples; how many landed."""
    return sum(
        replace_vault_ciphertext(session, reporter_id=reporter_id, old=old, new=new)
        for reporter_id, old, new in updates
    )


# --- Rasa's SQL tracker store ----------------------------------------------------------------


class TrackerStore:
    """Rasa 3.6's SQL tracker store as retention sees it: table `events`, one row per event,
    `sender_id` (our pseudonym) and `timestamp` (float, Unix epoch).

    Each method is one short transaction. `delete_events_before` must be called only while the
    caller holds that sender's lock in the gateway: Rasa saves a tracker by counting the rows
    of the current session and appending the rest, so rows deleted during a turn would make it
    write events twice. A store that does not exist yet (Rasa never ran) has nothing to delete.
    """

    def __init__(self, url: str) -> None:
        if url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
        self._url = url
        self._engine: Engine | None = None

    def _connect(self) -> Engine | None:
        if self._engine is None:
            if self._url.startswith("sqlite"):
                path = self._url.split("///", 1)[-1]
                # Opening a missing SQLite file would create an empty one next to Rasa's.
                if not path or path == ":memory:" or not Path(path).exists():
                    return None
            engine = create_engine(self._url, pool_pre_ping=True)
            if engine.dialect.name == "sqlite":
                event.listen(engine, "connect", _sqlite_secure_delete)
            self._engine = engine
        return self._engine

    def senders_with_events_before(self, *, before: datetime) -> list[str]:
        engine = self._connect()
        if engine is None:
            return []
        with engine.begin() as connection:
            if not connection.dialect.has_table(connection, "events"):
                return []
            rows = connection.execute(
                text("SELECT DISTINCT sender_id FROM events WHERE timestamp < :before"),
                {"before": before.timestamp()},
            )
            return sorted(str(row[0]) for row in rows)

    def delete_events_before(self, *, sender_id: str, before: datetime) -> int:
        """Delete `sender_id`'s events older than `before`; how many rows went."""
        engine = self._connect()
        if engine is None:
            return 0
        with engine.begin() as connection:
            if not connection.dialect.has_table(connection, "events"):
                return 0
            result = connection.execute(
                text("DELETE FROM events WHERE sender_id = :sender AND timestamp < :before"),
                {"sender": sender_id, "before": before.timestamp()},
            )
            return int(result.rowcount or 0)

    def dispose(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None


def _sqlite_secure_delete(dbapi_connection: Any, _record: Any) -> None:
    # Rasa's file does not set it: deleted event texts would stay readable in free pages.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA secure_delete=ON")
    cursor.close()


def tables_referencing_tip(session: Session) -> Sequence[str]:
    """Names of the tables whose rows are deleted with a tip (for operators and the tests)."""
    return [table.name for table, _ in _tables_hanging_off_tip(session)]
