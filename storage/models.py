"""Tables and their API shapes.

Families per entity (as in the FastAPI full-stack template): `XBase` shared fields, `X` the
table, `XCreate` what callers hand in, `XPublic` what the officer API returns.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Column, DateTime, Index, LargeBinary, String, UniqueConstraint
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


def _timestamp(*, index: bool = False, nullable: bool = False) -> Any:
    # Timezone-aware everywhere; SQLite stores the offset as text, PostgreSQL as timestamptz.
    return Field(
        default_factory=utcnow,
        sa_type=DateTime(timezone=True),
        index=index,
        nullable=nullable,
    )


class Urgency(StrEnum):
    CRITICAL = "critical"
    HIGH = "high"
    NORMAL = "normal"
    LOW = "low"


URGENCY_RANK = {Urgency.CRITICAL: 0, Urgency.HIGH: 1, Urgency.NORMAL: 2, Urgency.LOW: 3}


class TipStatus(StrEnum):
    NEW = "new"
    IN_REVIEW = "in_review"
    VERIFIED = "verified"
    FORWARDED = "forwarded"
    CLOSED = "closed"
    REJECTED = "rejected"
    DUPLICATE = "duplicate"


class InboundState(StrEnum):
    PENDING = "pending"
    DONE = "done"


# --- Inbound messages: the exactly-once ledger and the work queue -------------------------


class InboundMessage(SQLModel, table=True):
    """One provider message. The unique (channel, provider_message_id) key makes a provider's
    retry a no-op; `text` is kept only until the dialogue has processed it."""

    __tablename__ = "inbound_message"
    __table_args__ = (UniqueConstraint("channel", "provider_message_id", name="uq_inbound_provider_id"),)

    id: int | None = Field(default=None, primary_key=True)
    channel: str = Field(max_length=32)
    provider_message_id: str = Field(max_length=128)
    reporter_id: str = Field(max_length=64, index=True)
    received_at: datetime = _timestamp()
    kind: str = Field(default="text", max_length=16)
    text: str | None = None
    # Command, pressed button, shared location, media references: what the worker needs
    # besides the text. Cleared with the text once processed.
    details: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    language_hint: str | None = Field(default=None, max_length=8)
    state: InboundState = Field(default=InboundState.PENDING, sa_type=String(16), index=True)
    attempts: int = 0
    next_attempt_at: datetime = _timestamp(index=True)
    # Whether the reporter was told "received, we will answer" while the dialogue was down.
    told_received: bool = False


# --- Reporters: per-conversation state, keyed by pseudonym --------------------------------


class Reporter(SQLModel, table=True):
    """Conversation state of one pseudonymous reporter (never their address)."""

    reporter_id: str = Field(primary_key=True, max_length=64)
    channel: str = Field(max_length=32)
    language: str | None = Field(default=None, max_length=8)
    # The last location the reporter shared in this conversation, until a tip takes it.
    pending_latitude: float | None = None
    pending_longitude: float | None = None
    # Payloads of the choices in the last reply, so "1" on SMS means the first button.
    last_choices: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    first_contact_at: datetime = _timestamp()
    last_contact_at: datetime = _timestamp()
    # Set when the reporter sent more than the rate limit allows: their tips say so.
    flood_flagged_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    # When the dialogue last answered: a long silence since then starts a new conversation.
    last_turn_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))


# --- Reply vault: the only place an address exists, encrypted -----------------------------


class VaultEntry(SQLModel, table=True):
    """Encrypted reply address of a reporter. The key is not in the database."""

    __tablename__ = "vault_entry"

    reporter_id: str = Field(primary_key=True, max_length=64)
    ciphertext: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    expires_at: datetime = _timestamp(index=True)


# --- Tips ---------------------------------------------------------------------------------


class TipBase(SQLModel):
    """Fields of a tip that callers provide."""

    what: str
    where_text: str = ""
    when_text: str = ""
    danger_now: bool = False
    language: str = Field(max_length=8)
    channel: str = Field(max_length=32)
    # A location the reporter shared (Telegram, WhatsApp), if any.
    latitude: float | None = None
    longitude: float | None = None


class Tip(TipBase, table=True):
    """A stored tip in the moderated queue."""

    __table_args__ = (Index("ix_tip_queue", "status", "urgency_rank", "received_at"),)

    id: int | None = Field(default=None, primary_key=True)
    receipt_code: str = Field(max_length=16, unique=True)
    reporter_id: str = Field(max_length=64, index=True)
    # Makes tip submission idempotent when the action is retried.
    submission_key: str = Field(max_length=64, unique=True)
    urgency: Urgency = Field(default=Urgency.NORMAL, sa_type=String(16))
    # 0 = critical ... 3 = low; kept beside `urgency` so the queue order is one index scan.
    urgency_rank: int = Field(default=URGENCY_RANK[Urgency.NORMAL])
    urgency_reasons: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    status: TipStatus = Field(default=TipStatus.NEW, sa_type=String(16))
    received_at: datetime = _timestamp(index=True)
    # --- console (storage/console.py owns the logic and the indexes over these) ---
    # The officer working the tip and until when; an expired claim is free to take. No
    # foreign key: storage.console's officer table must stay optional for this module.
    claimed_by: int | None = None
    claim_expires_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    # Why a tip was rejected (spam, false report), and the tip a duplicate was merged into.
    status_reason: str | None = Field(default=None, max_length=500)
    duplicate_of: int | None = None
    # --- retention (storage/retention.py deletes; storage/console.py sets these) ---
    # When the tip reached a final status (closed, rejected, duplicate): retention counts
    # from here. None while the tip is open.
    closed_at: datetime | None = Field(
        default=None, sa_type=DateTime(timezone=True), index=True
    )
    # Set by a supervisor or admin (audited, with a reason): retention never deletes the tip.
    legal_hold: bool = False


class Attachment(SQLModel, table=True):
    """A file a reporter sent, metadata already scrubbed. Linked to a tip when it is submitted."""

    id: int | None = Field(default=None, primary_key=True)
    reporter_id: str = Field(max_length=64, index=True)
    tip_id: int | None = Field(default=None, foreign_key="tip.id", index=True)
    kind: str = Field(max_length=16)  # image | audio | video | document
    content_type: str = Field(max_length=128)
    size: int
    sha256: str = Field(max_length=64)
    data: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    metadata_removed: bool = False
    # Why officers should look before sharing it, e.g. metadata we could not remove.
    flagged_reason: str | None = None
    received_at: datetime = _timestamp()


class StatusNotice(SQLModel, table=True):
    """A reporter asked to be told when their tip is acted on ("you told us, we acted")."""

    __tablename__ = "status_notice"

    tip_id: int = Field(primary_key=True, foreign_key="tip.id")
    # The status the reporter was last told about; a notice goes out when the tip's differs.
    notified_status: str | None = Field(default=None, max_length=16)
    created_at: datetime = _timestamp()


class SpamPseudonym(SQLModel, table=True):
    """A pseudonym an officer marked as spam: its tips go to the spam folder, never deleted."""

    __tablename__ = "spam_pseudonym"

    reporter_id: str = Field(primary_key=True, max_length=64)
    marked_at: datetime = _timestamp()


class TipCreate(TipBase):
    """What the dialogue hands in when a reporter confirms a tip."""

    reporter_id: str
    submission_key: str


class TipPublic(TipBase):
    """What officers see: no reporter id, no submission key."""

    id: int
    receipt_code: str
    urgency: Urgency
    urgency_reasons: list[str]
    status: TipStatus
    received_at: datetime
