"""What the gateway answers itself: STATUS receipts, officers' follow-up questions and their
answers, "tell me when you act" notices, the panic word, floods and spam pseudonyms."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlmodel import select

from bot.app import create_app
from bot.privacy import pseudonymize
from config.messages import GatewayMessages
from storage import console as console_store
from storage import repo
from storage.db import new_session
from storage.models import Reporter, Tip, TipStatus, VaultEntry
from tests.conftest import make_settings, make_twilio_form, post_sms, running
from tests.console.client import ensure_account
from tests.fakes import (
    TELEGRAM_TOKEN,
    FakeRasa,
    FakeTelegramApi,
    FakeTwilioApi,
    Router,
    make_telegram_update,
)

SECRET = "telegram-webhook-secret-for-tests"
EN = GatewayMessages(["en", "fr"], "en")


@dataclass
class Gateway:
    app: FastAPI
    client: httpx.AsyncClient
    twilio: FakeTwilioApi
    telegram: FakeTelegramApi
    rasa: FakeRasa
    pepper: str

    async def sms(self, number: str, text: str) -> None:
        await post_sms(self.client, make_twilio_form(body=text, from_=number))
        await self.app.state.pipeline.idle()

    async def submit_tip(self, number: str, **fields: object) -> str:
        values = {"reporter_id": pseudonymize(self.pepper, "sms", number),
                  "submission_key": f"{number}-{len(fields)}".ljust(20, "k"), "what": "cattle stolen",
                  "where_text": "river", "when_text": "today", "danger_now": False,
                  "language": "en", "channel": "sms", **fields}
        response = await self.client.post(
            "/internal/tips", json=values, headers={"Authorization": "Bearer actions-token-for-tests"})
        assert response.status_code == 200, response.text
        return str(response.json()["receipt_code"])

    def tip(self, receipt: str) -> Tip:
        with new_session(self.app.state.db.engine) as session:
            found = repo.get_tip_by_receipt(session, receipt_code=receipt)
            assert found is not None
            return found

    async def settle(self, seconds: float = 2.5) -> None:
        """Let the worker's outbound loop (polling once a second) do its round."""
        await asyncio.sleep(seconds)
        await self.app.state.pipeline.idle()


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[Gateway]:
    settings = make_settings(
        tmp_path,
        channels={"sms": True, "telegram": True, "local": False},
        telegram={"bot_token": TELEGRAM_TOKEN, "webhook_secret": SECRET},
        privacy={**make_settings(tmp_path).privacy.model_dump(mode="json"),
                 "pepper": "pepper-for-feature-tests-0123456789",
                 "vault_key": make_settings(tmp_path).privacy.vault_key.get_secret_value(),
                 "panic_words": ["Pizza"], "rate_limit_messages": 4,
                 "rate_limit_window_seconds": 2},
    )
    twilio, telegram, rasa = FakeTwilioApi(), FakeTelegramApi(), FakeRasa()
    app = create_app(settings, transport=Router(
        {"api.twilio.com": twilio, "api.telegram.org": telegram, "rasa.test": rasa}))
    async with running(app) as client:
        yield Gateway(app, client, twilio, telegram, rasa, settings.privacy.pepper.get_secret_value())


async def test_status_with_a_receipt_code_in_any_language(gw: Gateway) -> None:
    receipt = await gw.submit_tip("+254700001001")
    await gw.sms("+254700001002", f"STATUS {receipt}")
    await gw.sms("+254700001002", f"statut {receipt.replace('-', '').lower()}")
    await gw.sms("+254700001002", "STATUS ZZZZ-ZZZZ")
    await gw.sms("+254700001002", "status")
    bodies = gw.twilio.bodies_to("+254700001002")
    new = EN.get("en", "status_new").format(code=receipt)
    assert bodies[:2] == [new, new]
    assert bodies[2] == EN.get("en", "status_unknown")
    assert bodies[3] == EN.get("en", "status_how")
    assert gw.rasa.received == []  # none of these is a dialogue turn


async def test_an_officer_question_reaches_the_reporter_and_the_answer_is_threaded(
    gw: Gateway,
) -> None:
    number = "+254700001003"
    await gw.sms(number, "thieves took the generator")  # a conversation, so a vault entry
    receipt = await gw.submit_tip(number)
    tip = gw.tip(receipt)
    officer_id = ensure_account(gw.app.state.db, username="officer-a", password="a-long-password-1")
    actor = console_store.Actor(officer_id=officer_id, username="officer-a",
                                role=console_store.OfficerRole.OFFICER)
    gw.app.state.db.run_sync(lambda s: console_store.create_follow_up(
        s, tip_id=tip.id, actor=actor, now=repo.utcnow(), question="Were they armed?"))
    await gw.settle()
    question = gw.twilio.bodies_to(number)[-1]
    assert question == EN.get("en", "followup_question").format(code=receipt, question="Were they armed?")
    before = len(gw.rasa.received)
    await gw.sms(number, "yes, two had rifles")
    assert gw.twilio.bodies_to(number)[-1] == EN.get("en", "followup_thanks")
    assert len(gw.rasa.received) == before  # the answer is not a new tip
    with new_session(gw.app.state.db.engine) as session:
        thread = [(m.direction, m.text) for m in session.exec(
            select(console_store.TipMessage).where(console_store.TipMessage.tip_id == tip.id))]
    assert ("out", "Were they armed?") in [(str(d), t) for d, t in thread]
    assert ("in", "yes, two had rifles") in [(str(d), t) for d, t in thread]
    await gw.settle()
    assert gw.twilio.bodies_to(number).count(question) == 1  # asked once


async def test_reporters_who_asked_are_told_once_when_their_tip_is_acted_on(gw: Gateway) -> None:
    number = "+254700001004"
    receipt = await gw.submit_tip(number)
    gw.rasa.answer = lambda sender, text: [{"text": "Thank you. Code " + receipt, "buttons": [
        {"title": "Yes, tell me", "payload": f"notify:{receipt}"},
        {"title": "No, thanks", "payload": "notify:no"}]}]
    await gw.sms(number, "one more detail about the theft")
    await gw.sms(number, "1")
    assert gw.twilio.bodies_to(number)[-1] == EN.get("en", "notify_yes")
    officer_id = ensure_account(gw.app.state.db, username="officer-b", password="a-long-password-2")
    actor = console_store.Actor(officer_id=officer_id, username="officer-b",
                                role=console_store.OfficerRole.SUPERVISOR)
    tip_id = gw.tip(receipt).id
    for status in (TipStatus.IN_REVIEW, TipStatus.VERIFIED, TipStatus.FORWARDED):
        gw.app.state.db.run_sync(lambda s, st=status: console_store.change_tip_status(
            s, tip_id=tip_id, actor=actor, status=st, now=repo.utcnow()))
    await gw.settle()
    forwarded = EN.get("en", "status_forwarded").format(code=receipt)
    assert gw.twilio.bodies_to(number).count(forwarded) == 1
    await gw.settle()
    assert gw.twilio.bodies_to(number).count(forwarded) == 1  # never twice
    # Somebody else's receipt cannot subscribe them: only the tip's own reporter may ask.
    other = "+254700001005"
    gw.rasa.answer = lambda sender, text: [{"text": "ok", "buttons": [
        {"title": "Yes", "payload": f"notify:{receipt}"}]}]
    await gw.sms(other, "hello")
    await gw.sms(other, "1")
    assert gw.app.state.db.run_sync(lambda s: repo.subscribe_status_notice(
        s, receipt_code=receipt, reporter_id=pseudonymize(gw.pepper, "sms", other))) is False


async def test_the_panic_word_wipes_the_telegram_chat_and_forgets_the_reporter(gw: Gateway) -> None:
    chat = 555_000_901
    for text in ("bonjour", "il y a des hommes armés au marché"):
        await gw.client.post("/webhooks/telegram", json=make_telegram_update(text=text, chat_id=chat),
                             headers={"X-Telegram-Bot-Api-Secret-Token": SECRET})
        await gw.app.state.pipeline.idle()
    await gw.client.post("/webhooks/telegram", json=make_telegram_update(text="PIZZA!", chat_id=chat),
                         headers={"X-Telegram-Bot-Api-Secret-Token": SECRET})
    await gw.app.state.pipeline.idle()
    deleted = gw.telegram.calls_to("deleteMessage")
    # The reporter's two messages, our two replies, and the panic word itself.
    assert len(deleted) == 5
    assert gw.telegram.sent[-1]["text"] == GatewayMessages(["fr"], "fr").get("fr", "panic_reply")
    with new_session(gw.app.state.db.engine) as session:
        assert list(session.exec(select(VaultEntry))) == []
        assert list(session.exec(select(Reporter))) == []


async def test_a_flood_is_slowed_and_flagged_never_dropped(gw: Gateway) -> None:
    number = "+254700001006"
    for n in range(8):
        await post_sms(gw.client, make_twilio_form(body=f"message number {n}", from_=number))
    for _ in range(80):
        await asyncio.sleep(0.1)
        if len(gw.rasa.received) == 8:
            break
    assert [t for _s, t in gw.rasa.received] == [f"message number {n}" for n in range(8)]
    reporter_id = pseudonymize(gw.pepper, "sms", number)
    with new_session(gw.app.state.db.engine) as session:
        assert session.get(Reporter, reporter_id).flood_flagged_at is not None  # type: ignore[union-attr]
    receipt = await gw.submit_tip(number)
    assert any(r.startswith("flood") for r in gw.tip(receipt).urgency_reasons)


async def test_tips_of_a_spam_pseudonym_go_to_the_spam_folder(gw: Gateway) -> None:
    number = "+254700001007"
    gw.app.state.db.run_sync(lambda s: repo.mark_spam(
        s, reporter_id=pseudonymize(gw.pepper, "sms", number)))
    tip = gw.tip(await gw.submit_tip(number))
    assert tip.status == TipStatus.REJECTED and "spam" in (tip.status_reason or "")
