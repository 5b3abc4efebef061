"""Sign-ins, good and bad, land in the audit trail; the password never does."""

from __future__ import annotations

import json
import logging

import pytest
from django.contrib.auth.signals import user_login_failed
from django.test import Client
from django.urls import reverse

from accounts.models import User
from portal.audit import AuditAction
from portal.models import AuditEvent
from tests import factories

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fast_passwords", "fresh_rate_limits")]

PASSWORD = "correct horse battery staple 42"
WRONG = "tr0ub4dor&3-but-not-this-one"


@pytest.fixture
def person(fast_passwords: None) -> User:
    return factories.user(username="alice", password=PASSWORD)


def sign_in(client: Client, login: str, password: str) -> int:
    return client.post(reverse("account_login"), {"login": login, "password": password}).status_code


def everything_recorded() -> str:
    return json.dumps(list(AuditEvent.objects.values()), default=str)


def test_a_sign_in_is_audited(client: Client, person: User) -> None:
    assert sign_in(client, "alice", PASSWORD) == 302
    assert client.session["_auth_user_id"] == str(person.pk)
    event = AuditEvent.objects.get()
    assert event.action == AuditAction.SIGNED_IN
    assert (event.actor_id, event.target_id) == (person.pk, str(person.pk))
    assert event.detail == {"source": "oidc", "superuser": False, "break_glass": False}
    assert PASSWORD not in everything_recorded()


def test_a_break_glass_sign_in_is_marked_as_a_superuser(client: Client, fast_passwords: None) -> None:
    factories.user(username="root-ish", password=PASSWORD, is_superuser=True, source="local")
    assert sign_in(client, "root-ish", PASSWORD) == 302
    assert AuditEvent.objects.get(action=AuditAction.SIGNED_IN).detail == {
        "source": "local",
        "superuser": True,
        "break_glass": True,  # a local account's password sign-in: listed on the dashboard
    }


def test_a_wrong_password_is_audited_without_the_password(client: Client, person: User) -> None:
    assert sign_in(client, "alice", WRONG) == 200  # the form again, with an error
    assert "_auth_user_id" not in client.session
    event = AuditEvent.objects.get()
    assert event.action == AuditAction.SIGN_IN_FAILED
    assert event.actor_id is None
    assert event.actor_label == "system"
    assert event.target_label == "alice"
    assert WRONG not in everything_recorded()
    assert "*****" not in everything_recorded()  # not even Django's masked copy


def test_an_unknown_name_is_audited_as_tried(client: Client, person: User) -> None:
    assert sign_in(client, "mallory", WRONG) == 200
    event = AuditEvent.objects.get()
    assert (event.action, event.target_type, event.target_id) == (
        AuditAction.SIGN_IN_FAILED,
        "accounts.user",
        "",
    )
    assert event.target_label == "mallory"


def test_each_attempt_is_one_event(client: Client, person: User) -> None:
    sign_in(client, "alice", WRONG)
    sign_in(client, "alice", WRONG)
    sign_in(client, "alice", PASSWORD)
    actions = list(AuditEvent.objects.order_by("sequence").values_list("action", flat=True))
    assert actions == [AuditAction.SIGN_IN_FAILED, AuditAction.SIGN_IN_FAILED, AuditAction.SIGNED_IN]


def test_a_failure_from_another_door_is_cut_to_fit_and_never_keeps_the_password() -> None:
    # The sign-in form caps names itself; other authenticate() callers (the admin, an API) may not.
    user_login_failed.send(sender=__name__, credentials={"username": "x" * 400, "password": WRONG})
    event = AuditEvent.objects.get()
    assert event.target_label == "x" * 150
    assert WRONG not in everything_recorded()


def test_passwords_stay_out_of_the_logs(
    client: Client, person: User, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    sign_in(client, "alice", WRONG)
    sign_in(client, "alice", PASSWORD)
    assert PASSWORD not in caplog.text
    assert WRONG not in caplog.text


def test_attempts_blocked_by_the_rate_limit_are_still_audited(client: Client, person: User) -> None:
    # allauth allows 5 failures per name in 5 minutes; after that it refuses before authenticating,
    # so Django's user_login_failed stops firing and only the adapter can see the attempt.
    for _ in range(5):
        sign_in(client, "alice", WRONG)
    assert AuditEvent.objects.filter(action=AuditAction.SIGN_IN_THROTTLED).count() == 0
    for _ in range(3):
        assert sign_in(client, "alice", WRONG) == 200
    throttled = AuditEvent.objects.filter(action=AuditAction.SIGN_IN_THROTTLED)
    assert throttled.count() == 3
    assert {event.target_label for event in throttled} == {"alice"}
    assert WRONG not in everything_recorded()
