"""Pseudonyms, the reply vault's encryption, and log masking.

A raw address (phone number, chat id) exists only in memory during a request and, encrypted,
in the vault. Nothing here may log an address or a message text.

Exceptions:
    VaultError - a vault entry cannot be opened (wrong key, tampered ciphertext).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from channels import ReplyAddress


class VaultError(RuntimeError):
    """A vault entry cannot be decrypted."""


def pseudonymize(pepper: str, channel: str, address: str) -> str:
    """reporter_id = HMAC-SHA256(pepper, channel ":" address).

    Keyed, never a plain hash: phone numbers are few enough to enumerate, so without the key
    the pseudonym must be useless. The channel is part of the input: the same person on SMS
    and WhatsApp is two reporters, which is the safer default.
    """
    if not pepper:
        raise ValueError("a pseudonym needs the pepper")
    message = f"{channel}:{address}".encode()
    return hmac.new(pepper.encode(), message, hashlib.sha256).hexdigest()


class VaultCipher:
    """Fernet (AES-128-CBC + HMAC-SHA256) over {"channel", "value"}.

    `key` may hold several comma-separated Fernet keys (a rotation in progress): the first
    seals, every one opens (MultiFernet). Empty or malformed keys raise ValueError.
    """

    def __init__(self, key: str) -> None:
        keys = [part.strip() for part in key.split(",") if part.strip()]
        if not keys:
            raise ValueError("the vault needs at least one Fernet key")
        self._current = Fernet(keys[0].encode())
        self._fernet = MultiFernet([Fernet(k.encode()) for k in keys])
        self._key_count = len(keys)

    @property
    def key_count(self) -> int:
        return self._key_count

    def is_current(self, ciphertext: bytes) -> bool:
        """Whether the entry is already sealed with the first (encrypting) key."""
        try:
            self._current.decrypt(ciphertext)
        except InvalidToken:
            return False
        return True

    def rotate(self, ciphertext: bytes) -> bytes:
        """The same entry sealed with the first key; VaultError if no configured key opens it.
        The plaintext never leaves this method."""
        try:
            return self._fernet.rotate(ciphertext)
        except InvalidToken as exc:
            raise VaultError("vault entry cannot be opened") from exc

    @staticmethod
    def generate_key() -> str:
        return Fernet.generate_key().decode()

    def seal_bytes(self, plain: bytes) -> bytes:
        """Encrypt other data that must not sit on disk in clear (the spool)."""
        return self._fernet.encrypt(plain)

    def open_bytes(self, ciphertext: bytes) -> bytes:
        try:
            return self._fernet.decrypt(ciphertext)
        except InvalidToken as exc:
            raise VaultError("sealed data cannot be opened") from exc

    def seal(self, address: ReplyAddress) -> bytes:
        plain = json.dumps({"channel": address.channel, "value": address.value}).encode()
        return self._fernet.encrypt(plain)

    def open(self, ciphertext: bytes) -> ReplyAddress:
        try:
            data = json.loads(self._fernet.decrypt(ciphertext))
        except (InvalidToken, ValueError) as exc:
            raise VaultError("vault entry cannot be opened") from exc
        return ReplyAddress(str(data["channel"]), str(data["value"]))


# A run of digits with +, spaces, dots, dashes or brackets between them; it is a phone number
# if it holds seven digits or more ("70.12.34.56" is one in much of West Africa). Loopback
# addresses and ports stay readable; a full IP address is masked too, which is what we want.
_PHONE_SHAPE = re.compile(r"\+?\d[\d\s().\-]{5,}\d")


def _mask(match: re.Match[str]) -> str:
    digits = sum(ch.isdigit() for ch in match.group(0))
    return "[number]" if digits >= 7 else match.group(0)


def mask_phone_numbers(text: str) -> str:
    return _PHONE_SHAPE.sub(_mask, text)


class PhoneMaskFilter(logging.Filter):
    """Masks anything shaped like a phone number in every log record, as a last line of
    defence: code must not log addresses in the first place."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask_phone_numbers(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True


def configure_logging(level: int = logging.INFO) -> None:
    """Root logging with the phone mask; libraries that log URLs or payloads kept quiet."""
    root = logging.getLogger()
    if not any(isinstance(f, PhoneMaskFilter) for h in root.handlers for f in h.filters):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        handler.addFilter(PhoneMaskFilter())
        root.addHandler(handler)
    root.setLevel(level)
    # httpx logs every URL at INFO: Rasa's token and Telegram's bot token are in URLs.
    for noisy in ("httpx", "httpcore", "telegram", "twilio", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
