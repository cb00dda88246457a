"""Console security: CSRF, cookie flags, throttling, deny-by-default roles, claims, idle
timeout, logout, TOTP replay, equal answers for unknown users."""

from __future__ import annotations

import re
from collections.abc import Callable

import httpx
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts

from bot.console import totp
from bot.console.auth import ADDRESS_FAILURES_FACTOR, allow, guarded_router
from storage import console as store
from storage.console import OfficerRole
from storage.models import TipStatus, Urgency
from tests.console.client import page_csrf
from tests.console.conftest import PASSWORD, Console

# Open on purpose: health check, the login form, the vendored CSS/JS.
PUBLIC = {("GET", "/healthz"), ("GET", "/console/login"), ("GET", "/console/static/{name}")}


def session_cookie_flags(response: httpx.Response) -> tuple[str, set[str]]:
    cookies = [c for c in response.headers.get_list("set-cookie") if "tl_session=" in c]
    assert len(cookies) == 1, response.headers.get_list("set-cookie")
    name = cookies[0].split("=", 1)[0]
    return name, {part.strip().lower() for part in cookies[0].split(";")[1:]}


def fill(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "1", path.replace("{channel}", "sms").replace("{name}", "x"))


def test_every_route_rejects_anonymous_requests(console: Console) -> None:
    # Included routers are flattened here, so routes added anywhere are all enumerated.
    routes = [r for r in iter_route_contexts(console.app.routes)
              if r.path and r.methods and r.path != "/openapi.json"]
    assert len(routes) > 20
    checked = 0
    with httpx.Client(base_url=console.url, follow_redirects=False, timeout=10) as anonymous:
        for route in routes:
            for method in sorted(route.methods or ()):
                if method == "HEAD" or (method, route.path) in PUBLIC:
                    continue
                response = anonymous.request(method, fill(route.path))
                if response.status_code == 303:
                    assert response.headers["location"].startswith("/console/login"), route.path
                else:
                    assert response.status_code in {401, 403}, (method, route.path, response)
                checked += 1
    assert checked >= 20


def test_public_login_post_needs_its_own_csrf_token(console: Console) -> None:
    officer = console.account("omar")
    with httpx.Client(base_url=console.url, follow_redirects=False) as http:
        response = http.post("/console/login", data={"username": officer.username,
                                                     "password": officer.password})
    assert response.status_code == 403
    assert "__Host-tl_session" not in response.headers.get("set-cookie", "")


def test_a_route_that_declares_no_roles_is_refused_even_to_an_admin(
    console_factory: Callable[..., Console],
) -> None:
    def add_routes(app: FastAPI) -> None:
        router = guarded_router()

        @router.get("/console/forgot-to-declare")
        async def forgot() -> dict[str, str]:
            return {"secret": "leaked"}

        @router.get("/console/declared")
        @allow(OfficerRole.ADMIN)
        async def declared() -> dict[str, str]:
            return {"ok": "yes"}

        app.include_router(router)

    console = console_factory(before_start=add_routes)
    admin = console.login(console.account("root", "admin"))
    officer = console.login(console.account("olga", "officer"))
    assert admin.get("/console/forgot-to-declare").status_code == 403
    assert admin.get("/console/declared").json() == {"ok": "yes"}
    assert officer.get("/console/declared").status_code == 403


def test_roles_are_checked_per_route(console: Console) -> None:
    officer = console.login(console.account("otto"))
    supervisor = console.login(console.account("sara", "supervisor"))
    tip = console.tip()
    assert officer.get("/console/audit").status_code == 403
    assert supervisor.get("/console/audit").status_code == 200
    assert officer.post(f"/console/tips/{tip}/reassign", data={"officer_id": "1"}).status_code == 403


def test_a_change_without_the_csrf_token_is_refused(console: Console) -> None:
    client = console.login(console.account("carla"))
    tip = console.tip()
    assert client.post("/console/next", csrf=False).status_code == 403
    assert client.post("/console/next", csrf=False, data={"csrf_token": "forged"}).status_code == 403
    assert client.post(f"/console/tips/{tip}/notes", csrf=False, data={"text": "x"}).status_code == 403
    assert client.post("/console/logout", csrf=False).status_code == 403
    # Nothing happened, and nothing was audited.
    assert console.query(lambda s: s.get(store.Tip, tip).claimed_by) is None
    assert console.query(lambda s: store.list_audit(s, tip_id=tip)) == []
    # The header works as well as the form field.
    headers = {"X-CSRF-Token": client.csrf}
    assert client.post("/console/next", csrf=False, headers=headers).status_code == 303


def test_session_cookie_is_secure_httponly_samesite_strict(
    console_factory: Callable[..., Console],
) -> None:
    # Production refuses to drop Secure even when told to.
    console = console_factory(console={"cookie_secure": False})
    account = console.account("pia")
    client = console.client()
    response = client.login_attempt(account.username, account.password)
    name, flags = session_cookie_flags(response)
    assert name == "__Host-tl_session"
    assert {"secure", "httponly", "samesite=strict", "path=/"} <= flags
    assert not any(flag.startswith("domain") for flag in flags)


def test_development_may_drop_secure_for_plain_http(
    console_factory: Callable[..., Console],
) -> None:
    console = console_factory(environment="development", console={"cookie_secure": False})
    account = console.account("dev")
    response = console.client().login_attempt(account.username, account.password)
    name, flags = session_cookie_flags(response)
    assert name == "tl_session"
    assert "secure" not in flags and "httponly" in flags and "samesite=strict" in flags


def test_login_is_throttled_per_account_after_repeated_failures(console: Console) -> None:
    account = console.account("tom")
    client = console.client()
    limit = console.settings.console.login_max_failures
    for _ in range(limit):
        assert client.login_attempt(account.username, "wrong password!").status_code == 401
    # Even the right password is refused while the lockout runs.
    assert client.login_attempt(account.username, account.password).status_code == 429
    console.clock.advance(minutes=console.settings.console.login_lockout_minutes + 1)
    assert client.login_attempt(account.username, account.password).status_code == 303
    # The client address is never stored in clear.
    keys = console.query(lambda s: [row.key_hash for row in s.exec(
        store.select(store.LoginThrottle))])
    assert all("127.0.0.1" not in key and len(key) == 64 for key in keys)


def test_login_is_throttled_per_client_address_across_usernames(console: Console) -> None:
    account = console.account("una")
    client = console.client()
    # A shared address (a station behind NAT) gets more room than one account.
    for n in range(console.settings.console.login_max_failures * ADDRESS_FAILURES_FACTOR):
        assert client.login_attempt(f"nobody{n}", "guess").status_code == 401
    assert client.login_attempt(account.username, account.password).status_code == 429


def test_unknown_user_and_wrong_password_get_the_same_answer(console: Console) -> None:
    account = console.account("vera")
    client = console.client()
    unknown = client.login_attempt("no-such-user", "whatever-password")
    wrong = client.login_attempt(account.username, "whatever-password")
    assert unknown.status_code == wrong.status_code == 401
    strip = re.compile(r'value="[^"]+"')
    assert strip.sub("", unknown.text) == strip.sub("", wrong.text)


def test_a_totp_code_works_only_once(console: Console) -> None:
    boss = console.account("bea", "supervisor")
    code = totp.now_code(boss.totp_secret or "", console.clock())
    first, second = console.client(), console.client()
    assert first.login_attempt(boss.username, boss.password, code=code).status_code == 303
    assert second.login_attempt(boss.username, boss.password, code=code).status_code == 401


def test_officer_totp_can_be_required_by_settings(console_factory: Callable[..., Console]) -> None:
    console = console_factory(console={"officer_totp_required": True})
    plain = console.account("no-totp", "officer", with_totp=False)
    enrolled = console.account("with-totp", "officer", with_totp=True)
    assert console.client().login_attempt(plain.username, plain.password).status_code == 401
    console.login(enrolled)


def test_idle_session_times_out(console: Console) -> None:
    client = console.login(console.account("ida"))
    idle = console.settings.console.session_idle_minutes
    console.clock.advance(minutes=idle - 2)
    assert client.get("/console/queue").status_code == 200  # activity keeps it alive
    console.clock.advance(minutes=idle - 2)
    assert client.get("/console/queue").status_code == 200
    console.clock.advance(minutes=idle + 1)
    expired = client.get("/console/queue")
    assert expired.status_code == 303
    assert expired.headers["location"] == "/console/login?expired=1"
    assert client.get("/api/tips").status_code == 401
    assert console.query(lambda s: list(s.exec(store.select(store.OfficerSession)))) == []


def test_logout_deletes_the_session_server_side(console: Console) -> None:
    client = console.login(console.account("leo"))
    assert client.post("/console/logout").status_code == 303
    # The old cookie is worthless now, even if a copy was kept.
    assert client.get("/console/queue").status_code == 303
    assert console.query(lambda s: list(s.exec(store.select(store.OfficerSession)))) == []


def test_one_officer_cannot_act_on_a_tip_claimed_by_another(console: Console) -> None:
    alice = console.login(console.account("alice"))
    bob_account = console.account("bob")
    bob = console.login(bob_account)
    supervisor = console.login(console.account("sue", "supervisor"))
    tip = console.tip(urgency=Urgency.HIGH)
    assert alice.post("/console/next").headers["location"].startswith(f"/console/tips/{tip}")
    audit_before = console.query(lambda s: len(store.list_audit(s, tip_id=tip)))

    for path, data in [
        ("claim", {}), ("release", {}), ("notes", {"text": "mine now"}),
        ("status", {"status": "closed"}), ("urgency", {"urgency": "low", "reason": "meh"}),
        ("redact", {"passage": "cattle"}), ("tags", {"add": "x"}),
        ("followups", {"prepared_key": "still_there"}),
    ]:
        refused = bob.post(f"/console/tips/{tip}/{path}", data=data)
        assert refused.status_code == 403, path
        assert "claimed by alice" in refused.text
    # Refused actions leave no audit rows and change nothing.
    assert console.query(lambda s: len(store.list_audit(s, tip_id=tip))) == audit_before
    assert console.query(lambda s: s.get(store.Tip, tip).status) == TipStatus.IN_REVIEW

    # A supervisor hands it over; now bob may work on it and alice may not.
    moved = supervisor.post(f"/console/tips/{tip}/reassign", data={"officer_id": str(bob_account.id)})
    assert moved.status_code == 303
    assert bob.post(f"/console/tips/{tip}/notes", data={"text": "on it"}).status_code == 303
    assert alice.post(f"/console/tips/{tip}/notes", data={"text": "me?"}).status_code == 403


def test_an_expired_claim_is_free_to_take(console: Console) -> None:
    alice = console.login(console.account("alice"))
    bob = console.login(console.account("bob"))
    tip = console.tip()
    alice.post("/console/next")
    assert bob.post("/console/next").headers["location"] == "/console/queue?notice=queue_empty"
    console.clock.advance(minutes=console.settings.console.claim_lease_minutes + 1)
    bob = console.login(console.account("bob"))
    assert bob.post("/console/next").headers["location"].startswith(f"/console/tips/{tip}")


def test_security_headers_on_console_pages(console: Console) -> None:
    response = httpx.get(f"{console.url}/console/login")
    csp = response.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["cache-control"] == "no-store"
    # Nothing on the page comes from elsewhere (missions run offline).
    assert not re.search(r'(src|href)="(https?:)?//', response.text)


def test_login_page_csrf_token_is_fresh_per_form(console: Console) -> None:
    with httpx.Client(base_url=console.url) as http:
        first = page_csrf(http.get("/console/login").text)
        second = page_csrf(http.get("/console/login").text)
    assert first != second


def test_password_is_stored_as_argon2(console: Console) -> None:
    account = console.account("hash")
    stored = console.query(lambda s: store.get_officer(s, officer_id=account.id).password_hash)
    assert stored.startswith("$argon2id$") and PASSWORD not in stored


