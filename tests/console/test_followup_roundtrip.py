"""The whole gateway in a uvicorn thread (worker included) with fake Twilio and Rasa at the HTTP
boundary, and the console in Debian's Chromium: an officer's follow-up question reaches the
reporter's phone, the SMS answer shows up in the tip's conversation, status notices go out
once; a supervisor marks a reporter as spam without ever seeing who they are, and that
reporter's next tip lands in the spam folder."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from bot.app import create_app
from bot.console import totp
from bot.privacy import pseudonymize
from config import Settings
from config.messages import GatewayMessages
from storage import console as store
from storage import repo
from storage.db import Database
from storage.models import Tip, TipStatus
from tests.conftest import make_settings, make_twilio_form, twilio_signature
from tests.console.client import ConsoleClient, ensure_account
from tests.console.conftest import PASSWORD, Account, serve
from tests.fakes import FakeRasa, FakeTwilioApi, Router

ACTIONS_TOKEN = "actions-token-for-tests"  # tests.conftest.make_settings
EN = GatewayMessages(["en", "fr"], "en")


def wait_for(check: Callable[[], bool], *, seconds: float = 10.0, what: str = "") -> None:
    """Poll until `check()` holds: the worker delivers outbound messages about once a second."""
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or check}")
        time.sleep(0.05)


@dataclass
class Gateway:
    """The running gateway, its fake providers, and a reporter's phone."""

    settings: Settings
    app: FastAPI
    url: str
    twilio: FakeTwilioApi
    rasa: FakeRasa
    http: httpx.Client

    @property
    def db(self) -> Database:
        db: Database = self.app.state.db
        return db

    def pseudonym(self, number: str) -> str:
        return pseudonymize(self.settings.privacy.pepper.get_secret_value(), "sms", number)

    def sms(self, number: str, text: str) -> None:
        """The reporter's SMS, through Twilio's signed webhook (signed for the public URL)."""
        form = make_twilio_form(body=text, from_=number)
        response = self.http.post("/webhooks/sms", data=form,
                                  headers={"X-Twilio-Signature": twilio_signature(form)})
        assert response.status_code == 200, response.text

    def submit_tip(self, number: str, what: str) -> tuple[int, str]:
        """What the action server does once the dialogue has the tip: (tip id, receipt)."""
        response = self.http.post("/internal/tips", json={
            "reporter_id": self.pseudonym(number), "submission_key": secrets.token_hex(12),
            "what": what, "where_text": "by the river", "when_text": "this morning",
            "danger_now": False, "language": "en", "channel": "sms",
        }, headers={"Authorization": f"Bearer {ACTIONS_TOKEN}"})
        assert response.status_code == 200, response.text
        receipt = str(response.json()["receipt_code"])
        tip = self.db.run_sync(lambda s: repo.get_tip_by_receipt(s, receipt_code=receipt))
        assert tip is not None and tip.id is not None
        return tip.id, receipt

    def tip(self, tip_id: int) -> Tip:
        found: Tip | None = self.db.run_sync(lambda s: s.get(Tip, tip_id))
        assert found is not None
        return found

    def account(self, username: str, role: str) -> Account:
        # Officers without a second factor: a TOTP code is good for one login only, and the
        # spam test logs the officer in twice within one 30-second step.
        secret = totp.new_secret() if role != "officer" else None
        officer_id = ensure_account(self.db, username=username, password=PASSWORD, role=role,
                                    totp_secret=secret)
        return Account(officer_id, username, PASSWORD, role, secret)


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Gateway]:
    settings = make_settings(tmp_path, channels={"sms": True, "whatsapp": False,
                                                 "telegram": False, "local": False})
    twilio, rasa = FakeTwilioApi(), FakeRasa()
    app = create_app(settings, transport=Router({"api.twilio.com": twilio, "rasa.test": rasa}))
    server: uvicorn.Server
    thread: threading.Thread
    server, thread, url = serve(app)
    with httpx.Client(base_url=url, timeout=15) as http:
        yield Gateway(settings, app, url, twilio, rasa, http)
    server.should_exit = True
    thread.join(timeout=30)


@pytest.fixture
def page(chromium: Any) -> Iterator[Any]:
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(10_000)
    yield page
    context.close()


def log_in(page: Any, gateway: Gateway, account: Account) -> None:
    page.goto(f"{gateway.url}/console/login")
    page.fill("input[name=username]", account.username)
    page.fill("input[name=password]", account.password)
    if account.totp_secret:
        page.fill("input[name=code]", totp.now_code(account.totp_secret, datetime.now(UTC)))
    page.click("button[type=submit]")
    page.wait_for_url("**/console/queue")


def set_status(page: Any, status: str) -> None:
    page.select_option("[data-testid=status-form] select[name=status]", status)
    page.click("[data-testid=status-form] button[type=submit]")
    page.wait_for_url("**notice=status_changed")


def test_follow_up_question_answer_and_status_notices_round_trip(
    gateway: Gateway, page: Any
) -> None:
    number = "+254711000101"
    gateway.sms(number, "Men are stealing cattle at the river")
    # The dialogue's reply went out: the conversation (and its reply-vault entry) exists.
    wait_for(lambda: any(b.startswith("echo:") for b in gateway.twilio.bodies_to(number)),
             what="the dialogue's reply")
    tip_id, receipt = gateway.submit_tip(number, "Cattle stolen at the river, three men")
    # The reporter asked to be told when the tip is acted on.
    assert gateway.db.run_sync(lambda s: repo.subscribe_status_notice(
        s, receipt_code=receipt, reporter_id=gateway.pseudonym(number)))

    boss = gateway.account("boss", "supervisor")
    log_in(page, gateway, boss)
    page.goto(f"{gateway.url}/console/tips/{tip_id}")
    page.fill("textarea[name=question]", "Were they armed?")
    page.click("text=Ask the reporter")
    page.wait_for_url("**notice=follow_up_queued")

    question = EN.get("en", "followup_question").format(code=receipt, question="Were they armed?")
    wait_for(lambda: question in gateway.twilio.bodies_to(number), what="the question by SMS")
    gateway.sms(number, "Yes, two of them had rifles")
    thanks = EN.get("en", "followup_thanks")
    wait_for(lambda: thanks in gateway.twilio.bodies_to(number), what="the thanks")

    page.reload()
    thread = page.inner_text("ul.thread")
    assert "Were they armed?" in thread and "Yes, two of them had rifles" in thread
    assert "answered" in page.inner_text("[data-testid=follow-ups]")
    html = page.content()
    assert number not in html and gateway.pseudonym(number) not in html

    for status in ("in_review", "verified", "forwarded"):
        set_status(page, status)
    forwarded = EN.get("en", "status_forwarded").format(code=receipt)
    wait_for(lambda: forwarded in gateway.twilio.bodies_to(number), what="the forwarded notice")
    set_status(page, "closed")
    closed = EN.get("en", "status_closed").format(code=receipt)
    wait_for(lambda: closed in gateway.twilio.bodies_to(number), what="the closed notice")
    time.sleep(2.5)  # two more rounds of the worker: nothing is sent twice
    bodies = gateway.twilio.bodies_to(number)
    assert bodies.count(question) == 1
    assert bodies.count(forwarded) == 1 and bodies.count(closed) == 1
    # In review and verified are not statuses reporters are told about; the answer was not a
    # dialogue turn (one echo only).
    assert bodies == ["echo: Men are stealing cattle at the river", question, thanks,
                      forwarded, closed]


def test_a_supervisor_marks_a_reporter_as_spam_without_seeing_them(
    gateway: Gateway, page: Any
) -> None:
    number = "+254711000202"
    reporter_id = gateway.pseudonym(number)
    gateway.sms(number, "Buy cheap phones now")
    wait_for(lambda: bool(gateway.twilio.bodies_to(number)), what="the dialogue's reply")
    first, _ = gateway.submit_tip(number, "Buy cheap phones now, best prices")

    # Officers neither see the action nor may use it.
    officer = gateway.account("amina", "officer")
    log_in(page, gateway, officer)
    page.goto(f"{gateway.url}/console/tips/{first}")
    assert page.locator("[data-testid=spam-form]").count() == 0
    page.context.clear_cookies()

    boss = gateway.account("boss", "supervisor")
    log_in(page, gateway, boss)
    page.goto(f"{gateway.url}/console/tips/{first}")
    assert reporter_id not in page.content()
    page.on("dialog", lambda dialog: dialog.accept())  # the "are you sure" confirm
    page.fill("[data-testid=spam-form] input[name=reason]", "advertising, 12 messages")
    page.click("[data-testid=spam-form] button[type=submit]")
    page.wait_for_url("**notice=marked_spam")
    assert page.inner_text("[data-testid=tip-status]") == "Rejected"
    assert "marked as spam" in page.inner_text("[data-testid=spam]")

    assert gateway.db.run_sync(lambda s: repo.is_spam(s, reporter_id=reporter_id))
    details = gateway.db.run_sync(lambda s: [(e.action, e.detail) for e in store.list_audit(s)])
    assert ("status", "reporter marked as spam; reason: advertising, 12 messages") in details
    assert not any(reporter_id in d or number in d for _a, d in details)

    # Their next tip goes straight to the spam folder (the gateway rejects it on arrival).
    second, _ = gateway.submit_tip(number, "Cheap phones again")
    assert gateway.tip(second).status == TipStatus.REJECTED
    page.goto(f"{gateway.url}/console/queue")
    assert page.locator(f"[data-testid=queue] tr[data-tip='{second}']").count() == 0
    page.click("[data-testid=spam-folder-link]")
    page.wait_for_selector("[data-testid=spam-folder]")
    listed = {int(row.get_attribute("data-tip"))
              for row in page.locator("[data-testid=queue] tbody tr[data-tip]").all()}
    assert listed == {first, second}
    # The route itself refuses officers, whatever the page shows.
    with ConsoleClient(gateway.url) as client:
        client.login(officer.username, officer.password, totp_secret=officer.totp_secret)
        refused = client.post(f"/console/tips/{second}/spam", data={"reason": "x"})
        assert refused.status_code == 403
