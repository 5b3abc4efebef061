"""The Quay connector against a fake Quay API over a real docker-registry (tests/fakes/quay.py)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from registries import connectors, services, sync
from registries.connectors.base import (
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
from tests.fakes.quay import FakeQuay, Robot, Team, quay_error
from tests.registries.harness import RunningRegistry

PUSHED = datetime(2026, 10, 1, 8, 30, tzinfo=UTC)
LATER = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
USED = datetime(2026, 11, 20, 17, 0, tzinfo=UTC)


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
    assert all(check.ok for check in connector(quay).check_permissions())
    quay.scopes = {"repo:read"}
    checks = connector(quay).check_permissions()
    assert [check.ok for check in checks] == [True, False, False, True]
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
