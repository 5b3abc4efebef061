from __future__ import annotations

from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from portal.env import env_bool, env_int, env_list, env_secret, env_secret_list


@pytest.mark.parametrize(
    ("raw", "expected"), [("1", True), ("TRUE", True), ("yes", True), ("off", False), ("0", False)]
)
def test_env_bool_reads_the_usual_spellings(
    monkeypatch: pytest.MonkeyPatch, raw: str, expected: bool
) -> None:
    monkeypatch.setenv("CUSTOMS_FLAG", raw)
    assert env_bool("CUSTOMS_FLAG", not expected) is expected


def test_env_bool_refuses_a_typo_instead_of_guessing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUSTOMS_FLAG", "ture")
    with pytest.raises(ImproperlyConfigured, match="CUSTOMS_FLAG='ture' is not a boolean"):
        env_bool("CUSTOMS_FLAG", False)


def test_unset_or_empty_values_take_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUSTOMS_FLAG", raising=False)
    monkeypatch.setenv("CUSTOMS_NUMBER", "  ")
    assert env_bool("CUSTOMS_FLAG", True) is True
    assert env_int("CUSTOMS_NUMBER", 7) == 7


def test_env_int_names_the_variable_when_it_is_not_a_number(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUSTOMS_NUMBER", "12s")
    with pytest.raises(ImproperlyConfigured, match="CUSTOMS_NUMBER='12s' is not an integer"):
        env_int("CUSTOMS_NUMBER", 1)


def test_env_int_enforces_its_minimum(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUSTOMS_NUMBER", "0")
    with pytest.raises(ImproperlyConfigured, match="below the minimum of 1"):
        env_int("CUSTOMS_NUMBER", 5, minimum=1)


def test_env_list_splits_and_trims(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUSTOMS_HOSTS", " a.example , ,b.example")
    assert env_list("CUSTOMS_HOSTS") == ["a.example", "b.example"]


def test_secret_comes_from_the_file_named_by_NAME_FILE(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text("s3cret-from-file\n")
    monkeypatch.delenv("CUSTOMS_SECRET", raising=False)
    monkeypatch.setenv("CUSTOMS_SECRET_FILE", str(secret_file))
    assert env_secret("CUSTOMS_SECRET") == "s3cret-from-file"


def test_an_unreadable_secret_file_stops_startup(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("CUSTOMS_SECRET", raising=False)
    monkeypatch.setenv("CUSTOMS_SECRET_FILE", str(tmp_path / "missing"))
    with pytest.raises(ImproperlyConfigured, match="CUSTOMS_SECRET_FILE=.* cannot be read"):
        env_secret("CUSTOMS_SECRET", "fallback")


def test_a_secret_set_twice_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("one")
    monkeypatch.setenv("CUSTOMS_SECRET", "two")
    monkeypatch.setenv("CUSTOMS_SECRET_FILE", str(tmp_path / "secret"))
    with pytest.raises(ImproperlyConfigured, match="not both"):
        env_secret("CUSTOMS_SECRET")


def test_secret_lists_accept_commas_and_newlines(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "keys").write_text("new-key\nold-key\n")
    monkeypatch.delenv("CUSTOMS_KEYS", raising=False)
    monkeypatch.setenv("CUSTOMS_KEYS_FILE", str(tmp_path / "keys"))
    assert env_secret_list("CUSTOMS_KEYS") == ["new-key", "old-key"]
