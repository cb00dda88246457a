"""Storage for what supervisors and admins look at and decide beyond the queue: the dashboard's
figures (tips per day, time to claim and to close, geo-tagged tips) and marking the reporter of
a tip as spam, with the spam folder that follows from it.

Every read here that a console page shows is audited in the same transaction (as
storage.console does for tip views). The spam marking resolves the tip's pseudonym inside this
module and hands it to storage.repo.mark_spam: it is never returned, shown or written to the
audit log. Functions are `verb_noun(session, *, ...)` and never commit.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import func
from sqlalchemy import select as columns  # sqlmodel's select types at most four columns
from sqlmodel import Session, col, select

from storage import repo
from storage.console import (
    TRANSITIONS,
    Actor,
    AuditAction,
    AuditEntry,
    InvalidActionError,
    NotPermittedError,
    QueuePage,
    TipNotFoundError,
    TipTag,
    as_utc,
    change_tip_status,
    record_audit,
)
from storage.models import Tip, TipStatus, Urgency

# The gateway (bot/app.py) and the console both start a spam rejection's reason with this,
# so the spam folder finds the tips either of them put there.
SPAM_REASON_PREFIX = "spam:"
MAX_MAP_POINTS = 5000


@dataclass(frozen=True)
class MapPoint:
    """A geo-tagged tip on the dashboard map: position and urgency, nothing of its text."""

    tip_id: int
    latitude: float
    longitude: float
    urgency: str


@dataclass(frozen=True)
class DashboardFigures:
    """The last `len(days)` UTC days, today included. Each breakdown maps a category (channel,
    language, urgency) to one count per day, in the order of `days`."""

    days: list[date]
    total: int
    by_channel: dict[str, list[int]]
    by_language: dict[str, list[int]]
    by_urgency: dict[str, list[int]]
    # Of the tips received in the period: received -> first "claim" audit row, and
    # received -> closed_at for those that reached "closed". None when there are none.
    median_to_claim: timedelta | None
    claimed: int
    median_to_close: timedelta | None
    closed: int
    points: list[MapPoint]


def _median(values: list[float]) -> timedelta | None:
    return timedelta(seconds=statistics.median(values)) if values else None


def read_dashboard(
    session: Session, *, actor: Actor, now: datetime, days: int = 30
) -> DashboardFigures:
    """The dashboard's figures; the view is audited in this transaction."""
    # The audit row first: on SQLite it takes the write lock before anything is read, so the
    # transaction never has to upgrade a read lock (which fails under concurrent writers).
    record_audit(session, actor=actor, action=AuditAction.VIEW, now=now,
                 detail=f"dashboard, last {days} days")
    today = now.astimezone(UTC).date()
    day_list = [today - timedelta(days=days - 1 - n) for n in range(days)]
    start = datetime.combine(day_list[0], time.min, UTC)
    index = {day: n for n, day in enumerate(day_list)}
    rows = session.execute(
        columns(col(Tip.id), col(Tip.received_at), col(Tip.channel), col(Tip.language),
                col(Tip.urgency), col(Tip.status), col(Tip.closed_at), col(Tip.latitude),
                col(Tip.longitude))
        .where(col(Tip.received_at) >= start)
        .order_by(col(Tip.received_at))
    ).all()
    breakdowns: dict[str, dict[str, list[int]]] = {
        name: defaultdict(lambda: [0] * days) for name in ("channel", "language", "urgency")
    }
    received: dict[int, datetime] = {}
    to_close: list[float] = []
    points: list[MapPoint] = []
    for tip_id, received_at, channel, language, urgency, status, closed_at, lat, lon in rows:
        at = as_utc(received_at)
        slot = index.get(at.date())
        if slot is None:  # after "today" by the clock: a skewed clock, not worth a crash
            continue
        received[tip_id] = at
        breakdowns["channel"][channel][slot] += 1
        breakdowns["language"][language][slot] += 1
        breakdowns["urgency"][str(urgency)][slot] += 1
        if status == TipStatus.CLOSED and closed_at is not None:
            to_close.append((as_utc(closed_at) - at).total_seconds())
        if lat is not None and lon is not None and len(points) < MAX_MAP_POINTS:
            points.append(MapPoint(tip_id=tip_id, latitude=float(lat), longitude=float(lon),
                                   urgency=str(urgency)))
    # Time to claim from the audit log: there is no "first claimed at" column, and the claim
    # columns on the tip are cleared on release and close.
    first_claims = session.execute(
        select(AuditEntry.tip_id, func.min(AuditEntry.at))
        .join(Tip, col(Tip.id) == col(AuditEntry.tip_id))
        .where(col(AuditEntry.action) == AuditAction.CLAIM.value)
        .where(col(Tip.received_at) >= start)
        .group_by(col(AuditEntry.tip_id))
    ).all()
    to_claim = [(as_utc(at) - received[tip_id]).total_seconds()
                for tip_id, at in first_claims if tip_id in received and at is not None]
    urgency_order = {u.value: n for n, u in enumerate(Urgency)}
    return DashboardFigures(
        days=day_list,
        total=len(received),
        by_channel=dict(sorted(breakdowns["channel"].items())),
        by_language=dict(sorted(breakdowns["language"].items())),
        by_urgency=dict(sorted(breakdowns["urgency"].items(),
                               key=lambda item: urgency_order.get(item[0], 99))),
        median_to_claim=_median(to_claim),
        claimed=len(to_claim),
        median_to_close=_median(to_close),
        closed=len(to_close),
        points=points,
    )


def record_page_view(session: Session, *, actor: Actor, now: datetime, page: str) -> None:
    """Audit a console page that reads no tip (e.g. the flows page)."""
    record_audit(session, actor=actor, action=AuditAction.VIEW, now=now, detail=page)


# --- Spam ------------------------------------------------------------------------------------


def mark_tip_reporter_as_spam(
    session: Session,
    *,
    tip_id: int,
    actor: Actor,
    reason: str,
    now: datetime,
    reject_tip: bool = True,
) -> bool:
    """Mark the pseudonym behind a tip as spam: its future tips go to the spam folder (the
    gateway rejects them on arrival). With `reject_tip`, this tip goes there too when its
    status allows a rejection. True when this tip was rejected.

    The audit row names the tip and the reason, never the pseudonym.
    """
    if not actor.oversees:
        raise NotPermittedError("only supervisors and admins mark reporters as spam")
    reason = " ".join(reason.split())[:300]
    if not reason:
        raise InvalidActionError("marking a reporter as spam needs a reason")
    # Written first so SQLite's write lock is taken before the read (see read_dashboard); a
    # missing tip raises below and the whole transaction, this row included, is rolled back.
    record_audit(session, actor=actor, action=AuditAction.STATUS, now=now, tip_id=tip_id,
                 detail=f"reporter marked as spam; reason: {reason}")
    tip = session.get(Tip, tip_id)
    if tip is None:
        raise TipNotFoundError(f"no tip {tip_id}")
    repo.mark_spam(session, reporter_id=tip.reporter_id)
    if not reject_tip or TipStatus.REJECTED not in TRANSITIONS[tip.status]:
        return False
    change_tip_status(session, tip_id=tip_id, actor=actor, status=TipStatus.REJECTED,
                      reason=f"{SPAM_REASON_PREFIX} {reason}", now=now)
    return True


def tip_reporter_is_spam(session: Session, *, tip_id: int) -> bool:
    """Whether the pseudonym behind this tip is marked as spam (the pseudonym stays here)."""
    reporter_id = session.execute(select(Tip.reporter_id).where(col(Tip.id) == tip_id)).scalar()
    return reporter_id is not None and repo.is_spam(session, reporter_id=reporter_id)


def list_spam_folder(session: Session, *, limit: int = 50, offset: int = 0) -> QueuePage:
    """Rejected tips whose reason says spam, newest first: kept, out of the working queue."""
    statement = (
        select(Tip)
        .where(col(Tip.status) == TipStatus.REJECTED.value)
        .where(col(Tip.status_reason).startswith(SPAM_REASON_PREFIX))
        .order_by(col(Tip.received_at).desc(), col(Tip.id).desc())
        .offset(offset)
        .limit(limit + 1)
    )
    tips = list(session.exec(statement))
    for tip in tips:
        tip.received_at = as_utc(tip.received_at)
    has_more = len(tips) > limit
    tips = tips[:limit]
    tags: dict[int, list[str]] = {tip.id: [] for tip in tips if tip.id is not None}
    if tags:
        for row in session.exec(select(TipTag).where(col(TipTag.tip_id).in_(list(tags)))
                                .order_by(col(TipTag.tag))):
            tags[row.tip_id].append(row.tag)
    # Finished tips hold no claims: nobody to name.
    return QueuePage(tips=tips, tags=tags, holders={}, has_more=has_more)
