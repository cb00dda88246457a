"""Channel adapters: the only package that imports `telegram` or `twilio`.

Each adapter verifies a provider's webhook, parses it into one `IncomingMessage`, and sends
`Reply`s back. Adapters never call Rasa and never touch the database.
"""

from channels.base import (
    ChannelAdapter,
    ChannelError,
    Choice,
    Command,
    IncomingMessage,
    MediaRef,
    MessageKind,
    Reply,
    ReplyAddress,
    SendContext,
    SendError,
    SendUncertainError,
    WebhookAuthError,
    WebhookRequest,
)

__all__ = [
    "ChannelAdapter",
    "ChannelError",
    "Choice",
    "Command",
    "IncomingMessage",
    "MediaRef",
    "MessageKind",
    "Reply",
    "ReplyAddress",
    "SendContext",
    "SendError",
    "SendUncertainError",
    "WebhookAuthError",
    "WebhookRequest",
]
