"""SMS (and MMS) through Twilio: signed webhooks in, Messages API out.

What it keeps of a webhook is declared in `KEPT_FIELDS` (plus the numbered MediaUrlN /
MediaContentTypeN pairs); everything else, including Twilio's FromCity/FromState/FromZip/
FromCountry and their To* twins, is dropped at parse time. The helpers shared with the WhatsApp
adapter (keywords, media references) live here too.

Never logs a number, a body or a media URL.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Mapping
from types import MappingProxyType
from typing import ClassVar

import httpx
from twilio.base.exceptions import TwilioRestException
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from channels.base import (
    ChannelAdapter,
    Command,
    IncomingMessage,
    MediaRef,
    MessageKind,
    Reply,
    ReplyAddress,
    SendContext,
    SendError,
    WebhookAck,
    WebhookRequest,
    render_numbered,
    send_with_retry,
)
from channels.media import download_capped, media_kind
from channels.sms_segments import sms_segments, split_text
from channels.twilio_http import HttpxTwilioClient, verify_twilio_signature
from config.messages import normalize_keyword

logger = logging.getLogger(__name__)

# Twilio concatenates up to 1600 characters into one message.
TWILIO_MAX_BODY = 1600
# Twilio accepts at most 10 media per message.
TWILIO_MAX_MEDIA = 10
_EMPTY_TWIML = b'<?xml version="1.0" encoding="UTF-8"?><Response></Response>'

# Twilio's own opt-out keywords (Advanced Opt-Out defaults). Twilio acts on them at the carrier
# level for SMS whatever we do: after STOP it blocks our replies to that number (error 21610)
# and sends its own confirmation; START/UNSTOP lift the block; HELP/INFO get its auto-reply.
# It still forwards the message to our webhook, and we must agree with it: STOP also erases the
# conversation and the reply address on our side, so they are always commands here, in every
# language configuration.
TWILIO_STANDARD_KEYWORDS: Mapping[str, str] = MappingProxyType(
    {
        **dict.fromkeys(("stop", "stopall", "unsubscribe", "cancel", "end", "quit"), "delete"),
        **dict.fromkeys(("start", "unstop"), "resume"),
        **dict.fromkeys(("help", "info"), "help"),
    }
)


def split_for_sms(text: str, limit: int = TWILIO_MAX_BODY) -> list[str]:
    """Split on sentence (then word) boundaries so no part exceeds `limit` characters."""
    return split_text(text, limit)


def match_keyword(text: str, keywords: Mapping[str, str]) -> Command | None:
    """The command a whole message stands for, if it is exactly one keyword.

    "stop", " Stop! " and "ARRÊT." are commands; "stop them, they are armed" is not.
    `keywords` maps normalized keywords (config.messages.normalize_keyword) to command names.
    """
    if not text or len(text) > 40:  # no keyword is long; skip normalizing whole reports
        return None
    name = keywords.get(normalize_keyword(text))
    return Command(name) if name is not None else None


def media_refs(form: Mapping[str, str]) -> tuple[MediaRef, ...]:
    """MediaUrlN / MediaContentTypeN pairs; Twilio does not say how big the files are."""
    count = form.get("NumMedia", "0")
    # isdecimal() alone admits "²" and other digits int() refuses; Twilio sends 0-10.
    number = int(count) if count.isascii() and count.isdecimal() and len(count) <= 3 else 0
    refs: list[MediaRef] = []
    for index in range(min(number, TWILIO_MAX_MEDIA)):
        url = form.get(f"MediaUrl{index}", "")
        if not url.startswith("https://"):
            continue  # never fetch (with our credentials) anything but Twilio's HTTPS URLs
        content_type = form.get(f"MediaContentType{index}", "") or "application/octet-stream"
        refs.append(MediaRef(kind=media_kind(content_type), content_type=content_type,
                             provider_ref=url))
    return tuple(refs)


class TwilioSmsAdapter(ChannelAdapter):
    """SMS/MMS through one Twilio number or Messaging Service.

    Keyword-only constructor:
        account_sid, auth_token: the Twilio account (the token also checks webhook signatures).
        sms_from: the number (or Messaging Service SID) replies go out from.
        public_base_url: the URL Twilio calls, e.g. https://tips.example.org (signatures are
            computed over it + webhook_path, never over request.url).
        http: the app's single httpx.AsyncClient.
        keywords: normalized keyword -> command name (GatewayMessages.keywords()); Twilio's
            standard opt-out words are always added.
        max_media_bytes: largest MMS attachment fetch_media() will download.
        retry_sleep: how send() waits between retries (tests pass one that does not wait).
    """

    name: ClassVar[str] = "sms"
    webhook_path: ClassVar[str] = "/webhooks/sms"
    KEPT_FIELDS: ClassVar[frozenset[str]] = frozenset({"MessageSid", "From", "Body", "NumMedia"})

    def __init__(
        self,
        *,
        account_sid: str,
        auth_token: str,
        sms_from: str,
        public_base_url: str,
        http: httpx.AsyncClient,
        keywords: Mapping[str, str] | None = None,
        max_media_bytes: int = 10 * 1024 * 1024,
        retry_sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._retry_sleep = retry_sleep
        self._validator = RequestValidator(auth_token)
        self._public_url = public_base_url.rstrip("/") + self.webhook_path
        self._sms_from = sms_from
        self._keywords = {**dict(keywords or {}), **TWILIO_STANDARD_KEYWORDS}
        self._http = http
        self._auth = (account_sid, auth_token)
        self._max_media_bytes = max_media_bytes
        self._client = Client(account_sid, auth_token, http_client=HttpxTwilioClient(http))

    def verify(self, request: WebhookRequest) -> None:
        verify_twilio_signature(self._validator, self._public_url, request, channel=self.name)

    def parse(self, request: WebhookRequest) -> list[IncomingMessage]:
        kept = {key: request.form.get(key, "") for key in self.KEPT_FIELDS}
        kept["From"] = kept["From"].strip()
        if not kept["MessageSid"].strip() or not kept["From"]:
            return []  # nobody to answer: nothing to store
        body = kept["Body"].strip()
        attachments = media_refs(request.form)  # reads only NumMedia, MediaUrlN, MediaContentTypeN
        command = None if attachments else match_keyword(body, self._keywords)
        if command is not None:
            kind = MessageKind.COMMAND
        elif attachments:
            kind = MessageKind.MEDIA  # the body, if any, is the caption
        elif body:
            kind = MessageKind.TEXT
        else:
            kind = MessageKind.UNSUPPORTED
        return [
            IncomingMessage(
                channel=self.name,
                provider_message_id=kept["MessageSid"],
                reply_address=ReplyAddress(self.name, kept["From"]),
                kind=kind,
                text=body,
                attachments=attachments,
                command=command,
            )
        ]

    def ack(self) -> WebhookAck:
        # Empty TwiML: replies go out through the API once the dialogue has answered.
        return WebhookAck(body=_EMPTY_TWIML, media_type="application/xml")

    async def send(
        self, address: ReplyAddress, reply: Reply, context: SendContext | None = None
    ) -> None:
        for part in split_for_sms(render_numbered(reply)):
            await send_with_retry(
                functools.partial(self._create, address.value, part), sleep=self._retry_sleep
            )

    async def fetch_media(self, ref: MediaRef) -> bytes:
        # MMS media URLs need the account's credentials when HTTP auth for media is on; the
        # redirect to Twilio's CDN is followed without them.
        return await download_capped(
            self._http, ref.provider_ref, max_bytes=self._max_media_bytes, auth=self._auth
        )

    async def _create(self, to: str, body: str) -> None:
        try:
            await self._client.messages.create_async(to=to, from_=self._sms_from, body=body)
        except TwilioRestException as exc:
            # 21610: the number sent STOP; Twilio refuses until it sends START. Nothing to retry.
            raise SendError(f"twilio refused the message: {exc.code}") from exc
        encoding, segments = sms_segments(body)
        logger.debug("channel.sms.sent", extra={"encoding": encoding, "segments": segments})
