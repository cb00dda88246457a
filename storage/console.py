"""Storage of the duty officers' console: accounts, sessions, login throttling, the audit log,
notes, tags, follow-up questions and the per-tip message thread, and every change officers make
to a tip (claim, status, urgency, redaction, legal hold).

Every change writes its audit row in the same transaction (`record_audit` is called by the
function that makes the change, never by the caller afterwards), so an action that fails leaves
no audit row and an audit row never describes an action that did not happen.

This module must never hold or return a reporter's address, never put a reporter identifier
(not even the pseudonym) into the audit log, and never keep the original of a redacted passage.
Functions are `verb_noun(session, *, ...)` and never commit: the caller owns the transaction.

Exceptions::

    ConsoleStorageError
     ├── OfficerExistsError        username already taken
     ├── TipNotFoundError          no such tip (or attachment, or target of a duplicate)
     ├── TipClaimedError           another officer holds an active claim on the tip
     ├── NotPermittedError         the actor's role may not do this (e.g. reassign)
     └── InvalidActionError        a transition, passage or value that does not apply
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    DateTime,
    Index,
    String,
    and_,
    bindparam,
    case,
    delete,
    exists,
    func,
    insert,
    or_,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite
from sqlalchemy.orm import defer
from sqlmodel import Field, Session, SQLModel, col, select

from storage.db import begin_write
from storage.models import URGENCY_RANK, Attachment, Tip, TipStatus, Urgency, utcnow


def as_utc(moment: datetime) -> datetime:
    # SQLite hands back naive datetimes; every timestamp we write is UTC.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _timestamp(*, index: bool = False) -> Any:
    return Field(
        default_factory=utcnow,
        sa_type=DateTime(timezone=True),
        index=index,
        nullable=False,
    )


def _optional_timestamp(*, index: bool = False) -> Any:
    return Field(default=None, sa_type=DateTime(timezone=True), index=index)


# --- Enums -----------------------------------------------------------------------------------


class OfficerRole(StrEnum):
    OFFICER = "officer"
    SUPERVISOR = "supervisor"
    ADMIN = "admin"


# Roles that outrank a claim: they may act on and reassign tips other officers hold.
OVERSEERS = frozenset({OfficerRole.SUPERVISOR, OfficerRole.ADMIN})


class AuditAction(StrEnum):
    LOGIN = "login"
    LOGOUT = "logout"
    VIEW = "view"
    UNMASK = "unmask"
    CLAIM = "claim"
    RELEASE = "release"
    REASSIGN = "reassign"
    STATUS = "status"
    URGENCY = "urgency"
    NOTE = "note"
    TAG = "tag"
    REDACT = "redact"
    EXPORT = "export"
    DOWNLOAD = "download"
    FOLLOW_UP = "follow_up"
    ACCOUNT = "account"
    LEGAL_HOLD = "legal_hold"
    # Written by the retention job (storage/retention.py), not by an officer.
    RETENTION = "retention"


# What the tip page lists as history: the audit trail of the tip minus mere reading.
_HISTORY_ACTIONS = tuple(
    a.value for a in AuditAction if a not in {AuditAction.VIEW, AuditAction.LOGIN, AuditAction.LOGOUT}
)


class FollowUpStatus(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    ANSWERED = "answered"
    # The reply vault had no address any more (expired or deleted at the reporter's request).
    UNDELIVERABLE = "undeliverable"


class MessageDirection(StrEnum):
    IN = "in"
    OUT = "out"


# The workflow: forward along the main line, or out to rejected / duplicate while still open.
TRANSITIONS: dict[TipStatus, frozenset[TipStatus]] = {
    TipStatus.NEW: frozenset({TipStatus.IN_REVIEW, TipStatus.REJECTED, TipStatus.DUPLICATE}),
    TipStatus.IN_REVIEW: frozenset(
        {TipStatus.VERIFIED, TipStatus.CLOSED, TipStatus.REJECTED, TipStatus.DUPLICATE}
    ),
    TipStatus.VERIFIED: frozenset({TipStatus.FORWARDED, TipStatus.CLOSED, TipStatus.DUPLICATE}),
    TipStatus.FORWARDED: frozenset({TipStatus.CLOSED}),
    TipStatus.CLOSED: frozenset(),
    TipStatus.REJECTED: frozenset(),
    TipStatus.DUPLICATE: frozenset(),
}
OPEN_STATUSES = (TipStatus.NEW, TipStatus.IN_REVIEW, TipStatus.VERIFIED, TipStatus.FORWARDED)
CLAIMABLE_STATUSES = (TipStatus.NEW, TipStatus.IN_REVIEW)
REDACTED = "[redacted]"
TAG_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_\-]{0,31}$")

# Literal SQL (not bound parameters) on purpose: SQLite and PostgreSQL only use a partial index
# when the query repeats the index's WHERE terms as the same literals.
# Named parameters, so a rewritten SQLite statement can go back through text().
_NAMED_SQLITE = SQLiteDialect_pysqlite(paramstyle="named")
_OPEN_SQL = "status IN ('new', 'in_review', 'verified', 'forwarded')"
_CLAIMABLE_SQL = "status IN ('new', 'in_review')"


# --- Errors ----------------------------------------------------------------------------------


class ConsoleStorageError(Exception):
    """Base of the console's storage errors."""


class OfficerExistsError(ConsoleStorageError):
    pass


class TipNotFoundError(ConsoleStorageError):
    pass


class TipClaimedError(ConsoleStorageError):
    def __init__(self, *, tip_id: int, holder: str, until: datetime) -> None:
        super().__init__(f"tip {tip_id} is claimed by {holder} until {until:%H:%M} UTC")
        self.tip_id, self.holder, self.until = tip_id, holder, until


class NotPermittedError(ConsoleStorageError):
    pass


class InvalidActionError(ConsoleStorageError):
    pass


# --- Indexes over the tip table (the columns are declared at the end of storage.models.Tip) --

_tip_columns = Tip.__table__.c  # type: ignore[attr-defined]

# "Next tip": the most urgent, oldest unclaimed open tip is the first entry of this index.
Index(
    "ix_tip_claimable",
    _tip_columns.urgency_rank,
    _tip_columns.received_at,
    _tip_columns.id,
    sqlite_where=text(f"{_CLAIMABLE_SQL} AND claimed_by IS NULL"),
    postgresql_where=text(f"{_CLAIMABLE_SQL} AND claimed_by IS NULL"),
)
# The queue page's default view (all open tips) in display order.
Index(
    "ix_tip_open_queue",
    _tip_columns.urgency_rank,
    _tip_columns.received_at,
    _tip_columns.id,
    sqlite_where=text(_OPEN_SQL),
    postgresql_where=text(_OPEN_SQL),
)
# Claims that may have expired: only held claims are in it, so it stays small.
Index(
    "ix_tip_claim_expiry",
    _tip_columns.claim_expires_at,
    sqlite_where=text("claimed_by IS NOT NULL"),
    postgresql_where=text("claimed_by IS NOT NULL"),
)


# --- Officers --------------------------------------------------------------------------------


class OfficerBase(SQLModel):
    """Fields of an account that may be shown in the console."""

    username: str = Field(max_length=64, unique=True)
    role: OfficerRole = Field(default=OfficerRole.OFFICER, sa_type=String(16))
    # Console language (en, fr); None means the deployment default.
    language: str | None = Field(default=None, max_length=8)
    active: bool = True


class Officer(OfficerBase, table=True):
    """A console account: Argon2 hash, optional TOTP secret, never a reporter link."""

    id: int | None = Field(default=None, primary_key=True)
    password_hash: str = Field(max_length=256)
    # Base32 TOTP secret; None = no second factor enrolled.
    totp_secret: str | None = Field(default=None, max_length=64)
    # The last TOTP time step accepted: a code is good once (no replay within its window).
    last_totp_step: int = 0
    created_at: datetime = _timestamp()


class OfficerCreate(OfficerBase):
    """What the CLI hands in (the hash is made in bot.console.auth, never here)."""

    password_hash: str
    totp_secret: str | None = None


class OfficerPublic(OfficerBase):
    """What other officers may see about an account."""

    id: int


@dataclass(frozen=True)
class Actor:
    """The logged-in officer as the storage functions need it (plain values, thread-safe)."""

    officer_id: int
    username: str
    role: OfficerRole

    @property
    def oversees(self) -> bool:
        return self.role in OVERSEERS


def create_officer(session: Session, *, officer: OfficerCreate, now: datetime | None = None) -> Officer:
    username = officer.username.strip().lower()
    if not re.fullmatch(r"[a-z0-9][a-z0-9._\-]{1,63}", username):
        raise InvalidActionError("username: 2-64 characters a-z 0-9 . _ -")
    if get_officer_by_username(session, username=username) is not None:
        raise OfficerExistsError(f"officer {username!r} already exists")
    stored = Officer(**{**officer.model_dump(), "username": username}, created_at=now or utcnow())
    session.add(stored)
    session.flush()
    return stored


def get_officer(session: Session, *, officer_id: int) -> Officer | None:
    return session.get(Officer, officer_id)


def get_officer_by_username(session: Session, *, username: str) -> Officer | None:
    statement = select(Officer).where(Officer.username == username.strip().lower())
    return session.exec(statement).first()


def list_officers(session: Session, *, active_only: bool = True) -> list[Officer]:
    statement = select(Officer).order_by(col(Officer.username))
    if active_only:
        statement = statement.where(col(Officer.active).is_(True))
    return list(session.exec(statement))


def set_officer_language(session: Session, *, officer_id: int, language: str) -> None:
    session.execute(update(Officer).where(col(Officer.id) == officer_id).values(language=language))


def set_officer_password_hash(session: Session, *, officer_id: int, password_hash: str) -> None:
    # Used to upgrade a hash made with older Argon2 parameters, right after a good login.
    session.execute(
        update(Officer).where(col(Officer.id) == officer_id).values(password_hash=password_hash)
    )


def set_officer_active(session: Session, *, officer_id: int, active: bool) -> None:
    session.execute(update(Officer).where(col(Officer.id) == officer_id).values(active=active))
    if not active:
        session.execute(delete(OfficerSession).where(col(OfficerSession.officer_id) == officer_id))


def accept_totp_step(session: Session, *, officer_id: int, step: int) -> bool:
    """Atomically accept a TOTP step newer than the last one used; False means a replay."""
    result = session.execute(
        update(Officer)
        .where(col(Officer.id) == officer_id)
        .where(col(Officer.last_totp_step) < step)
        .values(last_totp_step=step)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


# --- Sessions --------------------------------------------------------------------------------


class OfficerSession(SQLModel, table=True):
    """A logged-in browser. Only the SHA-256 of the cookie's random token is stored, so a
    copy of the database does not let anyone log in."""

    __tablename__ = "officer_session"

    token_hash: str = Field(primary_key=True, max_length=64)
    officer_id: int = Field(foreign_key="officer.id", index=True)
    # Random per session; sent back in forms and the X-CSRF-Token header.
    csrf_token: str = Field(max_length=64)
    created_at: datetime = _timestamp(index=True)
    last_seen_at: datetime = _timestamp(index=True)


def create_officer_session(
    session: Session, *, token_hash: str, officer_id: int, csrf_token: str, now: datetime
) -> OfficerSession:
    stored = OfficerSession(
        token_hash=token_hash,
        officer_id=officer_id,
        csrf_token=csrf_token,
        created_at=now,
        last_seen_at=now,
    )
    session.add(stored)
    session.flush()
    return stored


def get_officer_session(
    session: Session, *, token_hash: str
) -> tuple[OfficerSession, Officer] | None:
    statement = (
        select(OfficerSession, Officer)
        .join(Officer, col(Officer.id) == col(OfficerSession.officer_id))
        .where(OfficerSession.token_hash == token_hash)
    )
    row = session.exec(statement).first()
    if row is None:
        return None
    stored, officer = row
    stored.created_at = as_utc(stored.created_at)
    stored.last_seen_at = as_utc(stored.last_seen_at)
    return stored, officer


def touch_officer_session(session: Session, *, token_hash: str, now: datetime) -> None:
    session.execute(
        update(OfficerSession)
        .where(col(OfficerSession.token_hash) == token_hash)
        .values(last_seen_at=now)
    )


def delete_officer_session(session: Session, *, token_hash: str) -> None:
    session.execute(delete(OfficerSession).where(col(OfficerSession.token_hash) == token_hash))


def delete_stale_sessions(
    session: Session, *, idle_before: datetime, created_before: datetime
) -> int:
    result = session.execute(
        delete(OfficerSession).where(
            or_(
                col(OfficerSession.last_seen_at) < idle_before,
                col(OfficerSession.created_at) < created_before,
            )
        )
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


# --- Login throttling ------------------------------------------------------------------------


class LoginThrottle(SQLModel, table=True):
    """Failed logins per key. Keys are keyed HMACs of "user:<name>" or "addr:<ip>", made by
    the caller, so no client address is stored in clear (and unknown usernames are throttled
    exactly like known ones)."""

    __tablename__ = "login_throttle"

    key_hash: str = Field(primary_key=True, max_length=64)
    failures: int = 0
    window_started_at: datetime = _timestamp()
    locked_until: datetime | None = _optional_timestamp()


def _insert_for(session: Session) -> Any:
    return pg_insert if _dialect(session) == "postgresql" else sqlite_insert


def _dialect(session: Session) -> str:
    return session.get_bind().dialect.name


def login_locked_until(session: Session, *, keys: Sequence[str], now: datetime) -> datetime | None:
    """The latest lockout among `keys` that is still running, if any."""
    statement = select(LoginThrottle.locked_until).where(col(LoginThrottle.key_hash).in_(keys))
    running = [as_utc(u) for u in session.exec(statement) if u is not None and as_utc(u) > now]
    return max(running, default=None)


def record_login_failure(
    session: Session,
    *,
    limits: Mapping[str, int],
    now: datetime,
    lockout: timedelta,
) -> None:
    """Count one failure for every key of `limits` (key -> failures allowed); a key that
    reaches its limit within `lockout` is locked for `lockout`. Upserts, so concurrent
    failures are all counted."""
    begin_write(session)
    upsert = _insert_for(session)
    for key, max_failures in limits.items():
        session.execute(
            upsert(LoginThrottle)
            .values(key_hash=key, failures=0, window_started_at=now, locked_until=None)
            .on_conflict_do_nothing(index_elements=["key_hash"])
        )
        row = session.exec(
            select(LoginThrottle).where(LoginThrottle.key_hash == key).with_for_update()
        ).one()
        session.refresh(row)
        if as_utc(row.window_started_at) < now - lockout:
            # An old window: start counting again.
            row.failures, row.window_started_at = 0, now
        row.failures += 1
        if row.failures >= max_failures:
            row.locked_until = now + lockout
            row.failures, row.window_started_at = 0, now
        session.add(row)
    session.flush()


def clear_login_failures(session: Session, *, keys: Sequence[str]) -> None:
    session.execute(delete(LoginThrottle).where(col(LoginThrottle.key_hash).in_(keys)))


# --- Audit log -------------------------------------------------------------------------------


class AuditEntry(SQLModel, table=True):
    """Who did what to which tip, when. Officers and tips only: no reporter identifier."""

    __tablename__ = "audit_entry"
    __table_args__ = (Index("ix_audit_tip", "tip_id", "at"),)

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = _timestamp(index=True)
    officer_id: int | None = Field(default=None, foreign_key="officer.id", index=True)
    # Kept beside the id so the log reads well even after an account is renamed or removed.
    officer_username: str = Field(max_length=64)
    action: AuditAction = Field(sa_type=String(16))
    tip_id: int | None = None
    detail: str = Field(default="", max_length=1000)


def record_audit(
    session: Session,
    *,
    actor: Actor,
    action: AuditAction,
    now: datetime,
    tip_id: int | None = None,
    detail: str = "",
) -> None:
    # A Core INSERT, not session.add + flush: it runs inside every claim, which must stay fast.
    session.execute(
        insert(AuditEntry).values(
            at=now,
            officer_id=actor.officer_id,
            officer_username=actor.username,
            action=action.value,
            tip_id=tip_id,
            # Officers type free text into reasons: phone numbers and e-mail addresses stay out.
            detail=mask_contact_details(detail)[:1000],
        )
    )


def list_audit(
    session: Session,
    *,
    tip_id: int | None = None,
    officer_id: int | None = None,
    action: AuditAction | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[AuditEntry]:
    """Newest first."""
    statement = select(AuditEntry)
    if tip_id is not None:
        statement = statement.where(AuditEntry.tip_id == tip_id)
    if officer_id is not None:
        statement = statement.where(AuditEntry.officer_id == officer_id)
    if action is not None:
        statement = statement.where(AuditEntry.action == action.value)
    statement = statement.order_by(col(AuditEntry.at).desc(), col(AuditEntry.id).desc())
    rows = list(session.exec(statement.offset(offset).limit(limit)))
    for row in rows:
        row.at = as_utc(row.at)
    return rows


# --- Notes, tags, messages, follow-ups -------------------------------------------------------


class TipNote(SQLModel, table=True):
    """An officer's note on a tip."""

    __tablename__ = "tip_note"

    id: int | None = Field(default=None, primary_key=True)
    tip_id: int = Field(foreign_key="tip.id", index=True)
    officer_id: int = Field(foreign_key="officer.id")
    officer_username: str = Field(max_length=64)
    text: str = Field(max_length=4000)
    created_at: datetime = _timestamp()


class TipTag(SQLModel, table=True):
    """A label on a tip ("cattle", "border"); a table, so the queue filters by tag portably."""

    __tablename__ = "tip_tag"
    __table_args__ = (Index("ix_tip_tag_tag", "tag", "tip_id"),)

    tip_id: int = Field(foreign_key="tip.id", primary_key=True)
    tag: str = Field(primary_key=True, max_length=32)


class FollowUpBase(SQLModel):
    """A question an officer wants put to the reporter of a tip."""

    question: str = Field(max_length=1000)
    # The reporter's language: the question is written (or was picked) in it.
    language: str = Field(max_length=8)
    # Key of a prepared question (config/followups/<lang>.yml), or None for free text.
    prepared_key: str | None = Field(default=None, max_length=64)


class FollowUp(FollowUpBase, table=True):
    """Created pending by the console; the pipeline delivers it through the reply vault."""

    __tablename__ = "follow_up"
    __table_args__ = (Index("ix_follow_up_status", "status", "created_at"),)

    id: int | None = Field(default=None, primary_key=True)
    tip_id: int = Field(foreign_key="tip.id", index=True)
    officer_id: int = Field(foreign_key="officer.id")
    status: FollowUpStatus = Field(default=FollowUpStatus.PENDING, sa_type=String(16))
    created_at: datetime = _timestamp()
    sent_at: datetime | None = _optional_timestamp()
    answered_at: datetime | None = _optional_timestamp()


class FollowUpPublic(FollowUpBase):
    """What the tip page shows."""

    id: int
    status: FollowUpStatus
    created_at: datetime
    sent_at: datetime | None
    answered_at: datetime | None


class TipMessage(SQLModel, table=True):
    """The conversation about a tip after it was submitted: questions out, answers in."""

    __tablename__ = "tip_message"
    __table_args__ = (Index("ix_tip_message_tip", "tip_id", "created_at"),)

    id: int | None = Field(default=None, primary_key=True)
    tip_id: int = Field(foreign_key="tip.id")
    direction: MessageDirection = Field(sa_type=String(8))
    text: str = Field(max_length=4000)
    follow_up_id: int | None = Field(default=None, foreign_key="follow_up.id")
    created_at: datetime = _timestamp()


# --- Masking ---------------------------------------------------------------------------------

_EMAIL = re.compile(r"[\w.+\-]+@[\w\-]+(?:\.[\w\-]+)+")
# Digits with the separators people type into numbers; 7+ digits make it a phone number.
_PHONE_CANDIDATE = re.compile(r"\+?\(?\d[\d\s().\-/]{4,}\d")
MASK_PHONE = "[phone]"
MASK_EMAIL = "[e-mail]"


def mask_contact_details(value: str) -> str:
    """Phone numbers and e-mail addresses inside free text, replaced by placeholders."""
    value = _EMAIL.sub(MASK_EMAIL, value)

    def phone(match: re.Match[str]) -> str:
        digits = sum(ch.isdigit() for ch in match.group(0))
        return MASK_PHONE if digits >= 7 else match.group(0)

    return _PHONE_CANDIDATE.sub(phone, value)


# --- The queue -------------------------------------------------------------------------------


@dataclass(frozen=True)
class QueueFilter:
    """Queue and export filters. `statuses` empty means every open status."""

    statuses: tuple[TipStatus, ...] = ()
    urgency: Urgency | None = None
    language: str | None = None
    channel: str | None = None
    tag: str | None = None
    tip_ids: tuple[int, ...] = ()

    def describe(self) -> str:
        parts = [f"status={','.join(self.statuses) or 'open'}"]
        for name in ("urgency", "language", "channel", "tag"):
            if getattr(self, name):
                parts.append(f"{name}={getattr(self, name)}")
        if self.tip_ids:
            parts.append(f"tips={','.join(map(str, self.tip_ids[:50]))}")
        return " ".join(parts)


@dataclass
class QueuePage:
    tips: list[Tip]
    tags: dict[int, list[str]]
    holders: dict[int, str]
    has_more: bool


def _filtered(statement: Any, flt: QueueFilter) -> Any:
    if flt.statuses:
        statement = statement.where(col(Tip.status).in_([s.value for s in flt.statuses]))
    else:
        statement = statement.where(text(_OPEN_SQL))
    if flt.urgency is not None:
        statement = statement.where(col(Tip.urgency) == flt.urgency.value)
    if flt.language:
        statement = statement.where(col(Tip.language) == flt.language)
    if flt.channel:
        statement = statement.where(col(Tip.channel) == flt.channel)
    if flt.tag:
        statement = statement.where(
            exists().where(and_(col(TipTag.tip_id) == col(Tip.id), col(TipTag.tag) == flt.tag))
        )
    if flt.tip_ids:
        statement = statement.where(col(Tip.id).in_(flt.tip_ids))
    return statement.order_by(col(Tip.urgency_rank), col(Tip.received_at), col(Tip.id))


def _fix_times(tip: Tip) -> Tip:
    tip.received_at = as_utc(tip.received_at)
    if tip.claim_expires_at is not None:
        tip.claim_expires_at = as_utc(tip.claim_expires_at)
    if tip.closed_at is not None:
        tip.closed_at = as_utc(tip.closed_at)
    return tip


def _tags_of(session: Session, tip_ids: Iterable[int]) -> dict[int, list[str]]:
    ids = list(tip_ids)
    tags: dict[int, list[str]] = {i: [] for i in ids}
    if ids:
        statement = select(TipTag).where(col(TipTag.tip_id).in_(ids)).order_by(col(TipTag.tag))
        for row in session.exec(statement):
            tags[row.tip_id].append(row.tag)
    return tags


def _usernames(session: Session, officer_ids: Iterable[int | None]) -> dict[int, str]:
    ids = {i for i in officer_ids if i is not None}
    if not ids:
        return {}
    statement = select(Officer.id, Officer.username).where(col(Officer.id).in_(ids))
    return {int(i): name for i, name in session.exec(statement) if i is not None}


_FROM_TIP = re.compile(r"\bFROM tip\b(?!_)")


def _on_sqlite_index(session: Session, statement: Any, index: str) -> Any:
    """The statement with `FROM tip INDEXED BY <index>` on SQLite.

    Without ANALYZE statistics SQLite picks ix_tip_queue (status=?) and then sorts every open
    tip, which costs milliseconds per thousand open tips; the partial indexes already hold the
    queue order, so the first rows of the index are the answer. SQLAlchemy renders no table
    hints for SQLite, hence this rewrite of the compiled SQL (bound values stay parameters).
    """
    compiled = statement.compile(dialect=_NAMED_SQLITE, compile_kwargs={"render_postcompile": True})
    sql, count = _FROM_TIP.subn(f"FROM tip INDEXED BY {index}", compiled.string, count=1)
    if count != 1:
        raise AssertionError("expected a query over the tip table")
    return text(sql).bindparams(**compiled.params)


def list_queue(
    session: Session, *, flt: QueueFilter, now: datetime, limit: int = 50, offset: int = 0
) -> QueuePage:
    """One page of the queue: most urgent first, then oldest. Claim holders only where the
    claim is still running."""
    statement = _filtered(select(Tip), flt).offset(offset).limit(limit + 1)
    if not flt.statuses and _dialect(session) == "sqlite":
        statement = select(Tip).from_statement(
            _on_sqlite_index(session, statement, "ix_tip_open_queue"))
    tips = [_fix_times(t) for t in session.execute(statement).scalars()]
    has_more = len(tips) > limit
    tips = tips[:limit]
    active = [t.claimed_by for t in tips if _claim_active(t, now)]
    return QueuePage(
        tips=tips,
        tags=_tags_of(session, [t.id for t in tips if t.id is not None]),
        holders=_usernames(session, active),
        has_more=has_more,
    )


def _claim_active(tip: Tip, now: datetime) -> bool:
    return (
        tip.claimed_by is not None
        and tip.claim_expires_at is not None
        and as_utc(tip.claim_expires_at) > now
    )


# --- Claims ----------------------------------------------------------------------------------


def _release_expired_claims(session: Session, *, now: datetime) -> None:
    expired = (
        select(Tip.id)
        .where(col(Tip.claimed_by).is_not(None))
        .where(col(Tip.claim_expires_at) <= now)
        .limit(100)
    )
    ids = list(session.exec(expired))
    if ids:
        session.execute(
            update(Tip).where(col(Tip.id).in_(ids)).values(claimed_by=None, claim_expires_at=None)
        )


# PostgreSQL: one round trip. The best unclaimed tip and the best tip whose claim expired are
# each locked with SKIP LOCKED (so concurrent officers never wait for one another), the better
# of the two is claimed, and the audit row is written by the same statement.
_PG_CLAIM_NEXT = text(f"""
WITH free AS (
    SELECT id, urgency_rank, received_at FROM tip
    WHERE {_CLAIMABLE_SQL} AND claimed_by IS NULL
    ORDER BY urgency_rank, received_at, id LIMIT 1 FOR UPDATE SKIP LOCKED
), expired AS (
    SELECT id, urgency_rank, received_at FROM tip
    WHERE claimed_by IS NOT NULL AND claim_expires_at <= :now AND {_CLAIMABLE_SQL}
    ORDER BY urgency_rank, received_at, id LIMIT 1 FOR UPDATE SKIP LOCKED
), relaxed AS (
    -- This transaction only: its commit need not wait for the WAL flush (a claim is a lease).
    SELECT set_config('synchronous_commit', 'off', true) AS setting
), chosen AS (
    SELECT id FROM (SELECT * FROM free UNION ALL SELECT * FROM expired) AS candidates
    CROSS JOIN relaxed
    ORDER BY urgency_rank, received_at, id LIMIT 1
), claimed AS (
    UPDATE tip SET claimed_by = :officer_id, claim_expires_at = :until,
        status = CASE WHEN tip.status = 'new' THEN 'in_review' ELSE tip.status END
    FROM chosen WHERE tip.id = chosen.id
    RETURNING tip.id
)
INSERT INTO audit_entry (at, officer_id, officer_username, action, tip_id, detail)
SELECT :now, :officer_id, :username, 'claim', claimed.id, 'next tip' FROM claimed
RETURNING tip_id
""")  # noqa: S608  (only this module's SQL constants are interpolated; values are bound)


# SQLite: the write lock is already held (BEGIN IMMEDIATE), so pick-and-claim is one UPDATE;
# INDEXED BY because without statistics SQLite would sort every open tip instead.
_SQLITE_CLAIM_NEXT = text(f"""
UPDATE tip SET claimed_by = :officer_id, claim_expires_at = :until,
    status = CASE WHEN status = 'new' THEN 'in_review' ELSE status END
WHERE id = (
    SELECT id FROM tip INDEXED BY ix_tip_claimable
    WHERE {_CLAIMABLE_SQL} AND claimed_by IS NULL
    ORDER BY urgency_rank, received_at, id LIMIT 1
)
RETURNING id
""").bindparams(bindparam("until", type_=DateTime(timezone=True)))  # noqa: S608


def claim_next_tip(
    session: Session, *, actor: Actor, lease: timedelta, now: datetime
) -> int | None:
    """Atomically claim the most urgent, oldest unclaimed new/in-review tip (an expired claim
    counts as unclaimed); its id or None. The claim's audit row is part of the same work.

    PostgreSQL: SELECT ... FOR UPDATE SKIP LOCKED, so concurrent officers each get a different
    tip without waiting for one another. SQLite: one writer at a time (BEGIN IMMEDIATE).
    On both, the commit does not wait for the disk: a crash can at worst hand the tip back to
    the queue (with its audit row, atomically).
    """
    if _dialect(session) == "postgresql":
        # A claim is a lease: its commit need not wait for the WAL flush (synchronous_commit
        # off for this transaction, set inside the statement to save a round trip; see
        # storage.db.begin_write for SQLite).
        found = session.execute(_PG_CLAIM_NEXT, {
            "now": now, "until": now + lease, "officer_id": actor.officer_id,
            "username": actor.username,
        }).scalar()
        return int(found) if found is not None else None
    # A claim is a lease: its commit need not wait for the disk (see begin_write).
    begin_write(session, durable=False)
    _release_expired_claims(session, now=now)
    tip_id = session.execute(_SQLITE_CLAIM_NEXT, {
        "officer_id": actor.officer_id, "until": now + lease,
    }).scalar()
    if tip_id is None:
        return None
    record_audit(session, actor=actor, action=AuditAction.CLAIM, now=now, tip_id=tip_id,
                 detail="next tip")
    return int(tip_id)


def _set_claim(session: Session, *, tip_id: int, officer_id: int, until: datetime) -> None:
    # Claiming a new tip starts its review.
    session.execute(
        update(Tip)
        .where(col(Tip.id) == tip_id)
        .values(
            claimed_by=officer_id,
            claim_expires_at=until,
            status=case((col(Tip.status) == TipStatus.NEW.value, TipStatus.IN_REVIEW.value),
                        else_=col(Tip.status)),
        )
    )


def _lock_tip(session: Session, *, tip_id: int) -> Tip:
    """Load a tip for a change: write lock first (row lock on PostgreSQL)."""
    begin_write(session)
    statement = select(Tip).where(Tip.id == tip_id).execution_options(populate_existing=True)
    if _dialect(session) == "postgresql":
        statement = statement.with_for_update()
    tip = session.exec(statement).first()
    if tip is None:
        raise TipNotFoundError(f"no tip {tip_id}")
    return _fix_times(tip)


def _ensure_may_act(session: Session, *, tip: Tip, actor: Actor, now: datetime) -> None:
    """An officer may not act on a tip another officer holds; supervisors and admins may."""
    if actor.oversees or not _claim_active(tip, now) or tip.claimed_by == actor.officer_id:
        return
    holder = _usernames(session, [tip.claimed_by]).get(tip.claimed_by or 0, "another officer")
    assert tip.claim_expires_at is not None
    raise TipClaimedError(tip_id=tip.id or 0, holder=holder, until=tip.claim_expires_at)


def _refresh_own_claim(tip: Tip, *, actor: Actor, lease: timedelta | None, now: datetime) -> None:
    # Working on your own tip keeps it yours.
    if lease is not None and tip.claimed_by == actor.officer_id:
        tip.claim_expires_at = now + lease


def claim_tip(
    session: Session, *, tip_id: int, actor: Actor, lease: timedelta, now: datetime
) -> None:
    tip = _lock_tip(session, tip_id=tip_id)
    _ensure_may_act(session, tip=tip, actor=actor, now=now)
    if tip.status not in OPEN_STATUSES:
        raise InvalidActionError(f"a {tip.status} tip cannot be claimed")
    previous = tip.claimed_by if _claim_active(tip, now) else None
    _set_claim(session, tip_id=tip_id, officer_id=actor.officer_id, until=now + lease)
    detail = "" if previous in (None, actor.officer_id) else (
        f"taken over from {_usernames(session, [previous]).get(previous or 0, '?')}"
    )
    record_audit(session, actor=actor, action=AuditAction.CLAIM, now=now, tip_id=tip_id,
                 detail=detail)


def release_tip(session: Session, *, tip_id: int, actor: Actor, now: datetime) -> None:
    tip = _lock_tip(session, tip_id=tip_id)
    _ensure_may_act(session, tip=tip, actor=actor, now=now)
    if tip.claimed_by is None:
        raise InvalidActionError("the tip is not claimed")
    tip.claimed_by, tip.claim_expires_at = None, None
    session.add(tip)
    record_audit(session, actor=actor, action=AuditAction.RELEASE, now=now, tip_id=tip_id)


def reassign_tip(
    session: Session,
    *,
    tip_id: int,
    actor: Actor,
    to_officer_id: int,
    lease: timedelta,
    now: datetime,
) -> None:
    """Supervisors and admins hand a tip to another officer."""
    if not actor.oversees:
        raise NotPermittedError("only supervisors and admins reassign tips")
    tip = _lock_tip(session, tip_id=tip_id)
    target = get_officer(session, officer_id=to_officer_id)
    if target is None or not target.active:
        raise InvalidActionError("no such active officer")
    if tip.status not in OPEN_STATUSES:
        raise InvalidActionError(f"a {tip.status} tip cannot be reassigned")
    tip.claimed_by, tip.claim_expires_at = to_officer_id, now + lease
    session.add(tip)
    record_audit(session, actor=actor, action=AuditAction.REASSIGN, now=now, tip_id=tip_id,
                 detail=f"to {target.username}")


# --- Changes to a tip ------------------------------------------------------------------------


def change_tip_status(
    session: Session,
    *,
    tip_id: int,
    actor: Actor,
    status: TipStatus,
    now: datetime,
    reason: str = "",
    duplicate_of: int | None = None,
    lease: timedelta | None = None,
) -> None:
    tip = _lock_tip(session, tip_id=tip_id)
    _ensure_may_act(session, tip=tip, actor=actor, now=now)
    if status not in TRANSITIONS[tip.status]:
        raise InvalidActionError(f"a tip cannot go from {tip.status} to {status}")
    reason = reason.strip()
    if status is TipStatus.REJECTED and not reason:
        raise InvalidActionError("rejecting a tip needs a reason (spam, false report...)")
    detail = f"{tip.status} -> {status}"
    if status is TipStatus.DUPLICATE:
        if duplicate_of is None or duplicate_of == tip_id or session.get(Tip, duplicate_of) is None:
            raise InvalidActionError("a duplicate needs the id of another existing tip")
        tip.duplicate_of = duplicate_of
        detail += f" of #{duplicate_of}"
    if reason:
        tip.status_reason = reason[:500]
        detail += f"; reason: {reason[:300]}"
    tip.status = status
    if status not in OPEN_STATUSES:
        # A finished tip frees its officer, and its retention period starts now.
        tip.claimed_by, tip.claim_expires_at = None, None
        tip.closed_at = now
    else:
        _refresh_own_claim(tip, actor=actor, lease=lease, now=now)
    session.add(tip)
    record_audit(session, actor=actor, action=AuditAction.STATUS, now=now, tip_id=tip_id,
                 detail=detail)


def change_tip_urgency(
    session: Session,
    *,
    tip_id: int,
    actor: Actor,
    urgency: Urgency,
    reason: str,
    now: datetime,
    lease: timedelta | None = None,
) -> None:
    tip = _lock_tip(session, tip_id=tip_id)
    _ensure_may_act(session, tip=tip, actor=actor, now=now)
    reason = " ".join(reason.split())[:300]
    if not reason:
        raise InvalidActionError("changing the urgency needs a reason")
    if urgency == tip.urgency:
        raise InvalidActionError(f"the tip is already {urgency}")
    previous = tip.urgency
    tip.urgency, tip.urgency_rank = urgency, URGENCY_RANK[urgency]
    # A new list, so the JSON column is seen as changed.
    tip.urgency_reasons = [*tip.urgency_reasons, f'override={urgency} by {actor.username}: "{reason}"']
    _refresh_own_claim(tip, actor=actor, lease=lease, now=now)
    session.add(tip)
    record_audit(session, actor=actor, action=AuditAction.URGENCY, now=now, tip_id=tip_id,
                 detail=f"{previous} -> {urgency}; reason: {reason}")


def set_legal_hold(
    session: Session, *, tip_id: int, actor: Actor, hold: bool, reason: str, now: datetime
) -> None:
    """Put a tip on legal hold (retention never deletes it) or release it. Supervisors and
    admins only, always with a reason, which goes into the audit row."""
    if not actor.oversees:
        raise NotPermittedError("only supervisors and admins set or clear a legal hold")
    tip = _lock_tip(session, tip_id=tip_id)
    reason = " ".join(reason.split())[:300]
    if not reason:
        raise InvalidActionError("a legal hold change needs a reason (case, order number...)")
    if tip.legal_hold == hold:
        raise InvalidActionError("the tip is already on legal hold" if hold
                                 else "the tip is not on legal hold")
    tip.legal_hold = hold
    session.add(tip)
    record_audit(session, actor=actor, action=AuditAction.LEGAL_HOLD, now=now, tip_id=tip_id,
                 detail=f"{'on' if hold else 'off'}; reason: {reason}")


def add_tip_note(
    session: Session, *, tip_id: int, actor: Actor, text: str, now: datetime
) -> TipNote:
    tip = _lock_tip(session, tip_id=tip_id)
    _ensure_may_act(session, tip=tip, actor=actor, now=now)
    text = text.strip()
    if not text:
        raise InvalidActionError("an empty note")
    note = TipNote(tip_id=tip_id, officer_id=actor.officer_id, officer_username=actor.username,
                   text=text[:4000], created_at=now)
    session.add(note)
    # The note's text stays out of the audit log: it may quote the tip.
    record_audit(session, actor=actor, action=AuditAction.NOTE, now=now, tip_id=tip_id,
                 detail=f"{len(note.text)} characters")
    return note


def change_tip_tags(
    session: Session,
    *,
    tip_id: int,
    actor: Actor,
    add: Sequence[str] = (),
    remove: Sequence[str] = (),
    now: datetime,
) -> list[str]:
    tip = _lock_tip(session, tip_id=tip_id)
    _ensure_may_act(session, tip=tip, actor=actor, now=now)
    adding = {t.strip().lower() for t in add if t.strip()}
    removing = {t.strip().lower() for t in remove if t.strip()}
    bad = [t for t in adding if not TAG_PATTERN.match(t)]
    if bad:
        raise InvalidActionError("tags: up to 32 characters a-z 0-9 _ -")
    current = set(_tags_of(session, [tip_id])[tip_id])
    for tag in adding - current:
        session.add(TipTag(tip_id=tip_id, tag=tag))
    if removing:
        session.execute(
            delete(TipTag).where(col(TipTag.tip_id) == tip_id).where(col(TipTag.tag).in_(removing))
        )
    session.flush()
    detail = " ".join([*(f"+{t}" for t in sorted(adding - current)),
                       *(f"-{t}" for t in sorted(removing & current))])
    if not detail:
        raise InvalidActionError("no tag changed")
    record_audit(session, actor=actor, action=AuditAction.TAG, now=now, tip_id=tip_id, detail=detail)
    return sorted((current | adding) - removing)


def redact_tip_passage(
    session: Session, *, tip_id: int, actor: Actor, passage: str, now: datetime
) -> int:
    """Replace every occurrence of `passage` in the tip's texts (what, where, when and the
    message thread) with "[redacted]". Irreversible: the passage is written nowhere, not even
    in the audit log (only its length). Returns how many occurrences were replaced."""
    tip = _lock_tip(session, tip_id=tip_id)
    _ensure_may_act(session, tip=tip, actor=actor, now=now)
    if len(passage.strip()) < 2:
        raise InvalidActionError("select at least two characters to redact")
    if _dialect(session) == "sqlite":
        # Overwrite freed page content instead of leaving the old text in the file.
        session.connection().exec_driver_sql("PRAGMA secure_delete = ON")
    count = 0
    fields = []
    for name in ("what", "where_text", "when_text"):
        value: str = getattr(tip, name)
        if passage in value:
            count += value.count(passage)
            setattr(tip, name, value.replace(passage, REDACTED))
            fields.append(name)
    messages = session.exec(select(TipMessage).where(TipMessage.tip_id == tip_id))
    for message in messages:
        if passage in message.text:
            count += message.text.count(passage)
            message.text = message.text.replace(passage, REDACTED)
            session.add(message)
            fields.append(f"message#{message.id}")
    if not count:
        raise InvalidActionError("the passage is not in the tip's texts")
    session.add(tip)
    record_audit(session, actor=actor, action=AuditAction.REDACT, now=now, tip_id=tip_id,
                 detail=f"{count} occurrence(s) of {len(passage)} characters in {', '.join(fields)}")
    return count


# --- Reading a tip ---------------------------------------------------------------------------


@dataclass(frozen=True)
class AttachmentInfo:
    """An attachment as the tip page lists it: never the bytes, never the reporter id."""

    id: int
    kind: str
    content_type: str
    size: int
    metadata_removed: bool
    flagged_reason: str | None
    received_at: datetime


@dataclass
class TipDetail:
    tip: Tip
    holder: str | None
    tags: list[str]
    attachments: list[AttachmentInfo]
    notes: list[TipNote]
    messages: list[TipMessage]
    follow_ups: list[FollowUpPublic]
    history: list[AuditEntry] = field(default_factory=list)


def view_tip(
    session: Session, *, tip_id: int, actor: Actor, now: datetime, unmask: bool = False
) -> TipDetail:
    """Everything the tip page shows, with the view (or unmask) audited in this transaction."""
    begin_write(session)
    tip = session.get(Tip, tip_id)
    if tip is None:
        raise TipNotFoundError(f"no tip {tip_id}")
    _fix_times(tip)
    record_audit(session, actor=actor, action=AuditAction.UNMASK if unmask else AuditAction.VIEW,
                 now=now, tip_id=tip_id)
    attachments = [
        AttachmentInfo(id=row.id or 0, kind=row.kind, content_type=row.content_type,
                       size=row.size, metadata_removed=row.metadata_removed,
                       flagged_reason=row.flagged_reason, received_at=as_utc(row.received_at))
        # The bytes stay in the database: the page lists, the download route reads.
        for row in session.exec(
            select(Attachment).options(defer(Attachment.data))  # type: ignore[arg-type]
            .where(Attachment.tip_id == tip_id).order_by(col(Attachment.id))
        )
    ]
    notes = list(session.exec(select(TipNote).where(TipNote.tip_id == tip_id)
                              .order_by(col(TipNote.created_at), col(TipNote.id))))
    messages = list(session.exec(select(TipMessage).where(TipMessage.tip_id == tip_id)
                                 .order_by(col(TipMessage.created_at), col(TipMessage.id))))
    follow_ups = [
        FollowUpPublic.model_validate(f, from_attributes=True)
        for f in session.exec(select(FollowUp).where(FollowUp.tip_id == tip_id)
                              .order_by(col(FollowUp.created_at), col(FollowUp.id)))
    ]
    history = list(session.exec(
        select(AuditEntry).where(AuditEntry.tip_id == tip_id)
        .where(col(AuditEntry.action).in_(_HISTORY_ACTIONS))
        .order_by(col(AuditEntry.at), col(AuditEntry.id))
    ))
    for note in notes:
        note.created_at = as_utc(note.created_at)
    for message in messages:
        message.created_at = as_utc(message.created_at)
    for entry in history:
        entry.at = as_utc(entry.at)
    holder = None
    if _claim_active(tip, now):
        holder = _usernames(session, [tip.claimed_by]).get(tip.claimed_by or 0)
    return TipDetail(tip=tip, holder=holder, tags=_tags_of(session, [tip_id])[tip_id],
                     attachments=attachments, notes=notes, messages=messages,
                     follow_ups=follow_ups, history=history)


@dataclass(frozen=True)
class AttachmentDownload:
    content_type: str
    kind: str
    data: bytes


def download_attachment(
    session: Session, *, tip_id: int, attachment_id: int, actor: Actor, now: datetime
) -> AttachmentDownload:
    begin_write(session)
    row = session.get(Attachment, attachment_id)
    if row is None or row.tip_id != tip_id:
        raise TipNotFoundError(f"no attachment {attachment_id} on tip {tip_id}")
    record_audit(session, actor=actor, action=AuditAction.DOWNLOAD, now=now, tip_id=tip_id,
                 detail=f"attachment #{attachment_id} ({row.kind}, {row.size} bytes)")
    return AttachmentDownload(content_type=row.content_type, kind=row.kind, data=bytes(row.data))


# --- Export ----------------------------------------------------------------------------------

EXPORT_FIELDS = (
    "id", "receipt_code", "received_at", "status", "urgency", "urgency_reasons", "language",
    "channel", "what", "where_text", "when_text", "danger_now", "latitude", "longitude", "tags",
)
EXPORT_LIMIT = 10_000


def export_tips(
    session: Session, *, flt: QueueFilter, actor: Actor, now: datetime, fmt: str
) -> list[dict[str, Any]]:
    """Rows for a CSV/JSON export: texts masked, no reporter id, audited with the filters."""
    begin_write(session)
    tips = [_fix_times(t) for t in session.exec(_filtered(select(Tip), flt).limit(EXPORT_LIMIT))]
    tags = _tags_of(session, [t.id for t in tips if t.id is not None])
    rows = [
        {
            "id": t.id,
            "receipt_code": t.receipt_code,
            "received_at": t.received_at.isoformat(),
            "status": str(t.status),
            "urgency": str(t.urgency),
            "urgency_reasons": [mask_contact_details(r) for r in t.urgency_reasons],
            "language": t.language,
            "channel": t.channel,
            "what": mask_contact_details(t.what),
            "where_text": mask_contact_details(t.where_text),
            "when_text": mask_contact_details(t.when_text),
            "danger_now": t.danger_now,
            "latitude": t.latitude,
            "longitude": t.longitude,
            "tags": tags.get(t.id or 0, []),
        }
        for t in tips
    ]
    record_audit(session, actor=actor, action=AuditAction.EXPORT, now=now,
                 tip_id=tips[0].id if len(tips) == 1 else None,
                 detail=f"{fmt}, {len(rows)} tip(s), {flt.describe()}")
    return rows


# --- Follow-up questions ---------------------------------------------------------------------


def create_follow_up(
    session: Session,
    *,
    tip_id: int,
    actor: Actor,
    now: datetime,
    question: str = "",
    prepared_key: str | None = None,
    prepared_text: Callable[[str, str], str | None] | None = None,
) -> FollowUp:
    """A pending question for the reporter of a tip, in the tip's language; the pipeline
    delivers it. Free text wins; otherwise `prepared_text(language, key)` supplies it."""
    tip = _lock_tip(session, tip_id=tip_id)
    _ensure_may_act(session, tip=tip, actor=actor, now=now)
    language = tip.language
    question = question.strip()
    if question:
        prepared_key = None
    elif prepared_key and prepared_text is not None:
        question = (prepared_text(language, prepared_key) or "").strip()
    if not question:
        raise InvalidActionError("an empty question")
    if tip.status not in OPEN_STATUSES:
        raise InvalidActionError(f"a {tip.status} tip takes no more questions")
    follow_up = FollowUp(tip_id=tip_id, officer_id=actor.officer_id, question=question[:1000],
                         language=language, prepared_key=prepared_key, created_at=now)
    session.add(follow_up)
    session.flush()
    record_audit(session, actor=actor, action=AuditAction.FOLLOW_UP, now=now, tip_id=tip_id,
                 detail=f"#{follow_up.id} {prepared_key or 'free text'} ({language})")
    return follow_up


@dataclass(frozen=True)
class FollowUpDelivery:
    """What the pipeline needs to send one question: the pseudonym finds the vault entry."""

    follow_up_id: int
    tip_id: int
    reporter_id: str
    channel: str
    language: str
    question: str


def list_pending_follow_ups(session: Session, *, limit: int = 50) -> list[FollowUpDelivery]:
    """Oldest first. For the delivery pipeline only: it carries the reporter's pseudonym,
    which the console never shows."""
    statement = (
        select(FollowUp, Tip.reporter_id, Tip.channel)
        .join(Tip, col(Tip.id) == col(FollowUp.tip_id))
        .where(FollowUp.status == FollowUpStatus.PENDING.value)
        .order_by(col(FollowUp.created_at), col(FollowUp.id))
        .limit(limit)
    )
    return [
        FollowUpDelivery(follow_up_id=f.id or 0, tip_id=f.tip_id, reporter_id=reporter_id,
                         channel=channel, language=f.language, question=f.question)
        for f, reporter_id, channel in session.exec(statement)
    ]


def mark_follow_up_sent(session: Session, *, follow_up_id: int, now: datetime) -> bool:
    """Pending -> sent, and the question joins the tip's thread. False if it was not pending
    (another worker sent it first), so a question never goes out twice from one row."""
    result = session.execute(
        update(FollowUp)
        .where(col(FollowUp.id) == follow_up_id)
        .where(col(FollowUp.status) == FollowUpStatus.PENDING.value)
        .values(status=FollowUpStatus.SENT.value, sent_at=now)
    )
    if not result.rowcount:  # type: ignore[attr-defined]
        return False
    follow_up = session.get(FollowUp, follow_up_id)
    assert follow_up is not None
    session.add(TipMessage(tip_id=follow_up.tip_id, direction=MessageDirection.OUT,
                           text=follow_up.question, follow_up_id=follow_up_id, created_at=now))
    session.flush()
    return True


def mark_follow_up_undeliverable(session: Session, *, follow_up_id: int, now: datetime) -> None:
    """The vault had no address (expired or deleted): the console shows it, nothing is sent."""
    session.execute(
        update(FollowUp)
        .where(col(FollowUp.id) == follow_up_id)
        .where(col(FollowUp.status) == FollowUpStatus.PENDING.value)
        .values(status=FollowUpStatus.UNDELIVERABLE.value, sent_at=now)
    )


def find_awaiting_follow_up(session: Session, *, reporter_id: str) -> FollowUp | None:
    """The newest question sent to this reporter and not answered yet, if any: the pipeline
    asks this before handing an inbound message to the dialogue."""
    statement = (
        select(FollowUp)
        .join(Tip, col(Tip.id) == col(FollowUp.tip_id))
        .where(Tip.reporter_id == reporter_id)
        .where(FollowUp.status == FollowUpStatus.SENT.value)
        .order_by(col(FollowUp.sent_at).desc(), col(FollowUp.id).desc())
        .limit(1)
    )
    return session.exec(statement).first()


def record_follow_up_answer(
    session: Session, *, follow_up_id: int, text: str, now: datetime
) -> TipMessage:
    """The reporter's answer, threaded on the tip; the question becomes answered."""
    follow_up = session.get(FollowUp, follow_up_id)
    if follow_up is None:
        raise InvalidActionError(f"no follow-up {follow_up_id}")
    follow_up.status, follow_up.answered_at = FollowUpStatus.ANSWERED, now
    session.add(follow_up)
    message = TipMessage(tip_id=follow_up.tip_id, direction=MessageDirection.IN, text=text[:4000],
                         follow_up_id=follow_up_id, created_at=now)
    session.add(message)
    session.flush()
    return message


def record_tip_message(
    session: Session, *, tip_id: int, direction: MessageDirection, text: str, now: datetime
) -> TipMessage:
    """Any other message about a tip (e.g. a status update sent to the reporter)."""
    message = TipMessage(tip_id=tip_id, direction=direction, text=text[:4000], created_at=now)
    session.add(message)
    session.flush()
    return message


def count_tips(session: Session) -> int:
    return int(session.execute(select(func.count()).select_from(Tip)).scalar_one())
