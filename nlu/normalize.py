"""Text normalisation before NLU: one spelling for the many ways residents type a word.

Owns `normalize_for_nlu`, applied to a reporter's text before it is classified, so that
"HELPPPP", "help" typed with a zero-width joiner, or Arabic with and without vowel marks reach
the model as the same string. It must never change meaning-bearing content beyond that: no
translation, no spelling correction, no removal of words or digits.

Rules, in order:
- all languages: Unicode NFKC (compatibility forms such as fullwidth Latin and Arabic
  presentation forms become ordinary letters), zero-width and bidi control characters removed,
  casefold, a letter repeated more than twice kept twice ("helppppp" -> "helpp": one doubled
  letter survives because real words have them: "coffee", "shh"), whitespace runs collapsed;
- Arabic (`language` "ar" or "ar-XX"): harakat, tanwin, shadda, sukun, Quranic marks and
  tatweel removed; alef with hamza above/below, madda or wasla -> bare alef; hamza on waw/yeh
  -> waw/yeh; alef maqsura and Persian yeh -> yeh; Persian keheh -> kaf; Arabic-Indic digits
  -> ASCII digits; and, only when asked (`fold_ta_marbuta=True`, since it also merges words
  that differ only there), ta marbuta -> heh, as many residents type it.
"""

from __future__ import annotations

import re
import unicodedata

# Zero-width and invisible formatting characters (they split words for the tokenizer):
# soft hyphen, ZWSP, ZWNJ, ZWJ, LRM/RLM, bidi embeddings and isolates, word joiner, BOM,
# Arabic letter mark.
_INVISIBLE = re.compile("[\u00ad\u061c\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]")
_REPEATED_LETTER = re.compile(r"([^\W\d_])\1{2,}")
_SPACES = re.compile(r"\s+")
# Harakat, tanwin, shadda, sukun, superscript alef, Quranic annotation marks, tatweel.
_ARABIC_MARKS = re.compile("[\u0610-\u061a\u064b-\u065f\u0670\u06d6-\u06ed\u0640]")
_ARABIC_LETTERS = str.maketrans(
    {
        "\u0623": "\u0627",  # أ -> ا
        "\u0625": "\u0627",  # إ -> ا
        "\u0622": "\u0627",  # آ -> ا
        "\u0671": "\u0627",  # ٱ -> ا
        "\u0624": "\u0648",  # ؤ -> و
        "\u0626": "\u064a",  # ئ -> ي
        "\u0649": "\u064a",  # ى -> ي
        "\u06cc": "\u064a",  # ی -> ي
        "\u06a9": "\u0643",  # ک -> ك
        **{chr(0x0660 + d): str(d) for d in range(10)},  # ٠-٩
        **{chr(0x06F0 + d): str(d) for d in range(10)},  # ۰-۹
    }
)
_TA_MARBUTA = str.maketrans({"\u0629": "\u0647"})  # ة -> ه


def normalize_for_nlu(text: str, language: str, *, fold_ta_marbuta: bool = False) -> str:
    """`text` in the one spelling the NLU model is trained on (see the module docstring)."""
    text = unicodedata.normalize("NFKC", text)
    text = _INVISIBLE.sub("", text).casefold()
    if language.split("-", 1)[0].casefold() == "ar":
        # Marks first: a shadda or tatweel between two letters would hide a repetition.
        text = _ARABIC_MARKS.sub("", text).translate(_ARABIC_LETTERS)
        if fold_ta_marbuta:
            text = text.translate(_TA_MARBUTA)
    text = _REPEATED_LETTER.sub(r"\1\1", text)
    return _SPACES.sub(" ", text).strip()


# Combining marks left after canonical decomposition: Latin accents ("está" -> "esta").
_COMBINING = re.compile(r"[\u0300-\u036f]")


def normalize_token(token: str) -> str:
    """One token as the intent model's features see it (nlu/components/tokenizer.py).

    `normalize_for_nlu` with the Arabic rules (they touch Arabic letters only, so they are safe
    for a token of any language; the model is one for all languages and is not told which),
    ta marbuta folded, and Latin accents removed: for counting n-grams, a word typed with or
    without its accents is the same word. Used for features only; stored texts keep their
    spelling.
    """
    return strip_latin_accents(normalize_for_nlu(token, "ar", fold_ta_marbuta=True))


def strip_latin_accents(text: str) -> str:
    """`text` without the accents of its Latin letters ("información" -> "informacion");
    letters without a plain base ("ß", "ø") and other scripts stay as they are."""
    return unicodedata.normalize("NFC", _COMBINING.sub("", unicodedata.normalize("NFD", text)))
