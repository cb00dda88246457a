"""Urgency: each signal, how they combine, how words match, the reasons, overrides, the checker.

Rule tests use a small lexicon written here, so they say what the matcher does whatever the
administrators later put in config/urgency; a few tests pin the shipped lexicon's basics.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.urgency import (
    DEFAULT_LEXICON_DIR,
    Assessment,
    LexiconError,
    UrgencyLexicon,
    assess,
    check_lexicon,
    normalize,
    override,
    words,
)
from storage.models import Urgency

EN = """\
critical:
  - shoot
  - kidnap
  - bomb
  - shots fired
high:
  - attack
  - recruit
  - gun
  - machete
normal:
  - stolen
  - drugs
low:
  - thanks
time_cues: [now, right now]
negations: [nobody, "no"]
"""
FR = """\
critical:
  - coups de feu
  - blessé
high:
  - menace de mort
normal:
  - vol
time_cues: [maintenant]
negations: ["personne n'"]
"""
PT = """\
critical:
  - ferido
high:
  - armad
negations: [não, ninguém]
"""
ES = """\
critical:
  - herido
high:
  - armad
negations: ["no", nadie]
"""
AR = """\
critical:
  - إطلاق نار
  - قنبلة
high:
  - السلاح
  - قتل
time_cues: [الآن]
"""
SW = """\
critical:
  - "*tekwa"
  - "*piga risasi"
high:
  - "*potea"
"""


def write_lexicon(directory: Path, **files: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for language, text in files.items():
        (directory / f"{language}.yml").write_text(text, encoding="utf-8")
    return directory


@pytest.fixture
def lexicon(tmp_path: Path) -> UrgencyLexicon:
    return UrgencyLexicon.load(
        write_lexicon(tmp_path / "urgency", en=EN, fr=FR, pt=PT, es=ES, ar=AR, sw=SW)
    )


def tag(lexicon: UrgencyLexicon, text: str, *, danger_now: bool | None = None,
        language: str = "en", intent: str | None = None) -> Assessment:
    return assess(text=text, danger_now=danger_now, language=language, intent=intent,
                  lexicon=lexicon)


# --- Signals ------------------------------------------------------------------------------


def test_danger_now_yes_is_critical_on_its_own(lexicon: UrgencyLexicon) -> None:
    result = tag(lexicon, "please come to the market", danger_now=True)
    assert result.urgency is Urgency.CRITICAL
    assert result.reasons == ("danger_now=yes",)


def test_danger_now_no_is_listed_but_does_not_lower_a_critical_word(
    lexicon: UrgencyLexicon,
) -> None:
    result = tag(lexicon, "found a bomb behind the school", danger_now=False)
    assert result.urgency is Urgency.CRITICAL
    assert result.reasons[0] == "danger_now=no"
    assert 'critical: matched "bomb" (en)' in result.reasons


def test_intent_danger_now_is_critical(lexicon: UrgencyLexicon) -> None:
    result = tag(lexicon, "come quick", intent="danger_now")
    assert result.urgency is Urgency.CRITICAL
    assert "intent=danger_now" in result.reasons


def test_other_intents_change_nothing(lexicon: UrgencyLexicon) -> None:
    result = tag(lexicon, "my bike was stolen", intent="report_tip")
    assert result.urgency is Urgency.NORMAL
    assert not any("intent" in reason for reason in result.reasons)


@pytest.mark.parametrize(("text", "level"), [
    ("they shoot at people", Urgency.CRITICAL),
    ("boys plan to attack the church on sunday", Urgency.HIGH),
    ("my phone was stolen", Urgency.NORMAL),
    ("thanks for your work", Urgency.LOW),
])
def test_lexicon_level(lexicon: UrgencyLexicon, text: str, level: Urgency) -> None:
    assert tag(lexicon, text).urgency is level


def test_the_highest_level_wins(lexicon: UrgencyLexicon) -> None:
    result = tag(lexicon, "thanks, they stole drugs and a gun")
    assert result.urgency is Urgency.HIGH
    # Evidence for every level is still shown, most urgent first.
    assert result.reasons == (
        'high: matched "gun" (en)',
        'normal: matched "drugs" (en)',
        'low: matched "thanks" (en)',
    )


def test_no_signal_is_normal_and_says_so(lexicon: UrgencyLexicon) -> None:
    result = tag(lexicon, "the man in the blue house")
    assert result == Assessment(Urgency.NORMAL, ("no urgency words: normal by default",))


# --- Combination rules --------------------------------------------------------------------


def test_high_word_plus_time_cue_escalates_to_critical(lexicon: UrgencyLexicon) -> None:
    result = tag(lexicon, "men with a machete at the gate right now")
    assert result.urgency is Urgency.CRITICAL
    assert 'high: matched "machete" (en)' in result.reasons
    assert 'time cue "right now" (en)' in result.reasons
    assert "high + time cue -> critical" in result.reasons


def test_time_cue_alone_or_with_normal_word_does_not_escalate(lexicon: UrgencyLexicon) -> None:
    assert tag(lexicon, "they are selling drugs now").urgency is Urgency.NORMAL
    assert tag(lexicon, "call me now").urgency is Urgency.NORMAL


def test_danger_now_no_stops_time_cue_escalation(lexicon: UrgencyLexicon) -> None:
    result = tag(lexicon, "they recruit children now", danger_now=False)
    assert result.urgency is Urgency.HIGH
    assert "time cue does not escalate: danger_now=no" in result.reasons


def test_danger_now_yes_beats_a_low_word(lexicon: UrgencyLexicon) -> None:
    assert tag(lexicon, "thanks", danger_now=True).urgency is Urgency.CRITICAL


# --- Matching -----------------------------------------------------------------------------


def test_case_and_accents_do_not_matter(lexicon: UrgencyLexicon) -> None:
    assert tag(lexicon, "COUPS DE FEU au marché", language="fr").urgency is Urgency.CRITICAL
    # "blessé" in the lexicon, written without the accent and with one more letter.
    result = tag(lexicon, "deux blesses devant la gare", language="fr")
    assert result.urgency is Urgency.CRITICAL
    assert 'critical: matched "blessé" (fr) as "blesses"' in result.reasons


def test_inflections_match_by_stem_on_word_boundaries(lexicon: UrgencyLexicon) -> None:
    assert tag(lexicon, "shooting near the bank").urgency is Urgency.CRITICAL
    assert tag(lexicon, "kidnappers took him").urgency is Urgency.CRITICAL
    # The stem must start the word: "bombastic" would, "abomb" does not.
    assert tag(lexicon, "an abomb").urgency is Urgency.NORMAL


def test_short_words_match_only_whole(lexicon: UrgencyLexicon) -> None:
    assert tag(lexicon, "he has a gun").urgency is Urgency.HIGH
    assert tag(lexicon, "a gunny sack of rice").urgency is Urgency.NORMAL


def test_one_typo_in_a_long_word_is_forgiven(lexicon: UrgencyLexicon) -> None:
    result = tag(lexicon, "they are recuriting kids")  # swapped letters
    assert result.urgency is Urgency.HIGH
    assert 'high: matched "recruit" (en) as "recuriting"' in result.reasons
    assert tag(lexicon, "an atack on the village").urgency is Urgency.HIGH


def test_typos_are_not_forgiven_in_short_words_or_in_the_last_letter(
    lexicon: UrgencyLexicon,
) -> None:
    assert tag(lexicon, "a bimb").urgency is Urgency.NORMAL  # 4 letters: exact only
    # "attached" is "attack" with its last letter changed: a real word, not a typo.
    assert tag(lexicon, "i attached a photo").urgency is Urgency.NORMAL


def test_phrases_match_across_spaces_punctuation_and_one_extra_word(
    lexicon: UrgencyLexicon,
) -> None:
    assert tag(lexicon, "coups   de\tfeu!", language="fr").urgency is Urgency.CRITICAL
    assert tag(lexicon, "shots were fired").urgency is Urgency.CRITICAL
    assert tag(lexicon, "shots, then later fired").urgency is Urgency.NORMAL


def test_letters_stretched_for_emphasis_still_match(lexicon: UrgencyLexicon) -> None:
    assert tag(lexicon, "BOOOMB").urgency is Urgency.CRITICAL


def test_star_lets_letters_before_a_word(lexicon: UrgencyLexicon) -> None:
    result = tag(lexicon, "msichana ametekwa", language="sw")
    assert result.urgency is Urgency.CRITICAL
    assert 'critical: matched "*tekwa" (sw) as "ametekwa"' in result.reasons
    assert tag(lexicon, "wanapiga risasi", language="sw").urgency is Urgency.CRITICAL
    assert tag(lexicon, "wanapiga picha", language="sw").urgency is Urgency.NORMAL


def test_every_language_is_matched_and_named(lexicon: UrgencyLexicon) -> None:
    # Residents mix languages; the conversation's language does not limit the words.
    result = tag(lexicon, "coups de feu at the market now", language="en")
    assert result.urgency is Urgency.CRITICAL
    assert 'critical: matched "coups de feu" (fr)' in result.reasons
    assert 'time cue "now" (en)' in result.reasons


def test_same_word_in_two_languages_is_one_reason(lexicon: UrgencyLexicon) -> None:
    result = tag(lexicon, "homens armados", language="pt")
    assert result.reasons == ('high: matched "armad" (es, pt) as "armados"',)


# --- Negation -----------------------------------------------------------------------------


def test_negated_word_is_ignored_with_a_reason(lexicon: UrgencyLexicon) -> None:
    result = tag(lexicon, "ma chèvre a été volée, personne n'est blessé", language="fr",
                 danger_now=False)
    assert result.urgency is Urgency.NORMAL
    assert """ignored "blessé" (fr): negated by "personne n'" (fr)""" in result.reasons


def test_negation_reaches_only_the_next_words(lexicon: UrgencyLexicon) -> None:
    assert tag(lexicon, "nobody knows, a bomb is there").urgency is Urgency.CRITICAL


def test_conversation_language_negation_cancels_other_readings(
    lexicon: UrgencyLexicon,
) -> None:
    # Spanish "nadie herido": the Portuguese "ferido" entry must not survive on its own.
    result = tag(lexicon, "nadie herido", language="es")
    assert result.urgency is Urgency.NORMAL


def test_other_language_negation_only_cancels_its_own_words(lexicon: UrgencyLexicon) -> None:
    # In Portuguese "no" means "in the": "no grupo armado" is about an armed group.
    result = tag(lexicon, "pagam jovens para entrar no grupo armado", language="pt")
    assert result.urgency is Urgency.HIGH
    assert any(r.startswith('high: matched "armad"') and "pt" in r for r in result.reasons)


# --- Arabic -------------------------------------------------------------------------------


def test_arabic_normalization() -> None:
    assert normalize("إِطْلَاق") == "اطلاق"  # tashkeel stripped, hamza alef unified
    assert normalize("قـــنـبلة") == normalize("قنبله")  # tatweel; ta marbuta as ha
    assert normalize("مستشفى") == normalize("مستشفي")  # alef maqsura as ya
    for alef in ("أ", "إ", "آ", "ٱ"):
        assert normalize(f"{alef}من") == "امن"


def test_arabic_spelling_variants_match(lexicon: UrgencyLexicon) -> None:
    result = tag(lexicon, "اطلاق نار قرب السوق الان", language="ar")
    assert result.urgency is Urgency.CRITICAL
    assert 'critical: matched "إطلاق نار" (ar)' in result.reasons
    assert 'time cue "الآن" (ar)' in result.reasons
    assert tag(lexicon, "قنبلـــة", language="ar").urgency is Urgency.CRITICAL


def test_arabic_proclitics_are_ignored(lexicon: UrgencyLexicon) -> None:
    # "and the weapons" / "with the weapon"; the lexicon says "السلاح".
    assert tag(lexicon, "والسلاح مخبأ هناك", language="ar").urgency is Urgency.HIGH
    assert tag(lexicon, "هددوه بالسلاح", language="ar").urgency is Urgency.HIGH
    # Imperfect verb prefix: يقتلون (they kill) carries the root قتل.
    assert tag(lexicon, "يقتلون الناس", language="ar").urgency is Urgency.HIGH


def test_words_splits_on_punctuation() -> None:
    assert words("Ils tirent!!!…sur-le marché") == ["ils", "tirent", "sur", "le", "marche"]


# --- Override -----------------------------------------------------------------------------


def test_override_changes_level_and_keeps_the_evidence(lexicon: UrgencyLexicon) -> None:
    original = tag(lexicon, "they will attack on sunday")
    changed = override(original, Urgency.CRITICAL, "confirmed by patrol", "officer1")
    assert changed.urgency is Urgency.CRITICAL
    assert changed.reasons == (*original.reasons,
                               'override=critical by officer1: "confirmed by patrol"')
    assert original.urgency is Urgency.HIGH  # the original is not modified


def test_override_accepts_level_names_and_needs_a_reason(lexicon: UrgencyLexicon) -> None:
    original = tag(lexicon, "bomb")
    assert override(original, "low", "a film shoot", "officer2").urgency is Urgency.LOW
    with pytest.raises(ValueError, match="reason"):
        override(original, "low", "   ", "officer2")
    with pytest.raises(ValueError, match="officer"):
        override(original, "low", "hoax", "")
    with pytest.raises(ValueError):
        override(original, "urgent", "hoax", "officer2")


# --- Lexicon files ------------------------------------------------------------------------


def test_check_lexicon_reports_each_problem_at_its_line(tmp_path: Path) -> None:
    path = tmp_path / "fr.yml"
    path.write_text(
        "# comment\n"              # 1
        "critical:\n"              # 2
        "  - coups de feu\n"       # 3
        "  - 12\n"                 # 4
        "  - \"\"\n"               # 5
        "urgent:\n"                # 6
        "  - vite\n"               # 7
        "high:\n"                  # 8
        "  - Coups  de FEU\n"      # 9
        "  - [a, b]\n"             # 10
        "normal:\n"                # 11
        "  - blessé\n"             # 12
        "  - blesse\n"             # 13
        "  -\n"                    # 14
        "negations: [\"no\", yes]\n"  # 15
        "low: merci\n"             # 16
        "time_cues:\n"             # 17
        "  - mai*ntenant\n",       # 18
        encoding="utf-8",
    )
    name = str(path)
    assert check_lexicon(path) == [
        f"{name}:4: entry in critical is not text: 12 (put it in quotes)",
        f"{name}:5: empty phrase in critical",
        f'{name}:6: unknown key "urgent" (allowed: critical, high, normal, low, time_cues, '
        "negations)",
        f'{name}:9: duplicate "Coups  de FEU" (already in critical at line 3)',
        f"{name}:10: entry in high is not text: a list or mapping (put it in quotes)",
        f'{name}:13: duplicate "blesse" (already in normal at line 12)',
        f"{name}:14: empty phrase in normal",
        f"{name}:15: entry in negations is not text: yes (put it in quotes)",
        f'{name}:16: "low" must be a list, one word or phrase per line starting with "- "',
        f'{name}:18: "mai*ntenant": * may only start or end a word',
    ]


def test_check_lexicon_reports_yaml_errors_and_duplicate_keys(tmp_path: Path) -> None:
    broken = tmp_path / "sw.yml"
    broken.write_text("critical:\n  - bomu\n  - *tekwa\n", encoding="utf-8")
    [error] = check_lexicon(broken)
    assert error.startswith(f"{broken}:3: not valid YAML")
    assert 'needs quotes: "*word"' in error

    twice = tmp_path / "en.yml"
    twice.write_text("high:\n  - gun\nlow: []\nhigh:\n  - rifle\n", encoding="utf-8")
    assert check_lexicon(twice) == [f'{twice}:4: key "high" appears twice (first at line 1)']
    assert check_lexicon(tmp_path / "xx.yml") == [f"{tmp_path / 'xx.yml'}:1: file not found"]


def test_shipped_lexicons_are_clean_and_cover_the_launch_languages() -> None:
    for language in ("en", "fr", "ar", "sw", "es", "pt"):
        path = DEFAULT_LEXICON_DIR / f"{language}.yml"
        assert check_lexicon(path) == [], language


def test_strict_load_refuses_a_broken_file(tmp_path: Path) -> None:
    directory = write_lexicon(tmp_path, en=EN, fr="critical:\n  - 3\n")
    with pytest.raises(LexiconError) as caught:
        UrgencyLexicon.load(directory, ["en", "fr"])
    assert caught.value.errors == (f"{directory / 'fr.yml'}:2: entry in critical is not text: "
                                   "3 (put it in quotes)",)
    with pytest.raises(LexiconError, match="not found"):
        UrgencyLexicon.load(directory, ["sw"])


def test_lenient_load_keeps_tagging_with_what_is_left(tmp_path: Path) -> None:
    directory = write_lexicon(tmp_path, en=EN, fr="critical:\n  - 3\n")
    lexicon = UrgencyLexicon.load(directory, strict=False)
    assert lexicon.languages == ("en",)
    assert len(lexicon.problems) == 1
    assert tag(lexicon, "a bomb").urgency is Urgency.CRITICAL


def test_default_lexicon_is_used_when_none_is_given() -> None:
    # The signature the gateway calls: no lexicon argument.
    result = assess(text="ils tirent sur le marché maintenant", danger_now=None, language="fr")
    assert result.urgency is Urgency.CRITICAL
    assert 'time cue "maintenant" (fr)' in result.reasons
