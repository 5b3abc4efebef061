"""Production mode refuses development values, and the documented production set passes check --deploy."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parents[2]

# The production variables the README documents (values are throwaway, generated per run).
PRODUCTION = {
    "DEBUG": "false",
    "SECRET_KEY": "p" * 20 + Fernet.generate_key().decode(),
    "CUSTOMS_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
    "CUSTOMS_TOKEN_HMAC_KEY": Fernet.generate_key().decode(),
    "ALLOWED_HOSTS": "customs.example.com",
    "CUSTOMS_SITE_URL": "https://customs.example.com",
    "SECURE_HSTS_PRELOAD": "true",
    "DATABASE_URL": "postgres://customs@127.0.0.1:5432/customs",
    "CELERY_BROKER_URL": "redis://127.0.0.1:6379/0",
}


def _manage(*args: str, overrides: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # A clean environment: only PATH and the variables under test, as a fresh production host would have.
    env = {"PATH": os.environ["PATH"], **overrides}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_documented_production_settings_pass_check_deploy_without_warnings() -> None:
    result = _manage("check", "--deploy", "--fail-level", "WARNING", overrides=PRODUCTION)
    assert result.returncode == 0, result.stderr
    assert "System check identified no issues" in result.stdout
    assert "WARNINGS" not in result.stdout + result.stderr


def test_production_refuses_the_development_secret_key() -> None:
    settings = {key: value for key, value in PRODUCTION.items() if key != "SECRET_KEY"}
    result = _manage("check", overrides=settings)
    assert result.returncode != 0
    assert "DEBUG is off: set SECRET_KEY" in result.stderr


def test_production_refuses_the_development_encryption_key() -> None:
    settings = {key: value for key, value in PRODUCTION.items() if key != "CUSTOMS_ENCRYPTION_KEYS"}
    result = _manage("check", overrides=settings)
    assert result.returncode != 0
    assert "set CUSTOMS_ENCRYPTION_KEYS" in result.stderr


def test_a_malformed_encryption_key_is_named_by_position_never_echoed() -> None:
    result = _manage("check", overrides=PRODUCTION | {"CUSTOMS_ENCRYPTION_KEYS": "not-a-key-xyz"})
    assert result.returncode != 0
    assert "CUSTOMS_ENCRYPTION_KEYS entry 1 is not a Fernet key" in result.stderr
    assert "not-a-key-xyz" not in result.stderr


def test_the_embedded_defaults_need_no_variables(tmp_path: Path) -> None:
    result = _manage("check", "--fail-level", "WARNING", overrides={"CUSTOMS_DATA_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stderr


def _expiry_notice_days(value: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """The settings module read afresh with CUSTOMS_EXPIRY_NOTICE_DAYS (the embedded defaults otherwise)."""
    code = "from django.conf import settings; print(settings.HYGIENE_EXPIRY_NOTICE_DAYS)"
    overrides = {"CUSTOMS_DATA_DIR": str(tmp_path), "CUSTOMS_EXPIRY_NOTICE_DAYS": value}
    return _manage("shell", "--no-imports", "-c", code, overrides=overrides)


def test_notice_days_are_read_as_whole_days_largest_first(tmp_path: Path) -> None:
    result = _expiry_notice_days("1, 30,7", tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[30, 7, 1]"


@pytest.mark.parametrize("value", ["0", "14,seven", "7,-1", "1.5"])
def test_invalid_notice_days_stop_startup_naming_the_variable(tmp_path: Path, value: str) -> None:
    result = _expiry_notice_days(value, tmp_path)
    assert result.returncode != 0
    assert (
        "ImproperlyConfigured: CUSTOMS_EXPIRY_NOTICE_DAYS must list whole days of 1 or more, e.g. 14,7,1"
        in result.stderr
    )
