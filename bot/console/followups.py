"""Prepared follow-up questions (config/followups/<lang>.yml), in every reporter language.

Owns reading them; the console offers the ones in the tip's language. It never sends anything:
a chosen question becomes a pending storage.console.FollowUp row that the pipeline delivers.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from config.settings import CONFIG_DIR

FOLLOWUPS_DIR = CONFIG_DIR / "followups"


class PreparedQuestions:
    def __init__(self, directory: Path = FOLLOWUPS_DIR) -> None:
        self._by_language: dict[str, dict[str, str]] = {}
        for path in sorted(directory.glob("*.yml")):
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            self._by_language[path.stem] = {str(k): str(v) for k, v in data.items()}

    @property
    def languages(self) -> list[str]:
        return sorted(self._by_language)

    def for_language(self, language: str) -> dict[str, str]:
        """Questions in `language`; English when that language has no file."""
        return dict(self._by_language.get(language) or self._by_language.get("en", {}))

    def text(self, language: str, key: str) -> str | None:
        return self.for_language(language).get(key)
