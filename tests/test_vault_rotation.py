"""Vault key rotation on SQLite and PostgreSQL: several keys in TIPLINE_PRIVACY__VAULT_KEY (the
first seals, all open), `rotate_vault` / `tipline vault rotate` moving every entry to the first
key, entries no key opens counted and left alone, and `tipline vault purge-expired`."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select

from bot.cli import main as cli_main
from bot.privacy import VaultCipher, VaultError
from bot.retention import rotate_vault
from channels import ReplyAddress
from storage import repo
from storage.db import Database, make_engine, migrate
from storage.models import VaultEntry, utcnow
from storage.retention import replace_vault_ciphertext

OLD, NEW, LOST = (Fernet.generate_key().decode() for _ in range(3))


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'vault.db'}"
    else:
        url = str(request.getfixturevalue("postgres_url"))
    migrate(url)
    return url


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = Database(make_engine(db_url))
    yield database
    database.dispose()


def address(n: int) -> ReplyAddress:
    return ReplyAddress("sms", f"+2547000000{n:02d}")


def seal_entries(db: Database, cipher: VaultCipher, count: int, *, prefix: str = "r") -> None:
    def put(session: Any) -> None:
        for n in range(count):
            repo.put_vault_entry(session, reporter_id=f"{prefix}{n:03d}",
                                 ciphertext=cipher.seal(address(n)),
                                 expires_at=utcnow() + timedelta(days=30))

    db.run_sync(put)


def ciphertexts(db: Database) -> dict[str, bytes]:
    rows = db.run_sync(lambda s: list(s.execute(select(VaultEntry.reporter_id, VaultEntry.ciphertext))))
    return {str(r): bytes(c) for r, c in rows}


def test_the_first_key_seals_and_every_key_opens() -> None:
    rotating = VaultCipher(f"{NEW}, {OLD}")
    sealed_old = VaultCipher(OLD).seal(address(1))
    assert rotating.key_count == 2
    assert rotating.open(sealed_old) == address(1)
    sealed_now = rotating.seal(address(2))
    assert VaultCipher(NEW).open(sealed_now) == address(2)
    with pytest.raises(VaultError):
        VaultCipher(OLD).open(sealed_now)
    assert rotating.is_current(sealed_now) and not rotating.is_current(sealed_old)
    with pytest.raises(ValueError):
        VaultCipher(" , ")


def test_entries_sealed_with_the_old_key_open_with_only_the_new_key_after_rotation(db: Database) -> None:
    seal_entries(db, VaultCipher(OLD), 7)
    seal_entries(db, VaultCipher(NEW), 2, prefix="s")  # already on the new key

    report = rotate_vault(db, VaultCipher(f"{NEW},{OLD}"), batch_size=3)

    assert (report.rotated, report.current, report.unreadable) == (7, 2, 0)
    only_new = VaultCipher(NEW)
    for reporter_id, ciphertext in ciphertexts(db).items():
        n = int(reporter_id[1:])
        assert only_new.open(ciphertext) == address(n)
    # A second run finds nothing left to move: the old key can go.
    again = rotate_vault(db, VaultCipher(f"{NEW},{OLD}"), batch_size=3)
    assert (again.rotated, again.current) == (0, 9)


def test_entries_no_key_opens_are_counted_and_left_alone(db: Database) -> None:
    seal_entries(db, VaultCipher(OLD), 3)
    seal_entries(db, VaultCipher(LOST), 2, prefix="x")
    before = ciphertexts(db)

    report = rotate_vault(db, VaultCipher(f"{NEW},{OLD}"), batch_size=2)

    assert (report.rotated, report.unreadable) == (3, 2)
    after = ciphertexts(db)
    assert after["x000"] == before["x000"] and after["x001"] == before["x001"]
    assert all(after[k] != before[k] for k in ("r000", "r001", "r002"))


def test_an_entry_refreshed_during_rotation_is_not_overwritten(db: Database) -> None:
    seal_entries(db, VaultCipher(OLD), 1)
    stale = ciphertexts(db)["r000"]
    # The gateway refreshes the entry (new message) between our read and our write.
    fresh = VaultCipher(NEW).seal(address(0))
    db.run_sync(lambda s: repo.put_vault_entry(s, reporter_id="r000", ciphertext=fresh,
                                               expires_at=utcnow() + timedelta(days=30)))
    rotated = VaultCipher(f"{NEW},{OLD}").rotate(stale)

    assert not db.run_sync(lambda s: replace_vault_ciphertext(
        s, reporter_id="r000", old=stale, new=rotated))
    assert ciphertexts(db)["r000"] == fresh


def test_cli_rotates_and_purges(
    db_url: str, db: Database, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    seal_entries(db, VaultCipher(OLD), 4)
    seal_entries(db, VaultCipher(LOST), 1, prefix="x")
    db.run_sync(lambda s: repo.put_vault_entry(
        s, reporter_id="expired", ciphertext=VaultCipher(OLD).seal(address(9)),
        expires_at=utcnow() - timedelta(minutes=1)))
    monkeypatch.setenv("TIPLINE_DATABASE__URL", db_url)
    monkeypatch.setenv("TIPLINE_PRIVACY__VAULT_KEY", f"{NEW},{OLD}")

    assert cli_main(["vault", "rotate", "--batch-size", "2"]) == 0
    out = capsys.readouterr().out
    assert "Vault keys configured: 2" in out
    assert "Re-encrypted with the first key: 5" in out  # the expired entry too
    assert "(left unchanged): 1" in out and "Run it again" in out
    assert cli_main(["vault", "rotate"]) == 0
    out = capsys.readouterr().out
    assert "Re-encrypted with the first key: 0" in out and "Run it again" not in out

    assert cli_main(["vault", "purge-expired"]) == 0
    assert "Expired vault entries deleted: 1." in capsys.readouterr().out
    left = ciphertexts(db)
    assert "expired" not in left and len(left) == 5
    only_new = VaultCipher(NEW)
    assert [only_new.open(left[f"r{n:03d}"]) for n in range(4)] == [address(n) for n in range(4)]

    # Nothing can be done without a key; nothing is printed about the entries.
    monkeypatch.setenv("TIPLINE_PRIVACY__VAULT_KEY", "")
    assert cli_main(["vault", "rotate"]) == 2
    assert "+2547" not in capsys.readouterr().out
