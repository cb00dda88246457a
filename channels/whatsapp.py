"""WhatsApp through Twilio: signed webhooks in, Messages API (free-form or template) out.

Inbound: the same signature check as SMS (X-Twilio-Signature over public_base_url + path).
What it keeps is declared in `KEPT_FIELDS` plus the numbered media fields; ProfileName (the
name the reporter gave WhatsApp), WaId (the number again), Address/Label of a shared place,
ReferralNumMedia/Referral*, Forwarded and the From*/To* location fields are dropped at parse
time.

Outbound: WhatsApp allows free-form messages only within 24 hours of the reporter's last
message. Outside that window only an approved template may be sent; Twilio rejects a body there
(error 63016), so this adapter never tries one: it sends the template by ContentSid, or raises.

Never logs a number, a profile name, a body or a media URL.
"""

from __future__ import annotations

import asyncio
import functools
import json
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import ClassVar

import httpx
from twilio.base.exceptions import TwilioRestException
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from channels.base import (
    ChannelAdapter,
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
from channels.media import download_capped
from channels.twilio_http import HttpxTwilioClient, verify_twilio_signature
from channels.twilio_sms import TWILIO_MAX_BODY, match_keyword, media_refs, split_for_sms

_EMPTY_TWIML = b'<?xml version="1.0" encoding="UTF-8"?><Response></Response>'
SESSION_WINDOW = timedelta(hours=24)
# A reply can wait in our queue and in Twilio's: do not aim at the last minute of the window.
WINDOW_MARGIN = timedelta(minutes=10)
# What WhatsApp sends as media but is not something a tip needs: a contact card names someone.
_UNSUPPORTED_MEDIA = frozenset({"text/vcard", "text/x-vcard"})
_UNSUPPORTED_TYPES = frozenset({"sticker", "contacts", "reaction", "unsupported", "order"})
# WhatsApp refuses template variables with newlines, tabs or more than four spaces in a row.
_TEMPLATE_VARIABLE_MAX = 1000


def _coordinate(value: str, bound: float) -> float | None:
    try:
        number = float(value)
    except ValueError:
        return None
    return number if -bound <= number <= bound else None


def _as_utc(moment: datetime) -> datetime:
    # SQLite hands back naive datetimes; everything we store is UTC.
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def template_safe(text: str, limit: int = _TEMPLATE_VARIABLE_MAX) -> str:
    """Flatten a reply into one template variable: one line, single spaces, bounded."""
    flat = re.sub(r"\s+", " ", text).strip()
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


class TwilioWhatsAppAdapter(ChannelAdapter):
    """WhatsApp Business through Twilio (same account as SMS).

    Keyword-only constructor:
        account_sid, auth_token: the Twilio account (the token also checks webhook signatures).
        sender: our WhatsApp sender, "whatsapp:+14155238886" (the prefix is added if missing).
        public_base_url: the URL Twilio calls; signatures are computed over it + webhook_path.
        http: the app's single httpx.AsyncClient.
        template_content_sid: approved template (Content API "HX...") for replies outside the
            24-hour window; "" means such replies raise SendError.
        template_text_variable: the template variable that receives the reply text, flattened
            to one line ("1" for a template like "A message from the tip line: {{1}}"); None
            for a template without variables ("We have a reply for you, write to us to read
            it"), which says nothing on a shared phone's lock screen.
        keywords: normalized keyword -> command name (GatewayMessages.keywords()).
        max_media_bytes: largest attachment fetch_media() will download.
        clock: returns the current time (tests pass a fixed one).
        retry_sleep: how send() waits between retries (tests pass one that does not wait).
    """

    name: ClassVar[str] = "whatsapp"
    webhook_path: ClassVar[str] = "/webhooks/whatsapp"
    KEPT_FIELDS: ClassVar[frozenset[str]] = frozenset(
        {"MessageSid", "From", "Body", "NumMedia", "Latitude", "Longitude", "ButtonPayload",
         "ButtonText", "ListId", "ListTitle", "MessageType"}
    )

    def __init__(
        self,
        *,
        account_sid: str,
        auth_token: str,
        sender: str,
        public_base_url: str,
        http: httpx.AsyncClient,
        template_content_sid: str = "",
        template_text_variable: str | None = "1",
        keywords: Mapping[str, str] | None = None,
        max_media_bytes: int = 10 * 1024 * 1024,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        retry_sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._retry_sleep = retry_sleep
        self._validator = RequestValidator(auth_token)
        self._public_url = public_base_url.rstrip("/") + self.webhook_path
        self._sender = sender if sender.startswith("whatsapp:") else f"whatsapp:{sender}"
        self._template_sid = template_content_sid
        self._template_variable = template_text_variable
        # No Twilio carrier-level keywords on WhatsApp: only the configured ones.
        self._keywords = dict(keywords or {})
        self._http = http
        self._auth = (account_sid, auth_token)
        self._max_media_bytes = max_media_bytes
        self._clock = clock
        self._client = Client(account_sid, auth_token, http_client=HttpxTwilioClient(http))

    def verify(self, request: WebhookRequest) -> None:
        verify_twilio_signature(self._validator, self._public_url, request, channel=self.name)

    def parse(self, request: WebhookRequest) -> list[IncomingMessage]:
        kept = {key: request.form.get(key, "") for key in self.KEPT_FIELDS}
        sender = kept["From"].strip()
        if (not kept["MessageSid"].strip() or not sender.startswith("whatsapp:")
                or not sender.removeprefix("whatsapp:").strip()):
            return []  # nobody to answer: nothing to store
        body = kept["Body"].strip()
        message = IncomingMessage(
            channel=self.name,
            provider_message_id=kept["MessageSid"],
            # The whole "whatsapp:+E164" string: it is what Twilio needs to reply.
            reply_address=ReplyAddress(self.name, sender),
            kind=MessageKind.UNSUPPORTED,
        )
        return [self._classify(message, kept, body, media_refs(request.form))]

    def _classify(
        self,
        message: IncomingMessage,
        kept: Mapping[str, str],
        body: str,
        attachments: tuple[MediaRef, ...],
    ) -> IncomingMessage:
        if kept["MessageType"].lower() in _UNSUPPORTED_TYPES:
            return message
        if kept["ButtonPayload"]:
            # A quick-reply button: the pipeline accepts the payload only if it offered it.
            return replace(message, kind=MessageKind.TEXT, text=kept["ButtonText"].strip() or body,
                           choice=kept["ButtonPayload"])
        if kept["ListId"]:  # a list-picker row: the same, under other field names
            return replace(message, kind=MessageKind.TEXT, text=kept["ListTitle"].strip() or body,
                           choice=kept["ListId"])
        latitude = _coordinate(kept["Latitude"], 90.0)
        longitude = _coordinate(kept["Longitude"], 180.0)
        if latitude is not None and longitude is not None:
            return replace(message, kind=MessageKind.LOCATION, location=(latitude, longitude))
        if attachments:
            if any(ref.content_type.lower() in _UNSUPPORTED_MEDIA for ref in attachments):
                return message
            return replace(message, kind=MessageKind.MEDIA, text=body, attachments=attachments)
        command = match_keyword(body, self._keywords)
        if command is not None:
            return replace(message, kind=MessageKind.COMMAND, text=body, command=command)
        if body:
            return replace(message, kind=MessageKind.TEXT, text=body)
        return message

    def ack(self) -> WebhookAck:
        return WebhookAck(body=_EMPTY_TWIML, media_type="application/xml")

    def window_open(self, context: SendContext | None) -> bool:
        """Whether a free-form reply is allowed: the reporter wrote within the last 24 hours."""
        if context is None or context.last_inbound_at is None:
            return False  # unknown: a body could be rejected (63016), the template cannot
        age = self._clock() - _as_utc(context.last_inbound_at)
        return age < SESSION_WINDOW - WINDOW_MARGIN

    async def send(
        self, address: ReplyAddress, reply: Reply, context: SendContext | None = None
    ) -> None:
        if self.window_open(context):
            for part in split_for_sms(render_numbered(reply), TWILIO_MAX_BODY):
                await send_with_retry(
                    functools.partial(self._create_body, address.value, part),
                    sleep=self._retry_sleep,
                )
            return
        if not self._template_sid:
            raise SendError(
                "whatsapp: the 24-hour window is closed and no template is configured "
                "(set TIPLINE_WHATSAPP__TEMPLATE_CONTENT_SID to an approved template)"
            )
        variables: dict[str, str] = {}
        if self._template_variable is not None:
            variables[self._template_variable] = template_safe(render_numbered(reply))
        await send_with_retry(
            functools.partial(self._create_template, address.value, variables),
            sleep=self._retry_sleep,
        )

    async def fetch_media(self, ref: MediaRef) -> bytes:
        return await download_capped(
            self._http, ref.provider_ref, max_bytes=self._max_media_bytes, auth=self._auth
        )

    async def _create_body(self, to: str, body: str) -> None:
        try:
            await self._client.messages.create_async(to=to, from_=self._sender, body=body)
        except TwilioRestException as exc:
            raise SendError(f"twilio refused the whatsapp message: {exc.code}") from exc

    async def _create_template(self, to: str, variables: dict[str, str]) -> None:
        extra: dict[str, str] = {}
        if variables:
            extra["content_variables"] = json.dumps(variables, ensure_ascii=False)
        try:
            # No body: outside the window WhatsApp accepts nothing but the approved template.
            await self._client.messages.create_async(
                to=to, from_=self._sender, content_sid=self._template_sid, **extra
            )
        except TwilioRestException as exc:
            raise SendError(f"twilio refused the whatsapp template: {exc.code}") from exc
