"""A real docker-registry trusting Customs' token server, driven by skopeo and the demo Pusher."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from accounts import services as account_services
from accounts.directory import GroupClaim, sync_sign_in_groups
from accounts.models import DirectoryGroup, GroupMembership, PersonalToken, Source, User
from registries.demo.images import Pusher, RegistryError
from registries.models import Registry
from tests import factories
from tests.accounts.scim.conftest import connection
from tests.registries.harness import RunningRegistry, Skopeo
from tests.registries.tokenserver.helpers import REPOSITORY, forgotten_after, push, registry_token, rule

pytestmark = pytest.mark.django_db(transaction=True)


def member_of(registry: Registry, *actions: str) -> tuple[User, str]:
    person, team = factories.user(), factories.group()
    factories.member(person, team)
    rule(team, registry, "team/**", *actions)
    return person, registry_token(person)


def group_of(person: User) -> DirectoryGroup:
    return GroupMembership.objects.select_related("group").get(user=person).group


def pull(running: RunningRegistry, username: str, secret: str) -> int:
    """The status of a manifest read with fresh credentials (a new Pusher asks for a new token)."""
    pusher = Pusher(running.url, auth=(username, secret))
    try:
        # 2.8 answers 404 for an OCI manifest unless the client says it accepts one.
        accept = {"Accept": "application/vnd.oci.image.manifest.v1+json"}
        return pusher.request(
            "GET", f"/v2/{REPOSITORY}/manifests/v1", expect=[200], headers=accept
        ).status_code
    except RegistryError as error:
        return error.status


def test_groups_decide_who_pushes_and_pulls(
    customs_registry: tuple[Registry, RunningRegistry], skopeo: Skopeo
) -> None:
    registry, running = customs_registry
    pusher, pusher_secret = member_of(registry, "pull", "push")
    reader, reader_secret = member_of(registry, "pull")
    outsider = factories.user()
    outsider_secret = registry_token(outsider)

    assert push(running, pusher.username, pusher_secret) == 201
    manifest = skopeo.inspect_raw(f"{running.host}/{REPOSITORY}:v1", creds=(reader.username, reader_secret))
    assert b"layers" in manifest
    assert pull(running, reader.username, reader_secret) == 200
    assert push(running, reader.username, reader_secret, version="2") == 401
    assert pull(running, outsider.username, outsider_secret) == 401


def leave_by_sign_in(person: User) -> None:
    """The person's next sign-in carries their groups as the identity provider now has them: not this one."""
    group = group_of(person)
    change = sync_sign_in_groups(person, [GroupClaim("some-other-group")], source=Source.OIDC)
    assert change.removed == [group.external_id]


def leave_by_scim(person: User) -> None:
    """The provisioning client PATCHes the group, removing the person, as Entra and Okta do."""
    group = group_of(person)
    scim = connection(Client(), directory=person.directory)
    reply = scim.patch(
        f"/Groups/{group.scim_id}", {"op": "remove", "path": f'members[value eq "{person.scim_id}"]'}
    )
    assert reply.status == 204, reply.body


@pytest.mark.parametrize("leave", [leave_by_sign_in, leave_by_scim], ids=["sign-in", "scim"])
def test_losing_the_group_denies_the_next_token(
    customs_registry: tuple[Registry, RunningRegistry], leave: Callable[[User], None]
) -> None:
    registry, running = customs_registry
    pusher, secret = member_of(registry, "pull", "push")
    assert push(running, pusher.username, secret) == 201
    team = group_of(pusher)
    forgotten_after(lambda: leave(pusher))
    assert not GroupMembership.objects.filter(user=pusher, group=team).exists()
    assert push(running, pusher.username, secret, version="2") == 401
    assert pull(running, pusher.username, secret) == 401


def test_departing_denies_the_next_token(customs_registry: tuple[Registry, RunningRegistry]) -> None:
    registry, running = customs_registry
    leaver, leaver_secret = member_of(registry, "pull", "push")
    assert push(running, leaver.username, leaver_secret) == 201
    assert pull(running, leaver.username, leaver_secret) == 200
    forgotten_after(
        lambda: account_services.deactivate_user(leaver, actor=None, reason="left", departed=True)
    )
    assert pull(running, leaver.username, leaver_secret) == 401  # the realm answers 401: no token at all


def test_expired_and_revoked_customs_tokens_are_refused(
    customs_registry: tuple[Registry, RunningRegistry],
) -> None:
    registry, running = customs_registry
    person, secret = member_of(registry, "pull", "push")
    assert push(running, person.username, secret) == 201
    forgotten_after(
        lambda: PersonalToken.objects.filter(owner=person).update(
            expires_at=timezone.now() - timedelta(seconds=1)
        )
    )
    assert pull(running, person.username, secret) == 401
    revoked, revoked_secret = factories.token(person, kind=PersonalToken.Kind.REGISTRY)
    assert pull(running, person.username, revoked_secret) == 200
    forgotten_after(lambda: account_services.revoke_token(revoked, actor=None))
    assert pull(running, person.username, revoked_secret) == 401


def test_a_robot_of_the_push_group_pushes_and_pulls_until_revoked(
    customs_registry: tuple[Registry, RunningRegistry], skopeo: Skopeo
) -> None:
    registry, running = customs_registry
    pushers = factories.group(display_name="Pushers")
    rule(pushers, registry, "team/**", "pull", "push")
    robot, secret = factories.robot(pushers, name="e2e-pusher")
    creds = (robot.username, secret)

    assert push(running, *creds) == 201
    skopeo.copy(
        f"{running.host}/{REPOSITORY}:v1",
        f"{running.host}/{REPOSITORY}:copied",
        src_creds=creds,
        dest_creds=creds,
    )
    assert skopeo.list_tags(f"{running.host}/{REPOSITORY}", creds=creds) == ["copied", "v1"]
    assert pull(running, *creds) == 200
    forgotten_after(lambda: account_services.revoke_robot_token(robot, actor=None))
    assert pull(running, *creds) == 401
