"""A real docker-registry trusting Customs' token server, driven by skopeo and the demo Pusher."""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from django.conf import settings
from django.core.management import call_command
from django.utils import timezone

from accounts import services as account_services
from accounts.models import GroupMembership, PersonalToken, User
from registries.demo.images import Pusher, RegistryError, base_image
from registries.models import Registry
from registries.tokenserver import keys
from tests import factories
from tests.registries.harness import RunningRegistry, Skopeo, launch_registry
from tests.registries.tokenserver.helpers import registry_token, rule

if TYPE_CHECKING:
    from pytest_django.live_server_helper import LiveServer

pytestmark = pytest.mark.django_db(transaction=True)

REPOSITORY = "team/app"


@pytest.fixture
def customs_registry(live_server: LiveServer, tmp_path: Path) -> Iterator[tuple[Registry, RunningRegistry]]:
    """A registry whose auth is Customs: realm on the live server, bundle from the command."""
    keys.generate(actor=None)
    out = io.StringIO()
    call_command("registry_token_keys", "bundle", stdout=out)
    bundle = tmp_path / "customs-bundle.pem"
    bundle.write_text(out.getvalue())
    registry = factories.registry(token_service="customs-e2e")
    token = {
        "realm": f"{live_server.url}/auth/token",
        "service": registry.token_service,
        "issuer": settings.REGISTRY_TOKEN_ISSUER,
        "rootcertbundle": str(bundle),
    }
    running = launch_registry(tmp_path / "registry", auth={"token": token})
    yield registry, running
    running.stop()


def member_of(registry: Registry, *actions: str) -> tuple[User, str]:
    person, team = factories.user(), factories.group()
    factories.member(person, team)
    rule(team, registry, "team/**", *actions)
    return person, registry_token(person)


def pull(running: RunningRegistry, person: User, secret: str) -> int:
    """The status of a manifest read with fresh credentials (a new Pusher asks for a new token)."""
    pusher = Pusher(running.url, auth=(person.username, secret))
    try:
        # 2.8 answers 404 for an OCI manifest unless the client says it accepts one.
        accept = {"Accept": "application/vnd.oci.image.manifest.v1+json"}
        return pusher.request(
            "GET", f"/v2/{REPOSITORY}/manifests/v1", expect=[200], headers=accept
        ).status_code
    except RegistryError as error:
        return error.status


def push(running: RunningRegistry, person: User, secret: str, version: str = "1") -> int:
    try:
        Pusher(running.url, auth=(person.username, secret)).push_image(
            REPOSITORY, base_image("e2e", version=version), tags=[f"v{version}"]
        )
    except RegistryError as error:
        return error.status
    return 201


def test_groups_decide_who_pushes_and_pulls(
    customs_registry: tuple[Registry, RunningRegistry], skopeo: Skopeo
) -> None:
    registry, running = customs_registry
    pusher, pusher_secret = member_of(registry, "pull", "push")
    reader, reader_secret = member_of(registry, "pull")
    outsider = factories.user()
    outsider_secret = registry_token(outsider)

    assert push(running, pusher, pusher_secret) == 201
    manifest = skopeo.inspect_raw(f"{running.host}/{REPOSITORY}:v1", creds=(reader.username, reader_secret))
    assert b"layers" in manifest
    assert pull(running, reader, reader_secret) == 200
    assert push(running, reader, reader_secret, version="2") == 401
    assert pull(running, outsider, outsider_secret) == 401


def test_losing_the_group_or_departing_denies_the_next_token(
    customs_registry: tuple[Registry, RunningRegistry],
) -> None:
    registry, running = customs_registry
    pusher, secret = member_of(registry, "pull", "push")
    assert push(running, pusher, secret) == 201
    GroupMembership.objects.filter(user=pusher).delete()
    assert push(running, pusher, secret, version="2") == 401
    assert pull(running, pusher, secret) == 401

    leaver, leaver_secret = member_of(registry, "pull")
    assert pull(running, leaver, leaver_secret) == 200
    account_services.deactivate_user(leaver, actor=None, reason="left", departed=True)
    assert pull(running, leaver, leaver_secret) == 401  # the realm answers 401: no token at all


def test_expired_and_revoked_customs_tokens_are_refused(
    customs_registry: tuple[Registry, RunningRegistry],
) -> None:
    registry, running = customs_registry
    person, secret = member_of(registry, "pull", "push")
    assert push(running, person, secret) == 201
    PersonalToken.objects.filter(owner=person).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert pull(running, person, secret) == 401
    revoked, revoked_secret = factories.token(person, kind=PersonalToken.Kind.REGISTRY)
    assert pull(running, person, revoked_secret) == 200
    account_services.revoke_token(revoked, actor=None)
    assert pull(running, person, revoked_secret) == 401
