"""Storage functions: `verb_noun(session, *, ...)`, keyword-only, never commit.

Nothing here sees a raw address: reporters are pseudonyms, the vault holds ciphertext.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, Table, delete, func, update
from sqlalchemy import select as sa_select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session, col, select

from storage.models import (
    URGENCY_RANK,
    Attachment,
    InboundMessage,
    InboundState,
    Reporter,
    SpamPseudonym,
    StatusNotice,
    Tip,
    TipCreate,
    TipStatus,
    Urgency,
    VaultEntry,
    utcnow,
)

# Receipt codes: no 0/O, 1/I/L, so a reporter can read one back over a bad line.
_RECEIPT_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"


def as_utc(moment: datetime) -> datetime:
    # SQLite hands back naive datetimes; every timestamp we write is UTC.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _insert_for(session: Session):  # type: ignore[no-untyped-def]
    dialect = session.get_bind().dialect.name
    return pg_insert if dialect == "postgresql" else sqlite_insert


# --- Inbound ledger ----------------------------------------------------------------------


def record_inbound(
    session: Session,
    *,
    channel: str,
    provider_message_id: str,
    reporter_id: str,
    kind: str,
    text: str | None,
    language_hint: str | None,
    details: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> int | None:
    """Record a provider message once. Returns its id, or None if it was already recorded.

    INSERT ... ON CONFLICT DO NOTHING on the unique provider key: concurrent retries of the
    same message race in the database, not in Python, and exactly one wins.
    """
    now = now or utcnow()
    insert = _insert_for(session)
    statement = (
        insert(InboundMessage)
        .values(
            channel=channel,
            provider_message_id=provider_message_id,
            reporter_id=reporter_id,
            kind=kind,
            text=text,
            details=details or {},
            language_hint=language_hint,
            state=InboundState.PENDING,
            attempts=0,
            received_at=now,
            next_attempt_at=now,
            told_received=False,
        )
        .on_conflict_do_nothing(index_elements=["channel", "provider_message_id"])
        .returning(InboundMessage.id)
    )
    return session.execute(statement).scalar_one_or_none()


# What one webhook batch writes, as a few statements for the whole batch (one per table)
# rather than three per message: the gateway's busiest write. Tables, not the ORM classes:
# a Core statement skips the ORM's bulk-insert machinery, which cost more CPU than the
# writes themselves. The statements are built once per dialect and reused, so SQLAlchemy's
# compiled-statement cache finds them without regenerating their cache keys.
_INBOUND: Table = InboundMessage.__table__  # type: ignore[attr-defined]
_REPORTER: Table = Reporter.__table__  # type: ignore[attr-defined]
_VAULT: Table = VaultEntry.__table__  # type: ignore[attr-defined]
_BATCH_STATEMENTS: dict[tuple[str, str], Any] = {}

# The batch functions take a Session, or the Connection of a group commit (storage.db), which
# spares the webhook path the ORM Session's own per-transaction cost.
Writer = Session | Connection


def _batch_statement(session: Writer, purpose: str) -> Any:
    bind = session if isinstance(session, Connection) else session.get_bind()
    dialect = bind.dialect.name
    statement = _BATCH_STATEMENTS.get((dialect, purpose))
    if statement is not None:
        return statement
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    if purpose == "inbound":
        statement = (
            insert(_INBOUND)
            .on_conflict_do_nothing(index_elements=["channel", "provider_message_id"])
            .returning(_INBOUND.c.id, _INBOUND.c.channel, _INBOUND.c.provider_message_id)
        )
    elif purpose == "reporter":
        statement = insert(_REPORTER)
        statement = statement.on_conflict_do_update(
            index_elements=["reporter_id"],
            set_={"last_contact_at": statement.excluded.last_contact_at})
    else:
        statement = insert(_VAULT)
        statement = statement.on_conflict_do_update(
            index_elements=["reporter_id"],
            set_={"ciphertext": statement.excluded.ciphertext,
                  "expires_at": statement.excluded.expires_at})
    _BATCH_STATEMENTS[(dialect, purpose)] = statement
    return statement


def record_inbound_many(
    session: Writer, *, messages: Sequence[Mapping[str, Any]]
) -> list[int | None]:
    """record_inbound for many messages in one statement (SQLAlchemy splits a very large
    batch, e.g. a spool file, into several). Each message maps channel,
    provider_message_id, reporter_id, kind, text, language_hint, details and received_at.

    Returns, in the order given, each message's new id, or None if it was already recorded
    or appears earlier in `messages`: exactly what one record_inbound call per message, in
    order, would return. Rows are inserted in the order given, so ids keep arrival order.
    """
    keys = [(m["channel"], m["provider_message_id"]) for m in messages]
    first: dict[tuple[str, str], int] = {}
    rows: list[dict[str, Any]] = []
    for index, (key, message) in enumerate(zip(keys, messages, strict=True)):
        if key in first:
            continue  # a copy within this batch: the database never sees it
        first[key] = index
        now = message["received_at"]
        rows.append({
            "channel": message["channel"],
            "provider_message_id": message["provider_message_id"],
            "reporter_id": message["reporter_id"],
            "kind": message["kind"],
            "text": message["text"],
            "details": message["details"] or {},
            "language_hint": message["language_hint"],
            "state": InboundState.PENDING.value,
            "attempts": 0,
            "received_at": now,
            "next_attempt_at": now,
            "told_received": False,
        })
    ids: list[int | None] = [None] * len(messages)
    if not rows:
        return ids
    # ON CONFLICT DO NOTHING on the unique provider key, as record_inbound: concurrent copies
    # race in the database and one wins. Skipped rows return nothing, so the rows that were
    # inserted are matched to the messages by their key, not by position.
    for inbound_id, channel, provider_message_id in session.execute(
        _batch_statement(session, "inbound"), rows
    ):
        ids[first[(channel, provider_message_id)]] = inbound_id
    return ids


def list_due_reporters(session: Session, *, now: datetime, limit: int = 100) -> list[str]:
    """Reporters with at least one pending message whose turn has come, oldest first."""
    statement = (
        select(InboundMessage.reporter_id, func.min(InboundMessage.id))
        .where(InboundMessage.state == InboundState.PENDING)
        .group_by(InboundMessage.reporter_id)
        .order_by(func.min(InboundMessage.id))
        .limit(limit)
    )
    due: list[str] = []
    for reporter_id, _first in session.execute(statement):
        first = get_oldest_pending(session, reporter_id=reporter_id)
        if first is not None and as_utc(first.next_attempt_at) <= now:
            due.append(reporter_id)
    return due


def get_oldest_pending(session: Session, *, reporter_id: str) -> InboundMessage | None:
    """The next message of this reporter to process: strictly in arrival order."""
    statement = (
        select(InboundMessage)
        .where(InboundMessage.reporter_id == reporter_id)
        .where(InboundMessage.state == InboundState.PENDING)
        .order_by(col(InboundMessage.id))
        .limit(1)
    )
    return session.exec(statement).first()


def complete_inbound(session: Session, *, inbound_id: int) -> None:
    """Mark processed and drop the text: the tip (if any) now holds what we keep."""
    session.execute(
        update(InboundMessage)
        .where(col(InboundMessage.id) == inbound_id)
        .values(state=InboundState.DONE, text=None, details={})
    )


def postpone_inbound(
    session: Session, *, inbound_id: int, retry_at: datetime, told_received: bool
) -> None:
    session.execute(
        update(InboundMessage)
        .where(col(InboundMessage.id) == inbound_id)
        .values(
            attempts=InboundMessage.attempts + 1,
            next_attempt_at=retry_at,
            told_received=told_received,
        )
    )


def count_pending(session: Session) -> int:
    statement = select(func.count()).where(InboundMessage.state == InboundState.PENDING)
    return int(session.execute(statement).scalar_one())


# --- Reporters -----------------------------------------------------------------------------


def get_reporter(session: Session, *, reporter_id: str) -> Reporter | None:
    return session.get(Reporter, reporter_id)


def upsert_reporter_contact(
    session: Session, *, reporter_id: str, channel: str, now: datetime
) -> None:
    """Create the conversation state or push its last contact time: one statement, because
    it runs on every webhook."""
    insert = _insert_for(session)
    statement = insert(Reporter).values(
        reporter_id=reporter_id, channel=channel, last_choices=[],
        first_contact_at=now, last_contact_at=now,
    )
    session.execute(statement.on_conflict_do_update(
        index_elements=["reporter_id"], set_={"last_contact_at": now}))


def upsert_reporter_contacts(
    session: Writer, *, contacts: Sequence[tuple[str, str, datetime]]
) -> None:
    """upsert_reporter_contact for many (reporter_id, channel, now), in the order given, as
    one statement: a reporter's first contact in the batch creates it (if new), their last
    one is their last contact time."""
    merged: dict[str, dict[str, Any]] = {}
    for reporter_id, channel, now in contacts:
        row = merged.get(reporter_id)
        if row is None:
            merged[reporter_id] = {"reporter_id": reporter_id, "channel": channel,
                                   "last_choices": [], "first_contact_at": now,
                                   "last_contact_at": now}
        else:
            row["last_contact_at"] = now
    if merged:
        # One row per reporter: PostgreSQL refuses to update a row twice in one statement.
        session.execute(_batch_statement(session, "reporter"), list(merged.values()))


def set_reporter_language(session: Session, *, reporter_id: str, language: str) -> None:
    session.execute(
        update(Reporter).where(col(Reporter.reporter_id) == reporter_id).values(language=language)
    )


def set_reporter_choices(session: Session, *, reporter_id: str, payloads: Sequence[str]) -> None:
    session.execute(
        update(Reporter)
        .where(col(Reporter.reporter_id) == reporter_id)
        .values(last_choices=list(payloads))
    )


def record_turn(
    session: Session, *, reporter_id: str, language: str, choices: Sequence[str], now: datetime
) -> None:
    """After the dialogue answered: the conversation's language and the offered choices."""
    session.execute(
        update(Reporter)
        .where(col(Reporter.reporter_id) == reporter_id)
        .values(language=language, last_choices=list(choices), last_turn_at=now)
    )


# --- Reply vault ---------------------------------------------------------------------------


def put_vault_entry(
    session: Session, *, reporter_id: str, ciphertext: bytes, expires_at: datetime
) -> None:
    """Store or refresh the encrypted address (every contact pushes the expiry back)."""
    insert = _insert_for(session)
    statement = insert(VaultEntry).values(
        reporter_id=reporter_id, ciphertext=ciphertext, expires_at=expires_at
    )
    statement = statement.on_conflict_do_update(
        index_elements=["reporter_id"],
        set_={"ciphertext": ciphertext, "expires_at": expires_at},
    )
    session.execute(statement)


def put_vault_entries(
    session: Writer, *, entries: Sequence[tuple[str, bytes, datetime]]
) -> None:
    """put_vault_entry for many (reporter_id, ciphertext, expires_at), in the order given, as
    one statement: a reporter's last entry in the batch is the one kept."""
    latest = {reporter_id: {"reporter_id": reporter_id, "ciphertext": ciphertext,
                            "expires_at": expires_at}
              for reporter_id, ciphertext, expires_at in entries}
    if latest:
        session.execute(_batch_statement(session, "vault"), list(latest.values()))


def get_vault_entry(
    session: Session, *, reporter_id: str, now: datetime | None = None
) -> VaultEntry | None:
    entry = session.get(VaultEntry, reporter_id)
    if entry is None:
        return None
    return entry if as_utc(entry.expires_at) > (now or utcnow()) else None


def delete_vault_entry(session: Session, *, reporter_id: str) -> None:
    entry = session.get(VaultEntry, reporter_id)
    if entry is not None:
        session.delete(entry)


# --- Tips ----------------------------------------------------------------------------------


def new_receipt_code() -> str:
    raw = "".join(secrets.choice(_RECEIPT_ALPHABET) for _ in range(8))
    return f"{raw[:4]}-{raw[4:]}"


def create_tip(
    session: Session,
    *,
    tip: TipCreate,
    urgency: Urgency,
    reasons: Sequence[str],
    now: datetime | None = None,
) -> Tip:
    """Store a tip once per submission key; a retried submission returns the first tip."""
    existing = session.exec(select(Tip).where(Tip.submission_key == tip.submission_key)).first()
    if existing is not None:
        return existing
    while True:
        code = new_receipt_code()
        if session.exec(select(Tip.id).where(Tip.receipt_code == code)).first() is None:
            break
    stored = Tip(
        **tip.model_dump(),
        receipt_code=code,
        urgency=urgency,
        urgency_rank=URGENCY_RANK[urgency],
        urgency_reasons=list(reasons),
        status=TipStatus.NEW,
        received_at=now or utcnow(),
    )
    session.add(stored)
    session.flush()
    return stored


def list_tips(
    session: Session, *, statuses: Sequence[TipStatus] | None = None, limit: int = 200, offset: int = 0
) -> list[Tip]:
    """The officers' queue: most urgent first, then oldest."""
    statement = select(Tip)
    if statuses:
        statement = statement.where(col(Tip.status).in_([s.value for s in statuses]))
    statement = statement.order_by(col(Tip.urgency_rank), col(Tip.received_at), col(Tip.id))
    return list(session.exec(statement.offset(offset).limit(limit)))


def get_tip_by_receipt(session: Session, *, receipt_code: str) -> Tip | None:
    return session.exec(select(Tip).where(Tip.receipt_code == receipt_code.upper())).first()


def table_names(engine: Engine) -> list[str]:
    """For leak scans and health checks."""
    from sqlalchemy import inspect

    return list(inspect(engine).get_table_names())


# --- Attachments and shared locations --------------------------------------------------------


def store_attachment(
    session: Session,
    *,
    reporter_id: str,
    kind: str,
    content_type: str,
    data: bytes,
    metadata_removed: bool,
    flagged_reason: str | None,
    now: datetime | None = None,
) -> Attachment:
    """Keep a scrubbed file until the reporter's tip is submitted, which takes it."""
    attachment = Attachment(
        reporter_id=reporter_id,
        kind=kind,
        content_type=content_type,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        data=data,
        metadata_removed=metadata_removed,
        flagged_reason=flagged_reason,
        received_at=now or utcnow(),
    )
    session.add(attachment)
    session.flush()
    return attachment


def set_pending_location(
    session: Session, *, reporter_id: str, latitude: float, longitude: float
) -> None:
    session.execute(
        update(Reporter)
        .where(col(Reporter.reporter_id) == reporter_id)
        .values(pending_latitude=latitude, pending_longitude=longitude)
    )


def attach_pending_to_tip(session: Session, *, tip: Tip) -> None:
    """Give a newly stored tip the reporter's files and shared location from this conversation."""
    assert tip.id is not None
    session.execute(
        update(Attachment)
        .where(col(Attachment.reporter_id) == tip.reporter_id)
        .where(col(Attachment.tip_id).is_(None))
        .values(tip_id=tip.id)
    )
    reporter = session.get(Reporter, tip.reporter_id)
    if reporter is not None and reporter.pending_latitude is not None:
        tip.latitude, tip.longitude = reporter.pending_latitude, reporter.pending_longitude
        reporter.pending_latitude = reporter.pending_longitude = None
    session.flush()


def list_attachments(session: Session, *, tip_id: int) -> list[Attachment]:
    return list(session.exec(select(Attachment).where(Attachment.tip_id == tip_id)))


# --- Forgetting a reporter -------------------------------------------------------------------


def forget_reporter(session: Session, *, reporter_id: str) -> None:
    """Erase what links a pseudonym to a person: the reply address, the conversation state,
    unsubmitted files, and the inbound ledger (texts not yet processed, provider ids, times).
    Stored tips stay: they are the officers' record and hold no address."""
    delete_vault_entry(session, reporter_id=reporter_id)
    reporter = session.get(Reporter, reporter_id)
    if reporter is not None:
        session.delete(reporter)
    session.execute(
        delete(Attachment)
        .where(col(Attachment.reporter_id) == reporter_id)
        .where(col(Attachment.tip_id).is_(None))
    )
    # Unprocessed texts and the (hashed) provider ids with their times: all of it goes.
    session.execute(delete(InboundMessage).where(col(InboundMessage.reporter_id) == reporter_id))


# --- Status notices, spam and floods ---------------------------------------------------------


def subscribe_status_notice(session: Session, *, receipt_code: str, reporter_id: str) -> bool:
    """The reporter of this tip wants to hear when it is acted on. Only its own reporter may
    ask (a receipt code alone is not enough). Returns False for an unknown code."""
    tip = get_tip_by_receipt(session, receipt_code=receipt_code)
    if tip is None or tip.id is None or tip.reporter_id != reporter_id:
        return False
    if session.get(StatusNotice, tip.id) is None:
        session.add(StatusNotice(tip_id=tip.id, notified_status=tip.status))
        session.flush()
    return True


# Statuses a reporter who asked is told about.
NOTIFIED_STATUSES = (TipStatus.FORWARDED.value, TipStatus.CLOSED.value)


DueNotice = tuple[int, str, str, str, str, str]


def list_due_status_notices(session: Session, *, limit: int = 50) -> list[DueNotice]:
    """(tip_id, reporter_id, channel, language, status, receipt) for tips whose status moved
    to one reporters are told about since their last notice."""
    columns = (Tip.id, Tip.reporter_id, Tip.channel, Tip.language, Tip.status, Tip.receipt_code)
    statement = (
        sa_select(*(col(c) for c in columns))
        .join(StatusNotice, col(StatusNotice.tip_id) == col(Tip.id))
        .where(col(Tip.status).in_(NOTIFIED_STATUSES))
        .where(
            (col(StatusNotice.notified_status).is_(None))
            | (col(StatusNotice.notified_status) != col(Tip.status))
        )
        .limit(limit)
    )
    return [tuple(row) for row in session.execute(statement)]


def mark_status_notified(session: Session, *, tip_id: int, status: str) -> bool:
    """Record the notice before sending it (False: another worker already did): a reporter is
    never told twice."""
    result = session.execute(
        update(StatusNotice)
        .where(col(StatusNotice.tip_id) == tip_id)
        .where((col(StatusNotice.notified_status).is_(None))
               | (col(StatusNotice.notified_status) != status))
        .values(notified_status=status)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def mark_spam(session: Session, *, reporter_id: str) -> None:
    if session.get(SpamPseudonym, reporter_id) is None:
        session.add(SpamPseudonym(reporter_id=reporter_id))
        session.flush()


def is_spam(session: Session, *, reporter_id: str) -> bool:
    return session.get(SpamPseudonym, reporter_id) is not None


def count_recent_inbound(session: Session, *, reporter_id: str, since: datetime) -> int:
    statement = (
        select(func.count())
        .where(InboundMessage.reporter_id == reporter_id)
        .where(col(InboundMessage.received_at) >= since)
    )
    return int(session.execute(statement).scalar_one())


def flag_flood(session: Session, *, reporter_id: str, now: datetime) -> None:
    session.execute(
        update(Reporter).where(col(Reporter.reporter_id) == reporter_id).values(flood_flagged_at=now)
    )
