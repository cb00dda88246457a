"""SMS segment counting (GSM-7 vs UCS-2), splitting, and the keyword commands of SMS."""

from __future__ import annotations

from pathlib import Path

import pytest

from channels.base import Command
from channels.sms_segments import sms_segments, split_text, utf16_length
from channels.twilio_sms import TWILIO_STANDARD_KEYWORDS, match_keyword, split_for_sms
from config.messages import KEYWORD_COMMANDS, GatewayMessages, normalize_keyword

ALL_LANGUAGES = ["en", "fr", "es", "pt", "ar", "sw"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a" * 160, ("GSM-7", 1)),
        ("a" * 161, ("GSM-7", 2)),
        ("a" * 306, ("GSM-7", 2)),  # 2 x 153
        ("a" * 307, ("GSM-7", 3)),
        ("€" * 80, ("GSM-7", 1)),  # extension characters count two septets: 160
        ("€" * 81, ("GSM-7", 2)),
        ("a" * 159 + "€", ("GSM-7", 2)),
        ("é" * 160, ("GSM-7", 1)),  # é is in the basic table
        ("ش" * 70, ("UCS-2", 1)),
        ("ش" * 71, ("UCS-2", 2)),  # 67 per part
        ("ش" * 134, ("UCS-2", 2)),
        ("ش" * 135, ("UCS-2", 3)),
        ("a" * 69 + "ê", ("UCS-2", 1)),  # ê is not GSM-7: the whole message becomes UCS-2
        ("a" * 70 + "ê", ("UCS-2", 2)),
        ("😀" * 35, ("UCS-2", 1)),  # a surrogate pair is two UTF-16 units
        ("😀" * 36, ("UCS-2", 2)),
        ("", ("GSM-7", 1)),
    ],
)
def test_segments(text: str, expected: tuple[str, int]) -> None:
    assert sms_segments(text) == expected


def test_an_escaped_character_is_never_split_across_parts() -> None:
    # 152 plain septets then "€" (2): it does not fit in part one's last septet.
    encoding, segments = sms_segments("a" * 152 + "€" + "a" * 152)
    assert (encoding, segments) == ("GSM-7", 3)


def test_split_keeps_sentences_and_the_limit() -> None:
    text = " ".join(f"Sentence number {n} is here." for n in range(200))
    parts = split_for_sms(text)
    assert len(parts) > 1
    assert all(len(part) <= 1600 for part in parts)
    assert all(part.endswith(".") for part in parts)
    assert " ".join(parts) == text


def test_split_cuts_a_sentence_without_spaces() -> None:
    parts = split_text("x" * 3500, 1600)
    assert [len(p) for p in parts] == [1600, 1600, 300]


def test_split_by_utf16_length_counts_emoji_twice() -> None:
    parts = split_text("😀" * 5000, 4096, measure=utf16_length)
    assert all(utf16_length(part) <= 4096 for part in parts)
    assert "".join(parts) == "😀" * 5000


def test_short_text_is_not_split() -> None:
    assert split_for_sms("hello") == ["hello"]


# --- keywords -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def keywords() -> dict[str, str]:
    return {**GatewayMessages(ALL_LANGUAGES, "en").keywords(), **TWILIO_STANDARD_KEYWORDS}


@pytest.mark.parametrize(
    ("text", "command"),
    [
        ("STOP", Command.DELETE),
        (" stop ", Command.DELETE),
        ("Stop!", Command.DELETE),
        ("UNSUBSCRIBE", Command.DELETE),
        ("arrêt", Command.DELETE),
        ("ARRET.", Command.DELETE),
        ("توقف", Command.DELETE),
        ("Sitisha", Command.DELETE),
        ("START", Command.RESUME),
        ("Démarrer", Command.RESUME),
        ("help", Command.HELP),
        ("INFO", Command.HELP),
        ("aide ?", Command.HELP),
        ("مساعدة", Command.HELP),
        ("MSAADA", Command.HELP),
        ("langue", Command.LANGUAGE),
        ("لغة", Command.LANGUAGE),
        ("LUGHA", Command.LANGUAGE),
    ],
)
def test_keywords_in_every_language(keywords: dict[str, str], text: str, command: Command) -> None:
    assert match_keyword(text, keywords) is command


@pytest.mark.parametrize(
    "text",
    ["stop them, they have guns", "please stop", "YES", "1", "stopp", "", "help me at the market"],
)
def test_a_sentence_containing_a_keyword_is_not_a_command(
    keywords: dict[str, str], text: str
) -> None:
    assert match_keyword(text, keywords) is None


def test_every_language_file_has_keywords_for_delete_and_help() -> None:
    for language in ALL_LANGUAGES:
        commands = set(GatewayMessages([language], language).keywords().values())
        assert {"delete", "help", "language"} <= commands, language


def test_keyword_commands_are_channel_commands() -> None:
    assert {c.value for c in Command} == KEYWORD_COMMANDS


def test_normalize_keyword() -> None:
    assert normalize_keyword("  ARRÊT !  ") == "arret"
    assert normalize_keyword("إيقاف") == normalize_keyword("ايقاف")
    assert normalize_keyword("Stop  All") == "stop all"


def test_a_keyword_meaning_two_commands_is_refused(tmp_path: Path) -> None:
    directory = tmp_path
    (directory / "xx.yml").write_text('keywords:\n  delete: ["FIN"]\n', encoding="utf-8")
    (directory / "yy.yml").write_text('keywords:\n  help: ["fin"]\n', encoding="utf-8")
    with pytest.raises(ValueError, match="means both"):
        GatewayMessages(["xx", "yy"], "xx", directory).keywords()


def test_an_unknown_command_is_refused(tmp_path: Path) -> None:
    directory = tmp_path
    (directory / "xx.yml").write_text('keywords:\n  explode: ["BOOM"]\n', encoding="utf-8")
    with pytest.raises(ValueError, match="not a command"):
        GatewayMessages(["xx"], "xx", directory)
