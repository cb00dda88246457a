"""Engines and migrations. SQLite is the embedded default; PostgreSQL via DATABASE url."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import anyio.to_thread
from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, event
from sqlmodel import Session, create_engine

__all__ = [
    "Connection", "Database", "GroupCommit", "Session", "WalCheckpointer", "alembic_config",
    "begin_write", "make_engine", "migrate", "new_session", "run_in_thread",
]

T = TypeVar("T")
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
logger = logging.getLogger(__name__)


async def run_in_thread(func: Callable[..., T], /, *args: Any) -> T:
    """`func(*args)` in a worker thread, like asyncio.to_thread, except that a cancelled
    caller waits for the thread to finish before the cancellation goes on.

    asyncio.to_thread (and anyio's run_sync, against a plain task.cancel()) return at once
    and leave the thread running. Whatever the caller does next then races that thread: a
    stopping gateway disposes the engine while the thread still holds one of its connections
    (which is then never closed), or a reporter's lock is released while their conversation
    is still being deleted. Database work is short (busy_timeout bounds it), so waiting for it
    is the safe side."""
    # anyio's worker threads and their limit (40), as before; running it as a task of its
    # own is what lets the caller be cancelled without cancelling it.
    work = asyncio.ensure_future(anyio.to_thread.run_sync(func, *args))
    try:
        return await asyncio.shield(work)
    except asyncio.CancelledError:
        while not work.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait([work])
        if not work.cancelled():
            work.exception()  # the caller is gone; retrieved so asyncio does not log it
        raise


def make_engine(url: str, *, echo: bool = False) -> Engine:
    """One engine per process, built by the composition root.

    hide_parameters: a failed statement's exception (and echo) would otherwise carry its
    parameters, i.e. message texts and pseudonyms, into whatever logs the exception."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        file_only: dict[str, Any] = {}
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            # An existing file only: a database that vanished (an unmounted volume, a moved
            # file) must fail loudly, so messages go to the spool, instead of being written
            # into a new, empty database that nobody reads. migrate() creates the file.
            file_only["creator"] = lambda: open_existing(path)
        engine = create_engine(
            url, echo=echo, connect_args=_SQLITE_CONNECT_ARGS, hide_parameters=True, **file_only,
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            # WAL lets the officer console read while the worker writes; busy_timeout makes
            # concurrent writers wait instead of failing.
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA foreign_keys=ON")
            # Deleted rows (a forgotten reporter, a redacted passage) are overwritten on disk.
            cursor.execute("PRAGMA secure_delete=ON")
            cursor.close()

        @event.listens_for(engine, "checkin")
        def _restore_durability(dbapi_connection: Any, record: Any) -> None:
            # A connection that ran a relaxed commit (see begin_write) goes back to
            # the pool fsyncing every commit again, whoever uses it next.
            if record is not None and record.info.pop(_RELAXED, False):
                dbapi_connection.execute("PRAGMA synchronous=FULL")

        return engine
    return create_engine(url, echo=echo, pool_pre_ping=True, pool_size=10, max_overflow=20,
                         hide_parameters=True)


_RELAXED = "tipline_relaxed_commit"
# Connections are used from worker threads; a busy database is waited for, not failed.
_SQLITE_CONNECT_ARGS: dict[str, Any] = {"check_same_thread": False, "timeout": 30}


def open_existing(path: str) -> sqlite3.Connection:
    """A connection to the SQLite database at `path`, which must already exist."""
    connection: sqlite3.Connection = sqlite3.connect(
        f"file:{quote(path)}?mode=rw", uri=True, **_SQLITE_CONNECT_ARGS)
    return connection


def begin_write(session: Session, *, durable: bool = True) -> None:
    """SQLite only: take the write lock now (BEGIN IMMEDIATE). A deferred transaction that
    reads first and writes later can fail to upgrade when another writer got in between, and
    a check-then-write (two claimers, a retention rule) must see the rows it then changes.

    durable=False: the commit need not wait for the disk (WAL with synchronous=NORMAL: no
    fsync at commit). Only for writes that cost nothing if a power cut takes them back: an
    officer's claim on a tip is a lease that expires anyway. The transaction stays atomic
    (the claim and its audit row are kept or lost together) and the database consistent; the
    next ordinary commit's fsync of the WAL makes it durable too. The connection is set back
    to synchronous=FULL when it returns to the pool. Everything a reporter or the audit trail
    depends on (tips, messages, status changes) keeps FULL.
    """
    connection = session.connection()
    if connection.dialect.name != "sqlite":
        return
    raw = connection.connection.driver_connection
    if raw is None or raw.in_transaction:
        return  # already inside a transaction: it holds the lock, and commits as it began
    if not durable:
        # The safety level can only change outside a transaction, hence before BEGIN.
        raw.execute("PRAGMA synchronous=NORMAL")
        connection.connection._connection_record.info[_RELAXED] = True
    raw.execute("BEGIN IMMEDIATE")


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def migrate(url: str) -> None:
    """Bring the schema to the newest revision (idempotent)."""
    # "heads": feature branches of the migration tree are applied together.
    command.upgrade(alembic_config(url), "heads")


def new_session(engine: Engine) -> Session:
    # Objects stay readable after commit: callers return them to the API layer.
    return Session(engine, expire_on_commit=False)


class WalCheckpointer:
    """Runs SQLite's WAL checkpoints in a background thread.

    A checkpoint copies the WAL into the database file and fsyncs it. Left to SQLite, it runs
    inside whichever commit pushes the WAL past `wal_autocheckpoint` pages: one webhook batch
    or one officer's "next tip" then waits for it (the claim benchmark's p99 was exactly
    that). Here a thread checkpoints every `interval` seconds with its own connection
    (PASSIVE: never blocks readers or writers, and sqlite3 releases the GIL while it works),
    and SQLite's own automatic checkpoint stays as a safety net at a larger size, for when
    this thread falls behind.
    """

    AUTOCHECKPOINT_PAGES = 10_000  # ~40 MB of WAL with 4 KiB pages

    def __init__(self, path: str, *, interval: float = 0.25) -> None:
        self._path = path
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"sqlite-checkpoint {Path(path).name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def _run(self) -> None:
        connection = open_existing(self._path)
        try:
            while not self._stop.wait(self._interval):
                self.checkpoint(connection)
            self.checkpoint(connection)
        finally:
            connection.close()

    @staticmethod
    def checkpoint(connection: sqlite3.Connection) -> None:
        try:
            connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.Error as exc:
            # Never the statement's parameters (there are none) nor the path; the class says
            # enough (e.g. a locked or vanished file), and the next round tries again.
            logger.warning("storage.checkpoint.failed", extra={"error": type(exc).__name__})


def _sqlite_file(engine: Engine) -> str | None:
    if engine.dialect.name != "sqlite":
        return None
    database = engine.url.database
    return database if database and database != ":memory:" else None


class Database:
    """Runs units of work in a worker thread, each in one transaction.

    background_checkpoints: for long-running processes on SQLite (the gateway); see
    WalCheckpointer. Stopped by dispose()."""

    def __init__(self, engine: Engine, *, background_checkpoints: bool = False) -> None:
        self.engine = engine
        self._checkpointer: WalCheckpointer | None = None
        path = _sqlite_file(engine) if background_checkpoints else None
        if path is not None:
            pages = WalCheckpointer.AUTOCHECKPOINT_PAGES

            @event.listens_for(engine, "connect")
            def _later_autocheckpoint(dbapi_connection: Any, _record: Any) -> None:
                dbapi_connection.execute(f"PRAGMA wal_autocheckpoint={pages}")

            # Connections pooled before this point would keep SQLite's default.
            engine.dispose()
            self._checkpointer = WalCheckpointer(path)
            self._checkpointer.start()

    def run_sync(self, work: Callable[[Session], T]) -> T:
        with new_session(self.engine) as session, session.begin():
            return work(session)

    async def run(self, work: Callable[[Session], T]) -> T:
        # Sync drivers (sqlite3, psycopg) off the event loop.
        return await run_in_thread(self.run_sync, work)

    def dispose(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.stop()
        self.engine.dispose()


class GroupCommit(Generic[T]):
    """Writes items from concurrent callers in shared transactions: one commit (one fsync)
    for many webhooks. `write` gets the whole batch, so it can write it as a few statements
    rather than a few per item. Each caller returns only once its own item is committed, so
    an answer to a provider still means "stored". If a batch fails, each of its items is
    retried alone, so a failing item fails only its own caller.

    `write` gets a Core Connection in a transaction (committed when it returns), not an ORM
    Session: on the webhook path batches are often a single message, and a Session's own
    begin/commit/close bookkeeping cost more CPU than the batch's statements."""

    def __init__(
        self, db: Database, write: Callable[[Connection, Sequence[T]], None], *,
        max_batch: int = 64,
    ) -> None:
        self._db = db
        self._write = write
        self._max_batch = max_batch
        self._queue: asyncio.Queue[tuple[T, asyncio.Future[None]]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run())
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((item, future))
        await future

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self._max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await run_in_thread(self._write_all, [i for i, _ in batch])
                outcomes: list[BaseException | None] = [None] * len(batch)
            except Exception:
                outcomes = [await self._alone(item) for item, _ in batch]
            for (_, future), outcome in zip(batch, outcomes, strict=True):
                if future.done():
                    continue
                if outcome is None:
                    future.set_result(None)
                else:
                    future.set_exception(outcome)

    def _write_all(self, items: list[T]) -> None:
        # In a worker thread, as Database.run does: sync drivers off the event loop.
        with self._db.engine.begin() as connection:
            self._write(connection, items)

    async def _alone(self, item: T) -> BaseException | None:
        try:
            await run_in_thread(self._write_all, [item])
        except Exception as exc:
            return exc
        return None

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
