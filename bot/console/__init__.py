"""The duty officers' console: server-rendered pages and a small JSON API in the gateway app.

`install_console(app, settings, clock=...)` is the only entry point; the composition root calls
it. This package owns the console's HTTP side (routes, the deny-by-default guard, CSRF, cookies,
templates, UI texts) and maps console and storage errors to HTTP. It never touches the ORM
(storage.console does), never shows or logs a reporter identifier, and loads nothing from the
network: CSS and JS are vendored in static/.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bot.console.auth import (
    ConsoleError,
    ConsoleState,
    CsrfError,
    ForbiddenError,
    LoginThrottledError,
    NotAuthenticatedError,
    Passwords,
)
from bot.console.routes import build_router, render
from config import Settings
from storage.console import (
    ConsoleStorageError,
    InvalidActionError,
    NotPermittedError,
    OfficerExistsError,
    TipClaimedError,
    TipNotFoundError,
)
from storage.models import utcnow

CONSOLE_PATHS = ("/console", "/api/")
SECURITY_HEADERS = {
    # Nothing external, no inline script or style, no framing.
    "content-security-policy": "default-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'",
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
    "permissions-policy": "geolocation=(), camera=(), microphone=()",
}


class ConsoleHeaders:
    """Pure ASGI middleware: security headers on console and API responses only."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not str(scope.get("path", "")).startswith(CONSOLE_PATHS):
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                static = str(scope.get("path", "")).startswith("/console/static/")
                for name, value in SECURITY_HEADERS.items():
                    if name == "cache-control" and static:
                        continue
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _wants_json(request: Request) -> bool:
    return request.url.path.startswith("/api/")


def _problem(request: Request, status: int, message: str) -> Response:
    if _wants_json(request):
        return JSONResponse({"detail": message}, status_code=status)
    return render(request, "error.html", {"status": status, "message": message},
                  status_code=status)


async def _on_console_error(request: Request, exc: Exception) -> Response:
    if isinstance(exc, NotAuthenticatedError):
        if _wants_json(request):
            return JSONResponse({"detail": "not logged in"}, status_code=401)
        expired = "?expired=1" if exc.reason == "expired" else ""
        return RedirectResponse(f"/console/login{expired}", status_code=303)
    if isinstance(exc, LoginThrottledError):
        return _problem(request, 429, f"Too many failed logins. Try again after "
                                      f"{exc.until:%H:%M} UTC.")
    if isinstance(exc, CsrfError):
        return _problem(request, 403, "The form was too old or not sent by the console "
                                      "(CSRF token). Reload the page and try again.")
    if isinstance(exc, ForbiddenError):
        return _problem(request, 403, str(exc))
    return _problem(request, 400, str(exc))


async def _on_storage_error(request: Request, exc: Exception) -> Response:
    if isinstance(exc, TipClaimedError):
        return _problem(request, 403, f"Tip #{exc.tip_id} is claimed by {exc.holder} until "
                                      f"{exc.until:%H:%M} UTC. Ask a supervisor to reassign it.")
    if isinstance(exc, NotPermittedError):
        return _problem(request, 403, str(exc))
    if isinstance(exc, TipNotFoundError):
        return _problem(request, 404, str(exc))
    if isinstance(exc, (InvalidActionError, OfficerExistsError)):
        return _problem(request, 400, str(exc))
    return _problem(request, 400, "the action could not be done")


def install_console(
    app: FastAPI, settings: Settings, *, clock: Callable[[], datetime] = utcnow
) -> None:
    """Mount the console on the gateway app (routes, error mapping, headers)."""
    app.state.console = ConsoleState(settings=settings, clock=clock, passwords=Passwords())
    app.include_router(build_router())
    handlers: dict[Any, Any] = {ConsoleError: _on_console_error,
                                ConsoleStorageError: _on_storage_error}
    for error, handler in handlers.items():
        app.add_exception_handler(error, handler)
    app.add_middleware(ConsoleHeaders)
