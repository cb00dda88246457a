"""Which language a reporter writes in.

langdetect (the project's chosen detector) loaded with the configured languages' profiles
only, seeded so the same text always gives the same answer, and combined with hints: the
conversation's language so far and the provider's hint (Telegram `language_code`).
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources

from langdetect.detector_factory import DetectorFactory
from langdetect.lang_detect_exception import LangDetectException

_LETTERS = re.compile(r"[^\W\d_]", re.UNICODE)


@dataclass(frozen=True)
class LanguageGuess:
    language: str
    confidence: float  # 0..1; 0 when the text gave no evidence and a hint or default decided


class LanguageDetector:
    """langdetect restricted to `languages`. Thread-safe; one per process."""

    def __init__(self, languages: Sequence[str], *, default: str, seed: int = 0) -> None:
        self.languages = tuple(languages)
        self.default = default
        self._factory = DetectorFactory()
        self._factory.seed = seed
        profiles_dir = resources.files("langdetect") / "profiles"
        profiles = []
        for code in self.languages:
            profile = profiles_dir / code
            if not profile.is_file():
                raise ValueError(f"langdetect has no profile for language {code!r}")
            profiles.append(json.loads(profile.read_text(encoding="utf-8")))
        self._factory.load_json_profile([json.dumps(p) for p in profiles])
        self._lock = threading.Lock()

    def scores(self, text: str) -> dict[str, float]:
        """Probability per configured language; empty when the text has no letters."""
        if not _LETTERS.search(text):
            return {}
        with self._lock:  # langdetect's detector shares the factory's random state
            detector = self._factory.create()
            detector.append(text)
            try:
                probabilities = detector.get_probabilities()
            except LangDetectException:
                return {}
        return {p.lang: float(p.prob) for p in probabilities}

    def detect(self, text: str, *, hints: Sequence[str | None] = ()) -> LanguageGuess:
        """Best language for `text`; hints (most trusted first) decide when the text cannot."""
        usable_hints = [h for h in hints if h in self.languages]
        scores = self.scores(text)
        if not scores:
            return LanguageGuess(usable_hints[0] if usable_hints else self.default, 0.0)
        best, best_score = max(scores.items(), key=lambda item: item[1])
        for hint in usable_hints:
            # A hint wins unless the text clearly says otherwise.
            if scores.get(hint, 0.0) >= 0.2 or best_score < 0.9:
                return LanguageGuess(hint, scores.get(hint, 0.0))
        return LanguageGuess(best, best_score)


def choose_conversation_language(
    detector: LanguageDetector,
    text: str,
    *,
    current: str | None,
    provider_hint: str | None = None,
) -> LanguageGuess:
    """Sticky per conversation: switch only on long, confidently other-language text.

    Short answers inside a form ("Bamako", "yesterday") carry little evidence and must not
    flip the language; a reporter who starts writing whole sentences in another language does.
    """
    if current is None:
        return detector.detect(text, hints=[provider_hint])
    words = len(text.split())
    guess = detector.detect(text)
    if guess.language != current and words >= 4 and guess.confidence >= 0.95:
        return guess
    return LanguageGuess(current, 1.0)
