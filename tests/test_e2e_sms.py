"""End to end through the signed SMS webhook and the real Rasa server with a trained model."""

from __future__ import annotations

import logging
import re
import sqlite3
from pathlib import Path

import pytest

from bot.urgency import assess
from tests.stack import Stack

pytestmark = pytest.mark.e2e
RECEIPT = re.compile(r"\b([A-HJ-NP-Z2-9]{4}-[A-HJ-NP-Z2-9]{4})\b")


def tip_with_receipt(stack: Stack, receipt: str) -> dict[str, object]:
    matches = [t for t in stack.officer_tips() if t["receipt_code"] == receipt]
    assert len(matches) == 1, f"tip {receipt} not in the officers' list"
    return matches[0]


def test_full_tip_in_english(stack: Stack) -> None:
    number = "+254700000101"
    first = stack.sms(number, "Hello")
    assert "anonymous" in first and "never ask your name" in first and "never see your number" in first
    assert "What happened" in first
    assert "Where" in stack.sms(number, "Three armed men are stealing cattle near the river")
    assert "When" in stack.sms(number, "Kibera, near the old market")
    danger = stack.sms(number, "this morning")
    assert "danger right now" in danger and "1. Yes" in danger and "2. No" in danger
    summary = stack.sms(number, "1")
    assert "call 112" in summary  # the emergency number, at once
    assert "Three armed men are stealing cattle near the river" in summary
    assert "Shall we send it" in summary
    done = stack.sms(number, "1")
    receipt = RECEIPT.search(done)
    assert receipt, done
    tip = tip_with_receipt(stack, receipt.group(1))
    assert tip["language"] == "en"
    assert tip["channel"] == "sms"
    assert tip["what"] == "Three armed men are stealing cattle near the river"
    assert tip["where_text"] == "Kibera, near the old market"
    assert tip["when_text"] == "this morning"
    assert tip["danger_now"] is True
    assert tip["urgency"] == "critical"
    assert "danger_now=yes" in tip["urgency_reasons"]  # type: ignore[operator]
    assert tip["status"] == "new"


def test_full_tip_in_french(stack: Stack) -> None:
    number = "+22370000102"
    first = stack.sms(number, "Bonjour")
    assert "anonyme" in first
    stack.sms(number, "Des hommes armés ont volé les chèvres de mon voisin cette nuit")
    stack.sms(number, "Sévaré, près du marché")
    danger = stack.sms(number, "hier soir")
    assert "1. Oui" in danger and "2. Non" in danger
    summary = stack.sms(number, "non")
    assert "Sévaré, près du marché" in summary
    done = stack.sms(number, "oui")
    receipt = RECEIPT.search(done)
    assert receipt, done
    tip = tip_with_receipt(stack, receipt.group(1))
    assert tip["language"] == "fr"
    assert tip["what"] == "Des hommes armés ont volé les chèvres de mon voisin cette nuit"
    assert tip["when_text"] == "hier soir"
    assert tip["danger_now"] is False
    # Tagged by the same code as `tipline triage`: the lexicon sees "hommes armés".
    expected = assess(text=" ".join([tip["what"], tip["where_text"], tip["when_text"]]),  # type: ignore[list-item]
                      danger_now=False, language="fr")
    assert tip["urgency"] == expected.urgency.value
    assert tip["urgency_reasons"] == list(expected.reasons)
    assert "danger_now=no" in tip["urgency_reasons"]  # type: ignore[operator]


def test_first_message_can_be_the_tip_itself(stack: Stack) -> None:
    number = "+254700000103"
    first = stack.sms(number, "Someone is selling guns to young boys behind the mosque")
    assert "anonymous" in first
    assert "Where" in first  # the text was kept as "what", not asked for again


def test_slash_commands_from_reporters_never_reach_rasa_as_intents(stack: Stack) -> None:
    number = "+254700000104"
    stack.sms(number, "Hello")
    reply = stack.sms(number, "/restart")
    # Taken as the answer to "what happened", not as Rasa's restart intent.
    assert "Where" in reply


def test_raw_phone_numbers_are_nowhere(stack: Stack, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    number = "+254700000199"
    stack.sms(number, "Hello")
    stack.sms(number, "A man is threatening shop owners for money every week")
    numbers = ["254700000101", "22370000102", "254700000103", "254700000104", "254700000199"]
    data_dir = stack.settings.data_dir
    places: dict[str, str] = {}
    for path in sorted(Path(data_dir).rglob("*")):
        if path.is_file() and path.suffix not in {".gz"}:
            places[str(path)] = path.read_bytes().decode("utf-8", "replace")
    for db in (data_dir / "tipline.db", data_dir / "rasa-trackers.db"):
        with sqlite3.connect(db) as conn:
            tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
            for table in tables:
                rows = conn.execute(f"SELECT * FROM {table}").fetchall()  # noqa: S608
                places[f"{db.name}:{table}"] = repr(rows)
    places["captured logs"] = "\n".join(r.getMessage() for r in caplog.records)
    assert any("rasa-trackers" in p for p in places), "the tracker store was not scanned"
    assert any(p.endswith("rasa.log") for p in places), "Rasa's log was not scanned"
    for number in numbers:
        for place, content in places.items():
            assert number not in content, f"{number} found in {place}"
