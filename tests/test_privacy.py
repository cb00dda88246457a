"""Pseudonyms, the vault cipher and log masking."""

from __future__ import annotations

import hashlib
import logging

import pytest
from cryptography.fernet import Fernet

from bot.privacy import PhoneMaskFilter, VaultCipher, VaultError, mask_phone_numbers, pseudonymize
from channels import ReplyAddress


def test_pseudonym_is_stable_per_sender() -> None:
    assert pseudonymize("k" * 32, "sms", "+254700000001") == pseudonymize("k" * 32, "sms", "+254700000001")
    assert pseudonymize("k" * 32, "sms", "+254700000001") != pseudonymize("k" * 32, "sms", "+254700000002")


def test_pseudonym_differs_per_channel() -> None:
    on_sms = pseudonymize("k" * 32, "sms", "+254700000001")
    assert on_sms != pseudonymize("k" * 32, "whatsapp", "+254700000001")


def test_pseudonym_is_useless_without_the_key() -> None:
    number = "+254700000001"
    pseudonym = pseudonymize("k" * 32, "sms", number)
    # Not a plain hash of the number (which anyone could enumerate)...
    for candidate in (number, f"sms:{number}", number.lstrip("+")):
        assert pseudonym != hashlib.sha256(candidate.encode()).hexdigest()
    # ...and another key gives an unrelated value.
    assert pseudonymize("j" * 32, "sms", number) != pseudonym
    assert number.lstrip("+") not in pseudonym


def test_pseudonym_needs_a_key() -> None:
    with pytest.raises(ValueError, match="pepper"):
        pseudonymize("", "sms", "+254700000001")


def test_vault_round_trip_and_wrong_key() -> None:
    cipher = VaultCipher(Fernet.generate_key().decode())
    sealed = cipher.seal(ReplyAddress("sms", "+254700000001"))
    assert b"254700000001" not in sealed
    assert cipher.open(sealed) == ReplyAddress("sms", "+254700000001")
    with pytest.raises(VaultError):
        VaultCipher(Fernet.generate_key().decode()).open(sealed)


def test_reply_address_repr_is_masked() -> None:
    address = ReplyAddress("sms", "+254700000001")
    assert "254700000001" not in repr(address)
    assert "254700000001" not in str(address)


@pytest.mark.parametrize(
    "text",
    ["call +254 700 000 001 now", "from 0700-000-001", "(555) 123 4567", "+254700000001",
     "appelez le 70.12.34.56", "+223 70 12 34 56"],
)
def test_phone_shapes_are_masked(text: str) -> None:
    masked = mask_phone_numbers(text)
    assert "[number]" in masked
    assert not any(ch.isdigit() for ch in masked.replace("[number]", ""))


def test_ip_addresses_and_small_numbers_are_kept() -> None:
    assert mask_phone_numbers("listening on 127.0.0.1:8000") == "listening on 127.0.0.1:8000"
    assert mask_phone_numbers("retry 3 of 12") == "retry 3 of 12"


def test_log_filter_masks_numbers_in_records(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("tests.privacy")
    handler_filter = PhoneMaskFilter()
    record = logger.makeRecord("tests.privacy", logging.INFO, __file__, 1,
                               "sender %s wrote", ("+254700000001",), None)
    handler_filter.filter(record)
    assert record.getMessage() == "sender [number] wrote"
