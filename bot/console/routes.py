"""The console's pages and its JSON API. Every endpoint declares its roles (`@allow`) or says it
is `@public`; the router's guard refuses anything else (see bot.console.auth).

Endpoints only translate HTTP to storage.console calls: each action is one `db.run(...)` unit of
work, in which the storage function writes the audit row. Endpoints never show a reporter id,
never log tip text, and show tip texts masked unless the officer asked to unmask (audited).
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Query, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, StreamingResponse
from fastapi.templating import Jinja2Templates

from bot.alerts import AlertDispatcher
from bot.console import dashboard as charts
from bot.console.auth import (
    ALL_ROLES,
    LOGIN_CSRF_COOKIE,
    OVERSEERS,
    ConsoleState,
    LoginThrottledError,
    allow,
    check_second_factor,
    cookie_is_secure,
    current_login,
    guarded_router,
    hash_token,
    passive,
    public,
    session_cookie_name,
    state_of,
    throttle_keys,
    throttle_limits,
    verify_password,
)
from bot.console.followups import PreparedQuestions
from bot.console.texts import UI_LANGUAGES, Catalogue
from bot.urgency import check_lexicon
from config import Settings
from config.settings import PROJECT_DIR
from nlu.check import Problem, check_project
from storage import console as store
from storage import oversight, runtime
from storage.console import Actor, AuditAction, OfficerRole, QueueFilter
from storage.models import TipPublic, TipStatus, Urgency

HERE = Path(__file__).resolve().parent
TEMPLATES = Jinja2Templates(directory=str(HERE / "templates"))
STATIC_FILES = {
    "console.css": "text/css; charset=utf-8",
    "console.js": "text/javascript; charset=utf-8",
    "alerts.js": "text/javascript; charset=utf-8",
}
PAGE_SIZE = 50
# The live alert stream ends after this long and the browser's EventSource reconnects by itself:
# each reconnection passes the guard again (a lapsed session or a disabled account is noticed),
# and a server shutdown never waits long for an open tab.
LIVE_STREAM_SECONDS = 30.0
LIVE_HEARTBEAT_SECONDS = 10.0  # a comment line, so proxies do not close a quiet stream
API_MAX = 500
DASHBOARD_DAYS = 30
FLOWS_PROBLEMS_SHOWN = 50
CATALOGUE = Catalogue()
PREPARED = PreparedQuestions()


# --- helpers ---------------------------------------------------------------------------------


def _ui_language(request: Request, state: ConsoleState) -> str:
    login = getattr(request.state, "login", None)
    wanted = login.language if login is not None else request.query_params.get("lang")
    return CATALOGUE.language(wanted, state.settings.console.ui_language)


def age_text(seconds: float) -> str:
    minutes = int(seconds // 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes:02d}"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


def render(
    request: Request, name: str, context: dict[str, Any] | None = None, *, status_code: int = 200
) -> HTMLResponse:
    state = state_of(request)
    language = _ui_language(request, state)
    login = getattr(request.state, "login", None)
    now = state.clock()
    limits = state.settings.console.overdue_minutes
    notice = request.query_params.get("notice", "")

    def age(received: datetime) -> str:
        return age_text((now - received).total_seconds())

    def overdue(received: datetime, urgency: str) -> bool:
        return (now - received) > timedelta(minutes=limits.get(urgency, 24 * 60))

    values: dict[str, Any] = {
        "t": CATALOGUE.translator(language),
        "ui_language": language,
        "ui_languages": UI_LANGUAGES,
        "login": login,
        "csrf": login.csrf_token if login is not None else "",
        "now": now,
        "age": age,
        "overdue": overdue,
        "limits": limits,
        "mask": store.mask_contact_details,
        "overseer": login is not None and login.actor.role in OVERSEERS,
        # Only known notices: the query string must not put arbitrary text on the page.
        "notice": notice if f"notice_{notice}" in CATALOGUE.keys("en") else "",
    }
    values.update(context or {})
    return TEMPLATES.TemplateResponse(request, name, values, status_code=status_code)


def _see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def _tip_url(tip_id: int, notice: str) -> str:
    return f"/console/tips/{tip_id}?notice={notice}"


def _queue_filter(
    status: list[str], urgency: str, language: str, channel: str, tag: str, tip_id: list[int]
) -> QueueFilter:
    statuses = tuple(TipStatus(s) for s in status if s in TipStatus.__members__.values())
    return QueueFilter(
        statuses=statuses,
        urgency=Urgency(urgency) if urgency in Urgency.__members__.values() else None,
        language=language.strip()[:8] or None,
        channel=channel.strip()[:32] or None,
        tag=tag.strip().lower()[:32] or None,
        tip_ids=tuple(tip_id[:1000]),
    )


def _lease(state: ConsoleState) -> timedelta:
    return timedelta(minutes=state.settings.console.claim_lease_minutes)


def _flows_check(settings: Settings) -> list[Problem] | None:
    """`tipline flows check --no-rasa` (about 0.1 s): what the flows page shows. None when the
    check itself failed, so a broken file never takes the page down."""
    try:
        return check_project(
            languages=settings.languages, default_language=settings.default_language,
            project_dir=settings.nlu_project_dir, messages_dir=settings.messages_dir,
            urgency_dir=settings.urgency_dir, root=PROJECT_DIR, run_rasa=False,
            lexicon_checker=check_lexicon)
    except Exception:  # the page says the check could not run
        return None


StatusQuery = Annotated[list[str], Query()]
TipIdQuery = Annotated[list[int], Query()]


# --- routes ----------------------------------------------------------------------------------


def build_router() -> APIRouter:
    router = guarded_router()

    @router.get("/console/static/{name}")
    @public
    async def static(name: str) -> Response:
        # A fixed list, not a directory mount: no path ever reaches the file system.
        if name not in STATIC_FILES:
            return Response(status_code=404)
        body = (HERE / "static" / name).read_bytes()
        return Response(body, media_type=STATIC_FILES[name],
                        headers={"Cache-Control": "public, max-age=3600"})

    @router.get("/console/login")
    @public
    async def login_page(request: Request) -> HTMLResponse:
        state = state_of(request)
        token = secrets.token_urlsafe(32)
        response = render(request, "login.html", {
            "login_csrf": token, "expired": request.query_params.get("expired") == "1",
        })
        response.set_cookie(LOGIN_CSRF_COOKIE, token, httponly=True, samesite="strict",
                            secure=cookie_is_secure(state.settings), path="/console/login")
        return response

    @router.post("/console/login")
    @public
    async def login_submit(
        request: Request,
        username: Annotated[str, Form(max_length=64)] = "",
        password: Annotated[str, Form(max_length=1024)] = "",
        code: Annotated[str, Form(max_length=16)] = "",
    ) -> Response:
        state = state_of(request)
        settings, now, db = state.settings, state.clock(), state.db(request)
        address = request.client.host if request.client else "unknown"
        keys = throttle_keys(settings, username=username, address=address)
        locked = await db.run(lambda s: store.login_locked_until(s, keys=keys, now=now))
        if locked is not None:
            raise LoginThrottledError(locked)
        officer = await db.run(lambda s: store.get_officer_by_username(s, username=username))
        usable = officer if officer is not None and officer.active else None
        # Verify even for an unknown user (against a dummy hash) to keep the timing equal.
        password_ok = await verify_password(state, usable.password_hash if usable else None,
                                            password)
        factor_ok, step = (check_second_factor(settings, usable, code, now) if usable
                           else (False, None))
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)

        def start(session: Any) -> bool:
            assert usable is not None and usable.id is not None
            if step is not None and not store.accept_totp_step(
                session, officer_id=usable.id, step=step
            ):
                return False  # a replayed code
            store.clear_login_failures(session, keys=keys[:1])
            store.create_officer_session(session, token_hash=hash_token(token),
                                         officer_id=usable.id, csrf_token=csrf, now=now)
            actor = Actor(officer_id=usable.id, username=usable.username, role=usable.role)
            store.record_audit(session, actor=actor, action=AuditAction.LOGIN, now=now)
            if state.passwords.needs_rehash(usable.password_hash):
                store.set_officer_password_hash(session, officer_id=usable.id,
                                                password_hash=state.passwords.hash(password))
            return True

        if not (usable and password_ok and factor_ok and await db.run(start)):
            console = settings.console
            await db.run(lambda s: store.record_login_failure(
                s, limits=throttle_limits(settings, keys), now=now,
                lockout=timedelta(minutes=console.login_lockout_minutes)))
            retry = secrets.token_urlsafe(32)
            response = render(request, "login.html", {"login_csrf": retry, "failed": True},
                              status_code=401)
            response.set_cookie(LOGIN_CSRF_COOKIE, retry, httponly=True, samesite="strict",
                                secure=cookie_is_secure(settings), path="/console/login")
            return response
        success = _see_other("/console/queue")
        success.set_cookie(session_cookie_name(settings), token, httponly=True,
                            samesite="strict", secure=cookie_is_secure(settings), path="/")
        success.delete_cookie(LOGIN_CSRF_COOKIE, path="/console/login", httponly=True,
                              samesite="strict", secure=cookie_is_secure(settings))
        return success

    @router.post("/console/logout")
    @allow(*ALL_ROLES)
    async def logout(request: Request) -> Response:
        state, login = state_of(request), current_login(request)
        now = state.clock()

        def end(session: Any) -> None:
            store.delete_officer_session(session, token_hash=login.token_hash)
            store.record_audit(session, actor=login.actor, action=AuditAction.LOGOUT, now=now)

        await state.db(request).run(end)
        response = _see_other("/console/login")
        response.delete_cookie(session_cookie_name(state.settings), path="/", httponly=True,
                               samesite="strict", secure=cookie_is_secure(state.settings))
        return response

    @router.post("/console/language")
    @allow(*ALL_ROLES)
    async def set_language(
        request: Request,
        language: Annotated[str, Form()],
        back: Annotated[str, Form(max_length=2000)] = "/console/queue",
    ) -> Response:
        state, login = state_of(request), current_login(request)
        if language in UI_LANGUAGES:
            await state.db(request).run(lambda s: store.set_officer_language(
                s, officer_id=login.actor.officer_id, language=language))
        # Back to the same console page; never to another site (no "//host", no scheme).
        local = back.startswith("/console") and "//" not in back and "\\" not in back
        return _see_other(back if local else "/console/queue")

    @router.get("/console")
    @allow(*ALL_ROLES)
    async def home() -> Response:
        return _see_other("/console/queue")

    @router.get("/console/queue")
    @allow(*ALL_ROLES)
    async def queue_page(
        request: Request,
        status: StatusQuery = [],  # noqa: B006  (FastAPI copies defaults)
        urgency: str = "",
        language: str = "",
        channel: str = "",
        tag: str = "",
        folder: Annotated[str, Query(pattern="^(spam)?$")] = "",
        page: Annotated[int, Query(ge=1, le=10_000)] = 1,
    ) -> HTMLResponse:
        state = state_of(request)
        flt = _queue_filter(status, urgency, language, channel, tag, [])
        now = state.clock()
        offset = (page - 1) * PAGE_SIZE
        if folder == "spam":
            # A preset: rejected tips whose reason says spam (storage.oversight), newest first.
            result = await state.db(request).run(lambda s: oversight.list_spam_folder(
                s, limit=PAGE_SIZE, offset=offset))
        else:
            result = await state.db(request).run(lambda s: store.list_queue(
                s, flt=flt, now=now, limit=PAGE_SIZE, offset=offset))
        kept = [(k, v) for k, v in request.query_params.multi_items() if k != "page" and v]
        query = urlencode(kept)

        def page_url(number: int) -> str:
            return "?" + urlencode([*kept, ("page", str(number))])

        return render(request, "queue.html", {
            "result": result, "flt": flt, "page": page, "query": query, "page_url": page_url,
            "statuses": list(TipStatus), "urgencies": list(Urgency),
            "languages": state.settings.languages,
            "channels": ["sms", "whatsapp", "telegram", "local"],
            "filters": {"urgency": urgency, "language": language, "channel": channel,
                        "tag": tag, "status": status},
            "folder": folder,
        })

    @router.get("/console/events")
    @allow(*ALL_ROLES)
    @passive
    async def live_events(
        request: Request,
        since: Annotated[float | None, Query(ge=0, le=1e11)] = None,
    ) -> Response:
        """Server-sent events: critical tips as they are stored (bot.alerts). `since` (epoch
        seconds, from the queue page) replays what arrived between drawing the page and
        connecting; the page's script ignores a tip it has already shown."""
        alerts: AlertDispatcher | None = getattr(request.app.state, "alerts", None)
        if alerts is None:
            return Response(status_code=503)
        start = datetime.fromtimestamp(since, UTC) if since is not None else None

        async def stream() -> AsyncIterator[str]:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + LIVE_STREAM_SECONDS
            with alerts.subscribe() as inbox:
                # Subscribed before catching up: an event in between comes twice, never not at all.
                yield "retry: 2000\n\n"
                for event in alerts.recent(since=start) if start is not None else []:
                    yield event.to_sse()
                while (left := deadline - loop.time()) > 0:
                    try:
                        event = await asyncio.wait_for(
                            inbox.get(), timeout=min(LIVE_HEARTBEAT_SECONDS, left))
                    except TimeoutError:
                        yield ": keep-alive\n\n"
                        continue
                    yield event.to_sse()

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"X-Accel-Buffering": "no"})

    @router.post("/console/next")
    @allow(*ALL_ROLES)
    async def next_tip(request: Request) -> Response:
        state, login = state_of(request), current_login(request)
        now = state.clock()
        tip_id = await state.db(request).run(lambda s: store.claim_next_tip(
            s, actor=login.actor, lease=_lease(state), now=now))
        if tip_id is None:
            return _see_other("/console/queue?notice=queue_empty")
        return _see_other(_tip_url(tip_id, "claimed"))

    async def _tip_page(request: Request, tip_id: int, *, unmask: bool) -> HTMLResponse:
        state, login = state_of(request), current_login(request)
        now = state.clock()
        detail = await state.db(request).run(lambda s: store.view_tip(
            s, tip_id=tip_id, actor=login.actor, now=now, unmask=unmask))
        officers, reporter_spam = [], False
        if login.actor.role in OVERSEERS:
            officers = await state.db(request).run(lambda s: store.list_officers(s))
            reporter_spam = await state.db(request).run(
                lambda s: oversight.tip_reporter_is_spam(s, tip_id=tip_id))
        tip = detail.tip
        allowed = sorted(store.TRANSITIONS[tip.status], key=list(TipStatus).index)
        # When retention will delete the tip (bot/retention.py), so a hold can come first.
        retention = timedelta(days=state.settings.privacy.retention_days)
        deletion_due = (tip.closed_at + retention
                        if tip.closed_at is not None and not tip.legal_hold else None)
        return render(request, "tip.html", {
            "d": detail, "tip": tip, "unmasked": unmask, "transitions": allowed,
            "deletion_due": deletion_due, "reporter_spam": reporter_spam,
            "can_reject": TipStatus.REJECTED in store.TRANSITIONS[tip.status],
            "urgencies": list(Urgency), "officers": officers,
            "prepared": PREPARED.for_language(tip.language),
            "mine": tip.claimed_by == login.actor.officer_id and detail.holder is not None,
        })

    @router.get("/console/tips/{tip_id}")
    @allow(*ALL_ROLES)
    async def tip_page(request: Request, tip_id: int) -> HTMLResponse:
        return await _tip_page(request, tip_id, unmask=False)

    @router.post("/console/tips/{tip_id}/unmask")
    @allow(*ALL_ROLES)
    async def tip_unmask(request: Request, tip_id: int) -> HTMLResponse:
        return await _tip_page(request, tip_id, unmask=True)

    @router.post("/console/tips/{tip_id}/claim")
    @allow(*ALL_ROLES)
    async def tip_claim(request: Request, tip_id: int) -> Response:
        state, login = state_of(request), current_login(request)
        now = state.clock()
        await state.db(request).run(lambda s: store.claim_tip(
            s, tip_id=tip_id, actor=login.actor, lease=_lease(state), now=now))
        return _see_other(_tip_url(tip_id, "claimed"))

    @router.post("/console/tips/{tip_id}/release")
    @allow(*ALL_ROLES)
    async def tip_release(request: Request, tip_id: int) -> Response:
        state, login = state_of(request), current_login(request)
        now = state.clock()
        await state.db(request).run(lambda s: store.release_tip(
            s, tip_id=tip_id, actor=login.actor, now=now))
        return _see_other(_tip_url(tip_id, "released"))

    @router.post("/console/tips/{tip_id}/reassign")
    @allow(*OVERSEERS)
    async def tip_reassign(
        request: Request, tip_id: int, officer_id: Annotated[int, Form()]
    ) -> Response:
        state, login = state_of(request), current_login(request)
        now = state.clock()
        await state.db(request).run(lambda s: store.reassign_tip(
            s, tip_id=tip_id, actor=login.actor, to_officer_id=officer_id,
            lease=_lease(state), now=now))
        return _see_other(_tip_url(tip_id, "reassigned"))

    @router.post("/console/tips/{tip_id}/status")
    @allow(*ALL_ROLES)
    async def tip_status(
        request: Request,
        tip_id: int,
        status: Annotated[TipStatus, Form()],
        reason: Annotated[str, Form(max_length=500)] = "",
        duplicate_of: Annotated[str, Form(max_length=12)] = "",
    ) -> Response:
        state, login = state_of(request), current_login(request)
        now = state.clock()
        target = int(duplicate_of) if duplicate_of.strip().isdigit() else None
        await state.db(request).run(lambda s: store.change_tip_status(
            s, tip_id=tip_id, actor=login.actor, status=status, reason=reason,
            duplicate_of=target, lease=_lease(state), now=now))
        return _see_other(_tip_url(tip_id, "status_changed"))

    @router.post("/console/tips/{tip_id}/urgency")
    @allow(*ALL_ROLES)
    async def tip_urgency(
        request: Request,
        tip_id: int,
        urgency: Annotated[Urgency, Form()],
        reason: Annotated[str, Form(max_length=300)] = "",
    ) -> Response:
        state, login = state_of(request), current_login(request)
        now = state.clock()
        await state.db(request).run(lambda s: store.change_tip_urgency(
            s, tip_id=tip_id, actor=login.actor, urgency=urgency, reason=reason,
            lease=_lease(state), now=now))
        return _see_other(_tip_url(tip_id, "urgency_changed"))

    @router.post("/console/tips/{tip_id}/notes")
    @allow(*ALL_ROLES)
    async def tip_note(
        request: Request, tip_id: int, text: Annotated[str, Form(max_length=4000)] = ""
    ) -> Response:
        state, login = state_of(request), current_login(request)
        now = state.clock()
        await state.db(request).run(lambda s: store.add_tip_note(
            s, tip_id=tip_id, actor=login.actor, text=text, now=now))
        return _see_other(_tip_url(tip_id, "note_added"))

    @router.post("/console/tips/{tip_id}/tags")
    @allow(*ALL_ROLES)
    async def tip_tags(
        request: Request,
        tip_id: int,
        add: Annotated[str, Form(max_length=300)] = "",
        remove: Annotated[str, Form(max_length=32)] = "",
    ) -> Response:
        state, login = state_of(request), current_login(request)
        now = state.clock()
        await state.db(request).run(lambda s: store.change_tip_tags(
            s, tip_id=tip_id, actor=login.actor, add=add.replace(",", " ").split(),
            remove=[remove] if remove else [], now=now))
        return _see_other(_tip_url(tip_id, "tags_changed"))

    @router.post("/console/tips/{tip_id}/redact")
    @allow(*ALL_ROLES)
    async def tip_redact(
        request: Request, tip_id: int, passage: Annotated[str, Form(max_length=4000)] = ""
    ) -> Response:
        state, login = state_of(request), current_login(request)
        now = state.clock()
        await state.db(request).run(lambda s: store.redact_tip_passage(
            s, tip_id=tip_id, actor=login.actor, passage=passage, now=now))
        return _see_other(_tip_url(tip_id, "redacted"))

    @router.post("/console/tips/{tip_id}/legal-hold")
    @allow(*OVERSEERS)
    async def tip_legal_hold(
        request: Request,
        tip_id: int,
        hold: Annotated[str, Form(pattern="^(on|off)$")],
        reason: Annotated[str, Form(max_length=300)] = "",
    ) -> Response:
        state, login = state_of(request), current_login(request)
        now = state.clock()
        await state.db(request).run(lambda s: store.set_legal_hold(
            s, tip_id=tip_id, actor=login.actor, hold=hold == "on", reason=reason, now=now))
        return _see_other(_tip_url(tip_id, "legal_hold_changed"))

    @router.post("/console/tips/{tip_id}/spam")
    @allow(*OVERSEERS)
    async def tip_spam(
        request: Request,
        tip_id: int,
        reason: Annotated[str, Form(max_length=300)] = "",
        reject: Annotated[str, Form(max_length=8)] = "",
    ) -> Response:
        """Mark the pseudonym behind the tip as spam. The pseudonym is looked up and used in
        storage only: the officer never sees it, and the audit row does not hold it."""
        state, login = state_of(request), current_login(request)
        now = state.clock()
        await state.db(request).run(lambda s: oversight.mark_tip_reporter_as_spam(
            s, tip_id=tip_id, actor=login.actor, reason=reason, now=now,
            reject_tip=reject == "on"))
        return _see_other(_tip_url(tip_id, "marked_spam"))

    @router.post("/console/tips/{tip_id}/followups")
    @allow(*ALL_ROLES)
    async def tip_follow_up(
        request: Request,
        tip_id: int,
        prepared_key: Annotated[str, Form(max_length=64)] = "",
        question: Annotated[str, Form(max_length=1000)] = "",
    ) -> Response:
        state, login = state_of(request), current_login(request)
        now = state.clock()
        await state.db(request).run(lambda s: store.create_follow_up(
            s, tip_id=tip_id, actor=login.actor, now=now, question=question,
            prepared_key=prepared_key or None, prepared_text=PREPARED.text))
        return _see_other(_tip_url(tip_id, "follow_up_queued"))

    @router.get("/console/tips/{tip_id}/attachments/{attachment_id}")
    @allow(*ALL_ROLES)
    async def tip_attachment(request: Request, tip_id: int, attachment_id: int) -> Response:
        state, login = state_of(request), current_login(request)
        now = state.clock()
        found = await state.db(request).run(lambda s: store.download_attachment(
            s, tip_id=tip_id, attachment_id=attachment_id, actor=login.actor, now=now))
        # Always a download, never rendered in the console's origin.
        return Response(found.data, media_type="application/octet-stream", headers={
            "Content-Disposition": f'attachment; filename="tip{tip_id}-{attachment_id}.bin"',
            "X-Original-Content-Type": found.content_type,
        })

    @router.get("/console/export")
    @allow(*ALL_ROLES)
    async def export(
        request: Request,
        format: Annotated[str, Query(pattern="^(csv|json)$")] = "csv",
        status: StatusQuery = [],  # noqa: B006
        urgency: str = "",
        language: str = "",
        channel: str = "",
        tag: str = "",
        tip_id: TipIdQuery = [],  # noqa: B006
    ) -> Response:
        state, login = state_of(request), current_login(request)
        flt = _queue_filter(status, urgency, language, channel, tag, tip_id)
        if tip_id and not status:
            # Exporting named tips: whatever their status.
            flt = QueueFilter(statuses=tuple(TipStatus), tip_ids=flt.tip_ids)
        now = state.clock()
        rows = await state.db(request).run(lambda s: store.export_tips(
            s, flt=flt, actor=login.actor, now=now, fmt=format))
        stamp = now.strftime("%Y%m%d-%H%M")
        if format == "json":
            body = json.dumps(rows, ensure_ascii=False, indent=1)
            media = "application/json"
        else:
            buffer = io.StringIO()
            writer = csv.DictWriter(buffer, fieldnames=store.EXPORT_FIELDS)
            writer.writeheader()
            for row in rows:
                writer.writerow({**row, "urgency_reasons": "; ".join(row["urgency_reasons"]),
                                 "tags": " ".join(row["tags"])})
            body, media = buffer.getvalue(), "text/csv; charset=utf-8"
        return Response(body, media_type=media, headers={
            "Content-Disposition": f'attachment; filename="tips-{stamp}.{format}"'})

    @router.get("/console/audit")
    @allow(*OVERSEERS)
    async def audit_page(
        request: Request,
        tip: str = "",
        officer: str = "",
        action: str = "",
        page: Annotated[int, Query(ge=1, le=10_000)] = 1,
    ) -> HTMLResponse:
        state = state_of(request)
        wanted = AuditAction(action) if action in AuditAction.__members__.values() else None
        tip_id = int(tip) if tip.strip().isdigit() else None

        def load(session: Any) -> list[Any]:
            officer_id = None
            if officer.strip():
                found = store.get_officer_by_username(session, username=officer)
                officer_id = found.id if found is not None else -1
            return store.list_audit(session, tip_id=tip_id, officer_id=officer_id,
                                    action=wanted, limit=PAGE_SIZE + 1,
                                    offset=(page - 1) * PAGE_SIZE)

        entries = await state.db(request).run(load)
        return render(request, "audit.html", {
            "entries": entries[:PAGE_SIZE], "has_more": len(entries) > PAGE_SIZE,
            "page": page, "actions": list(AuditAction),
            "filters": {"tip": tip, "officer": officer, "action": action},
        })

    @router.get("/console/dashboard")
    @allow(*OVERSEERS)
    async def dashboard_page(request: Request) -> HTMLResponse:
        """Supervisors and admins only: a map of where tips come from, across the whole
        caseload, is more than an officer working the queue needs (and in a small place it
        narrows down who reports)."""
        state, login = state_of(request), current_login(request)
        now = state.clock()
        figures = await state.db(request).run(lambda s: oversight.read_dashboard(
            s, actor=login.actor, now=now, days=DASHBOARD_DAYS))
        boundaries, map_problem = None, ""
        path = charts.resolve_boundaries_path(state.settings.console.map_boundaries_geojson)
        if path is not None:
            try:
                boundaries = await asyncio.to_thread(charts.load_boundaries, path)
            except charts.BoundariesError as exc:
                map_problem = str(exc)  # the map falls back to the tips' own extent
        t = CATALOGUE.translator(_ui_language(request, state))
        urgency_names = {u.value: t(f"urgency_{u.value}") for u in Urgency}
        bar_charts = [
            ("tips_by_channel", charts.stacked_bars(figures.days, figures.by_channel)),
            ("tips_by_language", charts.stacked_bars(figures.days, figures.by_language)),
            ("tips_by_urgency", charts.stacked_bars(
                figures.days, figures.by_urgency, colours=charts.URGENCY_COLOURS,
                label=urgency_names)),
        ]
        return render(request, "dashboard.html", {
            "f": figures, "bar_charts": bar_charts, "duration": charts.duration_text,
            "tip_map": charts.draw_map(figures.points, boundaries),
            "map_problem": map_problem, "boundaries": boundaries is not None,
            "urgency_colours": [(urgency_names[u], c) for u, c in charts.URGENCY_COLOURS.items()],
        })

    @router.get("/console/flows")
    @allow(OfficerRole.ADMIN)
    async def flows_page(request: Request) -> HTMLResponse:
        """Read-only: languages, translation coverage, the live model, and `tipline flows
        check` without Rasa's own validation (Rasa is never started from a page view)."""
        state, login = state_of(request), current_login(request)
        settings, now = state.settings, state.clock()

        def load(session: Any) -> dict[str, Any] | None:
            oversight.record_page_view(session, actor=login.actor, now=now, page="flows page")
            return runtime.get_setting(session, key=runtime.DIALOGUE)

        live = await state.db(request).run(load) or {}
        coverage = await asyncio.to_thread(
            charts.translation_coverage, languages=settings.languages,
            default=settings.default_language,
            responses_dir=settings.nlu_project_dir / "responses",
            messages_dir=settings.messages_dir)
        problems = await asyncio.to_thread(_flows_check, settings)
        since = None
        if isinstance(live.get("since"), str):
            try:
                since = datetime.fromisoformat(live["since"])
            except ValueError:
                since = None
        return render(request, "flows.html", {
            "languages": settings.languages, "default_language": settings.default_language,
            "coverage": coverage, "live": live, "since": since,
            "problems": None if problems is None else problems[:FLOWS_PROBLEMS_SHOWN],
            "problem_count": len(problems or []),
        })

    @router.get("/api/tips")
    @allow(*ALL_ROLES)
    async def api_tips(
        request: Request,
        status: StatusQuery = [],  # noqa: B006
        urgency: str = "",
        language: str = "",
        channel: str = "",
        tag: str = "",
        limit: Annotated[int, Query(ge=1, le=API_MAX)] = 200,
        offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0,
    ) -> JSONResponse:
        """Tips in queue order, texts masked, no reporter id. The listing itself is audited."""
        state, login = state_of(request), current_login(request)
        flt = _queue_filter(status, urgency, language, channel, tag, [])
        now = state.clock()

        def load(session: Any) -> list[TipPublic]:
            result = store.list_queue(session, flt=flt, now=now, limit=limit, offset=offset)
            store.record_audit(session, actor=login.actor, action=AuditAction.VIEW, now=now,
                               detail=f"api list, {len(result.tips)} tip(s), {flt.describe()}")
            tips = []
            for tip in result.tips:
                public = TipPublic.model_validate(tip, from_attributes=True)
                tips.append(public.model_copy(update={
                    "what": store.mask_contact_details(public.what),
                    "where_text": store.mask_contact_details(public.where_text),
                    "when_text": store.mask_contact_details(public.when_text),
                }))
            return tips

        tips = await state.db(request).run(load)
        return JSONResponse([t.model_dump(mode="json") for t in tips])

    return router
