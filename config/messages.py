"""Texts the gateway itself sends to reporters, per language (config/messages/<lang>.yml)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import yaml

MESSAGES_DIR = Path(__file__).resolve().parent / "messages"


class GatewayMessages:
    def __init__(self, languages: Sequence[str], default: str, directory: Path = MESSAGES_DIR) -> None:
        self.default = default
        self._texts: dict[str, dict[str, str]] = {}
        for lang in languages:
            data = yaml.safe_load((directory / f"{lang}.yml").read_text(encoding="utf-8")) or {}
            self._texts[lang] = {str(k): str(v) for k, v in data.items()}

    def get(self, language: str | None, key: str) -> str:
        texts = self._texts.get(language or self.default) or self._texts[self.default]
        return texts.get(key) or self._texts[self.default][key]

    def language_name(self, language: str) -> str:
        return self.get(language, "language_name")
