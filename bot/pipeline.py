"""The message pipeline: the one place that knows the order of the steps.

Request path (in the webhook, fast):
    verify -> parse          adapter.receive(), 403 on failure, nothing stored
    pseudonymize             reporter_id = HMAC(pepper, channel:address); address sealed
    record                   inbound row (unique provider id: retries are no-ops) + vault,
                             one transaction; then the webhook answers 2xx
Worker path (per reporter, strictly in arrival order):
    language -> dialogue -> reply -> done

If Rasa is down the message stays pending and is retried with backoff; the reporter is told
once, in their language, that it was received. Nothing here logs a text or an address.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from bot.privacy import VaultCipher, VaultError, pseudonymize
from channels import (
    ChannelAdapter,
    Choice,
    Command,
    IncomingMessage,
    MediaRef,
    MessageKind,
    Reply,
    ReplyAddress,
    SendContext,
    SendError,
    WebhookRequest,
)
from channels.base import WebhookAck
from channels.media import MediaError, MediaTooLargeError, Scrubbed, scrub
from config.messages import GatewayMessages, normalize_keyword
from nlu.language import LanguageDetector, choose_conversation_language
from nlu.rasa_client import BotUtterance, DialogueUnavailableError, RasaClient
from storage import console as console_store
from storage import repo
from storage.db import Connection, Database, GroupCommit, Session, run_in_thread
from storage.models import InboundMessage, Reporter, Tip, utcnow
from storage.spool import Spool

logger = logging.getLogger(__name__)


# Payload prefixes of choices handled here, never sent to Rasa: the language menu, and the
# "tell me when you act" question after a receipt ("notify:K7QM-3XPA", "notify:no").
LANGUAGE_CHOICE = "lang:"
NOTIFY_CHOICE = "notify:"
_RECEIPT = re.compile(r"^[A-Z2-9]{4}-?[A-Z2-9]{4}$")

# Messages that get a polite answer and nothing else (the key of the answer's text).
_POLITE_REFUSALS = {
    MessageKind.UNSUPPORTED: "unsupported_content",
    MessageKind.TOO_LARGE: "too_large",
    MessageKind.EDITED: "edited_not_processed",  # never a second tip from an edit
}


@dataclass
class Turn:
    """One message being processed, with what the worker looked up for it."""

    inbound: InboundMessage
    reporter: Reporter
    address: ReplyAddress | None
    adapter: ChannelAdapter | None


def message_details(message: IncomingMessage) -> dict[str, Any]:
    """What the worker needs besides the text, in a JSON-safe form for the inbound row."""
    details: dict[str, Any] = {}
    if message.command is not None:
        details["command"] = message.command.value
    if message.choice is not None:
        details["choice"] = message.choice
    if message.location is not None:
        details["location"] = list(message.location)
    if message.attachments:
        details["attachments"] = [
            {"kind": a.kind, "content_type": a.content_type, "ref": a.provider_ref, "size": a.size}
            for a in message.attachments
        ]
    return details


@dataclass(frozen=True)
class PipelineConfig:
    pepper: str
    emergency_number: str
    languages: tuple[str, ...]
    vault_days: int = 30
    retry_seconds: float = 5.0
    max_retry_seconds: float = 300.0
    poll_seconds: float = 1.0
    # Silence after which a reporter's next message starts a new conversation.
    conversation_hours: float = 12.0
    panic_words: frozenset[str] = frozenset()  # normalized (config.messages.normalize_keyword)
    rate_limit_messages: int = 30
    rate_limit_window_seconds: int = 600
    concurrency: int = 8


def merge_utterances(utterances: Sequence[BotUtterance]) -> Reply | None:
    """One turn, one reply: separate provider messages can arrive out of order."""
    texts = [u.text for u in utterances if u.text]
    buttons = next((u.buttons for u in reversed(utterances) if u.buttons), ())
    if not texts and not buttons:
        return None
    return Reply("\n\n".join(texts), tuple(Choice(title, payload) for title, payload in buttons))


class Pipeline:
    def __init__(
        self,
        *,
        adapters: Mapping[str, ChannelAdapter],
        db: Database,
        rasa: RasaClient,
        detector: LanguageDetector,
        cipher: VaultCipher,
        messages: GatewayMessages,
        config: PipelineConfig,
        clock: Callable[[], datetime] = utcnow,
        forget_dialogue: Callable[[str], object] | None = None,
        spool: Spool | None = None,
    ) -> None:
        self.adapters = dict(adapters)
        self._db = db
        self._rasa = rasa
        self._detector = detector
        self._cipher = cipher
        self._messages = messages
        self._config = config
        self._clock = clock
        # Deletes a reporter's conversation from the dialogue's tracker store (blocking call).
        self._forget_dialogue = forget_dialogue
        self._wakeup = asyncio.Event()
        # Webhooks arriving together are recorded in one transaction (one fsync).
        self._recorder: GroupCommit[Sequence[Mapping[str, Any]]] = GroupCommit(db, self._record)
        self._spool = spool
        self._active: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(config.concurrency)
        self._keywords = messages.keywords()

    # --- request path -------------------------------------------------------------------

    async def ingest(self, channel: str, request: WebhookRequest) -> WebhookAck:
        """Verify, parse, pseudonymize, record. Raises WebhookAuthError (-> 403)."""
        adapter = self.adapters[channel]
        incoming = adapter.receive(request)
        if incoming:
            now = self._clock()
            records = [self._inbound_record(message, now) for message in incoming]
            try:
                await self._recorder.submit(records)
            except Exception:
                if self._spool is None:
                    raise
                # The database cannot take it: keep it on disk (encrypted, fsynced) and still
                # answer the provider, which would not retry an SMS. The worker replays it.
                logger.error("pipeline.ingest.spooled")
                await run_in_thread(self._spool.append, json.dumps(records).encode())
            self._wakeup.set()
        return adapter.ack()

    def _inbound_record(self, message: IncomingMessage, now: datetime) -> dict[str, Any]:
        """What is recorded of a message, JSON-safe (the spool keeps it as such): the address
        already pseudonymized and sealed, the provider's id already hashed."""
        return {
            "reporter_id": pseudonymize(self._config.pepper, message.channel,
                                        message.reply_address.value),
            "sealed_address": self._cipher.seal(message.reply_address).decode(),
            "channel": message.channel,
            # Keyed hash: a raw MessageSid leads straight to the provider's record of the
            # sender; the hash still makes a provider's retry a duplicate.
            "provider_message_id": pseudonymize(self._config.pepper, "provider-id",
                                                message.provider_message_id),
            "kind": message.kind.value,
            "text": message.text,
            "language_hint": message.language_hint,
            "details": message_details(message),
            "received_at": now.isoformat(),
        }

    def _record(
        self, session: Session | Connection, requests: Sequence[Sequence[Mapping[str, Any]]]
    ) -> None:
        """Record the messages of several webhook requests (a group commit's batch, or a
        spool file) as if one by one, in order, but as one statement per table: a message
        already recorded, or earlier in the batch, is a duplicate and writes nothing else."""
        records = [record for request in requests for record in request]
        if not records:
            return
        times = [datetime.fromisoformat(record["received_at"]) for record in records]
        ids = repo.record_inbound_many(session, messages=[
            {**record, "received_at": now} for record, now in zip(records, times, strict=True)])
        fresh: list[tuple[Mapping[str, Any], datetime]] = []
        for record, now, inbound_id in zip(records, times, ids, strict=True):
            if inbound_id is None:
                logger.info("pipeline.inbound.duplicate", extra={"channel": record["channel"]})
            else:
                fresh.append((record, now))
        if not fresh:
            return
        repo.upsert_reporter_contacts(session, contacts=[
            (record["reporter_id"], record["channel"], now) for record, now in fresh])
        vault_days = timedelta(days=self._config.vault_days)
        repo.put_vault_entries(session, entries=[
            (record["reporter_id"], record["sealed_address"].encode(), now + vault_days)
            for record, now in fresh])

    async def _replay_spool(self) -> None:
        """Spooled messages go into the database as soon as it takes them again."""
        if self._spool is None or not self._spool.pending():
            return

        def store(lines: list[bytes]) -> None:
            self._db.run_sync(lambda session: self._record(
                session, [json.loads(line) for line in lines]))

        replayed = await run_in_thread(self._spool.replay, store)
        if replayed:
            logger.info("pipeline.spool.replayed", extra={"messages": replayed})

    async def aclose(self) -> None:
        await self._recorder.aclose()

    # --- worker path --------------------------------------------------------------------

    def wake(self) -> None:
        self._wakeup.set()

    async def run_worker(self) -> None:
        """Process pending messages until cancelled; one task per reporter at a time."""
        try:
            while True:
                self._wakeup.clear()
                try:
                    due = await self._db.run(
                        lambda session: repo.list_due_reporters(session, now=self._clock())
                    )
                except Exception:  # the database may be down: keep the loop alive
                    logger.exception("pipeline.worker.poll_failed")
                    due = []
                try:
                    await self._replay_spool()
                except Exception:  # still down: the spool stays, next round tries again
                    logger.warning("pipeline.spool.replay_failed")
                try:
                    await self._deliver_outbound()
                except Exception:
                    logger.exception("pipeline.outbound.failed")
                for reporter_id in due:
                    if reporter_id not in self._active:
                        self._active.add(reporter_id)
                        task = asyncio.create_task(self._process_reporter(reporter_id))
                        self._tasks.add(task)
                        task.add_done_callback(self._tasks.discard)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._config.poll_seconds):
                        await self._wakeup.wait()
        finally:
            for task in list(self._tasks):
                task.cancel()
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)

    # --- messages we start: officers' follow-up questions, status notices -------------------

    async def _deliver_outbound(self) -> None:
        """Each is claimed in the database before it is sent (a second worker finds it taken),
        and never while that reporter's own turn is being processed."""
        follow_ups = await self._db.run(
            lambda session: console_store.list_pending_follow_ups(session, limit=20))
        for item in follow_ups:
            await self._exclusively(item.reporter_id, self._send_follow_up(item))
        notices = await self._db.run(lambda session: repo.list_due_status_notices(session, limit=20))
        for tip_id, reporter_id, channel, language, status, receipt in notices:
            await self._exclusively(reporter_id, self._send_status_notice(
                tip_id, reporter_id, channel, language, status, receipt))

    @contextlib.asynccontextmanager
    async def hold(self, reporter_id: str) -> AsyncIterator[None]:
        """This reporter's turn, for work outside the pipeline that must not overlap a turn
        (retention pruning their Rasa tracker: Rasa re-inserts a tracker it is saving). Waits
        for a running turn to end; new turns wait meanwhile."""
        while reporter_id in self._active:  # noqa: ASYNC110  (a turn ends by leaving the set)
            await asyncio.sleep(0.05)
        self._active.add(reporter_id)
        try:
            yield
        finally:
            self._active.discard(reporter_id)
            self._wakeup.set()

    async def _exclusively(self, reporter_id: str, work: Coroutine[Any, Any, None]) -> None:
        if reporter_id in self._active:
            work.close()  # not now: that reporter's turn is running; next round
            return
        self._active.add(reporter_id)
        try:
            await work
        finally:
            self._active.discard(reporter_id)

    async def _send_follow_up(self, item: console_store.FollowUpDelivery) -> None:
        now = self._clock()
        address = await self._open_address(item.reporter_id)
        if address is None:  # expired or erased: the console shows it as undeliverable
            await self._db.run(lambda session: console_store.mark_follow_up_undeliverable(
                session, follow_up_id=item.follow_up_id, now=now))
            return

        def claim(session: Session) -> tuple[bool, str, datetime | None]:
            tip = session.get(Tip, item.tip_id)
            reporter = repo.get_reporter(session, reporter_id=item.reporter_id)
            claimed = console_store.mark_follow_up_sent(
                session, follow_up_id=item.follow_up_id, now=now)
            return (claimed, tip.receipt_code if tip else "",
                    reporter.last_contact_at if reporter else None)

        claimed, receipt, last_inbound = await self._db.run(claim)
        if not claimed:
            return
        text = self._messages.get(item.language, "followup_question").format(
            code=receipt, question=item.question)
        await self._send(item.channel, address, Reply(text), item.language, last_inbound)
        logger.info("pipeline.follow_up.sent")

    async def _send_status_notice(
        self, tip_id: int, reporter_id: str, channel: str, language: str, status: str, receipt: str
    ) -> None:
        address = await self._open_address(reporter_id)
        claimed = await self._db.run(lambda session: repo.mark_status_notified(
            session, tip_id=tip_id, status=status))
        if not claimed or address is None:
            return
        reporter = await self._db.run(
            lambda session: repo.get_reporter(session, reporter_id=reporter_id))
        text = self._messages.get(language, f"status_{status}").format(code=receipt)
        await self._send(channel, address, Reply(text), language,
                         reporter.last_contact_at if reporter else None)
        logger.info("pipeline.status_notice.sent")

    async def _send(
        self, channel: str, address: ReplyAddress, reply: Reply, language: str,
        last_inbound: datetime | None,
    ) -> None:
        adapter = self.adapters.get(channel)
        if adapter is None:
            logger.warning("pipeline.outbound.channel_off", extra={"channel": channel})
            return
        context = SendContext(language=language,
                              last_inbound_at=repo.as_utc(last_inbound) if last_inbound else None)
        try:
            await adapter.send(address, reply, context)
        except SendError as exc:
            logger.error("pipeline.outbound.failed", extra={"error": type(exc).__name__})

    async def _process_reporter(self, reporter_id: str) -> None:
        try:
            async with self._slots:
                while True:
                    inbound = await self._db.run(
                        lambda session: repo.get_oldest_pending(session, reporter_id=reporter_id)
                    )
                    if inbound is None or repo.as_utc(inbound.next_attempt_at) > self._clock():
                        return
                    if not await self._handle(inbound):
                        return  # postponed: later messages wait, to keep the order
        except Exception:
            logger.exception("pipeline.reporter.failed")
        finally:
            self._active.discard(reporter_id)
            self._wakeup.set()

    async def _handle(self, inbound: InboundMessage) -> bool:
        """One message: what it is decides the path. False if it must wait (kept, retried)."""
        assert inbound.id is not None
        reporter_id = inbound.reporter_id
        state = await self._db.run(
            lambda session: repo.get_reporter(session, reporter_id=reporter_id)
        )
        turn = Turn(
            inbound=inbound,
            reporter=state or Reporter(reporter_id=reporter_id, channel=inbound.channel),
            address=await self._open_address(reporter_id),
            adapter=self.adapters.get(inbound.channel),
        )
        kind = MessageKind(inbound.kind)
        details = inbound.details or {}
        text = inbound.text or ""

        if kind is MessageKind.TEXT and normalize_keyword(text) in self._config.panic_words:
            return await self._panic(turn)
        if await self._over_rate_limit(turn):
            return False
        if kind in _POLITE_REFUSALS:
            return await self._answer(turn, _POLITE_REFUSALS[kind])
        if kind is MessageKind.COMMAND:
            return await self._command(turn, Command(details["command"]))

        if kind is MessageKind.TEXT and details.get("choice") is None:
            code = self._status_query(text)
            if code is not None:
                return await self._status(turn, code)
            if await self._follow_up_answer(turn, text):
                return True
        if kind is MessageKind.LOCATION:
            latitude, longitude = details["location"]
            await self._db.run(lambda session: repo.set_pending_location(
                session, reporter_id=reporter_id, latitude=latitude, longitude=longitude))
            # Into the dialogue as text, so it answers "where?" when that is the question.
            text = f"📍 {latitude:.5f}, {longitude:.5f}"
        elif kind is MessageKind.MEDIA:
            if not await self._keep_media(turn, details.get("attachments", [])):
                return False
            if not text:  # no caption: thank them, the file joins the tip when it is sent
                return await self._answer(turn, "media_received")

        payload = self._choice_payload(text, details.get("choice"), turn.reporter.last_choices)
        if payload is not None and payload.startswith(LANGUAGE_CHOICE):
            return await self._set_language(turn, payload.removeprefix(LANGUAGE_CHOICE))
        if payload is not None and payload.startswith(NOTIFY_CHOICE):
            return await self._notice_opt_in(turn, payload.removeprefix(NOTIFY_CHOICE))
        return await self._dialogue(turn, text, payload)

    async def _dialogue(self, turn: Turn, text: str, payload: str | None) -> bool:
        """A turn of the Rasa dialogue, in the conversation's language."""
        inbound, reporter = turn.inbound, turn.reporter
        reporter_id = inbound.reporter_id
        assert inbound.id is not None
        inbound_id = inbound.id
        if payload is None:
            language = choose_conversation_language(
                self._detector, text, current=reporter.language, provider_hint=inbound.language_hint
            ).language
        else:
            language = reporter.language or self._messages.default
        last_turn = repo.as_utc(reporter.last_turn_at) if reporter.last_turn_at else None
        new_conversation = last_turn is None or (
            self._clock() - last_turn > timedelta(hours=self._config.conversation_hours)
        )
        try:
            await self._rasa.set_slots(
                reporter_id,
                {
                    "language": language,
                    "channel": inbound.channel,
                    "emergency_number": self._config.emergency_number,
                    # A new conversation opens with the privacy notice.
                    "contact": "first" if new_conversation else "returning",
                },
                new_session=new_conversation,
            )
            metadata = {"language": language, "channel": inbound.channel}
            if payload is not None:
                utterances = await self._rasa.send_payload(reporter_id, payload, metadata=metadata)
            else:
                utterances = await self._rasa.send_text(reporter_id, text, metadata=metadata)
        except DialogueUnavailableError as exc:
            await self._postpone(turn, language, reason=str(exc))
            return False

        reply = merge_utterances(utterances)
        choices = [c.payload for c in reply.choices] if reply else []

        def finish(session: Session) -> None:
            repo.record_turn(
                session, reporter_id=reporter_id, language=language, choices=choices,
                now=self._clock(),
            )
            repo.complete_inbound(session, inbound_id=inbound_id)

        # Done before sending: a crash after this loses one reply, never sends it twice.
        await self._db.run(finish)
        if reply is not None:
            await self._reply(turn, reply, language)
        return True

    async def _command(self, turn: Turn, command: Command) -> bool:
        if command is Command.DELETE:
            return await self._forget(turn)
        if command is Command.LANGUAGE:
            return await self._language_menu(turn)
        if command is Command.STATUS:
            return await self._answer(turn, "status_how")
        # /start, START after STOP and /help go to the dialogue as the matching intent.
        intent = "/help" if command is Command.HELP else "/greet"
        return await self._dialogue(turn, "", intent)

    async def _language_menu(self, turn: Turn) -> bool:
        """A numbered menu, each language written in its own name."""
        languages = self._config.languages
        language = turn.reporter.language or self._messages.default
        reply = Reply(
            self._messages.get(language, "language_menu"),
            tuple(Choice(self._messages.language_name(code), LANGUAGE_CHOICE + code)
                  for code in languages),
        )
        return await self._answer(turn, reply, choices=[c.payload for c in reply.choices])

    async def _set_language(self, turn: Turn, language: str) -> bool:
        if language not in self._config.languages:
            language = turn.reporter.language or self._messages.default
        reporter_id = turn.inbound.reporter_id
        await self._db.run(lambda session: repo.set_reporter_language(
            session, reporter_id=reporter_id, language=language))
        turn.reporter.language = language
        return await self._answer(turn, "language_set")

    async def _forget(self, turn: Turn) -> bool:
        """Erase the reporter's address, conversation and dialogue history, then confirm.

        The confirmation goes first: once the vault entry is gone there is nobody to tell.
        We hold this reporter's turn, so no dialogue turn is saving their tracker meanwhile.
        """
        language = turn.reporter.language or self._messages.default
        reporter_id = turn.inbound.reporter_id
        await self._reply(turn, Reply(self._messages.get(language, "forgotten")), language)
        await self._db.run(lambda session: repo.forget_reporter(session, reporter_id=reporter_id))
        await self._forget_dialogue_of(reporter_id)
        logger.info("pipeline.reporter.forgotten")
        return True

    async def _forget_dialogue_of(self, reporter_id: str) -> None:
        if self._forget_dialogue is None:
            return
        # If the gateway stops meanwhile, the turn (and so the reporter's lock) ends only when
        # the deletion has.
        await run_in_thread(self._forget_dialogue, reporter_id)

    # --- what the gateway answers itself -----------------------------------------------------

    def _status_query(self, text: str) -> str | None:
        """"STATUS K7QM-3XPA" in any configured language: the receipt code, else None."""
        words = text.split()
        if len(words) != 2:
            return None
        if self._keywords.get(normalize_keyword(words[0])) != Command.STATUS.value:
            return None
        code = words[1].strip(".,;:!?").upper()
        return code if _RECEIPT.match(code) else None

    async def _status(self, turn: Turn, code: str) -> bool:
        """A tip's status, in the reporter's language. Any reporter who holds the code may
        ask: it is a receipt, and the answer says nothing about the tip's content."""
        normalized = code if "-" in code else f"{code[:4]}-{code[4:]}"
        tip = await self._db.run(lambda session: repo.get_tip_by_receipt(
            session, receipt_code=normalized))
        if tip is None:
            return await self._answer(turn, "status_unknown")
        language = turn.reporter.language or self._messages.default
        text = self._messages.get(language, f"status_{tip.status}").format(code=tip.receipt_code)
        return await self._answer(turn, Reply(text))

    async def _follow_up_answer(self, turn: Turn, text: str) -> bool:
        """A message from a reporter an officer asked a question is the answer: threaded on
        the tip, not a new tip."""
        reporter_id = turn.inbound.reporter_id
        now = self._clock()

        def record(session: Session) -> bool:
            awaiting = console_store.find_awaiting_follow_up(session, reporter_id=reporter_id)
            if awaiting is None or awaiting.id is None:
                return False
            console_store.record_follow_up_answer(
                session, follow_up_id=awaiting.id, text=text, now=now)
            return True

        if not await self._db.run(record):
            return False
        logger.info("pipeline.follow_up.answered")
        return await self._answer(turn, "followup_thanks")

    async def _notice_opt_in(self, turn: Turn, choice: str) -> bool:
        if choice == "no":
            return await self._answer(turn, "notify_no")
        reporter_id = turn.inbound.reporter_id
        await self._db.run(lambda session: repo.subscribe_status_notice(
            session, receipt_code=choice, reporter_id=reporter_id))
        return await self._answer(turn, "notify_yes")

    async def _panic(self, turn: Turn) -> bool:
        """End everything at once: an innocuous answer, the chat wiped where the provider
        lets a bot do it, then the reporter forgotten, as with STOP."""
        language = turn.reporter.language or self._messages.default
        if turn.adapter is not None and turn.address is not None:
            try:
                await turn.adapter.erase_conversation(turn.address)
            except SendError:
                logger.warning("pipeline.panic.erase_failed")
        reporter_id = turn.inbound.reporter_id
        await self._reply(turn, Reply(self._messages.get(language, "panic_reply")), language)
        await self._db.run(lambda session: repo.forget_reporter(session, reporter_id=reporter_id))
        await self._forget_dialogue_of(reporter_id)
        logger.info("pipeline.reporter.panic")
        return True

    async def _over_rate_limit(self, turn: Turn) -> bool:
        """More messages than the limit in the window: flag the pseudonym for officers and
        slow it down (this message waits). Nothing is dropped."""
        inbound = turn.inbound
        now = self._clock()
        window = timedelta(seconds=self._config.rate_limit_window_seconds)
        reporter_id = inbound.reporter_id
        recent = await self._db.run(lambda session: repo.count_recent_inbound(
            session, reporter_id=reporter_id, since=now - window))
        if recent <= self._config.rate_limit_messages:
            return False
        assert inbound.id is not None
        inbound_id = inbound.id
        pause = window.total_seconds() / self._config.rate_limit_messages

        def throttle(session: Session) -> None:
            repo.flag_flood(session, reporter_id=reporter_id, now=now)
            repo.postpone_inbound(session, inbound_id=inbound_id,
                                  retry_at=now + timedelta(seconds=pause),
                                  told_received=inbound.told_received)

        await self._db.run(throttle)
        logger.warning("pipeline.reporter.flood", extra={"recent": recent})
        return True

    async def _keep_media(self, turn: Turn, attachments: Sequence[Mapping[str, Any]]) -> bool:
        """Fetch, scrub and store each file; False (retry later) if the provider fails."""
        reporter_id = turn.inbound.reporter_id
        for item in attachments:
            ref = MediaRef(kind=item["kind"], content_type=item["content_type"],
                           provider_ref=item["ref"], size=item.get("size"))
            if turn.adapter is None:
                return True
            try:
                raw = await turn.adapter.fetch_media(ref)
                clean = scrub(raw, ref.content_type)
            except SendError:  # the provider may be down: keep the message, try again
                await self._postpone(turn, turn.reporter.language or self._messages.default,
                                     reason="media download failed", tell=False)
                return False
            except MediaTooLargeError:
                await self._reply(turn, Reply(self._messages.get(
                    turn.reporter.language, "too_large")), turn.reporter.language or "")
                continue
            except MediaError:
                logger.warning("pipeline.media.unreadable", extra={"kind": ref.kind})
                continue
            def store(session: Session, c: Scrubbed = clean, kind: str = ref.kind) -> None:
                repo.store_attachment(
                    session, reporter_id=reporter_id, kind=kind, content_type=c.content_type,
                    data=c.data, metadata_removed=c.metadata_removed,
                    flagged_reason=c.flagged_reason, now=self._clock())

            await self._db.run(store)
        return True

    async def _answer(self, turn: Turn, message: str | Reply, *, choices: Sequence[str] = ()) -> bool:
        """A reply from the gateway itself (no dialogue turn), in the conversation's language."""
        language = turn.reporter.language or self._messages.default
        reply = message if isinstance(message, Reply) else Reply(self._messages.get(language, message))
        reporter_id, inbound_id = turn.inbound.reporter_id, turn.inbound.id
        assert inbound_id is not None

        def finish(session: Session) -> None:
            repo.complete_inbound(session, inbound_id=inbound_id)
            if choices:
                repo.set_reporter_choices(session, reporter_id=reporter_id, payloads=choices)

        await self._db.run(finish)
        await self._reply(turn, reply, language)
        return True

    async def _postpone(self, turn: Turn, language: str, *, reason: str, tell: bool = True) -> None:
        inbound = turn.inbound
        assert inbound.id is not None
        inbound_id = inbound.id
        delay = min(
            self._config.retry_seconds * 2 ** min(inbound.attempts, 8), self._config.max_retry_seconds
        )
        tell = tell and not inbound.told_received
        logger.warning("pipeline.dialogue.unavailable", extra={"reason": reason, "retry_in": delay})
        await self._db.run(
            lambda session: repo.postpone_inbound(
                session,
                inbound_id=inbound_id,
                retry_at=self._clock() + timedelta(seconds=delay),
                told_received=inbound.told_received or tell,
            )
        )
        if tell:
            await self._reply(turn, Reply(self._messages.get(language, "received_will_reply")), language)

    @staticmethod
    def _choice_payload(
        text: str, pressed: str | None, last_choices: Sequence[str]
    ) -> str | None:
        """The payload of the choice the reporter made, if any.

        A pressed button (Telegram) counts only if we offered it last: payloads reach Rasa as
        intents, so a forged callback must not inject one. On SMS the reporter types the number.
        """
        if pressed is not None:
            return pressed if pressed in last_choices else None
        stripped = text.strip().rstrip(".)")
        if stripped.isdigit() and last_choices:
            index = int(stripped) - 1
            if 0 <= index < len(last_choices):
                return last_choices[index]
        return None

    async def _open_address(self, reporter_id: str) -> ReplyAddress | None:
        entry = await self._db.run(
            lambda session: repo.get_vault_entry(session, reporter_id=reporter_id, now=self._clock())
        )
        if entry is None:
            return None
        try:
            return self._cipher.open(entry.ciphertext)
        except VaultError:
            logger.error("pipeline.vault.unreadable")
            return None

    async def _reply(self, turn: Turn, reply: Reply, language: str) -> None:
        if turn.adapter is None or turn.address is None:
            logger.warning("pipeline.reply.no_address")
            return
        context = SendContext(language=language, last_inbound_at=repo.as_utc(turn.inbound.received_at))
        try:
            await turn.adapter.send(turn.address, reply, context)
        except SendError as exc:
            logger.error("pipeline.reply.failed", extra={"error": type(exc).__name__})

    # --- for tests and the try-it chat -----------------------------------------------------

    async def idle(self, limit_seconds: float = 30.0) -> None:
        """Wait until nothing is due and no reporter is being processed."""
        deadline = asyncio.get_running_loop().time() + limit_seconds
        while asyncio.get_running_loop().time() < deadline:
            due = await self._db.run(
                lambda session: repo.list_due_reporters(session, now=self._clock())
            )
            if not due and not self._active:
                return
            self._wakeup.set()
            await asyncio.sleep(0.05)
        raise TimeoutError("pipeline still busy")
