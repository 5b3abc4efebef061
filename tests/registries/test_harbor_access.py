"""Harbor robots, members, public projects, writes, permissions and replication, against the fake Harbor.

The fake (tests/fakes/harbor.py) checks every answer against Harbor's swagger and every body the
connector sends against its request schema; the `harbor` fixture fails a test that saw either drift.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest

from registries import connectors, drift, services, sync
from registries.connectors.base import (
    ACTIONS,
    AccessPlan,
    ChangeOp,
    CredentialKind,
    GrantChange,
    Principal,
    PrincipalKind,
    RemoteGrant,
)
from registries.connectors.errors import AuthError, ConfigError, PermanentError, RateLimited, TransientError
from registries.connectors.harbor import HarborConnector
from registries.demo import images as im
from registries.models import Credential, Grant, Registry, SyncRun
from tests import factories
from tests.fakes.harbor import OIDC_CLI_SECRET, FakeHarbor
from tests.fakes.server import Answer
from tests.registries.harness import RunningRegistry

EXPIRES = datetime(2027, 3, 1, tzinfo=UTC)
USED = datetime(2026, 11, 2, 9, 15, tzinfo=UTC)
OIDC, LDAP, HTTP = 3, 1, 2
ENTRA_GROUP = "6f1c1a8e-3f9b-4a57-9d2e-0c9a4f0b7d11"  # the groups claim value: an Entra group object id
ISSUER = "https://sso.acme.test/realms/acme"  # the identity provider Harbor and Customs both use
SUBJECT = "ca4bb144-4b5c-4d1b-9469-69cb3768af8f"  # alice's sub there: Customs' external id for her
# The calls a read-only robot may not make: the fake refuses them, and says so when asked.
READ_ONLY = {
    "POST /projects/{project_name_or_id}/members",
    "PUT /projects/{project_name_or_id}/members/{mid}",
    "DELETE /projects/{project_name_or_id}/members/{mid}",
    "PUT /robots/{robot_id}",
    "DELETE /robots/{robot_id}",
}


def connector(fake: FakeHarbor, **public: Any) -> HarborConnector:
    built = connectors.build(
        "harbor", {"url": fake.url, "username": fake.username, **public}, {"password": fake.password}
    )
    assert isinstance(built, HarborConnector)
    return built


def seed(registry: RunningRegistry, *names: str) -> None:
    pusher, image = registry.pusher(), im.base_image("debian", version="12")
    for name in names:
        pusher.push_image(name, image, tags=["1"])


def group_principal(external_id: str, name: str = "Payments") -> Principal:
    """A directory group as drift's plans name it (registries/drift.py _additions)."""
    return Principal(kind=PrincipalKind.GROUP, id=external_id, name=name, directory_id=external_id)


# --- credentials -------------------------------------------------------------------------------------


def test_robots_are_credentials_with_creator_expiry_permissions_and_audit_log_use(harbor: FakeHarbor) -> None:
    alice = harbor.add_user("alice")
    ci = harbor.add_robot(
        "ci",
        access={"payments": ["pull", "push"]},
        expires_at=int(EXPIRES.timestamp()),
        creator=("local", alice),
    )
    harbor.add_robot("mirror", access={"*": ["pull"]}, disable=True, creator=("robot", ci))
    harbor.log("robot$payments+ci", USED - timedelta(days=3))
    harbor.log("robot$payments+ci", USED, operation="create")  # Harbor's word for a push
    harbor.log("alice", USED + timedelta(days=1))  # someone else's: not the robot's use

    found = {c.name: c for c in connector(harbor, page_size=1).read_credentials()}

    assert set(found) == {"robot$payments+ci", "robot$mirror", "admin"}
    robot = found["robot$payments+ci"]
    assert (robot.kind, robot.id, robot.enabled) == (CredentialKind.ROBOT, str(ci), True)
    assert (robot.expires_at, robot.expiry_known) == (EXPIRES, True)
    assert robot.created_by == Principal(kind=PrincipalKind.USER, id=str(alice), name="alice")
    assert robot.created_at == datetime(2026, 2, 1, tzinfo=UTC)
    assert robot.scopes == ("project payments: repository:pull", "project payments: repository:push")
    assert (robot.last_used_at, robot.usage_known) == (USED, True)  # the newest entry, not the first
    assert robot.last_used_source.startswith("Harbor audit log (auditlog-exts)")
    assert robot.actions == frozenset({"pull", "push"})
    # A one-entry page showed the push; the pull, older, was asked for on its own.
    assert robot.actions_seen == {"push": USED, "pull": USED - timedelta(days=3)}
    assert robot.actions_seen_source == "Harbor audit log"
    mirror = found["robot$mirror"]
    assert mirror.enabled is False
    assert (mirror.expires_at, mirror.expiry_known) == (None, True)  # -1: never expires
    assert mirror.created_by == Principal(
        kind=PrincipalKind.ROBOT, id="robot$payments+ci", name="robot$payments+ci"
    )
    assert (mirror.last_used_at, mirror.usage_known) == (None, True)  # readable log, no entry: not used since
    assert (mirror.actions, mirror.actions_seen) == (frozenset({"pull"}), {})  # the log was read: no use
    assert mirror.actions_seen_source == "Harbor audit log"
    admin = found["admin"]
    assert (admin.kind, admin.usage_known, admin.actions) == (
        CredentialKind.ADMIN_ACCOUNT,
        True,
        frozenset(ACTIONS),
    )
    # The log was read and shows no pipeline using it: the admin login alone is no shared admin account.
    assert admin.shared_admin is False
    assert admin.last_used_source.endswith("; no artifact pull, push or delete by it")


def test_one_page_of_the_audit_log_says_what_each_robot_did_without_a_request_per_action(
    harbor: FakeHarbor,
) -> None:
    harbor.add_robot("ci", access={"payments": ["pull", "push", "delete"]})
    harbor.add_robot("reader", access={"payments": ["pull"]})
    harbor.log("robot$payments+ci", USED - timedelta(days=2), operation="delete")
    harbor.log("robot$payments+ci", USED)
    harbor.log("robot$payments+ci", USED - timedelta(days=1))  # older pull: the newest one counts
    # Creating a project is a "create" too, but not a push of an image.
    harbor.log("robot$payments+ci", USED + timedelta(hours=1), operation="create", resource_type="project")

    found = {c.name: c for c in connector(harbor).read_credentials()}

    ci = found["robot$payments+ci"]
    assert ci.actions == frozenset(ACTIONS)
    assert ci.actions_seen == {"pull": USED, "delete": USED - timedelta(days=2)}  # no push seen
    assert ci.last_used_at == USED + timedelta(hours=1)  # any operation is a use
    assert found["robot$payments+reader"].actions_seen == {}
    audit_reads = [q for q in harbor.queries if q.startswith("/auditlog-exts?") and "username" in q]
    assert len(audit_reads) == 3  # one page per account (two robots and admin), nothing per action


def test_a_full_page_of_pulls_still_finds_the_robots_last_push(harbor: FakeHarbor) -> None:
    harbor.add_robot("ci", access={"payments": ["pull", "push"]})
    harbor.log("robot$payments+ci", USED - timedelta(days=30), operation="create")
    for hours in range(3):
        harbor.log("robot$payments+ci", USED - timedelta(hours=hours))

    found = {c.name: c for c in connector(harbor, page_size=2).read_credentials()}

    assert found["robot$payments+ci"].actions_seen == {"pull": USED, "push": USED - timedelta(days=30)}
    asked = [q for q in harbor.queries if "operation%3D" in q]
    assert len(asked) == 1  # the robot's push; admin's empty page is the whole of its log


def test_last_use_is_unknown_when_no_audit_log_is_readable(harbor: FakeHarbor) -> None:
    harbor.add_robot("ci", access={"payments": ["pull"]})
    harbor.log("robot$payments+ci", USED)
    harbor.forbidden |= {"GET /auditlog-exts", "GET /audit-logs"}
    harbor.forbidden.add("GET /users/{user_id}")  # not an admin: creators stay ids

    found = {c.name: c for c in connector(harbor).read_credentials()}

    robot = found["robot$payments+ci"]
    assert (robot.last_used_at, robot.usage_known) == (None, False)
    assert "not readable" in robot.last_used_source
    assert (robot.actions, robot.actions_seen, robot.actions_seen_source) == (frozenset({"pull"}), {}, "")
    assert robot.created_by == Principal(kind=PrincipalKind.USER, id="1")
    admin = found["admin"]
    assert admin.usage_known is False
    # Nothing shows the admin unused by automation: it stays flagged, and says why.
    assert admin.shared_admin is True
    assert admin.last_used_source == (
        "not recorded by Harbor; its audit log is not readable; flagged: nothing shows otherwise"
    )


def test_an_older_harbor_audit_log_is_read_instead(harbor: FakeHarbor) -> None:
    harbor.audit_api = "legacy"  # before 2.13 there is only /audit-logs
    harbor.add_robot("ci", access={"payments": ["pull"]})
    harbor.log("robot$payments+ci", USED)
    harbor.log("admin", USED - timedelta(hours=1), operation="create", resource="payments")

    found = {c.name: c for c in connector(harbor).read_credentials()}

    assert found["robot$payments+ci"].last_used_at == USED
    assert found["robot$payments+ci"].last_used_source.startswith("Harbor audit log (audit-logs)")
    assert found["admin"].last_used_at == USED - timedelta(hours=1)
    assert "GET /api/v2.0/auditlog-exts" in harbor.requests_seen  # tried first


@pytest.mark.parametrize(
    ("operation", "resource_type", "shared", "evidence"),
    [
        ("pull", "artifact", True, "used by automation: pull"),
        ("create", "artifact", True, "used by automation: push"),  # Harbor's word for a push
        ("delete", "artifact", True, "used by automation: delete"),
        ("create", "project", False, "no artifact pull, push or delete by it"),  # a person in the UI
    ],
)
def test_harbors_admin_is_a_shared_admin_account_only_where_automation_uses_it(
    harbor: FakeHarbor, operation: str, resource_type: str, shared: bool, evidence: str
) -> None:
    harbor.log("admin", USED, operation=operation, resource_type=resource_type)

    admin = next(c for c in connector(harbor).read_credentials() if c.id == "admin")

    assert (admin.shared_admin, admin.last_used_at) == (shared, USED)
    assert admin.last_used_source == f"Harbor audit log (auditlog-exts), newest operation; {evidence}"


def test_customs_signing_in_as_admin_is_automation_using_it(harbor: FakeHarbor) -> None:
    harbor.username = "admin"  # the fake now accepts admin and its password, as Customs' config says

    admin = next(c for c in connector(harbor).read_credentials() if c.id == "admin")

    assert admin.shared_admin is True
    assert admin.last_used_source.endswith("; shared: Customs itself signs in as admin")
    assert len(admin.last_used_source) <= 100  # what the credential row keeps


def test_disable_credential_disables_a_robot_once_and_deletes_one_harbor_cannot_edit(
    harbor: FakeHarbor,
) -> None:
    ci = harbor.add_robot("ci", access={"payments": ["pull", "push"]})
    legacy = harbor.add_robot("old", access={"payments": ["pull"]}, editable=False)
    harbor_connector = connector(harbor)

    harbor_connector.disable_credential(str(ci))
    harbor_connector.disable_credential(str(ci))  # offboarding ran again: already disabled
    harbor_connector.disable_credential(str(legacy))
    harbor_connector.disable_credential(str(legacy))  # already gone

    assert harbor.robots[ci]["disable"] is True
    assert harbor.robots[ci]["permissions"][0]["access"]  # the rest of the robot is kept
    assert legacy not in harbor.robots
    assert harbor.writes == [f"PUT /api/v2.0/robots/{ci}", f"DELETE /api/v2.0/robots/{legacy}"]
    with pytest.raises(PermanentError, match="local admin cannot be disabled"):
        harbor_connector.disable_credential("admin")


# --- owners: Harbor users linked to Customs people -------------------------------------------------


def oidc_scene(harbor: FakeHarbor) -> dict[str, int]:
    """alice signed in to Harbor through Customs' provider, bob through another, carol is a local user;
    each created a robot and is a project member. The local admin made one robot too."""
    ids = {
        "alice": harbor.add_user("alice", email="Alice@Acme.test", oidc_subiss=SUBJECT + ISSUER),
        "bob": harbor.add_user("bob", oidc_subiss="bob-sub" + "https://other-idp.test"),
        "carol": harbor.add_user("carol", email="carol@acme.test"),
    }
    for name, user_id in ids.items():
        harbor.add_robot(f"{name}-ci", access={"payments": ["pull"]}, creator=("local", user_id))
        harbor.add_member("payments", role_id=2, user_id=user_id)
    harbor.add_robot("admin-ci", access={"payments": ["pull"]}, creator=("local", 1))
    return ids


def owners(harbor: FakeHarbor, **config: Any) -> tuple[dict[str, Principal], dict[str, Principal]]:
    """Robot name → its creator, and member name → the member's principal, as the connector reads them."""
    built = connector(harbor, **config)
    creators = {c.name: c.created_by for c in built.read_credentials() if c.created_by is not None}
    members = {g.principal.name: g.principal for g in built.read_grants() if g.principal.kind == "user"}
    return {k.removeprefix("robot$payments+"): v for k, v in creators.items()}, members


@pytest.mark.parametrize("issuer", [ISSUER, ISSUER + "/"])  # copied with or without the slash
def test_harbor_users_from_customs_issuer_are_linked_by_their_oidc_subject(
    harbor: FakeHarbor, issuer: str
) -> None:
    ids = oidc_scene(harbor)

    creators, members = owners(harbor, directory_oidc_issuer=issuer)

    alice = Principal(PrincipalKind.USER, str(ids["alice"]), "alice", directory_id=SUBJECT)
    assert creators["alice-ci"] == members["alice"] == alice
    # Another issuer's user and a local user keep Harbor's id and name: raw references, unlinked.
    assert members["bob"] == creators["bob-ci"] == Principal(PrincipalKind.USER, str(ids["bob"]), "bob")
    assert members["carol"] == Principal(PrincipalKind.USER, str(ids["carol"]), "carol")
    assert creators["admin-ci"] == Principal(PrincipalKind.USER, "1", "admin")


def test_harbor_users_are_linked_by_email_only_where_the_admin_said_so(harbor: FakeHarbor) -> None:
    ids = oidc_scene(harbor)

    creators, members = owners(harbor, link_members_by_email=True, directory_oidc_issuer=ISSUER)

    assert members["alice"].directory_id == SUBJECT  # the subject first, where Harbor has one
    assert members["carol"] == creators["carol-ci"]
    assert members["carol"] == Principal(
        PrincipalKind.USER, str(ids["carol"]), "carol", directory_id="carol@acme.test"
    )
    assert members["bob"].directory_id == "bob@example.test"  # another issuer: their e-mail, then
    assert creators["admin-ci"].directory_id == ""  # the shared admin is nobody, whatever its address


def test_without_a_link_harbor_users_stay_harbor_names_and_are_not_looked_up(harbor: FakeHarbor) -> None:
    oidc_scene(harbor)

    creators, members = owners(harbor)

    assert {p.directory_id for p in [*creators.values(), *members.values()]} == {""}
    assert members["alice"].name == "alice"  # named by the member list
    member_lookups = [q for q in harbor.queries if q.startswith("/users/")]
    assert len(member_lookups) == 4  # the four robot creators only, not the three members again


def test_users_the_account_cannot_read_stay_raw_references(harbor: FakeHarbor) -> None:
    ids = oidc_scene(harbor)
    harbor.forbidden.add("GET /users/{user_id}")

    creators, members = owners(harbor, directory_oidc_issuer=ISSUER)

    assert members["alice"] == Principal(PrincipalKind.USER, str(ids["alice"]), "alice")
    assert creators["alice-ci"] == Principal(PrincipalKind.USER, str(ids["alice"]))


def test_the_oidc_cli_secret_harbor_returns_is_never_kept(harbor: FakeHarbor) -> None:
    oidc_scene(harbor)
    built = connector(harbor, directory_oidc_issuer=ISSUER, link_members_by_email=True)

    read = repr([*built.read_credentials(), *built.read_grants()])

    assert SUBJECT in read
    assert OIDC_CLI_SECRET not in read


@pytest.mark.django_db
def test_a_sync_links_harbor_owners_to_customs_people_and_keeps_the_rest_raw(
    registry: RunningRegistry, harbor: FakeHarbor
) -> None:
    seed(registry, "payments/api")
    ids = oidc_scene(harbor)
    alice = factories.user(username="alice", external_id=SUBJECT)
    saved = services.save_registry(
        Registry(name="harbor-eu", kind="harbor", endpoint=harbor.url),
        actor=None,
        public={"username": harbor.username, "directory_oidc_issuer": ISSUER},
        secrets={"password": harbor.password},
    )

    run = sync.sync_inventory(saved)

    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    theirs = Grant.objects.get(registry=saved, principal_kind="user", user=alice)
    assert (theirs.principal_id, theirs.principal_name) == (str(ids["alice"]), "alice")
    bob = Grant.objects.get(registry=saved, principal_kind="user", principal_name="bob")
    assert (bob.user, bob.principal_id) == (None, str(ids["bob"]))  # unresolved: the raw reference stays
    made = Credential.objects.get(registry=saved, name="robot$payments+alice-ci")
    assert (made.created_by_user, made.created_by_id, made.created_by_name) == (
        alice,
        str(ids["alice"]),
        "alice",
    )
    other = Credential.objects.get(registry=saved, name="robot$payments+bob-ci")
    assert (other.created_by_user, other.created_by_id, other.created_by_name) == (
        None,
        str(ids["bob"]),
        "bob",
    )


def test_the_oidc_issuer_must_be_a_url() -> None:
    with pytest.raises(ConfigError, match="the issuer is a URL"):
        connectors.config_for(
            "harbor",
            {"url": "https://harbor.example.test", "username": "u", "directory_oidc_issuer": "acme"},
            {"password": "p"},
        )


# --- grants ------------------------------------------------------------------------------------------


def test_members_public_projects_and_robots_become_grants(harbor: FakeHarbor) -> None:
    bob = harbor.add_user("bob")
    oidc = harbor.add_group(ENTRA_GROUP, OIDC)
    ldap = harbor.add_group("ops", LDAP, ldap_group_dn="cn=ops,ou=groups,dc=acme,dc=test")
    proxy = harbor.add_group("from-proxy", HTTP)
    harbor.add_member("payments", role_id=2, user_id=bob)
    harbor.add_member("payments", role_id=4, group_id=oidc)
    harbor.add_member("payments", role_id=3, group_id=ldap)
    harbor.add_member("tools", role_id=5, group_id=proxy)
    harbor.add_member("tools", role_id=1, user_id=1)
    harbor.public.add("tools")
    harbor.add_robot("ci", access={"payments": ["pull", "push", "delete"]})
    harbor.add_robot(
        "all", access={"*": ["pull"]}, extra=[{"kind": "system", "namespace": "/", "access": []}]
    )
    harbor.add_robot("off", access={"tools": ["*"]}, disable=True)  # cannot sign in: grants nothing
    harbor.add_robot(
        "gone", access={"tools": ["*"]}, expires_at=int(datetime(2025, 1, 1, tzinfo=UTC).timestamp())
    )

    grants = sorted(connector(harbor, page_size=1).read_grants(), key=lambda g: g.source)

    def g(
        kind: PrincipalKind, pid: str, name: str, scope: str, actions: set[str], source: str
    ) -> RemoteGrant:
        linked = ENTRA_GROUP if name == ENTRA_GROUP else ""  # Customs' directory is OIDC here
        return RemoteGrant(Principal(kind, pid, name, linked), scope, frozenset(actions), source)

    member = {m["entity_name"]: m["id"] for project in harbor.members.values() for m in project}
    user, group, robot, everything = (
        PrincipalKind.USER,
        PrincipalKind.GROUP,
        PrincipalKind.ROBOT,
        set(ACTIONS),
    )
    assert grants == sorted(
        [
            g(user, str(bob), "bob", "payments/**", {"pull", "push"},
              f"project payments member {member['bob']} (developer)"),
            g(group, str(oidc), ENTRA_GROUP, "payments/**", everything,
              f"project payments member {member[ENTRA_GROUP]} (maintainer)"),
            # An LDAP group is kept by name only: never matched to an OIDC directory by it.
            g(group, str(ldap), "ops", "payments/**", {"pull"},
              f"project payments member {member['ops']} (guest)"),
            g(group, str(proxy), "from-proxy", "tools/**", {"pull"},
              f"project tools member {member['from-proxy']} (limitedGuest)"),
            g(user, "1", "admin", "tools/**", everything,
              f"project tools member {member['admin']} (projectAdmin)"),
            g(PrincipalKind.OTHER, "anonymous", "anyone (public project)", "tools/**", {"pull"},
              "project tools is public"),
            g(robot, "robot$payments+ci", "robot$payments+ci", "payments/**", everything,
              "robot robot$payments+ci permissions on payments"),
            g(robot, "robot$all", "robot$all", "**", {"pull"}, "robot robot$all permissions on **"),
        ],
        key=lambda grant: grant.source,
    )  # fmt: skip


def test_ldap_groups_are_matched_by_their_dn_when_the_directory_is_ldap(harbor: FakeHarbor) -> None:
    ldap = harbor.add_group("ops", LDAP, ldap_group_dn="cn=ops,ou=groups,dc=acme,dc=test")
    oidc = harbor.add_group(ENTRA_GROUP, OIDC)
    harbor.add_member("payments", role_id=2, group_id=ldap)
    harbor.add_member("payments", role_id=2, group_id=oidc)

    grants = {g.principal.name: g.principal for g in connector(harbor, directory_groups="ldap").read_grants()}

    assert grants["ops"].directory_id == "cn=ops,ou=groups,dc=acme,dc=test"
    assert grants[ENTRA_GROUP].directory_id == ""


def test_groups_unreadable_by_the_account_are_kept_unmapped(harbor: FakeHarbor) -> None:
    oidc = harbor.add_group(ENTRA_GROUP, OIDC)
    harbor.add_member("payments", role_id=2, group_id=oidc)
    harbor.forbidden.add("GET /usergroups/{group_id}")

    [grant] = connector(harbor).read_grants()

    assert (grant.principal.name, grant.principal.directory_id) == (ENTRA_GROUP, "")


@pytest.mark.django_db
def test_a_sync_keeps_harbor_grants_and_credentials_linked_to_directory_groups(
    registry: RunningRegistry, harbor: FakeHarbor
) -> None:
    seed(registry, "payments/api")
    payments = factories.group(external_id=ENTRA_GROUP, display_name="Payments")
    harbor.add_member("payments", role_id=2, group_id=harbor.add_group(ENTRA_GROUP, OIDC))
    harbor.add_robot("ci", access={"payments": ["pull", "push"]})
    harbor.log("robot$payments+ci", USED)
    saved = services.save_registry(
        Registry(name="harbor-eu", kind="harbor", endpoint=harbor.url),
        actor=None,
        public={"username": harbor.username},
        secrets={"password": harbor.password},
    )

    run = sync.sync_inventory(saved)

    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    group_grant = Grant.objects.get(registry=saved, principal_kind="group")
    assert (group_grant.group, group_grant.scope, group_grant.can_push, group_grant.can_delete) == (
        payments,
        "payments/**",
        True,
        False,
    )
    assert Grant.objects.filter(registry=saved, principal_kind="robot").count() == 1
    robot = Credential.objects.get(registry=saved, kind="robot")
    assert (robot.name, robot.last_used_at, robot.usage_known) == ("robot$payments+ci", USED, True)
    assert robot.actions == ["pull", "push"]
    assert (robot.actions_seen, robot.actions_seen_source) == (
        {"pull": "2026-11-02T09:15:00+00:00"},
        "Harbor audit log",
    )
    admin = Credential.objects.get(registry=saved, kind="admin_account")
    assert (admin.shared_admin, admin.enabled) == (False, True)  # present, but nothing automated uses it
    assert admin.last_used_source.endswith("no artifact pull, push or delete by it")


# --- grants: writes ----------------------------------------------------------------------------------


def test_additions_covering_a_whole_project_become_one_member_with_the_smallest_role(
    registry: RunningRegistry, harbor: FakeHarbor
) -> None:
    seed(registry, "payments/api", "payments/batch/worker", "tools/lint")
    group = group_principal(ENTRA_GROUP)
    plan = AccessPlan(
        registry="harbor-eu",
        additions=(
            GrantChange(ChangeOp.ADD, group, "payments/api", ("pull", "push")),
            GrantChange(ChangeOp.ADD, group, "payments/batch/worker", ("pull", "push")),
        ),
    )
    harbor_connector = connector(harbor)

    applied = list(harbor_connector.apply_access_plan(plan))

    assert applied == list(plan.additions)
    [member] = harbor.members["payments"]
    assert (member["entity_type"], member["entity_name"], member["role_name"]) == (
        "g",
        ENTRA_GROUP,
        "developer",
    )
    assert harbor.groups[member["entity_id"]]["group_type"] == OIDC  # Harbor made the OIDC group
    writes = list(harbor.writes)
    assert list(harbor_connector.apply_access_plan(plan)) == list(plan.additions)  # idempotent
    assert harbor.writes == writes  # nothing sent the second time

    pull_only = AccessPlan("harbor-eu", additions=(GrantChange(ChangeOp.ADD, group, "tools/**", ("pull",)),))
    list(harbor_connector.apply_access_plan(pull_only))
    assert harbor.members["tools"][0]["role_name"] == "limitedGuest"  # the smallest role that pulls


def test_an_addition_widens_an_existing_members_role(registry: RunningRegistry, harbor: FakeHarbor) -> None:
    seed(registry, "payments/api")
    harbor.add_member("payments", role_id=5, group_id=harbor.add_group(ENTRA_GROUP, OIDC))
    plan = AccessPlan(
        "harbor-eu",
        additions=(GrantChange(ChangeOp.ADD, group_principal(ENTRA_GROUP), "payments/api", ("delete",)),),
    )

    list(connector(harbor).apply_access_plan(plan))

    assert harbor.members["payments"][0]["role_name"] == "maintainer"  # pull held, delete added
    assert [w.split(" ")[0] for w in harbor.writes] == ["PUT"]


def test_an_addition_narrower_than_its_project_is_refused(
    registry: RunningRegistry, harbor: FakeHarbor
) -> None:
    seed(registry, "payments/api", "payments/web")
    plan = AccessPlan(
        "harbor-eu",
        additions=(GrantChange(ChangeOp.ADD, group_principal(ENTRA_GROUP), "payments/api", ("pull",)),),
    )

    with pytest.raises(
        PermanentError, match=r"whole project payments.*not on every one of its 2 repositories"
    ):
        list(connector(harbor).apply_access_plan(plan))
    assert harbor.writes == []


def test_removals_lower_the_role_or_remove_the_member_and_can_run_again(harbor: FakeHarbor) -> None:
    bob = harbor.add_user("bob")
    maintainer = harbor.add_member("payments", role_id=4, group_id=harbor.add_group(ENTRA_GROUP, OIDC))
    developer = harbor.add_member("payments", role_id=2, user_id=bob)
    grants = {g.principal.name: g for g in connector(harbor).read_grants()}
    plan = AccessPlan(
        "harbor-eu",
        removals=(
            removal(grants[ENTRA_GROUP], "delete"),
            removal(grants["bob"], "pull", "push"),
        ),
    )

    assert list(connector(harbor).apply_access_plan(plan)) == list(plan.removals)
    assert list(connector(harbor).apply_access_plan(plan)) == list(plan.removals)  # re-run: nothing to do

    assert [(m["id"], m["role_name"]) for m in harbor.members["payments"]] == [(maintainer, "developer")]
    assert harbor.writes == [
        f"PUT /api/v2.0/projects/payments/members/{maintainer}",
        f"DELETE /api/v2.0/projects/payments/members/{developer}",
    ]


def test_a_removal_no_harbor_role_can_express_is_refused(harbor: FakeHarbor) -> None:
    harbor.add_member("payments", role_id=4, group_id=harbor.add_group(ENTRA_GROUP, OIDC))
    [grant] = connector(harbor).read_grants()

    with pytest.raises(PermanentError, match="no project role giving exactly pull, delete"):
        list(connector(harbor).apply_access_plan(AccessPlan("harbor-eu", removals=(removal(grant, "push"),))))
    assert harbor.writes == []


def test_robot_and_public_project_removals_are_left_to_people(harbor: FakeHarbor) -> None:
    harbor.add_robot("ci", access={"payments": ["push"]})
    harbor.public.add("payments")
    grants = list(connector(harbor).read_grants())
    kept = harbor.add_member("payments", role_id=2, user_id=harbor.add_user("bob"))
    bob = next(g for g in connector(harbor).read_grants() if g.principal.name == "bob")
    plan = AccessPlan("harbor-eu", removals=(removal(bob, "push"), *(removal(g, *g.actions) for g in grants)))

    applied: list[GrantChange] = []
    with pytest.raises(PermanentError, match="changes project members only"):
        applied.extend(connector(harbor).apply_access_plan(plan))

    assert applied == [plan.removals[0]]  # what was done before the refusal stands
    assert harbor.members["payments"][0]["id"] == kept
    assert 1 in harbor.robots


@pytest.mark.django_db
def test_a_reconcile_plan_from_drift_is_applied_through_harbor_members(
    registry: RunningRegistry, harbor: FakeHarbor
) -> None:
    """The real pipeline: sync reads members, drift plans against the rules, apply changes Harbor."""
    seed(registry, "payments/api", "payments/web")
    payments = factories.group(external_id=ENTRA_GROUP, display_name="Payments")
    auditors = factories.group(external_id="a1b2c3d4-auditors", display_name="Auditors")
    harbor.add_member("payments", role_id=4, group_id=harbor.add_group(ENTRA_GROUP, OIDC))
    saved = services.save_registry(
        Registry(name="harbor-eu", kind="harbor", endpoint=harbor.url),
        actor=None,
        public={"username": harbor.username},
        secrets={"password": harbor.password},
    )
    factories.access_rule(payments, "payments/**", "pull", "push", registry=saved)
    factories.access_rule(auditors, "payments/**", "pull", registry=saved)
    assert sync.sync_inventory(saved).status == SyncRun.Status.SUCCEEDED

    plan = drift.compute(saved).plan
    result = drift.apply_plan(saved, actor=None, expected=drift.fingerprint(plan))

    assert result.error == ""
    assert len(result.applied) == len(plan.changes) == 3
    roles = {m["entity_name"]: m["role_name"] for m in harbor.members["payments"]}
    assert roles == {ENTRA_GROUP: "developer", "a1b2c3d4-auditors": "limitedGuest"}


def removal(grant: RemoteGrant, *actions: str) -> GrantChange:
    return GrantChange(ChangeOp.REMOVE, grant.principal, grant.scope, tuple(actions), source=grant.source)


# --- permissions, replication, paging and failures ------------------------------------------------------


def test_check_permissions_tries_each_read_and_asks_harbor_about_the_writes(
    registry: RunningRegistry, harbor: FakeHarbor
) -> None:
    seed(registry, "payments/api")
    steps = connector(harbor).check_permissions()
    assert [(step.ok, step.required, step.tried) for step in steps] == [(True, True, True)] * 7 + [
        (True, False, True)
    ] * 2
    assert [step.permission for step in steps] == [*HarborConnector.needs[:7], *HarborConnector.needs[8:]]
    assert steps[1].detail == "tried on payments/api"
    assert steps[3].detail == "tried on payments"
    assert steps[7].detail == "holds member: create, update, delete in project payments"
    assert steps[8].detail == "holds robot: update, delete in project payments"
    asked = [q for q in harbor.queries if q.startswith("/users/current/permissions?")]
    assert asked == ["/users/current/permissions?scope=%2Fproject%2F1&relative=true"]
    assert harbor.writes == []  # proved without changing anything


def test_check_permissions_reads_users_when_they_are_linked(
    registry: RunningRegistry, harbor: FakeHarbor
) -> None:
    seed(registry, "payments/api")
    harbor.forbidden.add("GET /users/{user_id}")

    [users] = [
        s
        for s in connector(harbor, link_members_by_email=True).check_permissions()
        if "user:" in s.permission
    ]

    assert (users.permission, users.ok, users.required) == (HarborConnector.needs[7], False, True)
    assert "403 from" in users.detail


@pytest.mark.django_db
def test_a_read_only_robot_passes_test_connection_and_lists_the_writes_it_lacks(
    registry: RunningRegistry, harbor: FakeHarbor
) -> None:
    seed(registry, "payments/api")
    robot = harbor.add_robot("ci", access={"payments": ["pull"]})
    harbor.forbidden |= READ_ONLY
    saved = services.save_registry(
        Registry(name="harbor-eu", kind="harbor", endpoint=harbor.url),
        actor=None,
        public={"username": harbor.username},
        secrets={"password": harbor.password},
    )

    result = services.check_connection(saved)

    assert result.ok, result.reason
    lacking = [(s.permission, s.detail) for s in result.steps if s.missing]
    assert lacking == [
        (
            HarborConnector.needs[8],
            "in project payments it lacks member: create, member: update, member: delete",
        ),
        (HarborConnector.needs[9], "in project payments it lacks robot: update, robot: delete"),
    ]
    assert all(not s.required for s in result.steps if s.missing)
    assert "2 write permissions are missing" in result.reason
    # What Harbor said is what it does: the write itself is refused.
    with pytest.raises(AuthError, match="403 from"):
        connector(harbor).disable_credential(str(robot))


def test_without_a_project_the_writes_are_not_tried(harbor: FakeHarbor) -> None:
    steps = connector(harbor).check_permissions()

    writes = steps[-2:]
    assert [(s.permission, s.required, s.tried) for s in writes] == [
        (HarborConnector.needs[8], False, False),
        (HarborConnector.needs[9], False, False),
    ]
    assert writes[0].detail == "no project to ask Harbor about yet"


def test_check_permissions_names_each_missing_one(registry: RunningRegistry, harbor: FakeHarbor) -> None:
    seed(registry, "payments/api")
    harbor.forbidden |= {
        "GET /robots",
        "GET /projects/{project_name_or_id}/members",
        "GET /auditlog-exts",
        "GET /audit-logs",
    }

    steps = connector(harbor).check_permissions()

    missing = [step.permission for step in steps if not step.ok]
    assert missing == [HarborConnector.needs[2], HarborConnector.needs[3], HarborConnector.needs[5]]
    assert "403 from" in steps[2].detail
    assert "lacks the permission" in steps[2].detail


def test_replication_policies_come_with_their_latest_execution(harbor: FakeHarbor) -> None:
    started = datetime(2026, 11, 3, 2, 0, tzinfo=UTC)
    harbor.replicate(
        "to-dr",
        to="https://harbor-dr.example.test",
        executions=[
            {"status": "Succeed", "trigger": "event_based", "start_time": "2026-11-01T02:00:00Z",
             "end_time": "2026-11-01T02:01:00Z", "status_text": "", "total": 3, "failed": 0, "succeed": 3,
             "in_progress": 0, "stopped": 0},
            {"status": "Failed", "trigger": "event_based", "start_time": "2026-11-03T02:00:00Z",
             "end_time": "2026-11-03T02:05:00Z", "status_text": "dr-site unreachable", "total": 4,
             "failed": 4, "succeed": 0, "in_progress": 0, "stopped": 0},
        ],
    )  # fmt: skip

    [policy] = connector(harbor).replication()

    assert (policy.name, policy.direction, policy.remote_url) == (
        "to-dr",
        "push",
        "https://harbor-dr.example.test",
    )
    assert (policy.trigger, policy.enabled, policy.replicate_deletion) == ("event_based", True, True)
    assert policy.filters == ("name matches payments/**",)
    assert policy.last_run is not None
    assert (policy.last_run.status, policy.last_run.started_at) == ("Failed", started)
    assert (policy.last_run.failed, policy.last_run.status_text) == (4, "dr-site unreachable")


def test_pages_follow_link_or_else_the_total_count(harbor: FakeHarbor) -> None:
    for name in ("a", "b", "c"):
        harbor.add_robot(name, access={"payments": ["pull"]})
    harbor.forbidden |= {"GET /auditlog-exts", "GET /audit-logs"}
    assert len(list(connector(harbor, page_size=2).read_credentials())) == 4  # 3 robots (2 pages) + admin
    assert [q for q in harbor.queries if q.startswith("/robots?")] == [
        "/robots?page_size=2&page=1",
        "/robots?page=2&page_size=2",  # Harbor's Link, followed as given
    ]

    harbor.link_header = False  # a proxy dropped Link: X-Total-Count says a second page is due
    harbor.queries.clear()
    assert len(list(connector(harbor, page_size=2).read_credentials())) == 4
    assert [q for q in harbor.queries if q.startswith("/robots?")] == [
        "/robots?page_size=2&page=1",
        "/robots?page_size=2&page=2",  # counted by the connector
    ]


def test_a_list_that_changes_while_read_is_not_taken_as_complete(harbor: FakeHarbor) -> None:
    harbor.add_robot("a", access={"payments": ["pull"]})
    harbor.add_robot("b", access={"payments": ["pull"]})
    harbor.mutate = lambda body: (
        body[:1] if isinstance(body, list) and len(body) == 2 else body
    )  # one vanished

    with pytest.raises(TransientError, match="changed while it was read"):
        list(connector(harbor).read_credentials())


def test_an_expired_robot_is_an_auth_error_that_says_so(harbor: FakeHarbor) -> None:
    harbor.expired = True
    with pytest.raises(AuthError, match="401 from .*robots: Harbor refused robot\\$customs .*expired"):
        list(connector(harbor).read_credentials())


def test_a_missing_permission_fails_the_read_rather_than_dropping_grants(harbor: FakeHarbor) -> None:
    harbor.add_member("payments", role_id=2, user_id=harbor.add_user("bob"))
    harbor.forbidden.add("GET /projects/{project_name_or_id}/members")
    with pytest.raises(AuthError, match="403 from .*/projects/payments/members"):
        list(connector(harbor).read_grants())


def test_throttling_with_a_date_says_when_to_come_back(harbor: FakeHarbor) -> None:
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    harbor.fail_next.append(
        Answer(429, {"errors": [{"code": "TOO_MANY", "message": "slow"}]}, {"Retry-After": later})
    )
    with pytest.raises(RateLimited) as raised:
        list(connector(harbor).read_grants())
    assert raised.value.retry_after is not None
    assert 25 < raised.value.retry_after <= 30
