"""`tipline flows check`: each kind of mistake is reported at the right `file:line`.

Every test copies the real project into tmp_path, breaks one thing the way an administrator
might, and asserts the exact place reported. Only one test runs Rasa's own validation
(it starts a Python 3.10 process); the others use run_rasa=False.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from config import Settings
from nlu.check import Problem, _rasa_messages, check_project

REPO = Path(__file__).resolve().parent.parent
LANGUAGES = ("en", "fr")


class Project:
    """A copy of the real project under `root`, with helpers to edit it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        shutil.copytree(REPO / "nlu" / "project", root / "nlu" / "project")
        shutil.copytree(REPO / "config" / "messages", root / "config" / "messages")
        shutil.copy(REPO / "config" / "tipline.yml", root / "config" / "tipline.yml")
        if (REPO / "config" / "urgency").is_dir():
            shutil.copytree(REPO / "config" / "urgency", root / "config" / "urgency")

    def path(self, relative: str) -> Path:
        return self.root / relative

    def edit(self, relative: str, old: str, new: str) -> None:
        path = self.path(relative)
        text = path.read_text(encoding="utf-8")
        assert old in text, f"{old!r} not in {relative}: the test needs updating"
        path.write_text(text.replace(old, new, 1), encoding="utf-8")

    def append(self, relative: str, text: str) -> None:
        path = self.path(relative)
        path.write_text(path.read_text(encoding="utf-8").rstrip("\n") + "\n" + text,
                        encoding="utf-8")

    def line_of(self, relative: str, needle: str, *, after: str | None = None) -> int:
        """1-based line of the first line containing `needle` (below the line with `after`)."""
        lines = self.path(relative).read_text(encoding="utf-8").splitlines()
        start = 0
        if after is not None:
            start = next(i for i, line in enumerate(lines) if after in line) + 1
        return next(i + 1 for i, line in enumerate(lines) if i >= start and needle in line)

    def check(self, languages: tuple[str, ...] = LANGUAGES, **kwargs: object) -> list[Problem]:
        return check_project(
            languages=languages, default_language="en",
            project_dir=self.root / "nlu" / "project",
            messages_dir=self.root / "config" / "messages",
            urgency_dir=self.root / "config" / "urgency",
            config_file=self.root / "config" / "tipline.yml",
            run_rasa=False, **kwargs,  # type: ignore[arg-type]
        )

    def places(self, **kwargs: object) -> list[str]:
        return [f"{p.file}:{p.line}" for p in self.check(**kwargs)]  # type: ignore[arg-type]


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return Project(tmp_path)


RESPONSES_EN = "nlu/project/responses/en.yml"
RESPONSES_FR = "nlu/project/responses/fr.yml"
RULES = "nlu/project/data/rules.yml"
NLU_EN = "nlu/project/data/nlu/en.yml"


def test_the_real_project_passes_including_rasas_validation() -> None:
    settings = Settings(environment="development")
    problems = check_project(languages=settings.languages,
                             default_language=settings.default_language, run_rasa=True)
    assert [str(p) for p in problems] == []


def test_every_language_with_files_in_the_repository_passes(project: Project) -> None:
    present = tuple(sorted(p.stem for p in project.path("nlu/project/responses").glob("*.yml")))
    assert [str(p) for p in project.check(languages=present)] == []


def test_a_clean_copy_passes(project: Project) -> None:
    assert project.check() == []


def test_yaml_syntax_error_names_the_file_and_line(project: Project) -> None:
    project.edit(RESPONSES_FR, "utter_greet:\n", "utter_greet: Bonjour: oops\n")
    line = project.line_of(RESPONSES_FR, "utter_greet:")
    problems = project.check()
    assert [f"{p.file}:{p.line}" for p in problems] == [f"{RESPONSES_FR}:{line}"]
    assert "not valid YAML" in problems[0].message
    assert "double quotes" in problems[0].message  # a hint a non-programmer can act on


def test_missing_translation_is_reported_where_the_default_text_is(project: Project) -> None:
    fr = project.path(RESPONSES_FR).read_text(encoding="utf-8").splitlines(keepends=True)
    start = next(i for i, line in enumerate(fr) if line.startswith("utter_help:"))
    project.path(RESPONSES_FR).write_text("".join(fr[:start] + fr[start + 2:]), encoding="utf-8")
    problems = project.check()
    assert [f"{p.file}:{p.line}" for p in problems] == [
        f"{RESPONSES_EN}:{project.line_of(RESPONSES_EN, 'utter_help:')}"
    ]
    assert "fr" in problems[0].message and RESPONSES_FR in problems[0].message


def test_a_key_missing_from_the_default_language_is_reported(project: Project) -> None:
    project.append(RESPONSES_FR, 'utter_bonjour:\n  text: "Bonjour"\n')
    problems = project.check()
    assert [f"{p.file}:{p.line}" for p in problems] == [
        f"{RESPONSES_FR}:{project.line_of(RESPONSES_FR, 'utter_bonjour:')}"
    ]
    assert RESPONSES_EN in problems[0].message


def test_a_lost_placeholder_is_an_error(project: Project) -> None:
    line = project.line_of(RESPONSES_FR, "text:", after="utter_tip_received:")
    fr = project.path(RESPONSES_FR).read_text(encoding="utf-8").splitlines(keepends=True)
    fr[line - 1] = fr[line - 1].replace("{receipt_code}", "CODE")  # only in that response
    project.path(RESPONSES_FR).write_text("".join(fr), encoding="utf-8")
    problems = project.check()
    assert [f"{p.file}:{p.line}" for p in problems] == [f"{RESPONSES_FR}:{line}"]
    assert "{receipt_code}" in problems[0].message


def test_a_changed_button_payload_is_an_error(project: Project) -> None:
    line = project.line_of(RESPONSES_FR, '"/affirm"', after="utter_ask_tip_danger:")
    fr = project.path(RESPONSES_FR).read_text(encoding="utf-8").splitlines(keepends=True)
    fr[line - 1] = fr[line - 1].replace('"/affirm"', '"/oui"')
    project.path(RESPONSES_FR).write_text("".join(fr), encoding="utf-8")
    problems = project.check()
    assert [f"{p.file}:{p.line}" for p in problems] == [f"{RESPONSES_FR}:{line}"]
    assert "'/oui'" in problems[0].message and "'/affirm'" in problems[0].message


def test_a_missing_button_is_an_error(project: Project) -> None:
    project.edit(RESPONSES_FR, '    - title: "Non, recommencer"\n      payload: "/deny"\n', "")
    problems = project.check()
    line = project.line_of(RESPONSES_FR, "buttons:", after="utter_tip_summary:")
    assert [f"{p.file}:{p.line}" for p in problems] == [f"{RESPONSES_FR}:{line}"]


def test_unknown_intent_in_a_rule(project: Project) -> None:
    project.edit(RULES, "      - intent: help\n      - action: utter_help",
                 "      - intent: aide\n      - action: utter_help")
    problems = project.check()
    assert [f"{p.file}:{p.line}" for p in problems] == [
        f"{RULES}:{project.line_of(RULES, 'intent: aide')}"
    ]
    assert "'aide'" in problems[0].message


def test_unknown_action_in_a_rule(project: Project) -> None:
    project.edit(RULES, "action: action_submit_tip\n", "action: action_submit_tips\n")
    problems = project.check()
    assert [f"{p.file}:{p.line}" for p in problems] == [
        f"{RULES}:{project.line_of(RULES, 'action: action_submit_tips')}"
    ]


def test_unknown_response_in_a_rule(project: Project) -> None:
    project.edit(RULES, "action: utter_help\n", "action: utter_helps\n")
    problems = project.check()
    assert [f"{p.file}:{p.line}" for p in problems] == [
        f"{RULES}:{project.line_of(RULES, 'utter_helps')}"
    ]
    assert RESPONSES_EN in problems[0].message


def test_impossible_slot_value_in_a_rule_condition(project: Project) -> None:
    project.edit(RULES, "- contact: returning\n", "- contact: back\n")
    assert project.places() == [f"{RULES}:{project.line_of(RULES, 'contact: back')}"]


def test_condition_naming_an_unknown_slot(project: Project) -> None:
    project.edit(RESPONSES_FR, "utter_greet:\n", "utter_greet:\n  condition:\n"
                 "    - type: slot\n      name: langue\n      value: fr\n")
    problems = project.check()
    assert [f"{p.file}:{p.line}" for p in problems] == [
        f"{RESPONSES_FR}:{project.line_of(RESPONSES_FR, 'name: langue')}"
    ]
    assert "'langue'" in problems[0].message


def test_condition_on_a_language_that_is_not_switched_on(project: Project) -> None:
    project.edit(RESPONSES_FR, "utter_greet:\n", "utter_greet:\n  condition:\n"
                 "    - type: slot\n      name: language\n      value: de\n")
    assert project.places() == [f"{RESPONSES_FR}:{project.line_of(RESPONSES_FR, 'value: de')}"]


def test_missing_language_file_points_at_the_languages_setting(project: Project) -> None:
    project.path("config/messages/fr.yml").unlink()
    problems = project.check()
    line = project.line_of("config/tipline.yml", "languages:")
    assert [f"{p.file}:{p.line}" for p in problems] == [f"config/tipline.yml:{line}"]
    assert "config/messages/fr.yml" in problems[0].message


def test_a_language_the_detector_does_not_know(project: Project) -> None:
    # Hausa ("ha") has no langdetect profile: the gateway could not recognise it.
    for relative in ("nlu/project/responses/{}.yml", "nlu/project/data/nlu/{}.yml",
                     "config/messages/{}.yml"):
        shutil.copy(project.path(relative.format("fr")), project.path(relative.format("ha")))
    problems = project.check(languages=("en", "fr", "ha"))
    line = project.line_of("config/tipline.yml", "languages:")
    assert [f"{p.file}:{p.line}" for p in problems] == [f"config/tipline.yml:{line}"]
    assert "'ha'" in problems[0].message


def test_duplicate_nlu_example(project: Project) -> None:
    original = project.line_of(NLU_EN, "    - hello", after="- intent: greet")
    project.edit(NLU_EN, "    - hi there\n", "    - hi there\n    - Hello\n")
    problems = project.check()
    assert [f"{p.file}:{p.line}" for p in problems] == [
        f"{NLU_EN}:{project.line_of(NLU_EN, '    - Hello')}"
    ]
    assert f"line {original}" in problems[0].message


def test_same_example_under_two_intents(project: Project) -> None:
    project.edit(NLU_EN, "    - hi there\n", "    - hi there\n    - how does this work\n")
    added = project.line_of(NLU_EN, "    - how does this work", after="hi there")
    # Reported at the later of the two, naming the earlier one and its intent.
    later = project.line_of(NLU_EN, "    - how does this work", after="- intent: help")
    problems = project.check()
    assert [f"{p.file}:{p.line}" for p in problems] == [f"{NLU_EN}:{later}"]
    assert f"line {added}" in problems[0].message and "'greet'" in problems[0].message


def test_too_few_examples_and_unknown_intent(project: Project) -> None:
    project.edit(NLU_EN, "- intent: greet\n", "- intent: greeting\n")
    line = project.line_of(NLU_EN, "- intent: greeting")
    # (The other languages' greetings that English shares, "hello" or "hi", are reported too:
    # under 'greet' there, under 'greeting' here.)
    in_english = [place for place in project.places() if place.startswith(f"{NLU_EN}:")]
    assert in_english == [f"{NLU_EN}:{project.line_of(NLU_EN, 'nlu:')}",  # no greet
                          f"{NLU_EN}:{line}"]


def test_form_question_missing_in_every_language(project: Project) -> None:
    for lang in LANGUAGES:
        relative = f"nlu/project/responses/{lang}.yml"
        lines = project.path(relative).read_text(encoding="utf-8").splitlines(keepends=True)
        start = next(i for i, line in enumerate(lines) if line.startswith("utter_ask_tip_where:"))
        project.path(relative).write_text("".join(lines[:start] + lines[start + 2:]),
                                          encoding="utf-8")
    line = project.line_of("nlu/project/domain.yml", "- tip_where", after="required_slots:")
    assert project.places() == [f"nlu/project/domain.yml:{line}"]


def test_gateway_message_translation_and_placeholders(project: Project) -> None:
    project.edit("config/messages/en.yml", 'language_set: "', 'language_set: "{language} ')
    line = project.line_of("config/messages/fr.yml", "language_set:")
    problems = project.check()
    assert [f"{p.file}:{p.line}" for p in problems] == [f"config/messages/fr.yml:{line}"]
    assert "{language}" in problems[0].message


def test_duplicate_key_is_reported(project: Project) -> None:
    project.append(RESPONSES_FR, 'utter_greet:\n  text: "Salut"\n')
    lines = project.path(RESPONSES_FR).read_text(encoding="utf-8").splitlines()
    second = max(i + 1 for i, line in enumerate(lines) if line.startswith("utter_greet:"))
    assert project.places() == [f"{RESPONSES_FR}:{second}"]


def test_urgency_lists_use_the_given_checker(project: Project) -> None:
    urgency = project.path("config/urgency")
    urgency.mkdir(exist_ok=True)
    (urgency / "xx.yml").write_text("critical:\n  - gun\n  - \n", encoding="utf-8")

    def checker(path: Path) -> list[str]:
        return ["line 3: an empty word"] if path.name == "xx.yml" else []

    assert "config/urgency/xx.yml:3" in project.places(lexicon_checker=checker)


def test_urgency_lists_with_the_real_checker(project: Project) -> None:
    from bot.urgency import check_lexicon as checker

    project.append("config/urgency/en.yml", "urgent:\n  - fire\n")
    line = project.line_of("config/urgency/en.yml", "urgent:")
    problems = project.check(lexicon_checker=checker)
    assert [f"{p.file}:{p.line}" for p in problems] == [f"config/urgency/en.yml:{line}"]
    assert not problems[0].message.startswith("/")  # the checker's path is not repeated


def test_rasa_output_is_split_into_messages() -> None:
    # Recorded from `rasa data validate` 3.6.21 (colours removed by the caller).
    output = (
        "/x/site-packages/rasa/shared/utils/validation.py:134: DeprecationWarning: "
        "pkg_resources is deprecated\n  import pkg_resources\n"
        "2026-11-21 01:09:16 INFO     rasa.validator  - Validating intents...\n"
        "/x/site-packages/rasa/shared/utils/io.py:100: UserWarning: Issue found in "
        "'/tmp/p/data/rules.yml': \nFound intent 'helpp' in stories which is not part of "
        "the domain.\n  More info at https://rasa.com/docs/rasa/stories\n"
        "/x/site-packages/rasa/shared/utils/io.py:100: UserWarning: The utterance "
        "'utter_x' is not used in any story or rule.\n"
        "2026-11-21 01:09:16 INFO     rasa.validator  - Story structure validation...\n"
        "YamlValidationException: Failed to validate '/tmp/p/data/rules.yml'.\n"
        "  in /tmp/p/data/rules.yml:64:\n      Key 'intnt' was not defined.\n\n"
        "Project validation completed with errors.\n"
    )
    assert list(_rasa_messages(output)) == [
        "Issue found in '/tmp/p/data/rules.yml': Found intent 'helpp' in stories which is "
        "not part of the domain.",
        "The utterance 'utter_x' is not used in any story or rule.",
        "YamlValidationException: Failed to validate '/tmp/p/data/rules.yml'. in "
        "/tmp/p/data/rules.yml:64: Key 'intnt' was not defined.",
    ]


def test_the_command_passes_on_the_real_repository() -> None:
    tipline = Path(sys.executable).parent / "tipline"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIPLINE_")}
    result = subprocess.run([str(tipline), "flows", "check", "--no-rasa"], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("No problems found")
