"""Storage on SQLite and on PostgreSQL: migrations, the exactly-once ledger, tips, the vault."""

from __future__ import annotations

import asyncio
import gc
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import inspect
from sqlmodel import SQLModel

from storage import repo
from storage.db import Connection, Database, GroupCommit, Session, make_engine, migrate, run_in_thread
from storage.models import TipCreate, TipStatus, Urgency, utcnow


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'storage.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    migrate(url)
    database = Database(make_engine(url))
    yield database
    database.dispose()


def tip(**overrides: object) -> TipCreate:
    values: dict[str, object] = {
        "reporter_id": "r" * 64, "submission_key": "k" * 64, "what": "cattle stolen",
        "where_text": "river", "when_text": "today", "danger_now": False,
        "language": "en", "channel": "sms",
    }
    values.update(overrides)
    return TipCreate(**values)  # type: ignore[arg-type]


def test_migrations_match_the_models(db: Database) -> None:
    tables = set(inspect(db.engine).get_table_names())
    assert set(SQLModel.metadata.tables) <= tables
    for name, table in SQLModel.metadata.tables.items():
        columns = {c["name"] for c in inspect(db.engine).get_columns(name)}
        assert set(table.columns.keys()) == columns, name


def test_a_provider_message_is_recorded_once(db: Database) -> None:
    def record(session):  # type: ignore[no-untyped-def]
        return repo.record_inbound(
            session, channel="sms", provider_message_id="SM1", reporter_id="r" * 64,
            kind="text", text="hello", language_hint=None,
        )

    first = db.run_sync(record)
    second = db.run_sync(record)
    assert first is not None
    assert second is None
    assert db.run_sync(repo.count_pending) == 1


def test_concurrent_copies_of_one_message_make_one_row(db: Database) -> None:
    results: list[int | None] = []
    barrier = threading.Barrier(10)

    def worker() -> None:
        barrier.wait()
        results.append(db.run_sync(lambda s: repo.record_inbound(
            s, channel="sms", provider_message_id="SM-race", reporter_id="r" * 64,
            kind="text", text="hello", language_hint=None,
        )))

    threads = [threading.Thread(target=worker) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len([r for r in results if r is not None]) == 1


def inbound(sid: str, reporter: str = "a" * 64, **overrides: object) -> dict[str, object]:
    values: dict[str, object] = {
        "channel": "sms", "provider_message_id": sid, "reporter_id": reporter, "kind": "text",
        "text": f"text of {sid}", "language_hint": None, "details": {}, "received_at": utcnow(),
    }
    values.update(overrides)
    return values


def test_a_batch_records_each_provider_message_once(db: Database) -> None:
    """One statement for a whole batch, answering as one record_inbound per message would:
    a copy inside the batch, or of an earlier batch's message, gets None and no row."""
    first = db.run_sync(lambda s: repo.record_inbound_many(s, messages=[
        inbound("SM-a"), inbound("SM-b"), inbound("SM-a"), inbound("SM-a", channel="telegram"),
    ]))
    assert first[0] is not None and first[1] is not None and first[3] is not None
    assert first[2] is None  # the copy inside the batch
    assert first[0] < first[1] < first[3]  # type: ignore[operator]  (arrival order)
    second = db.run_sync(lambda s: repo.record_inbound_many(s, messages=[
        inbound("SM-c"), inbound("SM-b"), inbound("SM-c"), inbound("SM-d"),
    ]))
    assert second[1] is None and second[2] is None  # across batches, and inside this one
    assert second[0] is not None and second[3] is not None and second[0] < second[3]
    assert db.run_sync(lambda s: repo.record_inbound_many(s, messages=[inbound("SM-d")])) == [None]
    assert db.run_sync(lambda s: repo.record_inbound_many(s, messages=[])) == []
    assert db.run_sync(repo.count_pending) == 5
    texts = []
    while (oldest := db.run_sync(lambda s: repo.get_oldest_pending(s, reporter_id="a" * 64))):
        texts.append(oldest.text)
        db.run_sync(lambda s, i=oldest.id: repo.complete_inbound(s, inbound_id=i))
    assert texts == ["text of SM-a", "text of SM-b", "text of SM-a", "text of SM-c",
                     "text of SM-d"]


def test_concurrent_batches_with_the_same_message_make_one_row(db: Database) -> None:
    results: list[list[int | None]] = []
    barrier = threading.Barrier(6)

    def worker(n: int) -> None:
        barrier.wait()
        results.append(db.run_sync(lambda s: repo.record_inbound_many(s, messages=[
            inbound(f"SM-own-{n}"), inbound("SM-race")])))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(own is not None for own, _race in results)
    assert len([race for _own, race in results if race is not None]) == 1


def test_batched_contacts_and_vault_entries_end_as_one_by_one_would(db: Database) -> None:
    now = utcnow()
    times = [now + timedelta(seconds=n) for n in range(4)]
    db.run_sync(lambda s: repo.upsert_reporter_contact(
        s, reporter_id="old" * 8, channel="sms", now=now - timedelta(days=3)))
    db.run_sync(lambda s: repo.upsert_reporter_contacts(s, contacts=[
        ("new" * 8, "telegram", times[0]), ("old" * 8, "sms", times[1]),
        ("new" * 8, "telegram", times[2]), ("old" * 8, "sms", times[3]),
    ]))
    new = db.run_sync(lambda s: repo.get_reporter(s, reporter_id="new" * 8))
    old = db.run_sync(lambda s: repo.get_reporter(s, reporter_id="old" * 8))
    assert new is not None and old is not None and new.channel == "telegram"
    assert (repo.as_utc(new.first_contact_at), repo.as_utc(new.last_contact_at)) == (
        times[0], times[2])
    assert (repo.as_utc(old.first_contact_at), repo.as_utc(old.last_contact_at)) == (
        now - timedelta(days=3), times[3])

    db.run_sync(lambda s: repo.put_vault_entry(
        s, reporter_id="old" * 8, ciphertext=b"before", expires_at=now))
    db.run_sync(lambda s: repo.put_vault_entries(s, entries=[
        ("old" * 8, b"sealed-1", times[1]), ("new" * 8, b"sealed-2", times[2]),
        ("old" * 8, b"sealed-3", times[3]),
    ]))
    entries = {reporter: db.run_sync(lambda s, r=reporter: repo.get_vault_entry(
        s, reporter_id=r, now=now)) for reporter in ("old" * 8, "new" * 8)}
    assert {r: (e.ciphertext, repo.as_utc(e.expires_at)) for r, e in entries.items() if e} == {
        "old" * 8: (b"sealed-3", times[3]), "new" * 8: (b"sealed-2", times[2])}


async def test_group_commit_writes_concurrent_items_as_one_batch(db: Database) -> None:
    """Items submitted together reach `write` together, and each caller returns once its own
    item is committed; an item that fails its batch is retried alone and fails only its own
    caller."""
    batches: list[list[str]] = []

    def write(connection: Connection, items: Sequence[str]) -> None:
        batches.append(list(items))
        if "bad" in items:
            raise ValueError("refused")
        repo.record_inbound_many(connection, messages=[inbound(item) for item in items])

    commit = GroupCommit(db, write)
    try:
        await asyncio.gather(*(commit.submit(f"SM-{n}") for n in range(5)))
        assert batches == [[f"SM-{n}" for n in range(5)]]
        outcomes = await asyncio.gather(commit.submit("SM-x"), commit.submit("bad"),
                                        commit.submit("SM-x"), return_exceptions=True)
    finally:
        await commit.aclose()
    assert outcomes[0] is None and outcomes[2] is None
    assert isinstance(outcomes[1], ValueError)
    assert batches[1:] == [["SM-x", "bad", "SM-x"], ["SM-x"], ["bad"], ["SM-x"]]
    assert db.run_sync(repo.count_pending) == 6  # SM-0..4 and SM-x, once


async def test_a_cancelled_caller_waits_for_its_database_work(db: Database) -> None:
    """A gateway stopping mid-query: the cancellation reaches the caller only after the worker
    thread's transaction has ended, so disposing the engine next leaves no connection behind
    (on PostgreSQL, the postgres_url fixture checks from the server's side)."""
    started = threading.Event()
    finished: list[str] = []

    def slow_write(session: Session) -> None:
        started.set()
        # Holds the pooled connection inside a transaction for a while.
        session.connection().exec_driver_sql("SELECT 1")
        time.sleep(0.3)
        repo.record_inbound(session, channel="sms", provider_message_id="SM-slow",
                            reporter_id="r" * 64, kind="text", text="x", language_hint=None)
        finished.append("committed")

    task = asyncio.create_task(db.run(slow_write))
    await asyncio.to_thread(started.wait, 5)
    task.cancel()
    await asyncio.sleep(0.01)
    task.cancel()  # a second cancellation while waiting changes nothing
    with pytest.raises(asyncio.CancelledError):
        await task
    assert finished == ["committed"]
    assert db.run_sync(repo.count_pending) == 1  # the transaction the thread began is whole


async def test_run_in_thread_returns_and_raises_like_the_call() -> None:
    assert await run_in_thread(lambda a, b: a + b, 2, 3) == 5

    def fail() -> None:
        raise LookupError("nothing")

    with pytest.raises(LookupError):
        await run_in_thread(fail)


async def test_work_that_fails_after_its_caller_was_cancelled_is_not_reported_as_lost() -> None:
    """The caller gets its cancellation; the work's own error goes nowhere else (asyncio
    would otherwise log "exception was never retrieved", with the exception's text)."""
    loop = asyncio.get_running_loop()
    reported: list[dict[str, object]] = []
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    started = threading.Event()

    def fail_later() -> None:
        started.set()
        time.sleep(0.1)
        raise LookupError("nothing")

    task = asyncio.create_task(run_in_thread(fail_later))
    await asyncio.to_thread(started.wait, 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    gc.collect()
    await asyncio.sleep(0)
    loop.set_exception_handler(None)
    assert reported == []


def test_messages_come_out_in_arrival_order_per_reporter(db: Database) -> None:
    now = utcnow()
    for number in range(3):
        db.run_sync(lambda s, n=number: repo.record_inbound(
            s, channel="sms", provider_message_id=f"SM{n}", reporter_id="a" * 64,
            kind="text", text=f"message {n}", language_hint=None, now=now,
        ))
    first = db.run_sync(lambda s: repo.get_oldest_pending(s, reporter_id="a" * 64))
    assert first is not None and first.text == "message 0"
    db.run_sync(lambda s: repo.complete_inbound(s, inbound_id=first.id))  # type: ignore[arg-type]
    second = db.run_sync(lambda s: repo.get_oldest_pending(s, reporter_id="a" * 64))
    assert second is not None and second.text == "message 1"
    done = db.run_sync(lambda s: s.get(type(first), first.id))
    assert done.text is None  # the text is not kept once processed


def test_postponed_messages_are_not_due_yet(db: Database) -> None:
    now = utcnow()
    inbound_id = db.run_sync(lambda s: repo.record_inbound(
        s, channel="sms", provider_message_id="SM-late", reporter_id="b" * 64,
        kind="text", text="x", language_hint=None, now=now,
    ))
    assert db.run_sync(lambda s: repo.list_due_reporters(s, now=now)) == ["b" * 64]
    db.run_sync(lambda s: repo.postpone_inbound(
        s, inbound_id=inbound_id, retry_at=now + timedelta(seconds=30), told_received=True))
    assert db.run_sync(lambda s: repo.list_due_reporters(s, now=now)) == []
    assert db.run_sync(lambda s: repo.list_due_reporters(s, now=now + timedelta(seconds=31))) == ["b" * 64]


def test_tips_are_listed_most_urgent_first_then_oldest(db: Database) -> None:
    now = utcnow()
    specs = [("old normal", Urgency.NORMAL, 30), ("new critical", Urgency.CRITICAL, 1),
             ("old critical", Urgency.CRITICAL, 20), ("low", Urgency.LOW, 40), ("high", Urgency.HIGH, 5)]
    for n, (what, urgency, minutes_ago) in enumerate(specs):
        db.run_sync(lambda s, w=what, u=urgency, m=minutes_ago, n=n: repo.create_tip(
            s, tip=tip(what=w, submission_key=f"{n}" * 64), urgency=u, reasons=["test"],
            now=now - timedelta(minutes=m)))
    listed = db.run_sync(lambda s: [t.what for t in repo.list_tips(s)])
    assert listed == ["old critical", "new critical", "high", "old normal", "low"]


def test_tip_submission_is_idempotent_and_gets_a_receipt(db: Database) -> None:
    first = db.run_sync(lambda s: repo.create_tip(s, tip=tip(), urgency=Urgency.NORMAL, reasons=[]))
    again = db.run_sync(lambda s: repo.create_tip(s, tip=tip(), urgency=Urgency.NORMAL, reasons=[]))
    assert first.id == again.id
    assert len(first.receipt_code) == 9 and first.receipt_code[4] == "-"
    assert first.status == TipStatus.NEW
    found = db.run_sync(lambda s: repo.get_tip_by_receipt(s, receipt_code=first.receipt_code.lower()))
    assert found is not None and found.id == first.id


def test_vault_entries_expire_and_can_be_deleted(db: Database) -> None:
    now = utcnow()
    db.run_sync(lambda s: repo.put_vault_entry(
        s, reporter_id="c" * 64, ciphertext=b"sealed", expires_at=now + timedelta(days=30)))
    db.run_sync(lambda s: repo.put_vault_entry(
        s, reporter_id="c" * 64, ciphertext=b"sealed-2", expires_at=now + timedelta(days=31)))
    entry = db.run_sync(lambda s: repo.get_vault_entry(s, reporter_id="c" * 64, now=now))
    assert entry is not None and entry.ciphertext == b"sealed-2"
    later = now + timedelta(days=32)
    assert db.run_sync(lambda s: repo.get_vault_entry(s, reporter_id="c" * 64, now=later)) is None
    db.run_sync(lambda s: repo.delete_vault_entry(s, reporter_id="c" * 64))
    assert db.run_sync(lambda s: repo.get_vault_entry(s, reporter_id="c" * 64, now=now)) is None


def test_database_errors_never_carry_the_values(db: Database) -> None:
    """Exceptions get logged; their text must not hold message texts or pseudonyms."""
    from sqlalchemy import text

    def clash(session):  # type: ignore[no-untyped-def]
        statement = text(
            "INSERT INTO inbound_message (channel, provider_message_id, reporter_id, received_at,"
            " kind, text, details, state, attempts, next_attempt_at, told_received) VALUES"
            " ('sms', 'same-id', :reporter, :t, 'text', :words, '{}', 'pending', 0, :t, false)")
        values = {"t": utcnow(), "reporter": "secret-pseudonym", "words": "secret words"}
        session.execute(statement, values)
        session.execute(statement, values)  # breaks the unique provider key

    with pytest.raises(Exception) as error:
        db.run_sync(clash)
    assert "IntegrityError" in type(error.value).__name__ or "unique" in str(error.value).lower()
    assert "secret" not in str(error.value)


def test_sqlite_checkpoints_run_in_the_background_not_in_commits(tmp_path: Path) -> None:
    """With background checkpoints, commits leave the WAL alone (SQLite's own checkpoint is
    pushed out to a large WAL) and a thread copies the WAL into the database file soon after;
    dispose() stops the thread."""
    path = tmp_path / "background-checkpoints.db"
    url = f"sqlite:///{path}"
    migrate(url)
    database = Database(make_engine(url), background_checkpoints=True)
    try:
        pages = database.run_sync(lambda s: s.connection().exec_driver_sql(
            "PRAGMA wal_autocheckpoint").scalar())
        assert pages == 10_000
        size_before = path.stat().st_size
        for n in range(50):
            database.run_sync(lambda s, n=n: repo.create_tip(s, tip=TipCreate(
                what="x" * 2000, language="en", channel="sms", reporter_id="r" * 32,
                submission_key=f"wal-{n}"), urgency=Urgency.NORMAL, reasons=[], now=utcnow()))
        # 50 commits of ~2 KB each: far below the automatic checkpoint, so only the
        # background thread can have grown the database file.
        deadline = time.monotonic() + 10
        while path.stat().st_size <= size_before + 50 * 2000 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert path.stat().st_size > size_before + 50 * 2000
    finally:
        database.dispose()
    # Other tests' gateways may run their own checkpointers; this database's has stopped.
    assert not any(t.name == f"sqlite-checkpoint {path.name}" for t in threading.enumerate())
