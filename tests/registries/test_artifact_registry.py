"""The Artifact Registry connector against a fake of Google's APIs over a real docker-registry.

tests/fakes/artifact_registry.py serves the OAuth token endpoint, Artifact Registry, the project's
IAM policy and service-account keys on loopback, each answer checked against registry-apis.md §7,
and proxies the docker host's /v2/ to a real docker-registry.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from registries import connectors, services, sync
from registries.connectors.artifact_registry import ArtifactRegistryConnector, _legacy_manifest_times
from registries.connectors.base import AccessPlan, ChangeOp, GrantChange, Principal, PrincipalKind
from registries.connectors.errors import AuthError, ConfigError, PermanentError, RateLimited, TransientError
from registries.demo import images as im
from registries.models import Artifact, Credential, Grant, Registry, SyncRun
from tests.fakes.artifact_registry import ACCOUNT, LOCATION, PROJECT, FakeArtifactRegistry, google_error
from tests.registries.harness import RunningRegistry

UPLOADED = datetime(2026, 10, 1, 8, 30, tzinfo=UTC)
CI = f"ci-pusher@{PROJECT}.iam.gserviceaccount.com"
FOREIGN = "builder@other-project.iam.gserviceaccount.com"


@pytest.fixture
def gar(registry: RunningRegistry) -> Iterator[FakeArtifactRegistry]:
    fake = FakeArtifactRegistry(registry_url=registry.url).start()
    fake.add_repository("images", description="team images")
    fake.add_repository("gcr.io")
    fake.add_repository("mirror", mode="VIRTUAL_REPOSITORY")
    fake.add_repository("jars", format="MAVEN")
    yield fake
    fake.stop()
    assert not fake.drift, "the fake answered in a shape Google does not document:\n" + "\n".join(fake.drift)


def public(fake: FakeArtifactRegistry, **extra: Any) -> dict[str, Any]:
    return {
        "project": PROJECT,
        "location": LOCATION,
        "api_url": fake.url,
        "iam_url": fake.url,
        "resource_manager_url": fake.url,
        "gcr_url": fake.url,
        **extra,
    }


def connector(fake: FakeArtifactRegistry, **extra: Any) -> ArtifactRegistryConnector:
    built = connectors.build(
        "gar", {"url": fake.url, **public(fake, **extra)}, {"service_account_key": fake.key_json()}
    )
    assert isinstance(built, ArtifactRegistryConnector)
    return built


def seed(registry: RunningRegistry) -> dict[str, im.Image]:
    pusher = registry.pusher()
    base = im.base_image("debian", version="12")
    app = im.child_image(base, {"app/main.py": b"print('hi')\n"}, base_name="docker.io/library/debian:12")
    pusher.push_image(f"{PROJECT}/images/team/app", app, tags=["1.0", "latest"])
    pusher.push_image(f"{PROJECT}/images/base/debian", base, tags=["12"])
    pusher.push_image(f"{PROJECT}/legacy", base, tags=["v1"])  # gcr.io/acme-prod/legacy
    return {"base": base, "app": app}


def bind_people(fake: FakeArtifactRegistry) -> None:
    fake.bind("images", "roles/artifactregistry.writer", "group:platform@acme.test", f"serviceAccount:{CI}")
    fake.bind("images", "roles/artifactregistry.reader", "user:ann@acme.test", "allUsers")
    fake.bind(
        "images",
        "roles/artifactregistry.repoAdmin",
        "domain:acme.test",
        condition={"expression": "request.time < timestamp('2027-01-01T00:00:00Z')", "title": "until 2027"},
    )
    fake.bind("images", "roles/artifactregistry.reader", f"serviceAccount:{FOREIGN}")
    fake.bind("gcr.io", "projects/acme-prod/roles/customPuller", "group:legacy@acme.test")
    fake.bind("project", "roles/viewer", "group:auditors@acme.test")
    fake.bind("project", "roles/artifactregistry.reader", f"serviceAccount:{ACCOUNT}")


# --- inventory -------------------------------------------------------------------------------------


def test_image_paths_tags_and_upload_times_come_from_the_rest_api(
    registry: RunningRegistry, gar: FakeArtifactRegistry
) -> None:
    images = seed(registry)
    gar.upload_times[images["app"].digest] = UPLOADED
    gar_connector = connector(gar, page_size=1)

    names = [repository.name for repository in gar_connector.repositories()]
    # Docker repositories only; the virtual one points at others; one image path per Customs repository.
    assert names == ["gcr.io/legacy", "images/base/debian", "images/team/app"]
    tags = gar_connector.tags("images/team/app")
    assert [(tag.name, tag.digest) for tag in tags] == [
        ("1.0", images["app"].digest),
        ("latest", images["app"].digest),
    ]
    assert [tag.digest for tag in gar_connector.tags("gcr.io/legacy")] == [images["base"].digest]
    # Every list was read a page (of one) at a time, following nextPageToken.
    assert sum("/dockerImages" in seen for seen in gar.requests_seen) >= 3

    artifact = gar_connector.artifact("images/team/app", images["app"].digest)
    assert artifact.pushed_at == UPLOADED
    assert artifact.last_pulled_at is None  # Artifact Registry keeps no pull time
    assert artifact.layer_digests == tuple(layer.digest for layer in images["app"].layers)  # from /v2/
    legacy = gar_connector.artifact("gcr.io/legacy", images["base"].digest)  # /v2/acme-prod/legacy
    assert legacy.digest == images["base"].digest
    assert "GET /v2/token" in gar.requests_seen  # the docker host's token realm, as oauth2accesstoken


def test_an_artifact_named_by_a_notification_gets_its_upload_time_from_dockerimages_get(
    registry: RunningRegistry, gar: FakeArtifactRegistry
) -> None:
    images = seed(registry)
    gar.upload_times[images["app"].digest] = UPLOADED
    fresh = connector(gar)  # nothing listed yet, as when a webhook arrives
    assert fresh.resolve("images/team/app", "1.0") == images["app"].digest
    assert fresh.artifact("images/team/app", images["app"].digest).pushed_at == UPLOADED
    assert any("/dockerImages/team/app@sha256:" in seen for seen in gar.requests_seen)


def test_a_tag_added_after_the_upload_makes_update_time_the_push_time(
    registry: RunningRegistry, gar: FakeArtifactRegistry
) -> None:
    images = seed(registry)
    undated = im.base_image("busybox", created="")  # its config does not say when it was built
    registry.pusher().push_image(f"{PROJECT}/images/tools/box", undated, tags=["1"])
    gar.upload_times[images["app"].digest] = UPLOADED
    gar.update_times[images["app"].digest] = UPLOADED + timedelta(days=30)  # tagged "latest" later
    gar.upload_times[images["base"].digest] = UPLOADED
    gar.update_times[images["base"].digest] = UPLOADED - timedelta(days=1)  # never before the upload
    gar_connector = connector(gar)
    gar_connector.tags("images/team/app")

    assert gar_connector.artifact("images/team/app", images["app"].digest).pushed_at == UPLOADED + timedelta(
        days=30
    )
    assert gar_connector.artifact("images/base/debian", images["base"].digest).pushed_at == UPLOADED
    # buildTime stands in for a creation time the image's config does not give.
    assert gar_connector.artifact("images/tools/box", undated.digest).created == datetime(
        2026, 1, 1, tzinfo=UTC
    )


def test_a_gcr_io_image_the_rest_api_has_no_record_of_gets_its_times_from_gcr_tags_list(
    registry: RunningRegistry, gar: FakeArtifactRegistry
) -> None:
    undated = im.base_image("busybox", created="")  # neither its config nor its annotations say when
    registry.pusher().push_image(
        f"{PROJECT}/old/tool", undated, tags=["1", "latest"]
    )  # gcr.io/acme-prod/old/tool
    gar.unrecorded.add(undated.digest)
    gar.gcr_extension = True
    gar.gcr_times[undated.digest] = ("1714644900000", "1714644930000")

    artifact = connector(gar).artifact("gcr.io/old/tool", undated.digest)

    assert artifact.pushed_at == datetime(2024, 5, 2, 10, 15, 30, tzinfo=UTC)  # timeUploadedMs
    assert artifact.created == datetime(2024, 5, 2, 10, 15, tzinfo=UTC)  # timeCreatedMs
    assert any(seen.endswith(f"/dockerImages/old/tool@{undated.digest}") for seen in gar.requests_seen)
    assert gar.requests_seen.count(f"GET /v2/{PROJECT}/old/tool/tags/list") == 1


def test_the_legacy_extension_is_read_only_when_needed_and_its_absence_is_no_error(
    registry: RunningRegistry, gar: FakeArtifactRegistry
) -> None:
    images = seed(registry)
    gar.upload_times[images["base"].digest] = UPLOADED
    gar.gcr_extension = True
    recorded = connector(gar).artifact("gcr.io/legacy", images["base"].digest)
    assert recorded.pushed_at == UPLOADED  # the REST API knew it: no tags/list read
    assert f"GET /v2/{PROJECT}/legacy/tags/list" not in gar.requests_seen

    gar.unrecorded.add(images["base"].digest)
    gar.gcr_extension = False  # the host answers as plain distribution does
    unrecorded = connector(gar).artifact("gcr.io/legacy", images["base"].digest)
    assert unrecorded.pushed_at is None
    assert unrecorded.created == recorded.created  # the image's own config still says when it was built
    assert f"GET /v2/{PROJECT}/legacy/tags/list" in gar.requests_seen


def test_legacy_epoch_milliseconds_are_parsed_strictly() -> None:
    digest = "sha256:" + "a" * 64
    good = {"timeCreatedMs": "1714644900000", "timeUploadedMs": "1714644930000"}
    assert _legacy_manifest_times({"manifest": {digest: good}})[digest].uploaded == datetime(
        2024, 5, 2, 10, 15, 30, tzinfo=UTC
    )
    for bad in (1714644930000, "-1714644930000", "1714644930000.5", "1.7e12", " 1714644930000", "", "0", None,
                "9" * 15, "9" * 40):  # fmt: skip
        times = _legacy_manifest_times({"manifest": {digest: {"timeCreatedMs": bad, "timeUploadedMs": bad}}})
        assert (times[digest].created, times[digest].uploaded) == (None, None), bad
    assert _legacy_manifest_times({"manifest": ["not", "a", "map"]}) == {}
    assert _legacy_manifest_times({"manifest": {"latest": good, digest: "not an entry"}}) == {}


@pytest.mark.django_db
def test_a_sync_records_inventory_grants_and_keys(
    registry: RunningRegistry, gar: FakeArtifactRegistry
) -> None:
    images = seed(registry)
    gar.upload_times[images["app"].digest] = UPLOADED
    bind_people(gar)
    gar.add_key(CI, "ci0001")
    saved = services.save_registry(
        Registry(name="gar-us", kind="gar", endpoint=gar.url, region=LOCATION),
        actor=None,
        public=public(gar),
        secrets={"service_account_key": gar.key_json()},
    )
    assert "private_key" not in str(saved.config)  # the key lives in the encrypted secrets only
    run = sync.sync_inventory(saved)
    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    app = Artifact.objects.get(repository__registry=saved, repository__name="images/team/app")
    assert app.pushed_at == UPLOADED
    assert (
        Grant.objects.filter(registry=saved, scope="images/**", principal_id="group:platform@acme.test")
        .get()
        .can_push
    )
    assert set(Credential.objects.filter(registry=saved).values_list("name", flat=True)) == {
        f"{CI} key ci0001",
        f"{ACCOUNT} key {gar.key_id[:12]}",
    }


# --- grants ----------------------------------------------------------------------------------------


def test_bindings_become_grants_on_the_repository_or_the_whole_project(
    registry: RunningRegistry, gar: FakeArtifactRegistry
) -> None:
    bind_people(gar)
    grants = {(g.principal.id, g.scope): g for g in connector(gar).read_grants()}

    platform = grants["group:platform@acme.test", "images/**"]
    assert (platform.principal.kind, platform.actions) == (PrincipalKind.GROUP, frozenset({"pull", "push"}))
    assert platform.principal.directory_id == ""  # an email links to nobody unless the directory uses them
    assert platform.source == "repository images: roles/artifactregistry.writer"
    assert grants["allUsers", "images/**"].principal.kind == PrincipalKind.OTHER
    domain = grants["domain:acme.test", "images/**"]
    assert domain.actions == {"pull", "push", "delete"}
    assert domain.source.endswith("if until 2027")  # conditional bindings are reported, with their condition
    assert grants[f"serviceAccount:{CI}", "images/**"].principal.kind == PrincipalKind.SERVICE_ACCOUNT
    assert grants["group:auditors@acme.test", "**"].actions == {"pull"}  # roles/viewer on the project
    assert not any(
        g.principal.id == "group:legacy@acme.test" for g in grants.values()
    )  # custom role: not read

    linked = {g.principal.id: g for g in connector(gar, directory_uses_emails=True).read_grants()}
    assert linked["group:platform@acme.test"].principal.directory_id == "platform@acme.test"


def test_an_unreadable_project_policy_says_what_to_grant(
    registry: RunningRegistry, gar: FakeArtifactRegistry
) -> None:
    gar.denied.add("projects.getIamPolicy")
    with pytest.raises(AuthError, match="resourcemanager.projects.getIamPolicy"):
        list(connector(gar).read_grants())


def test_project_grants_can_be_turned_off(registry: RunningRegistry, gar: FakeArtifactRegistry) -> None:
    bind_people(gar)
    scopes = {g.scope for g in connector(gar, read_project_policy=False).read_grants()}
    assert scopes == {"images/**"}
    assert not any(":getIamPolicy" in s and "/locations/" not in s for s in gar.requests_seen)


# --- writing grants --------------------------------------------------------------------------------


def group(email: str) -> Principal:
    return Principal(PrincipalKind.GROUP, id=email, name=email, directory_id=email)


def test_an_addition_covering_every_image_path_binds_the_smallest_role(
    registry: RunningRegistry, gar: FakeArtifactRegistry
) -> None:
    seed(registry)
    adds = tuple(
        GrantChange(ChangeOp.ADD, group("devs@acme.test"), f"images/{path}", ("pull",))
        for path in ("team/app", "base/debian")
    )
    plan = AccessPlan(registry="gar-us", additions=adds)
    gar_connector = connector(gar, directory_uses_emails=True)
    assert list(gar_connector.apply_access_plan(plan)) == list(adds)
    assert {"role": "roles/artifactregistry.reader", "members": ["group:devs@acme.test"]} in gar.policy(
        "images"
    )["bindings"]
    etag = gar.policy("images")["etag"]
    list(gar_connector.apply_access_plan(plan))  # again: nothing left to do, nothing written
    assert gar.policy("images")["etag"] == etag


def test_an_addition_for_some_image_paths_only_is_refused(
    registry: RunningRegistry, gar: FakeArtifactRegistry
) -> None:
    seed(registry)
    plan = AccessPlan(
        registry="gar-us",
        additions=(GrantChange(ChangeOp.ADD, group("devs@acme.test"), "images/team/app", ("pull", "push")),),
    )
    with pytest.raises(PermanentError, match="per repository.*images/\\*\\*"):
        list(connector(gar, directory_uses_emails=True).apply_access_plan(plan))
    assert gar.policy("images")["bindings"] == []


def test_groups_known_only_by_a_directory_id_cannot_be_bound(
    registry: RunningRegistry, gar: FakeArtifactRegistry
) -> None:
    seed(registry)
    entra = Principal(PrincipalKind.GROUP, id="6f1c0e4a-0000-4000-8000-000000000001", name="Developers")
    plan = AccessPlan(
        registry="gar-us", additions=(GrantChange(ChangeOp.ADD, entra, "images/team/app", ("pull",)),)
    )
    with pytest.raises(PermanentError, match="by email"):
        list(connector(gar).apply_access_plan(plan))


def test_taking_push_from_a_writer_leaves_a_reader_and_survives_a_concurrent_edit(
    registry: RunningRegistry, gar: FakeArtifactRegistry
) -> None:
    bind_people(gar)
    grant = next(g for g in connector(gar).read_grants() if g.principal.id == "group:platform@acme.test")
    removal = GrantChange(ChangeOp.REMOVE, grant.principal, grant.scope, ("push",), source=grant.source)
    gar.concurrent_edits = 1  # the first setIamPolicy finds the etag changed: 409, read again, retry
    assert list(connector(gar).apply_access_plan(AccessPlan("gar-us", removals=(removal,)))) == [removal]
    bindings: dict[str, list[str]] = {}
    for binding in gar.policy("images")["bindings"]:
        if "condition" not in binding:
            bindings.setdefault(binding["role"], []).extend(binding["members"])
    assert "group:platform@acme.test" not in bindings["roles/artifactregistry.writer"]
    assert "group:platform@acme.test" in bindings["roles/artifactregistry.reader"]
    assert gar.policy("images")["version"] == 3  # the conditional binding is kept, so version 3 is kept
    list(connector(gar).apply_access_plan(AccessPlan("gar-us", removals=(removal,))))  # idempotent


def test_two_concurrent_edits_in_a_row_are_transient(
    registry: RunningRegistry, gar: FakeArtifactRegistry
) -> None:
    bind_people(gar)
    removal = GrantChange(
        ChangeOp.REMOVE,
        Principal(PrincipalKind.OTHER, id="allUsers"),
        "images/**",
        ("pull",),
        source="repository images: roles/artifactregistry.reader",
    )
    gar.concurrent_edits = 2
    with pytest.raises(TransientError, match="kept changing"):
        list(connector(gar).apply_access_plan(AccessPlan("gar-us", removals=(removal,))))


def test_basic_project_roles_are_never_edited(registry: RunningRegistry, gar: FakeArtifactRegistry) -> None:
    bind_people(gar)
    viewer = next(g for g in connector(gar).read_grants() if g.scope == "**" and "viewer" in g.source)
    removal = GrantChange(ChangeOp.REMOVE, viewer.principal, "**", ("pull",), source=viewer.source)
    with pytest.raises(PermanentError, match="does not edit roles/viewer"):
        list(connector(gar).apply_access_plan(AccessPlan("gar-us", removals=(removal,))))


# --- credentials -----------------------------------------------------------------------------------


def test_keys_of_bound_service_accounts_with_unknown_use_and_never_or_unknown_expiry(
    registry: RunningRegistry, gar: FakeArtifactRegistry
) -> None:
    bind_people(gar)
    gar.add_key(CI, "ci0001", validBeforeTime="2026-12-31T00:00:00Z")
    gar.add_key(CI, "ci0002", validBeforeTime=None, disabled=True)
    gar.add_key(CI, "sys0001", keyType="SYSTEM_MANAGED", validBeforeTime="2026-02-01T00:00:00Z")
    credentials = {c.name: c for c in connector(gar).read_credentials()}

    assert set(credentials) == {f"{CI} key ci0001", f"{CI} key ci0002", f"{ACCOUNT} key {gar.key_id[:12]}"}
    expiring = credentials[f"{CI} key ci0001"]
    assert expiring.expires_at == datetime(2026, 12, 31, tzinfo=UTC)
    assert expiring.created_at == datetime(2026, 1, 5, 10, tzinfo=UTC)
    assert (expiring.usage_known, expiring.last_used_at) == (False, None)  # IAM does not say
    assert expiring.owner == Principal(PrincipalKind.SERVICE_ACCOUNT, id=f"serviceAccount:{CI}", name=CI)
    assert expiring.scopes == ("images: roles/artifactregistry.writer",)
    unknown = credentials[f"{CI} key ci0002"]
    assert (unknown.expires_at, unknown.expiry_known, unknown.enabled) == (None, False, False)
    never = credentials[f"{ACCOUNT} key {gar.key_id[:12]}"]
    assert (never.expires_at, never.expiry_known) == (None, True)  # 9999-12-31: never expires
    # What a key may do is its account's predefined roles, from the policies already read; no use is known.
    assert (expiring.actions, never.actions) == (frozenset({"pull", "push"}), frozenset({"pull"}))
    assert (expiring.actions_seen, expiring.actions_seen_source) == ({}, "")
    # The other project's account was tried and skipped: it is not ours to list.
    assert any(FOREIGN in seen for seen in gar.requests_seen)


def test_disabling_a_key_is_idempotent(registry: RunningRegistry, gar: FakeArtifactRegistry) -> None:
    key = gar.add_key(CI, "ci0001")
    gar_connector = connector(gar)
    gar_connector.disable_credential(key["name"])
    assert gar.accounts[CI][0]["disabled"] is True
    gar_connector.disable_credential(key["name"])  # already disabled: success, no second POST
    assert sum(seen.endswith(":disable") for seen in gar.requests_seen) == 1
    gar_connector.disable_credential(f"projects/{PROJECT}/serviceAccounts/{CI}/keys/gone")  # deleted: success
    with pytest.raises(ConfigError):
        gar_connector.disable_credential("not-a-key")


# --- failures and permissions ----------------------------------------------------------------------


def test_resource_exhausted_is_rate_limited(registry: RunningRegistry, gar: FakeArtifactRegistry) -> None:
    gar_connector = connector(gar)
    gar_connector.check()
    gar.fail_next.append(google_error(429, "RESOURCE_EXHAUSTED", "Quota exceeded"))
    with pytest.raises(RateLimited, match="RESOURCE_EXHAUSTED"):
        list(gar_connector.repositories())
    answer = google_error(429, "RESOURCE_EXHAUSTED", "Quota exceeded")
    answer.headers["Retry-After"] = "30"
    gar.fail_next.append(answer)
    with pytest.raises(RateLimited) as raised:
        list(gar_connector.repositories())
    assert raised.value.retry_after == 30


def test_an_expired_access_token_is_renewed_once(
    registry: RunningRegistry, gar: FakeArtifactRegistry
) -> None:
    seed(registry)
    gar_connector = connector(gar)
    gar_connector.check()
    assert gar.token_requests == 1
    gar.expire_tokens()  # revoked early: the client still thinks it valid
    assert len(list(gar_connector.repositories())) == 3
    assert gar.token_requests == 2


def test_permission_denied_and_a_refused_key_are_auth_errors(
    registry: RunningRegistry, gar: FakeArtifactRegistry
) -> None:
    gar.denied.add("repositories.list")
    with pytest.raises(AuthError, match="403 PERMISSION_DENIED"):
        connector(gar).check()
    gar.denied.clear()
    gar.key_refused = True  # the key was deleted or disabled in IAM
    with pytest.raises(AuthError, match="refused the service-account key"):
        connector(gar).check()


WRITES = (
    "artifactregistry.repositories.setIamPolicy",
    "resourcemanager.projects.setIamPolicy",
    "iam.serviceAccountKeys.disable",
)


def test_the_form_states_least_privilege_reads_first_then_optional_writes() -> None:
    needs = ArtifactRegistryConnector.needs
    reads, writes = needs[:4], needs[4:]
    assert not any(need.startswith("optional") for need in reads)
    assert all(need.startswith("optional") for need in writes)
    # Reading keys needs iam.serviceAccountKeys.list, not a role that can also disable and delete them.
    assert "iam.serviceAccountKeys.list" in reads[3]
    assert not any("serviceAccountKeyAdmin" in need or "disable" in need for need in reads)
    assert [permission for permission in WRITES if any(permission in need for need in writes)] == list(WRITES)


def test_check_permissions_reads_for_real_and_asks_testiampermissions_for_the_writes(
    registry: RunningRegistry, gar: FakeArtifactRegistry
) -> None:
    seed(registry)
    gar.lacking.add("iam.serviceAccountKeys.disable")
    gar.denied.add("keys.list")
    checks = connector(gar).check_permissions()
    assert [c.permission for c in checks] == list(ArtifactRegistryConnector.needs)
    assert [(c.ok, c.required, c.tried) for c in checks] == [
        (True, True, True),
        (True, True, True),
        (True, True, True),
        (False, True, True),  # keys.list answered 403
        (True, False, True),
        (True, False, True),
        (False, False, True),
    ]
    assert "iam.serviceAccountKeys.disable is not granted" in checks[6].detail
    # setIamPolicy asked of a repository, the project-wide writes of the project: nothing was written.
    assert f"POST /v1/projects/{PROJECT}/locations/{LOCATION}/repositories/gcr.io:testIamPermissions" in (
        gar.requests_seen
    )
    assert f"POST /v1/projects/{PROJECT}:testIamPermissions" in gar.requests_seen
    assert not any(":setIamPolicy" in seen or ":disable" in seen for seen in gar.requests_seen)


@pytest.mark.django_db
def test_a_read_only_account_passes_test_connection(
    registry: RunningRegistry, gar: FakeArtifactRegistry
) -> None:
    seed(registry)
    gar.lacking.update(WRITES)  # roles/artifactregistry.reader and roles/iam.securityReviewer only
    saved = services.save_registry(
        Registry(name="gar-read-only", kind="gar", endpoint=gar.url, region=LOCATION),
        actor=None,
        public=public(gar),
        secrets={"service_account_key": gar.key_json()},
    )
    result = services.check_connection(saved)
    assert result.ok, result.reason
    assert "3 write permissions are missing" in result.reason
    assert [step.ok for step in result.steps if step.required] == [True, True, True, True]
    assert [(step.ok, step.tried) for step in result.steps if not step.required] == [(False, True)] * 3

    gar.denied.add("projects.getIamPolicy")  # a read missing is still a failure
    assert not services.check_connection(saved).ok


def test_an_empty_project_is_asked_about_repository_permissions_on_the_project(
    registry: RunningRegistry, gar: FakeArtifactRegistry
) -> None:
    for repo in list(gar.repositories):
        del gar.repositories[repo]
    gar.lacking.add("artifactregistry.repositories.getIamPolicy")
    checks = connector(gar).check_permissions()
    assert [c.ok for c in checks] == [True, False, True, True, True, True, True]
    assert f"not granted on project {PROJECT}" in checks[1].detail
    assert not any("/repositories/" in seen and "testIamPermissions" in seen for seen in gar.requests_seen)


def test_writes_testiampermissions_cannot_answer_are_not_tried(
    registry: RunningRegistry, gar: FakeArtifactRegistry
) -> None:
    seed(registry)
    gar.denied.add("projects.testIamPermissions")
    writes = connector(gar).check_permissions()[4:]
    assert [(c.ok, c.required, c.tried) for c in writes] == [(False, False, False)] * 3
    assert "not tried" in writes[0].detail


def test_the_key_must_be_a_service_account_key_and_is_never_echoed(gar: FakeArtifactRegistry) -> None:
    with pytest.raises(ConfigError, match="service_account_key") as raised:
        connectors.config_for(
            "gar",
            {"project": PROJECT, "location": LOCATION},
            {"service_account_key": '{"type": "authorized_user", "secret": "s3cr3t"}'},
        )
    assert "s3cr3t" not in str(raised.value)
    config = connectors.config_for(
        "gar",
        {"project": PROJECT, "location": "europe-west1"},
        {"service_account_key": gar.key_json()},
    )
    assert config.public()["url"] == "https://europe-west1-docker.pkg.dev"  # the real default
    assert config.public()["api_url"] == "https://artifactregistry.googleapis.com"
    assert config.public()["push_certs_url"] == "https://www.googleapis.com/oauth2/v1/certs"


def test_the_push_service_account_is_an_email(gar: FakeArtifactRegistry) -> None:
    key = {"service_account_key": gar.key_json()}
    named = connectors.config_for(
        "gar",
        {
            "project": PROJECT,
            "location": LOCATION,
            "push_service_account": " Push@P.iam.gserviceaccount.com ",
        },
        key,
    )
    assert named.public()["push_service_account"] == "push@p.iam.gserviceaccount.com"
    with pytest.raises(ConfigError, match="push_service_account"):
        connectors.config_for(
            "gar", {"project": PROJECT, "location": LOCATION, "push_service_account": "push"}, key
        )


def test_a_fake_answer_google_would_never_send_fails_the_test(
    registry: RunningRegistry, gar: FakeArtifactRegistry
) -> None:
    seed(registry)
    gar.mutate = lambda body: (
        {
            **body,
            "dockerImages": [{**i, "imageSizeBytes": int(i["imageSizeBytes"])} for i in body["dockerImages"]],
        }
        if "dockerImages" in body
        else body
    )
    with pytest.raises(TransientError, match="500"):
        connector(gar).tags("images/team/app")
    assert "is not of type 'string'" in gar.drift[0]  # int64 is a JSON string in Google's APIs
    gar.drift.clear()  # seen; the fixture would otherwise fail this test for it


def test_a_domain_scoped_project_is_a_path_of_two_segments_in_docker_names(
    gar: FakeArtifactRegistry,
) -> None:
    scoped = connector(gar, project="example.com:tools")

    assert scoped._docker_path("images/team/app") == (gar.url, "example.com/tools/images/team/app")
    assert scoped._docker_path("gcr.io/legacy")[1] == "example.com/tools/legacy"
    assert connector(gar)._docker_path("images/team/app")[1] == f"{PROJECT}/images/team/app"
