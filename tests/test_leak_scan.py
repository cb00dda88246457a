"""Leak scan: after 200 pseudonymous conversations, no reporter identifier is anywhere we keep.

`test_no_identifier_leaks_after_200_reporters` runs a scripted session through the real stack
(real Rasa with the trained model, the action server, the gateway): 200 synthetic reporters
across SMS, WhatsApp and Telegram and the six launch languages, each with realistic
identifiers (E.164 numbers from eight countries, WhatsApp senders with a ProfileName, Telegram
chat ids with usernames and first/last names, Twilio's FromCity/FromState). Each reporter holds
a short conversation, 30 of them to the receipt and a dozen to the delete command. Then it
proves that none of those identifiers, in any common spelling, is in:

* every column of every row of every table of our database (found by inspection, so a new
  table is scanned without editing this file); the vault's ciphertext is scanned as bytes;
* every table of Rasa's tracker store;
* the gateway's log records (caplog), and the Rasa and action-server log files;
* every file in the stack's data directory, raw (deleted rows can survive in SQLite pages);
* the officers' CSV and JSON exports of all tips, and the JSON API;
* every console page: the queue pages, each tip (masked and unmasked), the audit pages as a
  supervisor, every other GET page of the console, and the live alert stream.

The other tests prove the scanner can fail: it finds identifiers planted in a throwaway table
(as text, as JSON escapes, as bytes in a vault column), every written form of a number, and it
finds nothing in the texts the product itself writes (so a clean result is not luck).
"""

from __future__ import annotations

import contextlib
import html
import itertools
import json
import logging
import random
import re
import sqlite3
import time
import unicodedata
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
import pytest
from fastapi.routing import iter_route_contexts
from sqlalchemy import MetaData, Table, create_engine, inspect, select
from sqlalchemy import text as sql_text
from twilio.request_validator import RequestValidator

from bot.console import totp
from storage.models import TipStatus
from tests.conftest import PUBLIC_BASE, TWILIO_TOKEN, make_twilio_form, twilio_signature
from tests.console.client import ConsoleClient, ensure_account
from tests.fakes import TELEGRAM_TOKEN, FakeTelegramApi, make_telegram_update, make_whatsapp_form
from tests.stack import Stack, run_stack

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[1]
TELEGRAM_SECRET = "telegram-webhook-secret-for-the-leak-scan"
RECEIPT = re.compile(r"\b[A-HJ-NP-Z2-9]{4}-[A-HJ-NP-Z2-9]{4}\b")
LANGUAGES = ("en", "fr", "ar", "sw", "es", "pt")
CHANNELS = ("sms", "whatsapp", "telegram")
REPORTERS = 200
FULL_TIPS = 30  # reporters 0..29 go to the receipt: every channel x language at least once
DELETIONS = 12  # reporters 30..41 end with the delete command
CONCURRENT_REPORTERS = 40
REPLY_TIMEOUT = 120.0


# --- Identifiers ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Country:
    code: str  # calling code
    region: str
    digits: int  # national significant number length
    prefixes: tuple[str, ...]  # how mobile numbers there begin
    places: tuple[tuple[str, str], ...]  # Twilio FromCity, FromState


COUNTRIES = {
    "KE": Country("254", "KE", 9, ("7", "11"), (("KAKAMEGA", "KAKAMEGA COUNTY"), ("ELDORET", "RIFT VALLEY"))),
    "ML": Country("223", "ML", 8, ("7", "6"), (("SIKASSO", "SIKASSO REGION"), ("KOUTIALA", "SIKASSO"))),
    "SD": Country("249", "SD", 9, ("91", "12"), (("OMDURMAN", "KHARTOUM STATE"),
                                                   ("KASSALA", "KASSALA STATE"))),
    "TZ": Country("255", "TZ", 9, ("7", "6"), (("ARUSHA", "ARUSHA REGION"), ("MWANZA", "MWANZA REGION"))),
    "CD": Country("243", "CD", 9, ("81", "97"), (("LUBUMBASHI", "HAUT-KATANGA"), ("KISANGANI", "TSHOPO"))),
    "MZ": Country("258", "MZ", 9, ("84", "86"), (("CHIMOIO", "MANICA"), ("QUELIMANE", "ZAMBEZIA"))),
    "ES": Country("34", "ES", 9, ("6", "7"), (("ZARAGOZA", "ARAGON"), ("VALLADOLID", "CASTILLA Y LEON"))),
    "BR": Country("55", "BR", 11, ("119", "819"), (("CAMPINAS", "SAO PAULO"), ("OLINDA", "PERNAMBUCO"))),
}
# Where the numbers of each language's reporters come from.
COUNTRIES_OF = {"en": ("KE", "TZ"), "fr": ("ML", "CD"), "ar": ("SD",), "sw": ("TZ", "KE"),
                "es": ("ES",), "pt": ("MZ", "BR")}

# First and last names as people in each language's region write them: accents, Arabic script.
NAMES = {
    "en": (("Wanjiru", "Akinyi", "Kiprotich", "Otieno", "Nyambura", "Chepkoech"),
           ("Odhiambo", "Kamau", "Mwangi", "Chebet", "Omondi", "Kiplagat")),
    "fr": (("Aïssatou", "Fatoumata", "Amélie", "Hélène", "Modibo", "Séverin"),
           ("Traoré", "Keïta", "Coulibaly", "Diakité", "Kabongo", "Mbuyi")),
    "ar": (("محمد", "فاطمة", "خديجة", "يوسف", "عبد الرحمن", "مريم"),
           ("عثمان", "إبراهيم", "الحسن", "الفاضل", "بابكر", "عبد الله")),
    "sw": (("Mwanaisha", "Zuhura", "Shabani", "Athumani", "Mwajuma", "Salome"),
           ("Mwakilema", "Mrema", "Lyimo", "Massawe", "Mushi", "Kimaro")),
    "es": (("Jesús", "Iñaki", "Begoña", "Nuria", "Íñigo", "Almudena"),
           ("Muñoz", "Ibáñez", "Peláez", "Goikoetxea", "Urquiza", "Zubizarreta")),
    "pt": (("João", "Conceição", "Inês", "Gonçalo", "Lourenço", "Lurdes"),
           ("Magalhães", "Gonçalves", "Nhantumbo", "Macuácua", "Cossa", "Sitoe")),
}
USERNAME_STEMS = ("mama_mboga", "kijana_mwema", "la_voisine", "abu_omar", "el_vecino",
                  "o_mineiro", "simba_dume", "petit_prince_ml")

# (what happened, where, when) per language; distinct tips so tips and pages differ.
TIPS = {
    "en": (("Three armed men stole the cattle of my neighbour last night", "Kibera, near the old market",
            "last night"),
           ("A gang is selling stolen motorbikes behind the church every evening",
            "Behind the church in Kawangware", "every evening this week"),
           ("Somebody is threatening the shop owners for protection money", "The main road shops",
            "since Monday")),
    "fr": (("Des hommes armés ont volé les chèvres de mon voisin cette nuit", "Sévaré, près du marché",
            "hier soir"),
           ("Des jeunes vendent de la drogue devant l'école primaire tous les jours",
            "Devant l'école primaire du quartier", "tous les matins"),
           ("Un homme menace les commerçants et prend leur argent", "Au grand marché", "depuis lundi")),
    "ar": (("رجال مسلحون سرقوا ماشية جاري الليلة الماضية", "قرب السوق القديم", "أمس في الليل"),
           ("شاهدنا رجالاً يخزنون أسلحة في المدرسة المهجورة", "حي الثورة", "قبل يومين"),
           ("شخص يهدد أصحاب المحلات ويأخذ أموالهم", "الشارع الرئيسي", "منذ يوم الاثنين")),
    "sw": (("Watu wenye bunduki wameiba ng'ombe wa jirani yangu usiku wa jana",
            "Kibera, karibu na soko la zamani", "jana usiku"),
           ("Vijana wanauza dawa za kulevya karibu na shule ya msingi kila siku",
            "Karibu na shule ya msingi", "kila asubuhi"),
           ("Mtu anawatishia wenye maduka na kuchukua pesa zao", "Barabara kuu", "tangu Jumatatu")),
    "es": (("Unos hombres armados robaron las vacas de mi vecino anoche",
            "San Miguel, cerca del mercado viejo", "anoche"),
           ("Unos jóvenes venden droga delante de la escuela todos los días",
            "Delante de la escuela del barrio", "todas las mañanas"),
           ("Un hombre amenaza a los comerciantes y se lleva su dinero", "En la calle mayor",
            "desde el lunes")),
    "pt": (("Uns homens armados roubaram o gado do meu vizinho ontem à noite",
            "Bairro Maxaquene, perto do mercado velho", "ontem à noite"),
           ("Uns jovens vendem droga em frente da escola primária todos os dias",
            "Em frente da escola primária", "todas as manhãs"),
           ("Um homem ameaça os comerciantes e leva o dinheiro deles", "Na avenida principal",
            "desde segunda-feira")),
}
DELETE_WORDS = {"en": "STOP", "fr": "SUPPRIMER", "ar": "احذف", "sw": "FUTA", "es": "BORRAR",
                "pt": "APAGAR"}


@dataclass(frozen=True)
class PhoneNumber:
    country: Country
    national: str  # the national significant number, without trunk prefix

    @property
    def e164(self) -> str:
        return f"+{self.country.code}{self.national}"

    def digit_forms(self) -> set[str]:
        """The digits of every way of writing it: +CC..., CC..., 00CC..., 0..., national."""
        cc, nsn = self.country.code, self.national
        return {cc + nsn, "00" + cc + nsn, "0" + nsn, nsn}

    def written_forms(self) -> list[str]:
        """How people, providers and libraries write it (the self-check tries each)."""
        cc, nsn = self.country.code, self.national
        threes = " ".join(nsn[i:i + 3] for i in range(0, len(nsn), 3))
        twos = " ".join(nsn[i:i + 2] for i in range(0, len(nsn), 2))
        return [
            self.e164, cc + nsn, "00" + cc + nsn, "0" + nsn, nsn,
            f"+{cc} {threes}", f"{cc} {threes}", f"0{threes}", threes, f"+{cc} {twos}", twos,
            f"+{cc}-{nsn[:3]}-{nsn[3:6]}-{nsn[6:]}", f"({nsn[:2]}) {nsn[2:6]}-{nsn[6:]}",
            f"whatsapp:{self.e164}", f"tel:{self.e164}", f"%2B{cc}{nsn}", f"+{cc}\u00a0{threes}",
        ]


@dataclass(frozen=True)
class Identifier:
    kind: str  # phone number | chat id | username | first name | last name | name | ...
    value: str


@dataclass
class Reporter:
    index: int
    channel: str
    language: str
    first_name: str
    last_name: str
    script: list[str]
    number: PhoneNumber | None = None
    from_city: str = ""
    from_state: str = ""
    chat_id: int | None = None
    username: str = ""
    profile_name: str = ""
    replies: list[str] = field(default_factory=list)

    @property
    def completes(self) -> bool:
        return self.index < FULL_TIPS

    @property
    def label(self) -> str:
        return f"{self.channel} reporter #{self.index} ({self.language})"

    def identifiers(self) -> list[Identifier]:
        found = [Identifier("first name", self.first_name), Identifier("last name", self.last_name),
                 Identifier("name", f"{self.first_name} {self.last_name}")]
        if self.number is not None:
            found.append(Identifier("phone number", self.number.e164))
        if self.from_city:
            found += [Identifier("FromCity", self.from_city), Identifier("FromState", self.from_state)]
        if self.chat_id is not None:
            found += [Identifier("chat id", str(self.chat_id)), Identifier("username", self.username)]
        if self.profile_name:
            found.append(Identifier("ProfileName", self.profile_name))
        return found


def make_reporters(count: int = REPORTERS, *, seed: int = 20_24_06) -> list[Reporter]:
    """Deterministic synthetic reporters: channel and language cycle so that reporters 0..17
    cover every channel x language pair; numbers, names and places are drawn per region."""
    rng = random.Random(seed)
    used_numbers: set[str] = set()
    reporters = []
    for index in range(count):
        channel = CHANNELS[index % len(CHANNELS)]
        language = LANGUAGES[(index // len(CHANNELS)) % len(LANGUAGES)]
        firsts, lasts = NAMES[language]
        what, where, when = TIPS[language][index % len(TIPS[language])]
        if index < FULL_TIPS:
            script = [what, where, when, "2", "1"]  # danger now: no; send it: yes
        elif index < FULL_TIPS + DELETIONS:
            delete = "/delete" if channel == "telegram" else DELETE_WORDS[language]
            script = [what, where, delete]
        else:
            script = [what, where] if index % 2 else [what, where, when]
        reporter = Reporter(index, channel, language, rng.choice(firsts), rng.choice(lasts), script)
        if channel == "telegram":
            reporter.chat_id = rng.randrange(5_000_000_000, 7_999_999_999)
            reporter.username = f"{rng.choice(USERNAME_STEMS)}{index}"
        else:
            country = COUNTRIES[rng.choice(COUNTRIES_OF[language])]
            while True:
                prefix = rng.choice(country.prefixes)
                rest = "".join(rng.choice("0123456789") for _ in range(country.digits - len(prefix)))
                if prefix + rest not in used_numbers:
                    break
            used_numbers.add(prefix + rest)
            reporter.number = PhoneNumber(country, prefix + rest)
            if channel == "sms":
                reporter.from_city, reporter.from_state = rng.choice(country.places)
            else:
                reporter.profile_name = (f"{reporter.first_name} {reporter.last_name}"
                                         if index % 3 else f"{reporter.first_name} 🌻")
        reporters.append(reporter)
    return reporters


# --- The scanner ----------------------------------------------------------------------------

# Digit groups as numbers are written: "+254 712 345-678", "(11) 91234-5678", "0712345678".
_DIGIT_RUN = re.compile(r"\d+(?:[ \u00a0\u202f\-().]{1,3}\d+)*")
_DIGITS = re.compile(r"\d+")
_WORD = re.compile(r"\w+")
_JSON_ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})")
MAX_JOINED_DIGITS = 16


@lru_cache(maxsize=1 << 17)
def fold(token: str) -> str:
    """Case, accents and Unicode form do not matter: "AMÉLIE", "Amelie", NFD "Amélie" fold
    alike (so do Arabic with and without hamza or harakat)."""
    if token.isascii():
        return token.lower()
    decomposed = unicodedata.normalize("NFKD", token)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def words(text: str) -> tuple[str, ...]:
    return tuple(fold(w) for w in _WORD.findall(unicodedata.normalize("NFC", text)))


def readable_views(text: str) -> Iterator[str]:
    """The text, and the same with JSON \\u escapes, HTML entities and %-encoding undone (the
    tracker stores JSON with ensure_ascii; pages escape; URLs percent-encode)."""
    yield text
    if "\\u" in text:
        unescaped = _JSON_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), text)
        yield unescaped.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    if "&" in text:
        yield html.unescape(text)
    if "%" in text:
        yield unquote(text)


@dataclass(frozen=True)
class Leak:
    identifier: Identifier
    place: str
    context: str

    def __str__(self) -> str:
        return f"{self.identifier.kind} {self.identifier.value!r} in {self.place}: …{self.context}…"


class IdentifierScanner:
    """Finds any of a set of identifiers in text or bytes, whatever the spelling.

    Numbers (phone numbers, chat ids) are matched on digits: a run of digit groups (separated by
    spaces, dashes, dots or brackets) leaks a number if some consecutive groups join into one of
    its digit forms, so "+254 712 345 678", "0712345678" and "whatsapp:+254712345678" are found
    while a number inside a longer digit run (a timestamp) is not mistaken for one. Everything
    else (names, usernames, places) is matched on whole words after folding case and accents.
    """

    def __init__(self, identifiers: Iterable[Identifier], numbers: Iterable[PhoneNumber] = ()) -> None:
        self.digit_forms: dict[str, Identifier] = {}
        self.word_forms: dict[tuple[str, ...], Identifier] = {}
        for number in numbers:
            for form in number.digit_forms():
                self.digit_forms[form] = Identifier("phone number", number.e164)
        for identifier in identifiers:
            if identifier.kind == "phone number":
                continue  # by digit forms, above
            if identifier.value.isdigit():
                self.digit_forms[identifier.value] = identifier
            elif key := words(identifier.value):
                self.word_forms[key] = identifier
        self._longest = max((len(k) for k in self.word_forms), default=1)
        self._last_words = {k[-1] for k in self.word_forms}
        self.identifier_count = len({*self.digit_forms.values(), *self.word_forms.values()})

    @property
    def form_count(self) -> int:
        return len(self.digit_forms) + len(self.word_forms)

    def scan_text(self, place: str, text: str) -> list[Leak]:
        leaks: dict[Identifier, Leak] = {}
        for view in readable_views(text):
            for leak in itertools.chain(self._numbers(place, view), self._words(place, view)):
                leaks.setdefault(leak.identifier, leak)
        return list(leaks.values())

    def scan_bytes(self, place: str, data: bytes) -> list[Leak]:
        """Bytes as they are: ASCII digits and UTF-8 names are found in any binary."""
        leaks = {leak.identifier: leak for leak in self.scan_text(place, data.decode("latin-1"))}
        for leak in self.scan_text(place, data.decode("utf-8", "replace")):
            leaks.setdefault(leak.identifier, leak)
        return list(leaks.values())

    def _numbers(self, place: str, text: str) -> Iterator[Leak]:
        for run in _DIGIT_RUN.finditer(text):
            groups = _DIGITS.findall(run.group())
            for start in range(len(groups)):
                joined = ""
                for group in groups[start:]:
                    joined += group
                    if len(joined) > MAX_JOINED_DIGITS:
                        break
                    found = self.digit_forms.get(joined)
                    if found is not None:
                        yield Leak(found, place, _context(text, run.start(), run.end()))

    def _words(self, place: str, text: str) -> Iterator[Leak]:
        recent: deque[str] = deque(maxlen=self._longest)
        for match in _WORD.finditer(unicodedata.normalize("NFC", text)):
            word = fold(match.group())
            recent.append(word)
            if word not in self._last_words:
                continue
            window = tuple(recent)
            for size in range(1, len(window) + 1):
                found = self.word_forms.get(window[-size:])
                if found is not None:
                    yield Leak(found, place, _context(text, match.start(), match.end()))


def _context(text: str, start: int, end: int) -> str:
    return text[max(0, start - 40):end + 40].replace("\n", " ")


@dataclass
class Places:
    """Everything scanned, by place name: texts, and bytes scanned as bytes."""

    texts: dict[str, str] = field(default_factory=dict)
    blobs: dict[str, bytes] = field(default_factory=dict)
    kinds: Counter[str] = field(default_factory=Counter)

    def add_text(self, kind: str, place: str, text: str, *, count: int = 1) -> None:
        self.texts[place] = self.texts.get(place, "") + text
        self.kinds[kind] += count

    def add_blob(self, kind: str, place: str, data: bytes) -> None:
        self.blobs[place] = self.blobs.get(place, b"") + data
        self.kinds[kind] += 1

    @property
    def size(self) -> int:
        return sum(len(t) for t in self.texts.values()) + sum(len(b) for b in self.blobs.values())

    def scan(self, scanner: IdentifierScanner) -> list[Leak]:
        leaks = [leak for place, text in self.texts.items() for leak in scanner.scan_text(place, text)]
        leaks += [leak for place, data in self.blobs.items() for leak in scanner.scan_bytes(place, data)]
        return leaks


# Columns that hold ciphertext: scanned as bytes, never decoded.
CIPHERTEXT_COLUMNS = {("vault_entry", "ciphertext")}


def dump_database(places: Places, url: str, *, kind: str) -> list[str]:
    """Every column of every row of every table (found by inspection), into `places`; returns
    the table names."""
    engine = create_engine(url)
    try:
        tables = sorted(inspect(engine).get_table_names())
        with engine.connect() as connection:
            for name in tables:
                table = Table(name, MetaData(), autoload_with=connection)
                lines, ciphertext = [], []
                for row in connection.execute(select(table)):
                    cells = []
                    for column, value in zip(table.columns.keys(), row, strict=True):
                        if isinstance(value, bytes | memoryview):
                            data = bytes(value)
                            if (name, column) in CIPHERTEXT_COLUMNS:
                                ciphertext.append(data)
                                continue
                            value = data.decode("utf-8", "replace")
                        elif isinstance(value, dict | list):
                            value = json.dumps(value, ensure_ascii=False)
                        cells.append(f"{column}={value}")
                    lines.append(" | ".join(cells))
                places.add_text(kind, f"{kind} {_file_of(url)}: {name}", "\n".join(lines))
                if ciphertext:
                    places.add_blob(kind, f"{kind}: {name} ciphertext", b"\n".join(ciphertext))
    finally:
        engine.dispose()
    return tables


def _file_of(url: str) -> str:
    return url.rsplit("/", 1)[-1]


_RECORD_ATTRIBUTES = set(vars(logging.makeLogRecord({})))


def log_record_text(record: logging.LogRecord) -> str:
    """What any formatter could write of a record: message, extra fields, exception."""
    extra = {k: v for k, v in vars(record).items() if k not in _RECORD_ATTRIBUTES}
    parts = [record.name, record.getMessage(), repr(extra)]
    if record.exc_info:
        parts.append(logging.Formatter().formatException(record.exc_info))
    if record.stack_info:
        parts.append(record.stack_info)
    return " ".join(parts)


# --- Talking to the stack as the providers would --------------------------------------------


@dataclass
class LeakStack:
    stack: Stack
    telegram: FakeTelegramApi

    def send(self, reporter: Reporter, text: str) -> str:
        """One message from `reporter`, signed as its provider signs; the reply they get."""
        if reporter.channel == "telegram":
            return self._telegram(reporter, text)
        assert reporter.number is not None
        if reporter.channel == "sms":
            address = reporter.number.e164
            form = make_twilio_form(
                body=text, from_=address, FromCity=reporter.from_city, FromState=reporter.from_state,
                FromZip="", FromCountry=reporter.number.country.region)
            signature = twilio_signature(form)
        else:
            address = f"whatsapp:{reporter.number.e164}"
            form = make_whatsapp_form(body=text, from_=address, ProfileName=reporter.profile_name)
            signature = RequestValidator(TWILIO_TOKEN).compute_signature(
                f"{PUBLIC_BASE}/webhooks/whatsapp", form)
        before = len(self.stack.twilio.bodies_to(address))
        self._post(f"/webhooks/{reporter.channel}", data=form,
                   headers={"X-Twilio-Signature": signature})
        return "\n".join(_wait_for_more(lambda: self.stack.twilio.bodies_to(address), before, text))

    def _telegram(self, reporter: Reporter, text: str) -> str:
        assert reporter.chat_id is not None
        before = len(self._sent_to(reporter.chat_id))
        offered = self._last_buttons(reporter.chat_id)
        if text.isdigit() and offered:
            # The reporter presses the button rather than typing its number.
            _title, payload = offered[int(text) - 1]
            update = make_telegram_update(kind="callback", chat_id=reporter.chat_id,
                                          callback_data=payload, buttons=offered,
                                          language_code=reporter.language)
        else:
            update = make_telegram_update(text=text, chat_id=reporter.chat_id,
                                          language_code=reporter.language)
        _as_person(update, reporter)
        self._post("/webhooks/telegram", json=update,
                   headers={"X-Telegram-Bot-Api-Secret-Token": TELEGRAM_SECRET})
        sent = _wait_for_more(lambda: self._sent_to(reporter.chat_id or 0), before, text)
        return "\n".join(str(m["text"]) for m in sent)

    def _sent_to(self, chat_id: int) -> list[dict[str, object]]:
        return [m for m in self.telegram.sent if str(m["chat_id"]) == str(chat_id)]

    def _last_buttons(self, chat_id: int) -> list[tuple[str, str]]:
        sent = self._sent_to(chat_id)
        markup = sent[-1].get("reply_markup") if sent else None
        if not isinstance(markup, dict):
            return []
        return [(str(b["text"]), str(b["callback_data"]))
                for row in markup.get("inline_keyboard", []) for b in row]

    def _post(self, path: str, **kwargs: Any) -> None:
        response = httpx.post(f"{self.stack.gateway_url}{path}", timeout=30, **kwargs)
        assert response.status_code == 200, f"{path}: HTTP {response.status_code}"


def _as_person(update: dict[str, Any], reporter: Reporter) -> None:
    """Telegram sends the user's names and username with every update (in `from` and in a
    private chat): put this reporter's there."""
    person = {"first_name": reporter.first_name, "last_name": reporter.last_name,
              "username": reporter.username}
    if "callback_query" in update:
        update["callback_query"]["from"].update(person)
        update["callback_query"]["message"]["chat"].update(person)
    else:
        update["message"]["from"].update(person)
        update["message"]["chat"].update(person)


def _wait_for_more(read: Callable[[], list[Any]], before: int, text: str) -> list[Any]:
    deadline = time.monotonic() + REPLY_TIMEOUT
    while time.monotonic() < deadline:
        if len(read()) > before:
            time.sleep(0.3)  # a reply may come in several parts
            return read()[before:]
        time.sleep(0.1)
    raise TimeoutError(f"no reply to {text!r} within {REPLY_TIMEOUT} s")


def converse(stack: LeakStack, reporter: Reporter) -> None:
    for text in reporter.script:
        reporter.replies.append(stack.send(reporter, text))


def wait_until_processed(database_url: str, timeout: float = 60.0) -> None:
    """Until no inbound message is pending (a deletion finishes after its confirmation)."""
    engine = create_engine(database_url)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            with engine.connect() as connection:
                pending = connection.execute(sql_text(
                    "SELECT count(*) FROM inbound_message WHERE state = 'pending'")).scalar_one()
            if pending == 0:
                time.sleep(1.0)
                return
            time.sleep(0.2)
    finally:
        engine.dispose()
    raise TimeoutError("inbound messages still pending")


# --- Collecting the places -------------------------------------------------------------------


def collect_console(places: Places, stack: Stack) -> int:
    """Exports, the JSON API and every console page, as an officer and as a supervisor.
    Returns how many tips the exports hold."""
    db = stack.app.state.db  # type: ignore[attr-defined]
    officer = ("leak-scan-officer", "leak-scan-officer-password")
    supervisor = ("leak-scan-supervisor", "leak-scan-supervisor-password")
    admin = ("leak-scan-admin", "leak-scan-admin-password")
    totp_secrets = {"supervisor": totp.new_secret(), "admin": totp.new_secret()}
    ensure_account(db, username=officer[0], password=officer[1])
    ensure_account(db, username=supervisor[0], password=supervisor[1], role="supervisor",
                   totp_secret=totp_secrets["supervisor"])
    ensure_account(db, username=admin[0], password=admin[1], role="admin",
                   totp_secret=totp_secrets["admin"])
    every_status = [("status", s.value) for s in TipStatus]
    pages: list[str] = []

    with ConsoleClient(stack.gateway_url) as console:
        console.login(*officer)
        tips: list[dict[str, Any]] = []
        for fmt in ("csv", "json"):
            response = console.get("/console/export", params=[("format", fmt), *every_status])
            response.raise_for_status()
            places.add_text("export", f"export ({fmt})", response.text)
            if fmt == "json":
                tips = response.json()
        api = console.get("/api/tips", params=[("limit", "500"), *every_status])
        api.raise_for_status()
        places.add_text("export", "JSON API /api/tips", api.text)

        _paginate(places, console, "/console/queue", every_status, "queue page")
        for tip in tips:
            page = console.get(f"/console/tips/{tip['id']}")
            page.raise_for_status()
            places.add_text("console page", f"tip page #{tip['id']}", page.text)
            unmasked = console.post(f"/console/tips/{tip['id']}/unmask")
            unmasked.raise_for_status()
            places.add_text("console page", f"tip page #{tip['id']} (unmasked)", unmasked.text)

    with ConsoleClient(stack.gateway_url) as console:
        console.login(*supervisor, totp_secret=totp_secrets["supervisor"])
        _paginate(places, console, "/console/audit", [], "audit page")
        places.add_text("console page", "live alert stream", _alert_stream(console))

    with ConsoleClient(stack.gateway_url) as console:
        # Every other page of the console (dashboard, flows...), found in the app's routes and
        # seen as an admin, who may see them all.
        console.login(*admin, totp_secret=totp_secrets["admin"])
        done = {"/console/queue", "/console/audit", "/console/export", "/console/login",
                "/console/events", "/console/static/{name}"}
        for context in iter_route_contexts(stack.app.routes):  # type: ignore[attr-defined]
            path, methods = context.path or "", context.methods or set()
            if path.startswith("/console") and "GET" in methods and "{" not in path \
                    and path not in done:
                page = console.get(path)
                assert page.status_code < 400, f"{path}: HTTP {page.status_code}"
                places.add_text("console page", f"console page {path}", page.text)
                pages.append(path)
    assert pages, "no other console page found: the route discovery is broken"
    return len(tips)


def _paginate(places: Places, console: ConsoleClient, path: str, params: list[tuple[str, str]],
              kind: str) -> None:
    for number in itertools.count(1):
        page = console.get(path, params=[*params, ("page", str(number))])
        page.raise_for_status()
        places.add_text("console page", f"{kind} {number}", page.text)
        if f"page={number + 1}" not in page.text:
            return


def _alert_stream(console: ConsoleClient, seconds: float = 2.0) -> str:
    """The live feed's replay of recent critical tips (it streams for 30 s: read 2)."""
    assert console.session_cookie is not None
    name, value = console.session_cookie
    received: list[str] = []
    with contextlib.suppress(httpx.ReadTimeout), console.http.stream(
        "GET", "/console/events", params={"since": "0"}, headers={"Cookie": f"{name}={value}"},
        timeout=httpx.Timeout(10, read=seconds),
    ) as response:
        deadline = time.monotonic() + seconds
        for line in response.iter_lines():
            received.append(line)
            if time.monotonic() > deadline:
                break
    return "\n".join(received)


def collect_files(places: Places, root: Path, *, kind: str, skip: Path | None = None) -> None:
    for path in sorted(root.rglob("*")):
        if path.is_file() and (skip is None or not path.is_relative_to(skip)):
            places.add_blob(kind, f"{kind} {path.relative_to(root)}", path.read_bytes())


# --- The tests ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def leak_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LeakStack]:
    """Its own stack, with all three reporter channels on (the shared one is SMS only)."""
    telegram = FakeTelegramApi()
    with contextlib.contextmanager(run_stack)(
        tmp_path_factory.mktemp("leak-stack"),
        extra_routes={"api.telegram.org": telegram},
        channels={"sms": True, "whatsapp": True, "telegram": True, "local": False},
        telegram={"bot_token": TELEGRAM_TOKEN, "webhook_secret": TELEGRAM_SECRET, "mode": "webhook"},
        whatsapp={"sender": "whatsapp:+15550000000", "template_content_sid": "HX" + "1" * 32},
    ) as stack:
        yield LeakStack(stack, telegram)


def test_no_identifier_leaks_after_200_reporters(
    leak_stack: LeakStack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    stack = leak_stack.stack
    reporters = make_reporters()
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=CONCURRENT_REPORTERS) as pool:
        list(pool.map(lambda r: converse(leak_stack, r), reporters))
    talked = time.monotonic() - started
    wait_until_processed(stack.settings.database.url)

    for reporter in reporters[:FULL_TIPS]:
        assert RECEIPT.search(reporter.replies[-1]), (
            f"{reporter.label} got no receipt: {reporter.replies}")

    places = Places()
    tables = dump_database(places, stack.settings.database.url, kind="database table")
    assert {"inbound_message", "reporter", "tip", "vault_entry"} <= set(tables)
    assert any(p.endswith("vault_entry ciphertext") for p in places.blobs), "no vault entries scanned"
    trackers = dump_database(places, stack.settings.rasa.tracker_store_url, kind="tracker table")
    assert "events" in trackers
    tips = collect_console(places, stack)
    assert tips >= FULL_TIPS
    # The places hold the session (so a clean scan of them means something): every receipt is
    # in the export, the reporters' words are in the tracker store.
    receipts = {RECEIPT.search(r.replies[-1]).group() for r in reporters[:FULL_TIPS]}  # type: ignore[union-attr]
    assert receipts <= set(RECEIPT.findall(places.texts["export (json)"]))
    tracker_file = _file_of(stack.settings.rasa.tracker_store_url)
    assert TIPS["en"][0][0] in places.texts[f"tracker table {tracker_file}: events"]
    places.add_text("log record", "gateway log records",
                    "\n".join(log_record_text(record) for record in caplog.records),
                    count=len(caplog.records))
    collect_files(places, stack.log_dir, kind="log file")
    collect_files(places, Path(stack.settings.data_dir), kind="data file", skip=stack.log_dir)
    assert any(p.endswith("rasa.log") for p in places.blobs)
    assert any(p.endswith("actions.log") for p in places.blobs)

    numbers = [r.number for r in reporters if r.number is not None]
    scanner = IdentifierScanner([i for r in reporters for i in r.identifiers()], numbers)
    # The scanner finds an identifier in the data we collected, before it reports "none".
    planted = f"{numbers[0].country.code} {numbers[0].national[:3]} {numbers[0].national[3:]}"
    assert scanner.scan_text("planted", places.texts["gateway log records"] + planted)
    leaks = places.scan(scanner)

    channels = Counter(r.channel for r in reporters)
    messages = sum(len(r.script) for r in reporters)
    print(
        f"\nleak scan: {len(reporters)} reporters ({', '.join(f'{c} {n}' for c, n in channels.items())}; "
        f"{len(LANGUAGES)} languages), {messages} messages in {talked:.0f} s, {tips} tips, "
        f"{DELETIONS} deletions\n"
        f"scanned {len(places.texts) + len(places.blobs)} places, {places.size / 1e6:.1f} MB: "
        f"{', '.join(f'{n} {k}s' for k, n in sorted(places.kinds.items()))}\n"
        f"identifiers checked: {scanner.identifier_count} ({len(numbers)} phone numbers, "
        f"{channels['telegram']} chat ids and usernames, names, ProfileNames, FromCity/FromState) "
        f"in {scanner.form_count} forms; leaks: {len(leaks)}"
    )
    assert not leaks, "identifiers leaked:\n" + "\n".join(str(leak) for leak in leaks[:30])


# --- The scanner can fail ---------------------------------------------------------------------


def test_scanner_finds_identifiers_planted_in_a_throwaway_table(tmp_path: Path) -> None:
    """The same dump and scan as the leak scan, over a throwaway database with identifiers
    planted as text, as JSON escapes (as Rasa stores non-ASCII) and as vault-column bytes."""
    reporters = make_reporters(12)
    sms, whatsapp, telegram = reporters[0], reporters[1], reporters[2]
    arabic = next(r for r in reporters if r.language == "ar")
    assert sms.number is not None and whatsapp.number is not None
    scanner = IdentifierScanner([i for r in reporters for i in r.identifiers()],
                                [r.number for r in reporters if r.number is not None])
    url = f"sqlite:///{tmp_path / 'throwaway.db'}"
    with contextlib.closing(sqlite3.connect(tmp_path / "throwaway.db")) as conn, conn:
        conn.execute("CREATE TABLE throwaway (id INTEGER PRIMARY KEY, note TEXT, details TEXT)")
        conn.execute("CREATE TABLE vault_entry (reporter_id TEXT, ciphertext BLOB)")
        conn.execute("CREATE TABLE clean (id INTEGER PRIMARY KEY, note TEXT)")
        national = sms.number.national
        conn.execute("INSERT INTO throwaway VALUES (1, ?, ?)", (
            f"call me back on 0{national[:3]} {national[3:6]} {national[6:]}",
            json.dumps({"from": arabic.first_name, "chat": telegram.chat_id})))
        conn.execute("INSERT INTO vault_entry VALUES ('abc', ?)",
                     (f"\x00\x01{whatsapp.number.e164}\x02".encode(),))
        conn.execute("INSERT INTO clean VALUES (1, 'three armed men near the market at 10:45')")
    places = Places()
    assert dump_database(places, url, kind="table") == ["clean", "throwaway", "vault_entry"]

    found = {(leak.identifier.value, leak.place) for leak in places.scan(scanner)}

    assert (sms.number.e164, "table throwaway.db: throwaway") in found
    assert (arabic.first_name, "table throwaway.db: throwaway") in found
    assert (str(telegram.chat_id), "table throwaway.db: throwaway") in found
    assert (whatsapp.number.e164, "table: vault_entry ciphertext") in found
    assert not any(place.endswith(": clean") for _value, place in found)


SAMPLE_NUMBER = PhoneNumber(COUNTRIES["KE"], "712345678")


@pytest.mark.parametrize("written", SAMPLE_NUMBER.written_forms())
def test_scanner_finds_every_written_form_of_a_number(written: str) -> None:
    scanner = IdentifierScanner([], [SAMPLE_NUMBER])
    assert scanner.scan_text("page", f"<td>Sender: {written}</td>"), written
    assert scanner.scan_bytes("blob", f"\x00{written}\x00".encode())


def test_scanner_finds_names_in_every_spelling() -> None:
    reporters = make_reporters(60)
    scanner = IdentifierScanner([i for r in reporters for i in r.identifiers()])
    french = next(r for r in reporters if r.first_name == "Amélie" or "é" in r.last_name)
    name = french.first_name if "é" in french.first_name else french.last_name
    arabic = next(r for r in reporters if r.language == "ar")
    spellings = [name, name.upper(), unicodedata.normalize("NFD", name), fold(name),
                 json.dumps(name)[1:-1], html.escape(name), json.dumps(arabic.last_name)[1:-1],
                 f"@{next(r for r in reporters if r.username).username}",
                 f"{arabic.first_name} {arabic.last_name}"]
    for spelling in spellings:
        assert scanner.scan_text("log", f"2025-01-01 INFO sender={spelling}"), spelling


def test_identifiers_appear_in_no_text_the_product_or_the_script_writes() -> None:
    """A clean scan must mean "nothing leaked", not "the names are common words": none of the
    identifiers occurs in the dialogue's responses, the gateway's messages, the console's UI
    texts and templates, or what the reporters write."""
    reporters = make_reporters()
    scanner = IdentifierScanner([i for r in reporters for i in r.identifiers()],
                                [r.number for r in reporters if r.number is not None])
    product_texts = [*(ROOT / "nlu" / "project").rglob("*.yml"),
                     *(ROOT / "config" / "messages").glob("*.yml"),
                     *(ROOT / "bot" / "console" / "i18n").glob("*.yml"),
                     *(ROOT / "bot" / "console" / "templates").glob("*.html"),
                     *(ROOT / "bot" / "templates").glob("*.html")]
    leaks = [leak for path in product_texts
             for leak in scanner.scan_text(str(path.relative_to(ROOT)), path.read_text("utf-8"))]
    script = "\n".join(text for r in reporters for text in r.script)
    leaks += scanner.scan_text("the reporters' messages", script)
    assert not leaks, "\n".join(str(leak) for leak in leaks)
