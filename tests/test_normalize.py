"""Text normalisation for NLU: the same word typed many ways reaches the model one way."""

from __future__ import annotations

import pytest

from nlu.normalize import normalize_for_nlu, normalize_token


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("helppppp", "helpp"),
        ("HELPPPP!!!", "helpp!!!"),
        ("coffee", "coffee"),
        ("Muy maaaaalo", "muy maalo"),
        ("1000000", "1000000"),  # digits are not letters: amounts and numbers stay
        ("Straße", "strasse"),
        ("ＰＯＬＩＣＥ", "police"),  # fullwidth
        ("ﬁre", "fire"),  # ligature
        ("po\u200blice", "police"),
        ("po\u200d\u200clice\ufeff", "police"),
        ("\u202bnow\u202c", "now"),
        ("  two   spaces\n\tand tabs ", "two spaces and tabs"),
        ("Ajuda, estão a roubar", "ajuda, estão a roubar"),  # accents are kept
    ],
)
def test_all_languages(text: str, expected: str) -> None:
    assert normalize_for_nlu(text, "en") == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("الشُّرْطَةُ", "الشرطة"),  # harakat and shadda
        ("سرقــــة", "سرقة"),  # tatweel
        ("أحمد إلى آخر ٱلله", "احمد الي اخر الله"),
        ("مسؤول سائق", "مسوول سايق"),
        ("مستشفى", "مستشفي"),
        ("ﻻ", "لا"),  # presentation form
        ("کی", "كي"),  # Persian keyboard
        ("الساعة ١٠", "الساعة 10"),
        ("ساعدوووووني", "ساعدووني"),
        ("ساعـــدووو", "ساعدوو"),  # tatweel does not hide a repetition
        ("قرية", "قرية"),  # ta marbuta kept unless asked
    ],
)
def test_arabic(text: str, expected: str) -> None:
    assert normalize_for_nlu(text, "ar") == expected


def test_ta_marbuta_folds_on_request() -> None:
    assert normalize_for_nlu("قرية صغيرة", "ar", fold_ta_marbuta=True) == "قريه صغيره"
    assert normalize_for_nlu("قرية", "ar-EG", fold_ta_marbuta=True) == "قريه"


def test_arabic_rules_only_for_arabic() -> None:
    # Farsi/Urdu spell with these letters on purpose; other languages keep what was typed.
    assert normalize_for_nlu("أحمد", "en") == "أحمد"
    assert normalize_for_nlu("أحمد", "ar") == "احمد"


def test_idempotent() -> None:
    for text, language in [("HELPPPP now", "en"), ("الشُّرْطَةُ ١٠ أين", "ar")]:
        once = normalize_for_nlu(text, language)
        assert normalize_for_nlu(once, language) == once


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        ("HELPPPP", "helpp"),
        ("Está", "esta"),
        ("não", "nao"),
        ("sécurité", "securite"),
        ("الشُّرْطَة", "الشرطه"),  # marks gone, ta marbuta folded
        ("أين", "اين"),
        ("١٢٣", "123"),
        ("K7QM-3XPA", "k7qm-3xpa"),
    ],
)
def test_tokens_for_the_intent_model_fold_case_marks_and_accents(token: str, expected: str) -> None:
    assert normalize_token(token) == expected
