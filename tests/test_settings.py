"""Configuration: refuse placeholder secrets outside development mode."""

from __future__ import annotations

from pathlib import Path

import pytest

from config import SettingsError, load_settings
from tests.conftest import make_settings


def test_production_refuses_missing_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("TIPLINE_PRIVACY__PEPPER", "TIPLINE_RASA__TOKEN", "TIPLINE_ENVIRONMENT"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(SettingsError) as error:
        load_settings(environment="production")
    assert "TIPLINE_PRIVACY__PEPPER" in str(error.value)
    assert "TIPLINE_RASA__TOKEN" in str(error.value)


def test_production_refuses_placeholders(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="TIPLINE_RASA__TOKEN"):
        make_settings(tmp_path, rasa={"url": "http://127.0.0.1:5005", "token": "change-me"})


def test_development_allows_placeholders_but_reports_them(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path, environment="development", rasa={"url": "http://x:5005", "token": "change-me"}
    )
    assert "TIPLINE_RASA__TOKEN" in settings.enforce_secrets()


def test_environment_overrides_yaml(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TIPLINE_EMERGENCY_NUMBER", "999")
    settings = make_settings(tmp_path, rasa={"url": "http://x:5005", "token": "from-init"})
    assert settings.emergency_number == "999"


def test_default_language_must_be_configured(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="default_language"):
        make_settings(tmp_path, languages=["fr"], default_language="en")


def test_languages_must_be_iso_codes(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="ISO 639-1"):
        make_settings(tmp_path, languages=["english"])
