"""The whole tip line for end-to-end tests: real Rasa + action server + gateway.

Rasa and the action server run as subprocesses from the cached Rasa environment with the
cached model (trained on first use); the gateway runs in a uvicorn thread of the test process,
so its logs are captured, with Twilio faked at the HTTP boundary.
"""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx
import uvicorn

from bot.app import create_app
from bot.runner import prepare, start_rasa_processes, stop_all, wait_for_rasa
from config import Settings
from tests.conftest import make_settings, make_twilio_form, twilio_signature
from tests.fakes import FakeTwilioApi, Handler, Router


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Stack:
    settings: Settings
    gateway_url: str
    twilio: FakeTwilioApi
    log_dir: Path
    app: object

    def sms(self, number: str, text: str, *, timeout: float = 60.0) -> str:
        """Send one signed SMS and return the reply text that comes back to `number`."""
        before = len(self.twilio.bodies_to(number))
        form = make_twilio_form(body=text, from_=number)
        response = httpx.post(
            f"{self.gateway_url}/webhooks/sms", data=form,
            headers={"X-Twilio-Signature": twilio_signature(form)}, timeout=10,
        )
        assert response.status_code == 200, response.text
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            bodies = self.twilio.bodies_to(number)
            if len(bodies) > before:
                time.sleep(0.2)  # a reply may come in several SMS parts
                return "\n".join(self.twilio.bodies_to(number)[before:])
            time.sleep(0.1)
        raise TimeoutError(f"no reply to {text!r} within {timeout} s")

    def officer_tips(self) -> list[dict[str, object]]:
        """The officers' JSON API, logged in through the console's login form like a person."""
        from tests.console.client import ConsoleClient, ensure_account

        username, password = "e2e-officer", "e2e-officer-password-for-tests"
        ensure_account(self.app.state.db, username=username, password=password)  # type: ignore[attr-defined]
        with ConsoleClient(self.gateway_url) as console:
            response = console.login(username, password).get("/api/tips")
        response.raise_for_status()
        tips: list[dict[str, object]] = response.json()
        return tips


def run_stack(
    tmp: Path, *, extra_routes: Mapping[str, Handler] | None = None, **overrides: object
) -> Iterator[Stack]:
    """Start the stack; `overrides` go to make_settings, `extra_routes` add fake providers
    by host (e.g. {"api.telegram.org": FakeTelegramApi()}) beside the fake Twilio."""
    gateway_port, rasa_port, actions_port = free_port(), free_port(), free_port()
    settings = make_settings(
        tmp,
        rasa={"url": f"http://127.0.0.1:{rasa_port}", "token": "rasa-token-for-tests",
              "tracker_store_url": f"sqlite:///{tmp / 'rasa-trackers.db'}", "timeout_seconds": 30},
        actions={"token": "actions-token-for-tests", "port": actions_port},
        **overrides,
    )
    prepared = prepare(settings)
    twilio = FakeTwilioApi()
    routes: dict[str, Handler] = {"api.twilio.com": twilio, **(extra_routes or {})}
    app = create_app(settings, transport=Router(routes, passthrough=True))
    server = uvicorn.Server(uvicorn.Config(
        app, host="127.0.0.1", port=gateway_port, log_config=None, access_log=False,
        lifespan="on",
    ))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    gateway_url = f"http://127.0.0.1:{gateway_port}"
    log_dir = tmp / "logs"
    processes: list[subprocess.Popen[bytes]] = []
    try:
        while not server.started:
            time.sleep(0.05)
        processes = start_rasa_processes(
            settings, prepared, gateway_url=gateway_url, rasa_port=rasa_port,
            actions_port=actions_port, log_dir=log_dir,
        )
        wait_for_rasa(settings.rasa.url, settings.rasa.token.get_secret_value(), processes=processes)
        yield Stack(settings, gateway_url, twilio, log_dir, app)
    finally:
        stop_all(processes)
        server.should_exit = True
        thread.join(timeout=30)
