"""Telegram adapter at the wire: real Update JSON in, a fake Bot API behind the httpx client."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import httpx
import pytest

from channels.base import (
    Choice,
    Command,
    IncomingMessage,
    MessageKind,
    Reply,
    ReplyAddress,
    RetryableSendError,
    SendError,
    SendUncertainError,
    WebhookAuthError,
    WebhookRequest,
)
from channels.media import MediaTooLargeError
from channels.telegram import SECRET_HEADER, TelegramAdapter
from tests.fakes import TELEGRAM_PERSON, TELEGRAM_TOKEN, FakeTelegramApi, Router, make_telegram_update

SECRET = "webhook-secret-for-tests"
CHAT = 555_000_111


@pytest.fixture
def fake_telegram() -> FakeTelegramApi:
    return FakeTelegramApi()


@pytest.fixture
async def http(fake_telegram: FakeTelegramApi) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=Router({"api.telegram.org": fake_telegram})) as client:
        yield client


@pytest.fixture
def waits() -> list[float]:
    """What send_with_retry asked to wait, recorded instead of waited."""
    return []


@pytest.fixture
def adapter(http: httpx.AsyncClient, waits: list[float]) -> TelegramAdapter:
    async def no_wait(seconds: float) -> None:
        waits.append(seconds)

    return TelegramAdapter(bot_token=TELEGRAM_TOKEN, webhook_secret=SECRET, http=http,
                           max_media_bytes=1_000_000, retry_sleep=no_wait)


def webhook(update: dict[str, object], secret: str | None = SECRET) -> WebhookRequest:
    headers = {SECRET_HEADER: secret} if secret is not None else {}
    return WebhookRequest(path="/webhooks/telegram", headers=headers,
                          body=json.dumps(update).encode())


def receive_one(adapter: TelegramAdapter, **update: object) -> IncomingMessage:
    messages = adapter.receive(webhook(make_telegram_update(**update)))  # type: ignore[arg-type]
    assert len(messages) == 1
    return messages[0]


ADDRESS = ReplyAddress("telegram", str(CHAT))


# --- verify -------------------------------------------------------------------------------


@pytest.mark.parametrize("secret", [None, "", "wrong-secret", SECRET + "x", SECRET[:-1]])
def test_missing_or_wrong_secret_is_refused(adapter: TelegramAdapter, secret: str | None) -> None:
    with pytest.raises(WebhookAuthError):
        adapter.receive(webhook(make_telegram_update(), secret=secret))


async def test_without_a_webhook_secret_no_webhook_is_ever_accepted(
    http: httpx.AsyncClient,
) -> None:
    polling_only = TelegramAdapter(bot_token=TELEGRAM_TOKEN, webhook_secret="", http=http)
    for secret in (None, ""):
        with pytest.raises(WebhookAuthError):
            polling_only.receive(webhook(make_telegram_update(), secret=secret))


# --- parse --------------------------------------------------------------------------------


def test_text_keeps_only_what_the_pipeline_needs(adapter: TelegramAdapter) -> None:
    update = make_telegram_update(text="  Men with guns at the market  ", update_id=424242,
                                  language_code="pt-br")
    [message] = adapter.receive(webhook(update))
    assert message.kind is MessageKind.TEXT
    assert message.text == "Men with guns at the market"
    assert message.provider_message_id == "424242"
    assert message.language_hint == "pt"
    assert message.reply_address == ADDRESS
    dump = repr(message) + str(message.reply_address)
    for value in (str(CHAT), *TELEGRAM_PERSON.values()):
        assert value not in dump
    assert not {"Amina", "amina_o"} & set(str(vars(message)).split("'"))


def test_language_hint_absent_or_odd(adapter: TelegramAdapter) -> None:
    assert receive_one(adapter, language_code=None).language_hint is None
    assert receive_one(adapter, language_code="x").language_hint is None


@pytest.mark.parametrize(
    ("text", "command"),
    [("/start", Command.START), ("/start@tipline_bot", Command.START),
     ("/start abc123", Command.START), ("/language", Command.LANGUAGE),
     ("/help", Command.HELP), ("/delete", Command.DELETE), ("/DELETE@TipLine_Bot", Command.DELETE)],
)
def test_commands(adapter: TelegramAdapter, text: str, command: Command) -> None:
    message = receive_one(adapter, text=text)
    assert message.kind is MessageKind.COMMAND
    assert message.command is command


def test_unknown_slash_text_is_text(adapter: TelegramAdapter) -> None:
    # The pipeline neutralizes a leading "/" before Rasa sees it.
    assert receive_one(adapter, text="/restart").kind is MessageKind.TEXT


def test_location(adapter: TelegramAdapter) -> None:
    message = receive_one(adapter, kind="location", latitude=-1.5, longitude=36.25)
    assert message.kind is MessageKind.LOCATION
    assert message.location == (-1.5, 36.25)
    assert "36.25" not in repr(message)


def test_photo_takes_the_largest_size_and_the_caption(adapter: TelegramAdapter) -> None:
    message = receive_one(adapter, kind="photo", file_id="BIG", file_size=80_000,
                          caption="the car")
    assert message.kind is MessageKind.MEDIA
    assert message.text == "the car"
    [ref] = message.attachments
    assert (ref.kind, ref.content_type, ref.provider_ref, ref.size) == (
        "image", "image/jpeg", "BIG", 80_000)


@pytest.mark.parametrize(
    ("kind", "mime", "expected"),
    [("voice", "audio/ogg", ("audio", "audio/ogg")),
     ("document", "application/pdf", ("document", "application/pdf")),
     ("document", "image/jpeg", ("image", "image/jpeg"))],
)
def test_voice_and_documents(adapter: TelegramAdapter, kind: str, mime: str,
                             expected: tuple[str, str]) -> None:
    message = receive_one(adapter, kind=kind, mime_type=mime)
    assert message.kind is MessageKind.MEDIA
    assert (message.attachments[0].kind, message.attachments[0].content_type) == expected


def test_oversized_media_is_too_large(adapter: TelegramAdapter) -> None:
    message = receive_one(adapter, kind="document", file_size=1_000_001)
    assert message.kind is MessageKind.TOO_LARGE
    assert message.attachments == ()


@pytest.mark.parametrize("kind", ["sticker", "poll", "contact"])
def test_unsupported_content(adapter: TelegramAdapter, kind: str) -> None:
    message = receive_one(adapter, kind=kind)
    assert message.kind is MessageKind.UNSUPPORTED
    assert "254722000111" not in repr(message) and "Juma" not in repr(message)


def test_dice_is_unsupported(adapter: TelegramAdapter) -> None:
    update = make_telegram_update()
    message = update["message"]
    assert isinstance(message, dict)
    del message["text"]
    message["dice"] = {"emoji": "🎲", "value": 4}
    assert [m.kind for m in adapter.receive(webhook(update))] == [MessageKind.UNSUPPORTED]


def test_an_update_the_library_cannot_read_still_gets_an_answer(adapter: TelegramAdapter) -> None:
    update = make_telegram_update(kind="poll")
    message = update["message"]
    assert isinstance(message, dict) and isinstance(message["poll"], dict)
    del message["poll"]["allows_revoting"]  # python-telegram-bot 22 refuses this shape
    [incoming] = adapter.receive(webhook(update))
    assert incoming.kind is MessageKind.UNSUPPORTED
    assert incoming.reply_address == ADDRESS


def test_edits_are_never_a_second_tip(adapter: TelegramAdapter) -> None:
    message = receive_one(adapter, kind="edited", text="actually it was a blue car")
    assert message.kind is MessageKind.EDITED
    assert message.text == ""


def test_live_location_updates_are_ignored(adapter: TelegramAdapter) -> None:
    update = make_telegram_update(kind="location")
    update["edited_message"] = update.pop("message")
    assert adapter.receive(webhook(update)) == []


@pytest.mark.parametrize("chat_type", ["group", "supergroup", "channel"])
def test_group_chats_are_ignored(adapter: TelegramAdapter, chat_type: str) -> None:
    assert adapter.receive(webhook(make_telegram_update(chat_type=chat_type))) == []


def test_channel_posts_are_ignored(adapter: TelegramAdapter) -> None:
    update = make_telegram_update(chat_type="channel")
    update["edited_channel_post"] = update.pop("message")
    assert adapter.receive(webhook(update)) == []


def test_button_press_is_a_choice(adapter: TelegramAdapter) -> None:
    message = receive_one(adapter, kind="callback", callback_data="danger-yes",
                          buttons=[("Yes, now", "danger-yes"), ("No", "danger-no")])
    assert message.kind is MessageKind.TEXT
    assert message.choice == "danger-yes"
    assert message.text == "Yes, now"
    assert message.language_hint == "fr"


def test_garbage_is_ignored(adapter: TelegramAdapter) -> None:
    for body in (b"not json", b"[]", b'{"no_update_id": 1}'):
        request = WebhookRequest(path="/webhooks/telegram", headers={SECRET_HEADER: SECRET},
                                 body=body)
        assert adapter.receive(request) == []


# --- send ---------------------------------------------------------------------------------


async def test_send_plain_text(adapter: TelegramAdapter, fake_telegram: FakeTelegramApi) -> None:
    await adapter.send(ADDRESS, Reply("Thank you."))
    assert len(fake_telegram.calls) == 1
    [sent] = fake_telegram.sent
    assert sent["chat_id"] == str(CHAT) and sent["text"] == "Thank you."
    assert "reply_markup" not in sent and "parse_mode" not in sent


async def test_choices_become_an_inline_keyboard(
    adapter: TelegramAdapter, fake_telegram: FakeTelegramApi
) -> None:
    reply = Reply("Is anyone in danger now?", (Choice("Yes", "danger-yes"), Choice("No", "danger-no")))
    await adapter.send(ADDRESS, reply)
    [sent] = fake_telegram.sent
    assert sent["text"] == "Is anyone in danger now?"
    assert sent["reply_markup"] == {"inline_keyboard": [
        [{"text": "Yes", "callback_data": "danger-yes"}],
        [{"text": "No", "callback_data": "danger-no"}],
    ]}


async def test_choice_payloads_over_64_bytes_degrade_to_numbered_text(
    adapter: TelegramAdapter, fake_telegram: FakeTelegramApi
) -> None:
    reply = Reply("Which?", (Choice("A", "a" * 65), Choice("B", "b")))
    await adapter.send(ADDRESS, reply)
    [sent] = fake_telegram.sent
    assert sent["text"] == "Which?\n1. A\n2. B"
    assert "reply_markup" not in sent


async def test_long_text_is_split_and_the_keyboard_goes_last(
    adapter: TelegramAdapter, fake_telegram: FakeTelegramApi
) -> None:
    text = " ".join(f"Sentence {n} of a long answer." for n in range(400))
    await adapter.send(ADDRESS, Reply(text, (Choice("OK", "ok"),)))
    sent = fake_telegram.sent
    assert len(sent) > 1
    assert all(len(str(m["text"])) <= 4096 for m in sent)
    assert " ".join(str(m["text"]) for m in sent) == text
    assert ["reply_markup" in m for m in sent] == [False] * (len(sent) - 1) + [True]


async def test_429_is_retried_after_retry_after_then_delivered_once(
    adapter: TelegramAdapter, fake_telegram: FakeTelegramApi, waits: list[float]
) -> None:
    fake_telegram.retry_after = 3
    fake_telegram.fail("sendMessage", 429)
    await adapter.send(ADDRESS, Reply("hello"))
    assert len(fake_telegram.calls_to("sendMessage")) == 2
    assert len(fake_telegram.sent) == 2  # the refused attempt is recorded too
    assert len(waits) == 1 and 3 <= waits[0] < 4


async def test_refused_connection_and_bad_gateway_are_retried(
    adapter: TelegramAdapter, fake_telegram: FakeTelegramApi, waits: list[float]
) -> None:
    fake_telegram.fail("sendMessage", httpx.ConnectError, 502)
    await adapter.send(ADDRESS, Reply("hello"))
    assert len(fake_telegram.calls_to("sendMessage")) == 3
    assert len(waits) == 2


async def test_read_timeout_is_never_resent(
    adapter: TelegramAdapter, fake_telegram: FakeTelegramApi
) -> None:
    fake_telegram.fail("sendMessage", httpx.ReadTimeout)
    with pytest.raises(SendUncertainError):
        await adapter.send(ADDRESS, Reply("hello"))
    assert len(fake_telegram.calls_to("sendMessage")) == 1


async def test_server_error_is_not_retried(
    adapter: TelegramAdapter, fake_telegram: FakeTelegramApi
) -> None:
    fake_telegram.fail("sendMessage", 500)
    with pytest.raises(SendError) as caught:
        await adapter.send(ADDRESS, Reply("hello"))
    assert not isinstance(caught.value, RetryableSendError | SendUncertainError)
    assert len(fake_telegram.calls_to("sendMessage")) == 1


async def test_blocked_bot_is_a_send_error(
    adapter: TelegramAdapter, fake_telegram: FakeTelegramApi
) -> None:
    fake_telegram.fail("sendMessage", 403)
    with pytest.raises(SendError, match="blocked"):
        await adapter.send(ADDRESS, Reply("hello"))


async def test_button_press_is_acknowledged_with_the_reply(
    adapter: TelegramAdapter, fake_telegram: FakeTelegramApi
) -> None:
    adapter.receive(webhook(make_telegram_update(kind="callback")))
    await adapter.send(ADDRESS, Reply("Noted."))
    assert [c.method for c in fake_telegram.calls] == ["answerCallbackQuery", "sendMessage"]
    assert fake_telegram.calls[0].params["callback_query_id"] == "4382bfdwdsb323b2d9"
    await adapter.send(ADDRESS, Reply("Next question."))
    assert len(fake_telegram.calls_to("answerCallbackQuery")) == 1  # answered once


async def test_failed_acknowledgement_does_not_stop_the_reply(
    adapter: TelegramAdapter, fake_telegram: FakeTelegramApi
) -> None:
    adapter.receive(webhook(make_telegram_update(kind="callback")))
    fake_telegram.fail("answerCallbackQuery", 400)
    await adapter.send(ADDRESS, Reply("Noted."))
    assert len(fake_telegram.sent) == 1


# --- media, deletion ----------------------------------------------------------------------


async def test_fetch_media(adapter: TelegramAdapter, fake_telegram: FakeTelegramApi) -> None:
    fake_telegram.add_file("PHOTO1", b"\xff\xd8\xffjpeg bytes", "photos/file_7.jpg")
    message = receive_one(adapter, kind="photo", file_id="PHOTO1", file_size=14)
    assert await adapter.fetch_media(message.attachments[0]) == b"\xff\xd8\xffjpeg bytes"
    assert [c.method for c in fake_telegram.calls] == ["getFile"]
    assert fake_telegram.downloads == 1


async def test_fetch_media_refuses_what_grew_over_the_limit(
    http: httpx.AsyncClient, fake_telegram: FakeTelegramApi
) -> None:
    small = TelegramAdapter(bot_token=TELEGRAM_TOKEN, webhook_secret=SECRET, http=http,
                            max_media_bytes=10)
    fake_telegram.add_file("BIG", b"x" * 11)
    message = receive_one(small, kind="document", file_id="BIG", file_size=5)  # it lied
    with pytest.raises(MediaTooLargeError):
        await small.fetch_media(message.attachments[0])
    assert fake_telegram.downloads == 0


async def test_delete_messages_is_best_effort(
    adapter: TelegramAdapter, fake_telegram: FakeTelegramApi
) -> None:
    fake_telegram.fail("deleteMessage", 400)  # too old: skipped
    assert await adapter.delete_messages(ADDRESS, [10, 11, 12]) == 2
    assert [c.params["message_id"] for c in fake_telegram.calls_to("deleteMessage")] == [
        "10", "11", "12"]


# --- polling ------------------------------------------------------------------------------


async def test_polling_delivers_updates_through_receive(
    adapter: TelegramAdapter, fake_telegram: FakeTelegramApi
) -> None:
    fake_telegram.updates = [make_telegram_update(text="first", update_id=7),
                             make_telegram_update(text="second", update_id=8)]
    stop = asyncio.Event()
    received: list[IncomingMessage] = []

    async def deliver(request: WebhookRequest) -> None:
        received.extend(adapter.receive(request))  # verifies the secret like a webhook
        if len(received) == 2:
            stop.set()

    await asyncio.wait_for(adapter.poll(deliver, stop=stop, timeout=0, backoff=0), 5)
    assert [m.text for m in received] == ["first", "second"]
    methods = [c.method for c in fake_telegram.calls]
    assert methods[0] == "deleteWebhook" and "getUpdates" in methods


async def test_polling_confirms_an_update_only_once_delivered(
    adapter: TelegramAdapter, fake_telegram: FakeTelegramApi
) -> None:
    fake_telegram.updates = [make_telegram_update(text="first", update_id=7),
                             make_telegram_update(text="second", update_id=8)]
    stop = asyncio.Event()
    attempts: list[str] = []

    async def deliver(request: WebhookRequest) -> None:
        [message] = adapter.receive(request)
        attempts.append(message.provider_message_id)
        if attempts == ["7", "8"]:
            raise RuntimeError("database down")
        if attempts.count("8") == 2:
            stop.set()

    await asyncio.wait_for(adapter.poll(deliver, stop=stop, timeout=0, backoff=0), 5)
    assert attempts == ["7", "8", "8"]
    offsets = [c.params.get("offset") for c in fake_telegram.calls_to("getUpdates")]
    assert offsets == [None, 8]  # 8 is asked for again: it was not confirmed


async def test_polling_survives_network_errors_and_stops_promptly(
    adapter: TelegramAdapter, fake_telegram: FakeTelegramApi
) -> None:
    fake_telegram.fail("deleteWebhook", httpx.ConnectError)
    fake_telegram.fail("getUpdates", httpx.ConnectError, 500)
    stop = asyncio.Event()
    delivered: list[WebhookRequest] = []

    async def deliver(request: WebhookRequest) -> None:
        delivered.append(request)
        stop.set()

    fake_telegram.updates = [make_telegram_update(update_id=9)]
    await asyncio.wait_for(adapter.poll(deliver, stop=stop, timeout=0, backoff=0), 5)
    assert len(delivered) == 1
    assert len(fake_telegram.calls_to("deleteWebhook")) == 2


async def test_polling_returns_when_stopped_while_waiting(adapter: TelegramAdapter) -> None:
    stop = asyncio.Event()
    stop.set()

    async def deliver(request: WebhookRequest) -> None:
        raise AssertionError("nothing to deliver")

    await asyncio.wait_for(adapter.poll(deliver, stop=stop), 1)


# --- logging ------------------------------------------------------------------------------


async def test_nothing_identifying_or_secret_is_logged(
    adapter: TelegramAdapter, fake_telegram: FakeTelegramApi,
    captured_logs: pytest.LogCaptureFixture,
) -> None:
    fake_telegram.updates = [make_telegram_update(text="secret tip text", update_id=70)]
    stop = asyncio.Event()

    async def deliver(request: WebhookRequest) -> None:
        adapter.receive(request)
        stop.set()

    await adapter.poll(deliver, stop=stop, timeout=0, backoff=0)
    adapter.receive(webhook(make_telegram_update(text="secret tip text")))
    await adapter.send(ADDRESS, Reply("secret reply text", (Choice("Yes", "y"),)))
    fake_telegram.fail("sendMessage", httpx.ReadTimeout)
    with pytest.raises(SendUncertainError):
        await adapter.send(ADDRESS, Reply("secret reply text"))
    logged = captured_logs.text + " ".join(str(r.__dict__) for r in captured_logs.records)
    token_secret = TELEGRAM_TOKEN.split(":", 1)[1]
    for forbidden in (token_secret, str(CHAT), "secret tip text", "secret reply text",
                      *TELEGRAM_PERSON.values()):
        assert forbidden not in logged
