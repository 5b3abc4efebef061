"""Offboarding against the real token server: a real docker-registry trusts Customs, skopeo pulls.

An admin offboards someone whose group may pull and push; their next skopeo pull is refused by
Customs' token server, no token of theirs opens the registry again, their web session is over,
and the group's other members go on pulling (the refusal is about the person, not the set-up).
The token server remembers decisions for a minute here (customs_registry) and the person's token
was just used, so the refusal also proves the memory was emptied on commit, by PostgreSQL's notice:
nothing here waits for it to expire.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from datetime import timedelta
from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from allauth.usersessions.models import UserSession
from django.conf import settings
from django.core.cache import cache
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts import services as account_services
from accounts import tokens
from accounts.models import DirectoryGroup, GroupMembership, PersonalToken, User
from accounts.roles import Role
from portal.audit import AuditAction
from portal.errors import RequestRejected
from portal.models import AuditEvent
from registries import offboarding
from registries.models import Offboarding, OffboardingStep, Registry
from tests import factories
from tests.registries.harness import RunningRegistry, Skopeo
from tests.registries.tokenserver.helpers import REPOSITORY, forgotten_after, push, registry_token, rule

if TYPE_CHECKING:
    from pytest_django import Settings

pytestmark = pytest.mark.django_db(transaction=True)

PASSWORD = "departing-soon but not yet 42"
DENIED = "invalid username or registry token"  # the token server's 401 body (tokenserver/views.py)
# What skopeo login prints for a 401 from the token realm: it shows the status, not the body.
LOGIN_DENIED = "invalid username/password"


@dataclass(frozen=True)
class Team:
    """A group that may pull and push team/**, two of its members, and their registry tokens."""

    registry: Registry
    running: RunningRegistry
    group: DirectoryGroup
    leaver: User
    leaver_secret: str
    colleague: User
    colleague_secret: str

    @property
    def image(self) -> str:
        return f"{self.running.host}/{REPOSITORY}:v1"


@pytest.fixture
def team(customs_registry: tuple[Registry, RunningRegistry], settings: Settings) -> Team:
    registry, running = customs_registry
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # hashing is Django's
    cache.clear()  # allauth counts failed sign-ins per IP in the cache, and every test client is 127.0.0.1
    group = factories.group(display_name="Payments")
    rule(group, registry, "team/**", "pull", "push")
    leaver, colleague = factories.user(password=PASSWORD), factories.user()
    factories.member(leaver, group)
    factories.member(colleague, group)
    return Team(
        registry, running, group, leaver, registry_token(leaver), colleague, registry_token(colleague)
    )


def attempt(skopeo: Skopeo, *args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    """One skopeo command that may fail (Skopeo.run fails the test instead), with its own auth file."""
    env = {**os.environ, "REGISTRY_AUTH_FILE": str(skopeo.authfile)}
    return subprocess.run(
        [skopeo.binary, *args], input=stdin, capture_output=True, env=env, timeout=120, check=False
    )


def login(skopeo: Skopeo, team: Team, username: str, secret: str) -> subprocess.CompletedProcess[bytes]:
    """`skopeo login`, the secret on stdin as a careful person types it; stored in skopeo's auth file."""
    host = team.running.host
    args = ("login", "--tls-verify=false", "--username", username, "--password-stdin", host)
    return attempt(skopeo, *args, stdin=secret.encode())


def pull(
    skopeo: Skopeo, team: Team, into: Path, creds: tuple[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    """A real pull, layers and all, into a directory; without creds skopeo uses its stored login."""
    flags = ["--src-creds", f"{creds[0]}:{creds[1]}"] if creds else []
    return attempt(skopeo, "copy", "--src-tls-verify=false", *flags, f"docker://{team.image}", f"dir:{into}")


def refused(done: subprocess.CompletedProcess[bytes], because: str = DENIED) -> bool:
    """Failed, and because the credentials were refused (not a registry down or a typo)."""
    return done.returncode != 0 and because in done.stderr.decode(errors="replace")


def sign_in(browser: Client, person: User) -> None:
    reply = browser.post(reverse("account_login"), {"login": person.get_username(), "password": PASSWORD})
    assert reply.status_code == 302, reply.content[:500]


def session_exists(key: str) -> bool:
    return bool(import_module(settings.SESSION_ENGINE).SessionStore().exists(key))


def offboard(person: User, *, admin: User) -> Offboarding:
    """Start and confirm as an admin does; the run is queued on commit (and runs inline here)."""
    started = offboarding.start(person, actor=admin, reason="left the company")
    forgotten_after(lambda: offboarding.confirm(started, actor=admin))
    started.refresh_from_db()
    return started


def events(action: AuditAction, person: User) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action, target_id=str(person.pk)).order_by("sequence"))


def test_the_offboarded_person_is_refused_by_the_registry_and_signed_out(
    team: Team, skopeo: Skopeo, tmp_path: Path
) -> None:
    leaver, secret = team.leaver, team.leaver_secret
    token = PersonalToken.objects.get(owner=leaver)
    admin = factories.user_with_role(Role.ADMIN)

    # Before: they push, log in with skopeo, pull with that login, and use the portal.
    assert push(team.running, leaver.username, secret) == 201
    assert login(skopeo, team, leaver.username, secret).returncode == 0
    before = pull(skopeo, team, tmp_path / "before")
    assert before.returncode == 0, before.stderr
    assert (tmp_path / "before" / "manifest.json").exists()
    browser = Client()
    sign_in(browser, leaver)
    session_key = browser.session.session_key
    assert session_key
    assert session_exists(session_key)
    assert UserSession.objects.filter(user=leaver).count() == 1
    assert browser.get(reverse("portal:dashboard")).status_code == 200

    done = offboard(leaver, admin=admin)

    # The registry: their stored skopeo login, a fresh login and a push are all refused.
    assert refused(after := pull(skopeo, team, tmp_path / "after")), after.stderr
    assert not (tmp_path / "after" / "manifest.json").exists()
    assert refused(login(skopeo, team, leaver.username, secret), LOGIN_DENIED)
    assert push(team.running, leaver.username, secret, version="2") == 401
    denials = AuditEvent.objects.filter(
        action=AuditAction.REGISTRY_TOKEN_DENIED, target_id=str(team.registry.pk)
    )
    assert [event.detail["username"] for event in denials] == [leaver.username]  # the first of a window

    # No new token: the service refuses to issue one, and one slipped into the table opens nothing.
    leaver.refresh_from_db()
    assert (leaver.status, leaver.is_active) == (User.Status.DEPARTED, False)
    with pytest.raises(RequestRejected, match="departed"):
        account_services.create_token(leaver, actor=admin, name="again", kind=PersonalToken.Kind.REGISTRY)
    raw, lookup, digest = tokens.mint()
    PersonalToken.objects.create(
        owner=leaver,
        name="slipped-in",
        kind=PersonalToken.Kind.REGISTRY,
        scopes=["registry"],
        lookup=lookup,
        digest=digest,
        expires_at=timezone.now() + timedelta(days=1),
    )
    assert refused(login(skopeo, team, leaver.username, raw), LOGIN_DENIED)
    assert refused(pull(skopeo, team, tmp_path / "slipped", creds=(leaver.username, raw)))

    # The portal: the session ended with the offboarding (checked before the browser comes back,
    # whose request would end it anyway), the next page asks for a sign-in, and signing in fails.
    assert not UserSession.objects.filter(user=leaver).exists()
    assert not session_exists(session_key)
    page = browser.get(reverse("portal:dashboard"))
    assert (page.status_code, page["Location"].split("?")[0]) == (302, reverse("account_login"))
    browser.post(reverse("account_login"), {"login": leaver.username, "password": PASSWORD})
    assert "_auth_user_id" not in browser.session
    assert not UserSession.objects.filter(user=leaver).exists()

    # The record: every step done (the Customs ones with the status change, the membership by the
    # queued run), and the trail says who planned and confirmed it and what each part did.
    done.refresh_from_db()
    assert done.state == Offboarding.State.COMPLETED
    steps = dict(done.steps.values_list("key", "state"))
    assert steps == {
        "customs/sessions": OffboardingStep.State.DONE,
        f"customs/token-{token.pk}": OffboardingStep.State.DONE,
        f"customs/membership-{team.group.pk}": OffboardingStep.State.DONE,
    }
    # The worker's verification looked again at each and found it gone.
    assert set(done.steps.values_list("verification", flat=True)) == {OffboardingStep.Verification.GONE}
    assert done.verified_at is not None
    assert [e.actor_id for e in events(AuditAction.OFFBOARDING_PLANNED, leaver)] == [admin.pk]
    (confirmed,) = events(AuditAction.OFFBOARDING_CONFIRMED, leaver)
    assert (confirmed.actor_id, confirmed.detail["offboarding"]) == (admin.pk, done.pk)
    (departed,) = events(AuditAction.USER_DEPARTED, leaver)
    assert departed.actor_id == admin.pk
    assert (departed.detail["tokens_revoked"], departed.detail["sessions_ended"]) == (1, 1)
    ran = {e.detail["step"]: e.detail["state"] for e in events(AuditAction.OFFBOARDING_STEP, leaver)}
    assert ran == {f"customs/membership-{team.group.pk}": OffboardingStep.State.DONE}
    (finished,) = events(AuditAction.OFFBOARDING_FINISHED, leaver)
    assert finished.detail["state"] == Offboarding.State.COMPLETED
    assert confirmed.sequence < finished.sequence


def test_a_colleague_in_the_same_group_still_pulls(team: Team, skopeo: Skopeo, tmp_path: Path) -> None:
    colleague = (team.colleague.username, team.colleague_secret)
    assert push(team.running, team.leaver.username, team.leaver_secret) == 201
    assert pull(skopeo, team, tmp_path / "before", creds=colleague).returncode == 0

    offboard(team.leaver, admin=factories.user_with_role(Role.ADMIN))

    assert refused(pull(skopeo, team, tmp_path / "leaver", creds=(team.leaver.username, team.leaver_secret)))
    after = pull(skopeo, team, tmp_path / "after", creds=colleague)
    assert after.returncode == 0, after.stderr
    assert (tmp_path / "after" / "manifest.json").exists()
    assert GroupMembership.objects.filter(group=team.group).get().user == team.colleague
    assert push(team.running, *colleague, version="2") == 201
