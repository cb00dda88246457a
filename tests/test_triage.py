"""`tipline triage`: the real console script, fed JSON Lines on stdin, read back line by line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

TIPLINE = Path(sys.executable).parent / "tipline"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A clean environment: six languages, no secrets at all, production mode."""
    config = tmp_path / "tipline.yml"
    config.write_text("languages: [en, fr, ar, sw, es, pt]\ndefault_language: en\n",
                      encoding="utf-8")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TIPLINE_")}
    # Production mode on purpose: triage must not demand secrets it never uses.
    clean.update({"TIPLINE_CONFIG_FILE": str(config), "TIPLINE_ENVIRONMENT": "production"})
    return clean


def triage(env: dict[str, str], *lines: str,
           args: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(TIPLINE), "triage", *args], input="".join(line + "\n" for line in lines),
        capture_output=True, text=True, encoding="utf-8", env=env, timeout=60, check=False,
    )


def answers(result: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_readme_example(env: dict[str, str]) -> None:
    result = triage(env, json.dumps({"text": "ils tirent sur le marché maintenant"}))
    assert result.returncode == 0, result.stderr
    [answer] = answers(result)
    assert answer["language"] == "fr"
    assert answer["urgency"] == "critical"
    assert 'critical: matched "ils tirent" (fr)' in answer["reasons"]
    assert 'time cue "maintenant" (fr)' in answer["reasons"]
    assert set(answer) == {"language", "urgency", "reasons"}


def test_one_answer_per_line_in_order(env: dict[str, str]) -> None:
    tips = [
        {"text": "somebody stole my motorbike from the compound last night"},
        {"text": "thank you for the quick response last week"},
        {"text": "please come to the school", "danger_now": True},
        {"text": "رجال مسلحين يهاجمون القرية الآن"},
        {"text": "meu filho está desaparecido desde ontem", "language": "pt"},
    ]
    result = triage(env, *(json.dumps(t, ensure_ascii=False) for t in tips))
    assert result.returncode == 0, result.stderr
    got = [(a["language"], a["urgency"]) for a in answers(result)]
    assert got == [("en", "normal"), ("en", "low"), ("en", "critical"), ("ar", "critical"),
                   ("pt", "high")]
    assert answers(result)[2]["reasons"] == ["danger_now=yes"]


def test_bad_lines_get_an_error_line_and_the_rest_continue(env: dict[str, str]) -> None:
    result = triage(
        env,
        "this is not json",
        json.dumps({"danger_now": True}),
        "",  # blank lines are not tips: no output for them
        json.dumps({"text": "found a bomb near the well", "danger_now": False}),
        json.dumps(["text"]),
        json.dumps({"text": "hello", "danger_now": "yes"}),
    )
    assert result.returncode == 1
    out = answers(result)
    assert len(out) == 5
    assert out[0]["error"].startswith("line 1: not JSON")
    assert out[1] == {"error": 'line 2: missing "text" (a string)'}
    assert out[2]["urgency"] == "critical"
    assert out[2]["reasons"][0] == "danger_now=no"
    assert out[3] == {"error": "line 5: expected a JSON object"}
    assert out[4] == {"error": 'line 6: "danger_now" must be true, false or null'}


def test_broken_lexicon_is_reported_with_file_and_line(env: dict[str, str],
                                                        tmp_path: Path) -> None:
    lexicon = tmp_path / "urgency"
    lexicon.mkdir()
    (lexicon / "en.yml").write_text("critical:\n  - bomb\nurgent:\n  - now\n", encoding="utf-8")
    result = triage(env, json.dumps({"text": "bomb"}), args=("--lexicon", str(lexicon)))
    assert result.returncode == 2
    assert result.stdout == ""
    assert f'{lexicon / "en.yml"}:3: unknown key "urgent"' in result.stderr


def test_custom_lexicon_is_used(env: dict[str, str], tmp_path: Path) -> None:
    lexicon = tmp_path / "urgency"
    lexicon.mkdir()
    (lexicon / "en.yml").write_text("high:\n  - goat\n", encoding="utf-8")
    result = triage(env, json.dumps({"text": "my goats"}), args=("--lexicon", str(lexicon)))
    assert result.returncode == 0, result.stderr
    assert answers(result)[0]["reasons"] == ['high: matched "goat" (en) as "goats"']
