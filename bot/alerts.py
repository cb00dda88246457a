"""Alerts for critical tips: the console's live feed, duty officers' phones, escalation.

Owns `AlertDispatcher`, built by the composition root in the lifespan:
    * `tip_stored(tip)` - called right after a tip is committed. A critical tip is announced at
      once to every console tab connected to this process (in-process pub/sub, read by the SSE
      route in bot.console), and a task sends the Telegram group / officers' SMS alert. It never
      waits for a provider: the action server's answer must not depend on Telegram or Twilio.
    * a loop (`start()`) that every `poll_seconds` (a) announces critical tips stored by other
      gateway processes (or before a crash) to this process's tabs and alerts for them if
      nobody did, and (b) escalates critical tips nobody claimed within
      `escalate_after_minutes` to the supervisors' channels.
Each external alert goes out at most once per (tip, kind) across restarts and processes:
`storage.alerts.claim_alert` takes a unique row before anything is sent.

Must never: put a reporter identifier (pseudonym, address) or a reporter's contact details into
an alert, log an officer's number or chat id or any tip text, or delay or fail the tip
submission that triggered it. A summary of the tip travels only when the deployment opted in
(`alerts.include_summary`), masked of phone numbers and e-mail addresses.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import OrderedDict
from collections.abc import Callable, Coroutine, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from channels import ChannelAdapter, Reply, ReplyAddress
from config.settings import AlertSettings
from storage import alerts as store
from storage.alerts import AlertTip
from storage.console import mask_contact_details
from storage.db import Database
from storage.models import Tip, Urgency, utcnow

logger = logging.getLogger(__name__)

TELEGRAM = "telegram"
SMS = "sms"
# How far back the loop looks for critical tips to announce: long enough to cover a gateway
# restart or a console tab's reconnection, short enough that the query stays tiny.
WATCH_WINDOW = timedelta(minutes=10)
SUMMARY_CHARS = 80
# A console tab that stops reading (a frozen laptop) loses old events, not the gateway's memory.
SUBSCRIBER_BACKLOG = 100


@dataclass(frozen=True)
class AlertEvent:
    """What a console tab is told about a critical tip: no text, no reporter identifier."""

    tip_id: int
    language: str
    channel: str
    received_at: datetime

    def to_sse(self) -> str:
        data = json.dumps({"tip": self.tip_id, "language": self.language,
                           "channel": self.channel, "received_at": self.received_at.isoformat()})
        return f"event: critical\ndata: {data}\n\n"


def _summary(tip: AlertTip) -> str:
    # Masked: a reporter who wrote "call me on 0612..." must not have that number paged out.
    what = " ".join(mask_contact_details(tip.what).split())
    if len(what) > SUMMARY_CHARS:
        what = what[: SUMMARY_CHARS - 1].rstrip() + "…"
    where = " ".join(mask_contact_details(tip.where_text).split())[:SUMMARY_CHARS]
    return f"{what} — {where}" if where else what


def alert_text(tip: AlertTip, *, kind: str, include_summary: bool, minutes: int = 0) -> str:
    """The words of an alert. Tip number, language and channel only, unless summaries are on."""
    head = f"Critical tip #{tip.id} ({tip.language}, {tip.channel})"
    if kind == store.ESCALATION:
        head += f" not claimed after {minutes} min"
    text = f"{head} — open the console"
    return f"{text}\n{_summary(tip)}" if include_summary else text


class AlertDispatcher:
    """Announces critical tips to console tabs and sends officer/supervisor alerts."""

    def __init__(
        self,
        *,
        settings: AlertSettings,
        db: Database,
        adapters: Mapping[str, ChannelAdapter],
        clock: Callable[[], datetime] = utcnow,
        poll_seconds: float = 1.0,
    ) -> None:
        self._settings = settings
        self._db = db
        self._adapters = adapters
        self._clock = clock
        self._poll_seconds = poll_seconds
        self._subscribers: set[asyncio.Queue[AlertEvent]] = set()
        # Announced critical tips by id, oldest first: deduplicates announcements and lets a
        # tab that (re)connects catch up on what it missed.
        self._announced: OrderedDict[int, AlertEvent] = OrderedDict()
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop_task: asyncio.Task[None] | None = None
        self._officers = self._reachable(settings.telegram_chat_id, settings.sms_numbers,
                                         "officers")
        self._supervisors = self._reachable(settings.supervisor_telegram_chat_id,
                                            settings.supervisor_sms_numbers, "supervisors")

    def _reachable(self, chat_id: str, numbers: list[str], who: str) -> tuple[ReplyAddress, ...]:
        """The configured targets whose channel is on; a configuration warning (once, at
        start-up) for the others. Counts only: numbers and chat ids are never logged."""
        wanted = [(TELEGRAM, chat_id.strip())] if chat_id.strip() else []
        wanted += [(SMS, n.strip()) for n in numbers if n.strip()]
        missing = sorted({channel for channel, _ in wanted if channel not in self._adapters})
        for channel in missing:
            logger.warning("alerts.config.channel_disabled",
                           extra={"channel": channel, "audience": who})
        return tuple(ReplyAddress(channel, value) for channel, value in wanted
                     if channel in self._adapters)

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Start the loop (announce tips stored elsewhere, escalate unclaimed ones)."""
        if self._loop_task is None:
            self._loop_task = asyncio.create_task(self._run())

    async def aclose(self) -> None:
        """Stop the loop and any alert still being sent (before the adapters close)."""
        tasks = [t for t in (self._loop_task, *self._tasks) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._loop_task = None

    async def idle(self) -> None:
        """Wait until alerts being sent have gone (tests, orderly shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # --- the entry point ------------------------------------------------------------------

    async def tip_stored(self, tip: Tip) -> None:
        """A tip was committed. Returns at once: sending happens in a task."""
        if tip.urgency != Urgency.CRITICAL or tip.id is None:
            return
        alert = store.alert_tip(tip)
        if self._announce(alert) and self._officers:
            self._spawn(self._alert(alert, store.CRITICAL, self._officers))

    # --- console subscribers --------------------------------------------------------------

    @contextlib.contextmanager
    def subscribe(self) -> Iterator[asyncio.Queue[AlertEvent]]:
        """An inbox of critical-tip events for one console tab, for as long as it is open."""
        inbox: asyncio.Queue[AlertEvent] = asyncio.Queue(maxsize=SUBSCRIBER_BACKLOG)
        self._subscribers.add(inbox)
        try:
            yield inbox
        finally:
            self._subscribers.discard(inbox)

    def recent(self, *, since: datetime) -> list[AlertEvent]:
        """Events for tips received at or after `since` (a tab catching up after loading the
        page or reconnecting); at most WATCH_WINDOW back."""
        floor = max(since, self._clock() - WATCH_WINDOW)
        return [e for e in self._announced.values() if e.received_at >= floor]

    def _announce(self, tip: AlertTip) -> bool:
        """Publish a tip to this process's tabs, once; False if it was already announced."""
        if tip.id in self._announced:
            return False
        event = AlertEvent(tip.id, tip.language, tip.channel, tip.received_at)
        self._announced[tip.id] = event
        self._forget_old()
        for inbox in list(self._subscribers):
            if inbox.full():
                # Drop the oldest for a tab that stopped reading; it refreshes on reconnect.
                inbox.get_nowait()
            inbox.put_nowait(event)
        return True

    def _forget_old(self) -> None:
        cutoff = self._clock() - 2 * WATCH_WINDOW
        while self._announced:
            oldest = next(iter(self._announced.values()))
            if oldest.received_at >= cutoff and len(self._announced) <= 1000:
                break
            self._announced.popitem(last=False)

    # --- sending ----------------------------------------------------------------------------

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _alert(
        self, tip: AlertTip, kind: str, targets: tuple[ReplyAddress, ...]
    ) -> None:
        now = self._clock()
        if not await self._db.run(lambda s: store.claim_alert(s, tip_id=tip.id, kind=kind,
                                                              now=now)):
            return  # another process, or an earlier submission of the same tip, sent it
        text = alert_text(tip, kind=kind, include_summary=self._settings.include_summary,
                          minutes=self._settings.escalate_after_minutes)
        results = await asyncio.gather(*(self._send(target, text) for target in targets))
        logger.info("alerts.sent", extra={"tip_id": tip.id, "kind": kind,
                                          "delivered": sum(results), "targets": len(targets)})

    async def _send(self, target: ReplyAddress, text: str) -> bool:
        try:
            await self._adapters[target.channel].send(target, Reply(text))
        except Exception as exc:
            # Once claimed, an alert is not retried here (the adapters already retry what
            # surely did not arrive): a resend could page the same officer twice.
            logger.error("alerts.send_failed",
                         extra={"channel": target.channel, "error": type(exc).__name__})
            return False
        return True

    # --- the loop ---------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            try:
                await self.run_once()
            except Exception as exc:
                # A database hiccup must not end alerting for the life of the process.
                logger.warning("alerts.loop_failed", extra={"error": type(exc).__name__})
            await asyncio.sleep(self._poll_seconds)

    async def run_once(self) -> None:
        """One pass: announce critical tips from anywhere, then escalate unclaimed ones."""
        now = self._clock()
        recent = await self._db.run(lambda s: store.list_recent_critical_tips(
            s, since=now - WATCH_WINDOW))
        for tip in recent:
            if self._announce(tip) and self._officers:
                # Stored by another process (which is probably alerting right now: the
                # claim decides) or by one that died before it could.
                self._spawn(self._alert(tip, store.CRITICAL, self._officers))
        if not self._supervisors:
            return
        limit = now - timedelta(minutes=self._settings.escalate_after_minutes)
        due = await self._db.run(lambda s: store.list_tips_to_escalate(
            s, received_before=limit, now=now))
        for tip in due:
            await self._alert(tip, store.ESCALATION, self._supervisors)
