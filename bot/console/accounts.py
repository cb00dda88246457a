"""Console accounts for the command line (`tipline officers ...`): create, list, disable.

Owns turning a password into an Argon2 hash and enrolling TOTP at creation. It prints nothing
and never stores a password or shows a TOTP secret again after creation: the CLI prints the
returned secret once.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.console import totp
from bot.console.auth import OVERSEERS, Passwords, check_password_strength
from config import Settings
from storage import console as store
from storage.console import OfficerCreate, OfficerRole
from storage.db import Database, make_engine, migrate


class AccountError(ValueError):
    """An account cannot be made or changed as asked (weak password, name taken...)."""


@dataclass(frozen=True)
class CreatedAccount:
    officer_id: int
    username: str
    role: OfficerRole
    totp_secret: str | None
    totp_uri: str | None


def _database(settings: Settings) -> Database:
    migrate(settings.database.url)
    return Database(make_engine(settings.database.url))


def create_account(
    settings: Settings,
    *,
    username: str,
    role: OfficerRole,
    password: str,
    with_totp: bool = False,
    language: str | None = None,
    db: Database | None = None,
) -> CreatedAccount:
    """Supervisors and admins always get TOTP; officers when asked or when settings say so."""
    weakness = check_password_strength(password)
    if weakness:
        raise AccountError(f"password refused: {weakness}")
    enrol = with_totp or role in OVERSEERS or settings.console.officer_totp_required
    secret = totp.new_secret() if enrol else None
    draft = OfficerCreate(username=username, role=role, language=language,
                          password_hash=Passwords().hash(password), totp_secret=secret)
    database = db or _database(settings)
    try:
        officer = database.run_sync(lambda s: store.create_officer(s, officer=draft))
    except store.ConsoleStorageError as exc:
        raise AccountError(str(exc)) from exc
    finally:
        if db is None:
            database.dispose()
    assert officer.id is not None
    uri = totp.provisioning_uri(secret, username=officer.username) if secret else None
    return CreatedAccount(officer_id=officer.id, username=officer.username, role=officer.role,
                          totp_secret=secret, totp_uri=uri)


def list_accounts(settings: Settings) -> list[tuple[str, str, bool, bool]]:
    """(username, role, active, has TOTP) for every account."""
    database = _database(settings)
    try:
        officers = database.run_sync(lambda s: store.list_officers(s, active_only=False))
    finally:
        database.dispose()
    return [(o.username, str(o.role), o.active, o.totp_secret is not None) for o in officers]


def disable_account(settings: Settings, *, username: str) -> None:
    """Deactivate an account and end its sessions at once."""
    database = _database(settings)

    def disable(session: object) -> None:
        officer = store.get_officer_by_username(session, username=username)  # type: ignore[arg-type]
        if officer is None or officer.id is None:
            raise AccountError(f"no officer {username!r}")
        store.set_officer_active(session, officer_id=officer.id, active=False)  # type: ignore[arg-type]

    try:
        database.run_sync(disable)
    finally:
        database.dispose()
