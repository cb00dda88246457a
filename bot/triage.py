"""`tipline triage`: language and urgency for tips given as JSON Lines, one answer per line.

Owns the line protocol only: the language comes from the live pipeline's detector and the
urgency from `bot.urgency.assess`, so triage answers what the live bot would. It never needs
secrets, never touches the database and never logs tip text.

Input, one object per line:   {"text": "...", "danger_now": true|false|null, "language": "fr"}
                              ("danger_now" and "language" optional; "language" is a hint,
                              as a conversation's earlier language is in the live pipeline)
Output, one line per input:   {"language": "fr", "urgency": "critical", "reasons": [...]}
                              or {"error": "line 3: ..."} for a line that cannot be read.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, TextIO

from bot.urgency import DEFAULT_LEXICON_DIR, UrgencyLexicon, assess
from nlu.language import LanguageDetector


class _BadLineError(ValueError):
    """One input line cannot be triaged; the others still are."""


def _read(line: str) -> tuple[str, bool | None, str | None]:
    try:
        item: Any = json.loads(line)
    except json.JSONDecodeError as exc:
        raise _BadLineError(f"not JSON: {exc.msg}") from exc
    if not isinstance(item, dict):
        raise _BadLineError("expected a JSON object")
    text = item.get("text")
    if not isinstance(text, str):
        raise _BadLineError('missing "text" (a string)')
    danger_now = item.get("danger_now")
    if danger_now is not None and not isinstance(danger_now, bool):
        raise _BadLineError('"danger_now" must be true, false or null')
    language = item.get("language")
    if language is not None and not isinstance(language, str):
        raise _BadLineError('"language" must be a language code such as "fr"')
    return text, danger_now, language


def run_triage(lines: Iterable[str], out: TextIO, *, languages: Sequence[str],
               default_language: str, lexicon_dir: str | Path | None = None) -> int:
    """Triage every line of `lines` into `out`; 0 when all lines were read, 1 otherwise.

    Blank lines are skipped (a trailing newline is not a tip). A malformed lexicon raises
    LexiconError before any output: triage answers for an administrator who must fix it.
    """
    detector = LanguageDetector(languages, default=default_language)
    lexicon = UrgencyLexicon.load(lexicon_dir or DEFAULT_LEXICON_DIR)
    failed = False
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            text, danger_now, hint = _read(line)
        except _BadLineError as exc:
            failed = True
            out.write(json.dumps({"error": f"line {number}: {exc}"}) + "\n")
            out.flush()
            continue
        language = detector.detect(text, hints=[hint]).language
        assessment = assess(text=text, danger_now=danger_now, language=language,
                            lexicon=lexicon)
        answer = {"language": language, "urgency": assessment.urgency.value,
                  "reasons": list(assessment.reasons)}
        out.write(json.dumps(answer, ensure_ascii=False) + "\n")
        # Flushed per line so a pipe consumer sees each answer as its tip goes in.
        out.flush()
    return 1 if failed else 0
