"""`manage.py check_dockerfile`: exit 0 compliant, 1 not, 2 unreadable or not a Dockerfile."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from registries.models import BaseImage

ROOT = Path(__file__).resolve().parents[3]

pytestmark = pytest.mark.django_db

on_postgres = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="the subprocess needs a database another process can open"
)

GOOD = "ARG PY=3.12-slim\nFROM golang:1.22 AS build\nFROM python:${PY}\nCOPY --from=build /app /app\n"


@pytest.fixture(autouse=True)
def catalog() -> None:
    BaseImage.objects.create(name="docker.io/library/python", tags=["3.12-*"])
    BaseImage.objects.create(name="docker.io/library/golang", tags=["1.22*"])


def dockerfile(tmp_path: Path, text: str) -> str:
    path = tmp_path / "Dockerfile"
    path.write_text(text, encoding="utf-8")
    return str(path)


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("check_dockerfile", *args, stdout=out)
    return out.getvalue()


def test_a_compliant_dockerfile_exits_zero_with_the_json_result(tmp_path: Path) -> None:
    result = json.loads(run(dockerfile(tmp_path, GOOD), "--format", "json"))
    assert result["compliant"] is True
    assert result["final_base"] == "docker.io/library/python:3.12-slim"
    assert [stage["verdict"] for stage in result["stages"]] == ["approved", "approved"]
    assert set(result["stages"][0]) == {
        "line",
        "image",
        "reference",
        "stage",
        "from_stage",
        "verdict",
        "message",
    }


def test_the_text_format_has_a_line_per_from(tmp_path: Path) -> None:
    assert run(dockerfile(tmp_path, GOOD)).splitlines() == [
        "compliant; final base: docker.io/library/python:3.12-slim",
        "line 2 (stage build): golang:1.22: approved: docker.io/library/golang:1.22 is approved",
        "line 3: python:3.12-slim: approved: docker.io/library/python:3.12-slim is approved",
    ]


def test_a_build_arg_can_make_it_non_compliant_with_exit_one(tmp_path: Path) -> None:
    out = io.StringIO()
    with pytest.raises(CommandError) as raised:
        call_command(
            "check_dockerfile",
            dockerfile(tmp_path, GOOD),
            "--build-arg",
            "PY=3.11",
            "--format=json",
            stdout=out,
        )
    assert raised.value.returncode == 1
    assert str(raised.value).endswith("Dockerfile: not compliant (1 FROM refused)")
    # The result is still printed for the CI log.
    assert json.loads(out.getvalue())["stages"][1]["reference"] == "docker.io/library/python:3.11"


def test_a_build_arg_named_alone_comes_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = dockerfile(tmp_path, GOOD)
    monkeypatch.setenv("PY", "3.11")
    with pytest.raises(CommandError) as raised:
        run(path, "--build-arg", "PY")
    assert raised.value.returncode == 1
    monkeypatch.delenv("PY")
    assert run(path, "--build-arg", "PY").startswith("compliant")  # unset: no build arg, the default holds


def test_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("FROM python:3.12-slim\n"))
    assert run("-").startswith("compliant; final base: docker.io/library/python:3.12-slim")


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("", "the Dockerfile is empty"),
        ("# nothing\n", "the Dockerfile has no instructions, only comments or blank lines"),
        ("ARG A=1\n", "no FROM instruction: a Dockerfile needs at least one build stage"),
        ("FROM a b\n", "line 1: FROM takes an image and optionally AS <name>, not 2 arguments"),
        ("RUN make\nFROM python:3.12-slim\n", "line 1: RUN comes before the first FROM; only ARG may"),
        ("FROM python:3.12-slim AS 2nd\n", "line 1: invalid stage name '2nd'"),
    ],
)
def test_not_a_dockerfile_exits_two_with_one_line(tmp_path: Path, text: str, error: str) -> None:
    path = dockerfile(tmp_path, text)
    with pytest.raises(CommandError) as raised:
        run(path)
    assert raised.value.returncode == 2
    assert str(raised.value).startswith(f"{path}: {error}")
    assert "\n" not in str(raised.value)


def test_an_unreadable_file_exits_two(tmp_path: Path) -> None:
    with pytest.raises(CommandError) as raised:
        run(str(tmp_path / "absent"))
    assert raised.value.returncode == 2
    assert str(raised.value).startswith(f"cannot read {tmp_path / 'absent'}")


def test_a_file_that_is_not_utf8_exits_two(tmp_path: Path) -> None:
    path = tmp_path / "Dockerfile"
    path.write_bytes(b"FROM caf\xe9\n")
    with pytest.raises(CommandError) as raised:
        run(str(path))
    assert raised.value.returncode == 2


def test_a_malformed_build_arg_exits_two(tmp_path: Path) -> None:
    with pytest.raises(CommandError) as raised:
        run(dockerfile(tmp_path, GOOD), "--build-arg", "=3.11")
    assert raised.value.returncode == 2


# --- As CI runs it ------------------------------------------------------------------------------


def _run_command(*args: str) -> subprocess.CompletedProcess[str]:
    database = connection.settings_dict
    password = f":{quote(database['PASSWORD'], safe='')}" if database["PASSWORD"] else ""
    url = f"postgres://{database['USER']}{password}@{database['HOST']}:{database['PORT']}/{database['NAME']}"
    return subprocess.run(
        [sys.executable, "manage.py", "check_dockerfile", *args],
        cwd=ROOT,
        env=os.environ | {"DATABASE_URL": url},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@on_postgres
@pytest.mark.django_db(transaction=True)
def test_the_exit_status_as_ci_sees_it(tmp_path: Path) -> None:
    compliant = _run_command(dockerfile(tmp_path, GOOD))
    assert (compliant.returncode, compliant.stderr) == (0, "")

    refused = _run_command(dockerfile(tmp_path, GOOD), "--build-arg", "PY=3.11")
    assert refused.returncode == 1
    assert "NOT compliant" in refused.stdout

    broken = _run_command(dockerfile(tmp_path, "FROM\n"))
    assert broken.returncode == 2
    assert broken.stdout == ""
    assert len(broken.stderr.strip().splitlines()) == 1
    assert "FROM takes an image" in broken.stderr
