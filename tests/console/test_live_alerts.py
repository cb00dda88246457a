"""Live alerts in the console: an officer with the queue open sees a critical tip's banner
within seconds, without reloading (Debian's Chromium via Playwright); the event stream is
refused to anyone not logged in and does not keep an idle session alive."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.console.client import ConsoleClient
from tests.console.conftest import Console

ACTIONS = {"Authorization": "Bearer actions-token-for-tests"}
PROMISE_MS = 5_000


@pytest.fixture
def page(chromium: Any) -> Iterator[Any]:
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(10_000)
    yield page
    context.close()  # before the server stops: an open event stream would hold it up


def store_critical_tip(console: Console, reporter_id: str) -> str:
    """As the action server does: POST /internal/tips. Returns the submission key."""
    key = "k" + secrets.token_hex(20)
    response = httpx.post(f"{console.url}/internal/tips", headers=ACTIONS, timeout=15, json={
        "reporter_id": reporter_id, "submission_key": key,
        "what": "Men with guns are shooting at people at the market",
        "where_text": "Kibera market", "when_text": "now", "danger_now": True,
        "language": "en", "channel": "sms",
    })
    response.raise_for_status()
    return key


def tip_id_of(console: Console, key: str) -> int:
    from sqlmodel import select

    from storage.models import Tip

    tip_id: int = console.query(lambda s: s.exec(
        select(Tip.id).where(Tip.submission_key == key)).one())
    return tip_id


def test_officer_sees_a_critical_tip_banner_without_reloading(
    console: Console, page: Any
) -> None:
    officer = console.account("amina", "officer")
    console.tip("Noise at night", minutes_ago=30)
    page.goto(f"{console.url}/console/login")
    page.fill("input[name=username]", officer.username)
    page.fill("input[name=password]", officer.password)
    page.click("button[type=submit]")
    page.wait_for_url("**/console/queue")
    page.wait_for_selector("[data-testid=live-alerts][data-live=open]", state="attached")
    page.evaluate("window.stillTheSamePage = true")
    assert page.locator("[data-testid=live-alert]").count() == 0

    reporter_id = "r" + secrets.token_hex(20)
    began = time.monotonic()
    key = store_critical_tip(console, reporter_id)
    banner = page.wait_for_selector("[data-testid=live-alert]", timeout=PROMISE_MS)
    delay = time.monotonic() - began
    print(f"\nbanner in the browser {delay * 1000:.0f} ms after the tip was submitted")

    tip_id = tip_id_of(console, key)
    assert banner.inner_text().startswith(f"Critical tip #{tip_id} (en, sms)")
    assert banner.query_selector("a").get_attribute("href") == f"/console/tips/{tip_id}"
    # The queue gained the tip's real row, on top (most urgent), in the same page.
    row = page.wait_for_selector(f"[data-testid=queue] tbody tr[data-tip='{tip_id}']")
    assert "shooting" in row.inner_text()
    assert page.locator("[data-testid=queue] tbody tr").first.get_attribute("data-tip") == str(tip_id)
    assert page.evaluate("window.stillTheSamePage") is True
    assert page.title().startswith("(1) ")
    assert reporter_id not in page.content()

    # The same tip again (a retried submission): no second banner.
    page.click("[data-testid=live-alert] button")
    assert page.locator("[data-testid=live-alert]").count() == 0
    httpx.post(f"{console.url}/internal/tips", headers=ACTIONS, timeout=15, json={
        "reporter_id": reporter_id, "submission_key": key, "what": "again", "language": "en",
        "channel": "sms", "danger_now": True}).raise_for_status()
    page.wait_for_timeout(1500)
    assert page.locator("[data-testid=live-alert]").count() == 0


def test_event_stream_refuses_anonymous_users(console: Console) -> None:
    with httpx.Client(base_url=console.url, timeout=15) as anonymous:
        response = anonymous.get("/console/events", headers={"Accept": "text/event-stream"})
    assert response.status_code == 303
    assert response.headers["location"].startswith("/console/login")
    assert "text/event-stream" not in response.headers.get("content-type", "")


def test_event_stream_sends_critical_tips_to_an_officer(console: Console) -> None:
    officer = console.account("jean", "officer")
    client = console.login(officer)
    reporter_id = "r" + secrets.token_hex(20)
    headers = {"Cookie": client._cookie_header()["Cookie"], "Accept": "text/event-stream"}
    with client.http.stream("GET", "/console/events", headers=headers) as stream:
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        key = store_critical_tip(console, reporter_id)
        lines = stream.iter_lines()
        event = ""
        for line in lines:
            if line == "event: critical":
                event = next(lines)
                break
    assert event.startswith("data: ")
    data = json.loads(event.removeprefix("data: "))
    assert data["tip"] == tip_id_of(console, key)
    assert (data["language"], data["channel"]) == ("en", "sms")
    assert reporter_id not in event and "shooting" not in event


def test_event_stream_does_not_keep_an_idle_session_alive(console: Console) -> None:
    officer = console.account("idle", "officer")
    client: ConsoleClient = console.login(officer)
    headers = {"Cookie": client._cookie_header()["Cookie"]}
    console.clock.advance(minutes=20)
    # The tab's stream reconnects by itself: a valid session, but no officer activity.
    with client.http.stream("GET", "/console/events", headers=headers) as stream:
        assert stream.status_code == 200
    console.clock.advance(minutes=15)  # 35 minutes since the officer last did anything
    response = client.get("/console/queue")
    assert response.status_code == 303
    assert response.headers["location"] == "/console/login?expired=1"
