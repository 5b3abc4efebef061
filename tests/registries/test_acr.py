"""The ACR connector against a fake Entra, ARM and login server over a real docker-registry.

The fake (tests/fakes/acr.py) is one TLS host on loopback; msal signs in to it as to Entra.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from django.db.models import Q

from portal.models import Finding
from registries import connectors, drift, hygiene, posture, services, sync
from registries.connectors.acr import AcrConfig, AcrConnector, AcrTokenConnector
from registries.connectors.base import (
    AccessPlan,
    Capability,
    ChangeOp,
    CredentialKind,
    GrantChange,
    Principal,
    PrincipalKind,
    can_read_credentials,
    can_read_grants,
    can_write_grants,
)
from registries.connectors.errors import AuthError, ConfigError, PermanentError, RateLimited, TransientError
from registries.demo import images as im
from registries.models import Artifact, Credential, Grant, Registry, Repository, SyncRun
from registries.models import PostureFact as FactRow
from tests import factories
from tests.fakes.acr import ACR_PULL, ACR_PUSH, FakeAcr, FakeToken, RoleAssignment
from tests.fakes.server import Answer
from tests.registries.harness import RunningRegistry

PUSHED = datetime(2026, 10, 1, 8, 30, tzinfo=UTC)
EXPIRES = datetime(2027, 3, 31, 12, 0, tzinfo=UTC)
GROUP_OID = "5e1c0a2b-0000-4000-8000-00000000abcd"


@pytest.fixture
def acr(registry: RunningRegistry, settings: Any) -> Iterator[FakeAcr]:
    fake = FakeAcr(registry_url=registry.url).start()
    settings.OUTBOUND_CA_BUNDLE = fake.ca_bundle  # the fake's own certificate, as a private CA would be
    yield fake
    fake.stop()
    assert not fake.drift, "the fake answered in a shape ACR does not use:\n" + "\n".join(fake.drift)


def connector(fake: FakeAcr, **public: Any) -> AcrConnector:
    built = connectors.build("acr", fake.public_config(**public), {"client_secret": fake.client_secret})
    assert isinstance(built, AcrConnector)
    return built


class SimulatedTime:
    """A clock that moves only when the code under test sleeps, so pacing costs no real time."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def timed_connector(public: dict[str, Any], secrets: dict[str, str], time: SimulatedTime) -> AcrConnector:
    config = connectors.config_for("acr", public, secrets)
    assert isinstance(config, AcrConfig)
    return AcrConnector(config, clock=time.clock, sleep=time.sleep)


def seed(registry: RunningRegistry) -> dict[str, im.Image]:
    pusher = registry.pusher()
    base = im.base_image("debian", version="12")
    app = im.child_image(base, {"app/main.py": b"print('hi')\n"}, base_name="docker.io/library/debian:12")
    pusher.push_image("library/debian", base, tags=["12"])
    pusher.push_image("payments/api", app, tags=["1.0", "latest"])
    pusher.push_image("payments/batch/worker", base, tags=["1"])
    return {"base": base, "app": app}


def furnish(fake: FakeAcr) -> None:
    """Tokens, scope maps and role assignments as a team would have set them up."""
    fake.scope_maps = {
        "ci-push": [
            "repositories/payments/api/content/read",
            "repositories/payments/api/content/write",
            "repositories/payments/api/metadata/read",
        ],
        "team-read": ["repositories/payments/*/content/read", "repositories/payments/*/metadata/read"],
        "legacy": ["repositories/library/debian/contentWrite", "repositories/library/debian/delete"],
    }
    fake.tokens = {
        "ci-push": FakeToken("ci-push", passwords=[("password1", EXPIRES), ("password2", None)]),
        "team-reader": FakeToken("team-read", passwords=[("password1", EXPIRES)]),
        "old-bot": FakeToken("legacy", status="disabled", passwords=[]),
        "puller": FakeToken("_repositories_pull", passwords=[("password1", EXPIRES)]),
    }
    fake.role_assignments = [
        RoleAssignment(ACR_PUSH, GROUP_OID, "Group"),
        RoleAssignment(ACR_PULL, "11111111-0000-4000-8000-000000000001", "ServicePrincipal"),
        RoleAssignment(
            ACR_PULL,
            "22222222-0000-4000-8000-000000000002",
            "User",
            condition="((@Request[Microsoft.ContainerRegistry/registries/repositories:name] "
            "StringStartsWithIgnoreCase 'payments/'))",
        ),
        RoleAssignment(
            "b7e6dc6d-f1e8-4753-8033-0f276bb0955b", "33333333-0000-4000-8000-000000000003", "User"
        ),
    ]


# --- inventory ------------------------------------------------------------------------------------------


def test_repositories_tags_and_push_times_come_from_the_data_plane(
    registry: RunningRegistry, acr: FakeAcr
) -> None:
    images = seed(registry)
    acr.tag_times[("payments/api", "latest")] = PUSHED
    acr_connector = connector(acr, page_size=2)

    names = [repository.name for repository in acr_connector.repositories()]
    assert names == ["library/debian", "payments/api", "payments/batch/worker"]  # over two pages
    pages = [query.get("last") for path, query in acr.data_requests if path == "/acr/v1/_catalog"]
    assert pages == [None, ["payments/api"]]  # the second page starts after the first one's last name
    tags = acr_connector.tags("payments/api")
    assert [(t.name, t.digest) for t in tags] == [
        ("1.0", images["app"].digest),
        ("latest", images["app"].digest),
    ]
    assert [t.digest for t in acr_connector.tags("payments/batch/worker")] == [images["base"].digest]

    artifact = acr_connector.artifact("payments/api", images["app"].digest)
    assert artifact.pushed_at == PUSHED  # the latest tag push onto the digest
    assert artifact.last_pulled_at is None  # ACR keeps no pull times
    assert artifact.layer_digests == tuple(layer.digest for layer in images["app"].layers)  # from /v2/
    # The data plane was reached the AAD way: Entra token → ACR refresh token → access tokens per scope.
    seen = acr.requests_seen
    assert seen.index("POST /oauth2/exchange") < seen.index("GET /acr/v1/_catalog")
    assert "registry:catalog:*" in acr.scopes_asked
    assert "repository:payments/api:metadata_read" in acr.scopes_asked
    assert "repository:payments/api:pull" in acr.scopes_asked


@pytest.mark.parametrize(
    ("header", "body"), [(True, True), (True, False), (False, True)], ids=["both", "header", "body"]
)
def test_pages_follow_the_link_wherever_acr_gives_it(
    registry: RunningRegistry, acr: FakeAcr, header: bool, body: bool
) -> None:
    seed(registry)
    acr.link_header, acr.link_body = header, body
    acr_connector = connector(acr, page_size=1)
    names = [r.name for r in acr_connector.repositories()]
    assert names == ["library/debian", "payments/api", "payments/batch/worker"]
    pages = [query.get("last") for path, query in acr.data_requests if path == "/acr/v1/_catalog"]
    assert pages == [None, ["library/debian"], ["payments/api"]]
    assert [tag.name for tag in acr_connector.tags("payments/api")] == ["1.0", "latest"]  # two tag pages
    assert [path for path, _ in acr.data_requests].count("/acr/v1/payments/api/_tags") == 2


# --- pacing ---------------------------------------------------------------------------------------------

READS = 150  # a Basic registry's burst is 75 reads (registry-apis.md §5.4: 5,000 a minute, nine tenths)


@pytest.mark.parametrize(
    ("sku", "seconds"),
    [("Basic", 1.0), ("Standard", 1.0), ("Premium", 0.0), ("Classic", 1.0)],  # Classic: unknown, lowest
)
def test_data_plane_reads_keep_to_the_skus_budget(
    registry: RunningRegistry, acr: FakeAcr, sku: str, seconds: float
) -> None:
    acr.sku = sku
    time = SimulatedTime()
    acr_connector = timed_connector(acr.public_config(), {"client_secret": acr.client_secret}, time)
    for _ in range(READS):
        assert list(acr_connector.repositories()) == []  # one read each
    assert len(acr.data_requests) == READS
    # The burst goes at once, the rest at 75 a second (Basic, Standard), all at once on Premium.
    assert time.now == pytest.approx(seconds)
    assert len(time.sleeps) == (READS - 75 if seconds else 0)
    assert acr.requests_seen.count(f"GET {acr.registry_id}") == 1  # the SKU is read once


def test_an_acr_token_is_paced_at_the_lowest_budget(registry: RunningRegistry, acr: FakeAcr) -> None:
    acr.sku = "Premium"  # unknowable: ARM does not accept an ACR token
    username, password = acr.acr_token
    time = SimulatedTime()
    acr_connector = timed_connector({"url": acr.url, "username": username}, {"password": password}, time)
    assert isinstance(acr_connector, AcrTokenConnector)
    for _ in range(READS):
        list(acr_connector.repositories())
    assert time.now == pytest.approx(1.0)
    assert not any(seen.startswith("GET /subscriptions/") for seen in acr.requests_seen)


def test_manifest_reads_draw_on_the_same_budget(registry: RunningRegistry, acr: FakeAcr) -> None:
    images = seed(registry)
    acr.sku = "Basic"
    time = SimulatedTime()
    acr_connector = timed_connector(acr.public_config(), {"client_secret": acr.client_secret}, time)
    for _ in range(80):
        assert acr_connector.resolve("library/debian", "12") == images["base"].digest  # /v2/ only
    sent = [seen for seen in acr.requests_seen if seen.split(" ", 1)[1].startswith("/v2/")]
    assert len(sent) > 80  # the first met ACR's challenge and went again
    assert len(time.sleeps) == len(sent) - 75  # every /v2/ request past the burst waited its turn
    assert time.now == pytest.approx((len(sent) - 75) / 75)


def test_a_429_still_surfaces_with_its_retry_after(registry: RunningRegistry, acr: FakeAcr) -> None:
    acr.sku = "Basic"
    time = SimulatedTime()
    acr_connector = timed_connector(acr.public_config(), {"client_secret": acr.client_secret}, time)
    for _ in range(100):
        list(acr_connector.repositories())
    assert len(time.sleeps) == 25  # paced already; Azure may still throttle (other clients, one region)
    throttled = {"errors": [{"code": "TOOMANYREQUESTS", "message": "too many requests"}]}
    acr.fail_next.append(Answer(429, throttled, headers={"Retry-After": "7"}))
    with pytest.raises(RateLimited) as raised:
        list(acr_connector.repositories())
    assert raised.value.retry_after == 7


@pytest.mark.django_db
def test_a_sync_records_inventory_credentials_and_grants(registry: RunningRegistry, acr: FakeAcr) -> None:
    images = seed(registry)
    furnish(acr)
    acr.admin_user_enabled = True
    acr.tag_times[("payments/api", "1.0")] = PUSHED
    group = factories.group(external_id=GROUP_OID, display_name="Payments")
    saved = services.save_registry(
        Registry(name="acr-eu", kind="acr", endpoint=acr.url),
        actor=None,
        public={k: v for k, v in acr.public_config().items() if k != "url"},
        secrets={"client_secret": acr.client_secret},
    )
    run = sync.sync_inventory(saved)
    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    assert set(Repository.objects.filter(registry=saved).values_list("name", flat=True)) == {
        "library/debian",
        "payments/api",
        "payments/batch/worker",
    }
    app = Artifact.objects.get(repository__registry=saved, repository__name="payments/api")
    assert (app.digest, app.pushed_at) == (images["app"].digest, PUSHED)
    credentials = {c.native_id: c for c in Credential.objects.filter(registry=saved)}
    assert set(credentials) == {
        "admin-user",
        "tokens/ci-push",
        "tokens/team-reader",
        "tokens/old-bot",
        "tokens/puller",
    }
    assert credentials["admin-user"].shared_admin
    assert (credentials["admin-user"].actions, credentials["tokens/ci-push"].actions) == (
        ["delete", "pull", "push"],
        ["pull", "push"],
    )
    assert (
        credentials["tokens/ci-push"].actions_seen,
        credentials["tokens/ci-push"].actions_seen_source,
    ) == (
        {},
        "",
    )
    group_grant = Grant.objects.get(registry=saved, principal_id=GROUP_OID)
    assert group_grant.group == group  # linked by the Entra object id, never by name
    assert (group_grant.scope, group_grant.can_pull, group_grant.can_push, group_grant.can_delete) == (
        "**",
        True,
        True,
        False,
    )

    # Posture scores the admin user, hygiene opens its finding: one cause, one finding.
    hygiene.scan(registry=saved)
    posture.evaluate(saved)
    admin = str(credentials["admin-user"].pk)
    about_admin = Finding.objects.unresolved().filter(
        Q(kind__contains="admin") | Q(subject_type="registries.credential", subject_id=admin)
    )
    assert sorted(about_admin.values_list("kind", "severity")) == [
        ("credential_never_expires", "low"),  # the admin user's passwords have no expiry
        ("credential_orphaned", "medium"),  # and it belongs to nobody
        ("credential_shared_admin", "high"),
    ]
    assert FactRow.objects.get(registry=saved, check_name="acr_admin_user").state == "failing"


# --- credentials -------------------------------------------------------------------------------------


def test_credentials_say_admin_user_token_expiry_and_unknown_use(
    registry: RunningRegistry, acr: FakeAcr
) -> None:
    furnish(acr)
    acr.admin_user_enabled = True
    found = {c.id: c for c in connector(acr).read_credentials()}  # tokens over two ARM pages

    admin = found["admin-user"]
    assert (admin.kind, admin.shared_admin, admin.name) == (CredentialKind.ADMIN_ACCOUNT, True, "acme")
    ci = found["tokens/ci-push"]
    assert ci.kind == CredentialKind.ACCESS_TOKEN
    # One of its passwords never expires, so the token never does: known, not unknown.
    assert (ci.expires_at, ci.expiry_known) == (None, True)
    assert (ci.last_used_at, ci.usage_known) == (None, False)  # ACR keeps no record of use
    assert ci.created_at == datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    assert "scope map ci-push: repositories/payments/api/content/write" in ci.scopes
    assert found["tokens/team-reader"].expires_at == EXPIRES
    assert not found["tokens/old-bot"].enabled
    # What each may do, from its scope map's actions; metadata/read adds nothing of the three.
    assert {c.id: c.actions for c in found.values()} == {
        "admin-user": frozenset({"pull", "push", "delete"}),
        "tokens/ci-push": frozenset({"pull", "push"}),
        "tokens/team-reader": frozenset({"pull"}),
        "tokens/old-bot": frozenset({"push", "delete"}),  # the older spellings, contentWrite and delete
        "tokens/puller": frozenset({"pull"}),  # a system scope map
    }
    # ACR records no use of any credential: no usage evidence either.
    assert all((c.actions_seen, c.actions_seen_source) == ({}, "") for c in found.values())


def test_a_token_whose_scope_map_is_gone_may_do_what_nobody_knows(
    registry: RunningRegistry, acr: FakeAcr
) -> None:
    furnish(acr)
    del acr.scope_maps["team-read"]
    found = {c.id: c for c in connector(acr).read_credentials()}
    assert found["tokens/team-reader"].actions == frozenset()  # not known, rather than "nothing"


def test_no_admin_credential_while_the_admin_user_is_off(registry: RunningRegistry, acr: FakeAcr) -> None:
    furnish(acr)
    assert "admin-user" not in {c.id for c in connector(acr).read_credentials()}


def test_disabling_a_token_is_idempotent(registry: RunningRegistry, acr: FakeAcr) -> None:
    furnish(acr)
    acr_connector = connector(acr)
    acr_connector.disable_credential("tokens/ci-push")
    assert acr.tokens["ci-push"].status == "disabled"
    patches = acr.requests_seen.count(f"PATCH {acr.registry_id}/tokens/ci-push")
    assert patches == 1
    assert f"GET {acr.registry_id}/operationStatuses/tok-1" in acr.requests_seen  # the 201 was awaited
    acr_connector.disable_credential("tokens/ci-push")  # again: nothing to do, no second write
    acr_connector.disable_credential("tokens/long-gone")  # gone already: success
    assert acr.requests_seen.count(f"PATCH {acr.registry_id}/tokens/ci-push") == 1


def test_disabling_the_admin_user_switches_it_off(registry: RunningRegistry, acr: FakeAcr) -> None:
    acr.admin_user_enabled = True
    connector(acr).disable_credential("admin-user")
    assert acr.admin_user_enabled is False


def test_a_credential_id_the_connector_never_gave_is_refused(registry: RunningRegistry, acr: FakeAcr) -> None:
    with pytest.raises(PermanentError, match="not a credential"):
        connector(acr).disable_credential("robots/x")


def test_deleting_a_token_waits_for_arm_and_is_idempotent(registry: RunningRegistry, acr: FakeAcr) -> None:
    furnish(acr)
    time = SimulatedTime()
    acr_connector = timed_connector(acr.public_config(), {"client_secret": acr.client_secret}, time)
    acr_connector.delete_credential("tokens/ci-push")
    assert "ci-push" not in acr.tokens
    # ARM answered 202 with a Location; the first poll said "not yet" (202), the second done (204).
    assert acr.requests_seen.count(f"GET {acr.registry_id}/operationResults/del-ci-push") == 2
    assert time.sleeps == [3.0]  # as long as the Retry-After asked
    assert {c.id for c in acr_connector.read_credentials()} == {
        "tokens/team-reader",
        "tokens/old-bot",
        "tokens/puller",
    }
    acr_connector.delete_credential("tokens/ci-push")  # again: ARM answers 204, nothing to delete
    acr.fail_next.append(Answer(404, {"error": {"code": "ResourceNotFound", "message": "token ci-push"}}))
    acr_connector.delete_credential("tokens/ci-push")  # a 404 means gone as well
    assert acr.requests_seen.count(f"DELETE {acr.registry_id}/tokens/ci-push") == 3
    assert time.sleeps == [3.0]  # neither waited on anything
    with pytest.raises(PermanentError, match="not a token"):
        acr_connector.delete_credential("admin-user")  # switched off, never deleted


def test_a_token_deletion_answer_arm_never_gives_fails_the_test(
    registry: RunningRegistry, acr: FakeAcr
) -> None:
    furnish(acr)
    acr_connector = connector(acr)
    acr_connector.check()
    acr.fail_next.append(Answer(201, {"id": "x"}, operation="arm:tokenDelete"))
    with pytest.raises(TransientError, match="500 from"):
        acr_connector.delete_credential("tokens/ci-push")
    assert "a token's deletion answers [200, 202, 204] without a body" in acr.drift[0]
    acr.drift.clear()  # seen; the fixture would otherwise fail this test for it


# --- grants --------------------------------------------------------------------------------------------


def test_grants_from_scope_maps_and_role_assignments(registry: RunningRegistry, acr: FakeAcr) -> None:
    furnish(acr)
    grants = {(g.principal.id, g.scope): g for g in connector(acr).read_grants()}

    ci = grants["ci-push", "payments/api"]
    assert (ci.principal.kind, ci.actions, ci.source) == (
        PrincipalKind.ROBOT,
        frozenset({"pull", "push"}),  # metadata/read has no counterpart
        "scope map ci-push",
    )
    assert grants["team-reader", "payments/**"].actions == frozenset({"pull"})  # payments/* → payments/**
    assert grants["puller", "**"].actions == frozenset({"pull"})  # a system map on every repository
    assert not any(principal == "old-bot" for principal, _ in grants)  # disabled: opens nothing
    group = grants[GROUP_OID, "**"]
    assert (group.principal.kind, group.principal.directory_id, group.actions) == (
        PrincipalKind.GROUP,
        GROUP_OID,
        frozenset({"pull", "push"}),
    )
    assert group.source.startswith("role assignment AcrPush")
    service = grants["11111111-0000-4000-8000-000000000001", "**"]
    assert (service.principal.kind, service.principal.directory_id) == (PrincipalKind.SERVICE_ACCOUNT, "")
    # An ABAC condition narrows the assignment to the repositories it names.
    assert grants["22222222-0000-4000-8000-000000000002", "payments/**"].actions == frozenset({"pull"})
    # A role that is not a registry role (here: a custom one) grants nothing Customs compares.
    assert not any(principal.startswith("33333333") for principal, _ in grants)


def test_unreadable_role_assignments_fail_the_read_unless_switched_off(
    registry: RunningRegistry, acr: FakeAcr
) -> None:
    furnish(acr)
    acr.role_assignments_readable = False
    with pytest.raises(AuthError, match="403 .*AuthorizationFailed"):
        list(connector(acr).read_grants())
    grants = list(connector(acr, read_role_assignments=False).read_grants())
    assert {g.principal.kind for g in grants} == {PrincipalKind.ROBOT}


def _robot(name: str) -> Principal:
    return Principal(kind=PrincipalKind.ROBOT, id=name, name=name)


def test_a_plan_edits_scope_maps_and_is_idempotent(registry: RunningRegistry, acr: FakeAcr) -> None:
    furnish(acr)
    plan = AccessPlan(
        registry="acr-eu",
        additions=(GrantChange(ChangeOp.ADD, _robot("team-reader"), "payments/batch/worker", ("push",)),),
        removals=(
            GrantChange(
                ChangeOp.REMOVE, _robot("ci-push"), "payments/api", ("push",), source="scope map ci-push"
            ),
        ),
    )
    applied = list(connector(acr).apply_access_plan(plan))
    assert applied == list(plan.changes)
    assert acr.scope_maps["ci-push"] == [
        "repositories/payments/api/content/read",
        "repositories/payments/api/metadata/read",
    ]
    assert "repositories/payments/batch/worker/content/write" in acr.scope_maps["team-read"]
    writes = [seen for seen in acr.requests_seen if seen.startswith("PATCH")]
    assert len(writes) == 2
    assert list(connector(acr).apply_access_plan(plan)) == list(plan.changes)  # again: already so
    assert len([seen for seen in acr.requests_seen if seen.startswith("PATCH")]) == 2


def test_a_plan_that_needs_a_role_assignment_changes_nothing(registry: RunningRegistry, acr: FakeAcr) -> None:
    furnish(acr)
    group = Principal(kind=PrincipalKind.GROUP, id=GROUP_OID, name="Payments", directory_id=GROUP_OID)
    plan = AccessPlan(
        registry="acr-eu",
        additions=(GrantChange(ChangeOp.ADD, group, "payments/api", ("pull",)),),
        removals=(
            GrantChange(
                ChangeOp.REMOVE, _robot("ci-push"), "payments/api", ("push",), source="scope map ci-push"
            ),
        ),
    )
    with pytest.raises(PermanentError, match="User Access Administrator"):
        list(connector(acr).apply_access_plan(plan))
    assert "repositories/payments/api/content/write" in acr.scope_maps["ci-push"]  # refused before any write


def test_a_system_scope_map_is_not_edited(registry: RunningRegistry, acr: FakeAcr) -> None:
    furnish(acr)
    plan = AccessPlan(
        registry="acr-eu",
        removals=(
            GrantChange(
                ChangeOp.REMOVE, _robot("puller"), "**", ("pull",), source="scope map _repositories_pull"
            ),
        ),
    )
    with pytest.raises(PermanentError, match="built into ACR"):
        list(connector(acr).apply_access_plan(plan))


# --- regions and webhooks ----------------------------------------------------------------------------


def test_replications_with_status_and_webhooks_per_region(registry: RunningRegistry, acr: FakeAcr) -> None:
    acr.replications = {"westeurope": "Ready", "eastus": "Syncing", "japaneast": "Ready"}
    acr.webhooks = {"pushweu": ("westeurope", ["push"]), "pusheus": ("eastus", ["push", "delete"])}
    acr_connector = connector(acr)
    found = {r.region: r for r in acr_connector.replications()}  # three items over two ARM pages
    assert set(found) == {"westeurope", "eastus", "japaneast"}
    assert found["westeurope"].home
    assert found["westeurope"].endpoint == acr.url
    assert (found["eastus"].status, found["eastus"].endpoint) == (
        "Syncing",
        "https://acme.eastus.geo.azurecr.io",
    )
    assert acr_connector.webhook_regions() == {"westeurope": ["pushweu"], "eastus": ["pusheus"]}


# --- authentication, permissions, faults ---------------------------------------------------------------


def test_an_acr_token_reads_the_inventory_only(registry: RunningRegistry, acr: FakeAcr) -> None:
    images = seed(registry)
    username, password = acr.acr_token
    built = connectors.build("acr", {"url": acr.url, "username": username}, {"password": password})
    assert isinstance(built, AcrTokenConnector)
    assert not can_read_credentials(built)
    assert not can_read_grants(built)
    assert not can_write_grants(built)
    assert Capability.WRITE_GRANTS in connectors.CONNECTORS["acr"].capabilities  # the kind still can
    assert [r.name for r in built.repositories()][:1] == ["library/debian"]
    assert built.artifact("library/debian", images["base"].digest).digest == images["base"].digest
    assert not any("oauth2/exchange" in seen for seen in acr.requests_seen)  # Basic, no Entra
    assert [check.ok for check in built.check_permissions()] == [True, True]


def test_check_permissions_one_by_one(registry: RunningRegistry, acr: FakeAcr) -> None:
    seed(registry)
    checks = connector(acr).check_permissions()
    assert [c.permission for c in checks] == list(AcrConnector.needs)
    # Reads first and required; the writes after them, optional and each for one use only.
    assert [c.required for c in checks] == [True] * 6 + [False] * 2
    assert [n.startswith("optional, only for ") for n in AcrConnector.needs] == [False] * 6 + [True] * 2
    assert [c.ok for c in checks] == [True] * 6 + [False] * 2  # a reader cannot write
    assert all(c.tried for c in checks)  # the effective permissions prove the writes, harmlessly
    assert "registries/scopeMaps/write: plans cannot write" in checks[6].detail
    assert "registries/tokens/write, Microsoft.ContainerRegistry/registries/write" in checks[7].detail
    acr.permissions = [
        {
            "actions": [
                "Microsoft.ContainerRegistry/registries/*/read",
                "Microsoft.ContainerRegistry/registries/tokens/write",
                "Microsoft.ContainerRegistry/registries/scopeMaps/*",
            ],
            "notActions": [],
        }
    ]
    checks = connector(acr).check_permissions()
    assert (checks[6].ok, checks[7].ok) == (True, False)  # the admin user still cannot be switched off
    assert (
        checks[7].detail == "missing Microsoft.ContainerRegistry/registries/write: offboarding cannot write"
    )
    acr.permissions[0]["actions"].append("Microsoft.ContainerRegistry/registries/write")
    assert [c.ok for c in connector(acr).check_permissions()] == [True] * 8
    acr.role_assignments_readable = False
    checks = connector(acr).check_permissions()
    assert not checks[4].ok
    assert "AuthorizationFailed" in checks[4].detail


def test_writes_are_not_tried_when_the_effective_permissions_are_unreadable(
    registry: RunningRegistry, acr: FakeAcr
) -> None:
    acr.permissions_readable = False
    checks = connector(acr).check_permissions()
    assert [(c.ok, c.tried) for c in checks[:6]] == [(True, True)] * 6
    assert [(c.ok, c.tried, c.required) for c in checks[6:]] == [(False, False, False)] * 2
    assert not any(c.missing for c in checks)  # not tried is not missing
    assert "could not read the effective permissions: 403" in checks[6].detail


@pytest.mark.django_db
def test_a_read_only_service_principal_passes_test_connection(
    registry: RunningRegistry, acr: FakeAcr
) -> None:
    seed(registry)
    saved = services.save_registry(
        Registry(name="acr-ro", kind="acr", endpoint=acr.url),
        actor=None,
        public={k: v for k, v in acr.public_config().items() if k != "url"},
        secrets={"client_secret": acr.client_secret},
    )
    result = services.check_connection(saved)  # the fake grants */read only
    assert result.ok, result.reason
    assert [s.permission for s in result.steps if s.missing] == list(AcrConnector.needs[6:])
    assert result.reason.endswith("2 write permissions are missing (plans and offboarding cannot write)")
    acr.role_assignments_readable = False  # a missing read still fails it
    result = services.check_connection(saved)
    assert not result.ok
    assert [s.permission for s in result.steps if s.missing and s.required] == [AcrConnector.needs[4]]


def test_a_wrong_client_secret_is_an_auth_error(registry: RunningRegistry, acr: FakeAcr) -> None:
    built = connectors.build("acr", acr.public_config(), {"client_secret": "wrong"})
    with pytest.raises(AuthError, match="invalid_client"):
        built.check()


def test_expired_tokens_are_acquired_again_once(registry: RunningRegistry, acr: FakeAcr) -> None:
    seed(registry)
    furnish(acr)
    acr_connector = connector(acr)
    list(acr_connector.read_credentials())
    list(acr_connector.repositories())
    acr.revoke_tokens()  # every token dies, as after an hour's sync
    assert len(list(acr_connector.read_credentials())) == 4
    assert len(list(acr_connector.repositories())) == 3
    entra = f"POST /{acr.tenant_id}/oauth2/v2.0/token"
    assert acr.requests_seen.count(entra) == 2  # once at first, once after the 401: not per call
    assert acr.requests_seen.count("POST /oauth2/exchange") == 2


def test_arm_throttling_and_refusals_are_classified(registry: RunningRegistry, acr: FakeAcr) -> None:
    acr_connector = connector(acr)
    acr_connector.check()
    acr.fail_next.append(
        Answer(429, {"error": {"code": "TooManyRequests", "message": "slow"}}, headers={"Retry-After": "9"})
    )
    with pytest.raises(RateLimited) as raised:
        acr_connector.replications()
    assert raised.value.retry_after == 9
    acr.fail_next.append(Answer(403, {"error": {"code": "AuthorizationFailed", "message": "no tokens/read"}}))
    with pytest.raises(AuthError, match="AuthorizationFailed no tokens/read"):
        list(acr_connector.read_credentials())


def test_a_half_given_service_principal_is_refused() -> None:
    with pytest.raises(ConfigError, match="a service principal also needs subscription_id, resource_group"):
        connectors.config_for(
            "acr",
            {"url": "https://acme.azurecr.io", "tenant_id": "t", "client_id": "c"},
            {"client_secret": "s"},
        )
    with pytest.raises(
        ConfigError, match="authority_url: Value error, the Entra authority must start with https"
    ):
        connectors.config_for(
            "acr",
            {"url": "https://acme.azurecr.io", "username": "u", "authority_url": "http://x"},
            {"password": "p"},
        )


def test_a_fake_answer_acr_would_never_send_fails_the_test(registry: RunningRegistry, acr: FakeAcr) -> None:
    seed(registry)
    acr_connector = connector(acr)
    acr_connector.check()
    acr.mutate = lambda body: {**body, "repositories": [42]} if "repositories" in body else body
    with pytest.raises(TransientError, match="500 from"):
        list(acr_connector.repositories())
    assert "42 is not of type 'string'" in acr.drift[0]
    acr.mutate = lambda body: {**body, "location": None, "extra": 1} if "sku" in body else body
    with pytest.raises(TransientError, match="500 from"):
        acr_connector.replications()
    assert "extra ['extra']" in acr.drift[1]
    acr.drift.clear()  # seen; the fixture would otherwise fail this test for them


@pytest.mark.django_db
def test_drift_asks_the_variant_so_a_token_only_acr_is_neither_compared_nor_written() -> None:
    token_only = factories.registry(
        kind="acr",
        endpoint="https://acme.azurecr.io",
        config={"username": "ci-token"},
        secrets={"password": "p"},
    )
    public = {"url": token_only.endpoint, "username": "ci-token"}
    assert connectors.connector_class("acr", public, {"password": "p"}) is AcrTokenConnector
    assert connectors.connector_class("acr", public, {}) is AcrConnector  # unusable config: the kind
    assert drift.status_of(token_only)[0] == drift.Status.NOT_READABLE
    assert not drift.can_apply(token_only)
