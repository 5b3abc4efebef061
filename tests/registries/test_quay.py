"""The Quay connector against a fake Quay API over a real docker-registry (tests/fakes/quay.py)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from registries import connectors, services, sync
from registries.connectors.base import (
    ACTIONS,
    AccessPlan,
    ChangeOp,
    CredentialKind,
    GrantChange,
    Principal,
    PrincipalKind,
)
from registries.connectors.errors import AuthError, ConfigError, PermanentError, RateLimited, TransientError
from registries.connectors.quay import QuayConnector
from registries.demo import images as im
from registries.models import Artifact, Credential, Grant, Registry, SyncRun
from tests import factories
from tests.fakes.quay import FakeQuay, Robot, Team, User, quay_error
from tests.registries.harness import RunningRegistry

PUSHED = datetime(2026, 10, 1, 8, 30, tzinfo=UTC)
LATER = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
USED = datetime(2026, 11, 20, 17, 0, tzinfo=UTC)
SUPERUSER_SCOPES = {"repo:read", "repo:admin", "org:admin", "super:user", "user:read"}


@pytest.fixture
def quay(registry: RunningRegistry) -> Iterator[FakeQuay]:
    fake = FakeQuay(registry_url=registry.url).start()
    yield fake
    fake.stop()
    assert not fake.drift, "the fake answered in a shape §10 does not document:\n" + "\n".join(fake.drift)


def public_config(fake: FakeQuay, **extra: Any) -> dict[str, Any]:
    return {"url": fake.url, "namespaces": "acme", "registry_username": fake.robot_name, **extra}


def connector(fake: FakeQuay, **extra: Any) -> QuayConnector:
    secrets = {"token": fake.token, "registry_password": fake.robot_token}
    built = connectors.build("quay", public_config(fake, **extra), secrets)
    assert isinstance(built, QuayConnector)
    return built


def seed(registry: RunningRegistry) -> dict[str, im.Image]:
    pusher = registry.pusher()
    app, worker = im.base_image("app"), im.base_image("worker")
    pusher.push_image("acme/app", app, tags=["1.0", "1.1", "latest"])
    pusher.push_image("acme/worker", worker, tags=["2"])
    pusher.push_image("acme/tools", worker, tags=["x"])
    pusher.push_image("other/app", app, tags=["1"])  # another organisation: never listed
    return {"app": app, "worker": worker}


def people(fake: FakeQuay) -> None:
    """Teams, robots and permissions as an organisation typically has them."""
    fake.teams["acme"] = {
        "owners": Team(role="admin", members={"alice": False}),
        "devs": Team(members={"bob": False, "acme+ci": True}, synced_group="grp-devs"),
        "readers": Team(members={"carol": False}),
    }
    fake.robots["acme"] = {
        "ci": Robot(created=PUSHED, last_accessed=USED, description="CI pushes"),
        "old": Robot(created=PUSHED),
    }
    fake.team_permissions["acme/app"] = {"devs": "write", "readers": "read"}
    fake.user_permissions["acme/app"] = {"acme+ci": ("write", True), "dave": ("admin", False)}


# --- inventory -------------------------------------------------------------------------------------


def test_repositories_and_tags_over_both_paging_styles_with_push_times(
    registry: RunningRegistry, quay: FakeQuay
) -> None:
    images = seed(registry)
    quay.repository_page_size = 2  # three repositories: two pages through next_page
    quay.pushed["acme/app", "1.0"], quay.pushed["acme/app", "latest"] = PUSHED, LATER
    quay_connector = connector(quay, page_size=2)  # three tags: two pages through has_additional

    assert [r.name for r in quay_connector.repositories()] == ["acme/app", "acme/tools", "acme/worker"]
    tags = quay_connector.tags("acme/app")
    assert [(t.name, t.digest) for t in tags] == [
        ("1.0", images["app"].digest),
        ("1.1", images["app"].digest),
        ("latest", images["app"].digest),
    ]
    artifact = quay_connector.artifact("acme/app", images["app"].digest)
    assert artifact.pushed_at == max(LATER, quay.pushed["acme/app", "1.1"])  # the latest tag move
    assert artifact.layer_digests == tuple(layer.digest for layer in images["app"].layers)
    pages = [r for r in quay.requests_seen if r.startswith("GET /api/v1/repository/acme/app/tag/")]
    assert len(pages) == 2


def test_several_organisations_are_listed_in_turn(start_registry: Any) -> None:
    running = start_registry()
    pusher = running.pusher()
    image = im.base_image("shared")
    pusher.push_image("acme/app", image, tags=["1"])
    pusher.push_image("beta/app", image, tags=["1"])
    fake = FakeQuay(registry_url=running.url, organisations=("acme", "beta")).start()
    try:
        built = connector(fake, namespaces="Beta, acme, beta")
        assert [r.name for r in built.repositories()] == ["beta/app", "acme/app"]
        assert built.config.namespaces == "beta, acme"
    finally:
        fake.stop()
    assert not fake.drift


@pytest.mark.django_db
def test_a_sync_through_the_real_pipeline_stores_inventory_robots_and_grants(
    registry: RunningRegistry, quay: FakeQuay
) -> None:
    images = seed(registry)
    people(quay)
    quay.pushed["acme/worker", "2"] = PUSHED
    saved = services.save_registry(
        Registry(name="quay-acme", kind="quay", endpoint=quay.url),
        actor=None,
        public={k: v for k, v in public_config(quay).items() if k != "url"},
        secrets={"token": quay.token, "registry_password": quay.robot_token},
    )
    run = sync.sync_inventory(saved)
    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    worker = Artifact.objects.get(repository__registry=saved, repository__name="acme/worker")
    assert (worker.digest, worker.pushed_at) == (images["worker"].digest, PUSHED)
    assert sorted(Credential.objects.filter(registry=saved).values_list("native_id", flat=True)) == [
        "acme+ci",
        "acme+old",
    ]
    ci = Credential.objects.get(registry=saved, native_id="acme+ci")
    assert (ci.actions, ci.actions_seen, ci.actions_seen_source) == (["pull", "push"], {}, "")
    assert Grant.objects.filter(registry=saved).count() == 5  # owners on acme/**, four on acme/app
    assert quay.token not in str(saved.config)
    assert quay.robot_token not in str(saved.config)


# --- credentials -----------------------------------------------------------------------------------


def test_robots_with_last_accessed_and_no_documented_expiry(
    registry: RunningRegistry, quay: FakeQuay
) -> None:
    people(quay)
    robots = {c.id: c for c in connector(quay).read_credentials()}
    ci = robots["acme+ci"]
    assert (ci.kind, ci.name) == (CredentialKind.ROBOT, "acme+ci")
    assert (ci.created_at, ci.last_used_at, ci.usage_known) == (PUSHED, USED, True)
    assert ci.last_used_source == "Quay robot last_accessed"
    assert (ci.expiry_known, ci.expires_at) == (False, None)  # unknown, not "never"
    assert ci.scopes == ("repository acme/app", "team devs")
    # Recorded last access and none: never used. Without the feature, nobody knows.
    assert (robots["acme+old"].last_used_at, robots["acme+old"].usage_known) == (None, True)
    unrecorded = {c.id: c for c in connector(quay, last_accessed_recorded=False).read_credentials()}
    assert unrecorded["acme+old"].usage_known is False
    assert unrecorded["acme+ci"].usage_known is True
    # Write on acme/app, directly and through the devs team: pull and push. No usage evidence in Quay.
    assert (ci.actions, ci.actions_seen, ci.actions_seen_source) == (frozenset({"pull", "push"}), {}, "")
    assert robots["acme+old"].actions == frozenset()


def test_a_robots_actions_come_from_its_repository_roles_and_its_teams(
    registry: RunningRegistry, quay: FakeQuay
) -> None:
    people(quay)
    quay.teams["acme"]["owners"].members["acme+admin"] = True  # an admin team: every repository
    quay.teams["acme"]["builders"] = Team(members={"acme+builder": True})
    quay.team_permissions["acme/worker"] = {"builders": "admin"}
    quay.user_permissions["acme/tools"] = {"acme+reader": ("read", True), "acme+builder": ("read", True)}
    for short in ("admin", "builder", "reader"):
        quay.robots["acme"][short] = Robot(created=PUSHED)

    robots = {c.id: c.actions for c in connector(quay).read_credentials()}

    assert robots == {
        "acme+admin": frozenset({"pull", "push", "delete"}),
        "acme+builder": frozenset({"pull", "push", "delete"}),  # read on acme/tools, admin via builders
        "acme+ci": frozenset({"pull", "push"}),
        "acme+old": frozenset(),
        "acme+reader": frozenset({"pull"}),
    }
    # Each repository's and team's permissions are read once, however many robots share them.
    assert quay.requests_seen.count("GET /api/v1/repository/acme/tools/permissions/user/") == 1
    assert quay.requests_seen.count("GET /api/v1/organization/acme/team/builders/permissions") == 1


def test_without_repo_admin_a_robots_actions_are_not_known(registry: RunningRegistry, quay: FakeQuay) -> None:
    people(quay)
    quay.scopes = {"repo:read", "org:admin"}
    robots = {c.id: c for c in connector(quay).read_credentials()}  # still read: only the actions are lost
    assert robots["acme+ci"].actions == frozenset()
    assert robots["acme+ci"].scopes == ("repository acme/app", "team devs")


# --- credentials: superusers -----------------------------------------------------------------------


def superusers(fake: FakeQuay) -> None:
    """A superuser's token for Customs (customs), a second superuser (alice) and a plain user (bob)."""
    fake.scopes = set(SUPERUSER_SCOPES)
    fake.users = {
        "customs": User(email="customs-bot@acme.test", super_user=True),
        "alice": User(email="Alice@Acme.test", super_user=True),
        "bob": User(email="bob@acme.test"),
    }


def admins(fake: FakeQuay, **extra: Any) -> dict[str, Any]:
    return {c.name: c for c in connector(fake, **extra).read_credentials() if c.kind == "admin_account"}


def test_superusers_are_not_reported_to_a_token_that_is_not_a_superusers(
    registry: RunningRegistry, quay: FakeQuay
) -> None:
    people(quay)
    quay.users = {"alice": User(super_user=True)}
    quay.scopes |= {"super:user"}  # the scope alone: Quay still refuses a non-superuser

    names = [c.id for c in connector(quay).read_credentials()]

    assert names == ["acme+ci", "acme+old"]  # the robots; the refused list is no failure
    assert quay.requests_seen.count("GET /api/v1/superuser/users/") == 1


def test_superusers_are_admin_accounts_shared_only_with_evidence_of_automation(
    registry: RunningRegistry, quay: FakeQuay
) -> None:
    superusers(quay)

    found = admins(quay)

    assert set(found) == {"customs", "alice"}  # bob is no superuser
    own = found["customs"]
    assert (own.id, own.shared_admin, own.enabled) == ("superuser:customs", True, True)
    assert own.last_used_source == "shared: Customs' Quay token is this superuser's"
    assert (own.actions, own.usage_known, own.owner) == (
        frozenset(ACTIONS),
        False,
        Principal(PrincipalKind.USER, "customs", "customs"),
    )
    alice = found["alice"]
    assert (alice.shared_admin, alice.last_used_source) == (
        False,
        "no push by it in 30 days of organisation logs",
    )


@pytest.mark.parametrize(
    ("performer", "kind", "days_ago", "shared"),
    [
        ("alice", "push_repo", 2, True),  # she pushed herself, not through a robot: a pipeline is her
        ("alice", "pull_repo", 2, False),  # pulling is what people do too
        ("alice", "push_repo", 40, False),  # older than the logs read
        ("acme+deploy", "push_repo", 2, False),  # a robot's push is the robot's
    ],
)
def test_a_superusers_own_pushes_in_the_logs_are_evidence_of_automation(
    registry: RunningRegistry, quay: FakeQuay, performer: str, kind: str, days_ago: int, shared: bool
) -> None:
    superusers(quay)
    robot = "+" in performer
    quay.log("acme", performer, kind, datetime.now(UTC) - timedelta(days=days_ago), robot=robot)

    alice = admins(quay)["alice"]

    assert alice.shared_admin is shared
    if shared:
        assert alice.last_used_source == "used by automation: pushed to acme without a robot"
    asked = [r for r in quay.requests_seen if r.startswith("GET /api/v1/organization/acme/logs")]
    assert asked  # the organisation's logs were read for her


def test_a_push_on_a_later_log_page_is_found(registry: RunningRegistry, quay: FakeQuay) -> None:
    superusers(quay)
    now = datetime.now(UTC)
    quay.log("acme", "alice", "push_repo", now - timedelta(days=5))
    for minutes in range(25):  # more than a page of her newer entries
        quay.log("acme", "alice", "pull_repo", now - timedelta(minutes=minutes))

    assert admins(quay)["alice"].shared_admin is True


def test_without_user_read_whose_token_it_is_is_unknown_and_logs_decide(
    registry: RunningRegistry, quay: FakeQuay
) -> None:
    superusers(quay)
    quay.scopes.discard("user:read")
    quay.refused.add("GET /api/v1/organization/acme/logs")

    found = admins(quay)

    assert found["customs"].shared_admin is False  # nothing shows it: no finding on a guess
    assert found["customs"].last_used_source == "no evidence of automation: organisation logs not readable"


def test_a_superuser_cannot_be_disabled_through_the_api(registry: RunningRegistry, quay: FakeQuay) -> None:
    with pytest.raises(PermanentError, match="alice is a superuser by Quay's configuration"):
        connector(quay).disable_credential("superuser:alice")
    assert quay.writes == []


# --- owners: Quay users linked to Customs people by e-mail ------------------------------------------


def test_users_are_linked_by_email_when_the_token_is_told_their_addresses(
    registry: RunningRegistry, quay: FakeQuay
) -> None:
    seed(registry)
    people(quay)
    superusers(quay)
    quay.users["dave"] = User(email="Dave@Acme.test")  # carol has no account the list shows
    quay.teams["acme"]["readers"].members["dave"] = False
    built = connector(quay, link_members_by_email=True)

    grants = {g.principal.id: g.principal for g in built.read_grants()}
    members = {m.id: m for m in built.team_members("acme", "devs") + built.team_members("acme", "readers")}

    assert grants["dave"] == Principal(PrincipalKind.USER, "dave", "dave", directory_id="dave@acme.test")
    assert members["bob"].directory_id == "bob@acme.test"
    assert members["carol"] == Principal(PrincipalKind.USER, "carol", "carol")  # unresolved: kept as named
    assert members["acme+ci"].directory_id == ""  # robots are nobody
    assert admins(quay, link_members_by_email=True)["alice"].owner == Principal(
        PrincipalKind.USER, "alice", "alice", directory_id="alice@acme.test"
    )


def test_without_the_email_link_or_a_superusers_token_users_stay_quay_names(
    registry: RunningRegistry, quay: FakeQuay
) -> None:
    seed(registry)
    people(quay)
    quay.users = {"dave": User(email="dave@acme.test")}
    unlinked = {
        g.principal.id: g.principal for g in connector(quay, link_members_by_email=True).read_grants()
    }
    superusers(quay)
    quay.users["dave"] = User(email="dave@acme.test")
    not_asked = {g.principal.id: g.principal for g in connector(quay).read_grants()}

    assert unlinked["dave"] == not_asked["dave"] == Principal(PrincipalKind.USER, "dave", "dave")


def test_offboarding_finds_a_quay_user_by_their_email(registry: RunningRegistry, quay: FakeQuay) -> None:
    people(quay)
    superusers(quay)
    quay.teams["acme"]["readers"].members["bob"] = False
    built = connector(quay, link_members_by_email=True)

    assert built.remove_person("Bob@Acme.test") == ["team acme/devs", "team acme/readers"]
    assert built.memberships_of("bob@acme.test") == []
    assert "bob" not in quay.teams["acme"]["devs"].members
    quay.users["bob2"] = User(email="carol@acme.test")
    quay.users["carol"] = User(email="carol@acme.test")
    assert connector(quay, link_members_by_email=True).remove_person("carol@acme.test") == []  # two people


@pytest.mark.django_db
def test_a_sync_links_quay_owners_and_stores_superusers(registry: RunningRegistry, quay: FakeQuay) -> None:
    seed(registry)
    people(quay)
    superusers(quay)
    quay.users["dave"] = User(email="dave@acme.test")
    dave = factories.user(username="dave", external_id="dave@acme.test")  # a directory keyed by e-mail
    alice = factories.user(username="alice", external_id="alice@acme.test")
    saved = services.save_registry(
        Registry(name="quay-acme", kind="quay", endpoint=quay.url),
        actor=None,
        public={k: v for k, v in public_config(quay, link_members_by_email=True).items() if k != "url"},
        secrets={"token": quay.token, "registry_password": quay.robot_token},
    )

    run = sync.sync_inventory(saved)

    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    theirs = Grant.objects.get(registry=saved, principal_id="dave")
    assert (theirs.user, theirs.principal_name) == (dave, "dave")
    robot = Grant.objects.get(registry=saved, principal_id="acme+ci")
    assert (robot.user, robot.principal_kind) == (None, "robot")
    shared = Credential.objects.get(registry=saved, native_id="superuser:customs")
    assert (shared.kind, shared.shared_admin, shared.owner_user) == ("admin_account", True, None)
    hers = Credential.objects.get(registry=saved, native_id="superuser:alice")
    assert (hers.shared_admin, hers.owner_user, hers.owner_id) == (False, alice, "alice")


def test_deleting_a_robot_is_idempotent(registry: RunningRegistry, quay: FakeQuay) -> None:
    people(quay)
    quay_connector = connector(quay)
    quay_connector.disable_credential("acme+old")
    quay_connector.disable_credential("acme+old")  # already gone: Quay answers 404, which is success
    assert "old" not in quay.robots["acme"]
    assert quay.writes == ["DELETE robot acme+old"]
    with pytest.raises(ConfigError, match="not a robot of acme"):
        quay_connector.disable_credential("other+ci")


# --- grants ----------------------------------------------------------------------------------------


def test_grants_from_admin_teams_and_repository_permissions(
    registry: RunningRegistry, quay: FakeQuay
) -> None:
    seed(registry)
    people(quay)
    grants = {(g.principal.id, g.scope): g for g in connector(quay).read_grants()}
    assert set(grants) == {
        ("acme/owners", "acme/**"),
        ("acme/devs", "acme/app"),
        ("acme/readers", "acme/app"),
        ("acme+ci", "acme/app"),
        ("dave", "acme/app"),
    }
    assert grants["acme/owners", "acme/**"].actions == {"pull", "push", "delete"}
    assert grants["acme/devs", "acme/app"].actions == {"pull", "push"}
    assert grants["acme/readers", "acme/app"].actions == {"pull"}
    assert grants["dave", "acme/app"].actions == {"pull", "push", "delete"}
    assert grants["acme+ci", "acme/app"].principal.kind == PrincipalKind.ROBOT
    # A team synced with a directory group carries that group's id; the others carry none.
    assert grants["acme/devs", "acme/app"].principal.directory_id == "grp-devs"
    assert grants["acme/readers", "acme/app"].principal.directory_id == ""


def test_team_members_and_removing_one_twice(registry: RunningRegistry, quay: FakeQuay) -> None:
    people(quay)
    quay_connector = connector(quay)
    members = quay_connector.team_members("acme", "devs")
    assert [(m.kind, m.id) for m in members] == [
        (PrincipalKind.ROBOT, "acme+ci"),
        (PrincipalKind.USER, "bob"),
    ]
    quay_connector.remove_team_member("acme", "devs", "bob")
    quay_connector.remove_team_member("acme", "devs", "bob")
    assert quay.teams["acme"]["devs"].members == {"acme+ci": True}
    assert quay.writes == ["DELETE member acme/devs bob"]


def _devs(directory_id: str = "grp-devs") -> Principal:
    return Principal(kind=PrincipalKind.GROUP, id=directory_id, name="Developers", directory_id=directory_id)


def test_an_access_plan_is_applied_and_can_run_again(registry: RunningRegistry, quay: FakeQuay) -> None:
    seed(registry)
    people(quay)
    plan = AccessPlan(
        registry="quay-acme",
        additions=(GrantChange(ChangeOp.ADD, _devs(), "acme/worker", ("pull", "push")),),
        removals=(
            # dave keeps pull and push: admin becomes write
            GrantChange(ChangeOp.REMOVE, Principal(PrincipalKind.USER, "dave"), "acme/app", ("delete",)),
            GrantChange(
                ChangeOp.REMOVE, Principal(PrincipalKind.GROUP, "acme/readers"), "acme/app", ("pull",)
            ),
            GrantChange(
                ChangeOp.REMOVE, Principal(PrincipalKind.ROBOT, "acme+ci"), "acme/app", ("pull", "push")
            ),
        ),
    )
    applied = list(connector(quay).apply_access_plan(plan))
    assert applied == list(plan.changes)
    assert quay.team_permissions["acme/worker"] == {"devs": "write"}
    assert quay.team_permissions["acme/app"] == {"devs": "write"}
    assert quay.user_permissions["acme/app"] == {"dave": ("write", False)}
    writes = list(quay.writes)
    assert list(connector(quay).apply_access_plan(plan)) == list(plan.changes)  # the re-run
    assert quay.writes == writes  # nothing left to change: no request changed anything


def test_plans_quay_cannot_express_are_refused(registry: RunningRegistry, quay: FakeQuay) -> None:
    seed(registry)
    people(quay)
    unsynced = AccessPlan(
        "q", additions=(GrantChange(ChangeOp.ADD, _devs("grp-ops"), "acme/app", ("pull",)),)
    )
    with pytest.raises(PermanentError, match="no team of acme is synced with the directory group"):
        list(connector(quay).apply_access_plan(unsynced))
    partial = AccessPlan(
        "q",
        removals=(
            GrantChange(
                ChangeOp.REMOVE, Principal(PrincipalKind.GROUP, "acme/owners"), "acme/**", ("delete",)
            ),
        ),
    )
    with pytest.raises(PermanentError, match="cannot take away only delete"):
        list(connector(quay).apply_access_plan(partial))
    whole = AccessPlan(
        "q",
        removals=(
            GrantChange(
                ChangeOp.REMOVE,
                Principal(PrincipalKind.GROUP, "acme/owners"),
                "acme/**",
                ("pull", "push", "delete"),
            ),
        ),
    )
    list(connector(quay).apply_access_plan(whole))
    assert quay.teams["acme"]["owners"].role == "member"


# --- regions: mirroring ----------------------------------------------------------------------------


def test_mirrored_repositories_are_reported(registry: RunningRegistry, quay: FakeQuay) -> None:
    seed(registry)
    quay.mirrors["acme/tools"] = {
        "is_enabled": True,
        "mirror_type": "PULL",
        "external_reference": "registry.example.com/upstream/tools",
        "external_registry_username": None,
        "sync_interval": 3600,
        "sync_start_date": "2026-11-26T10:00:00Z",
        "sync_status": "SUCCESS",
        "root_rule": {"rule_kind": "tag_glob_csv", "rule_value": ["1.*", "latest"]},
        "robot_username": "acme+mirror",
    }
    mirrors = list(connector(quay).read_mirrors())
    assert [(m.repository, m.source, m.sync_status, m.tags) for m in mirrors] == [
        ("acme/tools", "registry.example.com/upstream/tools", "SUCCESS", ("1.*", "latest"))
    ]
    assert mirrors[0].next_sync_at == datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
    mirror_reads = [r for r in quay.requests_seen if r.endswith("/mirror")]
    assert mirror_reads == ["GET /api/v1/repository/acme/tools/mirror"]  # only the mirror is asked


# --- permissions, errors, limits -------------------------------------------------------------------


def test_check_permissions_names_each_missing_scope(registry: RunningRegistry, quay: FakeQuay) -> None:
    seed(registry)
    people(quay)
    steps = connector(quay).check_permissions()
    assert [(s.ok, s.required, s.tried) for s in steps] == [(True, True, True)] * 4 + [
        (False, False, False)
    ] * 2
    assert [s.permission for s in steps] == [*QuayConnector.needs[:4], *QuayConnector.needs[5:]]
    assert steps[1].detail == "tried on acme; tried on team acme/devs"  # robots, and a team's members
    assert quay.writes == []
    quay.scopes = {"repo:read"}
    checks = connector(quay).check_permissions()
    assert [check.ok for check in checks[:4]] == [True, False, False, True]
    assert "org:admin" in checks[1].detail
    assert "repo:admin" in checks[2].detail
    assert "403" in checks[1].detail
    wrong_robot = connectors.build(
        "quay", public_config(quay), {"token": quay.token, "registry_password": "nope"}
    )
    assert isinstance(wrong_robot, QuayConnector)
    last = wrong_robot.check_permissions()[3]
    assert not last.ok
    assert "401" in last.detail


def test_check_permissions_tries_every_organisation(start_registry: Any) -> None:
    running = start_registry()
    running.pusher().push_image("beta/app", im.base_image("beta"), tags=["1"])
    fake = FakeQuay(registry_url=running.url, organisations=("acme", "beta")).start()
    try:
        fake.teams["acme"] = {"devs": Team(members={"bob": False})}
        fake.teams["beta"] = {"ops": Team(members={"carol": False})}
        # The token's user administers acme; in beta it may list repositories but not read a team.
        fake.refused.add("GET /api/v1/organization/beta/team/ops/members")
        steps = connector(fake, namespaces="acme, beta").check_permissions()
    finally:
        fake.stop()
    assert not fake.drift

    listing, org_admin, repo_admin = steps[:3]
    assert (listing.ok, listing.detail) == (True, "listed acme; listed beta")
    assert not org_admin.ok
    assert "beta: 403 from" in org_admin.detail
    assert "tried on team acme/devs" in org_admin.detail
    assert (repo_admin.ok, repo_admin.detail) == (True, "acme: no repository to try yet; tried on beta/app")


def test_check_permissions_asks_for_the_users_list_only_when_linking_by_email(
    registry: RunningRegistry, quay: FakeQuay
) -> None:
    seed(registry)
    [users] = [
        s for s in connector(quay, link_members_by_email=True).check_permissions() if "e-mail" in s.permission
    ]
    assert (users.permission, users.ok, users.required) == (QuayConnector.needs[4], False, True)
    superusers(quay)
    [users] = [
        s for s in connector(quay, link_members_by_email=True).check_permissions() if "e-mail" in s.permission
    ]
    assert users.ok


@pytest.mark.django_db
def test_the_reading_scopes_pass_test_connection_with_the_writes_untried(
    registry: RunningRegistry, quay: FakeQuay
) -> None:
    seed(registry)
    saved = services.save_registry(
        Registry(name="quay-acme", kind="quay", endpoint=quay.url),
        actor=None,
        public={k: v for k, v in public_config(quay).items() if k != "url"},
        secrets={"token": quay.token, "registry_password": quay.robot_token},
    )

    result = services.check_connection(saved)

    assert result.ok, result.reason
    assert "2 write permissions could not be tried without changing anything" in result.reason


def test_a_token_without_org_admin_cannot_read_grants_silently(
    registry: RunningRegistry, quay: FakeQuay
) -> None:
    seed(registry)
    people(quay)
    quay.scopes = {"repo:read", "repo:admin"}
    with pytest.raises(AuthError, match="needs the org:admin scope"):
        list(connector(quay).read_grants())
    with pytest.raises(AuthError, match="403 from .*/robots: insufficient_scope"):
        list(connector(quay).read_credentials())


def test_an_expired_token_is_an_auth_error(registry: RunningRegistry, quay: FakeQuay) -> None:
    built = connectors.build(
        "quay", public_config(quay), {"token": "expired", "registry_password": quay.robot_token}
    )
    with pytest.raises(AuthError, match="401 from .*/organization/acme: invalid_token"):
        built.check()


@pytest.mark.parametrize("hint", ["7", "date"])
def test_rate_limits_carry_the_wait(registry: RunningRegistry, quay: FakeQuay, hint: str) -> None:
    seed(registry)
    value = "7" if hint == "7" else "Wed, 01 Jan 2300 00:00:00 GMT"
    answer = quay_error(429, "too_many_requests", "slow down")
    answer.headers["Retry-After"] = value
    quay.fail_next.append(answer)
    with pytest.raises(RateLimited) as raised:
        list(connector(quay).repositories())
    waited = raised.value.retry_after
    assert waited is not None
    assert (waited == 7) if hint == "7" else (waited > 3600)


def test_repositories_outside_the_organisations_are_refused(
    registry: RunningRegistry, quay: FakeQuay
) -> None:
    with pytest.raises(ConfigError, match="not in acme"):
        connector(quay).tags("other/app")


def test_the_namespaces_must_be_organisation_names() -> None:
    with pytest.raises(ConfigError, match="namespaces: Value error, list organisation names"):
        connectors.config_for(
            "quay",
            {"namespaces": "acme/app", "registry_username": "acme+r"},
            {"token": "t", "registry_password": "p"},
        )


def test_a_fake_answer_outside_the_documented_shape_fails_the_test(
    registry: RunningRegistry, quay: FakeQuay
) -> None:
    seed(registry)
    quay.mutate = lambda body: {**body, "has_additional": "no"} if "tags" in body else body
    with pytest.raises(TransientError, match="500 from"):
        connector(quay).tags("acme/app")
    assert "has_additional" in quay.drift[0]
    quay.drift.clear()  # seen; the fixture would otherwise fail this test for it
