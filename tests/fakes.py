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


# --- Telegram ------------------------------------------------------------------------------

TELEGRAM_TOKEN = "123456789:AAEfakeTokenForTestsOnly_abcdefghijk"
_update_ids = itertools.count(100_000)
_telegram_message_ids = itertools.count(1)

# What a fake call can be told to do instead of answering: an HTTP status (429 carries
# retry_after), or an httpx exception class to raise (httpx.ReadTimeout, httpx.ConnectError).
TelegramFailure = int | type[httpx.TransportError]


@dataclass
class TelegramCall:
    method: str
    params: dict[str, object]


@dataclass
class FakeTelegramApi:
    """The Bot API at api.telegram.org: records calls, serves files and updates, fails on demand.

    Parameters arrive form-encoded (python-telegram-bot) or as JSON (our getUpdates); nested
    values such as reply_markup are decoded from their JSON strings.
    """

    token: str = TELEGRAM_TOKEN
    calls: list[TelegramCall] = field(default_factory=list)
    # file_id -> (file_path, content); getFile answers with len(content) as file_size.
    files: dict[str, tuple[str, bytes]] = field(default_factory=dict)
    updates: list[dict[str, object]] = field(default_factory=list)  # served by getUpdates
    failures: dict[str, list[TelegramFailure]] = field(default_factory=dict)
    retry_after: int = 1
    downloads: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def fail(self, method: str, *outcomes: TelegramFailure) -> None:
        """The next calls of `method` fail, one outcome per call, in order."""
        self.failures.setdefault(method, []).extend(outcomes)

    def add_file(self, file_id: str, content: bytes, file_path: str = "photos/file_1.jpg") -> None:
        self.files[file_id] = (file_path, content)

    def calls_to(self, method: str) -> list[TelegramCall]:
        with self._lock:
            return [c for c in self.calls if c.method == method]

    @property
    def sent(self) -> list[dict[str, object]]:
        return [c.params for c in self.calls_to("sendMessage")]

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        with self._lock:
            if path.startswith("/file/"):
                return self._download(path)
            prefix, _, method = path.lstrip("/").partition("/")
            if prefix != f"bot{self.token}":
                return httpx.Response(401, json={"ok": False, "error_code": 401,
                                                 "description": "Unauthorized"})
            params = self._params(request)
            self.calls.append(TelegramCall(method, params))
            pending = self.failures.get(method)
            if pending:
                outcome = pending.pop(0)
                if isinstance(outcome, int):
                    return self._error(outcome)
                raise outcome("fake failure", request=request)
            handler = getattr(self, f"_m_{method}", None)
            if handler is None:
                return httpx.Response(404, json={"ok": False, "error_code": 404,
                                                 "description": "Not Found"})
            return httpx.Response(200, json={"ok": True, "result": handler(params)})

    @staticmethod
    def _params(request: httpx.Request) -> dict[str, object]:
        if request.headers.get("content-type", "").startswith("application/json"):
            loaded = json.loads(request.content or b"{}")
            return dict(loaded) if isinstance(loaded, dict) else {}
        params: dict[str, object] = {}
        for key, value in parse_qsl(request.content.decode()):
            try:
                params[key] = json.loads(value) if value[:1] in "[{" else value
            except ValueError:
                params[key] = value
        return params

    def _error(self, status: int) -> httpx.Response:
        body: dict[str, object] = {"ok": False, "error_code": status,
                                   "description": f"fake failure {status}"}
        if status == 429:
            body["description"] = f"Too Many Requests: retry after {self.retry_after}"
            body["parameters"] = {"retry_after": self.retry_after}
        return httpx.Response(status, json=body)

    def _download(self, path: str) -> httpx.Response:
        prefix = f"/file/bot{self.token}/"
        if not path.startswith(prefix):
            return httpx.Response(401)
        wanted = path[len(prefix):]
        for file_path, content in self.files.values():
            if file_path == wanted:
                self.downloads += 1
                return httpx.Response(200, content=content)
        return httpx.Response(404)

    def _m_sendMessage(self, params: dict[str, object]) -> dict[str, object]:
        chat_id = int(str(params["chat_id"]))
        message: dict[str, object] = {
            "message_id": next(_telegram_message_ids),
            "date": 1_700_000_000,
            "chat": {"id": chat_id, "type": "private"},
            "from": {"id": 1, "is_bot": True, "first_name": "Tip line", "username": "tip_bot"},
            "text": params["text"],
        }
        if "reply_markup" in params:
            message["reply_markup"] = params["reply_markup"]
        return message

    def _m_getFile(self, params: dict[str, object]) -> dict[str, object]:
        file_id = str(params["file_id"])
        file_path, content = self.files[file_id]
        return {"file_id": file_id, "file_unique_id": f"u{file_id}", "file_size": len(content),
                "file_path": file_path}

    def _m_getUpdates(self, params: dict[str, object]) -> list[dict[str, object]]:
        offset = params.get("offset")
        if isinstance(offset, int | str):
            # Telegram forgets confirmed updates once a later offset is asked for.
            self.updates = [u for u in self.updates if int(str(u["update_id"])) >= int(offset)]
        return list(self.updates)

    def _m_deleteWebhook(self, params: dict[str, object]) -> bool:
        return True

    def _m_deleteMessage(self, params: dict[str, object]) -> bool:
        return True

    def _m_answerCallbackQuery(self, params: dict[str, object]) -> bool:
        return True


TELEGRAM_PERSON = {"first_name": "Amina", "last_name": "Odhiambo", "username": "amina_o"}


def make_telegram_update(
    *,
    text: str = "hello",
    chat_id: int = 555_000_111,
    update_id: int | None = None,
    language_code: str | None = "fr",
    kind: str = "text",
    chat_type: str = "private",
    caption: str | None = None,
    file_size: int = 50_000,
    file_id: str = "AgACAgQAAxkBAAIB",
    mime_type: str = "application/pdf",
    latitude: float = -1.2921,
    longitude: float = 36.8219,
    callback_data: str = "choice-1",
    buttons: list[tuple[str, str]] | None = None,
) -> dict[str, object]:
    """Real Bot API Update JSON, with the identifying fields Telegram sends (to prove we drop
    them): from.username/first_name/last_name and the same in a private chat object.

    kind: text | photo | location | voice | document | sticker | poll | contact | edited |
    callback.
    """
    user: dict[str, object] = {"id": chat_id, "is_bot": False, **TELEGRAM_PERSON}
    if language_code is not None:
        user["language_code"] = language_code
    if chat_type == "private":
        chat: dict[str, object] = {"id": chat_id, "type": "private", **TELEGRAM_PERSON}
    else:
        chat = {"id": -abs(chat_id), "type": chat_type, "title": "Neighbourhood watch"}
    message: dict[str, object] = {
        "message_id": next(_telegram_message_ids),
        "date": 1_700_000_000,
        "chat": chat,
        "from": user,
    }
    if kind in ("text", "edited"):
        message["text"] = text
        if text.startswith("/"):
            command = text.split()[0]
            message["entities"] = [{"type": "bot_command", "offset": 0, "length": len(command)}]
    elif kind == "photo":
        message["photo"] = [
            {"file_id": f"{file_id}-s", "file_unique_id": "s1", "width": 90, "height": 60,
             "file_size": 1_200},
            {"file_id": file_id, "file_unique_id": "l1", "width": 1280, "height": 853,
             "file_size": file_size},
            {"file_id": f"{file_id}-m", "file_unique_id": "m1", "width": 320, "height": 213,
             "file_size": 9_000},
        ]
    elif kind == "location":
        message["location"] = {"latitude": latitude, "longitude": longitude}
    elif kind == "voice":
        message["voice"] = {"file_id": file_id, "file_unique_id": "v1", "duration": 7,
                            "mime_type": "audio/ogg", "file_size": file_size}
    elif kind == "document":
        message["document"] = {"file_id": file_id, "file_unique_id": "d1",
                               "file_name": "Amina Odhiambo statement.pdf",
                               "mime_type": mime_type, "file_size": file_size}
    elif kind == "sticker":
        message["sticker"] = {"file_id": file_id, "file_unique_id": "st1", "type": "regular",
                              "width": 512, "height": 512, "is_animated": False,
                              "is_video": False, "emoji": "👍", "file_size": 20_000}
    elif kind == "poll":
        message["poll"] = {"id": "5001", "question": "Which road?", "options": [
            {"text": "North", "voter_count": 0}, {"text": "South", "voter_count": 0}],
            "total_voter_count": 0, "is_closed": False, "is_anonymous": True,
            "type": "regular", "allows_multiple_answers": False, "allows_revoting": False,
            "members_only": False}
    elif kind == "contact":
        message["contact"] = {"phone_number": "+254722000111", "first_name": "Juma",
                              "last_name": "Kariuki", "user_id": 777_000_222}
    elif kind != "callback":
        raise ValueError(f"unknown kind {kind!r}")
    if caption is not None:
        message["caption"] = caption

    update: dict[str, object] = {"update_id": update_id if update_id is not None
                                 else next(_update_ids)}
    if kind == "edited":
        message["edit_date"] = 1_700_000_060
        update["edited_message"] = message
    elif kind == "callback":
        keyboard = buttons or [("Yes", callback_data), ("No", "choice-2")]
        bot_message = {
            "message_id": next(_telegram_message_ids),
            "date": 1_700_000_000,
            "chat": chat,
            "from": {"id": 1, "is_bot": True, "first_name": "Tip line", "username": "tip_bot"},
            "text": "Is anyone in danger now?",
            "reply_markup": {"inline_keyboard": [[{"text": title, "callback_data": data}]
                                                 for title, data in keyboard]},
        }
        update["callback_query"] = {"id": "4382bfdwdsb323b2d9", "from": user,
                                    "chat_instance": "-88990011", "message": bot_message,
                                    "data": callback_data}
    else:
        update["message"] = message
    return update


# --- Twilio: WhatsApp/templates and media downloads -----------------------------------------

TWILIO_MEDIA_CDN = "media.twiliocdn.test"


@dataclass
class FakeTwilioMedia:
    """Twilio media: api.twilio.com/.../Media/ME... (basic auth) redirects to a CDN host.

    Register it for both hosts: Router({"api.twilio.com": messaging, TWILIO_MEDIA_CDN: media})
    with FakeTwilioMessaging(media=media) delegating the /Media/ paths.
    """

    account_sid: str = "AC" + "0" * 32
    auth_token: str = "f" * 32
    files: dict[str, bytes] = field(default_factory=dict)
    require_auth: bool = True
    cdn_saw_authorization: bool = False
    requests: int = 0
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def add(self, content: bytes) -> str:
        """Store a file; returns its MediaUrl as Twilio puts it in the webhook."""
        media_sid = f"ME{next(self._ids):032x}"
        self.files[media_sid] = content
        return (f"https://api.twilio.com/2010-04-01/Accounts/{self.account_sid}/Messages/"
                f"MM{'1' * 32}/Media/{media_sid}")

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        media_sid = request.url.path.rsplit("/", 1)[-1]
        if request.url.host == TWILIO_MEDIA_CDN:
            self.cdn_saw_authorization |= "authorization" in request.headers
            content = self.files.get(media_sid)
            return httpx.Response(200, content=content) if content is not None else \
                httpx.Response(404)
        if self.require_auth:
            import base64

            credentials = base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode())
            if request.headers.get("authorization") != f"Basic {credentials.decode()}":
                return httpx.Response(401, json={"code": 20003, "message": "Authenticate"})
        if media_sid not in self.files:
            return httpx.Response(404)
        return httpx.Response(307, headers={"location": f"https://{TWILIO_MEDIA_CDN}/{media_sid}"})


@dataclass
class FakeTwilioMessaging(FakeTwilioApi):
    """FakeTwilioApi that also takes template sends (ContentSid, no Body), records every form,
    can raise transport errors, and serves media through a FakeTwilioMedia."""

    forms: list[dict[str, str]] = field(default_factory=list)
    raise_on_call: list[type[httpx.TransportError]] = field(default_factory=list)
    media: FakeTwilioMedia | None = None

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if "/Media/" in request.url.path and self.media is not None:
            return self.media(request)
        with self._lock:
            self.calls += 1
            if self.raise_on_call:
                raise self.raise_on_call.pop(0)("fake failure", request=request)
            if not request.url.path.endswith("/Messages.json") or request.method != "POST":
                return httpx.Response(404, json={"code": 20404, "message": "not found"})
            if self.fail_with:
                code = self.fail_with.pop(0)
                return httpx.Response(code, json={"code": 20429, "message": "fake failure",
                                                  "status": code})
            form = dict(parse_qsl(request.content.decode()))
            self.forms.append(form)
            if "Body" in form:
                self.sent.append(SentSms(form["To"], form.get("From", ""), form["Body"]))
            sid = f"SM{next(self._ids):032x}"
            return httpx.Response(201, json={"sid": sid, "status": "queued", "to": form["To"],
                                             "body": form.get("Body", "")})


_whatsapp_sids = itertools.count(1)


def make_whatsapp_form(
    *,
    body: str = "hello",
    from_: str = "whatsapp:+254700000042",
    sid: str | None = None,
    media: list[tuple[str, str]] | None = None,
    **extra: str,
) -> dict[str, str]:
    """A real-shaped Twilio WhatsApp webhook form, with the fields we must drop (ProfileName,
    WaId). `media` is [(MediaUrl, content type)]."""
    sid = sid or f"SM{next(_whatsapp_sids):031x}w"
    form = {
        "SmsMessageSid": sid,
        "MessageSid": sid,
        "SmsSid": sid,
        "AccountSid": "AC" + "0" * 32,
        "MessagingServiceSid": "",
        "From": from_,
        "To": "whatsapp:+14155238886",
        "Body": body,
        "NumMedia": str(len(media or [])),
        "NumSegments": "1",
        "ProfileName": "Amina Odhiambo",
        "WaId": from_.removeprefix("whatsapp:+"),
        "MessageType": "text" if not media else "image",
        "SmsStatus": "received",
        "ReferralNumMedia": "0",
        "ApiVersion": "2010-04-01",
    }
    for index, (url, content_type) in enumerate(media or []):
        form[f"MediaUrl{index}"] = url
        form[f"MediaContentType{index}"] = content_type
    form.update(extra)
    return form
