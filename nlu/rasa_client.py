"""Rasa's HTTP API, as the gateway uses it.

Exceptions:
    DialogueError
     └── DialogueUnavailableError - Rasa unreachable, failing, or answering an empty list
                                    (the REST channel says 200 even when processing failed)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx


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


class RasaClient:
    def __init__(self, http: httpx.AsyncClient, *, base_url: str, token: str, timeout: float) -> None:
        self._http = http
        self._base = base_url.rstrip("/")
        self._token = token
        self._timeout = timeout

    def _conversation_url(self, sender: str, suffix: str) -> str:
        return f"{self._base}/conversations/{quote(sender, safe='')}/{suffix}"

    async def set_slots(
        self, sender: str, slots: Mapping[str, Any], *, new_session: bool = False
    ) -> None:
        """Set slots (language, channel...) before a turn; response conditions read them.

        With `new_session`, a session start goes first: without it Rasa would start one when
        the message arrives, and its SQL tracker store would forget the slots set before it.
        """
        events: list[dict[str, Any]] = []
        if new_session:
            events += [
                {"event": "action", "name": "action_session_start"},
                {"event": "session_started"},
                {"event": "action", "name": "action_listen"},
            ]
        events += [{"event": "slot", "name": name, "value": value} for name, value in slots.items()]
        await self._post(
            self._conversation_url(sender, "tracker/events"),
            json=events,
            params={"include_events": "NONE", "token": self._token},
        )

    async def send_text(self, sender: str, text: str, *, metadata: Mapping[str, Any]) -> list[BotUtterance]:
        return await self._turn(sender, neutralize(text) or "?", metadata)

    async def send_payload(
        self, sender: str, payload: str, *, metadata: Mapping[str, Any]
    ) -> list[BotUtterance]:
        """A button payload we generated ourselves ("/affirm"), passed as an intent on purpose."""
        return await self._turn(sender, payload, metadata)

    async def _turn(self, sender: str, message: str, metadata: Mapping[str, Any]) -> list[BotUtterance]:
        response = await self._post(
            f"{self._base}/webhooks/rest/webhook",
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
                f"{self._base}/status", params={"token": self._token}, timeout=5
            )
        except httpx.HTTPError:
            return False
        return response.status_code == 200 and bool(response.json().get("model_file"))
