"""Fake providers at the HTTP boundary: real httpx requests and responses, recorded.

`Router` is an httpx transport that sends each request to the fake registered for its host,
or on to a real transport (the real Rasa server in end-to-end tests).
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlsplit

import httpx

Handler = Callable[[httpx.Request], httpx.Response]


class Router(httpx.AsyncBaseTransport):
    def __init__(self, routes: dict[str, Handler], *, passthrough: bool = False) -> None:
        self.routes = routes
        self._real = httpx.AsyncHTTPTransport() if passthrough else None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        handler = self.routes.get(request.url.host) or self.routes.get(
            f"{request.url.host}:{request.url.port}"
        )
        if handler is not None:
            await request.aread()
            return handler(request)
        if self._real is not None:
            return await self._real.handle_async_request(request)
        return httpx.Response(599, text=f"no fake for {request.url.host}")

    async def aclose(self) -> None:
        if self._real is not None:
            await self._real.aclose()


@dataclass
class SentSms:
    to: str
    from_: str
    body: str


@dataclass
class FakeTwilioApi:
    """Twilio's Messages API: records every message, can fail on demand."""

    sent: list[SentSms] = field(default_factory=list)
    fail_with: list[int] = field(default_factory=list)  # statuses to answer, one per call
    calls: int = 0
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            self.calls += 1
            if not request.url.path.endswith("/Messages.json") or request.method != "POST":
                return httpx.Response(404, json={"code": 20404, "message": "not found"})
            if self.fail_with:
                code = self.fail_with.pop(0)
                return httpx.Response(code, json={"code": 20429, "message": "fake failure",
                                                  "status": code})
            form = dict(parse_qsl(request.content.decode()))
            self.sent.append(SentSms(form["To"], form.get("From", ""), form["Body"]))
            sid = f"SM{next(self._ids):032x}"
            return httpx.Response(201, json={"sid": sid, "status": "queued", "to": form["To"],
                                             "body": form["Body"]})

    def bodies_to(self, number: str) -> list[str]:
        with self._lock:
            return [m.body for m in self.sent if m.to == number]


@dataclass
class FakeRasa:
    """Rasa's REST channel and tracker-events API, answering from a script."""

    answer: Callable[[str, str], list[dict[str, object]]] = lambda sender, text: [
        {"recipient_id": sender, "text": f"echo: {text}"}
    ]
    down: bool = False
    received: list[tuple[str, str]] = field(default_factory=list)
    slots: list[tuple[str, dict[str, object]]] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if self.down:
            raise httpx.ConnectError("connection refused", request=request)
        path = urlsplit(str(request.url)).path
        body = json.loads(request.content or b"null")
        if path.endswith("/tracker/events"):
            sender = path.split("/")[2]
            slots = {e["name"]: e["value"] for e in body if e.get("event") == "slot"}
            self.slots.append((sender, slots))
            return httpx.Response(200, json={})
        if path == "/webhooks/rest/webhook":
            self.received.append((body["sender"], body["message"]))
            return httpx.Response(200, json=self.answer(body["sender"], body["message"]))
        return httpx.Response(404)
