"""Storage of officer alerts: which alert went out for which tip, and the tips that need one.

Owns the `sent_alert` table. Its unique (tip_id, kind) key is what makes an alert go out once:
`claim_alert` inserts the row before anything is sent, so a restarted gateway, a retried tip
submission or several gateway processes racing on one database send each alert at most once.
The queries return `AlertTip` values (tip id, language, channel, the words an opt-in summary
may quote), never ORM rows and never a reporter identifier.

Must never: hold or return a reporter's pseudonym or address, hold an officer's phone number or
chat id (those live in settings only), or commit (the caller owns the transaction).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, UniqueConstraint, exists, or_
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Field, Session, SQLModel, col, select

from storage.models import Tip, TipStatus, Urgency, utcnow

# A critical tip's first alert, and the supervisors' alert when nobody claimed it in time.
CRITICAL = "critical"
ESCALATION = "escalation"


class SentAlert(SQLModel, table=True):
    """One alert that went out (or is going out) for a tip; at most one per (tip, kind)."""

    __tablename__ = "sent_alert"
    __table_args__ = (UniqueConstraint("tip_id", "kind", name="uq_sent_alert_tip_kind"),)

    id: int | None = Field(default=None, primary_key=True)
    # Cascade: retention deletes tips without having to know this table exists.
    tip_id: int = Field(foreign_key="tip.id", ondelete="CASCADE")
    kind: str = Field(max_length=16)
    sent_at: datetime = Field(
        default_factory=utcnow,
        sa_type=DateTime(timezone=True),
        nullable=False,
    )


@dataclass(frozen=True)
class AlertTip:
    """What an alert may say about a tip. `what`/`where_text` are for the opt-in summary only."""

    id: int
    language: str
    channel: str
    received_at: datetime
    what: str
    where_text: str


def _as_utc(moment: datetime) -> datetime:
    # SQLite hands back naive datetimes; every timestamp we write is UTC.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def alert_tip(tip: Tip) -> AlertTip:
    assert tip.id is not None
    return AlertTip(id=tip.id, language=tip.language, channel=tip.channel,
                    received_at=_as_utc(tip.received_at), what=tip.what,
                    where_text=tip.where_text)


def _insert_for(session: Session) -> Any:
    return pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert


def claim_alert(session: Session, *, tip_id: int, kind: str, now: datetime) -> bool:
    """Take the right to send alert `kind` for `tip_id`: True for exactly one caller ever.

    INSERT ... ON CONFLICT DO NOTHING on the unique key, so concurrent workers race in the
    database, not in Python. The row is written before sending: at most once, never twice (an
    officer paged twice for one tip learns to ignore the pager).
    """
    statement = (
        _insert_for(session)(SentAlert)
        .values(tip_id=tip_id, kind=kind, sent_at=now)
        .on_conflict_do_nothing(index_elements=["tip_id", "kind"])
        # RETURNING, not rowcount: drivers disagree on rowcount after ON CONFLICT DO NOTHING.
        .returning(col(SentAlert.id))
    )
    return session.execute(statement).scalar() is not None


def list_recent_critical_tips(
    session: Session, *, since: datetime, limit: int = 100
) -> list[AlertTip]:
    """Critical tips still new, received at or after `since`, oldest first: what every gateway
    process announces to its console tabs, wherever the tip was stored."""
    statement = (
        select(Tip)
        .where(col(Tip.status) == TipStatus.NEW.value)
        .where(col(Tip.urgency) == Urgency.CRITICAL.value)
        .where(col(Tip.received_at) >= since)
        .order_by(col(Tip.received_at), col(Tip.id))
        .limit(limit)
    )
    return [alert_tip(t) for t in session.exec(statement)]


def list_tips_to_escalate(
    session: Session, *, received_before: datetime, now: datetime, limit: int = 100
) -> list[AlertTip]:
    """Critical tips nobody is working on (new or in review, unclaimed or the claim expired)
    that arrived before `received_before` and were not escalated yet."""
    escalated = exists().where(
        col(SentAlert.tip_id) == col(Tip.id), col(SentAlert.kind) == ESCALATION
    )
    statement = (
        select(Tip)
        .where(col(Tip.status).in_([TipStatus.NEW.value, TipStatus.IN_REVIEW.value]))
        .where(col(Tip.urgency) == Urgency.CRITICAL.value)
        .where(col(Tip.received_at) < received_before)
        .where(or_(col(Tip.claimed_by).is_(None), col(Tip.claim_expires_at) <= now))
        .where(~escalated)
        .order_by(col(Tip.received_at), col(Tip.id))
        .limit(limit)
    )
    return [alert_tip(t) for t in session.exec(statement)]
