"""`tipline`: the command line for operators and administrators."""

from __future__ import annotations

import argparse
import sys
import uuid

from config import SettingsError, load_settings


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
