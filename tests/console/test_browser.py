"""The console in a real browser: Debian's Chromium driven by Playwright, against a live
gateway. Log in with TOTP, take the next tip, close it, add a note; French UI; a phone-sized
screen."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from bot.console import totp
from storage import console as store
from storage.models import TipStatus, Urgency
from tests.console.conftest import Console


@pytest.fixture
def page(chromium: Any) -> Iterator[Any]:
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(10_000)
    yield page
    context.close()


def log_in(page: Any, console: Console, username: str, password: str, secret: str | None) -> None:
    page.goto(f"{console.url}/console/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    if secret:
        page.fill("input[name=code]", totp.now_code(secret, console.clock()))
    page.click("button[type=submit]")
    page.wait_for_url("**/console/queue")


def test_officer_logs_in_with_totp_takes_next_tip_closes_it_and_adds_a_note(
    console: Console, page: Any
) -> None:
    officer = console.account("amina", "officer", with_totp=True)
    console.tip("Someone stole a bicycle", urgency=Urgency.LOW, minutes_ago=90)
    urgent = console.tip("Armed men at the market right now", urgency=Urgency.CRITICAL,
                         minutes_ago=10)
    console.tip("Noise at night", urgency=Urgency.NORMAL, minutes_ago=30)

    log_in(page, console, officer.username, officer.password, officer.totp_secret)
    rows = page.locator("[data-testid=queue] tbody tr")
    assert rows.count() == 3
    # Most urgent first; the critical tip is 10 minutes old, over its 5-minute limit.
    assert "Armed men" in rows.nth(0).inner_text()
    assert "overdue" in (rows.nth(0).get_attribute("class") or "")
    assert "bicycle" in rows.nth(2).inner_text()

    page.click("[data-testid=next-tip]")
    page.wait_for_url(f"**/console/tips/{urgent}?notice=claimed")
    assert page.inner_text("[data-testid=holder]") == "amina"
    assert page.inner_text("[data-testid=tip-status]") == "In review"

    page.select_option("[data-testid=status-form] select[name=status]", "closed")
    page.click("[data-testid=status-form] button[type=submit]")
    page.wait_for_url("**notice=status_changed")
    assert page.inner_text("[data-testid=tip-status]") == "Closed"

    page.fill("textarea[name=text]", "Patrol informed, nothing found.")
    page.click("text=Add note")
    page.wait_for_url("**notice=note_added")
    assert "Patrol informed, nothing found." in page.inner_text("[data-testid=notes]")

    def stored(session: Any) -> tuple[Any, list[str]]:
        tip = session.get(store.Tip, urgent)
        actions = [e.action for e in reversed(store.list_audit(session, tip_id=urgent))]
        return tip, actions

    tip, actions = console.query(stored)
    assert tip.status == TipStatus.CLOSED and tip.claimed_by is None
    assert actions == ["claim", "view", "status", "view", "note", "view"]


def test_supervisor_cannot_log_in_without_the_second_factor(console: Console, page: Any) -> None:
    boss = console.account("boss", "supervisor")
    page.goto(f"{console.url}/console/login")
    page.fill("input[name=username]", boss.username)
    page.fill("input[name=password]", boss.password)
    page.click("button[type=submit]")
    assert page.locator(".error").inner_text() == "Wrong username, password or code."
    assert page.url.endswith("/console/login")


def test_french_console_on_a_phone(console: Console, chromium: Any) -> None:
    officer = console.account("jean", "officer")
    console.tip("Vol de chèvres, appelez le 0612345678", language="fr",
                urgency=Urgency.HIGH, minutes_ago=5)
    context = chromium.new_context(viewport={"width": 390, "height": 844}, is_mobile=True,
                                   has_touch=True)
    page = context.new_page()
    try:
        log_in(page, console, officer.username, officer.password, None)
        page.select_option("select[name=language]", "fr")
        page.wait_for_load_state("load")
        page.wait_for_selector("text=Signalement suivant")
        # Nothing wider than the screen but the queue's own scroll box.
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390
        page.click("[data-testid=next-tip]")
        page.wait_for_selector("[data-testid=what]")
        what = page.inner_text("[data-testid=what]")
        assert "0612345678" not in what and "[phone]" in what
        page.click("[data-testid=unmask]")
        page.wait_for_selector(".warn")
        assert "0612345678" in page.inner_text("[data-testid=what]")
    finally:
        context.close()
