"""The dashboard (supervisors, admins) and the flows page (admins): figures from storage, charts
and the map drawn as inline SVG, offline, with the views audited; in Chromium the page loads
nothing blocked by the console's CSP."""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.console import dashboard as charts
from config.settings import CONFIG_DIR
from storage import console as store
from storage import repo, runtime
from storage.models import Tip, TipCreate, TipStatus, Urgency
from storage.oversight import MapPoint
from tests.conftest import OFFICER
from tests.console.conftest import Console
from tests.console.test_browser import log_in

SAMPLE_BOUNDARIES = CONFIG_DIR / "map" / "sample-boundaries.geojson"


def add_tip(console: Console, *, hours_ago: float, channel: str = "sms", language: str = "en",
            urgency: Urgency = Urgency.NORMAL, where: tuple[float, float] | None = None) -> int:
    latitude, longitude = where if where is not None else (None, None)
    tip = TipCreate(what="Cattle taken at night", language=language, channel=channel,
                    latitude=latitude, longitude=longitude,
                    reporter_id="r" + secrets.token_hex(16),
                    submission_key="dash-" + secrets.token_hex(8))
    received = console.clock() - timedelta(hours=hours_ago)
    stored = console.query(lambda s: repo.create_tip(s, tip=tip, urgency=urgency, reasons=[],
                                                     now=received))
    assert stored.id is not None
    return int(stored.id)


def act(console: Console, tip_id: int, actor: store.Actor, *, after_minutes: float,
        close: bool = False) -> None:
    """Claim (and close) a tip as if it happened `after_minutes` after it was received."""

    def work(session: Any) -> None:
        tip = session.get(Tip, tip_id)
        at = store.as_utc(tip.received_at) + timedelta(minutes=after_minutes)
        store.claim_tip(session, tip_id=tip_id, actor=actor, lease=timedelta(minutes=20), now=at)
        if close:
            store.change_tip_status(session, tip_id=tip_id, actor=actor,
                                    status=TipStatus.CLOSED, now=at + timedelta(hours=2))

    console.query(work)


@pytest.fixture
def mapped(console_factory: Callable[..., Console]) -> Console:
    return console_factory(console={"officer_user": OFFICER[0], "officer_password": OFFICER[1],
                                    "map_boundaries_geojson": "config/map/sample-boundaries.geojson"})


def test_dashboard_counts_times_and_map_for_supervisors_only(mapped: Console) -> None:
    boss = mapped.account("boss", "supervisor")
    officer = mapped.account("amina", "officer")
    actor = store.Actor(officer_id=officer.id, username="amina", role=store.OfficerRole.OFFICER)
    first = add_tip(mapped, hours_ago=50, where=(-1.30, 36.80), urgency=Urgency.HIGH)
    second = add_tip(mapped, hours_ago=26, channel="telegram", language="fr",
                     where=(-1.25, 36.95))
    add_tip(mapped, hours_ago=3, channel="whatsapp", urgency=Urgency.CRITICAL)
    add_tip(mapped, hours_ago=24 * 40)  # older than the 30 days shown
    act(mapped, first, actor, after_minutes=10, close=True)
    act(mapped, second, actor, after_minutes=30)

    page = mapped.login(boss).get("/console/dashboard")
    assert page.status_code == 200, page.text
    html = page.text
    assert re.search(r'data-testid="total">3<', html)
    # Medians: first claims 10 and 30 minutes after receipt; one tip closed 2 h 10 after it.
    assert "20 min" in re.search(r'data-testid="median-claim">([^<]+)', html).group(1)  # type: ignore[union-attr]
    assert "2 h 10" in re.search(r'data-testid="median-close">([^<]+)', html).group(1)  # type: ignore[union-attr]
    legend = {name: re.findall(r"</svg> ([^:<]+): <strong>(\d+)</strong>", block)
              for name, block in re.findall(
                  r'data-testid="legend-(tips_by_\w+)">(.*?)</ul>', html, re.S)}
    assert legend["tips_by_channel"] == [("sms", "1"), ("telegram", "1"), ("whatsapp", "1")]
    assert legend["tips_by_language"] == [("en", "2"), ("fr", "1")]
    assert legend["tips_by_urgency"] == [("Critical", "1"), ("High", "1"), ("Normal", "1")]
    assert html.count('<rect class="bar"') == 9  # per chart, one segment per (day, category)
    # The map: two geo-tagged tips over the sample file's two districts and river.
    assert html.count('class="tip-dot"') == 2
    assert html.count('class="boundary"') == 3
    assert f'href="/console/tips/{first}"' in html
    assert "<script" not in html.split("<main>")[1]  # drawn on the server, no chart library

    views = mapped.query(lambda s: [e.detail for e in store.list_audit(
        s, action=store.AuditAction.VIEW, officer_id=boss.id)])
    assert views == ["dashboard, last 30 days"]
    assert mapped.login(officer).get("/console/dashboard").status_code == 403


def test_flows_page_is_for_admins_and_shows_coverage_and_the_live_model(
    console: Console,
) -> None:
    admin = console.account("root", "admin")
    for role in ("supervisor", "officer"):
        other = console.login(console.account(f"not-{role}", role))
        assert other.get("/console/flows").status_code == 403
        assert 'href="/console/flows"' not in other.get("/console/queue").text

    client = console.login(admin)
    html = client.get("/console/flows").text
    assert re.search(r'data-testid="model">unknown<', html)
    for language in console.settings.languages:
        row = re.search(rf'data-language="{language}">(.*?)</tr>', html, re.S)
        assert row is not None and row.group(1).count("100 %") == 2, language
    assert 'data-testid="flows-ok"' in html  # the shipped files pass the check

    console.query(lambda s: runtime.put_setting(s, key=runtime.DIALOGUE, value={
        "url": "http://127.0.0.1:5006", "model": "20250101-120000-calm-river",
        "since": "2025-01-01T12:05:00+00:00"}))
    html = client.get("/console/flows").text
    assert re.search(r'data-testid="model">20250101-120000-calm-river<', html)
    assert re.search(r'data-testid="since">2025-01-01 12:05 UTC<', html)
    views = console.query(lambda s: [e.detail for e in store.list_audit(
        s, action=store.AuditAction.VIEW, officer_id=admin.id)])
    assert views == ["flows page", "flows page"]


def test_coverage_counts_missing_keys(tmp_path: Path) -> None:
    (tmp_path / "responses").mkdir()
    (tmp_path / "messages").mkdir()
    (tmp_path / "responses" / "en.yml").write_text("utter_a: {text: a}\nutter_b: {text: b}\n")
    (tmp_path / "responses" / "fr.yml").write_text("utter_a: {text: a}\n")
    (tmp_path / "messages" / "en.yml").write_text('x: "x"\nkeywords: {status: [S]}\n')
    (tmp_path / "messages" / "fr.yml").write_text('x: "x"\n')
    found = charts.translation_coverage(languages=["en", "fr", "sw"], default="en",
                                        responses_dir=tmp_path / "responses",
                                        messages_dir=tmp_path / "messages")
    assert [(c.language, c.responses.percent, c.messages.percent) for c in found] == [
        ("en", 100, 100), ("fr", 50, 100), ("sw", 0, 0)]
    assert not found[2].responses.readable


def test_map_frames_the_points_without_a_boundaries_file(tmp_path: Path) -> None:
    points = [MapPoint(1, -1.30, 36.80, "high"), MapPoint(2, -1.20, 36.90, "low")]
    drawn = charts.draw_map(points, None)
    assert drawn is not None and drawn.paths == []
    (a, b) = drawn.dots
    # North is up and east is right, both inside the frame.
    assert b.x > a.x and b.y < a.y
    assert all(0 < d.x < drawn.width and 0 < d.y < drawn.height for d in drawn.dots)
    assert charts.draw_map([], None) is None
    with_outlines = charts.draw_map(points, charts.load_boundaries(SAMPLE_BOUNDARIES))
    assert with_outlines is not None and len(with_outlines.paths) == 3
    broken = tmp_path / "broken.geojson"
    broken.write_text('{"type": "Polygon", "coordinates": [[[500, 1]]]}')
    with pytest.raises(charts.BoundariesError):
        charts.load_boundaries(broken)


def test_bars_stack_per_day() -> None:
    days = [date(2025, 1, 1), date(2025, 1, 2)]
    chart = charts.stacked_bars(days, {"sms": [3, 0], "telegram": [1, 2]})
    assert [(b.title, b.height > 0) for b in chart.bars] == [
        ("2025-01-01 · sms: 3", True), ("2025-01-01 · telegram: 1", True),
        ("2025-01-02 · telegram: 2", True)]
    assert [v for _y, v in chart.y_ticks] == [0, 2, 5]


@pytest.fixture
def page(chromium: Any) -> Iterator[Any]:
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(10_000)
    yield page
    context.close()


def test_dashboard_in_chromium_draws_without_csp_errors(mapped: Console, page: Any) -> None:
    boss = mapped.account("chief", "supervisor")
    tip_id = add_tip(mapped, hours_ago=5, where=(-1.28, 36.82))
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text)
            if m.type == "error" and "Failed to load resource" not in m.text else None)
    # Chromium asks for /favicon.ico by itself; anything else failing is the page's fault.
    page.on("response", lambda r: errors.append(f"{r.status} {r.url}")
            if r.status >= 400 and not r.url.endswith("/favicon.ico") else None)
    log_in(page, mapped, boss.username, boss.password, boss.totp_secret)
    page.click("text=Dashboard")
    page.wait_for_selector("[data-testid=map-svg]")
    box = page.locator("[data-testid=map-svg]").bounding_box()
    assert box is not None and box["width"] > 300
    assert page.locator("[data-testid=chart-tips_by_urgency] rect.bar").count() == 1
    page.locator("circle.tip-dot").first.click()
    page.wait_for_url(f"**/console/tips/{tip_id}")
    assert errors == []
