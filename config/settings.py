"""Settings groups, loaded from config/tipline.yml and the environment.

Precedence: environment variables > a `.env` file > config/tipline.yml > defaults.
Nested groups use `__` in variable names: TIPLINE_RASA__TOKEN, TIPLINE_PRIVACY__PEPPER.

Exceptions:
    SettingsError  - a secret is missing or still a placeholder outside development mode.
"""

from __future__ import annotations

import os
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

CONFIG_DIR = Path(__file__).resolve().parent
PROJECT_DIR = CONFIG_DIR.parent
DEFAULT_YAML = CONFIG_DIR / "tipline.yml"

# Values that mean "nobody set this yet". Refused outside development mode.
PLACEHOLDERS = frozenset({"", "change-me", "changeme", "changethis", "secret", "placeholder"})


class SettingsError(RuntimeError):
    """The configuration cannot be used (missing secret, placeholder, bad value)."""


class Environment(StrEnum):
    DEVELOPMENT = "development"
    PRODUCTION = "production"


class DatabaseSettings(BaseModel):
    # SQLite file by default; postgresql+psycopg://... when one machine is not enough.
    url: str = f"sqlite:///{PROJECT_DIR / 'var' / 'tipline.db'}"
    echo: bool = False


class RasaSettings(BaseModel):
    url: str = "http://127.0.0.1:5005"
    token: SecretStr = SecretStr("")
    timeout_seconds: float = 30.0
    # Where the Rasa process keeps its tracker store (sqlite) when the runner starts it.
    tracker_store_url: str = f"sqlite:///{PROJECT_DIR / 'var' / 'rasa-trackers.db'}"


class ActionsSettings(BaseModel):
    # Shared secret between the action server and the gateway's /internal API.
    token: SecretStr = SecretStr("")
    port: int = 5055


class TwilioSettings(BaseModel):
    account_sid: str = "AC00000000000000000000000000000000"
    auth_token: SecretStr = SecretStr("")
    # The number (or Messaging Service) residents text; replies go out from it.
    sms_from: str = ""
    # The public base URL Twilio calls, e.g. https://tips.example.org. Signatures are checked
    # against this, never against request.url: proxies rewrite the scheme and host.
    public_base_url: str = "http://127.0.0.1:8000"
    api_base_url: str = "https://api.twilio.com"


class WhatsAppSettings(BaseModel):
    # The WhatsApp sender, e.g. "whatsapp:+14155238886". Same Twilio account as SMS.
    sender: str = ""
    # Approved template (Twilio Content API ContentSid) used outside the 24-hour window.
    template_content_sid: str = ""
    # The template variable that receives the reply text, e.g. "1". Empty (the default): the
    # template carries no tip text, which a lock screen would show; it only invites a reply.
    template_text_variable: str = ""


class TelegramSettings(BaseModel):
    bot_token: SecretStr = SecretStr("")
    # Sent back by Telegram in X-Telegram-Bot-Api-Secret-Token (setWebhook secret_token).
    webhook_secret: SecretStr = SecretStr("")
    # "webhook" needs a public URL; "polling" works from behind NAT with no public URL.
    mode: str = "webhook"
    api_base_url: str = "https://api.telegram.org"


class PrivacySettings(BaseModel):
    # Key for reporter pseudonyms: HMAC-SHA256(pepper, channel:address).
    pepper: SecretStr = SecretStr("")
    # Fernet key(s) for the reply vault (urlsafe base64, 32 bytes). Never stored in the database.
    # Several keys, comma-separated, during a rotation: the first encrypts, all decrypt
    # (`tipline vault rotate` moves every entry to the first; then the old key can go).
    vault_key: SecretStr = SecretStr("")
    vault_days: int = 30
    # Words that end a conversation at once and erase it (whole message, any case); the
    # answer looks innocuous. Empty: off. Publicise the word you choose to residents.
    panic_words: list[str] = Field(default_factory=list)
    # Per-pseudonym rate limit: more messages than this within the window are slowed down
    # and flagged for officers, never dropped.
    rate_limit_messages: int = 30
    rate_limit_window_seconds: int = 600
    # Retention (bot/retention.py runs it every `retention_interval_minutes`; `tipline retention
    # run` runs it once). Tips with everything hanging off them are deleted this many days
    # after they reached a final status (closed, rejected, duplicate), unless on legal hold.
    retention_days: int = Field(default=90, ge=1)
    # Rasa tracker events older than this are deleted; so are reporter rows (conversation
    # state) silent this long with no reply address left, and files never attached to a tip.
    tracker_retention_days: int = Field(default=30, ge=1)
    # Processed inbound ledger rows: the dedupe key is needed only while a provider may retry.
    inbound_retention_hours: int = Field(default=48, ge=1)
    retention_interval_minutes: int = Field(default=60, ge=1)


class ConsoleSettings(BaseModel):
    # The duty officers' console (bot/console). Accounts live in the database, made with
    # `tipline officers create-admin` / `tipline officers create`.
    # A session ends after this long without a request; it must be logged in again.
    session_idle_minutes: int = Field(default=30, ge=1)
    # A session ends after this long even when busy (a stolen cookie does not live forever).
    session_max_hours: int = Field(default=12, ge=1)
    # How long "claim" / "next tip" reserves a tip for one officer; expired claims are free.
    claim_lease_minutes: int = Field(default=20, ge=1)
    # Supervisors and admins always need TOTP; this makes it mandatory for officers too.
    officer_totp_required: bool = False
    # Failed logins (per account and per client address) before a temporary lockout.
    login_max_failures: int = Field(default=5, ge=1)
    login_lockout_minutes: int = Field(default=15, ge=1)
    # Console language for officers who have not chosen one (bot/console/i18n/<code>.yml).
    ui_language: str = "en"
    # Session cookie only over HTTPS. Can be switched off in development mode only (plain
    # http://127.0.0.1); production ignores a false value.
    cookie_secure: bool = True
    # Minutes after which a tip of each urgency is overdue in the queue.
    overdue_minutes: dict[str, int] = Field(
        default_factory=lambda: {"critical": 5, "high": 60, "normal": 24 * 60, "low": 72 * 60}
    )
    # Outlines (GeoJSON: polygons, lines) the dashboard draws its map of geo-tagged tips over,
    # since missions have no tile server. A relative path is relative to the repository; empty:
    # the map is framed by the tips alone. Sample: config/map/sample-boundaries.geojson.
    map_boundaries_geojson: str = ""


class ChannelSwitches(BaseModel):
    local: bool = True
    sms: bool = True
    whatsapp: bool = False
    telegram: bool = False
    # Largest attachment we accept; bigger ones get a polite reply and are not stored.
    max_media_bytes: int = 10 * 1024 * 1024


class GatewaySettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = 8000
    # How long a failed dialogue turn waits before it is tried again.
    retry_seconds: float = 5.0


class AlertSettings(BaseModel):
    # Who hears about a critical tip at once (bot/alerts.py), besides the console's live feed.
    # Officers' and supervisors' numbers are staff data, never reporters': fine here, never
    # logged. Environment lists are JSON: TIPLINE_ALERTS__SMS_NUMBERS='["+15550001111"]'.
    telegram_chat_id: str = ""  # a Telegram group the bot is a member of, e.g. "-1001234567890"
    sms_numbers: list[str] = Field(default_factory=list)  # officers on duty
    # Off by default: a short summary ("what" + where) travels through Telegram/Twilio, which
    # keep it; without it an alert is only "Critical tip #12 (fr, sms) — open the console".
    include_summary: bool = False
    # A critical tip nobody has claimed after this long alerts the supervisors, once.
    escalate_after_minutes: int = Field(default=5, ge=1)
    supervisor_telegram_chat_id: str = ""
    supervisor_sms_numbers: list[str] = Field(default_factory=list)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="TIPLINE_",
        env_nested_delimiter="__",
        env_file=None,
        extra="ignore",
    )

    environment: Environment = Environment.PRODUCTION
    languages: list[str] = Field(default_factory=lambda: ["en", "fr"])
    default_language: str = "en"
    emergency_number: str = "112"
    data_dir: Path = PROJECT_DIR / "var"
    # Where what administrators edit is read from (default: this repository's folders). Point
    # them at a copy to run from other content, e.g. TIPLINE_MESSAGES_DIR=/srv/tipline/messages.
    nlu_project_dir: Path = PROJECT_DIR / "nlu" / "project"  # dialogue, responses, training data
    messages_dir: Path = CONFIG_DIR / "messages"  # the gateway's own texts and keywords
    urgency_dir: Path = CONFIG_DIR / "urgency"  # urgency word lists

    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    rasa: RasaSettings = Field(default_factory=RasaSettings)
    actions: ActionsSettings = Field(default_factory=ActionsSettings)
    twilio: TwilioSettings = Field(default_factory=TwilioSettings)
    whatsapp: WhatsAppSettings = Field(default_factory=WhatsAppSettings)
    telegram: TelegramSettings = Field(default_factory=TelegramSettings)
    privacy: PrivacySettings = Field(default_factory=PrivacySettings)
    console: ConsoleSettings = Field(default_factory=ConsoleSettings)
    channels: ChannelSwitches = Field(default_factory=ChannelSwitches)
    gateway: GatewaySettings = Field(default_factory=GatewaySettings)
    alerts: AlertSettings = Field(default_factory=AlertSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        yaml_file = os.environ.get("TIPLINE_CONFIG_FILE", str(DEFAULT_YAML))
        return (
            init_settings,
            env_settings,
            dotenv_settings,
            YamlConfigSettingsSource(settings_cls, yaml_file=yaml_file),
        )

    @field_validator("languages")
    @classmethod
    def _languages_are_codes(cls, value: list[str]) -> list[str]:
        for code in value:
            if len(code) != 2 or not code.isalpha() or not code.islower():
                raise ValueError(f"language {code!r} is not a two-letter ISO 639-1 code")
        if len(set(value)) != len(value):
            raise ValueError("a language is listed twice")
        if not value:
            raise ValueError("at least one language is needed")
        return value

    @model_validator(mode="after")
    def _default_language_is_configured(self) -> Settings:
        if self.default_language not in self.languages:
            raise ValueError(
                f"default_language {self.default_language!r} is not in languages {self.languages}"
            )
        return self

    @property
    def is_development(self) -> bool:
        return self.environment is Environment.DEVELOPMENT

    def required_secrets(self) -> dict[str, SecretStr]:
        secrets = {
            "TIPLINE_PRIVACY__PEPPER": self.privacy.pepper,
            "TIPLINE_PRIVACY__VAULT_KEY": self.privacy.vault_key,
            "TIPLINE_RASA__TOKEN": self.rasa.token,
            "TIPLINE_ACTIONS__TOKEN": self.actions.token,
        }
        if self.channels.sms or self.channels.whatsapp:
            secrets["TIPLINE_TWILIO__AUTH_TOKEN"] = self.twilio.auth_token
        if self.channels.telegram:
            secrets["TIPLINE_TELEGRAM__BOT_TOKEN"] = self.telegram.bot_token
            if self.telegram.mode == "webhook":
                secrets["TIPLINE_TELEGRAM__WEBHOOK_SECRET"] = self.telegram.webhook_secret
        return secrets

    def enforce_secrets(self) -> list[str]:
        """Refuse placeholder secrets outside development; return the names still unset.

        In development the runner generates real random secrets (var/dev-secrets.env), so a
        placeholder there only earns a warning from the caller.
        """
        weak = [
            name
            for name, value in self.required_secrets().items()
            if value.get_secret_value().strip().lower() in PLACEHOLDERS
        ]
        if weak and not self.is_development:
            raise SettingsError(
                "refusing to start: these secrets are missing or placeholders: "
                + ", ".join(weak)
                + ". Set them in the environment (see .env.example), or set "
                "TIPLINE_ENVIRONMENT=development on a machine that holds no real tips."
            )
        if len(self.privacy.pepper.get_secret_value()) < 16 and not self.is_development:
            raise SettingsError("TIPLINE_PRIVACY__PEPPER must be at least 16 characters")
        return weak


def load_settings(**overrides: Any) -> Settings:
    """Read settings; `overrides` take precedence over everything (used by tests and the CLI)."""
    try:
        settings = Settings(**overrides)
    except ValueError as exc:
        raise SettingsError(str(exc)) from exc
    settings.enforce_secrets()
    return settings
