"""Configuration: config.yaml (structure, no secrets) validated by pydantic, plus secrets from env.

Errors name the file and the dotted key. Imports bot.errors, pydantic, PyYAML.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bot.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
"""The project checkout: flows/, data/ and config.yaml live here."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EmergencyConfig(_Model):
    number: str = "112"
    crisis_line: str = "14416"


class StorageConfig(_Model):
    url: str = "sqlite:///data/carebridge.db"


class FlowsConfig(_Model):
    dir: str = "flows"
    first: str = "consent"
    default: str = "menu"
    max_failures: int = Field(3, ge=1, le=10)


class NluConfig(_Model):
    backend: Literal["embedded", "rasa"] = "embedded"
    rasa_url: str | None = None
    rasa_timeout_s: float = 2.0
    confidence_threshold: float = Field(0.5, ge=0.0, le=1.0)


class ChannelSwitch(_Model):
    enabled: bool = True
    rate_per_s: float = Field(1.0, gt=0)


class ChannelsConfig(_Model):
    sms: ChannelSwitch = ChannelSwitch()
    whatsapp: ChannelSwitch = ChannelSwitch()
    telegram: ChannelSwitch = ChannelSwitch(rate_per_s=30.0)


class TwilioConfig(_Model):
    api_base_url: str | None = None
    sms_from: str | None = None
    whatsapp_from: str | None = None
    whatsapp_template_sid: str | None = None


class TelegramConfig(_Model):
    api_base_url: str | None = None


class ServerConfig(_Model):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    public_url: str = "http://127.0.0.1:8000"


class Config(_Model):
    service_name: str = "carebridge"
    languages: list[str] = Field(default_factory=lambda: ["en"], min_length=1)
    emergency: EmergencyConfig = EmergencyConfig()
    storage: StorageConfig = StorageConfig()
    flows: FlowsConfig = FlowsConfig()
    nlu: NluConfig = NluConfig()
    channels: ChannelsConfig = ChannelsConfig()
    twilio: TwilioConfig = TwilioConfig()
    telegram: TelegramConfig = TelegramConfig()
    server: ServerConfig = ServerConfig()

    def path(self, relative: str) -> Path:
        """A path from the config, relative to the project root unless absolute."""
        p = Path(relative)
        return p if p.is_absolute() else ROOT / p

    def storage_url(self) -> str:
        """storage.url with a relative sqlite path anchored at the project root."""
        prefix = "sqlite:///"
        url = self.storage.url
        if url.startswith(prefix) and not url.startswith(prefix + "/"):
            return prefix + str(ROOT / url[len(prefix) :])
        return url


def load_config(path: Path | str | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Read and validate a config file (CAREBRIDGE_CONFIG, else config.yaml at the root)."""
    env = os.environ if env is None else env
    chosen = Path(path or env.get("CAREBRIDGE_CONFIG") or ROOT / "config.yaml")
    try:
        raw = yaml.safe_load(chosen.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ConfigError(f"{chosen}: config file not found") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{chosen}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{chosen}: must be a mapping of settings")
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        lines = [
            f"{chosen}: {'.'.join(str(p) for p in err['loc'])}: {err['msg']}"
            for err in exc.errors()
        ]
        raise ConfigError("\n".join(lines)) from None


def secret(name: str, env: Mapping[str, str] | None = None) -> str:
    """A secret from the environment; a clear error names the missing variable."""
    env = os.environ if env is None else env
    value = env.get(name)
    if not value:
        raise ConfigError(
            f"environment variable {name} is not set (secrets never go in config.yaml)"
        )
    return value
