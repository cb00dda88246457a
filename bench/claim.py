"""Benchmark: "next tip" claims and the queue page with 1,000,000 tips, SQLite and PostgreSQL.

    .venv/bin/python bench/claim.py [--tips 1000000] [--claims 2000] [--skip-postgres]

For each database: bulk-load the tips (executemany on SQLite, COPY on PostgreSQL) into a schema
made by the real migrations, print the claim query's plan, then time
  * sequential claims: one storage.console.claim_next_tip unit of work each (session, write
    lock / SKIP LOCKED, audit row, commit), p50/p99 per claim;
  * 20 concurrent officers claiming (threads, one session each): throughput and p99;
  * the queue page's server time: GET /console/queue (first page, default filter) through the
    real app in-process, logged in, p50/p99.
Goal: claim p99 < 2 ms. PostgreSQL uses postgresql+psycopg://postgres@127.0.0.1:5432/test in a
private schema that is created and dropped here. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import secrets
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
import psycopg
from cryptography.fernet import Fernet

from bot.app import create_app
from bot.console.auth import Passwords
from config import load_settings
from storage import console as store
from storage.db import Database, make_engine, migrate

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"
LEASE = timedelta(minutes=20)
COLUMNS = ("what", "where_text", "when_text", "danger_now", "language", "channel",
           "receipt_code", "reporter_id", "submission_key", "urgency", "urgency_rank",
           "urgency_reasons", "status", "received_at")
URGENCIES = (("critical", 0), ("high", 1), ("normal", 2), ("low", 3))
# A year of traffic: most tips finished, a realistic backlog still open.
STATUSES = (("closed", 0.80), ("rejected", 0.08), ("duplicate", 0.02), ("forwarded", 0.02),
            ("verified", 0.02), ("in_review", 0.02), ("new", 0.04))
PASSWORD = "bench-password-long-enough"


def rows(count: int, now: datetime) -> Any:
    """Deterministic synthetic tips, oldest first."""
    rng = __import__("random").Random(7)
    statuses = [s for s, _ in STATUSES]
    weights = [w for _, w in STATUSES]
    start = now - timedelta(days=365)
    step = timedelta(days=365) / count
    for n in range(count):
        urgency, rank = URGENCIES[rng.choices(range(4), weights=(2, 10, 60, 28))[0]]
        yield (
            f"synthetic tip {n}: something happened near the market", "the market", "today",
            urgency == "critical", rng.choice(("en", "fr", "sw", "ar")), "sms",
            f"{n:09d}", f"r{n % 50_000:031d}", f"s{n:031d}", urgency, rank,
            json.dumps([f"bench={urgency}"]), rng.choices(statuses, weights)[0], start + step * n,
        )


def load_sqlite(path: Path, count: int, now: datetime) -> None:
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=OFF")  # loading only; the benchmark runs normally
    placeholders = ", ".join("?" for _ in COLUMNS)
    sql = f"INSERT INTO tip ({', '.join(COLUMNS)}) VALUES ({placeholders})"

    def formatted() -> Any:
        for row in rows(count, now):
            # SQLAlchemy's SQLite DateTime text format, so ordering and parsing match.
            yield (*row[:-1], row[-1].strftime("%Y-%m-%d %H:%M:%S.%f"))

    with connection:
        connection.executemany(sql, formatted())
    connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    connection.close()


def load_postgres(url: str, schema: str, count: int, now: datetime) -> None:
    with psycopg.connect(PG_ADMIN, autocommit=True) as connection:
        connection.execute(f"SET search_path TO {schema}")
        with connection.cursor() as cursor, cursor.copy(
            f"COPY tip ({', '.join(COLUMNS)}) FROM STDIN"
        ) as copy:
            for row in rows(count, now):
                copy.write_row(row)
        connection.execute("ANALYZE tip")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def show(label: str, samples: list[float]) -> None:
    ms = [s * 1000 for s in samples]
    print(f"  {label:<44} n={len(ms):>5}  p50={statistics.median(ms):7.3f} ms  "
          f"p99={percentile(ms, 0.99):7.3f} ms  max={max(ms):7.3f} ms")


def officers(db: Database, count: int) -> list[store.Actor]:
    hashed = Passwords().hash(PASSWORD)

    def make(session: Any) -> list[store.Actor]:
        made = []
        for n in range(count):
            officer = store.create_officer(session, officer=store.OfficerCreate(
                username=f"bench{n:02d}", role=store.OfficerRole.OFFICER, password_hash=hashed,
                totp_secret=None))
            assert officer.id is not None
            made.append(store.Actor(officer_id=officer.id, username=officer.username,
                                    role=officer.role))
        return made

    return db.run_sync(make)


def time_claims(db: Database, actors: list[store.Actor], claims: int, now: datetime) -> None:
    samples, inside = [], []

    def claim(session: Any, actor: store.Actor) -> None:
        started = time.perf_counter()
        store.claim_next_tip(session, actor=actor, lease=LEASE, now=now)
        inside.append(time.perf_counter() - started)

    for n in range(claims):
        actor = actors[n % len(actors)]
        started = time.perf_counter()
        db.run_sync(lambda s, a=actor: claim(s, a))
        samples.append(time.perf_counter() - started)
    show("next tip: claim statements (before commit)", inside)
    show("next tip: whole transaction incl. commit", samples)

    per_thread = max(1, claims // len(actors))
    latencies: list[float] = []
    lock = threading.Lock()
    barrier = threading.Barrier(len(actors))

    def officer(actor: store.Actor) -> None:
        mine = []
        barrier.wait()
        for _ in range(per_thread):
            started = time.perf_counter()
            db.run_sync(lambda s: store.claim_next_tip(s, actor=actor, lease=LEASE, now=now))
            mine.append(time.perf_counter() - started)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=officer, args=(a,)) for a in actors]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    show(f"next tip, {len(actors)} officers at once", latencies)
    print(f"  {'':<44} throughput {len(latencies) / elapsed:8.0f} claims/s")


def time_queue_page(url: str, username: str, requests: int) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="bench-app-"))
    settings = load_settings(
        environment="production", data_dir=tmp, database={"url": url},
        privacy={"pepper": secrets.token_hex(16), "vault_key": Fernet.generate_key().decode()},
        rasa={"token": "bench-token"}, actions={"token": "bench-token"},
        twilio={"auth_token": "f" * 32}, channels={"sms": False, "local": False},
    )
    app = create_app(settings, run_worker=False)

    async def run() -> list[float]:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="https://bench.test") as c:
                form = await c.get("/console/login")
                token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
                assert token is not None
                login = await c.post("/console/login", data={
                    "csrf_token": token.group(1), "username": username, "password": PASSWORD})
                assert login.status_code == 303, login.status_code
                samples = []
                for _ in range(requests):
                    started = time.perf_counter()
                    page = await c.get("/console/queue")
                    samples.append(time.perf_counter() - started)
                    assert page.status_code == 200 and page.text.count("data-tip=") == 50
                return samples

    show("queue page, first 50 open tips (HTTP, server)", asyncio.run(run()))


def explain(db: Database, sql: str) -> None:
    with db.engine.connect() as connection:
        prefix = "EXPLAIN QUERY PLAN " if db.engine.dialect.name == "sqlite" else "EXPLAIN "
        plan = connection.exec_driver_sql(prefix + sql).fetchall()
    for row in plan:
        print("    " + " ".join(str(part) for part in row if part is not None))


CLAIM_SQL = ("SELECT id FROM tip{hint} WHERE status IN ('new', 'in_review') AND claimed_by IS "
             "NULL ORDER BY urgency_rank, received_at, id LIMIT 1{lock}")


def run(name: str, url: str, load: Callable[[], None], args: argparse.Namespace) -> None:
    print(f"\n== {name}: {args.tips:,} tips")
    started = time.perf_counter()
    migrate(url)
    load()
    print(f"  bulk load {time.perf_counter() - started:6.1f} s")
    # As the gateway runs it (bot/app.py): WAL checkpoints in a background thread.
    db = Database(make_engine(url), background_checkpoints=True)
    try:
        open_tips = db.run_sync(lambda s: s.connection().exec_driver_sql(
            "SELECT count(*) FROM tip WHERE status IN ('new', 'in_review')").scalar())
        print(f"  claimable (new / in review) tips: {open_tips:,}")
        print("  plan of the claim query (the unclaimed-tip candidate):")
        if db.engine.dialect.name == "sqlite":
            explain(db, CLAIM_SQL.format(hint=" INDEXED BY ix_tip_claimable", lock=""))
        else:
            explain(db, CLAIM_SQL.format(hint="", lock=" FOR UPDATE SKIP LOCKED"))
        actors = officers(db, 20)
        now = datetime.now(UTC)
        time_claims(db, actors, args.claims, now)
        time_queue_page(url, actors[0].username, args.pages)
    finally:
        db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tips", type=int, default=1_000_000)
    parser.add_argument("--claims", type=int, default=2000)
    parser.add_argument("--pages", type=int, default=50)
    parser.add_argument("--skip-postgres", action="store_true")
    args = parser.parse_args()
    now = datetime.now(UTC)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-claim-") as tmp:
        path = Path(tmp) / "bench.db"
        run("SQLite", f"sqlite:///{path}", lambda: load_sqlite(path, args.tips, now), args)
    if not args.skip_postgres:
        schema = "bench_" + secrets.token_hex(4)
        with psycopg.connect(PG_ADMIN, autocommit=True) as connection:
            connection.execute(f"CREATE SCHEMA {schema}")
        try:
            url = ("postgresql+psycopg://postgres@127.0.0.1:5432/test"
                   f"?options=-csearch_path%3D{schema}")
            run("PostgreSQL", url, lambda: load_postgres(url, schema, args.tips, now), args)
        finally:
            with psycopg.connect(PG_ADMIN, autocommit=True) as connection:
                connection.execute(f"DROP SCHEMA {schema} CASCADE")
    print(f"\ntotal {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
