"""Assemble the Rasa project that is trained from what administrators edit.

Sources (nlu/project/):
    config.yml, domain.yml, data/rules.yml     - the dialogue's shape, language-free
    data/nlu/<lang>.yml                         - training examples per language
    responses/<lang>.yml                        - what the bot says, per language

The build writes one Rasa project where every response has one variation per configured
language, conditioned on the `language` slot (Rasa's output channel is `collector` for the
REST channel, so slots are the only reliable condition), plus the default language's text
without a condition as the fallback. Its fingerprint keys the trained-model cache.

Exceptions:
    ProjectError - a source file is missing or malformed; the message names file:line.
"""

from __future__ import annotations

import copy
import hashlib
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

PROJECT_DIR = Path(__file__).resolve().parent / "project"
# Code that runs inside Rasa's NLU pipeline (see nlu/components/).
RASA_SIDE_CODE = (
    *sorted((Path(__file__).resolve().parent / "components").glob("*.py")),
    Path(__file__).resolve().parent / "normalize.py",
)


class ProjectError(ValueError):
    """A source file cannot be used. `str()` is `file:line: message`."""


@dataclass(frozen=True)
class BuiltProject:
    directory: Path
    fingerprint: str

    @property
    def domain(self) -> Path:
        return self.directory / "domain.yml"

    @property
    def config(self) -> Path:
        return self.directory / "config.yml"

    @property
    def data(self) -> Path:
        return self.directory / "data"


def _load_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ProjectError(f"{path}:1: file is missing") from exc
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else 1
        raise ProjectError(f"{path}:{line}: not valid YAML: {exc.problem}") from exc


def load_responses(project_dir: Path, language: str) -> dict[str, dict[str, Any]]:
    path = project_dir / "responses" / f"{language}.yml"
    data = _load_yaml(path)
    if not isinstance(data, dict):
        raise ProjectError(f"{path}:1: expected a mapping of response names to texts")
    for name, response in data.items():
        if not isinstance(response, dict) or not isinstance(response.get("text"), str):
            raise ProjectError(f"{path}:1: response {name!r} needs a `text`")
    return data


def build_project(
    languages: Sequence[str],
    default_language: str,
    out_dir: Path,
    *,
    project_dir: Path = PROJECT_DIR,
    extra_fingerprint: str = "",
) -> BuiltProject:
    """Write the assembled project to `out_dir` (replacing it) and return its fingerprint."""
    domain = _load_yaml(project_dir / "domain.yml")
    config = _load_yaml(project_dir / "config.yml")
    responses_by_language = {lang: load_responses(project_dir, lang) for lang in languages}

    domain["slots"]["language"]["values"] = list(languages)
    default = responses_by_language[default_language]
    merged: dict[str, list[dict[str, Any]]] = {}
    for name in default:
        variations: list[dict[str, Any]] = []
        for lang in languages:
            response = responses_by_language[lang].get(name)
            if response is None:
                continue  # `tipline flows check` reports it; the default text still answers
            condition = [{"type": "slot", "name": "language", "value": lang}]
            variations.append({**copy.deepcopy(response), "condition": condition})
        variations.append(copy.deepcopy(default[name]))  # no YAML anchors
        merged[name] = variations
    domain["responses"] = merged

    if out_dir.exists():
        shutil.rmtree(out_dir)
    (out_dir / "data").mkdir(parents=True)
    files: dict[str, str] = {
        "domain.yml": yaml.safe_dump(domain, allow_unicode=True, sort_keys=True),
        "config.yml": yaml.safe_dump(config, allow_unicode=True, sort_keys=True),
        "data/rules.yml": (project_dir / "data" / "rules.yml").read_text(encoding="utf-8"),
    }
    for lang in languages:
        source = project_dir / "data" / "nlu" / f"{lang}.yml"
        if not source.is_file():
            raise ProjectError(f"{source}:1: no training data for language {lang!r}")
        files[f"data/nlu-{lang}.yml"] = source.read_text(encoding="utf-8")

    digest = hashlib.sha256(extra_fingerprint.encode())
    # A trained model embeds what our own components do: their code is part of its identity.
    for code in RASA_SIDE_CODE:
        digest.update(code.read_bytes())
    for relative in sorted(files):
        (out_dir / relative).write_text(files[relative], encoding="utf-8")
        digest.update(relative.encode() + b"\0" + files[relative].encode() + b"\0")
    return BuiltProject(out_dir, digest.hexdigest()[:20])
