"""Retention on SQLite and PostgreSQL: what goes (finished tips with everything hanging off them,
expired vault entries, old processed ledger rows, silent reporters, unattached files, aged Rasa
tracker events under the sender's lock) and what stays (open tips, tips on legal hold, pending
messages, live entries, recent events). Legal hold through the console: supervisors and admins
only, with a reason, audited."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import (
    Column,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    func,
    select,
    text,
)

from bot.cli import main as cli_main
from bot.retention import RetentionJob, RetentionPolicy, SenderLock
from storage import console as store
from storage import repo
from storage.db import Database, alembic_config, make_engine, migrate
from storage.models import (
    Attachment,
    InboundMessage,
    Reporter,
    Tip,
    TipCreate,
    TipStatus,
    Urgency,
    VaultEntry,
)
from storage.retention import RETENTION_ACTOR, TrackerStore, tables_referencing_tip
from tests.console.conftest import Console, console, console_factory  # noqa: F401  (fixtures)

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
POLICY = RetentionPolicy(retention_days=90, tracker_retention_days=30, inbound_retention_hours=48)
SECRET_TEXT = "goats taken by Omari behind the blue mosque"


# --- fixtures and factories ------------------------------------------------------------------


def _database_url(request: pytest.FixtureRequest, tmp_path: Path, name: str) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / name}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    url = _database_url(request, tmp_path, "tipline.db")
    migrate(url)
    database = Database(make_engine(url))
    yield database
    database.dispose()


def _actor(db: Database, username: str = "amina", role: str = "supervisor") -> store.Actor:
    def make(session: Any) -> store.Actor:
        officer = store.create_officer(session, officer=store.OfficerCreate(
            username=username, role=store.OfficerRole(role), password_hash="not-a-real-hash"))
        assert officer.id is not None
        return store.Actor(officer_id=officer.id, username=officer.username, role=officer.role)

    return db.run_sync(make)


def make_tip(db: Database, *, received: datetime, what: str = "cattle stolen",
             reporter_id: str | None = None) -> int:
    draft = TipCreate(what=what, where_text="river", when_text="today", language="en",
                      channel="sms", reporter_id=reporter_id or "r" + secrets.token_hex(20),
                      submission_key=secrets.token_hex(16))

    def create(session: Any) -> int:
        tip = repo.create_tip(session, tip=draft, urgency=Urgency.NORMAL, reasons=[], now=received)
        assert tip.id is not None
        return tip.id

    return db.run_sync(create)


def close_tip(db: Database, actor: store.Actor, tip_id: int, *, at: datetime,
              status: TipStatus = TipStatus.CLOSED) -> None:
    def work(session: Any) -> None:
        store.change_tip_status(session, tip_id=tip_id, actor=actor, status=TipStatus.IN_REVIEW, now=at)
        store.change_tip_status(session, tip_id=tip_id, actor=actor, status=status, now=at,
                                reason="handled by the station at " + SECRET_TEXT)

    db.run_sync(work)


def full_tip(db: Database, actor: store.Actor, *, received: datetime) -> int:
    """A tip with a file, a note, tags, a changed urgency and a follow-up question answered."""
    reporter = "r" + secrets.token_hex(20)
    tip_id = make_tip(db, received=received, what=SECRET_TEXT, reporter_id=reporter)

    def decorate(session: Any) -> None:
        repo.store_attachment(session, reporter_id=reporter, kind="image", content_type="image/png",
                              data=b"\x89PNG scrubbed", metadata_removed=True, flagged_reason=None,
                              now=received)
        tip = session.get(Tip, tip_id)
        repo.attach_pending_to_tip(session, tip=tip)
        store.add_tip_note(session, tip_id=tip_id, actor=actor, text="note: " + SECRET_TEXT,
                           now=received)
        store.change_tip_tags(session, tip_id=tip_id, actor=actor, add=["goats", "mosque"],
                              now=received)
        store.change_tip_urgency(session, tip_id=tip_id, actor=actor, urgency=Urgency.HIGH,
                                 reason="armed: " + SECRET_TEXT, now=received)
        follow_up = store.create_follow_up(session, tip_id=tip_id, actor=actor, now=received,
                                           question="Which road did they take?")
        assert follow_up.id is not None
        store.mark_follow_up_sent(session, follow_up_id=follow_up.id, now=received)
        store.record_follow_up_answer(session, follow_up_id=follow_up.id,
                                      text="north road, " + SECRET_TEXT, now=received)

    db.run_sync(decorate)
    return tip_id


def rows_of(db: Database, table: str, tip_id: int) -> int:
    return int(db.run_sync(lambda s: s.execute(
        text(f"SELECT count(*) FROM {table} WHERE tip_id = :tip"), {"tip": tip_id}).scalar_one()))  # noqa: S608


def tip_exists(db: Database, tip_id: int) -> bool:
    return db.run_sync(lambda s: s.get(Tip, tip_id)) is not None


def job(db: Database, **kwargs: Any) -> RetentionJob:
    return RetentionJob(db=db, policy=kwargs.pop("policy", POLICY), clock=lambda: NOW, **kwargs)


# --- tips --------------------------------------------------------------------------------------


async def test_a_finished_tip_past_retention_goes_with_everything_hanging_off_it(db: Database) -> None:
    actor = _actor(db)
    old = full_tip(db, actor, received=NOW - timedelta(days=120))
    close_tip(db, actor, old, at=NOW - timedelta(days=91))
    recent = full_tip(db, actor, received=NOW - timedelta(days=120))
    close_tip(db, actor, recent, at=NOW - timedelta(days=89))
    assert db.run_sync(lambda s: s.get(Tip, old)).closed_at is not None
    for table in ("attachment", "tip_note", "tip_tag", "follow_up", "tip_message"):
        assert rows_of(db, table, old) > 0, table

    report = await job(db).run_once(NOW)

    assert not report.failed
    assert not tip_exists(db, old)
    children = db.run_sync(tables_referencing_tip)
    assert {"attachment", "tip_note", "tip_tag", "follow_up", "tip_message"} <= set(children)
    for table in children:
        assert rows_of(db, table, old) == 0, table
    assert report.counts["tip"] == 1
    assert report.counts["attachment"] == 1 and report.counts["tip_note"] == 1
    assert report.counts["tip_tag"] == 2 and report.counts["tip_message"] == 2
    assert report.counts["follow_up"] == 1
    # The other tip is inside its retention period: untouched.
    assert tip_exists(db, recent) and rows_of(db, "tip_message", recent) == 2

    # The audit trail of the deleted tip stays, without the officers' free text about it.
    trail = db.run_sync(lambda s: store.list_audit(s, tip_id=old, limit=100))
    assert {e.action for e in trail} >= {"note", "tag", "urgency", "status", "follow_up", "retention"}
    assert all(SECRET_TEXT not in e.detail and "goats" not in e.detail for e in trail)
    deletion = next(e for e in trail if e.action == "retention")
    assert deletion.officer_id is None and deletion.officer_username == RETENTION_ACTOR
    assert deletion.detail == f"deleted: closed since {(NOW - timedelta(days=91)):%Y-%m-%d}"
    # The kept tip's trail keeps its details.
    assert any(SECRET_TEXT in e.detail for e in db.run_sync(
        lambda s: store.list_audit(s, tip_id=recent, limit=100)))


async def test_rows_of_tables_this_process_never_imported_go_too(db: Database) -> None:
    """A module added later (or not imported by the CLI) hangs its own table off the tip."""
    actor = _actor(db)
    tip_id = make_tip(db, received=NOW - timedelta(days=200))
    close_tip(db, actor, tip_id, at=NOW - timedelta(days=100))

    def add_table(session: Any) -> None:
        session.execute(text("CREATE TABLE future_tip_extra (id INTEGER PRIMARY KEY, "
                             "tip_id INTEGER NOT NULL REFERENCES tip (id), payload TEXT)"))
        session.execute(text("INSERT INTO future_tip_extra (id, tip_id, payload) VALUES (1, :tip, :p)"),
                        {"tip": tip_id, "p": SECRET_TEXT})

    db.run_sync(add_table)
    report = await job(db).run_once(NOW)

    assert not report.failed and report.counts["future_tip_extra"] == 1
    assert not tip_exists(db, tip_id) and rows_of(db, "future_tip_extra", tip_id) == 0


async def test_rejected_and_duplicate_tips_are_final_too(db: Database) -> None:
    actor = _actor(db)
    rejected = make_tip(db, received=NOW - timedelta(days=200))
    close_tip(db, actor, rejected, at=NOW - timedelta(days=100), status=TipStatus.REJECTED)
    original = make_tip(db, received=NOW - timedelta(days=1))
    duplicate = make_tip(db, received=NOW - timedelta(days=200))
    db.run_sync(lambda s: store.change_tip_status(
        s, tip_id=duplicate, actor=actor, status=TipStatus.DUPLICATE, duplicate_of=original,
        now=NOW - timedelta(days=100)))

    report = await job(db).run_once(NOW)

    assert report.counts["tip"] == 2
    assert not tip_exists(db, rejected) and not tip_exists(db, duplicate)
    assert tip_exists(db, original)


async def test_a_tip_on_legal_hold_is_kept(db: Database) -> None:
    actor = _actor(db)
    held = full_tip(db, actor, received=NOW - timedelta(days=400))
    close_tip(db, actor, held, at=NOW - timedelta(days=300))
    db.run_sync(lambda s: store.set_legal_hold(s, tip_id=held, actor=actor, hold=True,
                                               reason="court order A-17", now=NOW))

    report = await job(db).run_once(NOW)

    assert report.counts["tip"] == 0
    assert tip_exists(db, held) and rows_of(db, "attachment", held) == 1


async def test_open_tips_are_never_deleted(db: Database) -> None:
    actor = _actor(db)
    ancient = NOW - timedelta(days=3000)
    new = make_tip(db, received=ancient)
    in_review = make_tip(db, received=ancient)
    db.run_sync(lambda s: store.change_tip_status(
        s, tip_id=in_review, actor=actor, status=TipStatus.IN_REVIEW, now=ancient))
    forwarded = make_tip(db, received=ancient)
    for status in (TipStatus.IN_REVIEW, TipStatus.VERIFIED, TipStatus.FORWARDED):
        db.run_sync(lambda s, st=status: store.change_tip_status(
            s, tip_id=forwarded, actor=actor, status=st, now=ancient))

    report = await job(db).run_once(NOW)

    assert report.counts["tip"] == 0
    assert all(tip_exists(db, t) for t in (new, in_review, forwarded))
    assert db.run_sync(lambda s: s.get(Tip, forwarded)).closed_at is None


async def test_tips_are_deleted_in_batches_until_none_is_left(db: Database) -> None:
    actor = _actor(db)
    tips = [make_tip(db, received=NOW - timedelta(days=200)) for _ in range(5)]
    for tip_id in tips:
        close_tip(db, actor, tip_id, at=NOW - timedelta(days=100))

    report = await job(db, policy=RetentionPolicy(batch_size=2)).run_once(NOW)

    assert report.counts["tip"] == 5
    assert not any(tip_exists(db, t) for t in tips)


# --- vault, ledger, reporters, unattached files -------------------------------------------------


async def test_expired_vault_entries_are_purged_and_live_ones_kept(db: Database) -> None:
    def seed(session: Any) -> None:
        repo.put_vault_entry(session, reporter_id="expired", ciphertext=b"old",
                             expires_at=NOW - timedelta(seconds=1))
        repo.put_vault_entry(session, reporter_id="live", ciphertext=b"new",
                             expires_at=NOW + timedelta(days=1))

    db.run_sync(seed)
    report = await job(db).run_once(NOW)

    assert report.counts["vault_entry"] == 1
    assert db.run_sync(lambda s: s.get(VaultEntry, "expired")) is None
    assert db.run_sync(lambda s: s.get(VaultEntry, "live")) is not None


async def test_old_processed_inbound_rows_go_and_pending_ones_stay(db: Database) -> None:
    def record(session: Any, sid: str, received: datetime, done: bool) -> None:
        inbound_id = repo.record_inbound(session, channel="sms", provider_message_id=sid,
                                         reporter_id="r" * 64, kind="text", text="hello",
                                         language_hint=None, now=received)
        assert inbound_id is not None
        if done:
            repo.complete_inbound(session, inbound_id=inbound_id)

    db.run_sync(lambda s: record(s, "old-done", NOW - timedelta(hours=49), True))
    db.run_sync(lambda s: record(s, "recent-done", NOW - timedelta(hours=47), True))
    db.run_sync(lambda s: record(s, "old-pending", NOW - timedelta(days=10), False))

    report = await job(db).run_once(NOW)

    assert report.counts["inbound_message"] == 1
    left = db.run_sync(lambda s: sorted(s.execute(select(InboundMessage.provider_message_id)).scalars()))
    assert left == ["old-pending", "recent-done"]


async def test_silent_reporters_without_an_address_go_with_their_unattached_files(db: Database) -> None:
    silent = NOW - timedelta(days=31)

    def seed(session: Any) -> None:
        for reporter_id in ("gone", "has-vault", "has-pending", "recent"):
            repo.upsert_reporter_contact(
                session, reporter_id=reporter_id, channel="sms",
                now=NOW - timedelta(days=1) if reporter_id == "recent" else silent)
        repo.put_vault_entry(session, reporter_id="has-vault", ciphertext=b"x",
                             expires_at=NOW + timedelta(days=5))
        repo.record_inbound(session, channel="sms", provider_message_id="waiting",
                            reporter_id="has-pending", kind="text", text="hi", language_hint=None,
                            now=silent)
        repo.store_attachment(session, reporter_id="gone", kind="image", content_type="image/png",
                              data=b"old photo", metadata_removed=True, flagged_reason=None,
                              now=silent)
        repo.store_attachment(session, reporter_id="recent", kind="image", content_type="image/png",
                              data=b"new photo", metadata_removed=True, flagged_reason=None,
                              now=NOW - timedelta(days=1))

    db.run_sync(seed)
    report = await job(db).run_once(NOW)

    assert report.counts["reporter"] == 1 and report.counts["unattached_file"] == 1
    left = db.run_sync(lambda s: sorted(s.execute(select(Reporter.reporter_id)).scalars()))
    assert left == ["has-pending", "has-vault", "recent"]
    files = db.run_sync(lambda s: list(s.execute(select(Attachment.reporter_id)).scalars()))
    assert files == ["recent"]


async def test_a_failing_kind_does_not_stop_the_others(db: Database) -> None:
    class BrokenTracker(TrackerStore):
        def senders_with_events_before(self, *, before: datetime) -> list[str]:
            raise RuntimeError("tracker database unreachable")

    db.run_sync(lambda s: repo.put_vault_entry(s, reporter_id="expired", ciphertext=b"x",
                                               expires_at=NOW - timedelta(days=1)))
    report = await job(db, tracker=BrokenTracker("sqlite:///nowhere.db"),
                       sender_lock=TurnLock()).run_once(NOW)

    assert report.failed == ["tracker_events"]
    assert report.counts["vault_entry"] == 1


# --- Rasa's tracker store ---------------------------------------------------------------------

# Rasa 3.6's SQLTrackerStore table (rasa/core/tracker_store.py: SQLTrackerStore.SQLEvent).
_rasa_metadata = MetaData()
RASA_EVENTS = Table(
    "events", _rasa_metadata,
    Column("id", Integer, primary_key=True),
    Column("sender_id", String(255), nullable=False, index=True),
    Column("type_name", String(255), nullable=False),
    Column("timestamp", Float),
    Column("intent_name", String(255)),
    Column("action_name", String(255)),
    Column("data", Text),
)


class TurnLock:
    """The per-sender turn as the gateway's pipeline keeps it (its `_active` set): a sender is
    busy while a dialogue turn or a holder has it. Records who held it."""

    def __init__(self) -> None:
        self.active: set[str] = set()
        self.taken: list[str] = []
        self._changed = asyncio.Condition()

    @contextlib.asynccontextmanager
    async def hold(self, reporter_id: str) -> AsyncIterator[None]:
        async with self._changed:
            await self._changed.wait_for(lambda: reporter_id not in self.active)
            self.active.add(reporter_id)
        self.taken.append(reporter_id)
        try:
            yield
        finally:
            async with self._changed:
                self.active.discard(reporter_id)
                self._changed.notify_all()


class LockCheckingTracker(TrackerStore):
    """The real tracker store, refusing to delete a sender's rows unless its lock is held."""

    def __init__(self, url: str, lock: TurnLock) -> None:
        super().__init__(url)
        self.lock = lock
        self.deleted_for: list[str] = []

    def delete_events_before(self, *, sender_id: str, before: datetime) -> int:
        assert sender_id in self.lock.active, "tracker rows deleted without the sender's lock"
        self.deleted_for.append(sender_id)
        return super().delete_events_before(sender_id=sender_id, before=before)


@pytest.fixture(params=["sqlite", "postgresql"])
def tracker_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    url = _database_url(request, tmp_path, "rasa-trackers.db")
    engine = create_engine(url)
    _rasa_metadata.create_all(engine)
    engine.dispose()
    return url


def add_events(url: str, sender: str, *ages: timedelta, text_: str = "hello") -> None:
    engine = create_engine(url)
    with engine.begin() as connection:
        for age in ages:
            moment = (NOW - age).timestamp()
            connection.execute(RASA_EVENTS.insert().values(
                sender_id=sender, type_name="user", timestamp=moment, intent_name="inform",
                data=json.dumps({"event": "user", "timestamp": moment, "text": text_})))
    engine.dispose()


def events_of(url: str) -> dict[str, int]:
    engine = create_engine(url)
    with engine.connect() as connection:
        rows = connection.execute(select(RASA_EVENTS.c.sender_id, func.count()).group_by(
            RASA_EVENTS.c.sender_id))
        counts = {str(sender): int(n) for sender, n in rows}
    engine.dispose()
    return counts


async def test_aged_tracker_events_go_under_the_senders_lock(db: Database, tracker_url: str) -> None:
    add_events(tracker_url, "dead-conversation", timedelta(days=40), timedelta(days=35),
               text_=SECRET_TEXT)
    add_events(tracker_url, "long-conversation", timedelta(days=45), timedelta(days=29),
               timedelta(minutes=5))
    add_events(tracker_url, "fresh", timedelta(days=1), timedelta(minutes=1))
    lock = TurnLock()
    tracker = LockCheckingTracker(tracker_url, lock)

    report = await job(db, tracker=tracker, sender_lock=lock).run_once(NOW)
    tracker.dispose()

    assert report.counts["tracker_events"] == 3
    assert events_of(tracker_url) == {"long-conversation": 2, "fresh": 2}
    # Each sender touched was locked, once; a sender with nothing aged was not disturbed.
    assert sorted(lock.taken) == ["dead-conversation", "long-conversation"]
    assert sorted(tracker.deleted_for) == sorted(lock.taken)
    assert not lock.active


async def test_a_sender_in_a_dialogue_turn_is_pruned_after_the_turn(db: Database, tracker_url: str) -> None:
    add_events(tracker_url, "busy", timedelta(days=60))
    lock = TurnLock()
    turn_over = asyncio.Event()

    async def dialogue_turn() -> None:
        async with lock.hold("busy"):
            await asyncio.sleep(0.2)
            # Rasa saves the tracker at the end of the turn: the old rows must still be there.
            assert events_of(tracker_url) == {"busy": 1}
            turn_over.set()

    turn = asyncio.create_task(dialogue_turn())
    await asyncio.sleep(0.01)
    tracker = LockCheckingTracker(tracker_url, lock)
    report = await job(db, tracker=tracker, sender_lock=lock).run_once(NOW)
    tracker.dispose()
    await turn

    assert turn_over.is_set()
    assert report.counts["tracker_events"] == 1 and events_of(tracker_url) == {}


async def test_without_a_sender_lock_tracker_events_are_left_alone(db: Database, tracker_url: str) -> None:
    add_events(tracker_url, "old", timedelta(days=60))
    tracker = TrackerStore(tracker_url)

    report = await job(db, tracker=tracker).run_once(NOW)
    tracker.dispose()

    assert report.skipped == ["tracker_events"] and not report.failed
    assert events_of(tracker_url) == {"old": 1}


def test_a_tracker_store_rasa_never_created_is_not_created(tmp_path: Path) -> None:
    missing = tmp_path / "rasa-trackers.db"
    tracker = TrackerStore(f"sqlite:///{missing}")
    assert tracker.senders_with_events_before(before=NOW) == []
    assert tracker.delete_events_before(sender_id="x", before=NOW) == 0
    assert not missing.exists()


def test_the_pipeline_shape_satisfies_the_protocol() -> None:
    assert isinstance(TurnLock(), SenderLock)
    assert not isinstance(object(), SenderLock)


# --- schedule, CLI, migration -----------------------------------------------------------------


async def test_the_periodic_loop_runs_and_stops(db: Database) -> None:
    actor = _actor(db)
    tip_id = make_tip(db, received=NOW - timedelta(days=200))
    close_tip(db, actor, tip_id, at=NOW - timedelta(days=100))
    loop = asyncio.create_task(job(db).run_forever(first_delay_seconds=0))
    try:
        async with asyncio.timeout(10):
            while tip_exists(db, tip_id):  # noqa: ASYNC110  (the database has no event to wait on)
                await asyncio.sleep(0.02)
    finally:
        loop.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loop


def test_cli_retention_run_prints_counts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    tracker = f"sqlite:///{tmp_path / 'rasa.db'}"
    engine = create_engine(tracker)
    _rasa_metadata.create_all(engine)
    engine.dispose()
    monkeypatch.setenv("TIPLINE_DATABASE__URL", url)
    monkeypatch.setenv("TIPLINE_RASA__TRACKER_STORE_URL", tracker)
    migrate(url)
    database = Database(make_engine(url))
    real_now = datetime.now(UTC)
    actor = _actor(database)
    tip_id = make_tip(database, received=real_now - timedelta(days=300))
    close_tip(database, actor, tip_id, at=real_now - timedelta(days=200))
    database.dispose()
    moment = (real_now - timedelta(days=60)).timestamp()
    engine = create_engine(tracker)
    with engine.begin() as connection:
        connection.execute(RASA_EVENTS.insert().values(sender_id="old", type_name="user",
                                                       timestamp=moment, data="{}"))
    engine.dispose()

    assert cli_main(["retention", "run"]) == 0
    out = capsys.readouterr().out
    assert "tip: 1" in out and "vault_entry: 0" in out
    assert "tracker_events: skipped" in out

    assert cli_main(["retention", "run", "--gateway-stopped"]) == 0
    out = capsys.readouterr().out
    assert "tip: 0" in out and "tracker_events: 1" in out


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_tips_finished_before_the_upgrade_count_as_closed_at_the_upgrade(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    url = (f"sqlite:///{tmp_path / 'old.db'}" if backend == "sqlite"
           else str(request.getfixturevalue("postgres_url")))
    command.upgrade(alembic_config(url), "0002_console")
    engine = make_engine(url)
    insert = text(
        "INSERT INTO tip (what, where_text, when_text, danger_now, language, channel, receipt_code,"
        " reporter_id, submission_key, urgency, urgency_rank, urgency_reasons, status, received_at)"
        " VALUES ('x', '', '', false, 'en', 'sms', :code, 'r', :key, 'normal', 2, '[]', :status,"
        " :received)")
    with engine.begin() as connection:
        for code, status in (("OPEN-0001", "in_review"), ("DONE-0001", "closed")):
            connection.execute(insert, {"code": code, "key": code, "status": status,
                                        "received": datetime(2020, 1, 1, tzinfo=UTC)})
    before = datetime.now(UTC)
    migrate(url)
    database = Database(engine)
    try:
        tips = {t.receipt_code: t for t in database.run_sync(
            lambda s: list(s.execute(select(Tip)).scalars()))}
    finally:
        database.dispose()
    assert tips["OPEN-0001"].closed_at is None
    closed_at = repo.as_utc(tips["DONE-0001"].closed_at)
    assert closed_at >= before - timedelta(seconds=1)
    assert not tips["DONE-0001"].legal_hold


# --- legal hold in the console ------------------------------------------------------------------


def test_legal_hold_is_for_supervisors_and_admins_with_a_reason_and_audited(console: Console) -> None:  # noqa: F811
    supervisor = console.login(console.account("sabine", "supervisor"))
    officer = console.login(console.account("amina"))
    admin = console.login(console.account("root", "admin"))
    tip_id = console.tip()
    for status in ("in_review", "closed"):
        assert supervisor.post(f"/console/tips/{tip_id}/status",
                               data={"status": status}).status_code == 303
    page = supervisor.get(f"/console/tips/{tip_id}")
    assert "Retention deletes this tip on" in page.text and "Put on legal hold" in page.text
    assert "Put on legal hold" not in officer.get(f"/console/tips/{tip_id}").text

    def trail() -> list[Any]:
        return console.query(lambda s: [e for e in store.list_audit(s, tip_id=tip_id, limit=100)
                                        if e.action == "legal_hold"])

    denied = officer.post(f"/console/tips/{tip_id}/legal-hold",
                          data={"hold": "on", "reason": "I want it kept"})
    assert denied.status_code == 403 and not trail()
    assert supervisor.post(f"/console/tips/{tip_id}/legal-hold",
                           data={"hold": "on", "reason": "  "}).status_code == 400
    assert not trail()

    held = supervisor.post(f"/console/tips/{tip_id}/legal-hold",
                           data={"hold": "on", "reason": "court order A-17"})
    assert held.status_code == 303 and "notice=legal_hold_changed" in held.headers["location"]
    rows = trail()
    assert len(rows) == 1 and rows[0].officer_username == "sabine"
    assert rows[0].detail == "on; reason: court order A-17"
    page = officer.get(f"/console/tips/{tip_id}").text
    assert "On legal hold" in page and "Retention deletes this tip on" not in page
    assert supervisor.post(f"/console/tips/{tip_id}/legal-hold",
                           data={"hold": "on", "reason": "again"}).status_code == 400

    later = console.clock() + timedelta(days=120)
    retention = RetentionJob(db=console.db, policy=POLICY)
    assert asyncio.run(retention.run_once(later)).counts["tip"] == 0

    released = admin.post(f"/console/tips/{tip_id}/legal-hold",
                          data={"hold": "off", "reason": "case closed"})
    assert released.status_code == 303
    assert trail()[0].detail == "off; reason: case closed" and trail()[0].officer_username == "root"
    assert asyncio.run(retention.run_once(later)).counts["tip"] == 1
    # The trail outlives the tip; the hold reasons, free text, do not.
    assert [e.detail for e in trail()] == ["(detail removed with the tip)"] * 2
