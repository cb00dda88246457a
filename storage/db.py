"""Engines and migrations. SQLite is the embedded default; PostgreSQL via DATABASE url."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import anyio.to_thread
from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, event
from sqlmodel import Session, create_engine

T = TypeVar("T")
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def make_engine(url: str, *, echo: bool = False) -> Engine:
    """One engine per process, built by the composition root."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url, echo=echo, connect_args={"check_same_thread": False, "timeout": 30}
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            # WAL lets the officer console read while the worker writes; busy_timeout makes
            # concurrent writers wait instead of failing.
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    return create_engine(url, echo=echo, pool_pre_ping=True, pool_size=10, max_overflow=20)


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
