"""Urgency of a tip, with the reasons for it.

The same function tags live tips and answers `tipline triage`, so what officers see and what
the evaluation measures cannot drift apart. This module owns the urgency lexicon
(config/urgency/<language>.yml: its format, its checker, how its words match text) and the rules
that combine the signals. It never stores anything and never logs tip text.

Levels (most urgent first):
    critical  threat to life now: shooting, attack under way, kidnapping, someone injured or
              dying, explosive found, violence happening now.
    high      serious threat within days: planned attack, weapons cache, recruitment of
              children, missing person, death threat.
    normal    information about crime: theft, drugs, extortion, corruption, suspicious activity.
    low       general concerns, feedback, questions.

Combination (every signal that counts leaves a reason):
    1. danger_now=yes (the reporter's answer) or the NLU intent `danger_now` -> critical.
    2. Lexicon: the highest level of any phrase found, in any loaded language. A phrase right
       after a negation ("nobody hurt") is ignored, with a reason; see `_negated` for which
       language's negations count.
    3. A high phrase plus a time cue ("now", "maintenant", "sasa hivi") -> critical, unless the
       reporter answered danger_now=no: their direct answer outweighs a word like "now".
    4. danger_now=no never lowers a level the words support ("bomb" stays critical): a
       resident may not know, and missing a bomb costs more than a false alarm.
    5. Nothing found -> normal: an unexplained tip is still information about crime.
    The result is the highest level any rule supports; an officer can `override` it.

Exceptions:
    LexiconError(ValueError)  - a lexicon file is missing or malformed (with file:line errors).
"""

from __future__ import annotations

import functools
import logging
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from config.settings import CONFIG_DIR
from storage.models import URGENCY_RANK, Urgency

logger = logging.getLogger(__name__)

DEFAULT_LEXICON_DIR = CONFIG_DIR / "urgency"
LEVEL_KEYS = tuple(level.value for level in Urgency)  # critical, high, normal, low
TIME_CUES = "time_cues"
NEGATIONS = "negations"
ALLOWED_KEYS = (*LEVEL_KEYS, TIME_CUES, NEGATIONS)
INTENT_LEVELS = {"danger_now": Urgency.CRITICAL}

# A word of at least this many letters also matches longer words that begin with it
# (shoot -> shooting). Shorter words would match too much (gun -> gunny), so they match whole.
# Arabic roots are short and its words carry fewer letters, hence the lower bound.
MIN_STEM = 4
MIN_STEM_ARABIC = 3
# Letters that may follow a stem: at least 5 (-ings, -ement, -aron), more for long stems
# (felicit -> felicitaciones); short stems stay tight so "bomb" does not reach far.
MIN_ENDING = 5
# Words this long also tolerate one typo (insert, drop, change or swap two letters), never in
# the first or last letter: people rarely mistype those, and allowing it turns "attached"
# into "attack" and Spanish "herido" into Portuguese "ferido".
MIN_FUZZY = 6
# A negation counts for a phrase that starts right after it or one word later:
# "nobody hurt", "nobody was hurt", "personne n'est blessé"; not "not moving after machete".
NEGATION_WINDOW = 2
# Words inside a phrase may be separated by one extra word: "shooting at people".
PHRASE_GAP = 1


class LexiconError(ValueError):
    """A lexicon file is missing or malformed."""

    def __init__(self, errors: Sequence[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = tuple(errors)


@dataclass(frozen=True)
class Assessment:
    urgency: Urgency
    reasons: tuple[str, ...]


# --- Text normalization -------------------------------------------------------------------

# Tashkeel (short vowels, shadda, sukun...), Quranic marks and tatweel carry no meaning for
# matching and are mostly absent from SMS anyway.
_ARABIC_MARKS = re.compile("[\u0610-\u061a\u064b-\u065f\u0670\u06d6-\u06ed\u0640]")
# Letters residents write interchangeably: alef forms, ta marbuta/ha, alef maqsura/ya, hamza
# seats, and the Persian keyboard's kaf and ya.
_ARABIC_LETTERS = str.maketrans({
    "أ": "ا", "إ": "ا", "آ": "ا", "ٱ": "ا",
    "ة": "ه", "ى": "ي", "ؤ": "و", "ئ": "ي",
    "ک": "ك", "ی": "ي",
})
_LATIN_LIGATURES = str.maketrans({"œ": "oe", "æ": "ae", "ø": "o", "ł": "l", "đ": "d"})
_WORD = re.compile(r"[^\W_]+")
_REPEATS = re.compile(r"(.)\1{2,}")
_DOUBLES = re.compile(r"(.)\1")
_ARABIC_CHAR = re.compile("[\u0600-\u06ff]")
# Proclitics glued to Arabic words: wa-/fa- (and), bi-/li-/ka- (with/for/like), al- (the);
# and the imperfect verb prefixes ya-/ta-/na- (يقتلون -> قتلون, so the root قتل matches).
_ARABIC_CONJUNCTIONS = ("", "و", "ف")
_ARABIC_PREFIXES = ("", "بال", "كال", "لل", "ال", "ب", "ل", "ك", "ي", "ت", "ن")


def normalize(text: str) -> str:
    """Case-, accent- and Arabic-spelling-insensitive form of `text`."""
    text = unicodedata.normalize("NFKC", text).translate(_ARABIC_LETTERS)
    text = _ARABIC_MARKS.sub("", text)
    decomposed = unicodedata.normalize("NFD", text.casefold().translate(_LATIN_LIGATURES))
    text = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    # "heeelp", "nowww": SMS stretches letters for emphasis.
    return _REPEATS.sub(r"\1\1", text)


def words(text: str) -> list[str]:
    """Normalized words of `text`; punctuation and extra spaces separate words."""
    return _WORD.findall(normalize(text))


def _is_arabic(word: str) -> bool:
    return bool(_ARABIC_CHAR.search(word))


def _forms(word: str) -> tuple[str, ...]:
    """The word as written plus the spellings it may stand for: doubled letters single
    ("boomb" from "BOOOMB" -> "bomb"), and for Arabic, the word without its proclitics
    (والسلاح -> سلاح)."""
    if not _is_arabic(word):
        single = _DOUBLES.sub(r"\1", word)
        return (word,) if single == word else (word, single)
    forms = [word]
    for conjunction in _ARABIC_CONJUNCTIONS:
        if not word.startswith(conjunction):
            continue
        rest = word[len(conjunction):]
        for prefix in _ARABIC_PREFIXES:
            stripped = rest[len(prefix):]
            if rest.startswith(prefix) and len(stripped) >= 2 and stripped not in forms:
                forms.append(stripped)
    return tuple(forms)


def _typos(a: str, b: str) -> int:
    """Optimal string alignment distance, stopping early above 1 (all the callers care about)."""
    if abs(len(a) - len(b)) > 1:
        return 2
    previous2: list[int] = []
    previous = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        current = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                current[j] = min(current[j], previous2[j - 2] + 1)
        if min(current) > 1:
            return 2
        previous2, previous = previous, current
    return previous[-1]


# --- Lexicon ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Word:
    """One word of a lexicon phrase. A `*` before or after it lets extra letters go there:
    `*tekwa` matches Swahili `ametekwa`; `gun*` matches `gunmen`."""

    stem: str
    open_start: bool = False
    open_end: bool = False

    def matches(self, token: str) -> bool:
        stem = self.stem
        if self.open_start and self.open_end:
            return stem in token
        if self.open_start:
            return token.endswith(stem)
        if self.open_end:
            return token.startswith(stem)
        if token == stem:
            return True
        min_stem = MIN_STEM_ARABIC if _is_arabic(stem) else MIN_STEM
        if len(stem) < min_stem or len(token) > len(stem) + max(MIN_ENDING, len(stem)):
            return False
        if token.startswith(stem):
            return True
        if len(stem) < MIN_FUZZY:
            return False
        # One typo inside the stem, any allowed ending after it: "kidnaping", "recruting".
        return token[0] == stem[0] and any(
            len(stem) - 1 <= cut <= len(token)
            and token[cut - 1] == stem[-1]
            and _typos(token[:cut], stem) <= 1
            for cut in (len(stem) - 1, len(stem), len(stem) + 1)
        )


def _parse_phrase(phrase: str) -> tuple[_Word, ...]:
    """Lexicon text -> words to match; empty when nothing matchable is left."""
    parsed: list[_Word] = []
    for chunk in phrase.split():
        open_start, open_end = chunk.startswith("*"), chunk.endswith("*")
        parts = words(chunk.strip("*"))
        for n, part in enumerate(parts):
            parsed.append(_Word(part, open_start and n == 0, open_end and n == len(parts) - 1))
    # An administrator writes "السلاح" or "سلاح"; text words are also tried without "ال"
    # (see _forms), so the lexicon keeps the bare word. "الان" (now) is too short to strip.
    return tuple(
        _Word(w.stem[2:], w.open_start, w.open_end)
        if _is_arabic(w.stem) and w.stem.startswith("ال") and len(w.stem) >= 5 else w
        for w in parsed
    )


@dataclass(frozen=True)
class Entry:
    phrase: str  # as the administrator wrote it
    kind: str  # a level (critical, high, normal, low), time_cues or negations
    language: str
    words: tuple[_Word, ...] = field(repr=False)


@dataclass(frozen=True)
class Hit:
    entry: Entry
    start: int  # index of the first matched word
    end: int  # index after the last matched word
    text: str  # the matched words, normalized

    @property
    def exact(self) -> bool:
        return self.text == " ".join(w.stem for w in self.entry.words)


class UrgencyLexicon:
    """Words and phrases per level and language, loaded from YAML once and matched often."""

    def __init__(self, entries: Iterable[Entry], *, languages: Sequence[str],
                 problems: Sequence[str] = ()) -> None:
        self.entries = tuple(entries)
        self.languages = tuple(languages)
        # Files skipped by a lenient load, so the caller can say what is missing.
        self.problems = tuple(problems)

    @classmethod
    def load(cls, directory: str | Path = DEFAULT_LEXICON_DIR,
             languages: Iterable[str] | None = None, *, strict: bool = True) -> UrgencyLexicon:
        """Read <directory>/<language>.yml for each language (all files when None).

        strict: raise LexiconError for a missing or malformed file. Lenient loading skips such
        files and records why in `problems`: the live bot must keep tagging tips with what is
        left (and danger_now) rather than fail a tip because an administrator broke a file.
        """
        directory = Path(directory)
        if languages is None:
            languages = sorted(p.stem for p in directory.glob("*.yml"))
        entries: list[Entry] = []
        loaded: list[str] = []
        problems: list[str] = []
        for language in languages:
            path = directory / f"{language}.yml"
            errors = check_lexicon(path)
            if errors:
                if strict:
                    raise LexiconError(errors)
                problems.extend(errors)
                continue
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            for kind, phrases in data.items():
                for phrase in phrases or ():
                    entries.append(Entry(phrase, kind, language, _parse_phrase(phrase)))
            loaded.append(language)
        return cls(entries, languages=loaded, problems=problems)

    def find(self, tokens: Sequence[str]) -> list[Hit]:
        """Every entry found in the normalized `tokens`, once per entry (its first place)."""
        forms = [_forms(token) for token in tokens]
        # Unless a word opens with *, its first letter must be the token's first letter (the
        # typo rule spares it too), so only those places are tried: ~20x fewer comparisons.
        by_letter: dict[str, list[int]] = {}
        for position, variants in enumerate(forms):
            for letter in sorted({variant[0] for variant in variants}):
                by_letter.setdefault(letter, []).append(position)
        anywhere = range(len(tokens))
        hits = []
        for entry in self.entries:
            first = entry.words[0]
            starts = anywhere if first.open_start else by_letter.get(first.stem[0], ())
            for start in starts:
                end = _match_at(entry.words, forms, start)
                if end is not None:
                    hits.append(Hit(entry, start, end, " ".join(tokens[start:end])))
                    break
        return hits


def _match_at(phrase: tuple[_Word, ...], forms: list[tuple[str, ...]], start: int) -> int | None:
    """End index if `phrase` matches from `start`, allowing PHRASE_GAP extra words between."""
    if not any(phrase[0].matches(f) for f in forms[start]):
        return None
    position = start + 1
    for word in phrase[1:]:
        for candidate in range(position, min(position + PHRASE_GAP + 1, len(forms))):
            if any(word.matches(f) for f in forms[candidate]):
                position = candidate + 1
                break
        else:
            return None
    return position


@functools.cache
def default_lexicon(directory: Path = DEFAULT_LEXICON_DIR) -> UrgencyLexicon:
    """The lexicon in `directory` (config/urgency), every language, loaded on first use."""
    lexicon = UrgencyLexicon.load(directory, strict=False)
    for problem in lexicon.problems:
        # file:line and a message about the YAML, never tip text.
        logger.error("urgency.lexicon_invalid", extra={"problem": problem})
    return lexicon


# --- Assessment ---------------------------------------------------------------------------


def _rank(level: Urgency) -> int:
    return URGENCY_RANK[level]


def _languages(hits: Iterable[Hit]) -> str:
    return ", ".join(sorted({h.entry.language for h in hits}))


def _describe(kind: str, hits: list[Hit]) -> str:
    """'matched "coups de feu" (fr)', with the text's spelling when it differed."""
    first = hits[0]
    spelled = sorted({h.text for h in hits if not h.exact})
    written = f' as "{"/".join(spelled)}"' if spelled else ""
    label = "time cue" if kind == TIME_CUES else f"{kind}: matched"
    return f'{label} "{first.entry.phrase}" ({_languages(hits)}){written}'


def _grouped(hits: Iterable[Hit]) -> list[list[Hit]]:
    """One reason per level and place in the text: "robaron" found by es "robaron" and by
    pt "roubar" is one piece of evidence. The reason names the closest entry (exact spelling
    first, then the longest phrase) and every language that has that same entry (es/pt
    "bomba")."""
    groups: dict[tuple[str, int, int], list[Hit]] = {}
    for hit in hits:
        groups.setdefault((hit.entry.kind, hit.start, hit.end), []).append(hit)
    result = []
    for group in groups.values():
        best = min(group, key=lambda h: (not h.exact, -len(h.entry.words), h.entry.language))
        same = [h for h in group if h.entry.words == best.entry.words]
        result.append([best, *(h for h in same if h is not best)])
    return result


def _negated(hits: list[Hit], negations: list[Hit], language: str) -> dict[Hit, Hit]:
    """Phrase hits that a negation cancels, with the negation that cancels each.

    A negation of the conversation's language cancels whatever follows it, in any language
    ("nadie herido" also cancels the Portuguese reading of "herido"). A negation of another
    language cancels only its own language's phrases: Portuguese "no" means "in the", so in a
    Portuguese conversation "no grupo armado" keeps "armado".
    """
    cancelled: dict[Hit, Hit] = {}
    for hit in hits:
        for negation in negations:
            if negation.end <= hit.start <= negation.end + NEGATION_WINDOW - 1 and (
                negation.entry.language in (language, hit.entry.language)
            ):
                cancelled.setdefault(hit, negation)
    return cancelled


def assess(*, text: str, danger_now: bool | None, language: str, intent: str | None = None,
           lexicon: UrgencyLexicon | None = None) -> Assessment:
    """Urgency of a tip and why.

    `language` is the conversation's language; residents mix languages and detection is
    unreliable on short texts, so every loaded language is matched and each match names its
    own. `lexicon` defaults to config/urgency, loaded once.
    """
    lexicon = lexicon if lexicon is not None else default_lexicon()
    hits = lexicon.find(words(text))
    negations = [h for h in hits if h.entry.kind == NEGATIONS]
    time_cues = [h for h in hits if h.entry.kind == TIME_CUES]
    candidates = [h for h in hits if h.entry.kind in LEVEL_KEYS]
    cancelled = _negated(candidates, negations, language)
    level_hits = [h for h in candidates if h not in cancelled]
    ignored = [
        f'ignored "{group[0].entry.phrase}" ({_languages(group)}): negated by '
        f'"{cancelled[group[0]].entry.phrase}" ({cancelled[group[0]].entry.language})'
        for group in _grouped(h for h in candidates if h in cancelled)
    ]

    supported: list[Urgency] = []
    reasons: list[str] = []
    if danger_now is True:
        supported.append(Urgency.CRITICAL)
        reasons.append("danger_now=yes")
    elif danger_now is False:
        reasons.append("danger_now=no")
    if intent is not None and intent in INTENT_LEVELS:
        supported.append(INTENT_LEVELS[intent])
        reasons.append(f"intent={intent}")

    level_hits.sort(key=lambda h: _rank(Urgency(h.entry.kind)))
    for group in _grouped(level_hits):
        supported.append(Urgency(group[0].entry.kind))
        reasons.append(_describe(group[0].entry.kind, group))
    reasons.extend(_describe(TIME_CUES, group) for group in _grouped(time_cues))
    reasons.extend(ignored)

    words_level = min((Urgency(h.entry.kind) for h in level_hits), key=_rank, default=None)
    if words_level is Urgency.HIGH and time_cues:
        if danger_now is False:
            reasons.append("time cue does not escalate: danger_now=no")
        else:
            supported.append(Urgency.CRITICAL)
            reasons.append("high + time cue -> critical")
    if not supported:
        reasons.append("no urgency words: normal by default")
        return Assessment(Urgency.NORMAL, tuple(reasons))
    return Assessment(min(supported, key=_rank), tuple(reasons))


def override(assessment: Assessment, level: Urgency | str, reason: str,
             officer: str) -> Assessment:
    """An officer's decision, kept beside the evidence it overrules."""
    new_level = Urgency(level)
    reason, officer = reason.strip(), officer.strip()
    if not reason:
        raise ValueError("an override needs a reason")
    if not officer:
        raise ValueError("an override needs the officer's name")
    quoted = reason.replace('"', "'")
    return Assessment(
        new_level, (*assessment.reasons, f'override={new_level.value} by {officer}: "{quoted}"')
    )


# --- Checking lexicon files ---------------------------------------------------------------

_STR_TAG = "tag:yaml.org,2002:str"
_NULL_TAG = "tag:yaml.org,2002:null"


def check_lexicon(path: str | Path) -> list[str]:
    """Problems in one lexicon file as `file:line: message`; empty when the file is good."""
    name = str(path)
    try:
        source = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return [f"{name}:1: file not found"]
    except (OSError, UnicodeDecodeError) as exc:
        return [f"{name}:1: cannot read the file: {exc}"]
    try:
        root = yaml.compose(source, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else 1
        text = (source.splitlines()[line - 1:line] or [""])[0]
        # YAML reads a leading * as a reference to an anchor; say what the author meant.
        hint = (' (an entry starting with * needs quotes: "*word")'
                if text.strip().lstrip("-").strip().startswith("*") else "")
        return [f"{name}:{line}: not valid YAML: {exc.problem}{hint}"]
    if root is None:
        return []  # an empty file is an empty lexicon
    if not isinstance(root, yaml.MappingNode):
        return [f"{name}:{root.start_mark.line + 1}: expected keys such as "
                f"critical:, high:, normal:, low:, time_cues:"]

    errors: list[str] = []
    seen_keys: dict[str, int] = {}
    seen_phrases: dict[tuple[_Word, ...], tuple[str, int]] = {}
    for key_node, value_node in root.value:
        line = key_node.start_mark.line + 1
        key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
        if key not in ALLOWED_KEYS:
            errors.append(f'{name}:{line}: unknown key "{key}" '
                          f"(allowed: {', '.join(ALLOWED_KEYS)})")
            continue
        if key in seen_keys:
            errors.append(f'{name}:{line}: key "{key}" appears twice (first at line '
                          f"{seen_keys[key]})")
        seen_keys.setdefault(key, line)
        if isinstance(value_node, yaml.ScalarNode) and value_node.tag == _NULL_TAG:
            continue  # "low:" with nothing under it
        if not isinstance(value_node, yaml.SequenceNode):
            errors.append(f'{name}:{value_node.start_mark.line + 1}: "{key}" must be a list, '
                          "one word or phrase per line starting with \"- \"")
            continue
        for item in value_node.value:
            item_line = item.start_mark.line + 1
            if isinstance(item, yaml.ScalarNode) and item.tag == _NULL_TAG:
                errors.append(f"{name}:{item_line}: empty phrase in {key}")
                continue
            if not isinstance(item, yaml.ScalarNode) or item.tag != _STR_TAG:
                shown = item.value if isinstance(item, yaml.ScalarNode) else "a list or mapping"
                errors.append(f"{name}:{item_line}: entry in {key} is not text: {shown} "
                              "(put it in quotes)")
                continue
            phrase = item.value
            if any("*" in chunk.strip("*") for chunk in phrase.split()):
                errors.append(f'{name}:{item_line}: "{phrase}": * may only start or end a word')
                continue
            parsed = _parse_phrase(phrase)
            if not parsed:
                errors.append(f"{name}:{item_line}: empty phrase in {key}")
                continue
            if parsed in seen_phrases:
                first_key, first_line = seen_phrases[parsed]
                errors.append(f'{name}:{item_line}: duplicate "{phrase}" (already in '
                              f"{first_key} at line {first_line})")
                continue
            seen_phrases[parsed] = (key, item_line)
    return errors
