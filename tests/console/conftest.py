"""Console fixtures: a live gateway (uvicorn in a thread) with a controllable clock, accounts
and tips made directly through the storage functions, and Debian's Chromium via Playwright.

No Rasa here: the console only needs the database.
"""

from __future__ import annotations

import itertools
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI

from bot.app import create_app
from bot.console import totp
from config import Settings
from storage import repo
from storage.db import Database
from storage.models import TipCreate, Urgency
from tests.conftest import make_settings
from tests.console.client import ConsoleClient, ensure_account
from tests.stack import free_port

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
PASSWORD = "a-long-test-password-1"
_keys = itertools.count(1)


class Clock:
    """Wall-clock time plus an offset that tests move forward."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, **delta: float) -> None:
        self.offset += timedelta(**delta)


@dataclass
class Account:
    id: int
    username: str
    password: str
    role: str
    totp_secret: str | None


@dataclass
class Console:
    """A running gateway with the console, and ways to populate it."""

    settings: Settings
    app: FastAPI
    url: str
    clock: Clock
    clients: list[ConsoleClient] = field(default_factory=list)

    @property
    def db(self) -> Database:
        db: Database = self.app.state.db
        return db

    def account(self, username: str, role: str = "officer", *, with_totp: bool | None = None) -> Account:
        wants_totp = role != "officer" if with_totp is None else with_totp
        secret = totp.new_secret() if wants_totp else None
        officer_id = ensure_account(self.db, username=username, password=PASSWORD, role=role,
                                    totp_secret=secret)
        return Account(officer_id, username, PASSWORD, role, secret)

    def client(self) -> ConsoleClient:
        client = ConsoleClient(self.url)
        self.clients.append(client)
        return client

    def login(self, account: Account) -> ConsoleClient:
        return self.client().login(account.username, account.password,
                                   totp_secret=account.totp_secret, now=self.clock())

    def tip(
        self,
        what: str = "Armed men are stealing cattle near the river",
        *,
        urgency: Urgency = Urgency.NORMAL,
        minutes_ago: float = 0,
        language: str = "en",
        channel: str = "sms",
        reporter_id: str | None = None,
    ) -> int:
        key = f"submission-{next(_keys):06d}-{secrets.token_hex(4)}"
        tip = TipCreate(what=what, where_text="Kibera market", when_text="this morning",
                        language=language, channel=channel,
                        reporter_id=reporter_id or "r" + secrets.token_hex(16), submission_key=key)
        received = self.clock() - timedelta(minutes=minutes_ago)
        stored = self.db.run_sync(lambda s: repo.create_tip(
            s, tip=tip, urgency=urgency, reasons=[f"test={urgency}"], now=received))
        assert stored.id is not None
        return stored.id

    def query(self, work: Callable[[Any], Any]) -> Any:
        return self.db.run_sync(work)


def serve(app: FastAPI) -> tuple[uvicorn.Server, threading.Thread, str]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None,
                                           access_log=False, lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the gateway did not start")
        time.sleep(0.02)
    return server, thread, f"http://127.0.0.1:{port}"


@pytest.fixture
def console_factory(tmp_path: Path) -> Iterator[Callable[..., Console]]:
    """Start a console with settings overrides; `before_start(app)` can add routes."""
    running: list[tuple[uvicorn.Server, threading.Thread, Console]] = []

    def start(before_start: Callable[[FastAPI], None] | None = None, **overrides: Any) -> Console:
        clock = Clock()
        directory = tmp_path / f"console{len(running)}"
        directory.mkdir()
        settings = make_settings(directory, **overrides)
        app = create_app(settings, clock=clock, run_worker=False)
        if before_start is not None:
            before_start(app)
        server, thread, url = serve(app)
        console = Console(settings=settings, app=app, url=url, clock=clock)
        running.append((server, thread, console))
        return console

    yield start
    for server, thread, console in running:
        for client in console.clients:
            client.close()
        server.should_exit = True
        thread.join(timeout=30)


@pytest.fixture
def console(console_factory: Callable[..., Console]) -> Console:
    return console_factory()


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()
