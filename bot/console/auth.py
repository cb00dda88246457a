"""Who may use the console: password hashing, sessions, CSRF, throttling and the route guard.

The guard is deny by default: it is a dependency of the console router, and it refuses any
route whose endpoint did not declare its roles with `@allow(...)` or `@public`. A route added
without a declaration answers 403 even to an admin, so forgetting is safe.

This module never logs a password, a TOTP code, a session token or a client address; client
addresses only ever exist as keyed HMACs (throttling keys).

Exceptions::

    ConsoleError
     ├── NotAuthenticatedError     no session, or it ended (idle, too old, logged out)
     ├── ForbiddenError            a role the route does not allow, or no declaration at all
     ├── CsrfError                 a state-changing request without the session's token
     └── LoginThrottledError       too many failed logins for this account or address
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

import anyio.to_thread
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from fastapi import APIRouter, Depends, Request

from bot.console import totp
from config import Settings
from storage import console as store
from storage.console import Actor, Officer, OfficerRole
from storage.db import Database

F = TypeVar("F", bound=Callable[..., Any])
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
LOGIN_CSRF_COOKIE = "tl_login_csrf"
# Writing last_seen_at on every request would make every page view a write; a minute of
# slack on a 30-minute idle timeout does not matter.
TOUCH_EVERY = timedelta(seconds=60)
ALL_ROLES = (OfficerRole.OFFICER, OfficerRole.SUPERVISOR, OfficerRole.ADMIN)
OVERSEERS = (OfficerRole.SUPERVISOR, OfficerRole.ADMIN)


class ConsoleError(Exception):
    """Base of the console's request errors (mapped to HTTP in bot.console.install)."""


class NotAuthenticatedError(ConsoleError):
    def __init__(self, reason: str = "login") -> None:
        super().__init__(reason)
        self.reason = reason


class ForbiddenError(ConsoleError):
    pass


class CsrfError(ConsoleError):
    pass


class LoginThrottledError(ConsoleError):
    def __init__(self, until: datetime) -> None:
        super().__init__(f"locked until {until:%H:%M} UTC")
        self.until = until


# --- Route declarations ----------------------------------------------------------------------

_ROLES_ATTR = "__console_roles__"
_PUBLIC_ATTR = "__console_public__"
_PASSIVE_ATTR = "__console_passive__"


def allow(*roles: OfficerRole) -> Callable[[F], F]:
    """Declare which roles may call a console endpoint (put it under the route decorator)."""
    if not roles:
        raise ValueError("allow() needs at least one role; use @public for open routes")

    def declare(endpoint: F) -> F:
        setattr(endpoint, _ROLES_ATTR, frozenset(roles))
        return endpoint

    return declare


def public(endpoint: F) -> F:
    """Declare an endpoint open to anyone (login page, static files). Use sparingly."""
    setattr(endpoint, _PUBLIC_ATTR, True)
    return endpoint


def passive(endpoint: F) -> F:
    """Declare that requests to an endpoint are not officer activity: they still need a valid
    session and role, but do not extend the idle timeout. For what the browser does by itself
    (the live alert stream reconnects all day); otherwise an open tab never times out."""
    setattr(endpoint, _PASSIVE_ATTR, True)
    return endpoint


def declared_roles(endpoint: object) -> frozenset[OfficerRole] | None:
    roles: frozenset[OfficerRole] | None = getattr(endpoint, _ROLES_ATTR, None)
    return roles


def is_public(endpoint: object) -> bool:
    return bool(getattr(endpoint, _PUBLIC_ATTR, False))


# --- Secrets, hashing ------------------------------------------------------------------------


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class Passwords:
    """Argon2id with argon2-cffi's defaults (RFC 9106 low-memory profile)."""

    def __init__(self) -> None:
        self._hasher = PasswordHasher()
        # Verified against when the username is unknown: the same work as a real check.
        self._dummy = self._hasher.hash(secrets.token_urlsafe(16))

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify(self, password_hash: str | None, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash or self._dummy, password) and bool(
                password_hash
            )
        except (VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, password_hash: str) -> bool:
        return self._hasher.check_needs_rehash(password_hash)


def check_password_strength(password: str) -> str | None:
    """Why a new password is refused, or None."""
    if len(password) < 12:
        return "at least 12 characters"
    if len(set(password)) < 5:
        return "too repetitive"
    return None


# Many officers may share one address (a station behind NAT): an address gets more failures
# than an account before it is locked, so one forgetful colleague cannot lock out the rest.
ADDRESS_FAILURES_FACTOR = 4


def throttle_limits(settings: Settings, keys: list[str]) -> dict[str, int]:
    """Failures allowed per throttling key: [account key, address key] from throttle_keys."""
    account = settings.console.login_max_failures
    return {keys[0]: account, keys[1]: account * ADDRESS_FAILURES_FACTOR}


def throttle_keys(settings: Settings, *, username: str, address: str) -> list[str]:
    """Keyed HMACs: the same account/address gives the same key, and the database never
    holds the address itself (the pepper is not in the database)."""
    pepper = settings.privacy.pepper.get_secret_value().encode("utf-8")

    def key(value: str) -> str:
        return hmac.new(pepper, f"console-login:{value}".encode(), hashlib.sha256).hexdigest()

    return [key(f"user:{username.strip().lower()}"), key(f"addr:{address}")]


def totp_required(settings: Settings, officer: Officer) -> bool:
    if officer.role in OVERSEERS:
        return True
    return settings.console.officer_totp_required or officer.totp_secret is not None


def cookie_is_secure(settings: Settings) -> bool:
    # Only development may turn Secure off (plain http://127.0.0.1).
    return settings.console.cookie_secure or not settings.is_development


def session_cookie_name(settings: Settings) -> str:
    # The __Host- prefix makes browsers insist on Secure, Path=/ and no Domain.
    return "__Host-tl_session" if cookie_is_secure(settings) else "tl_session"


# --- The logged-in officer -------------------------------------------------------------------


@dataclass(frozen=True)
class Login:
    """What the guard leaves on request.state for endpoints."""

    actor: Actor
    language: str | None
    csrf_token: str
    token_hash: str


@dataclass
class ConsoleState:
    """Everything the console needs, built once by bot.console.install."""

    settings: Settings
    clock: Callable[[], datetime]
    passwords: Passwords

    def db(self, request: Request) -> Database:
        db: Database = request.app.state.db
        return db


def state_of(request: Request) -> ConsoleState:
    state: ConsoleState = request.app.state.console
    return state


async def _login_from_cookie(
    request: Request, state: ConsoleState, *, touch: bool = True
) -> Login:
    token = request.cookies.get(session_cookie_name(state.settings))
    if not token:
        raise NotAuthenticatedError("login")
    token_hash = hash_token(token)
    now = state.clock()
    console = state.settings.console
    idle = timedelta(minutes=console.session_idle_minutes)
    longest = timedelta(hours=console.session_max_hours)

    def load(session: Any) -> tuple[Login | None, str]:
        found = store.get_officer_session(session, token_hash=token_hash)
        if found is None:
            return None, "login"
        stored, officer = found
        if not officer.active:
            store.delete_officer_session(session, token_hash=token_hash)
            return None, "login"
        if now - stored.last_seen_at > idle or now - stored.created_at > longest:
            # Expired sessions are deleted, not just refused.
            store.delete_officer_session(session, token_hash=token_hash)
            return None, "expired"
        if touch and now - stored.last_seen_at > TOUCH_EVERY:
            store.touch_officer_session(session, token_hash=token_hash, now=now)
        assert officer.id is not None
        actor = Actor(officer_id=officer.id, username=officer.username, role=officer.role)
        return Login(actor=actor, language=officer.language, csrf_token=stored.csrf_token,
                     token_hash=token_hash), ""

    login, reason = await state.db(request).run(load)
    if login is None:
        raise NotAuthenticatedError(reason)
    return login


async def _submitted_csrf(request: Request) -> str:
    header = request.headers.get(CSRF_HEADER)
    if header:
        return header
    content_type = request.headers.get("content-type", "")
    if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        # FastAPI has already parsed the body; Starlette caches it on the request.
        value = (await request.form()).get(CSRF_FIELD)
        return value if isinstance(value, str) else ""
    return ""


async def guard(request: Request) -> None:
    """Router-level dependency of every console route: deny by default."""
    endpoint = request.scope.get("endpoint")
    state = state_of(request)
    if is_public(endpoint):
        if request.method not in SAFE_METHODS:
            # Before login there is no session: double-submit cookie (SameSite=Strict).
            expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
            given = await _submitted_csrf(request)
            if not expected or not hmac.compare_digest(expected.encode(), given.encode()):
                raise CsrfError("missing or wrong login form token")
        return
    roles = declared_roles(endpoint)
    login = await _login_from_cookie(
        request, state, touch=not getattr(endpoint, _PASSIVE_ATTR, False))
    request.state.login = login
    if roles is None:
        raise ForbiddenError("this route declares no roles, so nobody may use it")
    if login.actor.role not in roles:
        raise ForbiddenError(f"the {login.actor.role} role may not do this")
    if request.method not in SAFE_METHODS:
        given = await _submitted_csrf(request)
        if not given or not hmac.compare_digest(login.csrf_token.encode(), given.encode()):
            raise CsrfError("missing or wrong CSRF token")


def guarded_router() -> APIRouter:
    """An APIRouter whose every route passes through `guard`."""
    return APIRouter(dependencies=[Depends(guard)], include_in_schema=False)


def current_login(request: Request) -> Login:
    login: Login = request.state.login
    return login


def check_second_factor(
    settings: Settings, officer: Officer, code: str, moment: datetime
) -> tuple[bool, int | None]:
    """(ok, accepted step). Officers without TOTP when it is optional pass with no step."""
    if not totp_required(settings, officer):
        return True, None
    if not officer.totp_secret:
        return False, None
    step = totp.matching_step(officer.totp_secret, code, moment)
    return step is not None, step


async def verify_password(state: ConsoleState, password_hash: str | None, password: str) -> bool:
    # Argon2 takes tens of milliseconds of CPU: off the event loop.
    return await anyio.to_thread.run_sync(state.passwords.verify, password_hash, password)
