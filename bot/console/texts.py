"""The console's own UI texts (bot/console/i18n/<code>.yml), separate from reporters' languages.

Owns loading and looking up officer-facing strings. A key missing in a language falls back to
English, and a key missing everywhere shows as the key itself (visible, never a crash).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import yaml

I18N_DIR = Path(__file__).resolve().parent / "i18n"
UI_LANGUAGES = ("en", "fr")
FALLBACK = "en"

Translate = Callable[..., str]


class Catalogue:
    def __init__(self, directory: Path = I18N_DIR) -> None:
        self._texts: dict[str, dict[str, str]] = {}
        for code in UI_LANGUAGES:
            data = yaml.safe_load((directory / f"{code}.yml").read_text(encoding="utf-8")) or {}
            self._texts[code] = {str(k): str(v) for k, v in data.items()}

    def keys(self, language: str) -> set[str]:
        return set(self._texts[language])

    def language(self, requested: str | None, default: str) -> str:
        for code in (requested, default):
            if code in self._texts:
                return code
        return FALLBACK

    def translator(self, language: str) -> Translate:
        texts = self._texts.get(language, self._texts[FALLBACK])
        fallback = self._texts[FALLBACK]

        def t(key: str, **values: object) -> str:
            template = texts.get(key) or fallback.get(key) or key
            return template.format(**values) if values else template

        return t
