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
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.privacy import VaultCipher, VaultError, pseudonymize
from channels import (
    ChannelAdapter,
    Choice,
    IncomingMessage,
    MessageKind,
    Reply,
    ReplyAddress,
    SendError,
    WebhookRequest,
)
from channels.base import WebhookAck
from config.messages import GatewayMessages
from nlu.language import LanguageDetector, choose_conversation_language
from nlu.rasa_client import BotUtterance, DialogueUnavailableError, RasaClient
from storage import repo
from storage.db import Database, Session
from storage.models import InboundMessage, Reporter, utcnow

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PipelineConfig:
    pepper: str
    emergency_number: str
    vault_days: int = 30
    retry_seconds: float = 5.0
    max_retry_seconds: float = 300.0
    poll_seconds: float = 1.0
    # Silence after which a reporter's next message starts a new conversation.
    conversation_hours: float = 12.0
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
    ) -> None:
        self.adapters = dict(adapters)
        self._db = db
        self._rasa = rasa
        self._detector = detector
        self._cipher = cipher
        self._messages = messages
        self._config = config
        self._clock = clock
        self._wakeup = asyncio.Event()
        self._active: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(config.concurrency)

    # --- request path -------------------------------------------------------------------

    async def ingest(self, channel: str, request: WebhookRequest) -> WebhookAck:
        """Verify, parse, pseudonymize, record. Raises WebhookAuthError (-> 403)."""
        adapter = self.adapters[channel]
        incoming = adapter.receive(request)
        if incoming:
            sealed = [
                (pseudonymize(self._config.pepper, m.channel, m.reply_address.value),
                 self._cipher.seal(m.reply_address), m)
                for m in incoming
            ]
            await self._db.run(lambda session: self._record(session, sealed))
            self._wakeup.set()
        return adapter.ack()

    def _record(
        self, session: Session, sealed: Sequence[tuple[str, bytes, IncomingMessage]]
    ) -> None:
        now = self._clock()
        for reporter_id, ciphertext, message in sealed:
            inbound_id = repo.record_inbound(
                session,
                channel=message.channel,
                provider_message_id=message.provider_message_id,
                reporter_id=reporter_id,
                kind=message.kind.value,
                text=message.text,
                language_hint=message.language_hint,
                now=now,
            )
            if inbound_id is None:
                logger.info("pipeline.inbound.duplicate", extra={"channel": message.channel})
                continue
            repo.touch_reporter(session, reporter_id=reporter_id, channel=message.channel, now=now)
            repo.put_vault_entry(
                session,
                reporter_id=reporter_id,
                ciphertext=ciphertext,
                expires_at=now + timedelta(days=self._config.vault_days),
            )

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

    async def _process_reporter(self, reporter_id: str) -> None:
        try:
            async with self._slots:
                while True:
                    inbound = await self._db.run(
                        lambda session: repo.get_oldest_pending(session, reporter_id=reporter_id)
                    )
                    if inbound is None or inbound.next_attempt_at > self._clock():
                        return
                    if not await self._handle(inbound):
                        return  # postponed: later messages wait, to keep the order
        except Exception:
            logger.exception("pipeline.reporter.failed")
        finally:
            self._active.discard(reporter_id)
            self._wakeup.set()

    async def _handle(self, inbound: InboundMessage) -> bool:
        """One message through language, dialogue and reply. False if it must wait."""
        assert inbound.id is not None
        inbound_id, reporter_id = inbound.id, inbound.reporter_id
        state = await self._db.run(
            lambda session: repo.get_reporter(session, reporter_id=reporter_id)
        )
        reporter = state or Reporter(reporter_id=reporter_id, channel=inbound.channel)
        address = await self._open_address(reporter_id)
        adapter = self.adapters.get(inbound.channel)

        if inbound.kind != MessageKind.TEXT.value:
            language = reporter.language or self._messages.default
            await self._db.run(lambda session: repo.complete_inbound(session, inbound_id=inbound_id))
            await self._reply(adapter, address, Reply(self._messages.get(language, "unsupported_content")))
            return True

        text = inbound.text or ""
        payload = self._choice_payload(text, reporter.last_choices)
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
            await self._postpone(inbound, language, adapter, address, reason=str(exc))
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
            await self._reply(adapter, address, reply)
        return True

    async def _postpone(
        self,
        inbound: InboundMessage,
        language: str,
        adapter: ChannelAdapter | None,
        address: ReplyAddress | None,
        *,
        reason: str,
    ) -> None:
        assert inbound.id is not None
        inbound_id = inbound.id
        delay = min(
            self._config.retry_seconds * 2 ** min(inbound.attempts, 8), self._config.max_retry_seconds
        )
        tell = not inbound.told_received
        logger.warning(
            "pipeline.dialogue.unavailable", extra={"reason": reason, "retry_in": delay}
        )
        await self._db.run(
            lambda session: repo.postpone_inbound(
                session,
                inbound_id=inbound_id,
                retry_at=self._clock() + timedelta(seconds=delay),
                told_received=True,
            )
        )
        if tell:
            await self._reply(adapter, address, Reply(self._messages.get(language, "received_will_reply")))

    @staticmethod
    def _choice_payload(text: str, last_choices: Sequence[str]) -> str | None:
        """On SMS a reporter answers a numbered choice with its number."""
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

    async def _reply(
        self, adapter: ChannelAdapter | None, address: ReplyAddress | None, reply: Reply
    ) -> None:
        if adapter is None or address is None:
            logger.warning("pipeline.reply.no_address")
            return
        try:
            await adapter.send(address, reply)
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
