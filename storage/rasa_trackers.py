"""Rasa's SQL tracker store, seen from our side: deleting one conversation.

Rasa 3.6 has no endpoint to delete a conversation, and its tracker keeps every text and slot.
Its SQL tracker store keeps one row per event in the `events` table, keyed by `sender_id`
(our pseudonym). The gateway calls this while it holds that reporter's turn (no dialogue turn
of the same reporter can be saving the tracker at the same time).
"""

from __future__ import annotations

from sqlalchemy import create_engine, text


def delete_conversation(tracker_store_url: str, *, sender_id: str) -> int:
    """Delete every event of `sender_id`; returns how many rows went."""
    url = tracker_store_url
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            has_table = connection.dialect.has_table(connection, "events")
            if not has_table:
                return 0
            result = connection.execute(
                text("DELETE FROM events WHERE sender_id = :sender"), {"sender": sender_id}
            )
            return int(result.rowcount or 0)
    finally:
        engine.dispose()
