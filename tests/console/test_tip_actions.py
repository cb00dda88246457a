"""Tip page actions through HTTP, with their audit rows: written with the action, never when it
fails, never holding a reporter identifier. Exports masked; redaction irreversible; follow-ups
queued for the pipeline; attachments downloaded with an audit row."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.cli import main as cli_main
from bot.console.followups import FOLLOWUPS_DIR, PreparedQuestions
from bot.console.texts import I18N_DIR
from storage import console as store
from storage.models import Attachment, TipStatus, Urgency
from tests.console.conftest import Console

REPORTER = "reporter-pseudonym-7f3a9c1e2b4d"
CONTACTS = "Call me on +254 712 345 678 or write to amina.k@example.org"


def audit(console: Console, tip_id: int | None = None) -> list[Any]:
    return console.query(lambda s: list(reversed(store.list_audit(s, tip_id=tip_id, limit=1000))))


def test_each_action_writes_its_audit_row_in_the_same_transaction(console: Console) -> None:
    client = console.login(console.account("amina"))
    tip = console.tip(urgency=Urgency.NORMAL)
    other = console.tip()
    steps: list[tuple[str, dict[str, str], str]] = [
        ("claim", {}, "claim"),
        ("urgency", {"urgency": "high", "reason": "weapons seen"}, "urgency"),
        ("tags", {"add": "cattle, river"}, "tag"),
        ("notes", {"text": "called the station"}, "note"),
        ("followups", {"prepared_key": "weapons_seen"}, "follow_up"),
        ("redact", {"passage": "cattle"}, "redact"),
        ("status", {"status": "duplicate", "duplicate_of": str(other)}, "status"),
    ]
    for path, data, action in steps:
        before = len(audit(console, tip))
        response = client.post(f"/console/tips/{tip}/{path}", data=data)
        assert response.status_code == 303, (path, response.text)
        rows = audit(console, tip)
        assert len(rows) == before + 1 and rows[-1].action == action, path
        assert rows[-1].officer_username == "amina"

    stored = console.query(lambda s: s.get(store.Tip, tip))
    assert stored.urgency == Urgency.HIGH and stored.urgency_rank == 1
    assert stored.urgency_reasons[-1] == 'override=high by amina: "weapons seen"'
    assert stored.status == TipStatus.DUPLICATE and stored.duplicate_of == other
    assert stored.claimed_by is None  # a finished tip frees its officer

    # A view is audited too, and shows the history.
    page = client.get(f"/console/tips/{tip}")
    assert page.status_code == 200 and audit(console, tip)[-1].action == "view"
    assert "override=high by amina" in page.text and "called the station" in page.text


def test_failed_actions_write_no_audit_row(console: Console) -> None:
    client = console.login(console.account("amina"))
    tip = console.tip()
    before = audit(console)
    failures = [
        (f"/console/tips/{tip}/status", {"status": "forwarded"}, 400),  # not from new
        (f"/console/tips/{tip}/status", {"status": "rejected"}, 400),  # needs a reason
        (f"/console/tips/{tip}/urgency", {"urgency": "high", "reason": " "}, 400),
        (f"/console/tips/{tip}/redact", {"passage": "not in the tip"}, 400),
        (f"/console/tips/{tip}/notes", {"text": "   "}, 400),
        (f"/console/tips/{tip}/status", {"status": "duplicate", "duplicate_of": "999"}, 400),
        ("/console/tips/999/notes", {"text": "no such tip"}, 404),
        ("/console/tips/999/claim", {}, 404),
    ]
    for url, data, status in failures:
        assert client.post(url, data=data).status_code == status, url
    assert client.get("/console/tips/999").status_code == 404
    assert audit(console) == before
    assert console.query(lambda s: s.get(store.Tip, tip).status) == TipStatus.NEW


def test_rejecting_keeps_the_reason(console: Console) -> None:
    client = console.login(console.account("amina"))
    tip = console.tip()
    client.post(f"/console/tips/{tip}/claim")
    assert client.post(f"/console/tips/{tip}/status",
                       data={"status": "rejected", "reason": "spam"}).status_code == 303
    stored = console.query(lambda s: s.get(store.Tip, tip))
    assert stored.status == TipStatus.REJECTED and stored.status_reason == "spam"
    assert audit(console, tip)[-1].detail == "in_review -> rejected; reason: spam"


def test_tip_text_is_masked_until_unmasked_and_unmasking_is_audited(console: Console) -> None:
    client = console.login(console.account("amina"))
    tip = console.tip(CONTACTS)
    masked = client.get(f"/console/tips/{tip}").text
    assert "712 345 678" not in masked and "amina.k@example.org" not in masked
    assert "[phone]" in masked and "[e-mail]" in masked
    unmasked = client.post(f"/console/tips/{tip}/unmask")
    assert "+254 712 345 678" in unmasked.text and "amina.k@example.org" in unmasked.text
    assert [r.action for r in audit(console, tip)] == ["view", "unmask"]
    # The queue and the JSON API are masked as well.
    assert "712 345 678" not in client.get("/console/queue").text
    (listed,) = client.get("/api/tips").json()
    assert listed["what"] == "Call me on [phone] or write to [e-mail]"


def test_api_lists_tips_in_queue_order_without_reporter_ids(console: Console) -> None:
    client = console.login(console.account("amina"))
    low = console.tip(urgency=Urgency.LOW, minutes_ago=60, reporter_id=REPORTER)
    old_high = console.tip(urgency=Urgency.HIGH, minutes_ago=50)
    new_high = console.tip(urgency=Urgency.HIGH, minutes_ago=10)
    critical = console.tip(urgency=Urgency.CRITICAL, minutes_ago=1)
    tips = client.get("/api/tips").json()
    assert [t["id"] for t in tips] == [critical, old_high, new_high, low]
    assert all("reporter_id" not in t and "submission_key" not in t for t in tips)
    assert REPORTER not in json.dumps(tips)
    assert client.get("/api/tips", params={"urgency": "high"}).json()[0]["id"] == old_high


def test_exports_are_masked_filtered_and_audited(console: Console) -> None:
    client = console.login(console.account("amina"))
    console.tip(CONTACTS, urgency=Urgency.HIGH, reporter_id=REPORTER)
    console.tip("Goats stolen", urgency=Urgency.LOW, reporter_id=REPORTER)
    as_csv = client.get("/console/export", params={"format": "csv", "urgency": "high"})
    assert as_csv.status_code == 200
    assert as_csv.headers["content-disposition"].startswith("attachment;")
    rows = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert len(rows) == 1 and rows[0]["what"] == "Call me on [phone] or write to [e-mail]"
    as_json = client.get("/console/export", params={"format": "json"})
    data = as_json.json()
    assert [row["what"] for row in data] == ["Call me on [phone] or write to [e-mail]",
                                             "Goats stolen"]
    for body in (as_csv.text, as_json.text):
        # Not a bare "712": the export's timestamps (wall clock) can contain it.
        assert REPORTER not in body and "345 678" not in body and "example.org" not in body
        assert "reporter_id" not in body
    exports = [r for r in audit(console) if r.action == "export"]
    assert [r.detail for r in exports] == [
        "csv, 1 tip(s), status=open urgency=high", "json, 2 tip(s), status=open"]


def test_the_audit_log_holds_no_reporter_identifier(console: Console) -> None:
    client = console.login(console.account("amina"))
    supervisor = console.login(console.account("sue", "supervisor"))
    tip = console.tip(CONTACTS, reporter_id=REPORTER)
    client.post(f"/console/tips/{tip}/claim")
    client.post(f"/console/tips/{tip}/unmask")
    # Officers type free text into reasons; contact details are masked there too.
    client.post(f"/console/tips/{tip}/urgency",
                data={"urgency": "high", "reason": "reporter is +254712345678"})
    client.get("/console/export", params={"format": "json", "tip_id": str(tip)})
    page = supervisor.get("/console/audit")
    assert page.status_code == 200 and "unmask" in page.text
    rows = audit(console)
    text = json.dumps([[r.officer_username, r.action, r.detail] for r in rows])
    assert REPORTER not in text and "254712345678" not in text and "example.org" not in text
    assert REPORTER not in page.text


def test_redaction_is_irreversible_and_keeps_no_copy(console: Console) -> None:
    client = console.login(console.account("amina"))
    secret = "my cousin Wanjiru at house 14"
    tip = console.tip(f"Stolen goats, ask {secret} near the well")
    console.query(lambda s: store.record_tip_message(
        s, tip_id=tip, direction=store.MessageDirection.IN, text=f"yes {secret}",
        now=console.clock()))
    assert client.post(f"/console/tips/{tip}/redact", data={"passage": secret}).status_code == 303
    stored = console.query(lambda s: s.get(store.Tip, tip))
    assert stored.what == "Stolen goats, ask [redacted] near the well"
    unmasked = client.post(f"/console/tips/{tip}/unmask").text
    assert "ask [redacted] near the well" in unmasked and "yes [redacted]" in unmasked
    # Nowhere in the database any more, audit log included.
    url = console.settings.database.url.removeprefix("sqlite:///")
    with sqlite3.connect(url) as raw:
        dump = "\n".join(raw.iterdump())
    assert secret not in dump and "Wanjiru" not in dump


def test_follow_up_is_queued_for_the_pipeline_and_the_answer_threads_back(
    console: Console,
) -> None:
    client = console.login(console.account("amina"))
    tip = console.tip(language="fr", reporter_id=REPORTER, channel="sms")
    assert client.post(f"/console/tips/{tip}/followups",
                       data={"prepared_key": "still_there"}).status_code == 303
    assert client.post(f"/console/tips/{tip}/followups",
                       data={"question": "De quelle couleur était la voiture ?"}
                       ).status_code == 303
    # The pipeline's side of the contract.
    pending = console.query(lambda s: store.list_pending_follow_ups(s))
    assert [(p.tip_id, p.reporter_id, p.language, p.channel) for p in pending] == [
        (tip, REPORTER, "fr", "sms"), (tip, REPORTER, "fr", "sms")]
    assert pending[0].question == "Sont-ils encore sur place maintenant ?"
    now = console.clock()
    assert console.query(lambda s: store.mark_follow_up_sent(
        s, follow_up_id=pending[0].follow_up_id, now=now))
    assert not console.query(lambda s: store.mark_follow_up_sent(
        s, follow_up_id=pending[0].follow_up_id, now=now))  # never twice
    console.query(lambda s: store.mark_follow_up_undeliverable(
        s, follow_up_id=pending[1].follow_up_id, now=now))
    waiting = console.query(lambda s: store.find_awaiting_follow_up(s, reporter_id=REPORTER))
    assert waiting is not None and waiting.id == pending[0].follow_up_id
    console.query(lambda s: store.record_follow_up_answer(
        s, follow_up_id=waiting.id, text="Oui, ils sont trois", now=now + timedelta(minutes=2)))
    assert console.query(lambda s: store.find_awaiting_follow_up(s, reporter_id=REPORTER)) is None

    page = client.get(f"/console/tips/{tip}").text
    assert "Sont-ils encore sur place maintenant ?" in page and "Oui, ils sont trois" in page
    assert "answered" in page and "could not be delivered" in page
    assert REPORTER not in page
    assert [r.action for r in audit(console, tip)].count("follow_up") == 2


def test_attachment_download_is_audited(console: Console) -> None:
    client = console.login(console.account("amina"))
    tip = console.tip(reporter_id=REPORTER)

    def attach(session: Any) -> int:
        row = Attachment(reporter_id=REPORTER, tip_id=tip, kind="image",
                         content_type="image/jpeg", size=4, sha256="0" * 64,
                         data=b"\xff\xd8\xff\xd9", metadata_removed=False,
                         flagged_reason="EXIF could not be removed")
        session.add(row)
        session.flush()
        return int(row.id or 0)

    attachment = console.query(attach)
    page = client.get(f"/console/tips/{tip}").text
    assert "EXIF could not be removed" in page and "metadata not removed" in page
    download = client.get(f"/console/tips/{tip}/attachments/{attachment}")
    assert download.content == b"\xff\xd8\xff\xd9"
    assert download.headers["content-disposition"].startswith("attachment;")
    assert audit(console, tip)[-1].action == "download"
    assert client.get(f"/console/tips/{tip + 1}/attachments/{attachment}").status_code == 404


def test_ui_catalogues_and_prepared_questions_cover_every_language() -> None:
    en = yaml.safe_load((I18N_DIR / "en.yml").read_text(encoding="utf-8"))
    fr = yaml.safe_load((I18N_DIR / "fr.yml").read_text(encoding="utf-8"))
    assert set(en) == set(fr)
    # Unquoted yes/no would be YAML booleans, not keys.
    assert all(isinstance(key, str) for key in [*en, *fr])
    prepared = PreparedQuestions()
    assert set(prepared.languages) == {"en", "fr", "ar", "sw", "es", "pt"}
    keys = set(prepared.for_language("en"))
    assert {"where_exactly", "how_many_people", "still_there", "weapons_seen"} <= keys
    for language in prepared.languages:
        texts = prepared.for_language(language)
        assert set(texts) == keys, language
        assert all(text.strip() for text in texts.values()), language
    assert FOLLOWUPS_DIR.is_dir()


def test_cli_creates_accounts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TIPLINE_DATABASE__URL", f"sqlite:///{tmp_path / 'cli.db'}")
    monkeypatch.setattr("sys.stdin", io.StringIO("a-strong-admin-password\n"))
    assert cli_main(["officers", "create-admin", "--username", "Root",
                     "--password-stdin"]) == 0
    out = capsys.readouterr().out
    assert "Created admin 'root'" in out and "otpauth://totp/" in out
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert cli_main(["officers", "create", "--role", "officer", "--username", "weak",
                     "--password-stdin"]) == 1
    monkeypatch.setattr("sys.stdin", io.StringIO("another-strong-password\n"))
    assert cli_main(["officers", "create", "--role", "officer", "--username", "amina",
                     "--password-stdin"]) == 0
    assert "otpauth" not in capsys.readouterr().out  # officers: TOTP optional by default
    assert cli_main(["officers", "list"]) == 0
    listing = capsys.readouterr().out
    assert "root\tadmin [totp]" in listing and "amina\tofficer" in listing
    assert cli_main(["officers", "disable", "--username", "amina"]) == 0
