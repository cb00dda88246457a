"""A logged-in console client for tests: login form (+ TOTP) and CSRF, over plain HTTP.

The session cookie is Secure, so httpx's cookie jar will not send it back to
http://127.0.0.1; this client keeps the cookie itself and sends it explicitly, as a browser on
a trustworthy origin would.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import httpx

from bot.console import totp

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
SESSION_COOKIES = ("__Host-tl_session", "tl_session")


class LoginFailedError(RuntimeError):
    pass


def page_csrf(html: str) -> str:
    match = _CSRF.search(html)
    if match is None:
        raise AssertionError("no CSRF token on the page")
    return match.group(1)


class ConsoleClient:
    def __init__(self, base_url: str) -> None:
        self.http = httpx.Client(base_url=base_url, timeout=15, follow_redirects=False)
        self.session_cookie: tuple[str, str] | None = None
        self.csrf = ""

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> ConsoleClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _cookie_header(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        cookies = dict(extra or {})
        if self.session_cookie is not None:
            cookies[self.session_cookie[0]] = self.session_cookie[1]
        return {"Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items())} if cookies else {}

    def request(self, method: str, url: str, *, csrf: bool = True, **kwargs: Any) -> httpx.Response:
        """A request with the session cookie; POST forms get the CSRF token unless csrf=False."""
        headers = {**kwargs.pop("headers", {}), **self._cookie_header()}
        if method.upper() == "POST" and csrf and "json" not in kwargs:
            kwargs["data"] = {"csrf_token": self.csrf, **kwargs.get("data", {})}
        self.http.cookies.clear()
        return self.http.request(method, url, headers=headers, **kwargs)

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, **kwargs)

    def login_attempt(
        self, username: str, password: str, *, code: str = ""
    ) -> httpx.Response:
        self.http.cookies.clear()
        form = self.http.get("/console/login")
        login_cookie = form.cookies.get("tl_login_csrf", "")
        response = self.http.post(
            "/console/login",
            data={"csrf_token": page_csrf(form.text), "username": username,
                  "password": password, "code": code},
            headers={"Cookie": f"tl_login_csrf={login_cookie}"},
        )
        for name in SESSION_COOKIES:
            value = response.cookies.get(name)
            if value:
                self.session_cookie = (name, value)
        self.http.cookies.clear()
        return response

    def login(
        self,
        username: str,
        password: str,
        *,
        totp_secret: str | None = None,
        now: datetime | None = None,
    ) -> ConsoleClient:
        code = totp.now_code(totp_secret, now or datetime.now().astimezone()) if totp_secret else ""
        response = self.login_attempt(username, password, code=code)
        if response.status_code != 303 or self.session_cookie is None:
            raise LoginFailedError(f"login as {username} failed: HTTP {response.status_code}")
        queue = self.get("/console/queue")
        queue.raise_for_status()
        self.csrf = page_csrf(queue.text)
        return self


def ensure_account(
    db: Any, *, username: str, password: str, role: str = "officer", totp_secret: str | None = None
) -> int:
    """Create a console account directly in storage (as `tipline officers create` does) unless
    it exists; its id."""
    from bot.console.auth import Passwords
    from storage import console as store

    def make(session: Any) -> int:
        found = store.get_officer_by_username(session, username=username)
        if found is None:
            found = store.create_officer(session, officer=store.OfficerCreate(
                username=username, role=store.OfficerRole(role),
                password_hash=Passwords().hash(password), totp_secret=totp_secret))
        assert found.id is not None
        return found.id

    officer_id: int = db.run_sync(make)
    return officer_id
