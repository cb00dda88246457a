"""The one channel interface, and the values that cross it.

Exceptions:
    ChannelError
     ├── WebhookAuthError      - signature or secret wrong: the app answers 403, stores nothing
     └── SendError             - a reply could not be delivered
          ├── RetryableSendError   - the provider surely did not take it (429, refused connection)
          └── SendUncertainError   - it may have been delivered (read timeout): never resend
"""

from __future__ import annotations

import asyncio
import logging
import random
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import ClassVar, final

logger = logging.getLogger(__name__)


class ChannelError(Exception):
    """Base of channel errors."""


class WebhookAuthError(ChannelError):
    """The webhook did not prove it comes from the provider."""


class SendError(ChannelError):
    """A reply could not be delivered."""


class RetryableSendError(SendError):
    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class SendUncertainError(SendError):
    """The provider may have delivered it: resending could message the reporter twice."""


class MessageKind(StrEnum):
    TEXT = "text"  # words typed by the reporter (or a button they pressed: see `choice`)
    LOCATION = "location"  # a shared location: `location`
    MEDIA = "media"  # photos, voice notes, documents: `attachments` (plus an optional caption)
    COMMAND = "command"  # /start, /language, /help, /delete; keywords STOP/START/HELP on SMS
    EDITED = "edited"  # an edit of an earlier message: acknowledged, never a second tip
    TOO_LARGE = "too_large"  # over the size limit: a polite reply, nothing stored
    UNSUPPORTED = "unsupported"  # stickers, polls, contacts...: a polite reply, nothing stored


class Command(StrEnum):
    """What a reporter can ask of the tip line itself, whatever the channel."""

    START = "start"
    LANGUAGE = "language"
    HELP = "help"
    DELETE = "delete"  # erase my conversation and my reply address (also SMS STOP)
    RESUME = "resume"  # SMS START after STOP
    STATUS = "status"  # STATUS alone: how to ask for a report's status (with a code: text)

@dataclass(frozen=True)
class ReplyAddress:
    """Where a reply goes: a phone number or chat id. Its repr never shows the value."""

    channel: str
    value: str = field(repr=False)

    def __repr__(self) -> str:
        return f"ReplyAddress(channel={self.channel!r}, value='**********')"

    __str__ = __repr__


@dataclass(frozen=True)
class MediaRef:
    """A file the provider holds for us; fetched (and scrubbed) by the worker, not the webhook."""

    kind: str  # image | audio | video | document
    content_type: str
    provider_ref: str = field(repr=False)  # Twilio MediaUrl or Telegram file_id
    size: int | None = None  # when the provider tells us


@dataclass(frozen=True)
class IncomingMessage:
    """One message from a reporter, with identifying provider fields already dropped."""

    channel: str
    provider_message_id: str
    reply_address: ReplyAddress
    kind: MessageKind
    text: str = field(default="", repr=False)
    language_hint: str | None = None  # e.g. Telegram's language_code
    location: tuple[float, float] | None = field(default=None, repr=False)  # (lat, lon)
    attachments: tuple[MediaRef, ...] = ()
    command: Command | None = None
    # The payload of a button the reporter pressed (Telegram inline keyboard); the pipeline
    # accepts it only if it is one of the choices it offered last.
    choice: str | None = None


@dataclass(frozen=True)
class Choice:
    title: str
    payload: str


@dataclass(frozen=True)
class Reply:
    text: str
    choices: tuple[Choice, ...] = ()


@dataclass(frozen=True)
class SendContext:
    """What the pipeline knows that an adapter may need to deliver a reply."""

    language: str | None = None
    # When the reporter last wrote to us: WhatsApp allows free-form replies only within 24 h.
    last_inbound_at: datetime | None = None


@dataclass(frozen=True)
class WebhookRequest:
    """What an adapter needs of an HTTP request, free of any web framework."""

    path: str
    headers: Mapping[str, str]  # lower-case names
    body: bytes
    form: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class WebhookAck:
    """What the webhook answers the provider once the message is safely recorded."""

    body: bytes = b""
    media_type: str = "text/plain"


def render_numbered(reply: Reply) -> str:
    """Buttons become numbered lines on channels without them; the reporter answers "1"."""
    if not reply.choices:
        return reply.text
    lines = [reply.text, *(f"{n}. {choice.title}" for n, choice in enumerate(reply.choices, 1))]
    return "\n".join(lines)


class ChannelAdapter(ABC):
    """Base of every channel. `receive()` always verifies before it parses."""

    name: ClassVar[str]

    @final
    def receive(self, request: WebhookRequest) -> list[IncomingMessage]:
        self.verify(request)
        return self.parse(request)

    @abstractmethod
    def verify(self, request: WebhookRequest) -> None:
        """Raise WebhookAuthError unless the request provably comes from the provider."""

    @abstractmethod
    def parse(self, request: WebhookRequest) -> list[IncomingMessage]:
        """Turn a verified request into messages, dropping identifying fields."""

    @abstractmethod
    async def send(
        self, address: ReplyAddress, reply: Reply, context: SendContext | None = None
    ) -> None:
        """Deliver one reply (possibly as several provider messages)."""

    async def erase_conversation(self, address: ReplyAddress) -> int:
        """Delete the conversation from the reporter's device where the provider lets a bot do
        it (the panic word). Returns how many messages went; SMS and WhatsApp cannot: 0."""
        return 0

    async def fetch_media(self, ref: MediaRef) -> bytes:
        """Download a file the reporter sent. Channels without media never get here."""
        raise SendError(f"channel {self.name} has no media")

    def ack(self) -> WebhookAck:
        return WebhookAck()

    async def aclose(self) -> None:  # noqa: B027  (optional hook)
        """Release provider clients."""


async def send_with_retry(
    attempt: Callable[[], Awaitable[None]],
    *,
    tries: int = 4,
    base_delay: float = 0.5,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> None:
    """Retry when the provider surely did not take the message; never after a read timeout."""
    for number in range(1, tries + 1):
        try:
            await attempt()
            return
        except RetryableSendError as exc:
            if number == tries:
                raise
            backoff = base_delay * 2 ** (number - 1)
            delay = exc.retry_after if exc.retry_after is not None else backoff
            delay += random.uniform(0, base_delay / 2)  # noqa: S311  (jitter, not security)
            logger.warning("channel.send.retry", extra={"attempt": number, "delay": delay})
            await sleep(delay)
