"""Setting up and running the whole tip line on one machine: Rasa, actions, gateway.

`prepare()` makes the Rasa environment, builds the project and trains when the training data
changed; `run_all()` starts the three processes, waits until they answer, and stops them all
on Ctrl-C.

Administrators' model updates (`tipline flows train` / `tipline flows reload`):
    train_flows()    check (refuse on any problem) -> build -> train only if the fingerprint
                     is new, in a subprocess of the caller, with a progress display
    swap_dialogue()  start a second Rasa server with the new model, wait until it has loaded
                     it, publish it as the live one (storage.runtime "dialogue"; gateways
                     switch within a second), let in-flight turns finish, stop the old one
    run_all()        owns the Rasa processes: SIGHUP makes it read var/reload-request.json
                     and swap; var/run.pid says where it is
    reload_flows()   what `tipline flows reload` does: train_flows, then ask the runner

Must never: train inside a serving process; stop the live Rasa server before its successor
has answered with the new model loaded (a model that fails to load leaves the old one live);
publish a server that is not serving.

Exceptions:
    FlowsError
     ├── FlowsProblemsError - the check found problems; nothing was trained or changed
     ├── SwapError          - the new Rasa server did not come up; the old one is still live
     └── NoRunnerError      - no `tipline run` to put the model live
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit, urlunsplit

import httpx

from bot.privacy import VaultCipher
from config import Settings
from config.settings import PROJECT_DIR
from nlu.build import build_project
from nlu.check import Problem, check_project
from nlu.runtime import (
    ACTIONS_PARENT,
    RASA_ENV,
    RasaEnv,
    TrainingOutputFilter,
    action_server_command,
    ensure_rasa_env,
    lock_hash,
    minimal_environment,
    model_path,
    rasa_server_command,
    train_model,
    validated_marker,
    write_credentials,
    write_endpoints,
)
from storage import runtime
from storage.db import Database, make_engine, migrate
from storage.models import utcnow

DEV_SECRETS = PROJECT_DIR / "var" / "dev-secrets.env"


def say(message: str) -> None:
    print(f"[tipline] {message}", flush=True)


def ensure_dev_secrets(path: Path = DEV_SECRETS) -> Path:
    """Random secrets for a development machine, made once, never committed (var/ is ignored).
    A file from an older version gets the keys it lacks; existing values are never changed
    (a new pepper would turn every reporter into a stranger)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    present = set()
    if path.exists():
        present = {line.split("=", 1)[0] for line in path.read_text(encoding="utf-8").splitlines()}
    wanted = {
        "TIPLINE_ENVIRONMENT": "development",
        "TIPLINE_PRIVACY__PEPPER": secrets.token_urlsafe(32),
        "TIPLINE_PRIVACY__VAULT_KEY": VaultCipher.generate_key(),
        "TIPLINE_RASA__TOKEN": secrets.token_urlsafe(24),
        "TIPLINE_ACTIONS__TOKEN": secrets.token_urlsafe(24),
        "TIPLINE_TWILIO__AUTH_TOKEN": secrets.token_hex(16),
        # The dev officer's console password (`tipline run` creates the account).
        "TIPLINE_DEV_OFFICER_PASSWORD": secrets.token_urlsafe(18),
    }
    missing = {k: v for k, v in wanted.items() if k not in present}
    if missing:
        with path.open("a", encoding="utf-8") as file:
            file.write("".join(f"{k}={v}\n" for k, v in missing.items()))
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
        project_dir=settings.nlu_project_dir,
        extra_fingerprint=lock_hash(),
    )
    if model_path(built.fingerprint).exists():
        say(f"Model up to date ({built.fingerprint}); training skipped.")
    else:
        log = settings.data_dir / "logs" / "train.log"
        say(f"Training the dialogue model ({', '.join(settings.languages)}), log in {log}...")
        t0 = time.monotonic()
        with TrainingDisplay() as display:
            train_model(env, domain=built.domain, config=built.config, data=built.data,
                        fingerprint=built.fingerprint, log=log, on_output=display.feed)
        say(f"Trained in {time.monotonic() - t0:.0f} s.")
    say(f"Ready in {time.monotonic() - started:.0f} s.")
    return Prepared(env, model_path(built.fingerprint), built.fingerprint)


def rasa_environment(settings: Settings, gateway_url: str) -> dict[str, str]:
    return {
        **minimal_environment(),  # nothing secret: see nlu.runtime.INHERITED_VARIABLES
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


# --- errors ---------------------------------------------------------------------------------


class FlowsError(RuntimeError):
    """Training or putting a dialogue model live did not happen; the live bot is unchanged."""


class FlowsProblemsError(FlowsError):
    """The check found problems (`problems`, each `file:line: message`)."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        super().__init__(f"{len(self.problems)} problem(s) in the dialogue files")


class SwapError(FlowsError):
    """The new Rasa server did not come up with the new model; `log` says why."""

    def __init__(self, message: str, *, log: Path | None = None) -> None:
        self.reason = message
        self.log = log
        super().__init__(message + (f" (see {log})" if log else ""))


class NoRunnerError(FlowsError):
    """No `tipline run` supervisor is running to put a model live."""


# --- training with a progress display -------------------------------------------------------


class TrainingDisplay:
    """Rasa's training output, watchable: phase lines, and one "Epochs n/N" line that updates
    in place on a terminal (off a terminal, e.g. in CI logs, it prints every quarter).
    The full output goes to the log file, not here."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream or sys.stdout
        self._tty = self._stream.isatty()
        self._open = False  # an "Epochs" line is being redrawn
        self._filter = TrainingOutputFilter(on_phase=self._phase, on_epochs=self._epochs)

    def feed(self, chunk: bytes) -> None:
        self._filter.feed(chunk)

    def __enter__(self) -> TrainingDisplay:
        return self

    def __exit__(self, *_exc: object) -> None:
        self._filter.close()
        self._end_line()

    def _end_line(self) -> None:
        if self._open:
            self._stream.write("\n")
            self._stream.flush()
            self._open = False

    def _phase(self, message: str) -> None:
        self._end_line()
        self._stream.write(f"  {message}\n")
        self._stream.flush()

    def _epochs(self, done: int, total: int) -> None:
        if self._tty:
            self._stream.write(f"\r    Epochs {done}/{total}")
            self._open = done < total
            if not self._open:
                self._stream.write("\n")
        elif total and (done * 4) % total == 0 and done:
            self._stream.write(f"    Epochs {done}/{total}\n")
        self._stream.flush()


@dataclass(frozen=True)
class Trained:
    prepared: Prepared
    skipped: bool  # a model for exactly these files already existed
    seconds: float


def _check(settings: Settings, *, project_dir: Path, root: Path | None, config_file: Path | None,
           lexicon_checker: Callable[[Path], list[str]] | None, run_rasa: bool,
           say: Callable[[str], None]) -> None:
    from config.settings import DEFAULT_YAML

    problems = check_project(
        languages=settings.languages, default_language=settings.default_language,
        project_dir=project_dir, messages_dir=settings.messages_dir,
        urgency_dir=settings.urgency_dir, root=root, config_file=config_file or DEFAULT_YAML,
        run_rasa=run_rasa, lexicon_checker=lexicon_checker, say=say,
    )
    if problems:
        raise FlowsProblemsError(problems)


def train_flows(
    settings: Settings,
    *,
    project_dir: Path | None = None,
    root: Path | None = None,
    config_file: Path | None = None,
    lexicon_checker: Callable[[Path], list[str]] | None = None,
    say: Callable[[str], None] = say,
    display: TextIO | None = None,
) -> Trained:
    """Check, then train only when the files changed. Raises FlowsProblemsError on problems.

    Our own checks run first and refuse quickly; Rasa's validation (seconds) runs once per
    fingerprint. Training is a subprocess of this process, never of a serving one.
    """
    started = time.monotonic()
    # The dialogue project administrators edit: the repo's unless settings point elsewhere.
    project_dir = project_dir or settings.nlu_project_dir
    check = {"project_dir": project_dir, "root": root, "config_file": config_file,
             "lexicon_checker": lexicon_checker, "say": say}
    _check(settings, run_rasa=False, **check)  # type: ignore[arg-type]
    env = ensure_rasa_env(say=say)
    built = build_project(
        settings.languages, settings.default_language, settings.data_dir / "rasa-build",
        project_dir=project_dir, extra_fingerprint=lock_hash(),
    )
    marker = validated_marker(built.fingerprint)
    if not marker.exists():
        say("Running Rasa's validation...")
        _check(settings, run_rasa=True, **check)  # type: ignore[arg-type]
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text("ok\n", encoding="utf-8")
    target = model_path(built.fingerprint)
    skipped = target.exists()
    if not skipped:
        log = settings.data_dir / "logs" / "train.log"
        say(f"Training the dialogue model ({', '.join(settings.languages)}); full log in {log}")
        with TrainingDisplay(display) as shown:
            train_model(env, domain=built.domain, config=built.config, data=built.data,
                        fingerprint=built.fingerprint, log=log, on_output=shown.feed)
    return Trained(Prepared(env, target, built.fingerprint), skipped, time.monotonic() - started)


# --- the live dialogue server and its swap --------------------------------------------------

# After publishing a new server: gateways notice within their one-second cache; a turn that
# picked the old server just before then still finishes there. The old server is stopped
# only after this, and SIGTERM lets Sanic finish requests it is still answering.
SWITCH_GRACE_SECONDS = 10.0
RUN_PID = "run.pid"
RELOAD_REQUEST = "reload-request.json"
RELOAD_STATUS = "reload-status.json"


@dataclass
class RasaProcess:
    """One running Rasa server: the process, where it listens, which model it serves."""

    process: subprocess.Popen[bytes]
    url: str
    model: str  # fingerprint
    log: Path
    environment: dict[str, str] = field(repr=False)  # holds the actions token

    @property
    def port(self) -> int:
        return urlsplit(self.url).port or 80


def _with_port(url: str, port: int) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, f"{parts.hostname}:{port}", "", "", ""))


def _port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _next_port(settings: Settings, current: RasaProcess) -> int:
    """Alternate between the configured port and the one above it; any free one if taken."""
    base = urlsplit(settings.rasa.url).port or 5005
    wanted = base + 1 if current.port == base else base
    if _port_is_free(wanted):
        return wanted
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_rasa_server(
    settings: Settings, prepared: Prepared, *, url: str, environment: dict[str, str], log: Path,
) -> RasaProcess:
    """A Rasa server on `url`'s port with the endpoints already written (same tracker store and
    action server as every other one), its output appended to `log`."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as output:
        process = subprocess.Popen(
            rasa_server_command(
                prepared.env, model=prepared.model,
                endpoints=settings.data_dir / "rasa-endpoints.yml",
                credentials=settings.data_dir / "rasa-credentials.yml",
                port=urlsplit(url).port or 80, token=settings.rasa.token.get_secret_value(),
            ),
            cwd=settings.data_dir, env=environment, stdout=output, stderr=subprocess.STDOUT,
        )
    return RasaProcess(process, url, prepared.fingerprint, log, environment)


def wait_for_model(server: RasaProcess, token: str, *, timeout: float = 240.0,
                   should_stop: Callable[[], bool] = lambda: False) -> None:
    """Until `server` answers /status with its model loaded; SwapError if it never will."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not should_stop():
        if server.process.poll() is not None:
            raise SwapError("the new Rasa server exited while starting", log=server.log)
        try:
            response = httpx.get(f"{server.url}/status", params={"token": token}, timeout=5)
        except httpx.HTTPError:
            response = None
        if response is not None:
            if response.status_code == 200 and server.model in str(response.json().get("model_file")):
                return
            if response.status_code == 409:  # up, but the model failed to load
                raise SwapError("the new Rasa server could not load the model", log=server.log)
        time.sleep(0.5)
    raise SwapError("the new Rasa server did not load the model in time", log=server.log)


def stop_rasa(server: RasaProcess, *, timeout: float = 30.0) -> None:
    if server.process.poll() is None:
        server.process.terminate()
    try:
        server.process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait(timeout=10)


def publish_dialogue(db: Database, server: RasaProcess) -> dict[str, Any]:
    """Make `server` the one every gateway talks to; returns what was published."""
    value = {"url": server.url, "model": server.model, "since": utcnow().isoformat()}
    db.run_sync(lambda session: runtime.put_setting(session, key=runtime.DIALOGUE, value=value))
    return value


def live_dialogue(db: Database) -> dict[str, Any] | None:
    return db.run_sync(lambda session: runtime.get_setting(session, key=runtime.DIALOGUE))


def swap_dialogue(
    settings: Settings,
    prepared_new: Prepared,
    *,
    current: RasaProcess,
    db: Database,
    grace_seconds: float = SWITCH_GRACE_SECONDS,
    load_timeout: float = 240.0,
    say: Callable[[str], None] = say,
    should_stop: Callable[[], bool] = lambda: False,
) -> RasaProcess:
    """Put `prepared_new` live with no message dropped, answered twice or held up.

    Rasa's own `PUT /model` blocks its server for half a minute, so a second server starts
    beside the live one (same tracker store, same action server: a conversation continues on
    either, as Rasa reads the tracker from the store on every message, and the gateway runs
    one turn per reporter at a time). Only once it answers with the new model is it
    published; the old server stops after the grace period. If the new server fails, it is
    stopped, nothing is published, and SwapError says where its log is: the old one serves on.
    """
    port = _next_port(settings, current)
    url = _with_port(settings.rasa.url, port)
    log = settings.data_dir / "logs" / f"rasa-{port}.log"
    say(f"Starting a second Rasa server with model {prepared_new.fingerprint} on port {port} "
        f"(log {log})...")
    new = start_rasa_server(settings, prepared_new, url=url, environment=current.environment,
                            log=log)
    try:
        wait_for_model(new, settings.rasa.token.get_secret_value(), timeout=load_timeout,
                       should_stop=should_stop)
        if should_stop():
            raise SwapError("stopped while the new Rasa server was starting", log=log)
        publish_dialogue(db, new)
    except BaseException:
        stop_rasa(new, timeout=15)
        raise
    say(f"Model {new.model} is live on {new.url}; the old server (port {current.port}) "
        f"stops in {grace_seconds:.0f} s, once its last turns are answered.")
    time.sleep(grace_seconds)
    stop_rasa(current)
    say(f"Stopped the old Rasa server (model {current.model}).")
    return new


# --- talking to the runner: pid file, reload request, reload status -----------------------


def _write_json(path: Path, value: dict[str, Any]) -> None:
    """Atomically: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    temporary.write_text(json.dumps(value), encoding="utf-8")
    temporary.replace(path)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def runner_pid(settings: Settings) -> int:
    """The pid of the running `tipline run`; NoRunnerError if there is none."""
    path = settings.data_dir / RUN_PID
    try:
        pid = int(path.read_text(encoding="utf-8").strip())
    except (OSError, ValueError) as exc:
        raise NoRunnerError(f"no `tipline run` is running (no {path})") from exc
    try:
        os.kill(pid, 0)
    except ProcessLookupError as exc:
        raise NoRunnerError(f"no `tipline run` is running ({path} names process {pid}, "
                            "which has ended)") from exc
    except PermissionError as exc:
        raise NoRunnerError(f"process {pid} in {path} belongs to another user: run this "
                            "command as the user that runs `tipline run`") from exc
    # A stale pid file may name a process that reused the number: SIGHUP would end it.
    cmdline = Path(f"/proc/{pid}/cmdline")
    if cmdline.exists() and b"tipline" not in cmdline.read_bytes() \
            and b"bot.cli" not in cmdline.read_bytes():
        raise NoRunnerError(f"no `tipline run` is running ({path} names process {pid}, "
                            "which is something else)")
    return pid


def reload_flows(
    settings: Settings,
    *,
    project_dir: Path | None = None,
    root: Path | None = None,
    config_file: Path | None = None,
    lexicon_checker: Callable[[Path], list[str]] | None = None,
    timeout: float = 300.0,
    say: Callable[[str], None] = say,
    display: TextIO | None = None,
) -> dict[str, Any]:
    """`tipline flows reload`: check and train as train_flows does, then have the running
    `tipline run` swap to the model, waiting until it is published. Returns the published
    setting. FlowsProblemsError / NoRunnerError / SwapError leave the live bot as it was."""
    trained = train_flows(settings, project_dir=project_dir, root=root, config_file=config_file,
                          lexicon_checker=lexicon_checker, say=say, display=display)
    fingerprint = trained.prepared.fingerprint
    pid = runner_pid(settings)
    db = Database(make_engine(settings.database.url))
    try:
        live = live_dialogue(db)
        if live is not None and live.get("model") == fingerprint:
            say(f"Model {fingerprint} is already live (since {live.get('since')}); nothing to do.")
            return live
        request_id = uuid.uuid4().hex
        _write_json(settings.data_dir / RELOAD_REQUEST,
                    {"id": request_id, "model": fingerprint, "requested_at": utcnow().isoformat()})
        os.kill(pid, signal.SIGHUP)
        say(f"Asked the runner (process {pid}) to put model {fingerprint} live...")
        deadline = time.monotonic() + timeout
        last_message = ""
        while time.monotonic() < deadline:
            status = _read_json(settings.data_dir / RELOAD_STATUS) or {}
            if status.get("id") == request_id:
                if status.get("message") and status["message"] != last_message:
                    last_message = str(status["message"])
                    say(last_message)
                if status.get("state") == "failed":
                    log = status.get("log")
                    raise SwapError(str(status.get("error") or "the reload failed"),
                                    log=Path(log) if log else None)
            live = live_dialogue(db)
            if live is not None and live.get("model") == fingerprint:
                return live
            try:
                os.kill(pid, 0)
            except ProcessLookupError as exc:
                raise NoRunnerError("the runner stopped before the model went live") from exc
            time.sleep(0.5)
        raise FlowsError(f"the runner did not put the model live within {timeout:.0f} s: "
                         f"see {settings.data_dir / 'logs'}")
    finally:
        db.dispose()


def _answer_reload(settings: Settings, current: RasaProcess, db: Database, *,
                   should_stop: Callable[[], bool]) -> RasaProcess:
    """The runner's side of a reload request: swap, and say how it went in the status file."""
    request = _read_json(settings.data_dir / RELOAD_REQUEST) or {}
    request_id, fingerprint = request.get("id"), str(request.get("model") or "")
    status_path = settings.data_dir / RELOAD_STATUS

    def status(state: str, message: str, **extra: object) -> None:
        _write_json(status_path, {"id": request_id, "model": fingerprint, "state": state,
                                  "message": message, "at": utcnow().isoformat(), **extra})

    model = model_path(fingerprint) if fingerprint else None
    if model is None or not model.exists():
        say(f"Reload request without a trained model ({fingerprint or 'none'}): ignored.")
        status("failed", "", error=f"no trained model {fingerprint!r}: run `tipline flows train`")
        return current
    if fingerprint == current.model:
        publish_dialogue(db, current)
        status("live", f"Model {fingerprint} was already live.")
        return current

    def progress(message: str) -> None:
        say(message)
        status("progress", message)

    prepared = Prepared(ensure_rasa_env(say=say), model, fingerprint)
    try:
        new = swap_dialogue(settings, prepared, current=current, db=db, say=progress,
                            should_stop=should_stop)
    except Exception as exc:  # whatever went wrong, the runner and the old server carry on
        say(f"Reload failed, model {current.model} stays live: {exc}")
        log = exc.log if isinstance(exc, SwapError) else None
        reason = exc.reason if isinstance(exc, SwapError) else f"{type(exc).__name__}: {exc}"
        status("failed", "", error=reason, log=str(log or ""))
        return current
    status("live", f"Model {fingerprint} is live on {new.url}.")
    return new


DEV_OFFICER = "dev-officer"


def ensure_dev_officer(settings: Settings) -> str | None:
    """In development, an officer account to try the console with (role officer, so no
    second factor by default). Never in production: accounts there are made on purpose."""
    password = os.environ.get("TIPLINE_DEV_OFFICER_PASSWORD", "")
    if not settings.is_development or len(password) < 12:
        return None
    from bot.console.accounts import AccountError, create_account, list_accounts
    from storage.console import OfficerRole

    if any(username == DEV_OFFICER for username, *_ in list_accounts(settings)):
        return DEV_OFFICER
    try:
        create_account(settings, username=DEV_OFFICER, role=OfficerRole.OFFICER, password=password)
    except AccountError as exc:
        say(f"Could not create the dev officer account: {exc}")
        return None
    return DEV_OFFICER


def run_all(settings: Settings) -> int:
    prepared = prepare(settings)
    rasa_port = int(settings.rasa.url.rsplit(":", 1)[1].split("/")[0])
    gateway_url = f"http://{settings.gateway.host}:{settings.gateway.port}"
    log_dir = settings.data_dir / "logs"
    # Before the gateway starts: it must not read a server published by an earlier run.
    migrate(settings.database.url)
    db = Database(make_engine(settings.database.url))
    db.run_sync(lambda session: runtime.delete_setting(session, key=runtime.DIALOGUE))
    stopping = False
    reload_requested = False

    def on_signal(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    def on_hangup(_signum: int, _frame: object) -> None:
        nonlocal reload_requested
        reload_requested = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    # Installed before the pid file exists: an early SIGHUP must not end the runner.
    signal.signal(signal.SIGHUP, on_hangup)
    pid_file = settings.data_dir / RUN_PID
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    pid_file.write_text(f"{os.getpid()}\n", encoding="utf-8")
    actions, rasa = start_rasa_processes(
        settings, prepared, gateway_url=gateway_url, rasa_port=rasa_port,
        actions_port=settings.actions.port, log_dir=log_dir,
    )
    dialogue = RasaProcess(rasa, settings.rasa.url.rstrip("/"), prepared.fingerprint,
                           log_dir / "rasa.log", rasa_environment(settings, gateway_url))
    gateway = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", "bot.app:app_from_environment",
         "--host", settings.gateway.host, "--port", str(settings.gateway.port),
         "--no-access-log", "--log-level", "warning"],
        cwd=PROJECT_DIR,
    )
    try:
        say("Starting Rasa (loading the model takes about a minute)...")
        wait_for_rasa(settings.rasa.url, settings.rasa.token.get_secret_value(),
                      processes=[actions, rasa, gateway])
        publish_dialogue(db, dialogue)
        say("The tip line is running.")
        say(f"  Try-it chat:     {gateway_url}/try")
        # Accounts live in the database now (settings.console has no user any more).
        officer = ensure_dev_officer(settings)
        if officer is not None:
            say(f"  Officers' console: {gateway_url}/console  (user '{officer}', password "
                f"TIPLINE_DEV_OFFICER_PASSWORD in {DEV_SECRETS.relative_to(PROJECT_DIR)})")
        else:
            say(f"  Officers' console: {gateway_url}/console  (accounts: "
                "`tipline officers create-admin`)")
        say(f"  SMS webhook:     {gateway_url}/webhooks/sms")
        say(f"  Logs:            {log_dir}")
        say("Press Ctrl-C to stop. `tipline flows reload` puts a newly trained model live.")
        while not stopping:
            if reload_requested:
                reload_requested = False
                dialogue = _answer_reload(settings, dialogue, db, should_stop=lambda: stopping)
            if any(p.poll() is not None for p in (actions, dialogue.process, gateway)):
                say("A process stopped unexpectedly: see the logs. Shutting down.")
                return 1
            time.sleep(0.5)
        return 0
    finally:
        say("Stopping...")
        stop_all([actions, dialogue.process, gateway])
        # Nothing is live any more; the console must not say otherwise.
        try:
            db.run_sync(lambda session: runtime.delete_setting(session, key=runtime.DIALOGUE))
        finally:
            db.dispose()
            if pid_file.exists() and pid_file.read_text(encoding="utf-8").strip() == str(os.getpid()):
                pid_file.unlink()
        say("Stopped.")
