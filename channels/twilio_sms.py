"""SMS through Twilio: signed webhooks in, Messages API out.

What it keeps of a webhook is declared in `KEPT_FIELDS`; everything else, including Twilio's
FromCity/FromState/FromZip/FromCountry and their To* twins, is dropped at parse time.
"""

from __future__ import annotations

import re
from typing import ClassVar

import httpx
from twilio.base.exceptions import TwilioRestException
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from channels.base import (
    ChannelAdapter,
    IncomingMessage,
    MessageKind,
    Reply,
    ReplyAddress,
    SendContext,
    SendError,
    WebhookAck,
    WebhookAuthError,
    WebhookRequest,
    render_numbered,
    send_with_retry,
)
from channels.twilio_http import HttpxTwilioClient

# Twilio concatenates up to 1600 characters into one message.
TWILIO_MAX_BODY = 1600
_EMPTY_TWIML = b'<?xml version="1.0" encoding="UTF-8"?><Response></Response>'


def split_for_sms(text: str, limit: int = TWILIO_MAX_BODY) -> list[str]:
    """Split on sentence (then word) boundaries so no part exceeds `limit` characters."""
    if len(text) <= limit:
        return [text]
    parts: list[str] = []
    current = ""
    for sentence in re.split(r"(?<=[.!?؟。\n])\s+", text):
        while len(sentence) > limit:
            cut = sentence.rfind(" ", 0, limit)
            cut = cut if cut > 0 else limit
            if current:
                parts.append(current)
                current = ""
            parts.append(sentence[:cut].rstrip())
            sentence = sentence[cut:].lstrip()
        candidate = f"{current} {sentence}".strip() if current else sentence
        if len(candidate) > limit:
            parts.append(current)
            current = sentence
        else:
            current = candidate
    if current:
        parts.append(current)
    return parts


class TwilioSmsAdapter(ChannelAdapter):
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
    ) -> None:
        self._validator = RequestValidator(auth_token)
        self._public_url = public_base_url.rstrip("/") + self.webhook_path
        self._sms_from = sms_from
        self._client = Client(
            account_sid, auth_token, http_client=HttpxTwilioClient(http)
        )

    def verify(self, request: WebhookRequest) -> None:
        signature = request.headers.get("x-twilio-signature", "")
        # Against the configured public URL: behind a proxy request.url is not what Twilio signed.
        if not signature or not self._validator.validate(
            self._public_url, dict(request.form), signature
        ):
            raise WebhookAuthError("channel.sms.signature_invalid")

    def parse(self, request: WebhookRequest) -> list[IncomingMessage]:
        kept = {key: request.form.get(key, "") for key in self.KEPT_FIELDS}
        if not kept["MessageSid"] or not kept["From"]:
            return []
        has_media = kept["NumMedia"] not in ("", "0")
        body = kept["Body"].strip()
        kind = MessageKind.TEXT if body and not has_media else MessageKind.UNSUPPORTED
        if body and has_media:
            kind = MessageKind.TEXT  # the words count; media handling is the channels issue
        return [
            IncomingMessage(
                channel=self.name,
                provider_message_id=kept["MessageSid"],
                reply_address=ReplyAddress(self.name, kept["From"]),
                kind=kind,
                text=body,
            )
        ]

    def ack(self) -> WebhookAck:
        # Empty TwiML: replies go out through the API once the dialogue has answered.
        return WebhookAck(body=_EMPTY_TWIML, media_type="application/xml")

    async def send(
        self, address: ReplyAddress, reply: Reply, context: SendContext | None = None
    ) -> None:
        for part in split_for_sms(render_numbered(reply)):
            await send_with_retry(lambda part=part: self._create(address.value, part))

    async def _create(self, to: str, body: str) -> None:
        try:
            await self._client.messages.create_async(to=to, from_=self._sms_from, body=body)
        except TwilioRestException as exc:
            raise SendError(f"twilio refused the message: {exc.code}") from exc
