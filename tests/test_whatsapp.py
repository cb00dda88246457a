"""WhatsApp through Twilio at the wire: signed forms in, the fake Messages API behind httpx."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from channels.base import (
    Choice,
    Command,
    MessageKind,
    Reply,
    ReplyAddress,
    SendContext,
    SendError,
    SendUncertainError,
    WebhookAuthError,
    WebhookRequest,
)
from channels.media import MediaTooLargeError
from channels.twilio_sms import TwilioSmsAdapter
from channels.whatsapp import TwilioWhatsAppAdapter
from config.messages import GatewayMessages
from tests.conftest import PUBLIC_BASE, TWILIO_TOKEN, twilio_signature
from tests.fakes import (
    TWILIO_MEDIA_CDN,
    FakeTwilioMedia,
    FakeTwilioMessaging,
    Router,
    make_whatsapp_form,
)

ACCOUNT = "AC" + "0" * 32
WA_URL = f"{PUBLIC_BASE}/webhooks/whatsapp"
NUMBER = "whatsapp:+254700000042"
TEMPLATE = "HX" + "a" * 32
NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
KEYWORDS = GatewayMessages(["en", "fr", "sw"], "en").keywords()


@pytest.fixture
def media() -> FakeTwilioMedia:
    return FakeTwilioMedia(account_sid=ACCOUNT, auth_token=TWILIO_TOKEN)


@pytest.fixture
def twilio(media: FakeTwilioMedia) -> FakeTwilioMessaging:
    return FakeTwilioMessaging(media=media)


@pytest.fixture
async def http(twilio: FakeTwilioMessaging, media: FakeTwilioMedia
               ) -> AsyncIterator[httpx.AsyncClient]:
    router = Router({"api.twilio.com": twilio, TWILIO_MEDIA_CDN: media})
    async with httpx.AsyncClient(transport=router) as client:
        yield client


@pytest.fixture
def waits() -> list[float]:
    return []


def make_adapter(http: httpx.AsyncClient, waits: list[float], **overrides: object
                 ) -> TwilioWhatsAppAdapter:
    async def no_wait(seconds: float) -> None:
        waits.append(seconds)

    options: dict[str, object] = {
        "account_sid": ACCOUNT, "auth_token": TWILIO_TOKEN, "sender": "+14155238886",
        "public_base_url": PUBLIC_BASE, "http": http, "template_content_sid": TEMPLATE,
        "keywords": KEYWORDS, "max_media_bytes": 1000, "clock": lambda: NOW,
        "retry_sleep": no_wait,
    }
    options.update(overrides)
    return TwilioWhatsAppAdapter(**options)  # type: ignore[arg-type]


@pytest.fixture
def adapter(http: httpx.AsyncClient, waits: list[float]) -> TwilioWhatsAppAdapter:
    return make_adapter(http, waits)


def signed(form: dict[str, str], *, url: str = WA_URL, token: str = TWILIO_TOKEN) -> WebhookRequest:
    return WebhookRequest(path="/webhooks/whatsapp",
                          headers={"x-twilio-signature": twilio_signature(form, url, token)},
                          body=b"", form=form)


ADDRESS = ReplyAddress("whatsapp", NUMBER)
RECENT = SendContext(language="en", last_inbound_at=NOW - timedelta(hours=2))
STALE = SendContext(language="en", last_inbound_at=NOW - timedelta(hours=25))


# --- verify -------------------------------------------------------------------------------


def test_signature_is_checked_against_the_public_url(adapter: TwilioWhatsAppAdapter) -> None:
    form = make_whatsapp_form()
    assert len(adapter.receive(signed(form))) == 1
    for request in (
        signed(form, url=f"{PUBLIC_BASE}/webhooks/sms"),
        signed(form, token="0" * 32),
        WebhookRequest(path="/webhooks/whatsapp", headers={}, body=b"", form=form),
    ):
        with pytest.raises(WebhookAuthError):
            adapter.receive(request)
    tampered = signed(form)
    with pytest.raises(WebhookAuthError):
        adapter.receive(WebhookRequest(path=tampered.path, headers=tampered.headers, body=b"",
                                       form={**form, "Body": "changed"}))


# --- parse --------------------------------------------------------------------------------


def test_text_drops_profile_name_and_wa_id(adapter: TwilioWhatsAppAdapter) -> None:
    [message] = adapter.receive(signed(make_whatsapp_form(body=" two men, a red car ")))
    assert message.kind is MessageKind.TEXT
    assert message.text == "two men, a red car"
    assert message.reply_address == ADDRESS  # the whole whatsapp:+... string
    dump = repr(message)
    for value in ("254700000042", "Amina", "Odhiambo"):
        assert value not in dump


def test_media_becomes_refs(adapter: TwilioWhatsAppAdapter, media: FakeTwilioMedia) -> None:
    url = media.add(b"jpeg")
    form = make_whatsapp_form(body="the car", media=[(url, "image/jpeg")])
    [message] = adapter.receive(signed(form))
    assert message.kind is MessageKind.MEDIA
    assert message.text == "the car"
    [ref] = message.attachments
    assert (ref.kind, ref.content_type, ref.provider_ref, ref.size) == (
        "image", "image/jpeg", url, None)
    assert url not in repr(message)


def test_location(adapter: TwilioWhatsAppAdapter) -> None:
    form = make_whatsapp_form(body="", Latitude="-1.2921", Longitude="36.8219",
                              Address="Kenyatta Avenue", Label="Home of Amina",
                              MessageType="location")
    [message] = adapter.receive(signed(form))
    assert message.kind is MessageKind.LOCATION
    assert message.location == (-1.2921, 36.8219)
    assert "Kenyatta" not in repr(message) and message.text == ""


def test_quick_reply_button_is_a_choice(adapter: TwilioWhatsAppAdapter) -> None:
    form = make_whatsapp_form(body="Yes", ButtonText="Yes", ButtonPayload="danger-yes",
                              MessageType="button")
    [message] = adapter.receive(signed(form))
    assert (message.kind, message.choice, message.text) == (MessageKind.TEXT, "danger-yes", "Yes")
    form = make_whatsapp_form(body="Kiswahili", ListId="lang-sw", ListTitle="Kiswahili",
                              MessageType="interactive")
    [picked] = adapter.receive(signed(form))
    assert (picked.kind, picked.choice) == (MessageKind.TEXT, "lang-sw")


@pytest.mark.parametrize(("body", "command"), [("STOP", Command.DELETE), ("aide", Command.HELP),
                                               ("Lugha", Command.LANGUAGE)])
def test_keywords(adapter: TwilioWhatsAppAdapter, body: str, command: Command) -> None:
    [message] = adapter.receive(signed(make_whatsapp_form(body=body)))
    assert (message.kind, message.command) == (MessageKind.COMMAND, command)


def test_a_sentence_with_stop_is_text(adapter: TwilioWhatsAppAdapter) -> None:
    [message] = adapter.receive(signed(make_whatsapp_form(body="stop them please")))
    assert message.kind is MessageKind.TEXT


def test_contact_cards_and_stickers_are_unsupported(
    adapter: TwilioWhatsAppAdapter, media: FakeTwilioMedia
) -> None:
    card = make_whatsapp_form(body="", media=[(media.add(b"BEGIN:VCARD"), "text/vcard")])
    sticker = make_whatsapp_form(body="", media=[(media.add(b"RIFF"), "image/webp")],
                                 MessageType="sticker")
    for form in (card, sticker):
        [message] = adapter.receive(signed(form))
        assert message.kind is MessageKind.UNSUPPORTED
        assert message.attachments == ()


def test_not_a_whatsapp_sender_is_ignored(adapter: TwilioWhatsAppAdapter) -> None:
    assert adapter.receive(signed(make_whatsapp_form(from_="+254700000042"))) == []


# --- send: the 24-hour window -------------------------------------------------------------


async def test_inside_the_window_a_free_form_body(
    adapter: TwilioWhatsAppAdapter, twilio: FakeTwilioMessaging
) -> None:
    reply = Reply("Is anyone in danger now?", (Choice("Yes", "y"), Choice("No", "n")))
    await adapter.send(ADDRESS, reply, RECENT)
    [form] = twilio.forms
    assert form["Body"] == "Is anyone in danger now?\n1. Yes\n2. No"
    assert form["To"] == NUMBER and form["From"] == "whatsapp:+14155238886"
    assert "ContentSid" not in form


async def test_outside_the_window_the_template_and_no_body(
    adapter: TwilioWhatsAppAdapter, twilio: FakeTwilioMessaging
) -> None:
    await adapter.send(ADDRESS, Reply("An officer has a question:\nwhich road?"), STALE)
    [form] = twilio.forms
    assert "Body" not in form
    assert form["ContentSid"] == TEMPLATE
    assert form["ContentVariables"] == '{"1": "An officer has a question: which road?"}'


async def test_unknown_last_message_time_means_the_template(
    adapter: TwilioWhatsAppAdapter, twilio: FakeTwilioMessaging
) -> None:
    await adapter.send(ADDRESS, Reply("hello"), None)
    await adapter.send(ADDRESS, Reply("hello"), SendContext(language="en"))
    assert all("Body" not in f and f["ContentSid"] == TEMPLATE for f in twilio.forms)


async def test_the_window_closes_a_little_early(
    adapter: TwilioWhatsAppAdapter, twilio: FakeTwilioMessaging
) -> None:
    almost = SendContext(last_inbound_at=NOW - timedelta(hours=23, minutes=55))
    await adapter.send(ADDRESS, Reply("hello"), almost)
    assert "Body" not in twilio.forms[0]


async def test_naive_times_from_sqlite_are_utc(
    adapter: TwilioWhatsAppAdapter, twilio: FakeTwilioMessaging
) -> None:
    naive = SendContext(last_inbound_at=(NOW - timedelta(hours=1)).replace(tzinfo=None))
    await adapter.send(ADDRESS, Reply("hello"), naive)
    assert twilio.forms[0]["Body"] == "hello"


async def test_template_without_variables(
    http: httpx.AsyncClient, waits: list[float], twilio: FakeTwilioMessaging
) -> None:
    adapter = make_adapter(http, waits, template_text_variable=None)
    await adapter.send(ADDRESS, Reply("a question"), STALE)
    assert "ContentVariables" not in twilio.forms[0] and "Body" not in twilio.forms[0]


async def test_window_closed_and_no_template_is_a_clear_error(
    http: httpx.AsyncClient, waits: list[float], twilio: FakeTwilioMessaging
) -> None:
    adapter = make_adapter(http, waits, template_content_sid="")
    with pytest.raises(SendError, match="template"):
        await adapter.send(ADDRESS, Reply("hello"), STALE)
    assert twilio.calls == 0


async def test_long_bodies_are_split_at_1600(
    adapter: TwilioWhatsAppAdapter, twilio: FakeTwilioMessaging
) -> None:
    text = " ".join(f"Sentence {n} of the answer." for n in range(150))
    await adapter.send(ADDRESS, Reply(text), RECENT)
    assert len(twilio.forms) > 1 and all(len(f["Body"]) <= 1600 for f in twilio.forms)


async def test_429_then_success_delivers_once(
    adapter: TwilioWhatsAppAdapter, twilio: FakeTwilioMessaging, waits: list[float]
) -> None:
    twilio.fail_with.append(429)
    await adapter.send(ADDRESS, Reply("hello"), RECENT)
    assert twilio.calls == 2 and len(twilio.forms) == 1 and len(waits) == 1


async def test_read_timeout_is_never_resent(
    adapter: TwilioWhatsAppAdapter, twilio: FakeTwilioMessaging
) -> None:
    twilio.raise_on_call.append(httpx.ReadTimeout)
    with pytest.raises(SendUncertainError):
        await adapter.send(ADDRESS, Reply("hello"), RECENT)
    assert twilio.calls == 1


# --- media --------------------------------------------------------------------------------


async def test_fetch_media_with_basic_auth_not_leaked_to_the_cdn(
    adapter: TwilioWhatsAppAdapter, media: FakeTwilioMedia
) -> None:
    url = media.add(b"\xff\xd8\xff" + b"x" * 100)
    [message] = adapter.receive(signed(make_whatsapp_form(media=[(url, "image/jpeg")])))
    assert await adapter.fetch_media(message.attachments[0]) == b"\xff\xd8\xff" + b"x" * 100
    assert media.requests == 2  # Twilio's URL, then the CDN it redirects to
    assert not media.cdn_saw_authorization


async def test_fetch_media_enforces_the_limit(
    adapter: TwilioWhatsAppAdapter, media: FakeTwilioMedia
) -> None:
    url = media.add(b"x" * 1001)
    [message] = adapter.receive(signed(make_whatsapp_form(media=[(url, "video/mp4")])))
    with pytest.raises(MediaTooLargeError):
        await adapter.fetch_media(message.attachments[0])


def test_only_https_media_urls_are_kept(adapter: TwilioWhatsAppAdapter) -> None:
    form = make_whatsapp_form(media=[("http://evil.test/x", "image/jpeg")])
    [message] = adapter.receive(signed(form))
    assert message.attachments == ()


# --- SMS/MMS shares the same helpers ------------------------------------------------------


async def test_mms_media_and_sms_keywords(http: httpx.AsyncClient, media: FakeTwilioMedia) -> None:
    from tests.conftest import make_twilio_form

    sms = TwilioSmsAdapter(account_sid=ACCOUNT, auth_token=TWILIO_TOKEN, sms_from="+15550000000",
                           public_base_url=PUBLIC_BASE, http=http, keywords=KEYWORDS,
                           max_media_bytes=1000)
    url = media.add(b"GIF89a")

    def sms_request(form: dict[str, str]) -> WebhookRequest:
        return WebhookRequest(path="/webhooks/sms", body=b"", form=form,
                              headers={"x-twilio-signature": twilio_signature(form)})

    [mms] = sms.receive(sms_request(make_twilio_form(body="look", NumMedia="1", MediaUrl0=url,
                                                     MediaContentType0="image/gif")))
    assert mms.kind is MessageKind.MEDIA and mms.text == "look"
    assert await sms.fetch_media(mms.attachments[0]) == b"GIF89a"
    [stop] = sms.receive(sms_request(make_twilio_form(body="Stop")))
    assert (stop.kind, stop.command) == (MessageKind.COMMAND, Command.DELETE)
    [start] = sms.receive(sms_request(make_twilio_form(body="START")))
    assert start.command is Command.RESUME
    [arret] = sms.receive(sms_request(make_twilio_form(body="Arrêt")))
    assert arret.command is Command.DELETE
    [sentence] = sms.receive(sms_request(make_twilio_form(body="they said stop")))
    assert sentence.kind is MessageKind.TEXT
