"""Twilio SMS webhook: signatures checked before parsing, identifying fields dropped."""

from __future__ import annotations

import httpx
from fastapi import FastAPI
from sqlmodel import select

from storage.db import new_session
from storage.models import InboundMessage
from tests.conftest import PUBLIC_BASE, make_twilio_form, post_sms, twilio_signature
from tests.fakes import FakeRasa, FakeTwilioApi


def stored_inbound(app: FastAPI) -> list[InboundMessage]:
    with new_session(app.state.db.engine) as session:
        return list(session.exec(select(InboundMessage)))


async def test_valid_signature_is_accepted_and_recorded(gateway: tuple[FastAPI, httpx.AsyncClient]) -> None:
    app, client = gateway
    response = await post_sms(client, make_twilio_form(body="hello"))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/xml")
    assert len(stored_inbound(app)) == 1


async def test_tampered_body_is_refused(gateway: tuple[FastAPI, httpx.AsyncClient]) -> None:
    app, client = gateway
    form = make_twilio_form(body="hello")
    signature = twilio_signature(form)
    form["Body"] = "hello, changed on the way"
    response = await post_sms(client, form, signature=signature)
    assert response.status_code == 403
    assert stored_inbound(app) == []


async def test_signature_for_another_url_is_refused(gateway: tuple[FastAPI, httpx.AsyncClient]) -> None:
    app, client = gateway
    form = make_twilio_form()
    signature = twilio_signature(form, url=f"{PUBLIC_BASE}/webhooks/other")
    assert (await post_sms(client, form, signature=signature)).status_code == 403
    # The URL the request actually arrived on is not what Twilio signs behind a proxy.
    signature = twilio_signature(form, url="http://gateway.test/webhooks/sms")
    assert (await post_sms(client, form, signature=signature)).status_code == 403
    assert stored_inbound(app) == []


async def test_missing_signature_is_refused(gateway: tuple[FastAPI, httpx.AsyncClient]) -> None:
    app, client = gateway
    response = await client.post("/webhooks/sms", data=make_twilio_form())
    assert response.status_code == 403
    assert stored_inbound(app) == []


async def test_signature_with_wrong_token_is_refused(gateway: tuple[FastAPI, httpx.AsyncClient]) -> None:
    app, client = gateway
    form = make_twilio_form()
    response = await post_sms(client, form, signature=twilio_signature(form, token="0" * 32))
    assert response.status_code == 403
    assert stored_inbound(app) == []


async def test_provider_retry_is_recorded_once_and_answered_once(
    gateway: tuple[FastAPI, httpx.AsyncClient], fake_twilio: FakeTwilioApi, fake_rasa: FakeRasa
) -> None:
    app, client = gateway
    form = make_twilio_form(body="men with guns near the well", from_="+254700000001")
    for _ in range(3):
        assert (await post_sms(client, form)).status_code == 200
    await app.state.pipeline.idle()
    assert len(stored_inbound(app)) == 1
    assert len(fake_rasa.received) == 1
    assert len(fake_twilio.bodies_to("+254700000001")) == 1


async def test_identifying_fields_are_not_stored(gateway: tuple[FastAPI, httpx.AsyncClient]) -> None:
    app, client = gateway
    await post_sms(client, make_twilio_form(body="hello", from_="+254711111111"))
    await app.state.pipeline.idle()
    with app.state.db.engine.connect() as conn:
        dump = "\n".join(str(row) for row in conn.exec_driver_sql("SELECT * FROM inbound_message"))
        dump += "\n".join(str(row) for row in conn.exec_driver_sql("SELECT * FROM reporter"))
    for value in ("254711111111", "NAIROBI", "00100"):
        assert value not in dump
