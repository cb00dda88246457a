"""Texts the gateway itself sends to reporters, per language (config/messages/<lang>.yml).

Each file also carries a `keywords:` section: the words that, sent alone, are commands on
channels without commands (SMS, WhatsApp), e.g. STOP, AIDE, توقف. This module owns loading them
and the one normalization both the loader and the adapters use, so that "Arrêt !" typed on a
phone matches "ARRET" in the file. It never sees a reporter's address.

Exceptions:
    ValueError  - a keywords section names an unknown command, or one keyword means two commands.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

MESSAGES_DIR = Path(__file__).resolve().parent / "messages"

# Command names a keyword may map to (the values of channels.base.Command; config cannot
# import channels, so they are repeated here and checked by a test).
KEYWORD_COMMANDS = frozenset({"start", "language", "help", "delete", "resume", "status"})

# Trailing punctuation a phone keyboard or a habit adds: "Stop." and "AIDE !" still count.
_TRAILING = " \t\r\n.,;:!?¡¿؟،؛。！？…'\"«»-"


def normalize_keyword(text: str) -> str:
    """Trimmed, trailing punctuation dropped, case- and accent-insensitive, spaces collapsed.

    Accents (and Arabic vowel marks and hamza seats) are dropped by removing combining marks
    after compatibility decomposition, so ARRÊT == arret and إيقاف == ايقاف.
    """
    decomposed = unicodedata.normalize("NFKD", text.strip().rstrip(_TRAILING))
    bare = "".join(char for char in decomposed if not unicodedata.combining(char))
    return " ".join(bare.casefold().split())


class GatewayMessages:
    def __init__(
        self, languages: Sequence[str], default: str, directory: Path = MESSAGES_DIR
    ) -> None:
        self.default = default
        self._texts: dict[str, dict[str, str]] = {}
        self._keywords: dict[str, dict[str, list[str]]] = {}
        for lang in languages:
            path = directory / f"{lang}.yml"
            data: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            self._keywords[lang] = _read_keywords(data.pop("keywords", None) or {}, path)
            self._texts[lang] = {str(k): str(v) for k, v in data.items()}

    def get(self, language: str | None, key: str) -> str:
        texts = self._texts.get(language or self.default) or self._texts[self.default]
        return texts.get(key) or self._texts[self.default][key]

    def language_name(self, language: str) -> str:
        return self.get(language, "language_name")

    def keywords(self) -> dict[str, str]:
        """Normalized keyword -> command name, over every configured language.

        A keyword works whatever language the conversation is in: a reporter who typed French
        so far may still send STOP.
        """
        merged: dict[str, str] = {}
        for lang, commands in self._keywords.items():
            for command, words in commands.items():
                for word in words:
                    key = normalize_keyword(word)
                    if merged.get(key, command) != command:
                        raise ValueError(
                            f"keyword {word!r} ({lang}) means both {merged[key]!r} and {command!r}"
                        )
                    merged[key] = command
        return merged


def _read_keywords(section: object, path: Path) -> dict[str, list[str]]:
    if not isinstance(section, dict):
        raise ValueError(f"{path}: keywords must be a mapping of command -> list of words")
    commands: dict[str, list[str]] = {}
    for command, words in section.items():
        if command not in KEYWORD_COMMANDS:
            raise ValueError(
                f"{path}: keywords.{command} is not a command ({', '.join(sorted(KEYWORD_COMMANDS))})"
            )
        if not isinstance(words, list) or not all(isinstance(w, str) and w.strip() for w in words):
            raise ValueError(f"{path}: keywords.{command} must be a list of words (quote them)")
        commands[str(command)] = [str(w) for w in words]
    return commands
