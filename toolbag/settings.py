"""Every ``TOOLBAG_*`` environment variable in one typed place (pydantic-settings), checked at once.

A bad value is a :class:`SettingsError` of one line naming the variable, what is wrong and how to fix it;
the CLI prints it and exits 2 before any command runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from toolbag.config import DEFAULT_REDIS_URL, ConfigError
from toolbag.store.connection import RedisUrlError, parse_redis_url

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
_FIXES = {
    "redis_url": ("set it like redis://host:6379/0 (rediss:// for TLS, unix:///path/redis.sock, "
                  "redis+sentinel://s1:26379,s2:26379/mymaster/0 for Sentinel)"),
    "metrics_port": "set it to a port number from 0 to 65535 (0 = any free port)",
    "simulator_url": "set it like http://127.0.0.1:8900",
    "log_level": "set it to DEBUG, INFO, WARNING, ERROR or CRITICAL",
    "config": "set it to the path of a toolbag.yaml, or unset it for ./toolbag.yaml or the embedded defaults",
    "skills_dir": "set it to a folder of skills, or unset it for ./skills or the starter skills",
    "policy": "set it to a policy.yaml, or unset it for ./policy.yaml or the one that ships with toolbag",
    "tools": "set it to a tools.yaml, or unset it for ./tools.yaml or the one that ships with toolbag",
    "audit_jsonl": "set it to a file in a folder that exists",
    "attempt_loop": "set it to async (attempts on one event loop) or threads (a thread per attempt)",
    "console_secret": "set it to at least 32 random characters, or unset it for one kept in Redis",
    "console_runs_dir": "set it to a folder, or unset it for ~/.toolbag/console-runs",
    "grafana_url": "set it like https://grafana.example.com/d/toolbag",
}


class SettingsError(ConfigError):
    """A ``TOOLBAG_*`` variable with a value toolbag cannot use."""


class Settings(BaseSettings):
    """The environment toolbag reads. Every field is ``TOOLBAG_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="TOOLBAG_", extra="ignore", frozen=True)

    config: Path | None = Field(default=None, description="toolbag.yaml to load")
    redis_url: str = Field(default=DEFAULT_REDIS_URL, description="the fleet's Redis")
    simulator_url: str | None = Field(default=None, description="overrides simulator_url of toolbag.yaml")
    metrics_port: int | None = Field(default=None, ge=0, le=65535, description="/metrics port")
    metrics_host: str = Field(default="0.0.0.0", description="/metrics listen address")
    log_level: LogLevel = Field(default="INFO", description="level of toolbag's JSON logs")
    skills_dir: Path | None = Field(default=None, description="the skill library")
    policy: Path | None = Field(default=None, description="the tool policy file")
    tools: Path | None = Field(default=None, description="the tool registry file")
    audit_jsonl: Path | None = Field(default=None, description="also append audit records here")
    alive_file: Path | None = Field(default=None, description="a worker's consumer liveness file")
    attempt_loop: Literal["async", "threads"] = Field(default="async", description="a worker's attempt path")
    console_secret: SecretStr | None = Field(default=None, description="signs the web console's session cookie")
    console_runs_dir: Path | None = Field(default=None, description="where console bulk runs keep their files")
    grafana_url: str | None = Field(default=None, description="the dashboard the console links to")

    @field_validator("redis_url")
    @classmethod
    def _redis(cls, value: str) -> str:
        try:
            parse_redis_url(value)
        except RedisUrlError as err:  # "redis url <url without password>: <reason>": the reason only
            raise ValueError(str(err).split(": ", 1)[-1]) from None
        return value

    @field_validator("simulator_url", "grafana_url")
    @classmethod
    def _http(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        parsed = urlparse(value)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError("not an http(s) URL with a host")
        return value.rstrip("/")

    @field_validator("attempt_loop", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @field_validator("console_secret")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 32:
            raise ValueError("too short to sign sessions")
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("config", "skills_dir", "policy", "tools", "audit_jsonl", "alive_file", "simulator_url",
                     "grafana_url", "console_runs_dir", "console_secret", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        return None if value == "" else value

    @field_validator("config", "policy", "tools")
    @classmethod
    def _exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"no file at {value}")
        return value

    @field_validator("skills_dir")
    @classmethod
    def _folder(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_dir():
            raise ValueError(f"no folder at {value}")
        return value

    @field_validator("audit_jsonl")
    @classmethod
    def _writable_place(cls, value: Path | None) -> Path | None:
        if value is not None and not value.parent.is_dir():
            raise ValueError(f"no folder {value.parent} to write it in")
        return value


def _one_line(err: ValidationError) -> str:
    item = err.errors()[0]
    field = str(item["loc"][0]) if item["loc"] else "?"
    value = item.get("input")
    reason = str(item["msg"]).removeprefix("Value error, ")
    secret = field in ("redis_url", "console_secret")  # a URL may hold a password; a secret is never shown
    shown = f"{value!r}: " if isinstance(value, str | int) and not secret else ""
    fix = _FIXES.get(field, "")
    return f"TOOLBAG_{field.upper()}: {shown}{reason}" + (f"; {fix}" if fix else "")


def load_settings() -> Settings:
    """The environment's settings, read now; :class:`SettingsError` (one line) for the first bad variable."""
    try:
        return Settings()
    except ValidationError as err:
        raise SettingsError(_one_line(err)) from None
