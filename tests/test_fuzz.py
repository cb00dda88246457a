"""Fuzzing the gateway in-process: the JSON API against its OpenAPI schema, the webhooks with
validly signed random input.

* `test_json_api_answers_as_documented`: schemathesis generates at least 1000 cases per
  operation of the JSON API (/healthz, /internal/tips with the action server's token, /api/tips
  as a logged-in officer), valid and invalid, and checks every answer: never a server error,
  content type and body as the schema documents them (a status the schema does not list, such
  as FastAPI's 400 for an unparseable body, is not a failure).
* `test_*_webhook_*`: hypothesis sends 1000 random Twilio forms per Twilio channel (random
  keys and values, missing fields, huge values, Unicode, control characters), each signed with
  Twilio's RequestValidator, and 1000 random Telegram bodies with the right secret header
  (random nested JSON, wrong types, missing update_id, update-shaped junk). Never a server
  error, and a message is stored only when it has a usable sender and message id: anything
  else leaves the inbound, reporter and vault tables as they were.

Providers are fakes at the HTTP boundary; the worker is off, so nothing reaches a dialogue.
Hypothesis is derandomized (same examples every run) and keeps no example database.
"""

from __future__ import annotations

import copy
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
import schemathesis
from anyio.from_thread import BlockingPortal, start_blocking_portal
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute, iter_route_contexts
from hypothesis import HealthCheck, example, given, note, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
)
from sqlmodel import delete, func, select
from twilio.request_validator import RequestValidator

from bot.app import MAX_WEBHOOK_BYTES, create_app
from bot.console.auth import CSRF_HEADER, hash_token, session_cookie_name
from config import Settings
from storage import console as console_store
from storage.models import InboundMessage, Reporter, TipPublic, VaultEntry, utcnow
from tests.conftest import PUBLIC_BASE, TWILIO_TOKEN, make_settings, make_twilio_form, running
from tests.console.client import ensure_account
from tests.fakes import (
    TELEGRAM_TOKEN,
    FakeRasa,
    FakeTelegramApi,
    FakeTwilioMessaging,
    Router,
    make_telegram_update,
    make_whatsapp_form,
)

EXAMPLES = 1000
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
ACTIONS_TOKEN = "actions-token-for-tests"
TELEGRAM_SECRET = "telegram-webhook-secret-for-fuzzing"
ALL_CHANNELS = {"sms": True, "whatsapp": True, "telegram": True, "local": False}


def fuzz_settings(tmp: Path) -> Settings:
    return make_settings(
        tmp,
        channels=ALL_CHANNELS,
        telegram={"bot_token": TELEGRAM_TOKEN, "webhook_secret": TELEGRAM_SECRET, "mode": "webhook"},
        whatsapp={"sender": "whatsapp:+15550000000", "template_content_sid": "HX" + "1" * 32},
    )


def fake_providers() -> Router:
    return Router({"api.telegram.org": FakeTelegramApi(), "api.twilio.com": FakeTwilioMessaging(),
                   "rasa.test": FakeRasa()})


# --- The JSON API against its schema ---------------------------------------------------------

JSON_API_PREFIXES = ("/api/", "/internal/", "/healthz")


def json_api_schema(app: FastAPI) -> dict[str, Any]:
    """The app's OpenAPI schema with the officers' JSON API in it.

    The console's router keeps all its routes out of the schema, /api/tips included; the
    schema is built here from the app's own routes (so a new parameter is fuzzed at once), and
    /api/tips's answer is documented as what it returns: a list of TipPublic.
    """
    routes = []
    for context in iter_route_contexts(app.routes):  # included routers' routes too
        route = context.original_route
        if isinstance(route, APIRoute) and route.path.startswith(JSON_API_PREFIXES):
            routes.append(route if route.include_in_schema else _documented_copy(route))
    schema = get_openapi(title=app.title, version=app.version, routes=routes)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    tip_schema = TipPublic.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(tip_schema.pop("$defs", {}))
    components["TipPublic"] = tip_schema
    schema["paths"]["/api/tips"]["get"]["responses"]["200"]["content"] = {"application/json": {
        "schema": {"type": "array", "items": {"$ref": "#/components/schemas/TipPublic"}}}}
    return schema


def _documented_copy(route: APIRoute) -> APIRoute:
    documented = copy.copy(route)
    documented.include_in_schema = True
    return documented


@dataclass(frozen=True)
class Credentials:
    """What the JSON API's callers send: the action server's token, an officer's session."""

    headers: dict[str, str]


@pytest.fixture(scope="module")
def api_app(tmp_path_factory: pytest.TempPathFactory) -> FastAPI:
    app = create_app(fuzz_settings(tmp_path_factory.mktemp("fuzz-api")), transport=fake_providers(),
                     run_worker=False)
    documented = json_api_schema(app)
    app.openapi = lambda: documented  # type: ignore[method-assign]  # served at /openapi.json
    return app


@pytest.fixture(scope="module")
def json_api(api_app: FastAPI) -> Any:
    # Loading the schema through the app starts its lifespan (the database is migrated).
    return schemathesis.openapi.from_asgi("/openapi.json", api_app)


@pytest.fixture(scope="module")
def credentials(api_app: FastAPI, json_api: Any) -> Credentials:
    """An officer account and a live console session, made with the console's storage helpers."""
    db = api_app.state.db
    officer_id = ensure_account(db, username="fuzz-officer", password="fuzz-officer-password-1")
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    db.run_sync(lambda session: console_store.create_officer_session(
        session, token_hash=hash_token(token), officer_id=officer_id, csrf_token=csrf, now=utcnow()))
    cookie = session_cookie_name(api_app.state.settings)
    return Credentials({"Authorization": f"Bearer {ACTIONS_TOKEN}", "Cookie": f"{cookie}={token}",
                        CSRF_HEADER: csrf})


JSON_API_OPERATIONS = [("GET", "/healthz"), ("POST", "/internal/tips"), ("GET", "/api/tips")]
# Not status_code_conformance: FastAPI answers an unparseable body with 400, which no FastAPI
# schema documents; what matters is that no answer is a server error or differs from its schema.
CHECKS = [not_a_server_error, content_type_conformance, response_schema_conformance]


@pytest.mark.parametrize(("method", "path"), JSON_API_OPERATIONS)
def test_json_api_answers_as_documented(json_api: Any, credentials: Credentials, method: str,
                                        path: str) -> None:
    # Hypothesis directly, with schemathesis' strategies: its pytest integration (`from_fixture`)
    # does not run on pytest 9 (it reads `Function._nodeid`).
    operation = json_api[path][method]
    cases = st.one_of(operation.as_strategy(GenerationMode.POSITIVE),
                      operation.as_strategy(GenerationMode.NEGATIVE))

    sent = 0

    @FUZZ
    @given(case=cases)
    def answers_as_documented(case: Any) -> None:
        nonlocal sent
        sent += 1
        case.call_and_validate(headers=dict(credentials.headers), checks=CHECKS)

    answers_as_documented()
    # /healthz takes no input: hypothesis runs its one possible case and stops.
    assert sent >= (EXAMPLES if operation.body or any(operation.iter_parameters()) else 1)


# --- Webhooks: validly signed random input ---------------------------------------------------

# Any Unicode but lone surrogates (which no HTTP client can encode): control characters included.
TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=60)


class Huge(str):
    """A long value that shows itself short in hypothesis' reports."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"<{len(self)} x {self[:1]!r}>"


HUGE = st.builds(lambda char, size: Huge(char * size), st.characters(exclude_categories=("Cs",)),
                 st.integers(1_000, MAX_WEBHOOK_BYTES + 10_000))
TWILIO_FIELDS = (
    "MessageSid", "SmsSid", "SmsMessageSid", "AccountSid", "MessagingServiceSid", "From", "To",
    "Body", "NumMedia", "NumSegments", "FromCity", "FromState", "FromZip", "FromCountry",
    "ProfileName", "WaId", "MessageType", "ButtonPayload", "ButtonText", "ListId", "ListTitle",
    "Latitude", "Longitude", "MediaUrl0", "MediaContentType0", "SmsStatus", "ApiVersion",
)
TWILIO_VALUES = st.one_of(
    TEXT, HUGE,
    st.from_regex(r"\A(whatsapp:)?\+?[0-9]{1,15}\Z"),
    st.from_regex(r"\ASM[0-9a-f]{32}\Z"),
    st.integers(-10, 10**20).map(str),
    st.text(st.characters(categories=("Nd", "No")), min_size=1, max_size=4),  # "٣", "²"
    st.sampled_from(["", " ", "STOP", "1", "whatsapp:", "image/jpeg", "location", "-91.5", "12.5",
                     "https://api.twilio.com/2010-04-01/Accounts/AC/Messages/MM/Media/ME1"]),
)
RANDOM_FORMS = st.dictionaries(st.one_of(st.sampled_from(TWILIO_FIELDS), TEXT), TWILIO_VALUES,
                               max_size=16)


@st.composite
def mutated_forms(draw: st.DrawFn, channel: str) -> dict[str, str]:
    """A real-shaped webhook form of `channel` with fields dropped, replaced and added."""
    sid = draw(st.from_regex(r"\ASM[0-9a-f]{32}\Z"))
    body = draw(TEXT)
    if channel == "sms":
        form = make_twilio_form(body=body, from_=draw(st.from_regex(r"\A\+[1-9][0-9]{6,14}\Z")),
                                sid=sid)
    else:
        form = make_whatsapp_form(
            body=body, from_=draw(st.from_regex(r"\Awhatsapp:\+[1-9][0-9]{6,14}\Z")), sid=sid)
    for key in draw(st.lists(st.sampled_from(sorted(form)), max_size=4, unique=True)):
        if draw(st.booleans()):
            del form[key]
        else:
            form[key] = draw(TWILIO_VALUES)
    form.update(draw(st.dictionaries(st.one_of(st.sampled_from(TWILIO_FIELDS), TEXT),
                                     TWILIO_VALUES, max_size=3)))
    return form


def twilio_forms(channel: str) -> st.SearchStrategy[dict[str, str]]:
    return st.one_of(RANDOM_FORMS, mutated_forms(channel))


JSON_LEAVES = st.one_of(st.none(), st.booleans(), st.integers(), TEXT,
                        st.floats(allow_nan=False, allow_infinity=False))
RANDOM_JSON = st.recursive(
    JSON_LEAVES,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=20,
)
ANY_VALUE = st.one_of(JSON_LEAVES, RANDOM_JSON)
TELEGRAM_CHATS = st.fixed_dictionaries({}, optional={
    "id": st.one_of(st.integers(), ANY_VALUE),
    "type": st.one_of(st.sampled_from(["private", "group", "supergroup", "channel"]), ANY_VALUE),
    "username": ANY_VALUE, "first_name": ANY_VALUE, "title": ANY_VALUE,
})
TELEGRAM_MESSAGES = st.fixed_dictionaries({}, optional={
    "message_id": st.one_of(st.integers(), ANY_VALUE), "date": st.one_of(st.integers(), ANY_VALUE),
    "chat": st.one_of(TELEGRAM_CHATS, ANY_VALUE), "from": st.one_of(TELEGRAM_CHATS, ANY_VALUE),
    "text": ANY_VALUE, "caption": ANY_VALUE, "entities": ANY_VALUE, "location": ANY_VALUE,
    "photo": ANY_VALUE, "document": ANY_VALUE, "sticker": ANY_VALUE, "contact": ANY_VALUE,
})
TELEGRAM_UPDATES = st.fixed_dictionaries(
    {"update_id": st.one_of(st.integers(), ANY_VALUE)},
    optional={"message": st.one_of(TELEGRAM_MESSAGES, ANY_VALUE),
              "edited_message": st.one_of(TELEGRAM_MESSAGES, ANY_VALUE),
              "channel_post": ANY_VALUE, "my_chat_member": ANY_VALUE,
              "callback_query": st.fixed_dictionaries({}, optional={
                  "id": ANY_VALUE, "data": ANY_VALUE, "from": ANY_VALUE,
                  "message": st.one_of(TELEGRAM_MESSAGES, ANY_VALUE)})},
)


TELEGRAM_KINDS = ("text", "photo", "location", "voice", "document", "sticker", "poll", "contact",
                  "edited", "callback")


@st.composite
def real_updates(draw: st.DrawFn) -> dict[str, Any]:
    """A real Update (make_telegram_update) of any kind, with random text."""
    return make_telegram_update(
        kind=draw(st.sampled_from(TELEGRAM_KINDS)),
        text=draw(st.text(min_size=1, max_size=200).filter(str.strip)),
        update_id=draw(st.integers(1, 2**31)), chat_id=draw(st.integers(1, 2**40)),
        language_code=draw(st.sampled_from([None, "fr", "sw", "zz"])))


def _paths(value: object, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    if isinstance(value, dict):
        for key, inner in value.items():
            yield (*prefix, key)
            yield from _paths(inner, (*prefix, key))


@st.composite
def mutated_updates(draw: st.DrawFn) -> dict[str, Any]:
    """A real Update with fields anywhere in it dropped or given a value of another type."""
    update = draw(real_updates())
    for path in draw(st.lists(st.sampled_from(sorted(_paths(update))), min_size=1, max_size=3,
                              unique=True)):
        parent: Any = update
        for key in path[:-1]:
            parent = parent.get(key) if isinstance(parent, dict) else None
        if not isinstance(parent, dict) or path[-1] not in parent:
            continue  # under a field dropped already
        if draw(st.booleans()):
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(ANY_VALUE)
    return update


TELEGRAM_BODIES = st.one_of(
    RANDOM_JSON.map(lambda v: ("json", v)),
    TELEGRAM_UPDATES.map(lambda v: ("json", v)),
    mutated_updates().map(lambda v: ("json", v)),
    real_updates().map(lambda v: ("real update", v)),
    st.binary(max_size=200).map(lambda v: ("raw", v)),
)


@dataclass
class Stored:
    """Rows of the tables a webhook writes to."""

    inbound: int
    reporters: int
    vault: int

    def grew_by(self, before: Stored) -> tuple[int, int, int]:
        return (self.inbound - before.inbound, self.reporters - before.reporters,
                self.vault - before.vault)


@dataclass
class WebhookClient:
    """Posts to the running app from synchronous (hypothesis) tests: the app and its client
    live on an event loop in a portal thread."""

    app: FastAPI
    portal: BlockingPortal
    http: httpx.AsyncClient

    def forget_messages(self) -> None:
        """Empty the tables webhooks write to, so that every example starts alike (a stored
        message id would make the replay of a failing example a duplicate, and pass)."""

        def empty(session: Any) -> None:
            for model in (InboundMessage, Reporter, VaultEntry):
                session.exec(delete(model))
            session.commit()

        self.app.state.db.run_sync(empty)

    def stored(self) -> Stored:
        def count(session: Any) -> Stored:
            return Stored(*(session.exec(select(func.count()).select_from(model)).one()
                            for model in (InboundMessage, Reporter, VaultEntry)))

        result: Stored = self.app.state.db.run_sync(count)
        return result

    def twilio(self, channel: str, form: dict[str, str]) -> int:
        signature = RequestValidator(TWILIO_TOKEN).compute_signature(
            f"{PUBLIC_BASE}/webhooks/{channel}", form)
        return self._post(f"/webhooks/{channel}", data=form,
                          headers={"X-Twilio-Signature": signature})

    def telegram(self, kind: str, body: Any) -> int:
        headers = {"X-Telegram-Bot-Api-Secret-Token": TELEGRAM_SECRET}
        if kind != "raw":
            return self._post("/webhooks/telegram", json=body, headers=headers)
        return self._post("/webhooks/telegram", content=body,
                          headers={**headers, "Content-Type": "application/json"})

    def _post(self, path: str, **kwargs: Any) -> int:
        async def post() -> int:
            response = await self.http.post(path, **kwargs)
            return response.status_code

        return self.portal.call(post)


@pytest.fixture(scope="module")
def webhooks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebhookClient]:
    app = create_app(fuzz_settings(tmp_path_factory.mktemp("fuzz-webhooks")),
                     transport=fake_providers(), run_worker=False)
    with start_blocking_portal() as portal, portal.wrap_async_context_manager(running(app)) as http:
        yield WebhookClient(app, portal, http)


def usable_twilio_message(channel: str, form: dict[str, str]) -> str | None:
    """The provider message id if the form has a usable sender and message id, else None."""
    sender, sid = form.get("From", ""), form.get("MessageSid", "")
    if channel == "whatsapp":
        sender = sender.removeprefix("whatsapp:") if sender.startswith("whatsapp:") else ""
    return sid if sid and sender.strip() else None


def body_size(form: dict[str, str]) -> int:
    return len(urlencode(form).encode())


def check_twilio_webhook(webhooks: WebhookClient, channel: str, form: dict[str, str]) -> None:
    # Shown with a failure: the schemathesis plugin silences hypothesis' own example printing.
    note(f"form = {form!r}")
    webhooks.forget_messages()
    before = webhooks.stored()
    status = webhooks.twilio(channel, form)
    grew = webhooks.stored().grew_by(before)
    if body_size(form) > MAX_WEBHOOK_BYTES:
        assert (status, grew) == (413, (0, 0, 0))
        return
    assert status == 200, f"a validly signed form was answered {status}"
    if usable_twilio_message(channel, form) is None:
        assert grew == (0, 0, 0), f"stored from a form without a usable sender/id: {grew}"
    else:
        assert grew == (1, 1, 1), f"a usable message was not stored once: {grew}"


# Inputs the fuzzer found that fail (see the report in each test's failure); kept as explicit
# examples so they run first on every run, whatever the generated examples.
SMS_FOUND = ({"MessageSid": "SM1", "From": "+254700000001", "Body": Huge("x" * MAX_WEBHOOK_BYTES)},
             {"MessageSid": "SM1", "From": "+254700000001", "NumMedia": "²"},
             {"MessageSid": "SM1", "From": " "})
WHATSAPP_FOUND = ({"MessageSid": "SM1", "From": "whatsapp:"},
                  {"MessageSid": "SM1", "From": "whatsapp:+254700000001", "NumMedia": "²"})


def _changed(update: dict[str, Any], path: tuple[str, ...], value: object) -> tuple[str, Any]:
    """A real update with the field at `path` set to `value` (None: the JSON null)."""
    parent = update
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = value
    return ("json", update)


TELEGRAM_FOUND = (
    _changed(make_telegram_update(text="0", update_id=1, chat_id=1), ("message", "chat"), None),
    _changed(make_telegram_update(kind="edited", text="0", update_id=1, chat_id=1),
             ("edited_message", "chat"), None),
    _changed(make_telegram_update(kind="callback", update_id=1, chat_id=1),
             ("callback_query", "from"), None),
    _changed(make_telegram_update(kind="edited", text="0", update_id=1, chat_id=1),
             ("edited_message", "from", "language_code"), 1),
    _changed(make_telegram_update(kind="document", update_id=1, chat_id=1),
             ("message", "document", "mime_type"), True),
    _changed(make_telegram_update(kind="document", update_id=1, chat_id=1),
             ("message", "document", "file_size"), ""),
    _changed(make_telegram_update(text="0", update_id=1, chat_id=1), ("message", "chat", "id"), None),
    _changed(make_telegram_update(text="0", update_id=1, chat_id=1), ("update_id",), True),
)


def with_examples(name: str, found: tuple[object, ...]) -> Any:
    def decorate(test: Any) -> Any:
        for value in reversed(found):
            test = example(**{name: value})(test)
        return test

    return decorate


@with_examples("form", SMS_FOUND)
@FUZZ
@given(form=twilio_forms("sms"))
def test_sms_webhook_survives_any_signed_form(webhooks: WebhookClient, form: dict[str, str]) -> None:
    check_twilio_webhook(webhooks, "sms", form)


@with_examples("form", WHATSAPP_FOUND)
@FUZZ
@given(form=twilio_forms("whatsapp"))
def test_whatsapp_webhook_survives_any_signed_form(webhooks: WebhookClient,
                                                   form: dict[str, str]) -> None:
    check_twilio_webhook(webhooks, "whatsapp", form)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def usable_telegram_update(body: object) -> str | None:
    """The update_id if the update has one (an integer) and a private chat with an integer id
    in its message, edited message or callback query's message; else None."""
    if not isinstance(body, dict) or not _is_int(body.get("update_id")):
        return None
    callback = body.get("callback_query")
    carriers = [body.get("message"), body.get("edited_message"),
                callback.get("message") if isinstance(callback, dict) else None]
    for message in carriers:
        chat = message.get("chat") if isinstance(message, dict) else None
        if isinstance(chat, dict) and chat.get("type") == "private" and _is_int(chat.get("id")):
            return str(body["update_id"])
    return None


@with_examples("sent", TELEGRAM_FOUND)
@FUZZ
@given(sent=TELEGRAM_BODIES)
def test_telegram_webhook_survives_any_body(webhooks: WebhookClient, sent: tuple[str, Any]) -> None:
    kind, body = sent
    note(f"{kind} = {body!r}")  # see check_twilio_webhook
    webhooks.forget_messages()
    before = webhooks.stored()
    status = webhooks.telegram(kind, body)
    grew = webhooks.stored().grew_by(before)
    assert status == 200, f"an update with the right secret was answered {status}"
    if kind == "real update":
        assert grew == (1, 1, 1), f"a real text message was not stored once: {grew}"
    elif usable_telegram_update(body) is None:
        assert grew == (0, 0, 0), f"stored from an update without a usable sender/id: {grew}"
    else:  # a usable update may be nothing to answer (a service message): at most one row
        assert grew in ((0, 0, 0), (1, 1, 1)), grew
