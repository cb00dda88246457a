"""Language detection: restriction, determinism, hints, stickiness, scripts, no-evidence texts.

Texts here are written for these tests (not taken from the benchmark set).
"""

from __future__ import annotations

import json
from importlib import resources

import pytest

from nlu.language import (
    _FOREIGN_SHARE,
    CONFIDENT_AT,
    LanguageDetector,
    LanguageGuess,
    _accent_damage,
    choose_conversation_language,
)

LAUNCH = ("en", "fr", "ar", "sw", "es", "pt")

SENTENCES = {
    "en": "Two men broke into the shop last night and took the money",
    "fr": "Deux hommes sont entrés dans la boutique hier soir et ont volé l'argent",
    "ar": "دخل رجلان إلى المتجر الليلة الماضية وسرقا المال",
    "sw": "Wanaume wawili waliingia dukani jana usiku na kuiba pesa zote",
    "es": "Dos hombres entraron en la tienda anoche y se llevaron el dinero",
    "pt": "Dois homens entraram na loja ontem à noite e levaram o dinheiro",
}


@pytest.fixture(scope="module")
def detector() -> LanguageDetector:
    return LanguageDetector(LAUNCH, default="en")


@pytest.mark.parametrize("language", LAUNCH)
def test_sentence_in_each_launch_language(detector: LanguageDetector, language: str) -> None:
    guess = detector.detect(SENTENCES[language])
    assert guess.language == language
    assert guess.confident


@pytest.mark.parametrize(
    ("word", "language"),
    [("wanaume", "sw"), ("habitación", "es"), ("informações", "pt"), ("aujourd'hui", "fr")],
)
def test_single_words(detector: LanguageDetector, word: str, language: str) -> None:
    assert detector.detect(word).language == language


@pytest.mark.parametrize("text", ["transport imekwama", "meeting imeahirishwa", "nimeibiwa laptop"])
def test_swahili_with_an_english_word_stays_swahili(detector: LanguageDetector, text: str) -> None:
    # Swahili has no word list: without the English share its texts lost to English.
    guess = detector.detect(text)
    assert guess.language == "sw"
    assert guess.confident


@pytest.mark.parametrize(("text", "language"), [
    ("nao sei", "pt"),  # "não sei" typed without the tilde: SMS and GSM-7 have none
    ("telfono", "es"),  # "teléfono" with its accented letter lost on the way
    ("tambin", "es"),   # "también", same; without the damage model: Swahili
])
def test_words_that_lost_their_accents_on_the_way(
    detector: LanguageDetector, text: str, language: str,
) -> None:
    guess = detector.detect(text)
    assert guess.language == language and guess.confident


def test_accent_damage_forms() -> None:
    assert _accent_damage("información") == ("informacion", "informacin")
    assert _accent_damage("água") == ("agua", "gua")
    assert _accent_damage("police") is None and _accent_damage("شرطة") is None


@pytest.mark.parametrize("text", ["Juma stole my phone", "Police arrested Baraka yesterday"])
def test_english_with_a_swahili_name_stays_english(detector: LanguageDetector, text: str) -> None:
    guess = detector.detect(text)
    assert guess.language == "en"
    assert guess.confident


def test_foreign_share_is_what_the_profiles_show() -> None:
    # The English share of Swahili text is read off langdetect's profiles: how frequent the
    # trigram "the" is in the Swahili profile relative to the English one (about 1.8 %).
    profiles = resources.files("langdetect") / "profiles"

    def share_of_the(code: str) -> float:
        data = json.loads((profiles / code).read_text(encoding="utf-8"))
        count = sum(c for gram, c in data["freq"].items() if gram.casefold() == "the")
        return float(count) / data["n_words"][2]

    ratio = share_of_the("sw") / share_of_the("en")
    assert ratio / 2 <= _FOREIGN_SHARE <= ratio * 2


def test_swahili_without_english_configured() -> None:
    detector = LanguageDetector(["fr", "sw"], default="fr")
    assert detector.detect(SENTENCES["sw"]).language == "sw"
    assert detector.detect(SENTENCES["fr"]).language == "fr"


def test_only_configured_languages_are_returned() -> None:
    detector = LanguageDetector(["en", "fr"], default="en")
    for text in (SENTENCES["es"], SENTENCES["pt"], "habitación", "informações"):
        assert detector.detect(text).language in {"en", "fr"}
        assert set(detector.scores(text)) == {"en", "fr"}


def test_unknown_or_unconfigured_languages_are_refused() -> None:
    with pytest.raises(ValueError, match="no profile"):
        LanguageDetector(["en", "xx"], default="en")
    with pytest.raises(ValueError, match="not configured"):
        LanguageDetector(["en", "fr"], default="sw")


def test_scores_are_probabilities(detector: LanguageDetector) -> None:
    scores = detector.scores(SENTENCES["sw"])
    assert set(scores) == set(LAUNCH)
    assert sum(scores.values()) == pytest.approx(1.0)
    assert max(scores, key=lambda code: scores[code]) == "sw"


def test_deterministic_across_calls_instances_and_seeds(detector: LanguageDetector) -> None:
    texts = [*SENTENCES.values(), "hospital", "ok", "polisi", "centro", "danger"]
    first = [detector.scores(text) for text in texts]
    assert [detector.scores(text) for text in texts] == first
    other = LanguageDetector(LAUNCH, default="en", seed=12345)
    assert [other.scores(text) for text in texts] == first


@pytest.mark.parametrize("hint", ["es", "pt"])
def test_hint_wins_on_ambiguous_short_text(detector: LanguageDetector, hint: str) -> None:
    # "hospital" is the same word in Spanish, Portuguese and English.
    assert not detector.detect("hospital").confident
    assert detector.detect("hospital", hints=[hint]).language == hint


def test_hint_loses_to_clear_text(detector: LanguageDetector) -> None:
    assert detector.detect(SENTENCES["sw"], hints=["fr"]).language == "sw"


def test_first_hint_is_most_trusted(detector: LanguageDetector) -> None:
    assert detector.detect("ok", hints=["pt", "es"]).language == "pt"
    assert detector.detect("ok", hints=["es", "pt"]).language == "es"


def test_unusable_hints_are_ignored(detector: LanguageDetector) -> None:
    assert detector.detect("", hints=[None, "de", "sw"]) == LanguageGuess("sw", 0.0)


def test_arabic_script_is_arabic_at_once(detector: LanguageDetector) -> None:
    for text in ("الشرطة", "سرقة", SENTENCES["ar"]):
        assert detector.detect(text, hints=["en"]) == LanguageGuess("ar", 1.0)


def test_arabic_script_without_arabic_configured_is_no_evidence() -> None:
    detector = LanguageDetector(["en", "fr"], default="fr")
    assert detector.scores(SENTENCES["ar"]) == {}
    assert detector.detect(SENTENCES["ar"], hints=["en"]) == LanguageGuess("en", 0.0)


@pytest.mark.parametrize("text", ["", "   ", "12345", "+254 700 000 000", "?!", "😀😀"])
def test_no_letters_falls_back_with_zero_confidence(
    detector: LanguageDetector, text: str
) -> None:
    assert detector.scores(text) == {}
    assert detector.detect(text) == LanguageGuess("en", 0.0)
    assert detector.detect(text, hints=["fr"]) == LanguageGuess("fr", 0.0)
    assert not detector.detect(text).confident
    guess = choose_conversation_language(detector, text, current="sw", provider_hint="fr")
    assert guess == LanguageGuess("sw", 0.0)
    guess = choose_conversation_language(detector, text, current=None, provider_hint="pt")
    assert guess == LanguageGuess("pt", 0.0)


def test_normalisation_before_detection(detector: LanguageDetector) -> None:
    # Zero-width joiners and shouted letters must not hide the words.
    text = "Wanaume\u200b wawili waliingiaaaaa dukani"
    assert detector.detect(text).language == "sw"


def test_first_message_uses_provider_hint(detector: LanguageDetector) -> None:
    guess = choose_conversation_language(detector, "ok", current=None, provider_hint="es")
    assert guess.language == "es"
    assert not guess.confident  # the pipeline asks with the language menu
    guess = choose_conversation_language(detector, SENTENCES["fr"], current=None, provider_hint="es")
    assert guess.language == "fr"
    assert guess.confident


@pytest.mark.parametrize(
    "answer", ["yesterday", "Bamako", "ok", "police", "hospital central", "John Smith"]
)
def test_short_answers_do_not_switch(detector: LanguageDetector, answer: str) -> None:
    assert choose_conversation_language(detector, answer, current="fr").language == "fr"
    assert choose_conversation_language(detector, answer, current="sw").language == "sw"


@pytest.mark.parametrize("language", LAUNCH)
def test_long_confident_other_language_switches(detector: LanguageDetector, language: str) -> None:
    current = "pt" if language != "pt" else "en"
    guess = choose_conversation_language(detector, SENTENCES[language], current=current)
    assert guess.language == language
    assert guess.confidence >= CONFIDENT_AT


def test_same_language_keeps_and_reports_confidence(detector: LanguageDetector) -> None:
    guess = choose_conversation_language(detector, SENTENCES["es"], current="es")
    assert guess.language == "es"
    assert guess.confident


def test_unconfigured_current_language_is_detected_afresh(detector: LanguageDetector) -> None:
    guess = choose_conversation_language(detector, SENTENCES["sw"], current="de")
    assert guess.language == "sw"
