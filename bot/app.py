"""Composition root: `create_app(settings)` builds every client in the lifespan.

Nothing is created at import time. Only this module maps errors to HTTP: webhooks answer 2xx
for everything except failed authentication (403), because providers retry anything else
and the reporter would be spammed with replays.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import secrets
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qsl

import httpx
from fastapi import Depends, FastAPI, HTTPException, Request, Response, status
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, Field

from bot.alerts import AlertDispatcher
from bot.console import install_console
from bot.pipeline import Pipeline, PipelineConfig
from bot.privacy import VaultCipher, configure_logging
from bot.retention import RetentionJob
from bot.urgency import assess, default_lexicon
from channels import ChannelAdapter, WebhookAuthError, WebhookRequest
from channels.local import LocalChatAdapter
from channels.twilio_sms import TwilioSmsAdapter
from channels.whatsapp import TwilioWhatsAppAdapter
from config import Settings
from config.messages import GatewayMessages, normalize_keyword
from nlu.language import LanguageDetector
from nlu.rasa_client import CachedBaseUrl, RasaClient
from storage import repo, runtime
from storage.db import Database, Session, make_engine, migrate, run_in_thread
from storage.models import Tip, TipCreate, TipStatus, utcnow
from storage.rasa_trackers import delete_conversation
from storage.spool import Spool

logger = logging.getLogger(__name__)
TEMPLATES = Jinja2Templates(directory=str(Path(__file__).resolve().parent / "templates"))
MAX_WEBHOOK_BYTES = 256 * 1024


def build_adapters(
    settings: Settings, http: httpx.AsyncClient, messages: GatewayMessages
) -> dict[str, ChannelAdapter]:
    """The channel registry: settings choose which adapters are on. A new channel is one
    adapter in channels/ and one entry here."""
    adapters: dict[str, ChannelAdapter] = {}
    keywords = messages.keywords()  # STOP/HELP/LANGUAGE... in every configured language
    limit = settings.channels.max_media_bytes
    twilio_token = settings.twilio.auth_token.get_secret_value()
    if settings.channels.sms:
        adapters[TwilioSmsAdapter.name] = TwilioSmsAdapter(
            account_sid=settings.twilio.account_sid, auth_token=twilio_token,
            sms_from=settings.twilio.sms_from, public_base_url=settings.twilio.public_base_url,
            http=http, keywords=keywords, max_media_bytes=limit,
        )
    if settings.channels.whatsapp:
        adapters[TwilioWhatsAppAdapter.name] = TwilioWhatsAppAdapter(
            account_sid=settings.twilio.account_sid, auth_token=twilio_token,
            sender=settings.whatsapp.sender, public_base_url=settings.twilio.public_base_url,
            http=http, template_content_sid=settings.whatsapp.template_content_sid,
            template_text_variable=settings.whatsapp.template_text_variable or None,
            keywords=keywords, max_media_bytes=limit,
        )
    if settings.channels.telegram:
        # python-telegram-bot is imported only for a tip line that uses Telegram (memory).
        from channels.telegram import TelegramAdapter

        adapters[TelegramAdapter.name] = TelegramAdapter(
            bot_token=settings.telegram.bot_token.get_secret_value(),
            webhook_secret=settings.telegram.webhook_secret.get_secret_value(),
            api_base_url=settings.telegram.api_base_url, http=http, max_media_bytes=limit,
        )
    if settings.channels.local and settings.is_development:
        adapters[LocalChatAdapter.name] = LocalChatAdapter()
    return adapters


async def poll_telegram(
    adapters: dict[str, ChannelAdapter], pipeline: Pipeline, stop: asyncio.Event
) -> None:
    """Telegram without a public URL: long polling feeds the same ingest path."""
    from channels.telegram import TelegramAdapter  # only when Telegram is on: see build_adapters

    telegram = adapters.get(TelegramAdapter.name)
    if not isinstance(telegram, TelegramAdapter):
        return

    async def deliver(request: WebhookRequest) -> None:
        await pipeline.ingest(TelegramAdapter.name, request)

    await telegram.poll(deliver, stop=stop)


class SubmittedTip(BaseModel):
    """What the action server posts when a reporter confirms a tip."""

    reporter_id: str = Field(min_length=16, max_length=64)
    submission_key: str = Field(min_length=16, max_length=64)
    what: str = Field(max_length=4000)
    where_text: str = Field(default="", max_length=4000)
    when_text: str = Field(default="", max_length=4000)
    danger_now: bool = False
    language: str = Field(max_length=8)
    channel: str = Field(max_length=32)


# --- dependencies (module level: route signatures are resolved against module globals) -----

def settings_of(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def db_of(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


async def pipeline_of(request: Request) -> Pipeline:
    # async: FastAPI runs a plain-def dependency in its thread pool, a thread hop per request.
    pipeline: Pipeline = request.app.state.pipeline
    return pipeline


def require_actions_token(request: Request, settings: Annotated[Settings, Depends(settings_of)]) -> None:
    """The action server's shared secret, for /internal routes."""
    token = settings.actions.token.get_secret_value()
    given = request.headers.get("authorization", "").encode()
    if not token or not hmac.compare_digest(given, f"Bearer {token}".encode()):
        raise HTTPException(status.HTTP_403_FORBIDDEN)


def create_app(
    settings: Settings,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    clock: Callable[[], datetime] = utcnow,
    run_worker: bool = True,
) -> FastAPI:
    """Build the gateway. `transport` lets tests put fake providers at the HTTP boundary."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_logging()
        weak = settings.enforce_secrets()
        if weak:
            logger.warning("config.secrets.placeholder", extra={"names": weak})
        await run_in_thread(migrate, settings.database.url)
        db = Database(make_engine(settings.database.url, echo=settings.database.echo),
                      background_checkpoints=True)
        http = httpx.AsyncClient(transport=transport, timeout=30)
        messages = GatewayMessages(settings.languages, settings.default_language,
                                   settings.messages_dir)
        adapters = build_adapters(settings, http, messages)
        vault_cipher = VaultCipher(settings.privacy.vault_key.get_secret_value())
        pipeline = Pipeline(
            adapters=adapters,
            db=db,
            rasa=RasaClient(
                http,
                # `tipline flows reload` switches Rasa servers by publishing the live one in
                # the database; a second's delay in noticing costs nothing (the old server
                # serves until the supervisor's grace period ends).
                base_url=CachedBaseUrl(
                    lambda: db.run(lambda session: (runtime.get_setting(
                        session, key=runtime.DIALOGUE) or {}).get("url")),
                    fallback=settings.rasa.url, ttl=1.0,
                ),
                token=settings.rasa.token.get_secret_value(),
                timeout=settings.rasa.timeout_seconds,
            ),
            detector=LanguageDetector(settings.languages, default=settings.default_language),
            cipher=vault_cipher,
            messages=messages,
            config=PipelineConfig(
                pepper=settings.privacy.pepper.get_secret_value(),
                languages=tuple(settings.languages),
                emergency_number=settings.emergency_number,
                vault_days=settings.privacy.vault_days,
                retry_seconds=settings.gateway.retry_seconds,
                panic_words=frozenset(normalize_keyword(w) for w in settings.privacy.panic_words),
                rate_limit_messages=settings.privacy.rate_limit_messages,
                rate_limit_window_seconds=settings.privacy.rate_limit_window_seconds,
            ),
            clock=clock,
            spool=Spool(
                settings.data_dir / "spool", seal=vault_cipher.seal_bytes,
                unseal=vault_cipher.open_bytes),
            forget_dialogue=lambda reporter_id: delete_conversation(
                settings.rasa.tracker_store_url, sender_id=reporter_id
            ),
        )
        app.state.db = db
        app.state.pipeline = pipeline
        # Critical-tip alerts: console live feed, officers' phones, escalation (bot/alerts).
        app.state.alerts = alerts = AlertDispatcher(
            settings=settings.alerts, db=db, adapters=adapters, clock=clock)
        alerts.start()
        worker = asyncio.create_task(pipeline.run_worker()) if run_worker else None
        # Retention (bot/retention.py): deletes what is past its period, every interval; Rasa
        # tracker rows only under the pipeline's per-sender lock.
        retention = asyncio.create_task(RetentionJob.from_settings(
            settings, db=db, sender_lock=pipeline, clock=clock).run_forever()) if run_worker else None
        # Telegram without a public URL: long polling feeds the same ingest path.
        stop_polling = asyncio.Event()
        poller = None
        if settings.channels.telegram and settings.telegram.mode == "polling":
            poller = asyncio.create_task(poll_telegram(adapters, pipeline, stop_polling))
        try:
            yield
        finally:
            stop_polling.set()
            await alerts.aclose()  # before the adapters it sends through close
            for task in (worker, poller, retention):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            await pipeline.aclose()
            for adapter in adapters.values():
                await adapter.aclose()
            await http.aclose()
            db.dispose()

    app = FastAPI(title="Tip line gateway", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.settings = settings

    async def webhook_request(request: Request) -> WebhookRequest:
        body = await request.body()
        if len(body) > MAX_WEBHOOK_BYTES:
            raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE)
        # Straight from the ASGI scope: Request.headers would build a Headers object first.
        headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                   for k, v in request.scope["headers"]}
        form: dict[str, str] = {}
        if headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        return WebhookRequest(path=request.scope["path"], headers=headers, body=body, form=form)

    async def ingest(channel: str, request: Request, pipeline: Pipeline) -> Response:
        if channel not in pipeline.adapters:
            raise HTTPException(status.HTTP_404_NOT_FOUND)
        try:
            ack = await pipeline.ingest(channel, await webhook_request(request))
        except WebhookAuthError as exc:
            logger.warning(str(exc))
            return Response(status_code=status.HTTP_403_FORBIDDEN)
        return Response(content=ack.body, media_type=ack.media_type)

    async def webhook(request: Request) -> Response:
        return await ingest(request.path_params["channel"], request, request.app.state.pipeline)

    # Every provider's traffic comes through here, so it is a plain Starlette route (no
    # dependencies to solve, no response model), registered before the console's routes so
    # it is the first one matched. HTTPException still gets FastAPI's JSON error answer.
    app.router.add_route("/webhooks/{channel}", webhook, methods=["POST"],
                         include_in_schema=False)
    install_console(app, settings, clock=clock)  # officers' console + /api (bot/console)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/internal/tips", dependencies=[Depends(require_actions_token)])
    async def submit_tip(
        tip: SubmittedTip, db: Annotated[Database, Depends(db_of)]
    ) -> dict[str, str]:
        if tip.language not in settings.languages:
            # Shaped like FastAPI's own validation errors, as the schema documents 422.
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, [{
                "loc": ["body", "language"], "msg": "not a configured language",
                "type": "value_error", "input": tip.language}])
        assessment = assess(
            text=" ".join([tip.what, tip.where_text, tip.when_text]),
            danger_now=tip.danger_now,
            language=tip.language,
            lexicon=default_lexicon(settings.urgency_dir),
        )
        def store(session: Session) -> Tip:
            reasons = list(assessment.reasons)
            reporter = repo.get_reporter(session, reporter_id=tip.reporter_id)
            if reporter is not None and reporter.flood_flagged_at is not None:
                reasons.append("flood: this pseudonym went over the message rate limit")
            stored = repo.create_tip(
                session,
                tip=TipCreate(**tip.model_dump()),
                urgency=assessment.urgency,
                reasons=reasons,
                now=clock(),
            )
            if repo.is_spam(session, reporter_id=tip.reporter_id) and stored.status == TipStatus.NEW:
                # The spam folder: out of the working queue, kept, findable by its filter.
                stored.status = TipStatus.REJECTED
                stored.status_reason = "spam: the pseudonym was marked as spam by an officer"
            # Files and a location the reporter sent during this conversation join the tip.
            repo.attach_pending_to_tip(session, tip=stored)
            return stored

        stored = await db.run(store)
        logger.info("tip.stored", extra={"urgency": stored.urgency, "language": stored.language})
        await app.state.alerts.tip_stored(stored)  # schedules the sending; never waits for it
        return {"receipt_code": stored.receipt_code}

    if settings.is_development and settings.channels.local:
        @app.get("/try", response_class=HTMLResponse, include_in_schema=False)
        async def try_page(request: Request) -> HTMLResponse:
            return TEMPLATES.TemplateResponse(
                request, "try.html", {"conversation": secrets.token_urlsafe(16)}
            )

        @app.post("/try/messages", include_in_schema=False)
        async def try_message(
            request: Request, pipeline: Annotated[Pipeline, Depends(pipeline_of)]
        ) -> Response:
            return await ingest(LocalChatAdapter.name, request, pipeline)

        @app.get("/try/replies", include_in_schema=False)
        async def try_replies(
            conversation: str, pipeline: Annotated[Pipeline, Depends(pipeline_of)]
        ) -> JSONResponse:
            adapter = pipeline.adapters[LocalChatAdapter.name]
            assert isinstance(adapter, LocalChatAdapter)
            replies: list[dict[str, Any]] = [
                {"text": r.text, "choices": [c.title for c in r.choices]}
                for r in adapter.take_replies(conversation)
            ]
            return JSONResponse(replies)

    return app


def app_from_environment() -> FastAPI:
    """For `uvicorn --factory`: settings from the environment and config/tipline.yml only.

    Never falls back to var/dev-secrets.env: a production gateway whose pepper went missing
    must refuse to start, not quietly run in development mode. `tipline run` puts the dev
    secrets into the environment it starts the gateway with."""
    from config import load_settings

    return create_app(load_settings())
