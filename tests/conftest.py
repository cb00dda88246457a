"""Shared fixtures: settings, signed provider requests, a running app with fake providers."""

from __future__ import annotations

import contextlib
import itertools
import logging
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from cryptography.fernet import Fernet
from fastapi import FastAPI
from twilio.request_validator import RequestValidator

from bot.app import create_app
from config import Settings, load_settings
from tests.fakes import FakeRasa, FakeTwilioApi, Router

TWILIO_TOKEN = "f" * 32
PUBLIC_BASE = "https://tips.example.org"
SMS_URL = f"{PUBLIC_BASE}/webhooks/sms"
OFFICER = ("officer", "officer-password-for-tests")
PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"
_sids = itertools.count(1)


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "environment": "production",
        "data_dir": tmp_path,
        "database": {"url": f"sqlite:///{tmp_path / 'tipline.db'}"},
        "privacy": {"pepper": "pepper-" + secrets.token_hex(16), "vault_key": Fernet.generate_key().decode()},
        "rasa": {"url": "http://rasa.test:5005", "token": "rasa-token-for-tests", "timeout_seconds": 5},
        "actions": {"token": "actions-token-for-tests"},
        "twilio": {"auth_token": TWILIO_TOKEN, "public_base_url": PUBLIC_BASE,
                   "sms_from": "+15550000000"},
        "console": {"officer_user": OFFICER[0], "officer_password": OFFICER[1]},
        "gateway": {"retry_seconds": 0.2},
    }
    values.update(overrides)
    return load_settings(**values)


def make_twilio_form(*, body: str = "hello", from_: str = "+15551230001", sid: str | None = None,
                     **extra: str) -> dict[str, str]:
    """A real-shaped Twilio SMS webhook form, including the fields we must drop."""
    form = {
        "MessageSid": sid or f"SM{next(_sids):032x}",
        "AccountSid": "AC" + "0" * 32,
        "From": from_,
        "To": "+15550000000",
        "Body": body,
        "NumMedia": "0",
        "NumSegments": "1",
        "FromCity": "NAIROBI",
        "FromState": "NAIROBI",
        "FromZip": "00100",
        "FromCountry": "KE",
        "ToCity": "", "ToState": "", "ToZip": "", "ToCountry": "US",
        "SmsStatus": "received",
        "ApiVersion": "2010-04-01",
    }
    form.update(extra)
    return form


def twilio_signature(form: dict[str, str], url: str = SMS_URL, token: str = TWILIO_TOKEN) -> str:
    return str(RequestValidator(token).compute_signature(url, form))


async def post_sms(client: httpx.AsyncClient, form: dict[str, str], *,
                   signature: str | None = None) -> httpx.Response:
    headers = {"X-Twilio-Signature": signature if signature is not None else twilio_signature(form)}
    return await client.post("/webhooks/sms", data=form, headers=headers)


@contextlib.asynccontextmanager
async def running(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan (worker included), and a client talking to it in-process."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway.test") as client:
            yield client


@pytest.fixture
def fake_twilio() -> FakeTwilioApi:
    return FakeTwilioApi()


@pytest.fixture
def fake_rasa() -> FakeRasa:
    return FakeRasa()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture
async def gateway(settings: Settings, fake_twilio: FakeTwilioApi,
                  fake_rasa: FakeRasa) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    router = Router({"api.twilio.com": fake_twilio, "rasa.test": fake_rasa})
    app = create_app(settings, transport=router)
    async with running(app) as client:
        yield app, client


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A private schema on the machine's PostgreSQL, dropped afterwards.

    Its connections carry the schema's name as application_name, so teardown can see, from
    the server's side, any the test left open: a connection nobody closed is found in the
    test that leaked it, not later when the garbage collector happens to meet it."""
    schema = "tl_" + secrets.token_hex(6)
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield ("postgresql+psycopg://postgres@127.0.0.1:5432/test"
               f"?application_name={schema}&options=-csearch_path%3D{schema}")
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            left_open = _connections_still_open(conn, schema)
            if left_open:  # its locks would make the DROP wait forever instead of failing
                conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                             " WHERE application_name = %s", (schema,))
            conn.execute(f"DROP SCHEMA {schema} CASCADE")
    assert left_open == 0, f"the test left {left_open} connection(s) open"


def _connections_still_open(conn: psycopg.Connection[Any], application_name: str) -> int:
    # A server process leaves pg_stat_activity a moment after its client has closed the
    # socket: a connection closed just before teardown is given a few seconds to go.
    deadline = time.monotonic() + 5
    while True:
        row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
                           (application_name,)).fetchone()
        count = int(row[0]) if row else 0
        if count == 0 or time.monotonic() > deadline:
            return count
        time.sleep(0.05)


@pytest.fixture
def captured_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    return caplog


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The real tip line (Rasa, actions, gateway), shared by the end-to-end tests."""
    from tests.stack import run_stack

    yield from run_stack(tmp_path_factory.mktemp("stack"))
