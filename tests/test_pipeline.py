"""The pipeline against fake providers: ordering, retries, outages, choices."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from fastapi import FastAPI

from storage import repo
from tests.conftest import make_twilio_form, post_sms
from tests.fakes import FakeRasa, FakeTwilioApi


async def test_ten_concurrent_copies_make_one_turn_and_one_reply(
    gateway: tuple[FastAPI, httpx.AsyncClient], fake_twilio: FakeTwilioApi, fake_rasa: FakeRasa
) -> None:
    app, client = gateway
    form = make_twilio_form(body="armed men at the well", from_="+254700000301")
    responses = await asyncio.gather(*(post_sms(client, form) for _ in range(10)))
    assert all(r.status_code == 200 for r in responses)
    await app.state.pipeline.idle()
    assert len(fake_rasa.received) == 1
    assert fake_twilio.bodies_to("+254700000301") == ["echo: armed men at the well"]


async def test_copies_inside_a_batch_and_across_batches_make_one_turn_each(
    gateway: tuple[FastAPI, httpx.AsyncClient], fake_twilio: FakeTwilioApi, fake_rasa: FakeRasa,
    captured_logs: pytest.LogCaptureFixture,
) -> None:
    """Webhooks arriving together are recorded as one batch: a provider's copy inside it, or
    of a message an earlier batch recorded, is logged as a duplicate and stores nothing."""
    app, client = gateway
    number = "+254700000310"
    forms = [make_twilio_form(body=f"report {n}", from_=number) for n in range(3)]
    first = await asyncio.gather(*(post_sms(client, form) for form in forms * 3))
    again = await asyncio.gather(*(post_sms(client, form) for form in forms))
    assert all(r.status_code == 200 for r in first + again)
    await app.state.pipeline.idle()
    assert [text for _s, text in fake_rasa.received] == ["report 0", "report 1", "report 2"]
    assert fake_twilio.bodies_to(number) == ["echo: report 0", "echo: report 1", "echo: report 2"]
    duplicates = [r for r in captured_logs.records if r.getMessage() == "pipeline.inbound.duplicate"]
    assert len(duplicates) == 9
    assert not any("254700000310" in str(r.__dict__) for r in duplicates)


async def test_rasa_down_keeps_the_message_tells_the_reporter_and_catches_up(
    gateway: tuple[FastAPI, httpx.AsyncClient], fake_twilio: FakeTwilioApi, fake_rasa: FakeRasa
) -> None:
    app, client = gateway
    number = "+254700000302"
    await post_sms(client, make_twilio_form(body="Bonjour, il y a un problème au marché", from_=number))
    await app.state.pipeline.idle()
    fake_rasa.down = True
    await post_sms(client, make_twilio_form(body="des hommes armés sont arrivés ce matin", from_=number))
    await post_sms(client, make_twilio_form(body="ils sont encore là maintenant", from_=number))
    for _ in range(50):  # the first attempt fails and the reporter is told, once
        await asyncio.sleep(0.05)
        if len(fake_twilio.bodies_to(number)) == 2:
            break
    told = fake_twilio.bodies_to(number)[1]
    assert "Nous avons bien reçu votre message" in told  # in the conversation's language
    assert app.state.db.run_sync(repo.count_pending) == 2
    fake_rasa.down = False
    await asyncio.sleep(0.5)  # retry_seconds is 0.2 in tests
    await app.state.pipeline.idle(limit_seconds=10)
    assert app.state.db.run_sync(repo.count_pending) == 0
    texts = [text for _sender, text in fake_rasa.received]
    assert texts == [
        "Bonjour, il y a un problème au marché",
        "des hommes armés sont arrivés ce matin",
        "ils sont encore là maintenant",
    ]  # nothing lost, nothing doubled, in order
    bodies = fake_twilio.bodies_to(number)
    assert bodies[2:] == ["echo: des hommes armés sont arrivés ce matin",
                          "echo: ils sont encore là maintenant"]


async def test_a_number_answers_the_last_choices(
    gateway: tuple[FastAPI, httpx.AsyncClient], fake_twilio: FakeTwilioApi, fake_rasa: FakeRasa
) -> None:
    app, client = gateway
    fake_rasa.answer = lambda sender, text: [{
        "text": "Is anyone in danger right now?",
        "buttons": [{"title": "Yes", "payload": "/affirm"}, {"title": "No", "payload": "/deny"}],
    }]
    number = "+254700000303"
    await post_sms(client, make_twilio_form(body="shots near the school", from_=number))
    await app.state.pipeline.idle()
    assert fake_twilio.bodies_to(number) == ["Is anyone in danger right now?\n1. Yes\n2. No"]
    await post_sms(client, make_twilio_form(body="2", from_=number))
    await post_sms(client, make_twilio_form(body="7", from_=number))  # not a choice: plain text
    await app.state.pipeline.idle()
    assert [text for _s, text in fake_rasa.received] == ["shots near the school", "/deny", "7"]


async def test_reporter_text_starting_with_a_slash_is_not_an_intent(
    gateway: tuple[FastAPI, httpx.AsyncClient], fake_rasa: FakeRasa
) -> None:
    app, client = gateway
    await post_sms(client, make_twilio_form(body="/restart", from_="+254700000304"))
    await post_sms(client, make_twilio_form(body="  //affirm please", from_="+254700000305"))
    await app.state.pipeline.idle()
    assert sorted(text for _s, text in fake_rasa.received) == ["affirm please", "restart"]


async def test_the_dialogue_gets_the_pseudonym_and_language_never_the_number(
    gateway: tuple[FastAPI, httpx.AsyncClient], fake_rasa: FakeRasa
) -> None:
    app, client = gateway
    await post_sms(client, make_twilio_form(body="Des voleurs ont pris les motos hier soir",
                                            from_="+22370000306"))
    await app.state.pipeline.idle()
    sender, _text = fake_rasa.received[0]
    assert "22370000306" not in sender and len(sender) == 64
    slot_sender, slots = fake_rasa.slots[0]
    assert slot_sender == sender
    assert slots["language"] == "fr"
    assert slots["channel"] == "sms"
    assert slots["contact"] == "first"


async def test_an_empty_rasa_answer_is_a_failure_not_a_silent_drop(
    gateway: tuple[FastAPI, httpx.AsyncClient], fake_twilio: FakeTwilioApi, fake_rasa: FakeRasa
) -> None:
    app, client = gateway
    fake_rasa.answer = lambda sender, text: []
    await post_sms(client, make_twilio_form(body="hello there", from_="+254700000307"))
    for _ in range(40):
        await asyncio.sleep(0.05)
        if fake_twilio.bodies_to("+254700000307"):
            break
    assert app.state.db.run_sync(repo.count_pending) == 1
    assert "We received your message" in fake_twilio.bodies_to("+254700000307")[0]


async def test_holding_a_reporter_delays_their_turns_until_released(
    gateway: tuple[FastAPI, httpx.AsyncClient], fake_rasa: FakeRasa, settings: object
) -> None:
    """Retention prunes a reporter's Rasa tracker under this hold: no turn may run meanwhile."""
    from bot.privacy import pseudonymize

    app, client = gateway
    number = "+254700000308"
    reporter_id = pseudonymize(settings.privacy.pepper.get_secret_value(), "sms", number)  # type: ignore[attr-defined]
    async with app.state.pipeline.hold(reporter_id):
        await post_sms(client, make_twilio_form(body="a message during the hold", from_=number))
        await asyncio.sleep(1.5)  # the worker polls every second: it had its chance
        assert fake_rasa.received == []
    await app.state.pipeline.idle()
    assert [text for _s, text in fake_rasa.received] == ["a message during the hold"]


async def test_a_database_outage_loses_no_sms(
    gateway: tuple[FastAPI, httpx.AsyncClient], fake_twilio: FakeTwilioApi, fake_rasa: FakeRasa,
    settings: object,
) -> None:
    """Twilio does not retry a failed SMS webhook: while the database is gone the message
    waits in the encrypted spool, and is processed (once) when the database is back."""
    from pathlib import Path

    app, client = gateway
    db_file = Path(settings.database.url.split("///", 1)[1])  # type: ignore[attr-defined]
    number = "+254700000309"
    # The main file goes first and comes back last: a connection opened meanwhile finds no
    # database (and creates none), never a database without its WAL.
    away = sorted(db_file.parent.glob(db_file.name + "*"), key=lambda p: p != db_file)
    app.state.db.engine.dispose()
    for path in away:
        path.rename(path.with_name(path.name + ".away"))
    try:
        form = make_twilio_form(body="the armed men came back tonight", from_=number)
        response = await post_sms(client, form)
        assert response.status_code == 200  # answered: the provider will not resend
        spooled = b"".join(p.read_bytes() for p in (db_file.parent / "spool").glob("spool-*.bin"))
        assert spooled and b"armed men" not in spooled and b"254700000309" not in spooled
        # The gateway did not write into a new, empty database instead.
        assert not [p for p in db_file.parent.glob(db_file.name + "*")
                    if not p.name.endswith(".away")]
    finally:
        app.state.db.engine.dispose()
        for path in reversed(away):
            path.with_name(path.name + ".away").rename(path)
    for _ in range(60):
        await asyncio.sleep(0.1)
        if fake_twilio.bodies_to(number):
            break
    await app.state.pipeline.idle()
    assert [text for _s, text in fake_rasa.received] == ["the armed men came back tonight"]
    assert fake_twilio.bodies_to(number) == ["echo: the armed men came back tonight"]
    assert not list((db_file.parent / "spool").glob("spool-*.bin"))
    await post_sms(client, form)  # the provider's retry after all: still one turn, one reply
    await app.state.pipeline.idle()
    assert len(fake_rasa.received) == 1 and len(fake_twilio.bodies_to(number)) == 1
