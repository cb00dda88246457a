"""Runtime settings: small facts that running processes publish for each other.

Owns the `runtime_setting` table (one JSON value per key) and its verb_noun functions. The
first user is the key `dialogue`: which Rasa server is live (`url`), with which model
(`model`, the fingerprint) and since when (`since`, ISO time). The supervisor writes it when
it swaps the dialogue model; every gateway reads it (briefly cached) before a turn; the
console shows it.

Must never: hold secrets or anything about reporters (every process and the console read
these rows), or commit (the caller owns the transaction, as everywhere in storage/).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, DateTime
from sqlmodel import Field, Session, SQLModel

from storage.models import utcnow

# The live dialogue server: {"url": ..., "model": fingerprint, "since": iso time}.
DIALOGUE = "dialogue"


class RuntimeSetting(SQLModel, table=True):
    """One published runtime fact, by key; `value` is any JSON document."""

    __tablename__ = "runtime_setting"

    key: str = Field(primary_key=True, max_length=64)
    value: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    updated_at: datetime = Field(
        default_factory=utcnow,
        sa_type=DateTime(timezone=True),
        nullable=False,
    )


def get_setting(session: Session, *, key: str) -> dict[str, Any] | None:
    """The value under `key`, or None when nobody has published it."""
    row = session.get(RuntimeSetting, key)
    return dict(row.value) if row is not None else None


def put_setting(
    session: Session, *, key: str, value: dict[str, Any], now: datetime | None = None
) -> None:
    """Publish `value` under `key`, replacing what was there."""
    row = session.get(RuntimeSetting, key)
    if row is None:
        session.add(RuntimeSetting(key=key, value=value, updated_at=now or utcnow()))
    else:
        # A new dict, so SQLAlchemy sees the change (JSON columns do not track mutation).
        row.value = dict(value)
        row.updated_at = now or utcnow()
        session.add(row)


def delete_setting(session: Session, *, key: str) -> None:
    """Withdraw `key` (readers fall back to their configured defaults)."""
    row = session.get(RuntimeSetting, key)
    if row is not None:
        session.delete(row)
