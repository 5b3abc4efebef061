"""The break-glass admin: made on first start, its password printed that once and never again."""

from __future__ import annotations

import io
import json
import re

import pytest
from django.core.management import CommandError, call_command
from django.test import Client, override_settings

from accounts import services
from accounts.models import Source, User
from accounts.roles import Role
from portal.audit import AuditAction
from portal.models import AuditEvent
from tests import factories

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fast_passwords")]

PASSWORD_LINE = re.compile(r"password: (\S+)")


def run_command() -> str:
    out = io.StringIO()
    call_command("ensure_break_glass_admin", stdout=out)
    return out.getvalue()


def test_the_first_run_creates_an_admin_and_prints_a_working_password(client: Client) -> None:
    output = run_command()
    passwords = PASSWORD_LINE.findall(output)
    assert len(passwords) == 1
    password = passwords[0]
    assert len(password) >= 24  # 18 random bytes
    assert "username: admin" in output

    user = User.objects.get(username="admin")
    assert (user.is_superuser, user.is_staff, user.source) == (True, True, Source.LOCAL)
    assert user.role == Role.ADMIN
    assert user.password != password  # stored hashed
    assert client.login(username="admin", password=password)
    assert client.get("/access/").status_code == 200


def test_the_second_run_prints_no_password_and_changes_nothing() -> None:
    first_password = PASSWORD_LINE.findall(run_command())[0]
    hashed = User.objects.get(username="admin").password
    output = run_command()
    assert PASSWORD_LINE.findall(output) == []
    assert first_password not in output
    assert "Break-glass admin: admin (password shown only when created)" in output
    assert User.objects.filter(username="admin").count() == 1
    assert User.objects.get(username="admin").password == hashed  # the password still works


def test_creation_is_audited_once_without_the_password() -> None:
    password = PASSWORD_LINE.findall(run_command())[0]
    run_command()
    event = AuditEvent.objects.get(action=AuditAction.BREAK_GLASS_CREATED)
    assert (event.actor_id, event.actor_label) == (None, "system")
    assert event.target_id == str(User.objects.get(username="admin").pk)
    assert password not in json.dumps(list(AuditEvent.objects.values()), default=str)


@override_settings(BREAK_GLASS_USERNAME="customs-root")
def test_the_username_comes_from_settings(client: Client) -> None:
    password = PASSWORD_LINE.findall(run_command())[0]
    assert client.login(username="customs-root", password=password)
    assert not User.objects.filter(username="admin").exists()


def test_the_service_returns_the_password_only_when_it_made_the_user() -> None:
    made, password = services.ensure_break_glass_admin()
    again, none = services.ensure_break_glass_admin()
    assert password is not None
    assert made.check_password(password)
    assert (again.pk, none) == (made.pk, None)


def test_an_existing_sso_account_with_that_name_is_never_reported_as_break_glass() -> None:
    factories.user(username="admin")  # an SSO person who happens to be called admin
    with pytest.raises(CommandError, match="'admin' already exists and is not a local superuser"):
        call_command("ensure_break_glass_admin", stdout=io.StringIO())
    assert not User.objects.filter(is_superuser=True).exists()
