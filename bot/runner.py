"""Setting up and running the whole tip line on one machine: Rasa, actions, gateway.

`prepare()` makes the Rasa environment, builds the project and trains when the training data
changed; `run_all()` starts the three processes, waits until they answer, and stops them all
on Ctrl-C.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from bot.privacy import VaultCipher
from config import Settings
from config.settings import PROJECT_DIR
from nlu.build import build_project
from nlu.runtime import (
    ACTIONS_PARENT,
    RASA_ENV,
    RasaEnv,
    action_server_command,
    ensure_rasa_env,
    lock_hash,
    model_path,
    rasa_server_command,
    train_model,
    write_credentials,
    write_endpoints,
)

DEV_SECRETS = PROJECT_DIR / "var" / "dev-secrets.env"


def say(message: str) -> None:
    print(f"[tipline] {message}", flush=True)


def ensure_dev_secrets(path: Path = DEV_SECRETS) -> Path:
    """Random secrets for a development machine, made once, never committed (var/ is ignored)."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = {
            "TIPLINE_ENVIRONMENT": "development",
            "TIPLINE_PRIVACY__PEPPER": secrets.token_urlsafe(32),
            "TIPLINE_PRIVACY__VAULT_KEY": VaultCipher.generate_key(),
            "TIPLINE_RASA__TOKEN": secrets.token_urlsafe(24),
            "TIPLINE_ACTIONS__TOKEN": secrets.token_urlsafe(24),
            "TIPLINE_TWILIO__AUTH_TOKEN": secrets.token_hex(16),
            "TIPLINE_CONSOLE__OFFICER_PASSWORD": secrets.token_urlsafe(12),
        }
        path.write_text("".join(f"{k}={v}\n" for k, v in lines.items()), encoding="utf-8")
        path.chmod(0o600)
    return path


def load_env_file(path: Path) -> None:
    """Values from the file fill in what the environment does not already set."""
    for line in path.read_text(encoding="utf-8").splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, value = line.split("=", 1)
            os.environ.setdefault(key.strip(), value.strip())


@dataclass(frozen=True)
class Prepared:
    env: RasaEnv
    model: Path
    fingerprint: str


def prepare(settings: Settings) -> Prepared:
    started = time.monotonic()
    env = ensure_rasa_env(say=say)
    if env.fallback:
        say("Rasa runs on the Python 3.11 FALLBACK environment.")
    built = build_project(
        settings.languages,
        settings.default_language,
        settings.data_dir / "rasa-build",
        extra_fingerprint=lock_hash(),
    )
    if model_path(built.fingerprint).exists():
        say(f"Model up to date ({built.fingerprint}); training skipped.")
    else:
        log = settings.data_dir / "logs" / "train.log"
        say(f"Training the dialogue model ({', '.join(settings.languages)}), log in {log}...")
        t0 = time.monotonic()
        train_model(env, domain=built.domain, config=built.config, data=built.data,
                    fingerprint=built.fingerprint, log=log)
        say(f"Trained in {time.monotonic() - t0:.0f} s.")
    say(f"Ready in {time.monotonic() - started:.0f} s.")
    return Prepared(env, model_path(built.fingerprint), built.fingerprint)


def rasa_environment(settings: Settings, gateway_url: str) -> dict[str, str]:
    return {
        **os.environ,
        **RASA_ENV,
        "TIPLINE_GATEWAY_URL": gateway_url,
        "TIPLINE_ACTIONS__TOKEN": settings.actions.token.get_secret_value(),
    }


def start_rasa_processes(
    settings: Settings, prepared: Prepared, *, gateway_url: str, rasa_port: int, actions_port: int,
    log_dir: Path,
) -> list[subprocess.Popen[bytes]]:
    """Start the action server and the Rasa server; their output goes to log files."""
    log_dir.mkdir(parents=True, exist_ok=True)
    env = rasa_environment(settings, gateway_url)
    endpoints = write_endpoints(
        settings.data_dir / "rasa-endpoints.yml",
        actions_url=f"http://127.0.0.1:{actions_port}/webhook",
        tracker_store_url=settings.rasa.tracker_store_url,
    )
    credentials = write_credentials(settings.data_dir / "rasa-credentials.yml")
    # The child keeps its own copy of the log file descriptor; ours is closed at once.
    with (log_dir / "actions.log").open("ab") as log:
        actions = subprocess.Popen(
            action_server_command(prepared.env, port=actions_port),
            cwd=ACTIONS_PARENT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
    with (log_dir / "rasa.log").open("ab") as log:
        rasa = subprocess.Popen(
            rasa_server_command(
                prepared.env, model=prepared.model, endpoints=endpoints,
                credentials=credentials, port=rasa_port,
                token=settings.rasa.token.get_secret_value(),
            ),
            cwd=settings.data_dir, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
    return [actions, rasa]


def wait_for_rasa(url: str, token: str, *, timeout: float = 240.0,
                  processes: list[subprocess.Popen[bytes]] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for process in processes or []:
            if process.poll() is not None:
                raise RuntimeError("a Rasa process exited during start-up: see var/logs/")
        try:
            response = httpx.get(f"{url}/status", params={"token": token}, timeout=5)
            if response.status_code == 200 and response.json().get("model_file"):
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise TimeoutError("Rasa did not load its model in time: see var/logs/rasa.log")


def stop_all(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            process.terminate()
    deadline = time.monotonic() + 15
    for process in processes:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()


def run_all(settings: Settings) -> int:
    prepared = prepare(settings)
    rasa_port = int(settings.rasa.url.rsplit(":", 1)[1].split("/")[0])
    gateway_url = f"http://{settings.gateway.host}:{settings.gateway.port}"
    log_dir = settings.data_dir / "logs"
    processes = start_rasa_processes(
        settings, prepared, gateway_url=gateway_url, rasa_port=rasa_port,
        actions_port=settings.actions.port, log_dir=log_dir,
    )
    gateway = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", "bot.app:app_from_environment",
         "--host", settings.gateway.host, "--port", str(settings.gateway.port),
         "--no-access-log", "--log-level", "warning"],
        cwd=PROJECT_DIR,
    )
    processes.append(gateway)
    stopping = False

    def on_signal(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        say("Starting Rasa (loading the model takes about a minute)...")
        wait_for_rasa(settings.rasa.url, settings.rasa.token.get_secret_value(), processes=processes)
        say("The tip line is running.")
        say(f"  Try-it chat:     {gateway_url}/try")
        say(f"  Officers' list:  {gateway_url}/officers/tips  (user "
            f"'{settings.console.officer_user}', password in {DEV_SECRETS.relative_to(PROJECT_DIR)})")
        say(f"  SMS webhook:     {gateway_url}/webhooks/sms")
        say(f"  Logs:            {log_dir}")
        say("Press Ctrl-C to stop.")
        while not stopping:
            if any(p.poll() is not None for p in processes):
                say("A process stopped unexpectedly: see the logs. Shutting down.")
                return 1
            time.sleep(0.5)
        return 0
    finally:
        say("Stopping...")
        stop_all(processes)
        say("Stopped.")
