"""`tipline`: the command line for operators and administrators."""

from __future__ import annotations

import argparse
import contextlib
import sys
import uuid
from typing import TYPE_CHECKING

from config import SettingsError, load_settings

if TYPE_CHECKING:
    from collections.abc import Iterator

    from config import Settings
    from storage.db import Database


def _settings_for_dev() -> object:
    from bot.runner import ensure_dev_secrets, load_env_file

    load_env_file(ensure_dev_secrets())
    return load_settings()


def cmd_setup(_args: argparse.Namespace) -> int:
    from bot.runner import prepare

    settings = _settings_for_dev()
    prepare(settings)  # type: ignore[arg-type]
    return 0


def cmd_run(_args: argparse.Namespace) -> int:
    from bot.runner import run_all

    return run_all(_settings_for_dev())  # type: ignore[arg-type]


def cmd_chat(args: argparse.Namespace) -> int:
    """A terminal chat through the gateway's local channel: the full pipeline."""
    import time

    import httpx

    base = args.url.rstrip("/")
    conversation = uuid.uuid4().hex
    print("Type a message; Ctrl-D or /quit to leave.")
    with httpx.Client(timeout=30) as http:
        while True:
            try:
                text = input("you> ")
            except EOFError:
                return 0
            if text.strip() == "/quit":
                return 0
            http.post(f"{base}/try/messages", json={
                "conversation": conversation, "message_id": uuid.uuid4().hex, "text": text})
            deadline = time.monotonic() + args.wait
            while time.monotonic() < deadline:
                replies = http.get(f"{base}/try/replies", params={"conversation": conversation}).json()
                for reply in replies:
                    print("bot> " + reply["text"])
                    for n, choice in enumerate(reply["choices"], 1):
                        print(f"     {n}. {choice}")
                if replies:
                    break
                time.sleep(0.3)


def cmd_flows_check(args: argparse.Namespace) -> int:
    """Check the dialogue and gateway texts; print one `file:line: message` per problem."""
    import os
    from pathlib import Path

    import yaml

    from config import Settings
    from config.settings import DEFAULT_YAML, PROJECT_DIR
    from nlu.check import check_project, check_yaml_file
    from nlu.runtime import RasaEnvironmentError

    config_file = Path(os.environ.get("TIPLINE_CONFIG_FILE", DEFAULT_YAML))
    try:
        # Development mode: checking files must work on a machine that holds no secrets.
        settings = Settings(environment="development")
    except yaml.YAMLError:
        problems = check_yaml_file(config_file, root=PROJECT_DIR)
    except ValueError as exc:
        raise SettingsError(f"{config_file}: {exc}") from exc
    else:
        # nlu/ may not import bot/ (import contract), so the urgency checker is handed in.
        from bot.urgency import check_lexicon as checker
        try:
            problems = check_project(
                languages=settings.languages, default_language=settings.default_language,
                project_dir=settings.nlu_project_dir, messages_dir=settings.messages_dir,
                urgency_dir=settings.urgency_dir,
                config_file=config_file, root=PROJECT_DIR, run_rasa=not args.no_rasa,
                lexicon_checker=checker, say=lambda message: print(message, file=sys.stderr),
            )
        except RasaEnvironmentError as exc:
            print(f"tipline: Rasa's validation cannot run ({exc}); "
                  "`tipline flows check --no-rasa` runs the other checks", file=sys.stderr)
            return 2
    for problem in problems:
        print(problem)
    if problems:
        files = len({problem.file for problem in problems})
        print(f"{len(problems)} problem(s) in {files} file(s). Nothing was changed; "
              "fix them and run `tipline flows check` again.")
        return 1
    rasa = "without Rasa's validation" if args.no_rasa else "including Rasa's validation"
    print(f"No problems found (languages: {', '.join(settings.languages)}; {rasa}).")
    return 0


def _flows_inputs() -> tuple[object, object, object] | None:
    """Settings, config file and urgency checker for `flows train`/`flows reload`; None (after
    printing the problem) when config/tipline.yml itself is not valid YAML."""
    import os
    from pathlib import Path

    import yaml

    from config import Settings
    from config.settings import DEFAULT_YAML, PROJECT_DIR
    from nlu.check import check_yaml_file

    config_file = Path(os.environ.get("TIPLINE_CONFIG_FILE", DEFAULT_YAML))
    try:
        # No secret is needed to train, and the data directory and database are the ones
        # `tipline run` uses (same environment and config file).
        settings = Settings()
    except yaml.YAMLError:
        for problem in check_yaml_file(config_file, root=PROJECT_DIR):
            print(problem)
        print("Nothing was trained; the running bot is unchanged.")
        return None
    except ValueError as exc:
        raise SettingsError(f"{config_file}: {exc}") from exc
    from bot.urgency import check_lexicon

    return settings, config_file, check_lexicon


def _print_problems(problems: list[object]) -> int:
    for problem in problems:
        print(problem)
    files = len({getattr(problem, "file", "") for problem in problems})
    print(f"{len(problems)} problem(s) in {files} file(s). Nothing was trained and the running "
          "bot is unchanged; fix them (`tipline flows check` lists them) and try again.")
    return 1


def cmd_flows_train(_args: argparse.Namespace) -> int:
    """Check, then train the dialogue model only if the files changed since the last training."""
    from bot.runner import FlowsProblemsError, train_flows
    from nlu.runtime import RasaEnvironmentError

    inputs = _flows_inputs()
    if inputs is None:
        return 1
    settings, config_file, checker = inputs
    print("Checking the dialogue files...", flush=True)
    try:
        trained = train_flows(settings, config_file=config_file,  # type: ignore[arg-type]
                              lexicon_checker=checker,  # type: ignore[arg-type]
                              say=lambda message: print(message, flush=True))
    except FlowsProblemsError as exc:
        return _print_problems(exc.problems)  # type: ignore[arg-type]
    except RasaEnvironmentError as exc:
        print(f"tipline: {exc}", file=sys.stderr)
        return 1
    fingerprint = trained.prepared.fingerprint
    if trained.skipped:
        print(f"Nothing changed since model {fingerprint} was trained: training skipped "
              f"({trained.seconds:.1f} s).")
    else:
        print(f"Trained model {fingerprint} in {trained.seconds:.0f} s. "
              "`tipline flows reload` puts it live.")
    return 0


def cmd_flows_reload(args: argparse.Namespace) -> int:
    """Train if needed, then have the running `tipline run` put the model live."""
    from bot.runner import FlowsError, FlowsProblemsError, reload_flows
    from nlu.runtime import RasaEnvironmentError

    inputs = _flows_inputs()
    if inputs is None:
        return 1
    settings, config_file, checker = inputs
    print("Checking the dialogue files...", flush=True)
    try:
        live = reload_flows(settings, config_file=config_file,  # type: ignore[arg-type]
                            lexicon_checker=checker, timeout=args.timeout,  # type: ignore[arg-type]
                            say=lambda message: print(message, flush=True))
    except FlowsProblemsError as exc:
        return _print_problems(exc.problems)  # type: ignore[arg-type]
    except (FlowsError, RasaEnvironmentError) as exc:
        print(f"tipline: {exc}. The model that was live stays live.", file=sys.stderr)
        return 1
    print(f"Live: model {live.get('model')} on {live.get('url')} since {live.get('since')}.")
    return 0


def cmd_triage(args: argparse.Namespace) -> int:
    """Urgency and language for JSON Lines tips on stdin, one JSON line out per line in."""
    import yaml

    from bot.triage import run_triage
    from bot.urgency import LexiconError
    from config import Settings

    # Only the languages are read: triage touches no secret, so it skips load_settings'
    # secret check and works on an administrator's laptop with nothing configured.
    try:
        settings = Settings(environment="development")
    except (ValueError, yaml.YAMLError) as exc:
        raise SettingsError(str(exc)) from exc
    try:
        return run_triage(sys.stdin, sys.stdout, languages=settings.languages,
                          default_language=settings.default_language,
                          lexicon_dir=args.lexicon or settings.urgency_dir)
    except LexiconError as exc:
        for error in exc.errors:
            print(f"tipline: {error}", file=sys.stderr)
        return 2


# --- officers: console accounts (bot/console/accounts.py) --------------------------------


def _officers_settings() -> object:
    from config import Settings

    # Only the database URL is needed: no secret check, so it works before the first start.
    try:
        return Settings()
    except ValueError as exc:
        raise SettingsError(str(exc)) from exc


def _officers_password(args: argparse.Namespace) -> str:
    import getpass

    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("Password (12+ characters): ")
    if getpass.getpass("Repeat the password: ") != first:
        raise SystemExit("tipline: the passwords differ; nothing was created")
    return first


def cmd_officers_create(args: argparse.Namespace) -> int:
    from bot.console.accounts import AccountError, create_account
    from storage.console import OfficerRole

    role = OfficerRole.ADMIN if args.officers_command == "create-admin" else OfficerRole(args.role)
    try:
        created = create_account(
            _officers_settings(), username=args.username, role=role,  # type: ignore[arg-type]
            password=_officers_password(args), with_totp=getattr(args, "totp", False),
            language=args.language,
        )
    except AccountError as exc:
        print(f"tipline: {exc}", file=sys.stderr)
        return 1
    print(f"Created {created.role} {created.username!r} (id {created.officer_id}).")
    if created.totp_uri:
        # Shown once: it is not displayed again. Add it to an authenticator app now.
        print("Second factor (TOTP), shown only now; add it to an authenticator app:")
        print(f"  secret: {created.totp_secret}")
        print(f"  URI:    {created.totp_uri}")
    return 0


def cmd_officers_list(_args: argparse.Namespace) -> int:
    from bot.console.accounts import list_accounts

    for username, role, active, has_totp in list_accounts(_officers_settings()):  # type: ignore[arg-type]
        flags = ("" if active else " (disabled)") + (" [totp]" if has_totp else "")
        print(f"{username}\t{role}{flags}")
    return 0


def cmd_officers_disable(args: argparse.Namespace) -> int:
    from bot.console.accounts import AccountError, disable_account

    try:
        disable_account(_officers_settings(), username=args.username)  # type: ignore[arg-type]
    except AccountError as exc:
        print(f"tipline: {exc}", file=sys.stderr)
        return 1
    print(f"Disabled {args.username!r}; its sessions have ended.")
    return 0


def add_officers_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    officers = sub.add_parser("officers", help="console accounts: create, list, disable")
    officers_sub = officers.add_subparsers(dest="officers_command", required=True)
    for name, text in (("create-admin", "create an admin account (with TOTP)"),
                       ("create", "create an officer or supervisor account")):
        command = officers_sub.add_parser(name, help=text)
        command.add_argument("--username", required=True)
        if name == "create":
            command.add_argument("--role", choices=["officer", "supervisor", "admin"],
                                 default="officer")
            command.add_argument("--totp", action="store_true",
                                 help="enrol TOTP for an officer (always on for others)")
        command.add_argument("--language", choices=["en", "fr"], default=None,
                             help="console language of the account")
        command.add_argument("--password-stdin", action="store_true",
                             help="read the password from one line of stdin (scripts)")
        command.set_defaults(func=cmd_officers_create)
    officers_sub.add_parser("list", help="list accounts").set_defaults(func=cmd_officers_list)
    disable = officers_sub.add_parser("disable", help="disable an account, ending its sessions")
    disable.add_argument("--username", required=True)
    disable.set_defaults(func=cmd_officers_disable)


# --- vault and retention: the data lifecycle (bot/retention.py) ----------------------------


@contextlib.contextmanager
def _lifecycle_database() -> Iterator[tuple[Settings, Database]]:
    """Settings and a migrated database, disposed however the command ends. No secret check:
    these commands need only the database (and, for the vault, the vault key, checked where
    it is used)."""
    from config import Settings
    from storage.db import Database, make_engine, migrate

    try:
        settings = Settings()
    except ValueError as exc:
        raise SettingsError(str(exc)) from exc
    migrate(settings.database.url)
    db = Database(make_engine(settings.database.url))
    try:
        yield settings, db
    finally:
        db.dispose()


def cmd_vault_rotate(args: argparse.Namespace) -> int:
    """Re-encrypt every vault entry with the first key of TIPLINE_PRIVACY__VAULT_KEY."""
    from bot.privacy import VaultCipher
    from bot.retention import rotate_vault

    with _lifecycle_database() as (settings, db):
        try:
            cipher = VaultCipher(settings.privacy.vault_key.get_secret_value())
        except ValueError as exc:
            raise SettingsError(f"TIPLINE_PRIVACY__VAULT_KEY: {exc}") from exc
        report = rotate_vault(db, cipher, batch_size=args.batch_size)
    print(f"Vault keys configured: {cipher.key_count}. Re-encrypted with the first key: "
          f"{report.rotated}; already on it: {report.current}; refreshed by the gateway "
          f"meanwhile: {report.changed_meanwhile}; unreadable with every configured key "
          f"(left unchanged): {report.unreadable}.")
    if report.rotated or report.changed_meanwhile:
        print("Run it again: when it re-encrypts nothing, the old key can be removed.")
    return 0


def cmd_vault_purge_expired(_args: argparse.Namespace) -> int:
    """Delete vault entries past their expiry (the retention job does this on its schedule)."""
    from storage import retention
    from storage.models import utcnow

    with _lifecycle_database() as (_settings, db):
        purged = db.run_sync(
            lambda session: retention.purge_expired_vault_entries(session, now=utcnow()))
    print(f"Expired vault entries deleted: {purged}.")
    return 0


def cmd_retention_run(args: argparse.Namespace) -> int:
    """One retention run, counts per kind. Rasa tracker events only with --gateway-stopped:
    this process cannot hold the running gateway's per-sender lock."""
    import asyncio
    from collections.abc import AsyncIterator

    from bot.retention import RetentionJob

    class StoppedGateway:
        """No gateway runs (the operator said so), so no turn can race a tracker deletion."""

        @contextlib.asynccontextmanager
        async def hold(self, reporter_id: str) -> AsyncIterator[None]:
            yield

    with _lifecycle_database() as (settings, db):
        job = RetentionJob.from_settings(
            settings, db=db, sender_lock=StoppedGateway() if args.gateway_stopped else None,
        )
        try:
            report = asyncio.run(job.run_once())
        finally:
            job.close()
    for kind, count in report.counts.items():
        print(f"{kind}: {count}")
    for kind in report.skipped:
        print(f"{kind}: skipped (the running gateway prunes it; or stop the gateway and pass "
              "--gateway-stopped)")
    for kind in report.failed:
        print(f"{kind}: FAILED (see the log; tried again on the next run)", file=sys.stderr)
    return 1 if report.failed else 0


def add_lifecycle_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    vault = sub.add_parser("vault", help="reply vault: key rotation, expired entries")
    vault_sub = vault.add_subparsers(dest="vault_command", required=True)
    rotate = vault_sub.add_parser(
        "rotate", help="re-encrypt every entry with the first TIPLINE_PRIVACY__VAULT_KEY key")
    rotate.add_argument("--batch-size", type=int, default=500,
                        help="entries per transaction (default 500)")
    rotate.set_defaults(func=cmd_vault_rotate)
    vault_sub.add_parser("purge-expired", help="delete entries past their expiry"
                         ).set_defaults(func=cmd_vault_purge_expired)
    retention = sub.add_parser("retention", help="delete data past its retention period")
    retention_sub = retention.add_subparsers(dest="retention_command", required=True)
    run = retention_sub.add_parser("run", help="run the retention job once and print counts")
    run.add_argument("--gateway-stopped", action="store_true",
                     help="no gateway is running: also delete aged Rasa tracker events")
    run.set_defaults(func=cmd_retention_run)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tipline", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("setup", help="make the Rasa environment and train the model if needed"
                   ).set_defaults(func=cmd_setup)
    sub.add_parser("run", help="run Rasa, the action server and the gateway (development)"
                   ).set_defaults(func=cmd_run)
    chat = sub.add_parser("chat", help="chat with a running tip line from the terminal")
    chat.add_argument("--url", default="http://127.0.0.1:8000")
    chat.add_argument("--wait", type=float, default=20.0, help="seconds to wait for a reply")
    chat.set_defaults(func=cmd_chat)
    triage = sub.add_parser("triage", help="urgency and language for JSON Lines tips on stdin")
    triage.add_argument("--lexicon", metavar="DIR", help="urgency word lists (default: config/urgency)")
    triage.set_defaults(func=cmd_triage)
    # Administrators' commands on the dialogue files; sub-commands are siblings under `flows`.
    flows = sub.add_parser("flows", help="check, train and reload the dialogue (administrators)")
    flows_sub = flows.add_subparsers(dest="flows_command", required=True)
    flows_check = flows_sub.add_parser(
        "check", help="find mistakes in the dialogue, translations and texts (file:line)")
    flows_check.add_argument("--no-rasa", action="store_true",
                             help="skip Rasa's own validation (a few seconds faster)")
    flows_check.set_defaults(func=cmd_flows_check)
    flows_sub.add_parser(
        "train", help="check, then train the dialogue model if the files changed"
    ).set_defaults(func=cmd_flows_train)
    flows_reload = flows_sub.add_parser(
        "reload", help="train if needed, then put the model live in the running `tipline run`")
    flows_reload.add_argument("--timeout", type=float, default=300.0,
                              help="seconds to wait for the new model to go live")
    flows_reload.set_defaults(func=cmd_flows_reload)
    add_officers_parser(sub)
    add_lifecycle_parsers(sub)
    args = parser.parse_args(argv)
    try:
        result: int = args.func(args)
        return result
    except SettingsError as exc:
        print(f"tipline: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
