"""Engines and migrations. SQLite is the embedded default; PostgreSQL via DATABASE url."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, Generic, TypeVar

import anyio.to_thread
from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, event
from sqlmodel import Session, create_engine

__all__ = ["Database", "GroupCommit", "Session", "alembic_config", "make_engine", "migrate", "new_session"]

T = TypeVar("T")
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def make_engine(url: str, *, echo: bool = False) -> Engine:
    """One engine per process, built by the composition root.

    hide_parameters: a failed statement's exception (and echo) would otherwise carry its
    parameters, i.e. message texts and pseudonyms, into whatever logs the exception."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url, echo=echo, connect_args={"check_same_thread": False, "timeout": 30},
            hide_parameters=True,
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

        return engine
    return create_engine(url, echo=echo, pool_pre_ping=True, pool_size=10, max_overflow=20,
                         hide_parameters=True)


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


class Database:
    """Runs units of work in a worker thread, each in one transaction."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def run_sync(self, work: Callable[[Session], T]) -> T:
        with new_session(self.engine) as session, session.begin():
            return work(session)

    async def run(self, work: Callable[[Session], T]) -> T:
        # Sync drivers (sqlite3, psycopg) off the event loop.
        return await anyio.to_thread.run_sync(self.run_sync, work)

    def dispose(self) -> None:
        self.engine.dispose()


class GroupCommit(Generic[T]):
    """Writes items from concurrent callers in shared transactions: one commit (one fsync)
    for many webhooks. Each caller returns only once its own item is committed, so an answer
    to a provider still means "stored". A failing item is retried alone, so it fails only its
    own caller."""

    def __init__(
        self, db: Database, write: Callable[[Session, T], None], *, max_batch: int = 64
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
                await self._db.run(functools.partial(self._write_all, [i for i, _ in batch]))
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

    def _write_all(self, items: list[T], session: Session) -> None:
        for item in items:
            self._write(session, item)

    async def _alone(self, item: T) -> BaseException | None:
        try:
            await self._db.run(lambda session: self._write(session, item))
        except Exception as exc:
            return exc
        return None

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
