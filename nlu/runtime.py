"""The Rasa side-car: its virtual environment, model training, and process command lines.

Rasa 3.6 needs Python 3.8-3.10 and old libraries, so it lives in its own virtual environment,
installed from the complete pinned list `nlu/requirements-rasa.lock` with `--no-deps` (the
list is complete, so pip resolves nothing and installs are reproducible). Environments and
trained models are cached outside the work tree, keyed by content hashes, so fresh clones on
the same machine (CI) reuse them.

Training always runs as a subprocess of the caller (the CLI, or the runner before it starts
serving), never inside a serving process. Its full output goes to a log file; a caller that
wants progress gets the raw output as it comes and can read it with `TrainingOutputFilter`.

Exceptions:
    RasaEnvironmentError - no usable Python, or the install/training failed.
"""

from __future__ import annotations

import glob
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

NLU_DIR = Path(__file__).resolve().parent
LOCK_FILE = NLU_DIR / "requirements-rasa.lock"
ACTIONS_PARENT = NLU_DIR  # `python -m rasa_sdk --actions actions` runs from here

# Environment for every Rasa process: no telemetry, quiet TensorFlow, and no library may try
# to reach the internet for models.
RASA_ENV = {
    "RASA_TELEMETRY_ENABLED": "false",
    "TF_CPP_MIN_LOG_LEVEL": "3",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "SQLALCHEMY_SILENCE_UBER_WARNING": "1",
    "PYTHONWARNINGS": "ignore",
    "SANIC_HOST": "127.0.0.1",  # the action server binds loopback only
    # Our Rasa components (nlu/components/, named in config.yml by module path) import from
    # the repository root, in training and wherever a model is loaded.
    "PYTHONPATH": str(NLU_DIR.parent),
}


# What Rasa processes may inherit from ours: nothing secret (they never need the pepper, the
# vault key, the database URL or provider tokens).
INHERITED_VARIABLES = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TZ", "TIPLINE_CACHE_DIR")


# On the Python 3.11 fallback: the locked matplotlib (3.10 only) -> one with cp311 wheels.
FALLBACK_MATPLOTLIB = ("3.5.3", "3.7.5")


def minimal_environment() -> dict[str, str]:
    return {name: os.environ[name] for name in INHERITED_VARIABLES if name in os.environ}


class RasaEnvironmentError(RuntimeError):
    """The Rasa environment cannot be set up or used."""


def cache_dir() -> Path:
    base = os.environ.get("TIPLINE_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "tipline"
    )
    path = Path(base)
    path.mkdir(parents=True, exist_ok=True)
    return path


def lock_hash() -> str:
    return hashlib.sha256(LOCK_FILE.read_bytes()).hexdigest()[:16]


@dataclass(frozen=True)
class RasaEnv:
    directory: Path
    fallback: bool

    @property
    def python(self) -> Path:
        return self.directory / "bin" / "python"

    @property
    def rasa(self) -> Path:
        return self.directory / "bin" / "rasa"


def _version_of(python: str) -> tuple[int, int] | None:
    try:
        out = subprocess.run(
            [python, "-c", "import sys; print(sys.version_info[0], sys.version_info[1])"],
            capture_output=True, text=True, timeout=30, check=True,
        ).stdout.split()
        return int(out[0]), int(out[1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


def find_python310() -> str | None:
    """python3.10 from pyenv, PATH, or uv; None if there is none."""
    candidates: list[str] = []
    pyenv_root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    candidates += sorted(glob.glob(f"{pyenv_root}/versions/3.10.*/bin/python3.10"), reverse=True)
    on_path = shutil.which("python3.10")
    if on_path:
        candidates.append(on_path)
    uv = shutil.which("uv")
    if uv:
        found = subprocess.run(
            [uv, "python", "find", "3.10"], capture_output=True, text=True, check=False
        ).stdout.strip()
        if found:
            candidates.append(found)
    for candidate in candidates:
        if _version_of(candidate) == (3, 10):
            return candidate
    return None


def ensure_rasa_env(*, say: object = print) -> RasaEnv:
    """Create (once per lock file) and return the Rasa virtual environment.

    TIPLINE_RASA_PYTHON names the interpreter to use; otherwise Python 3.10 is searched for,
    and Python 3.11 (this one) is the fallback."""
    chosen = os.environ.get("TIPLINE_RASA_PYTHON")
    python = chosen or find_python310()
    if chosen and _version_of(chosen) not in ((3, 10), (3, 11)):
        raise RasaEnvironmentError(f"TIPLINE_RASA_PYTHON={chosen} is not Python 3.10 or 3.11")
    fallback = python is None or _version_of(python) == (3, 11)
    if python is None:
        if sys.version_info[:2] != (3, 11):
            raise RasaEnvironmentError(
                "Rasa 3.6 needs Python 3.10 and none was found. Install one, e.g. "
                "`pyenv install 3.10`, `uv python install 3.10`, or your distribution's "
                "python3.10 package, then run this again."
            )
        python = sys.executable
    suffix = "py311-fallback" if fallback else "py310"
    env = RasaEnv(cache_dir() / f"rasa-{lock_hash()}-{suffix}", fallback)
    if (env.directory / ".complete").exists():
        return env
    assert callable(say)
    if fallback:
        say("!! Installing Rasa on Python 3.11 as a FALLBACK (no Python 3.10 was found, or "
            "TIPLINE_RASA_PYTHON chose 3.11). Unsupported upstream; install Python 3.10 "
            "for production.")
    say(f"Installing Rasa 3.6 into {env.directory} (about 5 minutes the first time)...")
    if env.directory.exists():
        shutil.rmtree(env.directory)
    _run([python, "-m", "venv", str(env.directory)])
    pip = [str(env.python), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    _run([*pip, "--upgrade", "pip"])
    requirements = LOCK_FILE
    extra: list[str] = []
    if fallback:
        # Resolved for 3.10; on 3.11 only matplotlib lacks a wheel: take a release that has one.
        extra = ["--ignore-requires-python"]
        requirements = env.directory / "requirements-py311.txt"
        requirements.write_text(LOCK_FILE.read_text().replace(
            f"matplotlib=={FALLBACK_MATPLOTLIB[0]}", f"matplotlib=={FALLBACK_MATPLOTLIB[1]}"))
    _run([*pip, "--no-deps", *extra, "-r", str(requirements)])
    check = subprocess.run(
        [str(env.rasa), "--version"], env={**os.environ, **RASA_ENV},
        capture_output=True, text=True, check=False,
    )
    if check.returncode != 0 or "3.6.21" not in check.stdout:
        raise RasaEnvironmentError("Rasa was installed but does not start:\n" + check.stderr[-2000:])
    (env.directory / ".complete").write_text("ok\n")
    return env


def _run(command: list[str], **kwargs: object) -> None:
    result = subprocess.run(command, check=False, **kwargs)  # type: ignore[call-overload]
    if result.returncode != 0:
        raise RasaEnvironmentError(f"command failed ({result.returncode}): {' '.join(command[:4])} ...")


def model_path(fingerprint: str) -> Path:
    return cache_dir() / "models" / f"{fingerprint}.tar.gz"


def validated_marker(fingerprint: str) -> Path:
    """Exists once Rasa's own validation passed for exactly this project (fingerprint).

    The fingerprint covers every byte Rasa validates (and the Rasa version), so the result
    cannot change until the fingerprint does: `tipline flows train` skips that slow step.
    """
    return cache_dir() / "models" / f"{fingerprint}.validated"


def train_model(
    env: RasaEnv, *, domain: Path, config: Path, data: Path, fingerprint: str, log: Path,
    on_output: Callable[[bytes], None] | None = None,
) -> Path:
    """Train unless a model for exactly this project (fingerprint) is cached.

    Everything Rasa prints is appended to `log`; `on_output` also hears it, chunk by chunk,
    as it comes (tqdm bars included: they end in carriage returns, not new lines).
    """
    target = model_path(fingerprint)
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # A directory of its own: another process (a test run, a second administrator) may be
    # training the same fingerprint right now; whichever finishes first puts the model in place.
    work = Path(tempfile.mkdtemp(prefix=f".training-{fingerprint}-", dir=target.parent))
    log.parent.mkdir(parents=True, exist_ok=True)
    try:
        with log.open("ab") as output, subprocess.Popen(
            [
                str(env.rasa), "train", "--domain", str(domain), "--config", str(config),
                "--data", str(data), "--out", str(work), "--fixed-model-name", fingerprint,
            ],
            # Unbuffered, so progress arrives while it happens rather than in 8 KB blocks.
            env={**minimal_environment(), **RASA_ENV, "PYTHONUNBUFFERED": "1"}, cwd=str(work),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        ) as process:
            assert process.stdout is not None
            while chunk := os.read(process.stdout.fileno(), 65536):
                output.write(chunk)
                output.flush()
                if on_output is not None:
                    on_output(chunk)
        if process.returncode != 0:
            tail = log.read_text(encoding="utf-8", errors="replace")[-3000:]
            raise RasaEnvironmentError(f"training failed; the end of {log}:\n{tail}")
        produced = work / f"{fingerprint}.tar.gz"
        if not produced.exists():
            raise RasaEnvironmentError("training finished without a model file")
        produced.replace(target)  # atomic: a half-written model is never picked up
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


# --- reading the training output -------------------------------------------------------------

_ANSI = re.compile(rb"\x1b\[[0-9;]*[A-Za-z]")
_LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d (?P<level>[A-Z]+)\s+\S+\s+- (?P<msg>.*)$")
_EPOCHS = re.compile(r"^Epochs:\s*\d+%\|[^|]*\|\s*(?P<done>\d+)/(?P<total>\d+)")
_COMPONENT = re.compile(r"^Starting to train component '(?P<name>\w+)'")
_SAVED = "Your Rasa model is trained and saved at"


class TrainingOutputFilter:
    """Turns Rasa's training output into what a person wants to watch.

    `on_phase` hears one line per phase (validating, each component being trained, errors,
    done); `on_epochs(done, total)` hears each change of a tqdm "Epochs" bar, which Rasa
    redraws on stderr with carriage returns. Warnings, library noise and the other bars are
    left to the log file.
    """

    def __init__(
        self, *, on_phase: Callable[[str], None], on_epochs: Callable[[int, int], None]
    ) -> None:
        self._on_phase = on_phase
        self._on_epochs = on_epochs
        self._pending = b""
        self._epochs: tuple[int, int] | None = None

    def feed(self, chunk: bytes) -> None:
        self._pending += chunk
        *complete, self._pending = re.split(rb"[\r\n]", self._pending)
        for raw in complete:
            self._line(_ANSI.sub(b"", raw).decode("utf-8", "replace").strip())

    def close(self) -> None:
        if self._pending:
            self._line(_ANSI.sub(b"", self._pending).decode("utf-8", "replace").strip())
            self._pending = b""

    def _line(self, line: str) -> None:
        epochs = _EPOCHS.match(line)
        if epochs:
            value = (int(epochs["done"]), int(epochs["total"]))
            if value != self._epochs:
                self._epochs = value
                self._on_epochs(*value)
            return
        if line.startswith(_SAVED):
            self._on_phase("Model saved.")
            return
        logged = _LOG_LINE.match(line)
        if logged is None:
            return
        message, level = logged["msg"], logged["level"]
        component = _COMPONENT.match(message)
        if component:
            self._epochs = None  # a new bar belongs to the new component
            self._on_phase(f"Training {component['name']}...")
        elif message.startswith("Started validating domain and training data"):
            self._on_phase("Validating the training data...")
        elif level in {"ERROR", "CRITICAL"}:
            self._on_phase(f"Rasa: {message}")


def write_endpoints(path: Path, *, actions_url: str, tracker_store_url: str) -> Path:
    """Rasa endpoints: our action server and a SQL tracker store (SQLite or PostgreSQL)."""
    from urllib.parse import urlsplit

    if tracker_store_url.startswith("sqlite"):
        db_path = tracker_store_url.split("///", 1)[1]
        Path(db_path).parent.mkdir(parents=True, exist_ok=True)
        tracker = f'  type: SQL\n  dialect: "sqlite"\n  db: "{db_path}"\n'
    else:
        parts = urlsplit(tracker_store_url)
        tracker = (
            f'  type: SQL\n  dialect: "postgresql"\n  url: "{parts.hostname}"\n'
            f"  port: {parts.port or 5432}\n  username: \"{parts.username or ''}\"\n"
            f"  password: \"{parts.password or ''}\"\n  db: \"{parts.path.lstrip('/')}\"\n"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f'action_endpoint:\n  url: "{actions_url}"\n\ntracker_store:\n{tracker}',
        encoding="utf-8",
    )
    return path


def write_credentials(path: Path) -> Path:
    """REST channel only: Rasa's own Telegram/Twilio connectors store raw ids."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("rest:\n", encoding="utf-8")
    return path


def rasa_server_command(
    env: RasaEnv, *, model: Path, endpoints: Path, credentials: Path, port: int, token: str
) -> list[str]:
    return [
        str(env.rasa), "run", "--enable-api", "--auth-token", token,
        "--model", str(model), "--endpoints", str(endpoints), "--credentials", str(credentials),
        "--interface", "127.0.0.1", "--port", str(port),
    ]


def action_server_command(env: RasaEnv, *, port: int) -> list[str]:
    return [str(env.python), "-m", "rasa_sdk", "--actions", "actions", "--port", str(port)]
