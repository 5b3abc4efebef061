"""Production mode refuses development values, and the documented production set passes check --deploy."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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
