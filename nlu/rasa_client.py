"""Rasa's HTTP API, as the gateway uses it.

Which Rasa server answers can change while the gateway runs (`tipline flows reload` starts a
second server with the new model and switches to it), so the base URL may come from an async
provider. A turn asks for it once, at its start, and uses that server for both its calls.

Exceptions:
    DialogueError
     └── DialogueUnavailableError - Rasa unreachable, failing, or answering an empty list
                                    (the REST channel says 200 even when processing failed)
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx

logger = logging.getLogger(__name__)


class DialogueError(Exception):
    """Base of dialogue errors."""


class DialogueUnavailableError(DialogueError):
    """The turn did not happen; the message must be kept and tried again."""


@dataclass(frozen=True)
class BotUtterance:
    text: str
    buttons: tuple[tuple[str, str], ...] = ()  # (title, payload)
    custom: Mapping[str, Any] | None = field(default=None)


def neutralize(text: str) -> str:
    """A reporter's text must never be read as an intent: Rasa parses "/restart" as one."""
    return text.lstrip().lstrip("/").lstrip()


BaseUrl = str | Callable[[], Awaitable[str]]


class CachedBaseUrl:
    """An async base-URL provider that asks `load` at most once per `ttl` seconds.

    `load` returns None when nothing is published (then `fallback` serves) and may fail (the
    database may be down): the last known URL keeps serving, so a storage outage never
    stops the dialogue. Concurrent turns share one lookup.
    """

    def __init__(
        self, load: Callable[[], Awaitable[str | None]], *, fallback: str, ttl: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._load = load
        self._fallback = fallback
        self._ttl = ttl
        self._clock = clock
        self._value = fallback
        self._expires = float("-inf")
        self._lock = asyncio.Lock()

    async def __call__(self) -> str:
        if self._clock() < self._expires:
            return self._value
        async with self._lock:
            if self._clock() < self._expires:  # another turn refreshed it meanwhile
                return self._value
            try:
                self._value = await self._load() or self._fallback
            except Exception:
                logger.warning("dialogue.url.lookup_failed")
            self._expires = self._clock() + self._ttl
            return self._value


class RasaClient:
    def __init__(self, http: httpx.AsyncClient, *, base_url: BaseUrl, token: str, timeout: float) -> None:
        self._http = http
        self._base_url = base_url
        self._token = token
        self._timeout = timeout
        # The server each sender's turn started on: set_slots picks it, the message call
        # of the same turn uses it. The gateway runs one turn per sender at a time, so an
        # entry is never shared; it is overwritten by the sender's next turn.
        self._pinned: MutableMapping[str, str] = {}

    async def _resolve(self) -> str:
        base = self._base_url if isinstance(self._base_url, str) else await self._base_url()
        return base.rstrip("/")

    async def _turn_base(self, sender: str) -> str:
        """The server of this sender's current turn (picked by set_slots), or a fresh pick."""
        pinned = self._pinned.pop(sender, None)
        return pinned if pinned is not None else await self._resolve()

    def _conversation_url(self, base: str, sender: str, suffix: str) -> str:
        return f"{base}/conversations/{quote(sender, safe='')}/{suffix}"

    async def set_slots(
        self, sender: str, slots: Mapping[str, Any], *, new_session: bool = False
    ) -> None:
        """Set slots (language, channel...) before a turn; response conditions read them.

        With `new_session`, a session start goes first: without it Rasa would start one when
        the message arrives, and its SQL tracker store would forget the slots set before it.

        This is a turn's first call: it picks the server, and the turn's message goes there.
        """
        base = await self._resolve()
        self._pinned[sender] = base
        events: list[dict[str, Any]] = []
        if new_session:
            events += [
                {"event": "action", "name": "action_session_start"},
                {"event": "session_started"},
                {"event": "action", "name": "action_listen"},
            ]
        events += [{"event": "slot", "name": name, "value": value} for name, value in slots.items()]
        try:
            await self._post(
                self._conversation_url(base, sender, "tracker/events"),
                json=events,
                params={"include_events": "NONE", "token": self._token},
            )
        except DialogueUnavailableError:
            self._pinned.pop(sender, None)  # the turn is postponed; its retry picks afresh
            raise

    async def send_text(self, sender: str, text: str, *, metadata: Mapping[str, Any]) -> list[BotUtterance]:
        return await self._turn(sender, neutralize(text) or "?", metadata)

    async def send_payload(
        self, sender: str, payload: str, *, metadata: Mapping[str, Any]
    ) -> list[BotUtterance]:
        """A button payload we generated ourselves ("/affirm"), passed as an intent on purpose."""
        return await self._turn(sender, payload, metadata)

    async def _turn(self, sender: str, message: str, metadata: Mapping[str, Any]) -> list[BotUtterance]:
        base = await self._turn_base(sender)
        response = await self._post(
            f"{base}/webhooks/rest/webhook",
            json={"sender": sender, "message": message, "metadata": dict(metadata)},
        )
        body = response.json()
        if not isinstance(body, list) or not body:
            raise DialogueUnavailableError("rasa answered no utterance")
        return [self._utterance(item) for item in body if isinstance(item, dict)]

    @staticmethod
    def _utterance(item: Mapping[str, Any]) -> BotUtterance:
        buttons = tuple(
            (str(b.get("title", "")), str(b.get("payload", "")))
            for b in item.get("buttons") or []
            if isinstance(b, dict)
        )
        custom = item.get("custom")
        return BotUtterance(
            text=str(item.get("text") or ""),
            buttons=buttons,
            custom=custom if isinstance(custom, dict) else None,
        )

    async def _post(self, url: str, **kwargs: Any) -> httpx.Response:
        try:
            response = await self._http.post(url, timeout=self._timeout, **kwargs)
        except httpx.HTTPError as exc:
            raise DialogueUnavailableError(f"rasa unreachable: {type(exc).__name__}") from exc
        if response.status_code >= 400:
            raise DialogueUnavailableError(f"rasa answered {response.status_code}")
        return response

    async def is_ready(self) -> bool:
        """True once a model is loaded and the server answers."""
        try:
            response = await self._http.get(
                f"{await self._resolve()}/status", params={"token": self._token}, timeout=5
            )
        except httpx.HTTPError:
            return False
        return response.status_code == 200 and bool(response.json().get("model_file"))
