"""Typed settings: ``HUILIU_*`` environment variables over an optional TOML file over defaults.

Every value is validated once at start; a bad value stops the process with a message that names the key
(``HUILIU_WEB_PORT: …``) instead of failing later somewhere else.
"""

from __future__ import annotations

import os
import secrets
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

ENV_PREFIX = "HUILIU_"


class SettingsError(Exception):
    """A setting is missing, unknown or invalid; the message names the key."""


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # Unset URLs mean "start the embedded server" under `huiliu run` and in tests.
    mongo_url: str | None = None
    redis_url: str | None = None
    db_name: str = Field(default="huiliu", pattern=r"^[A-Za-z0-9_-]{1,63}$")
    mongo_timeout_ms: int = Field(default=2000, ge=100, le=60_000)

    data_dir: Path = Path("var")
    web_host: str = "127.0.0.1"
    web_port: int = Field(default=8080, ge=1, le=65535)
    public_url: str | None = None

    embedded_mongo_port: int = Field(default=27027, ge=1, le=65535)
    embedded_redis_port: int = Field(default=6389, ge=1, le=65535)

    secret_key: SecretStr | None = None
    token_ttl_seconds: int = Field(default=12 * 3600, ge=60)
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024, le=512 * 1024 * 1024)
    login_max_failures: int = Field(default=5, ge=1)
    login_lockout_seconds: int = Field(default=300, ge=1)
    metrics_token: SecretStr | None = None

    default_region: str = Field(default="CN", pattern=r"^[A-Z]{2}$")
    timezone: str = "Asia/Shanghai"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["console", "json"] = "console"
    demo: bool = True
    worker_concurrency: int = Field(default=2, ge=1, le=64)
    outbox_relay_seconds: float = Field(default=10.0, gt=0)

    def secret(self) -> str:
        """The signing secret; under the embedded defaults it is generated once into ``data_dir``."""
        if self.secret_key is not None:
            return self.secret_key.get_secret_value()
        path = self.data_dir / "secret_key"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_urlsafe(48))
        return path.read_text().strip()


def _env_values(environ: Mapping[str, str]) -> dict[str, str]:
    known = set(Settings.model_fields)
    values: dict[str, str] = {}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or name == ENV_PREFIX + "CONFIG":
            continue
        key = name[len(ENV_PREFIX) :].lower()
        if key not in known:
            raise SettingsError(f"{name}: unknown setting (known: {', '.join(sorted(known))})")
        values[key] = value
    return values


def _toml_values(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError as exc:
        raise SettingsError(f"HUILIU_CONFIG: file not found: {path}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{path}: not valid TOML: {exc}") from exc
    section = data.get("huiliu", data)
    if not isinstance(section, dict):
        raise SettingsError(f"{path}: [huiliu] must be a table")
    return dict(section)


def load_settings(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Build the settings from TOML (``HUILIU_CONFIG``), then ``HUILIU_*`` env, then ``overrides``."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    origin: dict[str, str] = {}
    config_path = environ.get(ENV_PREFIX + "CONFIG")
    if config_path:
        toml_values = _toml_values(Path(config_path))
        values.update(toml_values)
        origin.update({key: f"{config_path}: {key}" for key in toml_values})
    env_values = _env_values(environ)
    values.update(env_values)
    origin.update({key: ENV_PREFIX + key.upper() for key in env_values})
    values.update(overrides)
    try:
        return Settings.model_validate(values)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            key = str(error["loc"][0]) if error["loc"] else "?"
            name = origin.get(key, ENV_PREFIX + key.upper())
            problems.append(f"{name}: {error['msg']}")
        raise SettingsError("; ".join(problems)) from None
