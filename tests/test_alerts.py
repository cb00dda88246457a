"""Critical-tip alerts at the wire: the Telegram group and officers' SMS through the fake
providers, exactly once per tip and kind (retried submission, two gateways on one database),
never with a reporter identifier; escalation to supervisors with a controllable clock.

Tips arrive as the action server sends them: POST /internal/tips with the actions token.
Delays are printed (run with -s), not asserted beyond the product's 5-second promise.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlmodel import select

from bot.alerts import AlertDispatcher
from bot.app import create_app
from config import Settings
from storage import console as console_store
from storage import repo
from storage.alerts import SentAlert
from storage.db import new_session
from storage.models import Tip, TipCreate, Urgency
from tests.conftest import make_settings, running
from tests.console.client import ensure_account
from tests.fakes import TELEGRAM_TOKEN, FakeRasa, FakeTelegramApi, FakeTwilioApi, Router

GROUP = "-1001234567890"
OFFICERS = ["+15550001111", "+15550002222"]
SUPERVISOR_GROUP = "-1009876543210"
SUPERVISORS = ["+15550003333"]
ACTIONS = {"Authorization": "Bearer actions-token-for-tests"}
PROMISE = 5.0  # seconds: "a critical tip alerts the duty officers within 5 seconds"
CRITICAL_WHAT = ("Men with guns are shooting at people at the market, call me on 0612345678 "
                 "if you need more, I am hiding behind the mosque")


class Clock:
    """Wall-clock time plus an offset the test moves forward."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, **delta: float) -> None:
        self.offset += timedelta(**delta)


@dataclass
class Gateway:
    app: FastAPI
    client: httpx.AsyncClient
    telegram: FakeTelegramApi
    twilio: FakeTwilioApi

    @property
    def alerts(self) -> AlertDispatcher:
        dispatcher: AlertDispatcher = self.app.state.alerts
        return dispatcher

    async def submit(self, what: str, *, danger_now: bool, reporter_id: str | None = None,
                     submission_key: str | None = None) -> dict[str, Any]:
        payload = {
            "reporter_id": reporter_id or "r" + secrets.token_hex(20),
            "submission_key": submission_key or "k" + secrets.token_hex(20),
            "what": what, "where_text": "Kibera market, north gate", "when_text": "now",
            "danger_now": danger_now, "language": "en", "channel": "sms",
        }
        response = await self.client.post("/internal/tips", json=payload, headers=ACTIONS)
        assert response.status_code == 200, response.text
        return payload

    def tip_id(self, submission_key: str) -> int:
        with new_session(self.app.state.db.engine) as session:
            tip = session.exec(select(Tip).where(Tip.submission_key == submission_key)).one()
            assert tip.id is not None
            return tip.id

    def texts_to(self, chat_id: str) -> list[str]:
        return [str(m["text"]) for m in self.telegram.sent if str(m["chat_id"]) == chat_id]

    def sms_to(self, number: str) -> list[str]:
        return self.twilio.bodies_to(number)

    async def settle(self, *dispatchers: AlertDispatcher) -> None:
        """One more pass of every loop, and every alert in flight delivered."""
        for dispatcher in dispatchers or (self.alerts,):
            await dispatcher.run_once()
        for dispatcher in dispatchers or (self.alerts,):
            await dispatcher.idle()


def alert_settings(tmp_path: Path, **alerts: Any) -> Settings:
    return make_settings(
        tmp_path,
        channels={"sms": True, "telegram": True, "whatsapp": False, "local": False},
        telegram={"bot_token": TELEGRAM_TOKEN, "webhook_secret": "telegram-secret-for-tests",
                  "mode": "webhook"},
        alerts={"telegram_chat_id": GROUP, "sms_numbers": OFFICERS, **alerts},
    )


@dataclass
class Fakes:
    telegram: FakeTelegramApi
    twilio: FakeTwilioApi
    router: Router


@pytest.fixture
def fakes() -> Fakes:
    telegram, twilio = FakeTelegramApi(), FakeTwilioApi()
    router = Router({"api.telegram.org": telegram, "api.twilio.com": twilio,
                     "rasa.test": FakeRasa()})
    return Fakes(telegram, twilio, router)


@pytest.fixture
def start(fakes: Fakes) -> Callable[..., Any]:
    """Run a gateway with the given settings (and clock) on the shared fake providers."""

    @contextlib.asynccontextmanager
    async def run(settings: Settings, clock: Callable[[], datetime] | None = None
                  ) -> AsyncIterator[Gateway]:
        extra = {"clock": clock} if clock is not None else {}
        app = create_app(settings, transport=fakes.router, **extra)
        async with running(app) as client:
            yield Gateway(app, client, fakes.telegram, fakes.twilio)

    return run


async def wait_for(condition: Callable[[], bool], *, within: float = PROMISE) -> float:
    """Seconds until `condition` held; fails after `within` seconds."""
    began = time.monotonic()
    while not condition():
        if time.monotonic() - began > within:
            raise AssertionError(f"not within {within} s")
        await asyncio.sleep(0.01)
    return time.monotonic() - began


def everything_sent(gw: Gateway, chat_id: str, numbers: list[str]) -> Callable[[], bool]:
    return lambda: bool(gw.texts_to(chat_id)) and all(gw.sms_to(n) for n in numbers)


# --- the critical alert -------------------------------------------------------------------


async def test_critical_tip_alerts_group_and_officers_without_reporter_identifier(
    tmp_path: Path, start: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with start(alert_settings(tmp_path)) as gw:
        began = time.monotonic()
        tip = await gw.submit(CRITICAL_WHAT, danger_now=True)
        answered = time.monotonic() - began
        delay = answered + await wait_for(everything_sent(gw, GROUP, OFFICERS))
        print(f"\nalert delay, first tip (submission -> group + {len(OFFICERS)} SMS at the fakes): "
              f"{delay * 1000:.0f} ms; the action server had its answer after "
              f"{answered * 1000:.0f} ms (first request: lexicon loading)")
        began = time.monotonic()
        await gw.submit(CRITICAL_WHAT, danger_now=True)
        answered = time.monotonic() - began
        delay = answered + await wait_for(lambda: len(gw.texts_to(GROUP)) == 2
                                          and all(len(gw.sms_to(n)) == 2 for n in OFFICERS))
        print(f"alert delay, second tip: {delay * 1000:.0f} ms; answer after "
              f"{answered * 1000:.0f} ms")
        await gw.settle()

        tip_id = gw.tip_id(tip["submission_key"])
        expected = f"Critical tip #{tip_id} (en, sms) — open the console"
        assert gw.texts_to(GROUP)[0] == expected and len(gw.texts_to(GROUP)) == 2
        assert [gw.sms_to(n)[0] for n in OFFICERS] == [expected, expected]
        # No summary by default, and never who reported it.
        for text in [*gw.texts_to(GROUP), *gw.sms_to(OFFICERS[0])]:
            assert tip["reporter_id"] not in text and "0612345678" not in text
            assert "shooting" not in text and "Kibera" not in text
    # Officers' numbers and the group are staff data: never in the logs.
    logged = " ".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    for secret in (GROUP, *OFFICERS, tip["reporter_id"], CRITICAL_WHAT[:20]):
        assert secret not in logged


async def test_summary_only_when_the_deployment_opts_in(
    tmp_path: Path, start: Callable[..., Any]
) -> None:
    async with start(alert_settings(tmp_path, include_summary=True)) as gw:
        tip = await gw.submit(CRITICAL_WHAT, danger_now=True)
        await wait_for(everything_sent(gw, GROUP, OFFICERS))
        tip_id = gw.tip_id(tip["submission_key"])
        [text] = gw.texts_to(GROUP)
        head, summary = text.split("\n")
        assert head == f"Critical tip #{tip_id} (en, sms) — open the console"
        assert summary.startswith("Men with guns are shooting at people at the market, call me on")
        assert summary.endswith("— Kibera market, north gate")
        assert len(summary.split(" — ")[0]) <= 80
        # A number the reporter typed is masked; their pseudonym never travels.
        assert "0612345678" not in text and tip["reporter_id"] not in text
        assert gw.sms_to(OFFICERS[0]) == [text]


async def test_non_critical_tip_alerts_nobody(tmp_path: Path, start: Callable[..., Any]) -> None:
    async with start(alert_settings(tmp_path)) as gw:
        await gw.submit("Someone stole a bicycle from the school yesterday", danger_now=False)
        await gw.settle()
        assert gw.telegram.sent == [] and gw.twilio.sent == []


async def test_a_retried_submission_alerts_once(tmp_path: Path, start: Callable[..., Any]) -> None:
    async with start(alert_settings(tmp_path)) as gw:
        first = await gw.submit(CRITICAL_WHAT, danger_now=True)
        await gw.submit(CRITICAL_WHAT, danger_now=True, reporter_id=first["reporter_id"],
                        submission_key=first["submission_key"])
        await wait_for(everything_sent(gw, GROUP, OFFICERS))
        await gw.settle()
        assert len(gw.texts_to(GROUP)) == 1
        assert [len(gw.sms_to(n)) for n in OFFICERS] == [1, 1]


async def test_two_gateways_on_one_database_alert_once(
    tmp_path: Path, start: Callable[..., Any]
) -> None:
    settings = alert_settings(tmp_path)
    async with start(settings) as one, start(settings) as two:
        # Through the front door of one gateway: the other's loop sees the tip too.
        tip = await one.submit(CRITICAL_WHAT, danger_now=True)
        await wait_for(everything_sent(one, GROUP, OFFICERS))
        await one.settle(one.alerts, two.alerts)
        assert len(one.texts_to(GROUP)) == 1
        assert [len(one.sms_to(n)) for n in OFFICERS] == [1, 1]

        # A real race: a tip both gateways learn about at the same moment.
        raced = TipCreate(what="Explosion at the bus station, people injured", language="fr",
                          channel="telegram", reporter_id="r" + secrets.token_hex(20),
                          submission_key="k" + secrets.token_hex(20))
        stored = one.app.state.db.run_sync(lambda s: repo.create_tip(
            s, tip=raced, urgency=Urgency.CRITICAL, reasons=["test"]))
        await asyncio.gather(one.alerts.tip_stored(stored), two.alerts.tip_stored(stored),
                             one.alerts.run_once(), two.alerts.run_once())
        await wait_for(lambda: len(one.texts_to(GROUP)) == 2)
        await one.settle(one.alerts, two.alerts)
        assert one.texts_to(GROUP)[1] == f"Critical tip #{stored.id} (fr, telegram) — open the console"
        assert [len(one.sms_to(n)) for n in OFFICERS] == [2, 2]
        kinds = one.app.state.db.run_sync(lambda s: sorted(
            (a.tip_id, a.kind) for a in s.exec(select(SentAlert))))
        assert kinds == [(one.tip_id(tip["submission_key"]), "critical"), (stored.id, "critical")]


async def test_missing_channel_is_a_configuration_warning_not_a_crash(
    tmp_path: Path, start: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(tmp_path, channels={"sms": True, "telegram": False, "local": False},
                             alerts={"telegram_chat_id": GROUP, "sms_numbers": OFFICERS})
    async with start(settings) as gw:
        await gw.submit(CRITICAL_WHAT, danger_now=True)
        await wait_for(lambda: all(gw.sms_to(n) for n in OFFICERS))
        await gw.settle()
        assert gw.telegram.calls == []
    warnings = [r for r in caplog.records if r.getMessage() == "alerts.config.channel_disabled"]
    assert len(warnings) == 1 and warnings[0].channel == "telegram"


# --- escalation ---------------------------------------------------------------------------


async def test_unclaimed_critical_tip_escalates_to_supervisors_once(
    tmp_path: Path, start: Callable[..., Any]
) -> None:
    clock = Clock()
    settings = alert_settings(tmp_path, escalate_after_minutes=5,
                              supervisor_telegram_chat_id=SUPERVISOR_GROUP,
                              supervisor_sms_numbers=SUPERVISORS)
    async with start(settings, clock) as gw:
        unclaimed = await gw.submit(CRITICAL_WHAT, danger_now=True)
        claimed = await gw.submit("They are attacking the police post with machetes now",
                                  danger_now=True)
        await wait_for(lambda: len(gw.texts_to(GROUP)) == 2)
        claimed_id = gw.tip_id(claimed["submission_key"])
        officer_id = ensure_account(gw.app.state.db, username="amina", password="x" * 16)
        actor = console_store.Actor(officer_id=officer_id, username="amina",
                                    role=console_store.OfficerRole.OFFICER)
        gw.app.state.db.run_sync(lambda s: console_store.claim_tip(
            s, tip_id=claimed_id, actor=actor, lease=timedelta(minutes=20), now=clock()))

        clock.advance(minutes=4)
        await gw.settle()
        assert gw.texts_to(SUPERVISOR_GROUP) == [] and gw.sms_to(SUPERVISORS[0]) == []

        clock.advance(minutes=2)  # 6 minutes: past the limit; the loop notices by itself
        delay = await wait_for(lambda: bool(gw.texts_to(SUPERVISOR_GROUP))
                               and bool(gw.sms_to(SUPERVISORS[0])))
        print(f"\nescalation delay after the clock passed the limit: {delay * 1000:.0f} ms")
        await gw.settle()
        await gw.settle()
        unclaimed_id = gw.tip_id(unclaimed["submission_key"])
        expected = (f"Critical tip #{unclaimed_id} (en, sms) not claimed after 5 min"
                    " — open the console")
        assert gw.texts_to(SUPERVISOR_GROUP) == [expected]
        assert gw.sms_to(SUPERVISORS[0]) == [expected]
        # The duty officers were not paged again.
        assert len(gw.texts_to(GROUP)) == 2

        # A claim that ran out without the tip being dealt with counts as unclaimed.
        clock.advance(minutes=20)
        await gw.settle()
        assert gw.texts_to(SUPERVISOR_GROUP) == [
            expected, expected.replace(f"#{unclaimed_id}", f"#{claimed_id}")]
        assert len(gw.sms_to(SUPERVISORS[0])) == 2


# --- storage on both databases --------------------------------------------------------------


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_claim_alert_and_escalation_query(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    from storage.alerts import ESCALATION, claim_alert, list_tips_to_escalate
    from storage.db import Database, make_engine, migrate

    url = (request.getfixturevalue("postgres_url") if backend == "postgresql"
           else f"sqlite:///{tmp_path / 'alerts.db'}")
    migrate(url)
    db = Database(make_engine(url))
    try:
        now = datetime.now(UTC)
        tip = TipCreate(what="Shooting at the market", language="en", channel="sms",
                        reporter_id="r" + secrets.token_hex(20),
                        submission_key="k" + secrets.token_hex(20))
        stored = db.run_sync(lambda s: repo.create_tip(
            s, tip=tip, urgency=Urgency.CRITICAL, reasons=["test"], now=now - timedelta(minutes=6)))
        assert stored.id is not None
        tip_id = stored.id
        due = db.run_sync(lambda s: list_tips_to_escalate(
            s, received_before=now - timedelta(minutes=5), now=now))
        assert [t.id for t in due] == [tip_id] and not hasattr(due[0], "reporter_id")
        assert db.run_sync(lambda s: claim_alert(s, tip_id=tip_id, kind=ESCALATION, now=now))
        assert not db.run_sync(lambda s: claim_alert(s, tip_id=tip_id, kind=ESCALATION, now=now))
        assert db.run_sync(lambda s: list_tips_to_escalate(
            s, received_before=now - timedelta(minutes=5), now=now)) == []
        # Deleting a tip (retention) takes its alert rows with it.
        db.run_sync(lambda s: s.delete(s.get(Tip, tip_id)))
        assert db.run_sync(lambda s: list(s.exec(select(SentAlert)))) == []
    finally:
        db.dispose()
