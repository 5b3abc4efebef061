"""Posture checks: each kind's connector against its fake (or real registry), failing and passing;
then storing, findings opening and resolving, the score and the daily snapshot.

The fakes answer posture reads only in shapes their vendor's description allows (tests/fakes/*).
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from botocore.stub import Stubber
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from django.utils import timezone
from pydantic import SecretStr

from portal import findings
from portal.models import Finding
from registries import connectors, posture, services, sync
from registries.connectors.acr import AcrConnector, AcrTokenConnector, admin_user_fact, anonymous_pull_fact
from registries.connectors.artifact_registry import ArtifactRegistryConnector
from registries.connectors.base import (
    Capability,
    PostureCheck,
    PostureFact,
    PostureState,
    can_read_posture,
)
from registries.connectors.distribution import DistributionConfig, DistributionConnector
from registries.connectors.dockerhub import DockerHubConnector
from registries.connectors.harbor import HarborConnector, _doublestar
from registries.connectors.quay import QuayConnector
from registries.demo import images as im
from registries.models import PostureFact as FactRow
from registries.models import PostureSnapshot, Registry, SyncRun
from tests import factories
from tests.fakes.acr import FakeAcr
from tests.fakes.artifact_registry import LOCATION, PROJECT, FakeArtifactRegistry
from tests.fakes.aws import (
    aws_answers_fixture,  # noqa: F401  (autouse: checks every AWS answer in this module)
    client,
    moto_fixture,  # noqa: F401
    moto_server_fixture,  # noqa: F401
)
from tests.fakes.dockerhub import FakeDockerHub, Member
from tests.fakes.harbor import FakeHarbor
from tests.fakes.quay import FakeQuay
from tests.registries.conftest import StartRegistry
from tests.registries.harness import PUSHER, PUSHER_PASSWORD, Grant, RunningRegistry, TokenServer
from tests.registries.test_ecr import connector as ecr_connector

OK, FAILING, UNKNOWN = PostureState.OK, PostureState.FAILING, PostureState.UNKNOWN
USED = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)


def facts_of(facts: list[PostureFact]) -> dict[tuple[str, str], PostureFact]:
    """(check, subject) → fact; a connector reports each once."""
    found = {(str(f.check), f.subject): f for f in facts}
    assert len(found) == len(facts), "a check was reported twice for one subject"
    return found


def states(facts: list[PostureFact]) -> dict[tuple[str, str], str]:
    return {key: str(fact.state) for key, fact in facts_of(facts).items()}


def push(registry: RunningRegistry, *names: str, tags: tuple[str, ...] = ("1.0",)) -> None:
    pusher = registry.pusher()
    image = im.base_image("posture")
    for name in names:
        pusher.push_image(name, image, tags=list(tags))


# --- every connector ------------------------------------------------------------------------------


def test_every_kind_reads_posture_and_the_acr_token_variant_does_not() -> None:
    for kind, connector_class in connectors.CONNECTORS.items():
        assert Capability.POSTURE in connector_class.capabilities, kind
        assert callable(getattr(connector_class, "read_posture", None)), kind
    assert Capability.POSTURE not in AcrTokenConnector.capabilities  # no ARM with an ACR token
    assert not can_read_posture(object())


# --- docker distribution: probed as a stranger ------------------------------------------------------


def distribution(registry: RunningRegistry) -> DistributionConnector:
    user, password = registry.credentials or (None, None)
    secret = SecretStr(password) if password else None
    return DistributionConnector(DistributionConfig(url=registry.url, username=user, password=secret))


def test_distribution_without_authentication_lets_anyone_pull(registry: RunningRegistry) -> None:
    push(registry, "prod/api", "team/app")
    found = states(list(distribution(registry).read_posture(["prod/api"])))
    assert found == {
        ("anonymous_pull", ""): FAILING,
        ("sso_not_enforced", ""): FAILING,
        ("tag_mutable", "prod/api"): FAILING,  # distribution has no immutable tags at all
    }


def test_distribution_behind_a_password_file_is_closed_but_outside_the_directory(
    basic_registry: RunningRegistry,
) -> None:
    push(basic_registry, "team/app")
    found = facts_of(list(distribution(basic_registry).read_posture()))
    assert found["anonymous_pull", ""].state == OK
    assert found["sso_not_enforced", ""].state == FAILING
    assert "Basic authentication" in found["sso_not_enforced", ""].evidence
    assert found["anonymous_pull", ""].evidence_url == f"{basic_registry.url}/v2/"


@pytest.mark.parametrize(
    ("anonymous", "expected"), [((), OK), ((Grant("repository", "*", frozenset({"pull"})),), FAILING)]
)
def test_distribution_token_auth_is_tried_with_an_anonymous_token(
    start_registry: StartRegistry, tmp_path: Path, anonymous: tuple[Grant, ...], expected: str
) -> None:
    server = TokenServer(tmp_path, anonymous=anonymous)
    try:
        running = start_registry(auth="token", token_server=server)
        push(running, "team/app")
        connector = DistributionConnector(
            DistributionConfig(url=running.url, username=PUSHER, password=SecretStr(PUSHER_PASSWORD))
        )
        found = facts_of(list(connector.read_posture()))
    finally:
        server.stop()
    assert found["anonymous_pull", ""].state == expected
    assert found["sso_not_enforced", ""].state == UNKNOWN  # a token realm: whose, Customs cannot tell here
    assert any(request.user is None for request in server.requests)  # the stranger did ask


# --- Harbor -------------------------------------------------------------------------------------------


def harbor_connector(fake: FakeHarbor, **public: Any) -> HarborConnector:
    built = connectors.build(
        "harbor", {"url": fake.url, "username": fake.username, **public}, {"password": fake.password}
    )
    assert isinstance(built, HarborConnector)
    return built


def test_harbor_settings_that_fail(registry: RunningRegistry, harbor: FakeHarbor) -> None:
    push(registry, "prod/api", "prod/web", "team/app")
    harbor.public = {"team"}
    harbor.project_metadata = {"prod": {"auto_scan": "true"}}
    harbor.immutable("prod", repositories="api")
    harbor.immutable("prod", repositories="**", disabled=True)  # a disabled rule covers nothing
    harbor.system_info["self_registration"] = True
    harbor.log("admin", USED, "create")

    found = facts_of(list(harbor_connector(harbor).read_posture(["prod/api", "prod/web"])))

    assert found["sso_not_enforced", ""].state == FAILING
    assert "db_auth" in found["sso_not_enforced", ""].evidence
    assert "register" in found["sso_not_enforced", ""].evidence
    assert found["admin_account", "admin"].state == FAILING
    assert "2026-11-02" in found["admin_account", "admin"].evidence
    assert found["public_repository", "team/**"].state == FAILING
    assert found["public_repository", "prod/**"].state == OK
    assert found["scan_on_push_off", "prod/**"].state == OK
    assert found["scan_on_push_off", "team/**"].state == FAILING
    assert found["tag_mutable", "prod/api"].state == OK
    assert found["tag_mutable", "prod/web"].state == FAILING
    assert found["tag_mutable", "prod/web"].evidence_url.endswith("/api/v2.0/projects/prod/immutabletagrules")
    assert ("tag_mutable", "team/app") not in found  # not a production repository


def test_harbor_settings_that_pass(registry: RunningRegistry, harbor: FakeHarbor) -> None:
    push(registry, "prod/api")
    harbor.system_info["auth_mode"] = "oidc_auth"
    harbor.project_metadata = {"prod": {"auto_scan": "true"}}
    harbor.immutable("prod", repositories="{api,web}", tags="v*")
    harbor.log("robot$customs", USED)  # someone else's use: not the admin's

    found = states(list(harbor_connector(harbor).read_posture(["prod/api"])))

    assert found == {
        ("sso_not_enforced", ""): OK,
        ("admin_account", "admin"): OK,
        ("public_repository", "prod/**"): OK,
        ("scan_on_push_off", "prod/**"): OK,
        ("tag_mutable", "prod/api"): OK,
    }


def test_harbor_says_unknown_where_it_cannot_read(registry: RunningRegistry, harbor: FakeHarbor) -> None:
    harbor.forbidden = {"GET /auditlog-exts", "GET /audit-logs"}
    harbor.system_info = {}
    found = facts_of(list(harbor_connector(harbor).read_posture()))
    assert found["admin_account", "admin"].state == UNKNOWN
    assert found["sso_not_enforced", ""].state == UNKNOWN


def test_customs_signing_in_as_harbors_admin_is_itself_the_finding(harbor: FakeHarbor) -> None:
    harbor.username = "admin"
    found = facts_of(list(harbor_connector(harbor).read_posture()))
    assert found["admin_account", "admin"].state == FAILING
    assert "Customs itself" in found["admin_account", "admin"].evidence


def test_harbor_doublestar_selectors() -> None:
    assert _doublestar("**").fullmatch("a/b/c")
    assert _doublestar("team/*").fullmatch("team/app")
    assert not _doublestar("team/*").fullmatch("team/app/x")
    assert _doublestar("{api,web}").fullmatch("web")
    assert not _doublestar("{api,web}").fullmatch("db")
    assert not _doublestar("a.b").fullmatch("axb")  # dots are literal


# --- Quay ---------------------------------------------------------------------------------------------


@pytest.fixture
def quay(registry: RunningRegistry) -> Iterator[FakeQuay]:
    fake = FakeQuay(registry_url=registry.url).start()
    yield fake
    fake.stop()
    assert not fake.drift, "the fake answered in a shape §10 does not document:\n" + "\n".join(fake.drift)


def quay_connector(fake: FakeQuay) -> QuayConnector:
    public = {"url": fake.url, "namespaces": "acme", "registry_username": fake.robot_name}
    built = connectors.build("quay", public, {"token": fake.token, "registry_password": fake.robot_token})
    assert isinstance(built, QuayConnector)
    return built


def test_quay_visibility_and_tag_immutability(registry: RunningRegistry, quay: FakeQuay) -> None:
    push(registry, "acme/app", "acme/worker", "acme/tools", tags=("1.0", "latest"))
    quay.public = {"acme/tools"}
    quay.tag_immutability = {"acme/app": {"1.0", "latest"}, "acme/worker": {"1.0"}}

    found = facts_of(list(quay_connector(quay).read_posture(["acme/app", "acme/worker", "acme/tools"])))

    assert found["public_repository", "acme/tools"].state == FAILING
    assert found["public_repository", "acme/app"].state == OK
    assert found["tag_mutable", "acme/app"].state == OK
    assert found["tag_mutable", "acme/worker"].state == FAILING
    assert "latest" in found["tag_mutable", "acme/worker"].evidence
    assert found["tag_mutable", "acme/tools"].state == UNKNOWN  # its tags carry no `immutable` flag
    assert found["sso_not_enforced", ""].state == UNKNOWN  # instance configuration, not in the API


# --- Docker Hub ---------------------------------------------------------------------------------------


@pytest.fixture
def hub(registry: RunningRegistry) -> Iterator[FakeDockerHub]:
    fake = FakeDockerHub(registry_url=registry.url).start()
    yield fake
    fake.stop()
    assert not fake.drift, "the fake answered in a shape Docker Hub does not use:\n" + "\n".join(fake.drift)


def hub_connector(fake: FakeDockerHub) -> DockerHubConnector:
    public = {"url": fake.url, "registry_url": fake.url, "namespace": "acme", "username": fake.username}
    built = connectors.build("dockerhub", public, {"token": fake.token})
    assert isinstance(built, DockerHubConnector)
    return built


def test_dockerhub_public_repositories_immutable_tags_and_guests(
    registry: RunningRegistry, hub: FakeDockerHub
) -> None:
    push(registry, "acme/app", "acme/worker", "acme/tools")
    hub.public = {"acme/tools"}
    hub.immutable_tags = {"acme/app": [r"v\d+.*"]}
    hub.members["guest"] = Member("guest", "guest@partner.example", is_guest=True)
    hub.audit_logs.append(
        {
            "account": "acme",
            "action": "sso.connection.enforcement_toggle",
            "name": "acme",
            "actor": "owner-ann",
            "data": {},
            "timestamp": "2026-10-01T08:00:00Z",
            "action_description": "toggled SSO enforcement",
        }
    )

    found = facts_of(list(hub_connector(hub).read_posture(["acme/app", "acme/worker"])))

    assert found["public_repository", "acme/tools"].state == FAILING
    assert found["public_repository", "acme/app"].state == OK
    assert found["tag_mutable", "acme/app"].state == OK
    assert found["tag_mutable", "acme/worker"].state == FAILING
    assert found["members_without_sso", "member guest"].state == FAILING
    assert ("members_without_sso", "") not in found
    sso = found["sso_not_enforced", ""]
    assert sso.state == UNKNOWN  # the Hub API does not say
    assert "2026-10-01T08:00:00Z by owner-ann" in sso.evidence


def test_dockerhub_without_guests_passes_the_member_check(
    registry: RunningRegistry, hub: FakeDockerHub
) -> None:
    push(registry, "acme/app")
    hub.add_team("devs", ["bob", "carol"], app="write")
    found = facts_of(list(hub_connector(hub).read_posture()))
    assert found["members_without_sso", ""].state == OK
    assert "none of 3 members" in found["members_without_sso", ""].evidence
    assert "no change to SSO enforcement" in found["sso_not_enforced", ""].evidence


# --- AWS ECR ------------------------------------------------------------------------------------------


def test_ecr_scan_on_push_public_policies_and_tag_mutability(moto: str) -> None:
    ecr = client("ecr", moto)
    ecr.create_repository(
        repositoryName="prod/api",
        imageTagMutability="IMMUTABLE",
        imageScanningConfiguration={"scanOnPush": True},
    )
    ecr.create_repository(repositoryName="prod/web", imageTagMutability="MUTABLE")
    ecr.create_repository(repositoryName="team/app")
    ecr.put_registry_scanning_configuration(
        scanType="BASIC",
        rules=[
            {
                "scanFrequency": "SCAN_ON_PUSH",
                "repositoryFilters": [{"filter": "team/*", "filterType": "WILDCARD"}],
            }
        ],
    )
    everyone_pulls = {
        "Version": "2012-10-17",
        "Statement": [{"Sid": "open", "Effect": "Allow", "Principal": "*", "Action": ["ecr:BatchGetImage"]}],
    }
    ecr.set_repository_policy(repositoryName="team/app", policyText=json.dumps(everyone_pulls))

    found = facts_of(list(ecr_connector(moto).read_posture(["prod/api", "prod/web"])))

    assert found["scan_on_push_off", "prod/api"].state == OK  # the repository's own setting
    assert found["scan_on_push_off", "team/app"].state == OK  # the registry's rule
    assert found["scan_on_push_off", "prod/web"].state == FAILING
    assert found["public_repository", "team/app"].state == FAILING
    assert "statement open" in found["public_repository", "team/app"].evidence
    assert found["public_repository", "prod/api"].state == OK
    assert found["tag_mutable", "prod/api"].state == OK
    assert found["tag_mutable", "prod/web"].state == FAILING
    assert ("tag_mutable", "team/app") not in found
    assert found["admin_account", "root"].state == OK  # moto's root has no access keys
    assert "ecr/repositories/private/" in found["tag_mutable", "prod/web"].evidence_url


def test_ecr_root_access_keys_fail_the_admin_check(moto: str) -> None:
    connector = ecr_connector(moto)
    with Stubber(connector._iam) as stub:
        stub.add_response(
            "get_account_summary", {"SummaryMap": {"AccountAccessKeysPresent": 1, "AccountMFAEnabled": 0}}
        )
        fact = connector._root_keys_fact()
    assert fact.state == FAILING
    assert "without MFA" in fact.evidence


def test_a_policy_open_to_everyone_under_a_condition_is_not_public() -> None:
    from registries.connectors.ecr import _public_fact

    statement = {
        "Effect": "Allow",
        "Principal": {"AWS": "*"},
        "Action": "ecr:*",
        "Condition": {"StringEquals": {"aws:PrincipalOrgID": "o-123"}},
    }
    assert _public_fact("a", {"Statement": [statement]}, "").state == OK
    assert _public_fact("a", {"Statement": [{**statement, "Condition": {}}]}, "").state == FAILING


# --- Azure Container Registry -------------------------------------------------------------------------


@pytest.fixture
def acr(registry: RunningRegistry, settings: Any) -> Iterator[FakeAcr]:
    fake = FakeAcr(registry_url=registry.url).start()
    settings.OUTBOUND_CA_BUNDLE = fake.ca_bundle
    yield fake
    fake.stop()
    assert not fake.drift, "the fake answered in a shape ACR does not use:\n" + "\n".join(fake.drift)


def acr_connector(fake: FakeAcr) -> AcrConnector:
    built = connectors.build("acr", fake.public_config(), {"client_secret": fake.client_secret})
    assert isinstance(built, AcrConnector)
    return built


def test_acr_admin_user_anonymous_pull_and_locked_tags(registry: RunningRegistry, acr: FakeAcr) -> None:
    push(registry, "prod/api", "prod/web", tags=("1.0", "latest"))
    acr.admin_user_enabled = True
    acr.locked_tags = {("prod/api", "1.0"), ("prod/api", "latest"), ("prod/web", "1.0")}

    found = facts_of(list(acr_connector(acr).read_posture(["prod/api", "prod/web"])))

    assert found["acr_admin_user", ""].state == FAILING
    # ARM's 2023-07-01 answer (the example the fake follows) has no anonymousPullEnabled.
    assert found["anonymous_pull", ""].state == UNKNOWN
    assert found["tag_mutable", "prod/api"].state == OK
    assert found["tag_mutable", "prod/web"].state == FAILING
    assert "latest" in found["tag_mutable", "prod/web"].evidence

    acr.admin_user_enabled = False
    assert facts_of(list(acr_connector(acr).read_posture()))["acr_admin_user", ""].state == OK


def test_acr_properties_as_newer_api_versions_report_them() -> None:
    assert anonymous_pull_fact({"anonymousPullEnabled": True}, "u").state == FAILING
    assert anonymous_pull_fact({"anonymousPullEnabled": False}, "u").state == OK
    assert admin_user_fact({}, "u").state == UNKNOWN


# --- Google Artifact Registry -------------------------------------------------------------------------


@pytest.fixture
def gar(registry: RunningRegistry) -> Iterator[FakeArtifactRegistry]:
    fake = FakeArtifactRegistry(registry_url=registry.url).start()
    yield fake
    fake.stop()
    assert not fake.drift, "the fake answered in a shape Google does not document:\n" + "\n".join(fake.drift)


def gar_connector(fake: FakeArtifactRegistry, **extra: Any) -> ArtifactRegistryConnector:
    public = {
        "url": fake.url,
        "project": PROJECT,
        "location": LOCATION,
        "api_url": fake.url,
        "iam_url": fake.url,
        "resource_manager_url": fake.url,
        "gcr_url": fake.url,
        **extra,
    }
    built = connectors.build("gar", public, {"service_account_key": fake.key_json()})
    assert isinstance(built, ArtifactRegistryConnector)
    return built


def test_gar_public_bindings_scanning_and_immutable_tags(gar: FakeArtifactRegistry) -> None:
    gar.add_repository(
        "images",
        dockerConfig={"immutableTags": True},
        vulnerabilityScanningConfig={"enablementState": "SCANNING_ACTIVE"},
    )
    gar.add_repository("open", vulnerabilityScanningConfig={"enablementState": "SCANNING_DISABLED"})
    gar.add_repository("quiet")
    gar.bind("open", "roles/artifactregistry.reader", "allUsers")
    gar.bind("images", "roles/artifactregistry.writer", "group:platform@acme.test")
    gar.bind("project", "roles/artifactregistry.reader", "allAuthenticatedUsers")

    found = facts_of(list(gar_connector(gar).read_posture(["images/prod/api", "open/prod/api"])))

    assert found["public_repository", "open/**"].state == FAILING
    assert "allUsers (anyone on the internet)" in found["public_repository", "open/**"].evidence
    assert found["public_repository", "images/**"].state == OK
    assert found["scan_on_push_off", "images/**"].state == OK
    assert found["scan_on_push_off", "open/**"].state == FAILING
    assert found["scan_on_push_off", "quiet/**"].state == UNKNOWN
    assert found["tag_mutable", "images/prod/api"].state == OK
    assert found["tag_mutable", "open/prod/api"].state == FAILING
    assert found["anonymous_pull", ""].state == FAILING  # any Google account, on the whole project


def test_gar_without_the_project_policy_cannot_tell_registry_wide_access(gar: FakeArtifactRegistry) -> None:
    gar.add_repository("images")
    found = facts_of(list(gar_connector(gar, read_project_policy=False).read_posture()))
    assert found["anonymous_pull", ""].state == UNKNOWN
    found = facts_of(list(gar_connector(gar).read_posture()))
    assert found["anonymous_pull", ""].state == OK


# --- production repositories ----------------------------------------------------------------------


def test_production_repositories_follow_the_setting(settings: Any) -> None:
    names = ["prod/api", "prod/web/x", "team/app", "production"]
    assert posture.production_repositories(names) == ["prod/api", "prod/web/x"]  # the default, prod/**
    settings.POSTURE_PRODUCTION_REPOSITORIES = ["team/*", "production"]
    assert posture.production_repositories(names) == ["production", "team/app"]
    settings.POSTURE_PRODUCTION_REPOSITORIES = ["Prod/**"]
    with pytest.raises(ImproperlyConfigured, match="lowercase"):
        posture.production_repositories(names)


# --- storing, findings, score, snapshots ----------------------------------------------------------


def fact(
    check: PostureCheck, state: PostureState, subject: str = "", evidence: str = "said so"
) -> PostureFact:
    return PostureFact(check, state, evidence, subject, "https://registry.example.test/evidence")


@pytest.mark.django_db
def test_passing_subjects_are_kept_as_one_counted_row() -> None:
    registry = factories.registry()
    stored = posture.store_facts(
        registry,
        None,
        [
            fact(PostureCheck.PUBLIC_REPOSITORY, OK, "a/one"),
            fact(PostureCheck.PUBLIC_REPOSITORY, OK, "a/two"),
            fact(PostureCheck.PUBLIC_REPOSITORY, OK, "a/three"),
            fact(PostureCheck.PUBLIC_REPOSITORY, FAILING, "a/open"),
            fact(PostureCheck.ANONYMOUS_PULL, OK),
        ],
    )
    assert stored == 3
    rows = {(r.check_name, r.state, r.subject): r for r in FactRow.objects.filter(registry=registry)}
    assert rows["public_repository", "ok", ""].count == 3
    assert "a/one" in rows["public_repository", "ok", ""].evidence
    assert rows["public_repository", "failing", "a/open"].count == 1
    assert rows["anonymous_pull", "ok", ""].count == 1


@pytest.mark.django_db
def test_findings_open_for_failing_facts_and_resolve_when_they_pass() -> None:
    registry, other = factories.registry(), factories.registry()
    posture.store_facts(other, None, [fact(PostureCheck.ANONYMOUS_PULL, FAILING)])
    posture.evaluate(other)
    posture.store_facts(
        registry,
        None,
        [
            fact(PostureCheck.ANONYMOUS_PULL, FAILING, evidence="GET /v2/ answers"),
            fact(PostureCheck.PUBLIC_REPOSITORY, FAILING, "team/app"),
            fact(PostureCheck.TAG_MUTABLE, UNKNOWN, "prod/api"),  # unknown opens nothing
        ],
    )
    result = posture.evaluate(registry)
    assert result.by_kind["posture_anonymous_pull"].opened == 1
    opened = Finding.objects.filter(scope=f"registry-{registry.pk}", resolved_at=None)
    assert sorted(opened.values_list("kind", flat=True)) == [
        "posture_anonymous_pull",
        "posture_public_repository",
    ]
    public = opened.get(kind="posture_public_repository")
    assert public.severity == "medium"
    assert public.summary == f"{registry.name}: team/app: said so"
    assert public.detail["evidence_url"] == "https://registry.example.test/evidence"
    assert public.key == findings.finding_key(
        posture.KINDS[PostureCheck.PUBLIC_REPOSITORY], f"registry-{registry.pk}/team/app"
    )

    posture.store_facts(registry, None, [fact(PostureCheck.ANONYMOUS_PULL, OK)])
    result = posture.evaluate(registry)
    assert result.by_kind["posture_anonymous_pull"].resolved == 1
    assert result.by_kind["posture_public_repository"].resolved == 1
    assert not Finding.objects.filter(scope=f"registry-{registry.pk}", resolved_at=None).exists()
    # The other registry's finding is its own: evaluating this one left it open.
    assert Finding.objects.filter(scope=f"registry-{other.pk}", resolved_at=None).count() == 1


@pytest.mark.django_db
def test_a_registry_behind_customs_token_server_enforces_sso() -> None:
    registry = factories.registry(token_service="customs-posture-test")
    posture.store_facts(registry, None, [fact(PostureCheck.SSO_NOT_ENFORCED, UNKNOWN)])
    row = FactRow.objects.get(registry=registry)
    assert (row.state, "Customs is this registry's token server" in row.evidence) == ("ok", True)


def test_the_score_weighs_each_checks_passing_share_by_severity() -> None:
    by_check = {
        "anonymous_pull": posture.Tally(failing=1),  # high, 4: nothing passes
        "public_repository": posture.Tally(ok=3, failing=1),  # medium, 2: three quarters pass
        "tag_mutable": posture.Tally(unknown=5),  # nothing known: left out
    }
    assert posture.score(by_check) == 25  # (4 × 0 + 2 × 0.75) / (4 + 2)
    assert posture.score({"tag_mutable": posture.Tally(unknown=1)}) is None
    assert posture.score({"no_expiry": posture.Tally(ok=1), "anonymous_pull": posture.Tally(ok=1)}) == 100


@pytest.mark.django_db
def test_credentials_without_expiry_are_counted_and_left_to_hygiene() -> None:
    registry = factories.registry()
    for _ in range(2):
        factories.registry_credential(registry, expiry_known=True, expires_at=None)
    factories.registry_credential(registry, expires_at=timezone.now() + timedelta(days=30))
    factories.registry_credential(registry, expiry_known=False)
    factories.registry_credential(registry, expiry_known=True, enabled=False)  # disabled: not counted
    factories.registry_credential(registry, expiry_known=True, gone_at=timezone.now())  # gone: not counted

    result = posture.evaluate(registry)

    tally = result.tallies["no_expiry"]
    assert (tally.ok, tally.failing, tally.unknown) == (1, 2, 1)
    failing = FactRow.objects.get(registry=registry, check_name="no_expiry", state="failing")
    assert failing.source == "customs"
    assert "kind=credential_never_expires" in failing.evidence_url
    assert not Finding.objects.filter(kind__startswith="posture_").exists()  # hygiene's findings, not ours
    assert result.score == 33  # 1 of the 3 known credentials expires


@pytest.mark.django_db
def test_one_snapshot_a_day_the_last_evaluation_winning() -> None:
    registry = factories.registry()
    posture.store_facts(registry, None, [fact(PostureCheck.ANONYMOUS_PULL, FAILING)])
    yesterday = timezone.now() - timedelta(days=1)
    posture.evaluate(registry, now=yesterday)
    posture.evaluate(registry)
    posture.store_facts(registry, None, [fact(PostureCheck.ANONYMOUS_PULL, OK)])
    posture.evaluate(registry)
    snapshots = list(PostureSnapshot.objects.filter(registry=registry).order_by("day"))
    assert [(s.day, s.score) for s in snapshots] == [
        (timezone.localdate(yesterday), 0),
        (timezone.localdate(), 100),
    ]
    assert snapshots[-1].checks == {"anonymous_pull": {"ok": 1, "failing": 0, "unknown": 0, "score": 100}}
    assert (snapshots[0].passing, snapshots[0].failing) == (0, 1)


@pytest.mark.django_db
def test_every_registry_can_be_evaluated_at_once() -> None:
    first, second = factories.registry(), factories.registry()
    posture.store_facts(first, None, [fact(PostureCheck.ANONYMOUS_PULL, FAILING)])
    scores = posture.evaluate_all()
    assert scores[first.name] == 0
    assert scores[second.name] is None  # nothing known about it yet
    assert PostureSnapshot.objects.filter(day=timezone.localdate()).count() == 2


# --- through sync -------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_sync_stores_the_facts_and_opens_the_findings(registry: RunningRegistry) -> None:
    push(registry, "prod/api", "team/app")
    saved = factories.registry(endpoint=registry.url)

    run = sync.sync_inventory(saved)

    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    rows = {(r.check_name, r.subject): r for r in FactRow.objects.filter(registry=saved)}
    assert set(rows) == {("anonymous_pull", ""), ("sso_not_enforced", ""), ("tag_mutable", "prod/api")}
    assert rows["tag_mutable", "prod/api"].run == run
    kinds = set(Finding.objects.filter(scope=f"registry-{saved.pk}").values_list("kind", flat=True))
    assert {"posture_anonymous_pull", "posture_sso_not_enforced", "posture_tag_mutable"} <= kinds
    assert PostureSnapshot.objects.get(registry=saved).score == 0


@pytest.mark.django_db
def test_a_failed_posture_read_keeps_the_previous_facts(
    registry: RunningRegistry, harbor: FakeHarbor
) -> None:
    push(registry, "prod/api")
    saved = services.save_registry(
        Registry(name="harbor-posture", kind="harbor", endpoint=harbor.url),
        actor=None,
        public={"username": harbor.username},
        secrets={"password": harbor.password},
    )
    first = sync.sync_inventory(saved)
    assert first.status == SyncRun.Status.SUCCEEDED, first.error
    before = sorted(FactRow.objects.filter(registry=saved).values_list("check_name", "subject", "state"))
    assert ("sso_not_enforced", "", "failing") in before

    harbor.forbidden = {"GET /systeminfo"}
    harbor.system_info["auth_mode"] = "oidc_auth"  # would pass, if it could be read
    second = sync.sync_inventory(saved)

    assert second.status == SyncRun.Status.SUCCEEDED, second.error  # the inventory still synced
    assert "posture" in second.not_read
    after = sorted(FactRow.objects.filter(registry=saved).values_list("check_name", "subject", "state"))
    assert after == before
    assert Finding.objects.filter(
        kind="posture_sso_not_enforced", scope=f"registry-{saved.pk}", resolved_at=None
    ).exists()


@pytest.mark.django_db
def test_the_retired_acr_admin_user_kind_is_resolved_by_its_migration() -> None:
    from django.apps import apps

    retire = importlib.import_module("registries.migrations.0021_retire_posture_acr_admin_user")
    left = factories.finding(kind="posture_acr_admin_user")
    done = factories.finding(kind="posture_acr_admin_user", resolved_at=timezone.now() - timedelta(days=3))
    other = factories.finding(kind="posture_anonymous_pull")

    retire.resolve_retired(apps, connection.schema_editor())

    for row in (left, done, other):
        row.refresh_from_db()
    assert left.resolved_at is not None
    three_days_ago = timezone.now() - timedelta(days=3)
    assert done.resolved_at is not None
    assert done.resolved_at < three_days_ago + timedelta(hours=1)  # its own time kept
    assert other.resolved_at is None
