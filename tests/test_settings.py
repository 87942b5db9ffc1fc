"""An admin who mistypes a setting is told which key is wrong, before anything starts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.settings import SettingsError, load_settings


def test_defaults_are_the_embedded_platform() -> None:
    settings = load_settings(environ={})
    assert settings.mongo_url is None and settings.redis_url is None
    assert settings.web_port == 8080
    assert settings.default_region == "CN"


def test_bad_port_names_the_variable() -> None:
    with pytest.raises(SettingsError, match="HUILIU_WEB_PORT"):
        load_settings(environ={"HUILIU_WEB_PORT": "eighty"})


def test_unknown_variable_is_refused_not_ignored() -> None:
    with pytest.raises(SettingsError, match="HUILIU_WEB_PROT: unknown setting"):
        load_settings(environ={"HUILIU_WEB_PROT": "8080"})


def test_toml_file_then_environment_override(tmp_path: Path) -> None:
    config = tmp_path / "huiliu.toml"
    config.write_text('[huiliu]\nweb_port = 9090\ndefault_region = "US"\n')
    settings = load_settings(environ={"HUILIU_CONFIG": str(config), "HUILIU_DEFAULT_REGION": "GB"})
    assert settings.web_port == 9090
    assert settings.default_region == "GB"


def test_bad_value_in_toml_names_the_file_and_key(tmp_path: Path) -> None:
    config = tmp_path / "huiliu.toml"
    config.write_text("[huiliu]\nmax_body_bytes = 1\n")
    with pytest.raises(SettingsError, match=r"huiliu\.toml: max_body_bytes"):
        load_settings(environ={"HUILIU_CONFIG": str(config)})


def test_broken_toml_is_reported(tmp_path: Path) -> None:
    config = tmp_path / "huiliu.toml"
    config.write_text("[huiliu\nweb_port = \n")
    with pytest.raises(SettingsError, match="not valid TOML"):
        load_settings(environ={"HUILIU_CONFIG": str(config)})


def test_generated_secret_is_stable_and_private(tmp_path: Path) -> None:
    settings = load_settings(environ={}, data_dir=tmp_path)
    first = settings.secret()
    assert len(first) >= 40
    assert settings.secret() == first
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0


def test_huiliu_refuses_to_start_with_a_bad_setting() -> None:
    env = {**os.environ, "HUILIU_LOG_LEVEL": "LOUD"}
    result = subprocess.run(
        [sys.executable, "-m", "core.cli", "run"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "HUILIU_LOG_LEVEL" in result.stderr
