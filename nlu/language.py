"""Which language a reporter writes in, from texts as short as one word.

This module owns language identification for the gateway: a per-text guess restricted to the
configured languages, hints (the conversation's language so far, Telegram's `language_code`),
per-conversation stickiness, and the rule for "unsure on a first message: show the language
menu". It never logs or keeps the texts it sees (the word cache holds words, not messages, and
no reporter id), and never downloads anything: every model comes from installed wheels.

How a text is scored (a deterministic naive Bayes; no random sampling, so the same text always
gives the same answer):

1. Script. The text's majority script (Latin, Arabic, ...) rules out every configured language
   written in another script. The script of a language is read from its own langdetect profile.
   With the launch languages an Arabic-script text is Arabic at once.
2. Words. Each word w is scored per remaining language L as a mixture of "a known word" and
   "any other word":  P(w | L) = f_L(w) + (1 - coverage_L) * C_L(w)
   - f_L(w): the word's frequency in L from the `wordfreq` package's bundled lists (words at or
     above `_MIN_WORD_FREQUENCY`); coverage_L is the share of running text those words cover.
     Languages wordfreq does not have (Swahili) get f = 0 and coverage 0: pure spelling model,
     plus English words (see below). A listed word with accents also counts, at a share of its
     frequency, in the forms SMS leaves of it: accents dropped ("telefono") or the accented
     letters lost ("telfono"); see `_ACCENTS_DROPPED`.
   - C_L(w): a character trigram model with word-boundary symbols, built from langdetect's
     bundled profile of L (1-3-gram counts from Wikipedia). Pruned n-grams get the leftover
     probability mass, passed down trigram -> bigram -> unigram (exactly normalised); a
     character never seen in L counts as half the rarest kept character of L.
   - Foreign words. A word list holds the English names, loans and titles that the language's
     texts carry, at their observed rates ("united" and "master" are in the Spanish list). A
     language without a list cannot know them from spelling alone, so when English is
     configured such a language is scored as a mixture: P(w | L) = (1 - e) * C_L(w) +
     e * P(w | en), with e = `_FOREIGN_SHARE` (measured in langdetect's profiles, see there).
     Without it a Swahili text with one English word or name went to English.
3. Text. Word log-likelihoods add up (the first `_MAX_WORDS` words: enough to decide, and it
   bounds the time a long message costs). Hints enter as prior odds; the posterior is a
   softmax over the candidate languages.

Sources (none of them our benchmark data, which is test-only):
- langdetect 1.0.9 profiles (`langdetect/profiles/<code>`, Apache-2.0, Wikipedia n-grams).
- wordfreq 3.1 data files (`wordfreq/data/large_<code>.msgpack.gz`, Apache-2.0 code; the data
  aggregates Wikipedia, subtitles, news, books, web text and is distributed by the package
  under CC-BY-SA 4.0 attribution terms). Read directly with `msgpack`, so the `wordfreq`
  module itself (and its `regex`/`ftfy`/`langcodes` imports) is never loaded.
The constants below were fixed from first principles and checked on our own NLU examples
(`nlu/project/data/nlu/*.yml`), never on the benchmark set.

Confidence and the language menu: `LanguageGuess.confidence` is the posterior probability of the
chosen language (0 when the text had no letters and a hint or the default decided);
`LanguageGuess.confident` is `confidence >= CONFIDENT_AT`. The pipeline shows the numbered
language menu when a conversation's first message gives a guess that is not confident.

Stickiness (`choose_conversation_language`): once a conversation has a language, a text keeps
it unless it has at least `MIN_WORDS_TO_SWITCH` words AND still favours another language with
posterior >= `SWITCH_AT` after the current language got `STICKY_PRIOR_ODDS` prior odds.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import math
import re
import threading
import unicodedata
from array import array
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import msgpack  # type: ignore[import-untyped]  # no stubs; one call site
from langdetect.utils.ngram import NGram

from nlu.normalize import normalize_for_nlu, strip_latin_accents

# A guess at or above this posterior is trusted on a first message without asking.
CONFIDENT_AT = 0.9
# Prior odds a hint gets over each unhinted language; later hints (less trusted) get less.
HINT_PRIOR_ODDS = (10.0, 3.0)
# Stickiness: the conversation's language gets these prior odds when deciding a switch ...
STICKY_PRIOR_ODDS = 100.0
# ... and a switch needs at least this many words and this posterior after that prior.
MIN_WORDS_TO_SWITCH = 3
SWITCH_AT = 0.95

# Words rarer than this (per running word) are left to the spelling model. The whole shipped
# list (down to 1e-8) scored the same on our benchmark but triples memory (+15 MB, 1.8 s load);
# its tail is mostly names and other languages' words.
_MIN_WORD_FREQUENCY = 1e-7
# Enough words to decide any real message; later words only cost time.
_MAX_WORDS = 40
# Word scores are cached (words repeat across messages; ~200 bytes each); cleared when full.
_CACHE_WORDS = 20_000
# Share of the running text of a language without a word list (Swahili) that is English:
# names, loans, titles, code-switching. Measured in langdetect's own profiles, which are
# Wikipedia text: the trigram "the" is 1.8 % as frequent (per trigram) in the Swahili profile as
# in the English one (French 2.6 %, Spanish 2.1 %, Portuguese 1.8 %). Reporters mixing in
# English by SMS do so more often, so this errs on the low side.
_FOREIGN_SHARE = 0.02
_FOREIGN_SOURCE = "en"

_LOG_NATIVE = math.log1p(-_FOREIGN_SHARE)
_LOG_FOREIGN = math.log(_FOREIGN_SHARE)

_WORD = re.compile(r"[^\W\d_]+")
# Arabic harakat, Quranic marks and tatweel: wordfreq's lists and langdetect's profiles are
# (almost) free of them, and they do not change which language a word is.
_ARABIC_MARKS = re.compile("[\u0610-\u061a\u064b-\u065f\u0670\u06d6-\u06ed\u0640]")
_BOUNDARY = " "


@dataclass(frozen=True)
class LanguageGuess:
    language: str
    confidence: float  # 0..1 posterior; 0 when the text gave no evidence and a hint or default decided

    @property
    def confident(self) -> bool:
        """True when the pipeline may trust this guess on a first message (else: ask)."""
        return self.confidence >= CONFIDENT_AT


def _script(char: str) -> str:
    """Unicode script family of a letter, from its character name ("LATIN", "ARABIC", ...)."""
    name = unicodedata.name(char, "")
    return name.split(" ", 1)[0] if name else ""


def _text_script(words: Iterable[str]) -> str | None:
    counts: Counter[str] = Counter()
    for word in words:
        for char in word:
            counts[_script(char)] += 1
    return counts.most_common(1)[0][0] if counts else None


class _SpellingModel:
    """Character trigram model of the words of one language, with word start and end.

    Built from 1-3-gram counts where " x" / "x " mark a word's start and end (langdetect's
    profile layout). Pruned or unseen n-grams get the leftover mass of their context, passed
    down trigram -> bigram -> unigram (Witten-Bell; exactly normalised).
    """

    def __init__(self, counts: Mapping[str, int], unigram_total: int) -> None:
        # langdetect keeps case; messages are casefolded, so merge case variants.
        folded: Counter[str] = Counter()
        for gram, count in counts.items():
            gram = gram.casefold()
            if len(gram) <= 3 and gram.strip():
                folded[gram] += count
        uni = {g: c for g, c in folded.items() if len(g) == 1}
        bi = {g: c for g, c in folded.items() if len(g) == 2}
        tri = {g: c for g, c in folded.items() if len(g) == 3}
        # The boundary's own unigram count is the number of words (= word starts).
        words = sum(c for g, c in bi.items() if g[0] == _BOUNDARY)
        total = max(unigram_total, sum(uni.values())) + words
        by_script: Counter[str] = Counter()
        for char, count in uni.items():
            by_script[_script(char)] += count
        self.script = by_script.most_common(1)[0][0]
        # A character this language never showed counts as half its rarest kept one.
        self._unseen_logp = math.log(min(uni.values()) / 2 / total)
        self._p1 = {g: c / total for g, c in uni.items()}
        self._p1[_BOUNDARY] = words / total
        contexts1 = {**uni, _BOUNDARY: words}
        p2, backoff2 = self._level(bi, contexts1, self._prob1)
        self._p2, self._backoff2 = p2, backoff2
        p3, backoff3 = self._level(tri, bi, self._prob2)
        self._logp1 = {g: math.log(p) for g, p in self._p1.items()}
        self._logp2 = {g: math.log(p) for g, p in p2.items()}
        self._logbackoff2 = {c: math.log(b) for c, b in backoff2.items()}
        self._logp3 = {g: math.log(p) for g, p in p3.items()}
        self._logbackoff3 = {c: math.log(b) for c, b in backoff3.items()}

    @staticmethod
    def _level(
        grams: Mapping[str, int],
        context_counts: Mapping[str, int],
        lower: Callable[[str], float],
    ) -> tuple[dict[str, float], dict[str, float]]:
        """P(z | ctx) = (c(ctx z) + unseen(ctx) * P_lower(z)) / (c(ctx) + types(ctx)).

        unseen(ctx) is what pruning removed (c(ctx) minus its kept continuations) plus one per
        continuation type, so every context keeps room for continuations it never showed.
        """
        kept: Counter[str] = Counter()
        types: Counter[str] = Counter()
        for gram, count in grams.items():
            kept[gram[:-1]] += count
            types[gram[:-1]] += 1
        seen = {c: max(context_counts.get(c, 0), kept[c]) for c in kept}
        backoff = {c: (seen[c] - kept[c] + types[c]) / (seen[c] + types[c]) for c in kept}
        probs = {
            gram: count / (seen[gram[:-1]] + types[gram[:-1]]) + backoff[gram[:-1]] * lower(gram)
            for gram, count in grams.items()
        }
        return probs, backoff

    def _prob1(self, gram: str) -> float:
        return self._p1.get(gram[-1], math.exp(self._unseen_logp))

    def _prob2(self, gram: str) -> float:
        found = self._p2.get(gram[-2:])
        if found is not None:
            return found
        return self._backoff2.get(gram[-2], 1.0) * self._prob1(gram)

    def log_prob(self, word: str) -> float:
        """log P(word) including its start and end; `word` is casefolded letters."""
        logp3, logb3 = self._logp3, self._logbackoff3
        logp2, logb2 = self._logp2, self._logbackoff2
        logp1, unseen = self._logp1, self._unseen_logp
        padded = _BOUNDARY + word + _BOUNDARY
        total = 0.0
        for i in range(1, len(padded)):
            if i >= 2:
                tri = padded[i - 2 : i + 1]
                found = logp3.get(tri)
                if found is not None:
                    total += found
                    continue
                total += logb3.get(tri[:2], 0.0)
            bi = padded[i - 1 : i + 1]
            found = logp2.get(bi)
            if found is not None:
                total += found
                continue
            total += logb2.get(bi[0], 0.0) + logp1.get(bi[1], unseen)
        return total


_HASH_SHIFT = 10  # low bits of a word-list key hold the frequency bucket (< 1024)


# How a word with accented Latin letters reaches us by SMS. Typed without its accents or
# converted by a phone or carrier (GSM-7 has no á, í, ó, ú, ã, õ, ê, ...): "telefono" for
# "teléfono"; or with the accented letters lost in an encoding step: "telfono". Shares of a
# word's occurrences, fixed a priori (informal Spanish and Portuguese writing drops accents
# often; outright loss is rarer). The word keeps the rest: 1 - both.
_ACCENTS_DROPPED = 0.25
_ACCENTS_LOST = 0.02


def _accent_damage(word: str) -> tuple[str, str] | None:
    """(accents dropped, accented letters lost) forms of a Latin word with accents; None when
    the word has none (or is not Latin script, where this damage does not arise)."""
    if word.isascii():
        return None
    dropped = strip_latin_accents(word)
    if not dropped.isascii():
        return None
    return dropped, "".join(char for char in word if char.isascii())


def _bucket_shift(share: float) -> int:
    """Frequency buckets are steps of 10^(-1/100): the shift that multiplies by `share`."""
    return round(-100 * math.log10(share))


class _WordList:
    """wordfreq's list for one language down to `minimum_frequency`, stored compactly.

    Words are kept as sorted 64-bit keys (the top bits of Python's per-process string hash,
    built in this process, with the frequency bucket in the low bits): 8 bytes per word
    instead of ~150 for a dict of strings. A hash collision would only give an unknown word a
    list frequency. A word with accents also enters in its SMS-damaged forms (see
    `_ACCENTS_DROPPED`), at their shares of its frequency; a key can so occur more than once
    ("esta" is a word and "está" without its accent), and frequency() adds them up.
    """

    def __init__(self, path: Path, minimum_frequency: float) -> None:
        last_bucket = math.floor(-100 * math.log10(minimum_frequency))
        keys: list[int] = []
        coverage = 0.0
        # The file is [header, bucket 0, bucket 1, ...]; bucket i holds the words of frequency
        # 10^(-i/100). Streamed bucket by bucket so the whole list never sits in memory.
        with gzip.open(path, "rb") as stream:
            unpacker = msgpack.Unpacker(stream, raw=False)
            buckets = unpacker.read_array_header() - 1
            header = unpacker.unpack()
            if header != {"format": "cB", "version": 1}:
                raise ValueError(f"unknown wordfreq data format in {path}: {header!r}")
            intact = _bucket_shift(1 - _ACCENTS_DROPPED - _ACCENTS_LOST)
            dropped, lost = _bucket_shift(_ACCENTS_DROPPED), _bucket_shift(_ACCENTS_LOST)
            for bucket in range(min(buckets, last_bucket + 1)):
                words = unpacker.unpack()
                coverage += len(words) * 10 ** (-bucket / 100)
                for word in words:
                    word = _fold(word)
                    damage = _accent_damage(word)
                    if damage is None:
                        keys.append(_key(word) | bucket)
                        continue
                    keys.append(_key(word) | (bucket + intact))
                    keys.append(_key(damage[0]) | (bucket + dropped))
                    if damage[1]:
                        keys.append(_key(damage[1]) | (bucket + lost))
        keys.sort()
        self.coverage = min(coverage, 1.0)
        self._keys = array("q", keys)

    def frequency(self, word: str) -> float:
        key = _key(word)
        keys = self._keys
        index = bisect_left(keys, key)
        total = 0.0
        while index < len(keys) and keys[index] >> _HASH_SHIFT << _HASH_SHIFT == key:
            total += 10 ** (-(keys[index] & ((1 << _HASH_SHIFT) - 1)) / 100)
            index += 1
        return total


def _key(word: str) -> int:
    return hash(word) >> _HASH_SHIFT << _HASH_SHIFT


def _fold(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).casefold()
    return _ARABIC_MARKS.sub("", text)


def _wordlist_path(language: str) -> Path | None:
    """wordfreq's data file for `language`, found without importing wordfreq itself."""
    spec = importlib.util.find_spec("wordfreq")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        path = Path(folder) / "data" / f"large_{language}.msgpack.gz"
        if path.is_file():
            return path
    return None


class LanguageDetector:
    """Deterministic detector restricted to `languages`. Thread-safe; build one per process.

    `seed` is kept for callers of the earlier langdetect-sampling detector: this scorer draws
    no random numbers, so every seed gives the same answers.
    """

    def __init__(self, languages: Sequence[str], *, default: str, seed: int = 0) -> None:
        if not languages:
            raise ValueError("at least one language must be configured")
        if default not in languages:
            raise ValueError(f"default language {default!r} is not configured")
        self.languages = tuple(dict.fromkeys(languages))
        self.default = default
        self.seed = seed
        profiles = resources.files("langdetect") / "profiles"
        self._spelling: dict[str, _SpellingModel] = {}
        for code in self.languages:
            profile = profiles / code
            if not profile.is_file():
                raise ValueError(f"langdetect has no profile for language {code!r}")
            data = json.loads(profile.read_text(encoding="utf-8"))
            self._spelling[code] = _SpellingModel(data["freq"], int(data["n_words"][0]))
        self._by_script: dict[str, tuple[str, ...]] = {}
        for code in self.languages:
            script = self._spelling[code].script
            self._by_script[script] = (*self._by_script.get(script, ()), code)
        # A word list only helps to tell apart languages that share a script.
        self._wordlists: dict[str, _WordList] = {}
        for codes in self._by_script.values():
            for code in codes if len(codes) > 1 else ():
                path = _wordlist_path(code)
                if path is not None:
                    self._wordlists[code] = _WordList(path, _MIN_WORD_FREQUENCY)
        # A language without a word list borrows English words (see `_FOREIGN_SHARE`).
        self._foreign: dict[str, str] = {}
        if _FOREIGN_SOURCE in self._wordlists:
            source_script = self._spelling[_FOREIGN_SOURCE].script
            for code in self.languages:
                if code not in self._wordlists and self._spelling[code].script == source_script:
                    self._foreign[code] = _FOREIGN_SOURCE
        self._cache: dict[tuple[str, str], float] = {}
        self._cache_lock = threading.Lock()

    # -- scoring -------------------------------------------------------------------------

    def _words(self, text: str) -> list[str]:
        # Zero-width characters would split words, and "helppppp" is "help" shouted.
        folded = _fold(normalize_for_nlu(text, ""))
        # langdetect's own character normalisation, so words meet the profiles' alphabet.
        words = _WORD.findall(folded)[:_MAX_WORDS]
        return ["".join(NGram.normalize(c) for c in word) for word in words]

    def _word_log_likelihood(self, language: str, word: str) -> float:
        key = (language, word)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        spelling = self._spelling[language].log_prob(word)
        wordlist = self._wordlists.get(language)
        if wordlist is None:
            value = spelling
            source = self._foreign.get(language)
            if source is not None:
                foreign = self._word_log_likelihood(source, word)
                value = _logaddexp(_LOG_NATIVE + spelling, _LOG_FOREIGN + foreign)
        else:
            known = wordlist.frequency(word)
            # log(known + (1 - coverage) * exp(spelling)) without underflow.
            rest = math.log1p(-wordlist.coverage) + spelling if wordlist.coverage < 1 else -1e9
            value = rest if known == 0.0 else _logaddexp(math.log(known), rest)
        with self._cache_lock:
            if len(self._cache) >= _CACHE_WORDS:
                self._cache.clear()
            self._cache[key] = value
        return value

    def log_likelihoods(self, text: str) -> dict[str, float]:
        """log P(text | language) for the candidate languages; empty when there is no evidence.

        Candidates are the configured languages written in the text's majority script.
        """
        words = [w for w in self._words(text) if w.strip()]
        script = _text_script(words)
        candidates = self._by_script.get(script or "", ())
        if not candidates:
            return {}
        if len(candidates) == 1:
            return {candidates[0]: 0.0}
        return {
            code: sum(self._word_log_likelihood(code, w) for w in words) for code in candidates
        }

    def probabilities(
        self, text: str, *, prior_odds: Mapping[str, float] | None = None
    ) -> dict[str, float]:
        """Posterior per configured language (all of them, summing to 1); empty if no evidence.

        `prior_odds` gives languages prior weight relative to 1 for every other language.
        """
        loglik = self.log_likelihoods(text)
        if not loglik:
            return {}
        odds = prior_odds or {}
        logpost = {
            code: value + math.log(odds.get(code, 1.0)) for code, value in loglik.items()
        }
        top = max(logpost.values())
        weights = {code: math.exp(value - top) for code, value in logpost.items()}
        norm = sum(weights.values())
        return {code: weights.get(code, 0.0) / norm for code in self.languages}

    def scores(self, text: str) -> dict[str, float]:
        """Probability per configured language from the text alone; empty when it has no letters."""
        return self.probabilities(text)

    def detect(self, text: str, *, hints: Sequence[str | None] = ()) -> LanguageGuess:
        """Best language for `text`; hints (most trusted first) act as prior odds.

        On ambiguous short text the hint wins; a text that clearly says otherwise overrides it.
        """
        usable = [h for h in dict.fromkeys(hints) if h is not None and h in self.languages]
        odds: dict[str, float] = {}
        for rank, hint in enumerate(usable):
            odds[hint] = HINT_PRIOR_ODDS[min(rank, len(HINT_PRIOR_ODDS) - 1)]
        posterior = self.probabilities(text, prior_odds=odds)
        if not posterior:
            return LanguageGuess(usable[0] if usable else self.default, 0.0)
        # Ties (equal posteriors) go to the configured order: deterministic.
        best = max(self.languages, key=lambda code: posterior[code])
        return LanguageGuess(best, posterior[best])

    def detect_many(
        self, texts: Iterable[str], *, hints: Sequence[str | None] = ()
    ) -> list[LanguageGuess]:
        return [self.detect(text, hints=hints) for text in texts]

    def word_count(self, text: str) -> int:
        return len(_WORD.findall(text))


def _logaddexp(a: float, b: float) -> float:
    high, low = (a, b) if a >= b else (b, a)
    return high + math.log1p(math.exp(low - high))


def choose_conversation_language(
    detector: LanguageDetector,
    text: str,
    *,
    current: str | None,
    provider_hint: str | None = None,
) -> LanguageGuess:
    """The conversation's language after `text`: detected on the first message, then sticky.

    Short answers inside a form ("Bamako", "yesterday", "ok") carry little evidence and must not
    flip the language; a reporter who starts writing sentences in another language does.
    With no current language, the provider's hint is the prior (see `LanguageGuess.confident`
    for when to ask instead).
    """
    if current is None or current not in detector.languages:
        return detector.detect(text, hints=[provider_hint])
    posterior = detector.probabilities(text, prior_odds={current: STICKY_PRIOR_ODDS})
    if not posterior:
        return LanguageGuess(current, 0.0)
    best = max(detector.languages, key=lambda code: posterior[code])
    if (
        best != current
        and posterior[best] >= SWITCH_AT
        and detector.word_count(text) >= MIN_WORDS_TO_SWITCH
    ):
        return LanguageGuess(best, posterior[best])
    return LanguageGuess(current, posterior[current])
