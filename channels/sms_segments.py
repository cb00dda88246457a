"""Message lengths: how many SMS segments a text costs, and splitting long texts.

Owns the GSM 03.38 character tables and the segment arithmetic (GSM-7: 160 septets alone,
153 per part of a concatenated message; UCS-2: 70 UTF-16 units alone, 67 per part), and the
sentence-boundary splitter that every channel with a length limit uses.

Pure functions on strings: it must never log, store or send the text it measures.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Literal

Encoding = Literal["GSM-7", "UCS-2"]

# GSM 03.38 basic table (the escape character 0x1B is not a printable character).
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# The extension table: each of these is sent as ESC + character, so it costs two septets.
GSM7_EXTENSION = frozenset("^{}\\[~]|€\f")

GSM7_SINGLE = 160
GSM7_PART = 153  # 7 septets of each part go to the concatenation header
UCS2_SINGLE = 70
UCS2_PART = 67


def _gsm7_costs(text: str) -> list[int] | None:
    """Septets per character, or None when a character has no GSM-7 form."""
    costs: list[int] = []
    for char in text:
        if char in GSM7_BASIC:
            costs.append(1)
        elif char in GSM7_EXTENSION:
            costs.append(2)
        else:
            return None
    return costs


def _ucs2_costs(text: str) -> list[int]:
    # UCS-2 on the wire is UTF-16: characters outside the BMP (most emoji) take two units.
    return [2 if ord(char) > 0xFFFF else 1 for char in text]


def _count_parts(costs: list[int], single: int, part: int) -> int:
    if sum(costs) <= single:
        return 1
    # Greedy packing: a two-unit character (an escaped GSM character, a surrogate pair) is
    # never split across two parts, so a part can end one unit short of `part`.
    parts, used = 1, 0
    for cost in costs:
        if used + cost > part:
            parts += 1
            used = 0
        used += cost
    return parts


def sms_segments(text: str) -> tuple[Encoding, int]:
    """The encoding a handset will use for `text` and the number of segments it is billed as.

    One character outside GSM-7 (an accent the table lacks, Arabic, an emoji) turns the whole
    message into UCS-2, which is why the gateway's own texts avoid typographic quotes.
    """
    gsm = _gsm7_costs(text)
    if gsm is not None:
        return "GSM-7", _count_parts(gsm, GSM7_SINGLE, GSM7_PART)
    return "UCS-2", _count_parts(_ucs2_costs(text), UCS2_SINGLE, UCS2_PART)


def utf16_length(text: str) -> int:
    """Length as Telegram counts it (UTF-16 code units)."""
    return len(text.encode("utf-16-le")) // 2


def _longest_prefix(text: str, limit: int, measure: Callable[[str], int]) -> int:
    """The largest n such that measure(text[:n]) <= limit (measure grows with n)."""
    low, high = 0, len(text)
    while low < high:
        middle = (low + high + 1) // 2
        if measure(text[:middle]) <= limit:
            low = middle
        else:
            high = middle - 1
    return low


def split_text(text: str, limit: int, *, measure: Callable[[str], int] = len) -> list[str]:
    """Split on sentence (then word) boundaries so no part measures more than `limit`."""
    if measure(text) <= limit:
        return [text]
    parts: list[str] = []
    current = ""
    for sentence in re.split(r"(?<=[.!?؟。\n])\s+", text):
        while measure(sentence) > limit:
            fit = max(_longest_prefix(sentence, limit, measure), 1)
            cut = sentence.rfind(" ", 0, fit)
            cut = cut if cut > 0 else fit
            if current:
                parts.append(current)
                current = ""
            parts.append(sentence[:cut].rstrip())
            sentence = sentence[cut:].lstrip()
        candidate = f"{current} {sentence}".strip() if current else sentence
        if measure(candidate) > limit:
            parts.append(current)
            current = sentence
        else:
            current = candidate
    if current:
        parts.append(current)
    return [part for part in parts if part]
