"""Docker Hub credentials, grants, writes and permission checks against the fake Hub (tests/fakes)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from accounts.models import User
from registries import drift, services, sync
from registries.connectors.base import (
    AccessPlan,
    ChangeOp,
    CredentialKind,
    GrantChange,
    Principal,
    PrincipalKind,
    RemoteCredential,
    RemoteGrant,
)
from registries.connectors.dockerhub import DockerHubConnector
from registries.connectors.errors import AuthError, PermanentError, RateLimited, TransientError
from registries.models import Credential, Grant, Registry, SyncRun
from tests import factories
from tests.fakes.dockerhub import MISSING, FakeDockerHub, Member, OrgToken, PersonalToken
from tests.fakes.server import Answer
from tests.registries.harness import RunningRegistry
from tests.registries.test_dockerhub import connector, public_config, seed

CREATED = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
USED = datetime(2026, 11, 2, 14, 0, tzinfo=UTC)
EXPIRES = datetime(2027, 3, 1, 9, 0, tzinfo=UTC)
PUSHED = datetime(2026, 10, 30, 12, 0, tzinfo=UTC)
ALL = frozenset({"pull", "push", "delete"})


@pytest.fixture
def hub(registry: RunningRegistry) -> Iterator[FakeDockerHub]:
    fake = FakeDockerHub(registry_url=registry.url).start()
    yield fake
    fake.stop()
    assert not fake.drift, "the fake answered in a shape Docker Hub does not use:\n" + "\n".join(fake.drift)


def organisation(hub: FakeDockerHub) -> None:
    """Two teams on acme/app and acme/worker, an organisation token, and the CI account's own PATs."""
    hub.add_team("dev", ["alice", "bob"], app="write")
    hub.add_team("ops", ["carol"], worker="admin", app="read")
    hub.members["dora"] = Member("dora", "Dora@Acme.example", role="Owner", full_name="Dora Owner")
    hub.org_tokens.append(
        OrgToken(
            label="ci-pull",
            created_by="dora",
            created_at=CREATED,
            last_used_at=USED,
            resources=[
                {"type": "TYPE_REPO", "path": "acme/app", "scopes": ["repo-pull", "repo-push"]},
                {"type": "TYPE_REPO", "path": "*/*/public", "scopes": ["repo-pull"]},
            ],
        )
    )
    hub.personal_tokens += [
        PersonalToken("laptop", ["repo:read"], CREATED, last_used=USED, expires_at=EXPIRES),
        PersonalToken("unused", ["repo:admin"], CREATED, last_used=None, expires_at=None, is_active=False),
    ]


def by_name(credentials: Iterator[RemoteCredential]) -> dict[str, RemoteCredential]:
    return {credential.name: credential for credential in credentials}


def triples(grants: Iterator[RemoteGrant]) -> set[tuple[str, str, str, frozenset[str], str]]:
    return {(str(g.principal.kind), g.principal.id, g.scope, g.actions, g.source) for g in grants}


# --- credentials ----------------------------------------------------------------------------------


def test_personal_and_organisation_tokens_with_expiry_and_last_use(
    registry: RunningRegistry, hub: FakeDockerHub
) -> None:
    organisation(hub)
    found = by_name(connector(hub, page_size=1).read_credentials())  # one per page: every list is followed

    laptop, unused, oat = found["laptop"], found["unused"], found["ci-pull"]
    assert laptop.kind == CredentialKind.ACCESS_TOKEN
    assert (laptop.created_at, laptop.expires_at, laptop.last_used_at) == (CREATED, EXPIRES, USED)
    assert laptop.owner is not None
    assert laptop.owner.id == hub.username
    assert laptop.last_used_source == "Docker Hub token list"
    assert laptop.scopes == ("repo:read",)
    # Null is "never", not "unknown", for both expiry and last use.
    assert (unused.expires_at, unused.expiry_known, unused.last_used_at, unused.usage_known) == (
        None,
        True,
        None,
        True,
    )
    assert not unused.enabled
    assert oat.kind == CredentialKind.ORGANIZATION_TOKEN
    assert oat.created_by is not None
    assert (oat.created_by.id, oat.created_by.name) == ("dora", "Dora Owner")
    assert oat.created_by.directory_id == ""  # e-mails are not the directory's ids unless configured
    assert (oat.expires_at, oat.expiry_known, oat.last_used_at) == (None, True, USED)
    assert oat.scopes == ("acme/app: repo-pull, repo-push", "*/*/public: repo-pull")
    # What each may do: PAT scopes include the ones below them; an OAT's repository scopes add up.
    assert (laptop.actions, unused.actions, oat.actions) == (
        frozenset({"pull"}),
        ALL,
        frozenset({"pull", "push"}),
    )
    # The audit log was read and shows no push or delete by the account; OATs have no evidence at all.
    assert (unused.actions_seen, unused.actions_seen_source) == (
        {},
        f"Docker Hub audit log: {hub.username}'s pushes and deletes (pulls are not logged)",
    )
    assert (oat.actions_seen, oat.actions_seen_source) == ({}, "")


def test_the_accounts_audited_pushes_and_deletes_are_its_tokens_evidence(
    registry: RunningRegistry, hub: FakeDockerHub
) -> None:
    organisation(hub)
    deleted = datetime(2026, 9, 1, 10, 0, tzinfo=UTC)
    hub.audit_logs += [
        {"account": "acme", "action": "repo.tag.push", "name": "acme/app", "actor": hub.username,
         "data": {"tag": "2"}, "timestamp": "2026-10-30T12:00:00Z", "action_description": "pushed"},
        {"account": "acme", "action": "repo.tag.delete", "name": "acme/app", "actor": hub.username,
         "data": {"tag": "old"}, "timestamp": "2026-09-01T10:00:00Z", "action_description": "deleted"},
        {"account": "acme", "action": "repo.delete", "name": "acme/scratch", "actor": "alice",
         "data": {}, "timestamp": "2026-11-30T12:00:00Z", "action_description": "deleted"},
    ]  # fmt: skip

    found = by_name(connector(hub).read_credentials())

    # repo:admin may push and delete: the account's latest of each (alice's delete is hers, not ours).
    assert found["unused"].actions_seen == {"push": PUSHED, "delete": deleted}
    # repo:read cannot push or delete: what the account did was through another token.
    assert found["laptop"].actions_seen == {}
    assert found["laptop"].actions_seen_source.startswith("Docker Hub audit log")
    audit_reads = [seen for seen in hub.requests_seen if seen.startswith("GET /v2/auditlogs/")]
    assert len(audit_reads) == 3  # once per audited action for the account, not per token


def test_no_readable_audit_log_is_no_evidence(registry: RunningRegistry, hub: FakeDockerHub) -> None:
    organisation(hub)
    hub.forbidden.add("audit_logs")  # a member, not an owner
    found = by_name(connector(hub).read_credentials())
    assert (found["unused"].actions, found["unused"].actions_seen_source) == (ALL, "")


def test_a_missing_last_use_is_estimated_from_the_audit_log(
    registry: RunningRegistry, hub: FakeDockerHub
) -> None:
    organisation(hub)
    hub.personal_tokens[0].last_used = MISSING
    hub.org_tokens[0].last_used_at = MISSING
    hub.audit_logs += [
        {"account": "acme", "action": "repo.tag.push", "name": "acme/app", "actor": hub.username,
         "data": {"tag": "1"}, "timestamp": "2026-10-01T08:00:00Z", "action_description": "pushed"},
        {"account": "acme", "action": "repo.tag.push", "name": "acme/app", "actor": hub.username,
         "data": {"tag": "2"}, "timestamp": "2026-10-30T12:00:00Z", "action_description": "pushed"},
        {"account": "acme", "action": "repo.tag.push", "name": "acme/app", "actor": "alice",
         "data": {"tag": "3"}, "timestamp": "2026-11-30T12:00:00Z", "action_description": "pushed"},
    ]  # fmt: skip
    found = by_name(connector(hub).read_credentials())

    assert (found["laptop"].last_used_at, found["laptop"].usage_known) == (PUSHED, True)
    assert "audit log" in found["laptop"].last_used_source
    assert "estimate" in found["laptop"].last_used_source
    # The audit log names people, never organisation tokens: unknown stays unknown.
    assert (found["ci-pull"].last_used_at, found["ci-pull"].usage_known) == (None, False)
    assert found["ci-pull"].last_used_source == ""


def test_no_audited_push_leaves_the_last_use_unknown(registry: RunningRegistry, hub: FakeDockerHub) -> None:
    hub.personal_tokens.append(PersonalToken("laptop", ["repo:read"], CREATED, last_used=MISSING))
    (laptop,) = connector(hub).read_credentials()
    assert (laptop.last_used_at, laptop.usage_known, laptop.last_used_source) == (None, False, "")


def test_signed_in_with_an_organisation_token_there_are_no_personal_tokens(
    registry: RunningRegistry, hub: FakeDockerHub
) -> None:
    organisation(hub)
    hub.token = "dckr_oat_" + hub.token.removeprefix("dckr_pat_")
    assert [c.kind for c in connector(hub).read_credentials()] == [CredentialKind.ORGANIZATION_TOKEN]
    assert not any(seen.startswith("GET /v2/access-tokens") for seen in hub.requests_seen)


def test_a_personal_namespace_has_its_owner_and_personal_tokens_only(registry: RunningRegistry) -> None:
    fake = FakeDockerHub(registry_url=registry.url, namespace="some-org").start()  # acme is a user here
    try:
        seed(registry)
        fake.personal_tokens.append(PersonalToken("laptop", ["repo:read"], CREATED, last_used=USED))
        hub_connector = connector(fake)
        assert [c.name for c in hub_connector.read_credentials()] == ["laptop"]
        assert triples(hub_connector.read_grants()) == {
            ("user", "acme", "**", ALL, "owner of the personal namespace")
        }
    finally:
        fake.stop()
    assert not fake.drift


# --- grants -----------------------------------------------------------------------------------------


def test_owners_teams_their_members_and_organisation_tokens_are_grants(
    registry: RunningRegistry, hub: FakeDockerHub
) -> None:
    seed(registry)
    organisation(hub)
    hub.members["ivy"] = Member("ivy", "ivy@acme.example", role="Invitee")  # not in yet: no access
    grants = list(connector(hub, page_size=1).read_grants())
    dev, ops = str(hub.teams["dev"].id), str(hub.teams["ops"].id)
    oat = hub.org_tokens[0].id
    assert triples(iter(grants)) == {
        ("user", "acme-ci", "**", ALL, "organisation owner"),
        ("user", "dora", "**", ALL, "organisation owner"),
        ("group", dev, "acme/app", frozenset({"pull", "push"}), "team dev: write"),
        ("user", "alice", "acme/app", frozenset({"pull", "push"}), "team dev member: write"),
        ("user", "bob", "acme/app", frozenset({"pull", "push"}), "team dev member: write"),
        ("group", ops, "acme/app", frozenset({"pull"}), "team ops: read"),
        ("user", "carol", "acme/app", frozenset({"pull"}), "team ops member: read"),
        ("group", ops, "acme/worker", ALL, "team ops: admin"),
        ("user", "carol", "acme/worker", ALL, "team ops member: admin"),
        # `*/*/public` is everyone's anyway; only the organisation's own repositories are grants.
        (
            "robot",
            oat,
            "acme/app",
            frozenset({"pull", "push"}),
            "organisation token: acme/app: repo-pull, repo-push",
        ),
    }
    team = next(g.principal for g in grants if g.principal.kind == PrincipalKind.GROUP)
    assert team.directory_id == ""  # Docker Hub teams carry no directory id: never linked by name
    assert not any(seen.startswith("GET /v2/access-tokens") for seen in hub.requests_seen)


def test_members_in_the_described_array_shape_are_read_too(
    registry: RunningRegistry, hub: FakeDockerHub
) -> None:
    seed(registry)
    organisation(hub)
    hub.members_shape = "array"
    owners = {g.principal.id for g in connector(hub).read_grants() if g.scope == "**"}
    assert owners == {"acme-ci", "dora"}


def test_a_deactivated_organisation_token_grants_nothing(
    registry: RunningRegistry, hub: FakeDockerHub
) -> None:
    seed(registry)
    organisation(hub)
    hub.org_tokens[0].is_active = False
    assert not [g for g in connector(hub).read_grants() if g.principal.kind == PrincipalKind.ROBOT]


@pytest.mark.django_db
def test_a_sync_stores_credentials_and_grants_linking_people_by_email_when_told(
    registry: RunningRegistry, hub: FakeDockerHub
) -> None:
    seed(registry)
    organisation(hub)
    dora = User.objects.create(username="dora", external_id="dora@acme.example")
    saved = services.save_registry(
        Registry(name="hub-acme", kind="dockerhub", endpoint=hub.url),
        actor=None,
        public={
            key: value
            for key, value in public_config(hub, link_members_by_email=True).items()
            if key != "url"
        },
        secrets={"token": hub.token},
    )
    run = sync.sync_inventory(saved)
    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    assert (run.grants_seen, run.credentials_seen) == (10, 3)
    owner = Grant.objects.get(registry=saved, principal_id="dora")
    assert (owner.user_id, owner.scope, owner.can_delete) == (dora.pk, "**", True)
    oat = Credential.objects.get(registry=saved, kind=CredentialKind.ORGANIZATION_TOKEN)
    assert oat.created_by_user_id == dora.pk
    assert oat.expires_at is None
    assert oat.expiry_known


# --- writes -----------------------------------------------------------------------------------------


def test_disabling_an_organisation_token_or_a_personal_one_is_idempotent(
    registry: RunningRegistry, hub: FakeDockerHub
) -> None:
    organisation(hub)
    hub_connector = connector(hub)
    oat, pat = hub.org_tokens[0], hub.personal_tokens[0]
    hub_connector.disable_credential(oat.id)
    hub_connector.disable_credential(oat.id)  # again: still success
    hub_connector.disable_credential(pat.uuid)
    hub_connector.disable_credential("00000000-0000-0000-0000-000000000000")  # gone: success
    assert (oat.is_active, pat.is_active) == (False, False)
    assert hub.writes == [
        f"PATCH /v2/orgs/acme/access-tokens/{oat.id}",
        f"PATCH /v2/orgs/acme/access-tokens/{oat.id}",
        f"PATCH /v2/access-tokens/{pat.uuid}",
    ]
    assert not by_name(hub_connector.read_credentials())["ci-pull"].enabled


def test_removing_people_from_a_team_and_from_the_organisation_is_idempotent(
    registry: RunningRegistry, hub: FakeDockerHub
) -> None:
    organisation(hub)
    hub_connector = connector(hub)
    hub_connector.remove_team_member("dev", "alice")
    hub_connector.remove_team_member("dev", "alice")
    assert hub.teams["dev"].members == ["bob"]
    assert "alice" in hub.members
    hub_connector.remove_member("carol")
    hub_connector.remove_member("carol")
    assert "carol" not in hub.members
    assert hub.teams["ops"].members == []
    assert len(hub.writes) == 2


def team(hub: FakeDockerHub, name: str) -> Principal:
    return Principal(PrincipalKind.GROUP, id=str(hub.teams[name].id), name=name)


def test_a_plan_sets_team_permissions_and_takes_members_off_teams(
    registry: RunningRegistry, hub: FakeDockerHub
) -> None:
    seed(registry)
    organisation(hub)
    plan = AccessPlan(
        registry="hub-acme",
        additions=(
            GrantChange(ChangeOp.ADD, team(hub, "dev"), "acme/worker", ("pull",)),
            GrantChange(ChangeOp.ADD, team(hub, "ops"), "acme/app", ("push",)),  # read → write
        ),
        removals=(
            GrantChange(ChangeOp.REMOVE, team(hub, "dev"), "acme/app", ("push",), source="team dev: write"),
            GrantChange(
                ChangeOp.REMOVE,
                Principal(PrincipalKind.USER, id="carol"),
                "acme/worker",
                ("pull", "push", "delete"),
                source="team ops member: admin",
            ),
        ),
    )
    hub_connector = connector(hub)
    assert list(hub_connector.apply_access_plan(plan)) == list(plan.changes)
    assert hub.team_permissions == {
        ("acme/app", "dev"): "read",
        ("acme/app", "ops"): "write",
        ("acme/worker", "dev"): "read",
        ("acme/worker", "ops"): "admin",
    }
    assert hub.teams["ops"].members == []
    writes = len(hub.writes)
    assert list(hub_connector.apply_access_plan(plan)) == list(plan.changes)  # a re-run changes nothing
    assert len(hub.writes) == writes


@pytest.mark.parametrize(
    ("change", "refusal"),
    [
        (
            lambda hub: GrantChange(ChangeOp.REMOVE, team(hub, "ops"), "acme/app", ("pull",)),
            "cannot take team ops off",
        ),
        (
            lambda hub: GrantChange(ChangeOp.ADD, team(hub, "dev"), "acme/worker", ("delete",)),
            "no team permission",
        ),
        (
            lambda hub: GrantChange(
                ChangeOp.ADD,
                Principal(PrincipalKind.GROUP, id="0c1f-entra-object-id", name="dev"),
                "acme/app",
                ("pull",),
            ),
            "no Docker Hub team has the id 0c1f-entra-object-id",
        ),
        (
            lambda hub: GrantChange(ChangeOp.ADD, team(hub, "dev"), "acme/**", ("pull",)),
            r"single repositories, not acme/\*\*",
        ),
        (
            lambda hub: GrantChange(
                ChangeOp.REMOVE,
                Principal(PrincipalKind.USER, id="dora"),
                "**",
                ("pull",),
                source="organisation owner",
            ),
            "does not demote",
        ),
        (
            lambda hub: GrantChange(
                ChangeOp.REMOVE,
                Principal(PrincipalKind.USER, id="alice"),
                "acme/app",
                ("push",),
                source="team dev member: write",
            ),
            "part of a team's permission",
        ),
    ],
)
def test_what_docker_hub_cannot_do_is_refused_with_the_reason(
    registry: RunningRegistry, hub: FakeDockerHub, change: Any, refusal: str
) -> None:
    seed(registry)
    organisation(hub)
    before = dict(hub.team_permissions)
    plan = AccessPlan(registry="hub-acme", additions=(change(hub),))
    with pytest.raises(PermanentError, match=refusal):
        list(connector(hub).apply_access_plan(plan))
    assert hub.team_permissions == before
    assert not hub.writes


# --- permission checks, errors and limits ---------------------------------------------------------


def test_each_needed_permission_is_checked(registry: RunningRegistry, hub: FakeDockerHub) -> None:
    seed(registry)
    checks = connector(hub).check_permissions()
    assert [c.permission for c in checks] == list(DockerHubConnector.needs)
    assert all(c.ok for c in checks), [c for c in checks if not c.ok]
    assert "acme/app" in checks[3].detail


def test_a_member_without_the_owner_role_sees_which_permissions_are_missing(
    registry: RunningRegistry, hub: FakeDockerHub
) -> None:
    seed(registry)
    hub.members[hub.username].role = "Member"
    hub.forbidden |= {"org_tokens", "audit_logs"}
    checks = {c.permission: c for c in connector(hub).check_permissions()}
    needs = DockerHubConnector.needs
    assert [checks[n].ok for n in needs] == [True, True, True, True, False, True, False, False]
    assert "403 from" in checks[needs[4]].detail
    assert "not an owner (member)" in checks[needs[7]].detail


def test_a_forbidden_listing_fails_the_whole_read(registry: RunningRegistry, hub: FakeDockerHub) -> None:
    seed(registry)
    organisation(hub)
    hub.forbidden.add("repository_teams")
    with pytest.raises(AuthError, match="403 from .*/v2/repositories/acme/app/groups"):
        list(connector(hub).read_grants())


def test_a_rate_limited_team_listing_says_when_to_come_back(
    registry: RunningRegistry, hub: FakeDockerHub
) -> None:
    organisation(hub)
    hub_connector = connector(hub)
    hub_connector.check()  # signed in
    hub.fail_next.append(Answer(429, {"detail": "Rate limit exceeded"}, headers={"Retry-After": "42"}))
    with pytest.raises(RateLimited) as raised:
        list(hub_connector.read_credentials())
    assert raised.value.retry_after == 42


def test_an_expired_session_is_renewed_for_writes_too(registry: RunningRegistry, hub: FakeDockerHub) -> None:
    organisation(hub)
    hub_connector = connector(hub)
    hub_connector.check()
    hub.revoke_sessions()
    hub_connector.disable_credential(hub.org_tokens[0].id)
    assert not hub.org_tokens[0].is_active
    assert hub.sign_ins == 2


def test_a_drifting_organisation_token_answer_fails_the_test(
    registry: RunningRegistry, hub: FakeDockerHub
) -> None:
    organisation(hub)
    hub.mutate = lambda body: (
        {**body, "is_active": "yes"} if isinstance(body, dict) and "label" in body else body
    )
    with pytest.raises(TransientError, match="500 from"):
        list(connector(hub).read_credentials())
    assert "yes" in hub.drift[0]
    hub.drift.clear()


@pytest.mark.django_db
def test_a_team_linked_to_a_directory_group_counts_as_it_and_receives_its_access(
    registry: RunningRegistry, hub: FakeDockerHub
) -> None:
    """Docker Hub cannot name a directory group; an admin's link makes the team stand for one."""
    seed(registry)
    organisation(hub)
    saved = services.save_registry(
        Registry(name="hub-acme", kind="dockerhub", endpoint=hub.url),
        actor=None,
        public={key: value for key, value in public_config(hub).items() if key != "url"},
        secrets={"token": hub.token},
    )
    developers = factories.group(display_name="Developers")
    factories.access_rule(developers, "acme/app", "pull", "push", registry=saved)
    factories.access_rule(developers, "acme/worker", "pull", registry=saved)
    dev_team = str(hub.teams["dev"].id)
    services.link_principal(saved, kind="group", principal_id=dev_team, group=developers, actor=None)
    assert sync.sync_inventory(saved).status == SyncRun.Status.SUCCEEDED

    result = drift.compute(saved)

    # The team's write on acme/app is the group's, which its rules allow: not drift.
    assert not [u for u in result.unruled if u.grant.principal_id == dev_team]
    [addition] = [a for a in result.plan.additions if a.principal.id == dev_team]
    assert (addition.scope, addition.actions) == ("acme/worker", ("pull",))
    applied = list(connector(hub).apply_access_plan(AccessPlan(registry="hub-acme", additions=(addition,))))
    assert applied == [addition]
    assert hub.team_permissions[("acme/worker", "dev")] == "read"
