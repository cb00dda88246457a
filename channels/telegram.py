"""Telegram: secret-checked webhooks (or long polling) in, Bot API out.

Owns the Telegram adapter, its python-telegram-bot HTTP layer on the app's single httpx client
(so tests fake the Bot API at the wire), and the mapping of Telegram updates to
`IncomingMessage`s. Of an update it keeps the update_id, the chat id (as the reply address), the
two-letter language code, and the content; username, first/last name, user id, forwarded-from
origins and replied-to messages are never read into anything we keep.

It must never log update JSON, message text, chat ids or URLs: the bot token is part of every
Bot API URL. python-telegram-bot logs request parameters and results at DEBUG (and an update
payload at CRITICAL when it cannot parse one), so its loggers are silenced here, and httpx's
request log has the token masked.

Exceptions (raised by the HTTP layer as python-telegram-bot errors, so its own error handling
passes them through unchanged, then translated into channels.base errors by the adapter):
    telegram.error.TelegramError
     ├── TelegramFloodError          - 429 with retry_after     -> RetryableSendError
     └── telegram.error.NetworkError
          ├── TelegramUnreachableError  - never connected       -> RetryableSendError
          ├── TelegramUnavailableError  - 502/503/504 gateway    -> RetryableSendError
          └── telegram.error.TimedOut   - answer lost (read)     -> SendUncertainError
    Any other TelegramError (Forbidden: the reporter blocked the bot; BadRequest; 500)
                                                                 -> SendError
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import hashlib
import hmac
import json
import logging
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import replace
from typing import Any, ClassVar, cast

import httpx
from telegram import (
    Bot,
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
    Update,
)
from telegram.error import (
    Forbidden,
    NetworkError,
    RetryAfter,
    TelegramError,
    TimedOut,
)
from telegram.request import BaseRequest, RequestData

from channels.base import (
    ChannelAdapter,
    Command,
    IncomingMessage,
    MediaRef,
    MessageKind,
    Reply,
    ReplyAddress,
    RetryableSendError,
    SendContext,
    SendError,
    SendUncertainError,
    WebhookAuthError,
    WebhookRequest,
    render_numbered,
    send_with_retry,
)
from channels.media import MediaError, MediaTooLargeError, download_capped, media_kind
from channels.sms_segments import split_text, utf16_length

logger = logging.getLogger(__name__)

SECRET_HEADER = "x-telegram-bot-api-secret-token"  # noqa: S105  (a header name)
TELEGRAM_MAX_TEXT = 4096  # UTF-16 code units per message
CALLBACK_DATA_MAX_BYTES = 64
# The hosted Bot API lets bots download files up to 20 MB, whatever our own limit says.
BOT_API_DOWNLOAD_LIMIT = 20 * 1024 * 1024
# What we ask Telegram for (setWebhook / getUpdates): nothing from groups or channels is useful.
ALLOWED_UPDATES = ("message", "edited_message", "callback_query")
# Telegram stops waiting for an answer to a button press after a short while; older ids fail.
CALLBACK_ACK_TTL_SECONDS = 60.0
_MAX_PENDING_ACK_CHATS = 1000
# Telegram lets a bot delete messages of a private chat for 48 hours.
_DELETABLE_SECONDS = 48 * 3600

COMMANDS = {
    "/start": Command.START,
    "/language": Command.LANGUAGE,
    "/help": Command.HELP,
    "/delete": Command.DELETE,
}
# Service messages a private chat can carry (pins, auto-delete timer...): nothing to answer.
_SERVICE_FIELDS = (
    "pinned_message",
    "message_auto_delete_timer_changed",
    "write_access_allowed",
    "users_shared",
    "chat_shared",
    "new_chat_members",
    "left_chat_member",
    "new_chat_title",
    "new_chat_photo",
    "delete_chat_photo",
    "connected_website",
    "proximity_alert_triggered",
    "chat_background_set",
)
_TOKEN_IN_URL = re.compile(r"/(file/)?bot[^/\s]+")


# --- The HTTP layer ------------------------------------------------------------------------


class TelegramFloodError(TelegramError):
    """429 Too Many Requests. Not telegram.error.RetryAfter: constructing that one emits a
    deprecation warning in python-telegram-bot 22 (its retry_after is becoming a timedelta)."""

    __slots__ = ("retry_after",)

    def __init__(self, retry_after: float | None) -> None:
        super().__init__("Flood control exceeded")
        self.retry_after = retry_after


class TelegramUnreachableError(NetworkError):
    """The connection to the Bot API was never established: the call surely did not happen."""

    __slots__ = ()


class TelegramUnavailableError(NetworkError):
    """Telegram's front end answered 502/503/504: the Bot API did not process the call."""

    __slots__ = ()


def _retry_after(content: bytes) -> float | None:
    try:
        value = json.loads(content).get("parameters", {}).get("retry_after")
    except (ValueError, AttributeError):
        return None
    return float(value) if isinstance(value, int | float) else None


class HttpxTelegramRequest(BaseRequest):
    """python-telegram-bot's HTTP layer on the app's httpx client.

    The client belongs to the app: initialize() and shutdown() leave it alone. Failures are
    classified here, where the transport error is still visible, as twilio_http does for Twilio.
    """

    __slots__ = ("_client", "_connect_timeout", "_read_timeout", "_write_timeout")

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        connect_timeout: float = 5.0,
        read_timeout: float = 15.0,
        write_timeout: float = 15.0,
    ) -> None:
        self._client = client
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._write_timeout = write_timeout

    @property
    def read_timeout(self) -> float | None:
        return self._read_timeout

    async def initialize(self) -> None:
        """Nothing to open: the app owns the client."""

    async def shutdown(self) -> None:
        """Nothing to close: the app owns the client."""

    @staticmethod
    def parse_json_payload(payload: bytes) -> dict[str, Any]:
        # The library's version logs the payload when it is not JSON; this one does not.
        try:
            data = json.loads(payload.decode("utf-8", "replace"))
        except ValueError as exc:
            raise TelegramError("Invalid server response") from exc
        if not isinstance(data, dict):
            raise TelegramError("Invalid server response")
        return data

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: Any = BaseRequest.DEFAULT_NONE,
        write_timeout: Any = BaseRequest.DEFAULT_NONE,
        connect_timeout: Any = BaseRequest.DEFAULT_NONE,
        pool_timeout: Any = BaseRequest.DEFAULT_NONE,
    ) -> tuple[int, bytes]:
        def pick(value: Any, default: float | None) -> float | None:
            return default if value is BaseRequest.DEFAULT_NONE else cast("float | None", value)

        timeout = httpx.Timeout(
            connect=pick(connect_timeout, self._connect_timeout),
            read=pick(read_timeout, self._read_timeout),
            write=pick(write_timeout, self._write_timeout),
            pool=pick(pool_timeout, self._connect_timeout),
        )
        files = request_data.multipart_data if request_data and request_data.contains_files else None
        try:
            response = await self._client.request(
                method,
                url,
                data=request_data.json_parameters if request_data else None,
                files=files,
                timeout=timeout,
            )
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            # Messages carry no URL: it contains the bot token.
            raise TelegramUnreachableError(f"telegram unreachable: {type(exc).__name__}") from None
        except httpx.TransportError as exc:
            # Read timeout, connection dropped mid-answer: Telegram may have sent the message.
            raise TimedOut(f"telegram answer lost: {type(exc).__name__}") from None
        if response.status_code == 429:
            raise TelegramFloodError(_retry_after(response.content))
        if response.status_code in (502, 503, 504):
            raise TelegramUnavailableError(f"telegram {response.status_code}")
        return response.status_code, response.content


@contextlib.contextmanager
def _translated_errors() -> Iterator[None]:
    """python-telegram-bot errors -> channels.base errors, for send_with_retry."""
    try:
        yield
    except TelegramFloodError as exc:
        raise RetryableSendError("telegram 429", retry_after=exc.retry_after) from None
    except RetryAfter:  # not raised by our HTTP layer; kept in case the library raises it
        raise RetryableSendError("telegram 429") from None
    except (TelegramUnreachableError, TelegramUnavailableError) as exc:
        raise RetryableSendError(exc.message) from None
    except TimedOut as exc:
        raise SendUncertainError(exc.message) from None
    except Forbidden:
        raise SendError("telegram: the reporter blocked the bot") from None
    except TelegramError as exc:
        # Only the class name: Telegram's descriptions can quote what we sent.
        raise SendError(f"telegram refused the call: {type(exc).__name__}") from None


# --- Logging --------------------------------------------------------------------------------


class _DropAll(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return False


class _MaskBotToken(logging.Filter):
    """httpx logs "HTTP Request: POST https://api.telegram.org/bot<token>/sendMessage"."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = _TOKEN_IN_URL.sub(lambda m: f"/{m.group(1) or ''}bot[token]", message)
        if masked != message:
            record.msg, record.args = masked, None
        return True


def _quiet_library_loggers() -> None:
    # These python-telegram-bot loggers only ever say URLs (with the token), request
    # parameters (chat ids, texts) and results (whole messages). Our own events replace them.
    for name in ("telegram.Bot", "telegram.ext.ExtBot", "telegram.request.BaseRequest"):
        library_logger = logging.getLogger(name)
        if not any(isinstance(f, _DropAll) for f in library_logger.filters):
            library_logger.addFilter(_DropAll())
    httpx_logger = logging.getLogger("httpx")
    if not any(isinstance(f, _MaskBotToken) for f in httpx_logger.filters):
        httpx_logger.addFilter(_MaskBotToken())


# --- The adapter ----------------------------------------------------------------------------


def _language(code: object) -> str | None:
    """Telegram's IETF tag ("pt-br") reduced to the ISO 639-1 code we configure ("pt")."""
    if not isinstance(code, str):
        return None
    short = code[:2].lower()
    return short if len(short) == 2 and short.isalpha() else None


def _is_id(value: object) -> bool:
    """Telegram ids are integers; JSON true/false would pass isinstance(value, int)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _command(text: str) -> Command | None:
    words = text.split(maxsplit=1)
    if not words:
        return None
    # "/start@tipline_bot" in clients that add the bot's name; "/start <payload>" deep links.
    return COMMANDS.get(words[0].split("@", 1)[0].lower())


def _button_title(query: CallbackQuery) -> str | None:
    """The title of the button pressed, read from the keyboard of the message it belongs to."""
    markup = getattr(query.message, "reply_markup", None)
    if not isinstance(markup, InlineKeyboardMarkup):
        return None
    for row in markup.inline_keyboard:
        for button in row:
            if button.callback_data == query.data:
                return button.text
    return None


class _Stopped(Exception):
    """The stop event was set while waiting on Telegram."""


class TelegramAdapter(ChannelAdapter):
    """A Telegram bot, by webhook or by long polling.

    Keyword-only constructor:
        bot_token: from @BotFather. It appears in every Bot API URL: never log one.
        webhook_secret: the secret_token given to setWebhook; Telegram sends it back in
            X-Telegram-Bot-Api-Secret-Token. "" (polling mode) makes up a random one that only
            poll() knows, so no webhook can ever be accepted.
        http: the app's single httpx.AsyncClient.
        max_media_bytes: larger attachments become TOO_LARGE (and fetch_media refuses them).
        api_base_url: the Bot API, "https://api.telegram.org" or a local Bot API server.
        retry_sleep: how send() waits between retries (tests pass one that does not wait).

    Button presses (callback queries) need an answerCallbackQuery call, or the reporter's
    Telegram shows a spinner on the button. parse() cannot call the API (it is synchronous and
    runs before the message is even recorded), so the query id is remembered in memory for a
    minute and answered by the next send() to that chat, i.e. when the reply arrives; the
    pipeline may call acknowledge_choices() earlier. With several gateway workers the reply may
    go out from another one: then the spinner simply times out, which is harmless.
    """

    name: ClassVar[str] = "telegram"
    webhook_path: ClassVar[str] = "/webhooks/telegram"

    def __init__(
        self,
        *,
        bot_token: str,
        webhook_secret: str,
        http: httpx.AsyncClient,
        max_media_bytes: int = 10 * 1024 * 1024,
        api_base_url: str = "https://api.telegram.org",
        retry_sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        _quiet_library_loggers()
        self._retry_sleep = retry_sleep
        self._token = bot_token
        self._secret = webhook_secret or secrets.token_urlsafe(32)
        self._http = http
        self._max_media_bytes = max_media_bytes
        self._api = api_base_url.rstrip("/")
        self._file_base = f"{self._api}/file/bot{bot_token}/"
        request = HttpxTelegramRequest(http)
        self._bot = Bot(
            token=bot_token,
            base_url=f"{self._api}/bot",
            base_file_url=f"{self._api}/file/bot",
            request=request,
            get_updates_request=request,
        )
        # chat id -> [(callback query id, when it arrived)], oldest chats first.
        self._pending_acks: OrderedDict[str, list[tuple[str, float]]] = OrderedDict()
        # sha256(chat id) -> recent (message_id, monotonic time): see _remember.
        self._recent: dict[str, collections.deque[tuple[int, float]]] = {}

    # -- inbound --

    def verify(self, request: WebhookRequest) -> None:
        given = request.headers.get(SECRET_HEADER, "")
        if not given or not hmac.compare_digest(given.encode(), self._secret.encode()):
            raise WebhookAuthError("channel.telegram.secret_invalid")

    def parse(self, request: WebhookRequest) -> list[IncomingMessage]:
        try:
            raw = json.loads(request.body)
        except (ValueError, UnicodeDecodeError):
            return []
        if not isinstance(raw, dict) or not _is_id(raw.get("update_id")):
            return []
        try:
            update = Update.de_json(raw, self._bot)
        except Exception:  # the library refuses shapes it does not know (newer Bot API fields)
            logger.warning("channel.telegram.update_unreadable")
            return self._unreadable(raw)
        if update is None:
            return []
        # The library does not check types: an update with `chat: null` or a numeric
        # language_code would raise deep inside. Telegram never sends those; whoever does
        # (with our secret) gets nothing stored and no answer.
        try:
            if update.message is not None and update.message.chat.type == "private":
                self._remember(str(update.message.chat.id), update.message.message_id)
            return self._classify(update)
        except (AttributeError, TypeError, ValueError):
            logger.warning("channel.telegram.update_malformed")
            return []

    def _remember(self, chat_id: str, message_id: int) -> None:
        """Recent message ids per chat, for the panic word. In memory only, under a hash of the
        chat id, and only as long as Telegram lets a bot delete them (48 hours)."""
        now = time.monotonic()
        key = hashlib.sha256(chat_id.encode()).hexdigest()
        recent = self._recent.setdefault(key, collections.deque(maxlen=200))
        recent.append((message_id, now))
        while recent and now - recent[0][1] > _DELETABLE_SECONDS:
            recent.popleft()

    async def erase_conversation(self, address: ReplyAddress) -> int:
        """Delete the messages we remember in this chat, the reporter's and ours."""
        key = hashlib.sha256(address.value.encode()).hexdigest()
        remembered = self._recent.pop(key, collections.deque())
        now = time.monotonic()
        ids = [m for m, at in remembered if now - at <= _DELETABLE_SECONDS]
        return await self.delete_messages(address, reversed(ids))

    def _unreadable(self, raw: dict[str, Any]) -> list[IncomingMessage]:
        """A private message the library cannot read still deserves a polite answer."""
        message = raw.get("message")
        chat = message.get("chat") if isinstance(message, dict) else None
        if not isinstance(chat, dict) or chat.get("type") != "private" or not _is_id(chat.get("id")):
            return []
        return [self._message(str(raw["update_id"]), str(chat["id"]), MessageKind.UNSUPPORTED)]

    def _message(
        self, update_id: str, chat_id: str, kind: MessageKind, **fields: Any
    ) -> IncomingMessage:
        return IncomingMessage(
            channel=self.name,
            provider_message_id=update_id,
            reply_address=ReplyAddress(self.name, chat_id),
            kind=kind,
            **fields,
        )

    def _classify(self, update: Update) -> list[IncomingMessage]:
        update_id = str(update.update_id)
        # Only private chats. In a group, other members see the tip and who sent it, and the
        # bot would answer in front of them: a group is not anonymous. Channel posts (and their
        # edits) are broadcasts by the channel's admins, never a reporter's message.
        if update.callback_query is not None:
            return self._from_callback(update_id, update.callback_query)
        if update.edited_message is not None:
            edited = update.edited_message
            if edited.chat.type != "private" or not _is_id(edited.chat.id):
                return []
            if edited.location is not None:
                return []  # a live location moving: not an edit by the reporter
            return [self._message(update_id, str(edited.chat.id), MessageKind.EDITED,
                                  language_hint=_language(getattr(edited.from_user,
                                                                  "language_code", None)))]
        if update.message is not None and update.message.chat.type == "private":
            return self._from_message(update_id, update.message)
        return []

    def _from_callback(self, update_id: str, query: CallbackQuery) -> list[IncomingMessage]:
        chat = getattr(query.message, "chat", None)
        if chat is None or chat.type != "private" or not _is_id(chat.id):
            return []
        chat_id = str(chat.id)
        self._remember_ack(chat_id, query.id)
        language = _language(query.from_user.language_code)
        if query.data is None:  # a game button: nothing we offered
            return [self._message(update_id, chat_id, MessageKind.UNSUPPORTED,
                                  language_hint=language)]
        return [self._message(update_id, chat_id, MessageKind.TEXT,
                              text=_button_title(query) or query.data, choice=query.data,
                              language_hint=language)]

    def _from_message(self, update_id: str, message: Message) -> list[IncomingMessage]:
        if not _is_id(message.chat.id):
            return []
        chat_id = str(message.chat.id)
        base = self._message(update_id, chat_id, MessageKind.UNSUPPORTED,
                             language_hint=_language(getattr(message.from_user,
                                                             "language_code", None)))
        if message.text is not None:
            command = _command(message.text)
            if command is not None:
                return [replace(base, kind=MessageKind.COMMAND, command=command)]
            return [replace(base, kind=MessageKind.TEXT, text=message.text.strip())]
        if message.location is not None:
            # A venue carries a location too; its title and address are not kept.
            location = (message.location.latitude, message.location.longitude)
            return [replace(base, kind=MessageKind.LOCATION, location=location)]
        ref = self._media_ref(message)
        if ref is not None:
            if ref.size is not None and ref.size > self._download_limit:
                return [replace(base, kind=MessageKind.TOO_LARGE)]
            return [replace(base, kind=MessageKind.MEDIA, attachments=(ref,),
                            text=(message.caption or "").strip())]
        if any(getattr(message, field, None) for field in _SERVICE_FIELDS):
            return []
        # Stickers, polls, contacts, dice, games, stories... and whatever Telegram adds next.
        return [base]

    @staticmethod
    def _media_ref(message: Message) -> MediaRef | None:
        if message.photo:
            largest = max(message.photo, key=lambda size: size.width * size.height)
            return MediaRef("image", "image/jpeg", largest.file_id, largest.file_size)
        if message.voice is not None:
            voice = message.voice
            return MediaRef("audio", voice.mime_type or "audio/ogg", voice.file_id, voice.file_size)
        if message.audio is not None:
            audio = message.audio
            return MediaRef("audio", audio.mime_type or "audio/mpeg", audio.file_id,
                            audio.file_size)
        if message.video is not None:
            video = message.video
            return MediaRef("video", video.mime_type or "video/mp4", video.file_id,
                            video.file_size)
        if message.video_note is not None:
            note = message.video_note
            return MediaRef("video", "video/mp4", note.file_id, note.file_size)
        if message.document is not None:
            # Also animations (GIFs), which Telegram sends with a document too. Photos sent
            # "as a file" land here with their EXIF intact: media.scrub() recognizes them.
            document = message.document
            content_type = document.mime_type or "application/octet-stream"
            return MediaRef(media_kind(content_type), content_type, document.file_id,
                            document.file_size)
        return None

    @property
    def _download_limit(self) -> int:
        return min(self._max_media_bytes, BOT_API_DOWNLOAD_LIMIT)

    # -- button acknowledgements --

    def _remember_ack(self, chat_id: str, query_id: str) -> None:
        self._pending_acks.setdefault(chat_id, []).append((query_id, time.monotonic()))
        self._pending_acks.move_to_end(chat_id)
        while len(self._pending_acks) > _MAX_PENDING_ACK_CHATS:
            self._pending_acks.popitem(last=False)

    async def acknowledge_choices(self, address: ReplyAddress) -> None:
        """Answer the button presses of this chat not answered yet (stops their spinners).

        Best effort: an expired or unknown query id is not worth failing a reply for.
        """
        pending = self._pending_acks.pop(address.value, [])
        now = time.monotonic()
        for query_id, received in pending:
            if now - received > CALLBACK_ACK_TTL_SECONDS:
                continue
            try:
                with _translated_errors():
                    await self._bot.answer_callback_query(query_id)
            except SendError as exc:
                logger.info("channel.telegram.callback_ack_failed",
                            extra={"error": type(exc).__name__})

    # -- outbound --

    async def send(
        self, address: ReplyAddress, reply: Reply, context: SendContext | None = None
    ) -> None:
        await self.acknowledge_choices(address)
        text, markup = self._render(reply)
        parts = split_text(text, TELEGRAM_MAX_TEXT, measure=utf16_length)
        for index, part in enumerate(parts):
            # The buttons go under the last part, next to the question they answer.
            keyboard = markup if index == len(parts) - 1 else None
            await send_with_retry(
                functools.partial(self._send_message, address.value, part, keyboard),
                sleep=self._retry_sleep,
            )

    @staticmethod
    def _render(reply: Reply) -> tuple[str, InlineKeyboardMarkup | None]:
        if not reply.choices:
            return reply.text, None
        payloads = [choice.payload for choice in reply.choices]
        if any(not p or len(p.encode()) > CALLBACK_DATA_MAX_BYTES for p in payloads):
            # Telegram refuses callback data over 64 bytes: numbered lines still work.
            logger.warning("channel.telegram.choice_payload_too_long")
            return render_numbered(reply), None
        keyboard = [[InlineKeyboardButton(c.title, callback_data=c.payload)]
                    for c in reply.choices]
        return reply.text, InlineKeyboardMarkup(keyboard)

    async def _send_message(
        self, chat_id: str, text: str, markup: InlineKeyboardMarkup | None
    ) -> None:
        with _translated_errors():
            # Plain text (no parse_mode): nothing a reply quotes can turn into markup or links.
            sent = await self._bot.send_message(chat_id=chat_id, text=text, reply_markup=markup)
        self._remember(chat_id, sent.message_id)

    async def fetch_media(self, ref: MediaRef) -> bytes:
        """getFile, then download the bytes (at most max_media_bytes, and Telegram's 20 MB)."""
        if ref.size is not None and ref.size > self._download_limit:
            raise MediaTooLargeError("media over the size limit")
        with _translated_errors():
            file = await self._bot.get_file(ref.provider_ref)
        if file.file_size is not None and file.file_size > self._download_limit:
            raise MediaTooLargeError("media over the size limit")
        url = file.file_path or ""
        if not url.startswith(self._file_base):
            raise MediaError("telegram gave no downloadable file path")
        return await download_capped(self._http, url, max_bytes=self._download_limit)

    async def delete_messages(self, chat: ReplyAddress, message_ids: Iterable[int]) -> int:
        """Delete messages in a reporter's chat (panic word); returns how many went.

        Best effort: bots may delete messages of a private chat only within 48 hours, and a
        message the reporter already deleted is gone anyway.
        """
        deleted = 0
        for message_id in message_ids:
            try:
                with _translated_errors():
                    if await self._bot.delete_message(chat_id=chat.value, message_id=message_id):
                        deleted += 1
            except SendError as exc:
                logger.info("channel.telegram.delete_failed", extra={"error": type(exc).__name__})
        return deleted

    # -- polling --

    async def poll(
        self,
        deliver: Callable[[WebhookRequest], Awaitable[None]],
        *,
        stop: asyncio.Event,
        timeout: int = 25,  # noqa: ASYNC109  (getUpdates long-poll seconds)
        backoff: float = 5.0,
    ) -> None:
        """Long polling, for a tip line without a public URL. Returns when `stop` is set.

        Each update goes to `deliver` as a WebhookRequest carrying our secret header, so it
        takes the same receive() path (verify, parse) as a webhook. Adding the secret here is
        safe: the update came from api.telegram.org over TLS in answer to a call authenticated
        by the bot token, which is exactly what the secret proves for a webhook.

        An update is confirmed to Telegram (offset advanced past it) only once `deliver`
        returned; if it raises, the same update comes back on the next call, and the
        pipeline's dedupe on update_id keeps that from becoming a second tip.
        """
        webhook_deleted = False
        offset: int | None = None
        while not stop.is_set():
            try:
                if not webhook_deleted:
                    # getUpdates is refused (409) while a webhook is set.
                    with _translated_errors():
                        await self._until_stopped(
                            self._bot.delete_webhook(drop_pending_updates=False), stop
                        )
                    webhook_deleted = True
                updates = await self._until_stopped(self._get_updates(offset, timeout), stop)
            except _Stopped:
                return
            except (SendError, _PollError) as exc:
                retry_after = getattr(exc, "retry_after", None)
                logger.warning("channel.telegram.poll_failed", extra={"error": type(exc).__name__})
                await self._sleep(retry_after or backoff, stop)
                continue
            for raw in updates:
                update_id = raw.get("update_id") if isinstance(raw, dict) else None
                if not isinstance(update_id, int):
                    continue
                request = WebhookRequest(
                    path=self.webhook_path,
                    headers={SECRET_HEADER: self._secret},
                    body=json.dumps(raw).encode(),
                )
                try:
                    await deliver(request)
                except Exception as exc:  # the pipeline's failure must not end polling
                    logger.warning("channel.telegram.poll_deliver_failed",
                                   extra={"error": type(exc).__name__})
                    await self._sleep(backoff, stop)
                    break
                offset = update_id + 1

    async def _get_updates(self, offset: int | None, timeout: int) -> list[Any]:  # noqa: ASYNC109
        # Straight on the httpx client rather than Bot.get_updates: the raw JSON is handed on
        # unchanged (the library would parse it into objects we would have to serialize back).
        payload: dict[str, Any] = {"timeout": timeout, "allowed_updates": list(ALLOWED_UPDATES)}
        if offset is not None:
            payload["offset"] = offset
        try:
            response = await self._http.post(
                f"{self._api}/bot{self._token}/getUpdates",
                json=payload,
                timeout=httpx.Timeout(timeout + 10.0, connect=10.0),
            )
        except httpx.TransportError as exc:
            raise _PollError(f"getUpdates failed: {type(exc).__name__}") from None
        if response.status_code == 429:
            raise _PollError("getUpdates 429", retry_after=_retry_after(response.content))
        if response.status_code != 200:
            raise _PollError(f"getUpdates HTTP {response.status_code}")
        try:
            data = response.json()
        except ValueError:
            raise _PollError("getUpdates answered no JSON") from None
        result = data.get("result") if isinstance(data, dict) else None
        if not isinstance(result, list):
            raise _PollError("getUpdates answered no result")
        return result

    @staticmethod
    async def _until_stopped(awaitable: Awaitable[Any], stop: asyncio.Event) -> Any:
        """Await `awaitable` unless `stop` is set first (then cancel it and raise _Stopped).

        Cancelling a getUpdates in flight loses nothing: updates are confirmed only by the
        offset of the next call.
        """
        work = asyncio.ensure_future(awaitable)
        stopper = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({work, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
            if not work.done():
                work.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await work
        if work.cancelled():
            raise _Stopped
        return work.result()

    @staticmethod
    async def _sleep(seconds: float, stop: asyncio.Event) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), seconds)


class _PollError(Exception):
    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after
