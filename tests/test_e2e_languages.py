"""Every launch language end to end: a full tip, every reply in the reporter's language.

Expected replies are read from the language's own response file, so a reply in the wrong
language (or the default language's fallback text) fails the test.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from tests.stack import Stack

pytestmark = pytest.mark.e2e
RESPONSES = Path(__file__).resolve().parents[1] / "nlu" / "project" / "responses"
RECEIPT = re.compile(r"[A-HJ-NP-Z2-9]{4}-[A-HJ-NP-Z2-9]{4}")

# (first message = the tip itself, where, when) in each launch language.
CONVERSATIONS = {
    "en": ("Three armed men stole the cattle of my neighbour last night",
           "Kibera, near the old market", "last night"),
    "fr": ("Des hommes armés ont volé les chèvres de mon voisin cette nuit",
           "Sévaré, près du marché", "hier soir"),
    "ar": ("رجال مسلحون سرقوا ماشية جاري الليلة الماضية", "الفاشر، قرب السوق القديم", "أمس في الليل"),
    "sw": ("Watu wenye bunduki wameiba ng'ombe wa jirani yangu usiku wa jana",
           "Kibera, karibu na soko la zamani", "jana usiku"),
    "es": ("Unos hombres armados robaron las vacas de mi vecino anoche",
           "San Miguel, cerca del mercado viejo", "anoche"),
    "pt": ("Uns homens armados roubaram o gado do meu vizinho ontem à noite",
           "Bairro Maxaquene, perto do mercado velho", "ontem à noite"),
}


def texts(language: str) -> dict[str, dict[str, object]]:
    loaded: dict[str, dict[str, object]] = yaml.safe_load(
        (RESPONSES / f"{language}.yml").read_text(encoding="utf-8"))
    return loaded


def numbered(response: dict[str, object]) -> str:
    buttons = response.get("buttons") or []
    lines = [str(response["text"])]
    lines += [f"{n}. {b['title']}" for n, b in enumerate(buttons, 1)]  # type: ignore[attr-defined]
    return "\n".join(lines)


@pytest.mark.parametrize("language", list(CONVERSATIONS))
def test_full_tip_in_every_language(stack: Stack, language: str) -> None:
    what, where, when = CONVERSATIONS[language]
    say = texts(language)
    number = f"+2547{list(CONVERSATIONS).index(language):02d}0000501"

    first = stack.sms(number, what)
    assert str(say["utter_privacy_notice"]["text"]) in first
    assert str(say["utter_ask_tip_where"]["text"]) in first  # the tip text was kept
    assert str(say["utter_ask_tip_when"]["text"]) in stack.sms(number, where)
    assert numbered(say["utter_ask_tip_danger"]) in stack.sms(number, when)
    summary = stack.sms(number, "2")
    expected_summary = numbered(say["utter_tip_summary"]).format(
        tip_what=what, tip_where=where, tip_when=when)
    assert expected_summary in summary
    done = stack.sms(number, "1")
    code = RECEIPT.search(done)
    assert code, done
    assert str(say["utter_tip_received"]["text"]).format(receipt_code=code.group(0)) in done

    tip = next(t for t in stack.officer_tips() if t["receipt_code"] == code.group(0))
    assert tip["language"] == language
    assert (tip["what"], tip["where_text"], tip["when_text"]) == (what, where, when)


def test_arabic_round_trips_intact_through_sms_rasa_and_storage(stack: Stack) -> None:
    number = "+249900000601"
    what = "شاهدنا رجالاً يُخزّنون أسلحة في المدرسة المهجورة"  # with diacritics, on purpose
    stack.sms(number, what)
    stack.sms(number, "حي الثورة، أم درمان")
    stack.sms(number, "قبل يومين")
    summary = stack.sms(number, "2")
    assert what in summary
    # An Arabic reply is UCS-2: every part fits Twilio's limit and nothing was mangled.
    for body in stack.twilio.bodies_to(number):
        assert len(body) <= 1600
        assert "\ufffd" not in body
    done = stack.sms(number, "1")
    code = RECEIPT.search(done)
    assert code
    tip = next(t for t in stack.officer_tips() if t["receipt_code"] == code.group(0))
    assert tip["what"] == what and tip["language"] == "ar"


def test_switching_language_mid_conversation(stack: Stack) -> None:
    number = "+254700000602"
    en, fr = texts("en"), texts("fr")
    first = stack.sms(number, "Some men are selling stolen motorbikes behind the church")
    assert str(en["utter_ask_tip_where"]["text"]) in first
    # The reporter continues in French, in whole sentences: the conversation follows.
    reply = stack.sms(number, "Derrière l'église catholique, à côté de la boutique de mon oncle")
    assert str(fr["utter_ask_tip_when"]["text"]) in reply
    # A short answer afterwards does not flip it back.
    assert numbered(fr["utter_ask_tip_danger"]) in stack.sms(number, "today")
