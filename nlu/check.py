"""`tipline flows check`: find mistakes in what administrators edit, as `file:line: message`.

This module owns the checks of the dialogue sources (nlu/project/), the gateway's own texts
(config/messages/), config/tipline.yml and the urgency word lists (config/urgency/), and the
translation of Rasa's `data validate` output into the same `file:line` form. It only reads:
it never writes into the project, never trains and never touches a running server, so a bad
file can be checked while the bot keeps running.

Messages are written for administrators, not programmers: they say what is wrong and what
to do, and name files relative to the repository root.

The urgency word lists are checked by `bot.urgency`, which sits above this package in the
import layers; the caller passes that check in (`lexicon_checker`) rather than this module
importing upward.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from config import messages as gateway_messages
from config.messages import MESSAGES_DIR
from config.settings import CONFIG_DIR, DEFAULT_YAML
from nlu.build import PROJECT_DIR, build_project

URGENCY_DIR = CONFIG_DIR / "urgency"
MIN_EXAMPLES = 10

# Rasa's own intents, slots and actions: always there without being listed in domain.yml.
RASA_INTENTS = frozenset({"nlu_fallback", "restart", "back", "session_start"})
RASA_SLOTS = frozenset({"requested_slot", "session_started_metadata"})
RASA_ACTIONS = frozenset({
    "action_listen", "action_restart", "action_session_start", "action_default_fallback",
    "action_deactivate_loop", "action_revert_fallback_events", "action_default_ask_affirmation",
    "action_default_ask_rephrase", "action_two_stage_fallback", "action_unlikely_intent",
    "action_back", "action_send_text", "action_extract_slots",
})

# Responses no rule names because code sends them. They must exist (or the code sends
# nothing), and Rasa's "not used in any story or rule" warning about them is expected.
SENT_BY_CODE = {
    "utter_emergency_number": "the tip form sends it when someone is in danger",
    "utter_tip_received": "the action that stores a tip sends it with the receipt code",
    "utter_tip_not_saved": "the action that stores a tip sends it when storing fails",
    "utter_anything_else": "the action that stores a tip sends it last",
    "utter_default": "Rasa's fallback action sends it when it did not understand",
}

# Intents the gateway answers by keyword (STOP, STATUS, LANGUAGE) before Rasa sees the
# message. If no rule uses them, Rasa's "not used in any story or rule" warning is expected.
GATEWAY_INTENTS = frozenset({"change_language", "check_status", "stop"})

_PLACEHOLDER = re.compile(r"\{(\w+)\}")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_QUOTED = re.compile(r"'([^']+)'")

# Parser messages, and what they usually mean for someone editing a text file.
_YAML_HINTS = (
    ("mapping values are not allowed", "a text that contains ': ' must be put in double quotes"),
    ("cannot start any token", "use spaces, not tabs, and put texts that start with "
                               "a special character (@, `, %, *) in double quotes"),
    ("could not find expected ':'", "a line is missing its ':' or a quote is not closed"),
    ("found unexpected end of stream", "a quote is opened but never closed"),
    ("expected <block end>", "this line is indented differently from the lines above it"),
    ("did not find expected key", "this line is indented differently from the lines above it"),
    ("did not find expected '-'", "list items must all start with '- ' at the same indentation"),
    ("found duplicate anchor", "an '&' name is used twice"),
    ("expected ',' or ']'", "a list in [ ] is not closed, or an entry in it needs quotes"),
    ("expected alphabetic or numeric character", "an entry that starts with * or & needs "
                                                 "double quotes around it"),
)


@dataclass(frozen=True, order=True)
class Problem:
    """One mistake, at a place in a file. `str()` is `file:line: message`."""

    file: str  # relative to the repository root (absolute when outside it)
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


@dataclass
class _Source:
    """A parsed YAML file: the data and the node tree (which knows line numbers)."""

    path: Path
    name: str
    data: Any
    node: yaml.Node | None


@dataclass
class _Check:
    root: Path
    languages: Sequence[str]
    default: str
    project_dir: Path
    messages_dir: Path
    urgency_dir: Path
    config_file: Path
    min_examples: int
    problems: list[Problem] = field(default_factory=list)
    sources: dict[Path, _Source | None] = field(default_factory=dict)

    def name(self, path: Path) -> str:
        try:
            return path.resolve().relative_to(self.root.resolve()).as_posix()
        except ValueError:
            return str(path)

    def report(self, path: Path | str, line: int, message: str) -> None:
        name = path if isinstance(path, str) else self.name(path)
        self.problems.append(Problem(name, max(line, 1), message))

    def load(self, path: Path) -> _Source | None:
        """The parsed file, or None when it is missing or not valid YAML (reported once)."""
        if path not in self.sources:
            self.sources[path] = _parse(self, path)
        return self.sources[path]

    @property
    def responses_dir(self) -> Path:
        return self.project_dir / "responses"

    @property
    def nlu_dir(self) -> Path:
        return self.project_dir / "data" / "nlu"

    def responses_file(self, lang: str) -> Path:
        return self.responses_dir / f"{lang}.yml"

    def nlu_file(self, lang: str) -> Path:
        return self.nlu_dir / f"{lang}.yml"

    def messages_file(self, lang: str) -> Path:
        return self.messages_dir / f"{lang}.yml"


def check_project(
    *,
    languages: Sequence[str],
    default_language: str,
    project_dir: Path = PROJECT_DIR,
    messages_dir: Path = MESSAGES_DIR,
    urgency_dir: Path = URGENCY_DIR,
    config_file: Path = DEFAULT_YAML,
    root: Path | None = None,
    run_rasa: bool = True,
    min_examples: int = MIN_EXAMPLES,
    lexicon_checker: Callable[[Path], list[str]] | None = None,
    say: Callable[[str], None] = lambda message: None,
) -> list[Problem]:
    """Every problem found, sorted by file and line; an empty list means all is well.

    `root` is what file names are relative to (default: two levels above `project_dir`,
    i.e. the repository). `lexicon_checker(path)` checks one urgency word list and returns
    messages (`file:line: message`, `line N: message` or plain text); without it the lists
    are only checked for YAML syntax. `say` hears about slow steps (installing Rasa the
    first time).
    """
    check = _Check(
        root=root or project_dir.parent.parent, languages=list(languages),
        default=default_language, project_dir=project_dir, messages_dir=messages_dir,
        urgency_dir=urgency_dir, config_file=config_file, min_examples=min_examples,
    )
    _check_syntax_everywhere(check)
    _check_language_files(check)
    domain = _Domain.read(check)
    responses = _check_responses(check, domain)
    used_in_rules = _check_rules(check, domain, responses)
    _check_questions_and_usage(check, domain, responses, used_in_rules)
    _check_nlu(check, domain)
    _check_messages(check)
    _check_urgency(check, lexicon_checker)
    if run_rasa:
        _check_with_rasa(check, domain, say)
    return sorted(set(check.problems))


def check_yaml_file(path: Path, *, root: Path) -> list[Problem]:
    """Only the YAML syntax of one file (the CLI uses it when config/tipline.yml is broken)."""
    check = _Check(root=root, languages=[], default="", project_dir=PROJECT_DIR,
                   messages_dir=MESSAGES_DIR, urgency_dir=URGENCY_DIR, config_file=path,
                   min_examples=MIN_EXAMPLES)
    check.load(path)
    return sorted(check.problems)


# --- reading YAML with line numbers ---------------------------------------------------------


def _parse(check: _Check, path: Path) -> _Source | None:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except UnicodeDecodeError as exc:
        check.report(path, 1, f"this file is not UTF-8 text ({exc.reason}): save it as UTF-8")
        return None
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "unreadable"
        hint = next((h for key, h in _YAML_HINTS if key in problem), None)
        hint = hint or "check the indentation, quotes and colons on this line and the one above"
        check.report(path, mark.line + 1 if mark else 1,
                     f"this file is not valid YAML ({problem}): {hint}")
        return None
    except yaml.YAMLError as exc:
        check.report(path, 1, f"this file is not valid YAML: {exc}")
        return None
    finally:
        loader.dispose()
    if node is not None:
        _check_duplicate_keys(check, path, node)
    return _Source(path, check.name(path), data, node)


def _check_duplicate_keys(check: _Check, path: Path, node: yaml.Node) -> None:
    # PyYAML (and Rasa) silently keep the last of two equal keys: a translation pasted twice
    # would hide the first one without any error.
    for mapping in _walk(node):
        if not isinstance(mapping, yaml.MappingNode):
            continue
        seen: dict[str, int] = {}
        for key, _value in mapping.value:
            if not isinstance(key, yaml.ScalarNode):
                continue
            if key.value in seen:
                check.report(path, _line(key), f"'{key.value}' appears twice in this part of "
                             f"the file (first on line {seen[key.value]}); only this one is used. "
                             "Remove one of them")
            else:
                seen[key.value] = _line(key)


def _walk(node: yaml.Node) -> Iterator[yaml.Node]:
    yield node
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            yield from _walk(key)
            yield from _walk(value)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            yield from _walk(item)


def _line(node: yaml.Node | None) -> int:
    return node.start_mark.line + 1 if node is not None else 1


def _key(node: yaml.Node | None, name: str) -> yaml.Node | None:
    """The key node `name` of a mapping node (the last one, as PyYAML's loader keeps)."""
    found = None
    if isinstance(node, yaml.MappingNode):
        for key, _value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value == name:
                found = key
    return found


def _value(node: yaml.Node | None, name: str) -> yaml.Node | None:
    found = None
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value == name:
                found = value
    return found


def _items(node: yaml.Node | None) -> list[yaml.Node]:
    return list(node.value) if isinstance(node, yaml.SequenceNode) else []


def _key_line(source: _Source, *names: str) -> int:
    """Line of a nested key (`names` is the path); the deepest key found, else line 1."""
    node, line = source.node, 1
    for name in names:
        key = _key(node, name)
        if key is None:
            break
        line, node = _line(key), _value(node, name)
    return line


# --- the checks -------------------------------------------------------------------------------


def _check_syntax_everywhere(check: _Check) -> None:
    # Every file in the source folders, not only the configured languages': an administrator
    # preparing a new language learns about a broken file before switching it on.
    required = [
        check.project_dir / "domain.yml", check.project_dir / "config.yml",
        check.project_dir / "data" / "rules.yml", check.config_file,
    ]
    for path in required:
        if not path.is_file():
            check.report(path, 1, "this file is missing: restore it from the repository")
    paths = list(required)
    for folder in (check.nlu_dir, check.responses_dir, check.messages_dir, check.urgency_dir):
        if folder.is_dir():
            paths += sorted(folder.glob("*.yml")) + sorted(folder.glob("*.yaml"))
    for path in paths:
        check.load(path)


def _check_language_files(check: _Check) -> None:
    config = check.load(check.config_file)
    line = _key_line(config, "languages") if config else 1
    where = check.config_file if config else check.name(check.config_file)
    for lang in check.languages:
        for path, what in (
            (check.responses_file(lang), "what the dialogue says"),
            (check.nlu_file(lang), "the training examples"),
            (check.messages_file(lang), "what the gateway says"),
        ):
            if not path.is_file():
                check.report(where, line, f"language '{lang}' is switched on, but "
                             f"{check.name(path)} ({what}) is missing: create it from the "
                             f"'{check.default}' file and translate it, or remove '{lang}' "
                             "from languages")
        if not _detectable(lang):
            check.report(where, line, f"language '{lang}' cannot be recognised in messages: "
                         "the language detector (langdetect) has no profile for that code. "
                         "Check that it is the ISO 639-1 code of the language")


def _detectable(lang: str) -> bool:
    # nlu/language.py refuses to start without langdetect's profile of every language.
    try:
        profiles = resources.files("langdetect") / "profiles"
    except ModuleNotFoundError:
        return True  # not installed here: the gateway's own start-up will tell
    return (profiles / lang).is_file()


@dataclass
class _Domain:
    source: _Source | None
    intents: set[str]
    slots: dict[str, dict[str, Any]]
    forms: dict[str, list[str]]
    actions: set[str]

    @classmethod
    def read(cls, check: _Check) -> _Domain:
        source = check.load(check.project_dir / "domain.yml")
        data = source.data if source and isinstance(source.data, dict) else {}
        if source and not isinstance(source.data, dict):
            check.report(source.path, 1, "domain.yml must be a mapping (intents:, slots:, ...)")
        intents: set[str] = set()
        for item in data.get("intents") or []:
            # An intent is a name, or a mapping {name: {properties}}.
            intents |= set(item) if isinstance(item, dict) else {str(item)}
        slots = {str(k): (v if isinstance(v, dict) else {}) for k, v in
                 (data.get("slots") or {}).items()}
        forms: dict[str, list[str]] = {}
        for form, spec in (data.get("forms") or {}).items():
            required = spec.get("required_slots") if isinstance(spec, dict) else None
            forms[str(form)] = [str(s) for s in required] if isinstance(required, list) else []
        actions = {str(a) for a in data.get("actions") or []}
        return cls(source, intents, slots, forms, actions)

    def slot_values(self, check: _Check, slot: str) -> list[Any] | None:
        """The allowed values of a categorical slot (None: any value is allowed)."""
        if slot == "language":
            # Filled by the build from config/tipline.yml; empty in domain.yml.
            return list(check.languages)
        spec = self.slots.get(slot, {})
        if spec.get("type") == "categorical":
            return list(spec.get("values") or [])
        if spec.get("type") == "bool":
            return [True, False]
        return None

    def question_for(self, form: str, slot: str, responses: set[str]) -> bool:
        return bool({f"utter_ask_{form}_{slot}", f"utter_ask_{slot}"} & responses
                    or {f"action_ask_{form}_{slot}", f"action_ask_{slot}"} & self.actions)


@dataclass
class _Responses:
    """The parsed responses files of the configured languages (broken ones left out)."""

    by_language: dict[str, _Source]

    def names(self, lang: str) -> set[str]:
        source = self.by_language.get(lang)
        return set(source.data) if source else set()


def _check_responses(check: _Check, domain: _Domain) -> _Responses:
    loaded: dict[str, _Source] = {}
    for lang in check.languages:
        source = check.load(check.responses_file(lang))
        if source is None:
            continue
        if source.data is None:
            source.data = {}
        if not isinstance(source.data, dict):
            check.report(source.path, 1, "this file must list responses as `name:` followed by "
                         "an indented `text:`")
            continue
        loaded[lang] = source
        for name, response in source.data.items():
            _check_one_response(check, domain, source, str(name), response)
    responses = _Responses(loaded)
    default = loaded.get(check.default)
    if default is None:
        return responses
    for lang, source in loaded.items():
        if lang == check.default:
            continue
        for name in default.data:
            if name not in source.data:
                check.report(default.path, _key_line(default, name),
                             f"'{name}' has no {lang} translation: add it to {source.name}")
        for name in source.data:
            if name not in default.data:
                check.report(source.path, _key_line(source, name),
                             f"'{name}' is not in {default.name} (the default language): "
                             "check the spelling, or add it there first")
                continue
            _compare_response(check, default, source, str(name))
    for name, response in default.data.items():
        text = response.get("text") if isinstance(response, dict) else None
        for placeholder in _placeholders(text):
            if placeholder not in domain.slots and domain.source is not None:
                check.report(default.path, _key_line(default, name, "text"),
                             f"'{{{placeholder}}}' in '{name}' is not a slot of domain.yml, "
                             "so it would be sent as written: check the spelling")
    return responses


def _check_one_response(
    check: _Check, domain: _Domain, source: _Source, name: str, response: Any
) -> None:
    line = _key_line(source, name)
    if not isinstance(response, dict):
        check.report(source.path, line, f"'{name}' needs an indented `text:` line under it")
        return
    text = response.get("text")
    if not isinstance(text, str) or not text.strip():
        check.report(source.path, _key_line(source, name, "text"),
                     f"'{name}' has no text: write what the bot should say after `text:`")
    buttons = response.get("buttons")
    if buttons is not None:
        if not isinstance(buttons, list):
            check.report(source.path, _key_line(source, name, "buttons"),
                         f"the buttons of '{name}' must be a list of `- title:` / `payload:`")
        else:
            button_nodes = _items(_value(_value(source.node, name), "buttons"))
            for i, button in enumerate(buttons):
                node = button_nodes[i] if i < len(button_nodes) else None
                if not isinstance(button, dict) or not str(button.get("title") or "").strip():
                    check.report(source.path, _line(node),
                                 f"button {i + 1} of '{name}' has no title")
    conditions = response.get("condition")
    if conditions is None:
        return
    condition_nodes = _items(_value(_value(source.node, name), "condition"))
    if not isinstance(conditions, list):
        check.report(source.path, _key_line(source, name, "condition"),
                     f"the condition of '{name}' must be a list of `- type: slot` entries")
        return
    for i, condition in enumerate(conditions):
        node = condition_nodes[i] if i < len(condition_nodes) else None
        if not isinstance(condition, dict) or condition.get("type") != "slot":
            check.report(source.path, _line(node), f"a condition of '{name}' must be "
                         "`- type: slot` with `name:` and `value:` (Rasa knows no other kind)")
            continue
        slot, value = str(condition.get("name")), condition.get("value")
        name_line = _line(_key(node, "name") or node)
        value_line = _line(_key(node, "value") or node)
        if slot not in domain.slots and slot not in RASA_SLOTS:
            check.report(source.path, name_line, f"a condition of '{name}' names the slot "
                         f"'{slot}', which is not in domain.yml: check the spelling")
            continue
        allowed = domain.slot_values(check, slot)
        if slot == "language" and value not in check.languages:
            check.report(source.path, value_line, f"a condition of '{name}' asks for language "
                         f"'{value}', which is not switched on in "
                         f"{check.name(check.config_file)} (languages: "
                         f"{', '.join(check.languages)})")
        elif allowed is not None and value is not None and value not in allowed:
            check.report(source.path, value_line, f"a condition of '{name}' asks for "
                         f"{slot}={value!r}; that slot can only be "
                         f"{', '.join(map(str, allowed))}")


def _placeholders(text: Any) -> set[str]:
    return set(_PLACEHOLDER.findall(text)) if isinstance(text, str) else set()


def _compare_response(check: _Check, default: _Source, source: _Source, name: str) -> None:
    original, translation = default.data[name], source.data[name]
    if not isinstance(original, dict) or not isinstance(translation, dict):
        return  # already reported as malformed
    _compare_placeholders(check, default, source, (name, "text"),
                          original.get("text"), translation.get("text"), name)
    want, got = original.get("buttons") or [], translation.get("buttons") or []
    if not isinstance(want, list) or not isinstance(got, list):
        return
    buttons_line = _key_line(source, name, "buttons") if got else _key_line(source, name)
    if len(want) != len(got):
        check.report(source.path, buttons_line, f"'{name}' has {len(got)} button(s) here but "
                     f"{len(want)} in {default.name}: translate each button, keep their number")
        return
    nodes = _items(_value(_value(source.node, name), "buttons"))
    for i, (a, b) in enumerate(zip(want, got, strict=True)):
        expected = a.get("payload") if isinstance(a, dict) else None
        actual = b.get("payload") if isinstance(b, dict) else None
        if expected != actual:
            node = nodes[i] if i < len(nodes) else None
            line = _line(_key(node, "payload") or node)
            check.report(source.path, line, f"button {i + 1} of '{name}' sends {actual!r} but "
                         f"{expected!r} in {default.name}: translate only the title, the "
                         "payload must stay as it is")


def _compare_placeholders(
    check: _Check, default: _Source, source: _Source, key_path: tuple[str, ...],
    original: Any, translation: Any, name: str,
) -> None:
    want, got = _placeholders(original), _placeholders(translation)
    line = _key_line(source, *key_path)
    for missing in sorted(want - got):
        check.report(source.path, line, f"'{name}' lacks {{{missing}}}, which {default.name} "
                     "has: the reporter would not get that value. Copy it into the translation "
                     "exactly as written, braces included")
    for extra in sorted(got - want):
        check.report(source.path, line, f"'{name}' has {{{extra}}}, which {default.name} has "
                     "not: check the spelling (placeholders are not translated)")


def _check_rules(check: _Check, domain: _Domain, responses: _Responses) -> set[str] | None:
    """Check data/rules.yml; return the actions it uses (None when it could not be read)."""
    source = check.load(check.project_dir / "data" / "rules.yml")
    if source is None or domain.source is None:
        return None
    data = source.data if isinstance(source.data, dict) else {}
    if not isinstance(source.data, dict):
        check.report(source.path, 1, "rules.yml must contain `rules:` with a list of rules")
        return None
    default_responses = responses.names(check.default)
    know_responses = check.default in responses.by_language
    used: set[str] = set()
    for section in ("rules", "stories"):
        blocks = data.get(section) or []
        nodes = _items(_value(source.node, section))
        if not isinstance(blocks, list):
            continue
        for block, node in zip(blocks, nodes, strict=False):
            if not isinstance(block, dict):
                continue
            title = str(block.get("rule") or block.get("story") or "?")
            steps = list(zip(block.get("condition") or [],
                             _items(_value(node, "condition")), strict=False))
            steps += list(zip(block.get("steps") or [], _items(_value(node, "steps")),
                              strict=False))
            for step, step_node in _flatten_steps(steps):
                _check_step(check, domain, source, title, step, step_node,
                            default_responses, know_responses, used)
    return used


def _flatten_steps(steps: list[tuple[Any, yaml.Node]]) -> Iterator[tuple[Any, yaml.Node]]:
    for step, node in steps:
        if isinstance(step, dict) and isinstance(step.get("or"), list):
            yield from _flatten_steps(list(zip(step["or"], _items(_value(node, "or")),
                                               strict=False)))
        else:
            yield step, node


def _check_step(
    check: _Check, domain: _Domain, source: _Source, title: str, step: Any, node: yaml.Node,
    default_responses: set[str], know_responses: bool, used: set[str],
) -> None:
    if not isinstance(step, dict):
        return
    where = f"the rule '{title}'"
    if "intent" in step:
        intent = str(step["intent"])
        if intent not in domain.intents and intent not in RASA_INTENTS:
            check.report(source.path, _line(_value(node, "intent")),
                         f"{where} waits for the intent '{intent}', which is not listed under "
                         "`intents:` in domain.yml: check the spelling")
    if "action" in step:
        action = str(step["action"])
        used.add(action)
        line = _line(_value(node, "action"))
        if action.startswith("utter_"):
            if know_responses and action not in default_responses:
                check.report(source.path, line, f"{where} says '{action}', but there is no "
                             f"response of that name in "
                             f"{check.name(check.responses_file(check.default))}")
        elif (action not in domain.actions and action not in domain.forms
              and action not in RASA_ACTIONS):
            check.report(source.path, line, f"{where} runs '{action}', which is neither a "
                         "response (utter_...), a form, nor an action listed under `actions:` "
                         "in domain.yml: check the spelling")
    if "active_loop" in step:
        loop = step["active_loop"]
        if loop is not None and str(loop) not in domain.forms:
            check.report(source.path, _line(_value(node, "active_loop")),
                         f"{where} uses the form '{loop}', which is not under `forms:` in "
                         "domain.yml")
    if "slot_was_set" in step:
        entries = step["slot_was_set"] if isinstance(step["slot_was_set"], list) else []
        for entry, entry_node in zip(entries, _items(_value(node, "slot_was_set")),
                                     strict=False):
            pairs = entry.items() if isinstance(entry, dict) else [(entry, None)]
            for slot, value in pairs:
                slot = str(slot)
                if slot not in domain.slots and slot not in RASA_SLOTS:
                    check.report(source.path, _line(entry_node), f"{where} checks the slot "
                                 f"'{slot}', which is not under `slots:` in domain.yml")
                    continue
                allowed = domain.slot_values(check, slot)
                if isinstance(entry, dict) and value is not None and allowed is not None \
                        and value not in allowed:
                    check.report(source.path, _line(entry_node), f"{where} checks "
                                 f"{slot}={value!r}, but that slot can only be "
                                 f"{', '.join(map(str, allowed))}")


def _check_questions_and_usage(
    check: _Check, domain: _Domain, responses: _Responses, used_in_rules: set[str] | None
) -> None:
    default = responses.by_language.get(check.default)
    if default is None or domain.source is None:
        return
    names = set(default.data)
    questions: set[str] = set()
    for form, slots in domain.forms.items():
        slot_nodes = _items(_value(_value(_value(domain.source.node, "forms"), form),
                                   "required_slots"))
        for i, slot in enumerate(slots):
            line = _line(slot_nodes[i]) if i < len(slot_nodes) else 1
            if slot not in domain.slots:
                check.report(domain.source.path, line, f"the form '{form}' needs the slot "
                             f"'{slot}', which is not under `slots:`")
            questions |= {f"utter_ask_{form}_{slot}", f"utter_ask_{slot}"}
            if not domain.question_for(form, slot, names):
                check.report(domain.source.path, line, f"the form '{form}' asks for '{slot}' "
                             f"but has no question for it: add 'utter_ask_{slot}' to "
                             f"{default.name}")
    for name, why in SENT_BY_CODE.items():
        if name not in names:
            check.report(default.path, 1, f"'{name}' is missing: {why}")
    if used_in_rules is None:
        return  # rules.yml is broken: every response would look unused
    for name in default.data:
        if name not in used_in_rules and name not in questions and name not in SENT_BY_CODE:
            check.report(default.path, _key_line(default, name), f"'{name}' is never said: no "
                         "rule in data/rules.yml uses it and no form or action sends it. "
                         "Use it in a rule, or remove it from every language")


def _examples(source: _Source, item_node: yaml.Node | None) -> list[tuple[str, int]]:
    """The examples of one `- intent:` entry with their line numbers."""
    node = _value(item_node, "examples")
    if isinstance(node, yaml.ScalarNode):
        lines = node.value.split("\n")
        # In a `|` block the text starts on the line after the `|`; other styles cannot be
        # mapped line by line, so they point at the block's start.
        literal = node.style == "|"
        found = []
        for i, raw in enumerate(lines):
            text = raw.strip()
            if not text:
                continue
            line = node.start_mark.line + 2 + i if literal else _line(node)
            found.append((text[1:].strip() if text.startswith("-") else text, line))
        return found
    found = []
    for entry in _items(node):  # the long form: `- text: ...` with metadata
        text_node = _value(entry, "text")
        if isinstance(text_node, yaml.ScalarNode):
            found.append((text_node.value, _line(text_node)))
    return found


def _normalized(text: str) -> str:
    # The featurizers lower-case and split on whitespace: these count as the same example.
    return " ".join(text.casefold().split())


def _check_nlu(check: _Check, domain: _Domain) -> None:
    # One model serves every language, so the same text under two intents in two languages
    # is as confusing to it as within one (Rasa refuses it too): text -> (file, line, intent).
    everywhere: dict[str, tuple[str, int, str]] = {}
    for lang in check.languages:
        source = check.load(check.nlu_file(lang))
        if source is None:
            continue
        data = source.data if isinstance(source.data, dict) else {}
        entries = data.get("nlu") if isinstance(data.get("nlu"), list) else None
        if entries is None:
            check.report(source.path, 1, "this file must contain `nlu:` with a list of "
                         "`- intent:` entries")
            continue
        counts: Counter[str] = Counter()
        first_line: dict[str, int] = {}
        seen: dict[str, tuple[int, str]] = {}
        for entry, node in zip(entries, _items(_value(source.node, "nlu")), strict=False):
            if not isinstance(entry, dict) or "intent" not in entry:
                continue  # synonyms, regexes and lookup tables
            intent = str(entry["intent"])
            line = _line(_value(node, "intent"))
            first_line.setdefault(intent, line)
            if intent not in domain.intents and domain.source is not None:
                check.report(source.path, line, f"the intent '{intent}' is not listed under "
                             "`intents:` in domain.yml: check the spelling, or add it there")
            for text, example_line in _examples(source, node):
                if not text:
                    check.report(source.path, example_line, f"an empty example in '{intent}'")
                    continue
                counts[intent] += 1
                key = _normalized(text)
                if key in seen:
                    other_line, other_intent = seen[key]
                    where = ("" if other_intent == intent
                             else f" under the intent '{other_intent}'")
                    check.report(source.path, example_line, f"the example '{text}' is already "
                                 f"on line {other_line}{where}: remove one of them")
                    continue
                seen[key] = (example_line, intent)
                other_file, other_line, other_intent = everywhere.setdefault(
                    key, (source.name, example_line, intent))
                if other_intent != intent:
                    check.report(source.path, example_line, f"the example '{text}' is under "
                                 f"'{intent}' here but under '{other_intent}' in "
                                 f"{other_file}:{other_line}; one model serves all languages "
                                 "and cannot learn both: remove or reword one of them")
        for intent in sorted(domain.intents):
            if intent in RASA_INTENTS:
                continue
            if intent not in first_line:
                check.report(source.path, _key_line(source, "nlu"), f"no examples for the "
                             f"intent '{intent}': add `- intent: {intent}` with at least "
                             f"{check.min_examples} examples in this language")
            elif counts[intent] < check.min_examples:
                check.report(source.path, first_line[intent], f"the intent '{intent}' has "
                             f"{counts[intent]} example(s); it needs at least "
                             f"{check.min_examples} for the bot to recognise it in '{lang}'")


def _check_messages(check: _Check) -> None:
    loaded: dict[str, _Source] = {}
    for lang in check.languages:
        source = check.load(check.messages_file(lang))
        if source is None:
            continue
        if not isinstance(source.data, dict):
            check.report(source.path, 1, "this file must list texts as `name: \"text\"`")
            continue
        loaded[lang] = source
        for name, text in source.data.items():
            if name == _KEYWORDS:
                continue
            if not isinstance(text, str) or not text.strip():
                check.report(source.path, _key_line(source, str(name)),
                             f"'{name}' has no text: write it in double quotes after the colon")
    _check_keywords(check, loaded)
    default = loaded.get(check.default)
    if default is None:
        return
    texts = [name for name in default.data if name != _KEYWORDS]
    for lang, source in loaded.items():
        if lang == check.default:
            continue
        for name in texts:
            if name not in source.data:
                check.report(default.path, _key_line(default, name),
                             f"'{name}' has no {lang} translation: add it to {source.name}")
        for name in source.data:
            if name == _KEYWORDS:
                continue
            if name not in default.data:
                check.report(source.path, _key_line(source, name),
                             f"'{name}' is not in {default.name} (the default language): "
                             "check the spelling, or add it there first")
            else:
                _compare_placeholders(check, default, source, (name,),
                                      default.data[name], source.data[name], name)


# The command words section of config/messages/<lang>.yml: per-language word lists, not
# translated texts, so a language may have words for fewer commands than another.
_KEYWORDS = "keywords"


def _check_keywords(check: _Check, loaded: dict[str, _Source]) -> None:
    # Looked up by name: config/messages.py owns the command names and the normalization
    # (the gateway matches "Arrêt !" to ARRET), and the check must agree with it exactly.
    commands = getattr(gateway_messages, "KEYWORD_COMMANDS", None)
    normalize: Callable[[str], str] = getattr(
        gateway_messages, "normalize_keyword", lambda word: " ".join(word.casefold().split()))
    meaning: dict[str, tuple[str, str, int]] = {}  # word -> (command, file, line)
    for source in loaded.values():
        if _KEYWORDS not in source.data:
            continue
        section, node = source.data[_KEYWORDS], _value(source.node, _KEYWORDS)
        if not isinstance(section, dict):
            check.report(source.path, _key_line(source, _KEYWORDS), "`keywords:` must list "
                         "commands, each with a list of words: `delete: [\"STOP\", \"END\"]`")
            continue
        for command, words in section.items():
            line = _line(_key(node, str(command)))
            if commands is not None and command not in commands:
                check.report(source.path, line, f"'{command}' is not a command; the commands "
                             f"are {', '.join(sorted(commands))}")
                continue
            word_nodes = _items(_value(node, str(command)))
            if not isinstance(words, list) or not all(
                    isinstance(word, str) and word.strip() for word in words):
                check.report(source.path, line, f"the words for '{command}' must be a list of "
                             "texts in double quotes, e.g. [\"STOP\", \"END\"]")
                continue
            for i, word in enumerate(words):
                word_line = _line(word_nodes[i]) if i < len(word_nodes) else line
                key = normalize(word)
                if key in meaning and meaning[key][0] != command:
                    other, other_file, other_line = meaning[key]
                    check.report(source.path, word_line, f"'{word}' means '{command}' here but "
                                 f"'{other}' in {other_file}:{other_line}; a word can mean only "
                                 "one command in all languages, or the gateway will not start")
                else:
                    meaning.setdefault(key, (str(command), source.name, word_line))


_LEXICON_PROBLEM = re.compile(r"^(?:(?P<file>.+?):)?(?:line )?(?P<line>\d+):\s*(?P<msg>.*)$",
                              re.DOTALL)


def _check_urgency(check: _Check, checker: Callable[[Path], list[str]] | None) -> None:
    if checker is None or not check.urgency_dir.is_dir():
        return
    for path in sorted(check.urgency_dir.glob("*.yml")):
        if check.load(path) is None:
            continue  # syntax already reported; the checker would only repeat it
        # Our duplicate-key check may have spoken already: one message per place is enough.
        already = {(p.file, p.line) for p in check.problems}
        for message in checker(path):
            match = _LEXICON_PROBLEM.match(message)
            line, text = (int(match["line"]), match["msg"]) if match else (1, message)
            if (check.name(path), line) not in already:
                check.report(path, line, text)


# --- Rasa's own validation ----------------------------------------------------------------------


def _check_with_rasa(check: _Check, domain: _Domain, say: Callable[[str], None]) -> None:
    from nlu.runtime import RASA_ENV, ensure_rasa_env

    env = ensure_rasa_env(say=say)
    with tempfile.TemporaryDirectory(prefix="tipline-check-") as tmp:
        built_dir = Path(tmp) / "project"
        try:
            built = build_project(check.languages, check.default, built_dir,
                                  project_dir=check.project_dir)
        except Exception as exc:  # any malformed source can stop the build, in many ways
            # Our own checks explain a broken source better; only say something if they
            # found nothing, so the administrator is never left with a silent failure.
            if not check.problems:
                check.report(check.project_dir / "domain.yml", 1,
                             f"the project cannot be assembled for Rasa: {exc}")
            return
        result = subprocess.run(
            [str(env.rasa), "data", "validate", "--fail-on-warnings",
             "--domain", str(built.domain), "--data", str(built.data),
             "--config", str(built.config)],
            env={**os.environ, **RASA_ENV}, cwd=tmp, capture_output=True, text=True,
            check=False, timeout=900,
        )
    output = _ANSI.sub("", result.stderr + "\n" + result.stdout)
    messages = list(_rasa_messages(output))
    already = {(p.file, p.line) for p in check.problems}
    questions = {f"utter_ask_{slot}" for slots in domain.forms.values() for slot in slots}
    questions |= {f"utter_ask_{form}_{slot}" for form, slots in domain.forms.items()
                  for slot in slots}
    reported = False
    for message in messages:
        unused = re.match(r"The (utterance|intent) '(\w+)' is not used in any story or rule",
                          message)
        # Intentional, see SENT_BY_CODE and GATEWAY_INTENTS: forms ask their own questions,
        # actions send responses, the gateway answers some intents by keyword.
        if unused and (unused[2] in questions or unused[2] in SENT_BY_CODE
                       or unused[2] in GATEWAY_INTENTS):
            continue
        reported = True
        places, text = _locate(check, built_dir, message)
        if any((check.name(file), line) in already for file, line in places):
            continue  # our own check already said it at that place, in plainer words
        check.report(places[0][0], places[0][1], f"Rasa: {text}")
    if result.returncode != 0 and not reported:
        tail = " ".join(output.strip().splitlines()[-3:])
        check.report(check.project_dir / "domain.yml", 1,
                     f"Rasa's validation failed without saying why: {tail}")


_LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d (?P<level>[A-Z]+)\s+\S+\s+- (?P<msg>.*)$")
_WARNING_LINE = re.compile(r"^\S.*?:\d+: (?P<category>\w+Warning): (?P<msg>.*)$")
_SUMMARY = "Project validation completed with errors."


def _rasa_messages(output: str) -> Iterator[str]:
    """Rasa's warnings and errors, one string each; library noise left out.

    Rasa prints `warnings.warn` output (`path:line: UserWarning: message`, possibly over
    several lines, then `  More info at <url>`), log lines, and errors on stdout.
    """
    current: list[str] | None = None
    for raw in output.splitlines():
        line = raw.rstrip()
        warning, log = _WARNING_LINE.match(line), _LOG_LINE.match(line)
        if warning or log or not line or line.lstrip().startswith("More info at"):
            if current:
                yield " ".join(part.strip() for part in current if part.strip())
            current = None
            if warning and warning["category"] in ("UserWarning", "FutureWarning"):
                current = [warning["msg"]]
            elif log and log["level"] in ("WARNING", "ERROR"):
                current = [log["msg"]]
            continue
        if current is not None:
            current.append(line)
        elif line.strip() != _SUMMARY and not line.startswith(" " * 2 + "import ") \
                and "site-packages" not in line and "declare_namespace" not in line \
                and "Implementing implicit namespace packages" not in line:
            current = [line]  # an error printed on its own (e.g. YamlValidationException)
    if current:
        yield " ".join(part.strip() for part in current if part.strip())


def _locate(check: _Check, built_dir: Path, message: str) -> tuple[list[tuple[Path, int]], str]:
    """Where in our sources a Rasa message belongs (first place first), and the message
    with our file names instead of the assembled project's."""
    verbatim = {  # built file -> source: these are copied byte for byte, so lines match
        built_dir / "data" / "rules.yml": check.project_dir / "data" / "rules.yml",
        **{built_dir / "data" / f"nlu-{lang}.yml": check.nlu_file(lang)
           for lang in check.languages},
    }
    text = message
    for built, source in sorted(verbatim.items(), key=lambda item: -len(str(item[0]))):
        text = text.replace(str(built), check.name(source))
    text = text.replace(str(built_dir / "domain.yml"), check.name(check.project_dir / "domain.yml"))
    text = text.replace(str(built_dir / "config.yml"), check.name(check.project_dir / "config.yml"))
    for built, source in verbatim.items():
        place = re.search(re.escape(str(built)) + r":(\d+)", message)
        if place:
            return [(source, int(place[1]))], text

    domain = check.project_dir / "domain.yml"
    rules = check.project_dir / "data" / "rules.yml"
    nlu = [check.nlu_file(lang) for lang in check.languages]
    default_responses = check.responses_file(check.default)
    example = re.match(r"The example '(.+)' was found labeled with multiple", message)
    if example:
        # The same text under two intents, often in two languages: name every place.
        places = [(path, line) for path in nlu for line in _example_lines(check, path,
                                                                           example[1])]
        if places:
            where = ", ".join(f"{check.name(path)}:{line}" for path, line in places)
            return places, f"{text} It is at {where}"
    if "training data" in message or "example" in message:
        order = [*nlu, domain]
    elif "utterance" in message:
        order = [default_responses, rules, domain]
    elif "stories" in message or "block" in message or "story" in message:
        order = [rules, domain]
    elif "config" in message:
        order = [check.project_dir / "config.yml"]
    else:
        order = [domain, rules, default_responses, *nlu]
    for name in _QUOTED.findall(message):
        for path in order:
            line = _find_in(check, path, name)
            if line:
                return [(path, line)], text
    return [(order[0], 1)], text


def _find_in(check: _Check, path: Path, name: str) -> int | None:
    """First line of `path` where `name` is a key, a value, or an NLU example."""
    source = check.load(path)
    if source is None or source.node is None:
        return None
    for node in _walk(source.node):
        if isinstance(node, yaml.ScalarNode) and node.value == name:
            return _line(node)
    lines = _example_lines(check, path, name)
    return lines[0] if lines else None


def _example_lines(check: _Check, path: Path, example: str) -> list[int]:
    source = check.load(path)
    if source is None:
        return []
    return [line for item in _items(_value(source.node, "nlu"))
            for text, line in _examples(source, item) if text == example]
