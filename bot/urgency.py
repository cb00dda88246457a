"""Urgency of a tip, with the reasons for it.

The same function tags live tips and answers `tipline triage`, so what officers see and what
the evaluation measures cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass

from storage.models import Urgency


@dataclass(frozen=True)
class Assessment:
    urgency: Urgency
    reasons: tuple[str, ...]


def assess(*, text: str, danger_now: bool | None, language: str) -> Assessment:
    """First rule: a reporter saying someone is in danger right now makes a tip critical."""
    if danger_now:
        return Assessment(Urgency.CRITICAL, ("danger_now=yes",))
    return Assessment(Urgency.NORMAL, ("danger_now=no" if danger_now is False else "no signal",))
