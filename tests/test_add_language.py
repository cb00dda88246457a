"""A seventh language (Somali) needs only YAML and training data, no code change.

The test copies what administrators edit (nlu/project, config/messages, config/urgency,
config/tipline.yml) into a temporary folder, drops in the Somali fixture files
(tests/fixtures/languages/so/), and switches Somali on by adding `so` to `languages:` in the
copied tipline.yml. The admin check (`tipline flows check`, Rasa's validation included) must
find nothing; then the real stack (Rasa trained on the copy, action server, gateway reading
the copy's texts and urgency words) takes a whole tip by SMS in Somali.

Every expected reply is read from the Somali fixture, so a reply in the default language (a
missing translation or an unswitched language slot) fails, and so does a first message the
detector does not recognise as Somali (the language menu would come instead).
"""

from __future__ import annotations

import contextlib
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.urgency import check_lexicon
from config import Settings
from nlu.check import check_project
from tests.stack import run_stack

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "languages" / "so"
LANGUAGES = ["en", "fr", "ar", "sw", "es", "pt", "so"]
RECEIPT = re.compile(r"[A-HJ-NP-Z2-9]{4}-[A-HJ-NP-Z2-9]{4}")

# Where each fixture goes in the copied tree: the places an administrator would put them.
PLACES = {
    "responses.yml": "nlu/project/responses/so.yml",
    "nlu.yml": "nlu/project/data/nlu/so.yml",
    "messages.yml": "config/messages/so.yml",
    "urgency.yml": "config/urgency/so.yml",
}

# The tip as the first message, then where and when: plain SMS Somali.
WHAT = "Saddex nin oo hubaysan ayaa xalay xaday lo'dii deriskayga"
WHERE = "Afgooye, agagaarka suuqa xoolaha"
WHEN = "xalay"


def add_somali(root: Path) -> Path:
    """The repository's content copied under `root` with Somali added; returns tipline.yml."""
    shutil.copytree(REPO / "nlu" / "project", root / "nlu" / "project")
    for folder in ("messages", "urgency"):
        shutil.copytree(REPO / "config" / folder, root / "config" / folder)
    config = root / "config" / "tipline.yml"
    shutil.copy(REPO / "config" / "tipline.yml", config)
    for fixture, place in PLACES.items():
        assert not (root / place).exists(), f"{place} already exists: not a new language"
        shutil.copy(FIXTURES / fixture, root / place)
    text, count = re.subn(r"^languages:.*$", f"languages: [{', '.join(LANGUAGES)}]",
                          config.read_text(encoding="utf-8"), flags=re.MULTILINE)
    assert count == 1, "config/tipline.yml has no `languages:` line: the test needs updating"
    config.write_text(text, encoding="utf-8")
    return config


def sms_reply(*responses: dict[str, Any], **values: str) -> str:
    """One dialogue turn as SMS shows it: the responses' texts one paragraph each, then the
    last buttons as numbered lines; `values` fill the {placeholders}."""
    texts = [str(response["text"]).format(**values) for response in responses]
    buttons: list[dict[str, str]] = next(
        (r["buttons"] for r in reversed(responses) if r.get("buttons")), [])
    lines = ["\n\n".join(texts)]
    lines += [f"{n}. {b['title']}" for n, b in enumerate(buttons, 1)]
    return "\n".join(lines)


def test_somali_added_from_yaml_alone_passes_the_check_and_takes_a_whole_tip(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Adding `so` to languages plus four Somali files gives a checked, trained, Somali bot:
    every reply of a full SMS tip is the fixture's Somali text, the tip is stored with
    language "so", and its urgency comes from the Somali word list."""
    content = tmp_path / "content"
    config = add_somali(content)
    monkeypatch.setenv("TIPLINE_CONFIG_FILE", str(config))
    languages = Settings(environment="development").languages
    assert languages == LANGUAGES  # read from the copied tipline.yml

    problems = check_project(
        languages=languages, default_language="en",
        project_dir=content / "nlu" / "project", messages_dir=content / "config" / "messages",
        urgency_dir=content / "config" / "urgency", config_file=config, root=content,
        run_rasa=True, lexicon_checker=check_lexicon,
    )
    assert [str(p) for p in problems] == []

    say = yaml.safe_load((FIXTURES / "responses.yml").read_text(encoding="utf-8"))
    (tmp_path / "stack").mkdir()
    running = contextlib.contextmanager(run_stack)(
        tmp_path / "stack",
        nlu_project_dir=content / "nlu" / "project",
        messages_dir=content / "config" / "messages",
        urgency_dir=content / "config" / "urgency",
    )
    with running as stack:
        assert stack.settings.languages == LANGUAGES
        number = "+252610000701"

        assert stack.sms(number, WHAT) == sms_reply(
            say["utter_privacy_notice"], say["utter_ask_tip_where"])  # the tip text was kept
        assert stack.sms(number, WHERE) == sms_reply(say["utter_ask_tip_when"])
        assert stack.sms(number, WHEN) == sms_reply(say["utter_ask_tip_danger"])
        assert stack.sms(number, "2") == sms_reply(
            say["utter_tip_summary"], tip_what=WHAT, tip_where=WHERE, tip_when=WHEN)
        done = stack.sms(number, "1")
        code = RECEIPT.search(done)
        assert code, done
        assert done == sms_reply(say["utter_tip_received"], say["utter_anything_else"],
                                 receipt_code=code.group(0))

        tip = next(t for t in stack.officer_tips() if t["receipt_code"] == code.group(0))
        assert tip["language"] == "so"
        assert (tip["what"], tip["where_text"], tip["when_text"]) == (WHAT, WHERE, WHEN)
        # config/urgency/so.yml of the copy was read: "hubaysan" (armed) is a high word.
        assert tip["urgency"] == "high"
        assert 'high: matched "hubaysan" (so)' in tip["urgency_reasons"]  # type: ignore[operator]
