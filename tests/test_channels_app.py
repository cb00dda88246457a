"""Telegram and WhatsApp through the whole gateway: webhooks, the worker, replies.

Providers are faked at their HTTP boundary; the dialogue is a scripted fake Rasa.
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from PIL import Image
from PIL.ExifTags import GPS, IFD
from sqlmodel import select
from twilio.request_validator import RequestValidator

from bot.app import create_app
from config.messages import GatewayMessages
from storage import repo
from storage.db import new_session
from storage.models import Attachment, InboundMessage, Reporter, Tip, VaultEntry
from tests.conftest import PUBLIC_BASE, TWILIO_TOKEN, make_settings, running
from tests.fakes import (
    TELEGRAM_TOKEN,
    FakeRasa,
    FakeTelegramApi,
    FakeTwilioMessaging,
    Router,
    make_telegram_update,
    make_whatsapp_form,
)

SECRET = "telegram-webhook-secret-for-tests"
CHAT = 555_000_777


@dataclass
class Gateway:
    app: FastAPI
    client: httpx.AsyncClient
    telegram: FakeTelegramApi
    twilio: FakeTwilioMessaging
    rasa: FakeRasa

    async def telegram_update(self, update: dict[str, object], *, secret: str = SECRET) -> httpx.Response:
        response = await self.client.post(
            "/webhooks/telegram", json=update,
            headers={"X-Telegram-Bot-Api-Secret-Token": secret})
        await self.app.state.pipeline.idle()
        return response

    async def whatsapp(self, form: dict[str, str]) -> httpx.Response:
        url = f"{PUBLIC_BASE}/webhooks/whatsapp"
        signature = RequestValidator(TWILIO_TOKEN).compute_signature(url, form)
        response = await self.client.post("/webhooks/whatsapp", data=form,
                                          headers={"X-Twilio-Signature": signature})
        await self.app.state.pipeline.idle()
        return response

    def rows(self, model: type) -> list:  # type: ignore[type-arg]
        with new_session(self.app.state.db.engine) as session:
            return list(session.exec(select(model)))


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[Gateway]:
    settings = make_settings(
        tmp_path,
        channels={"sms": True, "whatsapp": True, "telegram": True, "local": False},
        telegram={"bot_token": TELEGRAM_TOKEN, "webhook_secret": SECRET, "mode": "webhook"},
        whatsapp={"sender": "whatsapp:+15550000000", "template_content_sid": "HX" + "1" * 32},
    )
    telegram, twilio, rasa = FakeTelegramApi(), FakeTwilioMessaging(), FakeRasa()
    router = Router({"api.telegram.org": telegram, "api.twilio.com": twilio, "rasa.test": rasa})
    app = create_app(settings, transport=router)
    async with running(app) as client:
        yield Gateway(app, client, telegram, twilio, rasa)


def jpeg_with_gps() -> bytes:
    exif = Image.Exif()
    gps = exif.get_ifd(IFD.GPSInfo)
    gps[GPS.GPSLatitudeRef] = "S"
    gps[GPS.GPSLatitude] = (1.0, 17.0, 31.56)
    buffer = io.BytesIO()
    Image.new("RGB", (32, 24), (10, 200, 10)).save(buffer, "JPEG", exif=exif)
    return buffer.getvalue()


async def test_telegram_text_reaches_the_dialogue_and_the_reply_goes_back(gw: Gateway) -> None:
    gw.rasa.answer = lambda sender, text: [{"text": "Is anyone in danger right now?", "buttons": [
        {"title": "Yes", "payload": "/affirm"}, {"title": "No", "payload": "/deny"}]}]
    response = await gw.telegram_update(make_telegram_update(text="ils tirent au marché", chat_id=CHAT))
    assert response.status_code == 200
    assert [text for _s, text in gw.rasa.received] == ["ils tirent au marché"]
    sent = gw.telegram.sent
    assert len(sent) == 1 and str(sent[0]["chat_id"]) == str(CHAT)
    keyboard = sent[0]["reply_markup"]["inline_keyboard"]  # type: ignore[index]
    assert [[b["callback_data"] for b in row] for row in keyboard] in (  # type: ignore[index]
        [["/affirm", "/deny"]], [["/affirm"], ["/deny"]])
    # Pressing a button we offered reaches the dialogue as that intent...
    await gw.telegram_update(make_telegram_update(kind="callback", callback_data="/deny", chat_id=CHAT))
    # ...a forged one does not.
    await gw.telegram_update(make_telegram_update(kind="callback", callback_data="/restart", chat_id=CHAT))
    received = [text for _s, text in gw.rasa.received]
    assert received[1] == "/deny"
    assert "/restart" not in received


async def test_telegram_wrong_secret_is_refused_and_nothing_stored(gw: Gateway) -> None:
    response = await gw.telegram_update(make_telegram_update(text="hello"), secret="wrong")
    assert response.status_code == 403
    assert gw.rows(InboundMessage) == []


async def test_telegram_never_stores_names_or_chat_ids(gw: Gateway) -> None:
    await gw.telegram_update(make_telegram_update(text="thieves at the depot", chat_id=CHAT))
    with gw.app.state.db.engine.connect() as conn:
        dump = ""
        for table in ("inbound_message", "reporter", "vault_entry"):
            dump += repr(conn.exec_driver_sql(f"SELECT * FROM {table}").fetchall())  # noqa: S608
    for value in (str(CHAT), "Amina", "Odhiambo", "amina_o"):
        assert value not in dump


async def test_delete_command_erases_the_reporter_and_confirms(gw: Gateway) -> None:
    await gw.telegram_update(make_telegram_update(text="bonjour", chat_id=CHAT))
    assert gw.rows(VaultEntry) and gw.rows(Reporter)
    await gw.telegram_update(make_telegram_update(text="/delete", chat_id=CHAT))
    # In French, the conversation's language.
    assert gw.telegram.sent[-1]["text"] == GatewayMessages(["fr"], "fr").get("fr", "forgotten")
    assert gw.rows(VaultEntry) == [] and gw.rows(Reporter) == []
    assert len(gw.rasa.received) == 1  # the command never reached the dialogue


async def test_sms_stop_keyword_erases_the_reporter(gw: Gateway) -> None:
    from tests.conftest import make_twilio_form, post_sms

    await post_sms(gw.client, make_twilio_form(body="hello there", from_="+254700000801"))
    await gw.app.state.pipeline.idle()
    await post_sms(gw.client, make_twilio_form(body="STOP", from_="+254700000801"))
    await gw.app.state.pipeline.idle()
    assert gw.rows(VaultEntry) == []
    assert "deleted" in gw.twilio.bodies_to("+254700000801")[-1]


async def test_photo_is_scrubbed_stored_and_joins_the_tip(gw: Gateway) -> None:
    gw.telegram.add_file("photo-1", jpeg_with_gps())
    await gw.telegram_update(make_telegram_update(
        kind="photo", file_id="photo-1", caption="ils cachent des armes ici", chat_id=CHAT))
    await gw.telegram_update(make_telegram_update(kind="location", latitude=-1.29, longitude=36.82,
                                                  chat_id=CHAT))
    [attachment] = gw.rows(Attachment)
    assert attachment.metadata_removed and attachment.tip_id is None
    assert not Image.open(io.BytesIO(attachment.data)).getexif()
    assert "ils cachent des armes ici" in [text for _s, text in gw.rasa.received]
    assert "📍 -1.29000, 36.82000" in [text for _s, text in gw.rasa.received]

    reporter_id = attachment.reporter_id
    response = await gw.client.post("/internal/tips", headers={
        "Authorization": "Bearer actions-token-for-tests"}, json={
        "reporter_id": reporter_id, "submission_key": "s" * 64, "what": "armes cachées",
        "where_text": "ici", "when_text": "maintenant", "danger_now": False,
        "language": "fr", "channel": "telegram"})
    assert response.status_code == 200
    [tip] = gw.rows(Tip)
    assert (tip.latitude, tip.longitude) == (-1.29, 36.82)
    assert [a.tip_id for a in gw.rows(Attachment)] == [tip.id]
    assert gw.app.state.db.run_sync(lambda s: repo.list_attachments(s, tip_id=tip.id))


async def test_edits_stickers_and_oversized_files_get_a_polite_answer_only(gw: Gateway) -> None:
    await gw.telegram_update(make_telegram_update(text="hola, buenas", chat_id=CHAT, language_code="es"))
    before = len(gw.rasa.received)
    await gw.telegram_update(make_telegram_update(kind="edited", text="corrected text", chat_id=CHAT))
    await gw.telegram_update(make_telegram_update(kind="sticker", chat_id=CHAT))
    await gw.telegram_update(make_telegram_update(kind="document", file_size=50 * 1024 * 1024,
                                                  chat_id=CHAT))
    assert len(gw.rasa.received) == before  # none of them is a dialogue turn, none a tip
    answers = [str(m["text"]) for m in gw.telegram.sent[-3:]]
    assert len(answers) == 3 and all(answers)
    assert gw.rows(Attachment) == [] and gw.rows(Tip) == []


async def test_language_menu_sets_the_conversation_language(gw: Gateway) -> None:
    await gw.telegram_update(make_telegram_update(text="hello, I need to report something", chat_id=CHAT,
                                                  language_code="en"))
    await gw.telegram_update(make_telegram_update(text="/language", chat_id=CHAT))
    menu = gw.telegram.sent[-1]
    titles = [b["text"] for row in menu["reply_markup"]["inline_keyboard"] for b in row]  # type: ignore[index]
    assert "Kiswahili" in titles and "Français" in titles and "العربية" in titles
    await gw.telegram_update(make_telegram_update(kind="callback", callback_data="lang:sw", chat_id=CHAT))
    assert gw.rows(Reporter)[0].language == "sw"
    # Confirmed in the newly chosen language.
    assert gw.telegram.sent[-1]["text"] == GatewayMessages(["sw"], "sw").get("sw", "language_set")


async def test_whatsapp_text_is_answered_inside_the_window(gw: Gateway) -> None:
    response = await gw.whatsapp(make_whatsapp_form(body="there is a fight at the bar",
                                                    from_="whatsapp:+254700000901"))
    assert response.status_code == 200
    sent = [f for f in gw.twilio.forms if f.get("To") == "whatsapp:+254700000901"]
    assert len(sent) == 1 and sent[0]["Body"] == "echo: there is a fight at the bar"
    assert "ContentSid" not in sent[0]
