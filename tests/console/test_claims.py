""""Next tip" under contention: 20 officers at once on SQLite and on PostgreSQL, each thread
with its own session; no tip may be claimed twice. Plus the queue order and claim expiry, on
a schema built by the real migrations."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from storage import console as store
from storage import repo
from storage.console import Actor, OfficerCreate, OfficerRole, QueueFilter
from storage.db import Database, make_engine, migrate
from storage.models import TipCreate, TipStatus, Urgency

OFFICERS = 20
TIPS = 200
LEASE = timedelta(minutes=20)
URGENCIES = [Urgency.LOW, Urgency.NORMAL, Urgency.HIGH, Urgency.CRITICAL]


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'claims.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    migrate(url)
    db = Database(make_engine(url))
    yield db
    db.dispose()


def add_officers(db: Database, count: int) -> list[Actor]:
    def make(session: Any) -> list[Actor]:
        actors = []
        for n in range(count):
            officer = store.create_officer(session, officer=OfficerCreate(
                username=f"officer{n:02d}", role=OfficerRole.OFFICER, password_hash="x"))
            assert officer.id is not None
            actors.append(Actor(officer_id=officer.id, username=officer.username,
                                role=officer.role))
        return actors

    return db.run_sync(make)


def add_tips(db: Database, count: int, *, start: datetime) -> None:
    def make(session: Any) -> None:
        for n in range(count):
            repo.create_tip(session, tip=TipCreate(
                what=f"tip {n}", language="en", channel="sms",
                reporter_id="r" * 32, submission_key=secrets.token_hex(16)),
                urgency=URGENCIES[n % 4], reasons=[], now=start + timedelta(seconds=n))

    db.run_sync(make)


def test_twenty_officers_pressing_next_never_get_the_same_tip(database: Database) -> None:
    now = datetime.now(UTC)
    actors = add_officers(database, OFFICERS)
    add_tips(database, TIPS, start=now - timedelta(hours=1))
    barrier = threading.Barrier(OFFICERS)
    claimed: dict[int, list[int]] = {a.officer_id: [] for a in actors}
    errors: list[BaseException] = []

    def officer(actor: Actor) -> None:
        try:
            barrier.wait()
            while True:
                # Each call is its own session and transaction, like one HTTP request.
                tip_id = database.run_sync(
                    lambda s: store.claim_next_tip(s, actor=actor, lease=LEASE, now=now))
                if tip_id is None:
                    return
                claimed[actor.officer_id].append(tip_id)
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=officer, args=(a,)) for a in actors]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    everything = [tip for tips in claimed.values() for tip in tips]
    assert len(everything) == TIPS
    assert len(set(everything)) == TIPS, "a tip was claimed twice"
    assert sum(1 for tips in claimed.values() if tips) > 1  # really concurrent

    def stored(session: Any) -> tuple[dict[int, int | None], int]:
        page = store.list_queue(session, flt=QueueFilter(), now=now, limit=TIPS)
        audits = store.list_audit(session, action=store.AuditAction.CLAIM, limit=10 * TIPS)
        return {t.id or 0: t.claimed_by for t in page.tips}, len(audits)

    holders, audited = database.run_sync(stored)
    for officer_id, tips in claimed.items():
        assert all(holders[tip] == officer_id for tip in tips)
    assert audited == TIPS


def test_next_tip_is_the_most_urgent_then_the_oldest(database: Database) -> None:
    now = datetime.now(UTC)
    (actor,) = add_officers(database, 1)
    add_tips(database, 8, start=now - timedelta(hours=1))
    order = []
    while (tip_id := database.run_sync(
            lambda s: store.claim_next_tip(s, actor=actor, lease=LEASE, now=now))) is not None:
        order.append(tip_id)
    # Tips 1..8 cycle low, normal, high, critical: critical 4, 8; high 3, 7; normal 2, 6; low 1, 5.
    assert order == [4, 8, 3, 7, 2, 6, 1, 5]
    page = database.run_sync(lambda s: store.list_queue(s, flt=QueueFilter(), now=now))
    assert [t.id for t in page.tips] == order
    assert all(t.status == TipStatus.IN_REVIEW for t in page.tips)


def test_an_expired_claim_goes_back_into_the_queue(database: Database) -> None:
    now = datetime.now(UTC)
    first, second = add_officers(database, 2)
    add_tips(database, 1, start=now)
    tip = database.run_sync(lambda s: store.claim_next_tip(s, actor=first, lease=LEASE, now=now))
    assert database.run_sync(
        lambda s: store.claim_next_tip(s, actor=second, lease=LEASE, now=now)) is None
    later = now + LEASE + timedelta(seconds=1)
    assert database.run_sync(
        lambda s: store.claim_next_tip(s, actor=second, lease=LEASE, now=later)) == tip


# How each database says whether a commit waits for the disk: (query, normal, during a claim).
DURABILITY_PROBE = {
    "sqlite": ("PRAGMA synchronous", "2", "1"),  # FULL, then NORMAL (no fsync at commit)
    "postgresql": ("SHOW synchronous_commit", "on", "off"),
}


def test_a_claim_alone_commits_without_waiting_for_the_disk(database: Database) -> None:
    """Only the claim (a lease) skips waiting for the disk at commit; the next unit of work on
    the same pooled connection is durable again, and the claim and its audit row are still
    one transaction."""
    query, normal, during_claim = DURABILITY_PROBE[database.engine.dialect.name]
    now = datetime.now(UTC)
    [actor] = add_officers(database, 1)
    add_tips(database, 1, start=now - timedelta(minutes=5))

    def level(session: Any) -> str:
        return str(session.connection().exec_driver_sql(query).scalar())

    def claim_and_read_level(session: Any) -> tuple[int | None, str]:
        tip_id = store.claim_next_tip(session, actor=actor, lease=LEASE, now=now)
        return tip_id, level(session)

    assert database.run_sync(level) == normal
    tip_id, level_during_claim = database.run_sync(claim_and_read_level)
    assert tip_id is not None
    assert level_during_claim == during_claim
    assert database.run_sync(level) == normal  # for whoever uses the connection next
    entries = database.run_sync(lambda s: store.list_audit(s, tip_id=tip_id))
    assert [entry.action for entry in entries] == ["claim"]
