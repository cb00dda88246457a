"""The local try-it chat: the same pipeline as the real channels, no provider needed.

Only registered in development mode. The browser (or the terminal chat) posts JSON
{"conversation": <random id>, "message_id": <random id>, "text": ...} and polls for replies,
which wait in memory.
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import ClassVar

from channels.base import (
    ChannelAdapter,
    IncomingMessage,
    MessageKind,
    Reply,
    ReplyAddress,
    SendContext,
    WebhookAuthError,
    WebhookRequest,
)


class LocalChatAdapter(ChannelAdapter):
    name: ClassVar[str] = "local"
    webhook_path: ClassVar[str] = "/try/messages"

    def __init__(self) -> None:
        self._outbox: defaultdict[str, list[Reply]] = defaultdict(list)

    def verify(self, request: WebhookRequest) -> None:
        # Same-origin JSON only: a cross-site form post cannot set this content type.
        if not request.headers.get("content-type", "").startswith("application/json"):
            raise WebhookAuthError("channel.local.not_json")

    def parse(self, request: WebhookRequest) -> list[IncomingMessage]:
        try:
            payload = json.loads(request.body or b"{}")
        except ValueError:
            return []
        if not isinstance(payload, dict):
            return []
        conversation = str(payload.get("conversation", ""))[:64]
        message_id = str(payload.get("message_id", ""))[:64]
        text = str(payload.get("text", "")).strip()[:4000]
        if not conversation or not message_id:
            return []
        return [
            IncomingMessage(
                channel=self.name,
                provider_message_id=message_id,
                reply_address=ReplyAddress(self.name, conversation),
                kind=MessageKind.TEXT if text else MessageKind.UNSUPPORTED,
                text=text,
            )
        ]

    async def send(
        self, address: ReplyAddress, reply: Reply, context: SendContext | None = None
    ) -> None:
        self._outbox[address.value].append(reply)

    def take_replies(self, conversation: str) -> list[Reply]:
        return self._outbox.pop(conversation, [])
