"""The contract every channel adapter keeps, checked over all of them at the wire.

Bad signature/secret -> WebhookAuthError from receive(); a text -> exactly one TEXT message with
nothing identifying in its repr; unsupported content -> UNSUPPORTED; a short reply -> exactly
one provider call; 429 -> retried and delivered once; read timeout -> never resent.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from channels.base import (
    ChannelAdapter,
    IncomingMessage,
    MessageKind,
    Reply,
    ReplyAddress,
    SendContext,
    SendUncertainError,
    WebhookAuthError,
    WebhookRequest,
)
from channels.telegram import SECRET_HEADER, TelegramAdapter
from channels.twilio_sms import TwilioSmsAdapter
from channels.whatsapp import TwilioWhatsAppAdapter
from tests.conftest import PUBLIC_BASE, TWILIO_TOKEN, make_twilio_form, twilio_signature
from tests.fakes import (
    TELEGRAM_PERSON,
    TELEGRAM_TOKEN,
    FakeTelegramApi,
    FakeTwilioMessaging,
    Router,
    make_telegram_update,
    make_whatsapp_form,
)

ACCOUNT = "AC" + "0" * 32
TELEGRAM_SECRET = "contract-secret"
PHONE = "+254711222333"
CHAT_ID = 987_654_321
# Everything a provider tells us about who wrote: none of it may appear in what we keep.
IDENTIFYING = (PHONE.lstrip("+"), str(CHAT_ID), *TELEGRAM_PERSON.values(), "Amina Odhiambo",
               "NAIROBI", "00100")


@dataclass
class Channel:
    """One adapter with its fake provider and ways to make its webhooks."""

    adapter: ChannelAdapter
    address: ReplyAddress
    text: Callable[[str], WebhookRequest]
    forged: Callable[[str], WebhookRequest]
    unsupported: Callable[[], WebhookRequest]
    provider_calls: Callable[[], int]
    fail_next: Callable[[int | type[httpx.TransportError]], None]


def _twilio_request(path: str, form: dict[str, str], token: str = TWILIO_TOKEN) -> WebhookRequest:
    signature = twilio_signature(form, f"{PUBLIC_BASE}{path}", token)
    return WebhookRequest(path=path, headers={"x-twilio-signature": signature}, body=b"",
                          form=form)


def _telegram_request(update: dict[str, object], secret: str) -> WebhookRequest:
    return WebhookRequest(path="/webhooks/telegram", headers={SECRET_HEADER: secret},
                          body=json.dumps(update).encode())


async def _no_wait(seconds: float) -> None:
    return None


def _twilio_failure(fake: FakeTwilioMessaging) -> Callable[[int | type[httpx.TransportError]], None]:
    def fail(outcome: int | type[httpx.TransportError]) -> None:
        if isinstance(outcome, int):
            fake.fail_with.append(outcome)
        else:
            fake.raise_on_call.append(outcome)

    return fail


@pytest.fixture(params=["sms", "whatsapp", "telegram"])
async def channel(request: pytest.FixtureRequest) -> AsyncIterator[Channel]:
    twilio = FakeTwilioMessaging()
    telegram = FakeTelegramApi()
    router = Router({"api.twilio.com": twilio, "api.telegram.org": telegram})
    async with httpx.AsyncClient(transport=router) as http:
        if request.param == "sms":
            sms = TwilioSmsAdapter(account_sid=ACCOUNT, auth_token=TWILIO_TOKEN,
                                   sms_from="+15550000000", public_base_url=PUBLIC_BASE,
                                   http=http, retry_sleep=_no_wait)
            yield Channel(
                adapter=sms,
                address=ReplyAddress("sms", PHONE),
                text=lambda body: _twilio_request("/webhooks/sms",
                                                  make_twilio_form(body=body, from_=PHONE)),
                forged=lambda body: _twilio_request("/webhooks/sms",
                                                    make_twilio_form(body=body, from_=PHONE),
                                                    token="0" * 32),
                # An empty SMS (or an MMS whose media Twilio dropped): nothing we can read.
                unsupported=lambda: _twilio_request("/webhooks/sms",
                                                    make_twilio_form(body="", from_=PHONE)),
                provider_calls=lambda: twilio.calls,
                fail_next=_twilio_failure(twilio),
            )
        elif request.param == "whatsapp":
            sender = f"whatsapp:{PHONE}"
            whatsapp = TwilioWhatsAppAdapter(
                account_sid=ACCOUNT, auth_token=TWILIO_TOKEN, sender="whatsapp:+14155238886",
                public_base_url=PUBLIC_BASE, http=http, template_content_sid="HX" + "b" * 32,
                retry_sleep=_no_wait)
            yield Channel(
                adapter=whatsapp,
                address=ReplyAddress("whatsapp", sender),
                text=lambda body: _twilio_request("/webhooks/whatsapp",
                                                  make_whatsapp_form(body=body, from_=sender)),
                forged=lambda body: _twilio_request("/webhooks/whatsapp",
                                                    make_whatsapp_form(body=body, from_=sender),
                                                    token="0" * 32),
                unsupported=lambda: _twilio_request(
                    "/webhooks/whatsapp",
                    make_whatsapp_form(body="", from_=sender, MessageType="sticker")),
                provider_calls=lambda: twilio.calls,
                fail_next=_twilio_failure(twilio),
            )
        else:
            bot = TelegramAdapter(bot_token=TELEGRAM_TOKEN, webhook_secret=TELEGRAM_SECRET,
                                  http=http, retry_sleep=_no_wait)

            def fail(outcome: int | type[httpx.TransportError]) -> None:
                telegram.fail("sendMessage", outcome)

            yield Channel(
                adapter=bot,
                address=ReplyAddress("telegram", str(CHAT_ID)),
                text=lambda body: _telegram_request(
                    make_telegram_update(text=body, chat_id=CHAT_ID), TELEGRAM_SECRET),
                forged=lambda body: _telegram_request(
                    make_telegram_update(text=body, chat_id=CHAT_ID), "guessed-secret"),
                unsupported=lambda: _telegram_request(
                    make_telegram_update(kind="sticker", chat_id=CHAT_ID), TELEGRAM_SECRET),
                provider_calls=lambda: len(telegram.calls),
                fail_next=fail,
            )


# Inside WhatsApp's 24-hour window, so every channel sends a plain text message.
CONTEXT = SendContext(language="en", last_inbound_at=datetime.now(UTC) - timedelta(minutes=5))


def _assert_anonymous(message: IncomingMessage) -> None:
    dump = repr(message) + repr(message.reply_address) + str(message.reply_address)
    for value in IDENTIFYING:
        assert value not in dump, value


def test_forged_webhook_is_refused(channel: Channel) -> None:
    with pytest.raises(WebhookAuthError):
        channel.adapter.receive(channel.forged("hello"))


def test_missing_signature_is_refused(channel: Channel) -> None:
    genuine = channel.text("hello")
    with pytest.raises(WebhookAuthError):
        channel.adapter.receive(WebhookRequest(path=genuine.path, headers={}, body=genuine.body,
                                               form=genuine.form))


def test_a_text_is_one_anonymous_message(channel: Channel) -> None:
    messages = channel.adapter.receive(channel.text("two men with a red car"))
    assert len(messages) == 1
    [message] = messages
    assert message.kind is MessageKind.TEXT
    assert message.channel == channel.adapter.name
    assert message.text == "two men with a red car"
    assert message.reply_address == channel.address
    assert message.provider_message_id
    _assert_anonymous(message)


def test_unsupported_content(channel: Channel) -> None:
    [message] = channel.adapter.receive(channel.unsupported())
    assert message.kind is MessageKind.UNSUPPORTED
    _assert_anonymous(message)


async def test_a_short_reply_is_one_provider_call(channel: Channel) -> None:
    await channel.adapter.send(channel.address, Reply("Thank you, we received it."), CONTEXT)
    assert channel.provider_calls() == 1


async def test_429_is_retried_and_delivered_once(channel: Channel) -> None:
    channel.fail_next(429)
    await channel.adapter.send(channel.address, Reply("Thank you."), CONTEXT)
    assert channel.provider_calls() == 2


async def test_read_timeout_is_never_resent(channel: Channel) -> None:
    channel.fail_next(httpx.ReadTimeout)
    with pytest.raises(SendUncertainError):
        await channel.adapter.send(channel.address, Reply("Thank you."), CONTEXT)
    assert channel.provider_calls() == 1


async def test_refused_connection_is_retried(channel: Channel) -> None:
    channel.fail_next(httpx.ConnectError)
    await channel.adapter.send(channel.address, Reply("Thank you."), CONTEXT)
    assert channel.provider_calls() == 2
