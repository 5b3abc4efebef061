"""The ECR connector against moto (ECR, IAM, STS) and a real docker-registry behind ECR's /v2/ Basic auth.

Every answer botocore parses here is checked against ../shared/specs by tests/fakes/aws.py's autouse
hook; fields and paging moto lacks (lastRecordedPullTime, nextToken/Marker sequences) come from Stubber.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from registries import connectors, services, sync
from registries.connectors.base import (
    AccessPlan,
    ChangeOp,
    CredentialKind,
    GrantChange,
    Principal,
    PrincipalKind,
)
from registries.connectors.ecr import EcrConnector, ReplicationDestination
from registries.connectors.errors import AuthError, ConfigError, NotFoundError, PermanentError, RateLimited
from registries.demo import images as im
from registries.models import Artifact, Credential, Grant, Registry, SyncRun, Tag
from tests.fakes.aws import (
    ACCOUNT,
    REGION,
    AnswerChecker,
    FakeEcrHost,
    PolicySimulator,
    aws_answers_fixture,  # noqa: F401  (autouse: checks every AWS answer in this module)
    client,
    ecr_public,
    moto_fixture,  # noqa: F401
    moto_server_fixture,  # noqa: F401
    policy_simulator_fixture,  # noqa: F401
    put_image,
    registry_password,
)
from tests.fakes.specs import ECR_MODEL, FakeDrift
from tests.registries.harness import RunningRegistry

PULLED = datetime(2026, 11, 20, 17, 0, tzinfo=UTC)
ALICE = f"arn:aws:iam::{ACCOUNT}:user/dev/alice"
CI_ROLE = f"arn:aws:iam::{ACCOUNT}:role/ci"


@pytest.fixture
def host(registry: RunningRegistry, moto: str) -> Iterator[FakeEcrHost]:
    fake = FakeEcrHost(registry.url, registry_password(moto)).start()
    yield fake
    fake.stop()


def public(moto: str, host_url: str = "http://127.0.0.1:9", **extra: Any) -> dict[str, Any]:
    # max_attempts 1: moto's 500s for unimplemented calls are not worth retrying (§9.4).
    return ecr_public(moto, url=host_url, **{"max_attempts": 1, **extra})


def connector(moto: str, host_url: str = "http://127.0.0.1:9", **extra: Any) -> EcrConnector:
    built = connectors.build("ecr", public(moto, host_url, **extra), {"secret_access_key": "testing"})
    assert isinstance(built, EcrConnector)
    return built


def seed(registry: RunningRegistry, moto: str) -> dict[str, im.Image]:
    base = im.base_image("debian", version="12")
    app = im.child_image(base, {"app/main.py": b"print('hi')\n"}, base_name="docker.io/library/debian:12")
    ecr = client("ecr", moto)
    pusher = registry.pusher()
    for name, image, tags in (("library/debian", base, ["12"]), ("payments/api", app, ["1.0", "latest"])):
        ecr.create_repository(repositoryName=name)
        pusher.push_image(name, image, tags=tags)
        put_image(moto, name, image, tags)
    return {"base": base, "app": app}


# --- inventory ------------------------------------------------------------------------------------------


def test_inventory_reads_ecr_for_tags_and_times_and_v2_for_manifests(
    registry: RunningRegistry, moto: str, host: FakeEcrHost, aws_answers: AnswerChecker
) -> None:
    images = seed(registry, moto)
    ecr = connector(moto, host.url, page_size=1)

    assert [r.name for r in ecr.repositories()] == ["library/debian", "payments/api"]
    tags = ecr.tags("payments/api")
    assert [(t.name, t.digest) for t in tags] == [
        ("1.0", images["app"].digest),
        ("latest", images["app"].digest),
    ]
    artifact = ecr.artifact("payments/api", images["app"].digest)
    assert artifact.layer_digests == images["app"].layer_digests  # the manifest, from /v2/
    assert artifact.labels == images["app"].labels  # the config: what BatchGetImage could not give
    assert artifact.pushed_at is not None
    assert artifact.pushed_at.tzinfo is not None  # imagePushedAt, as a datetime
    assert artifact.last_pulled_at is None  # moto has no lastRecordedPullTime (Stubber tests below)
    assert ecr.resolve("payments/api", "latest") == images["app"].digest
    assert "GET /v2/payments/api/manifests/" + images["app"].digest in host.requests_seen
    assert not any(seen.startswith("HEAD") for seen in host.requests_seen)  # tags resolved by the API
    assert {"ecr.DescribeRepositories", "ecr.DescribeImages", "ecr.GetAuthorizationToken"} <= set(
        aws_answers.checked
    )


@pytest.mark.django_db
def test_a_sync_through_the_real_pipeline_reads_inventory_credentials_and_grants(
    registry: RunningRegistry, moto: str, host: FakeEcrHost
) -> None:
    images = seed(registry, moto)
    iam = client("iam", moto)
    iam.create_user(UserName="alice", Path="/dev/")
    iam.create_access_key(UserName="alice")
    client("ecr", moto).set_repository_policy(
        repositoryName="payments/api",
        policyText=json.dumps(policy({"AWS": ALICE}, ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"])),
    )
    values = public(moto, host.url)
    saved = services.save_registry(
        Registry(name="ecr-eu", kind="ecr", endpoint=values.pop("url")),
        actor=None,
        public=values,
        secrets={"secret_access_key": "testing"},
    )
    run = sync.sync_inventory(saved)
    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    app = Artifact.objects.get(repository__registry=saved, repository__name="payments/api")
    assert app.digest == images["app"].digest
    assert app.pushed_at is not None
    assert sorted(Tag.objects.filter(artifact=app).values_list("name", flat=True)) == ["1.0", "latest"]
    key = Credential.objects.get(registry=saved)
    assert (key.kind, key.owner_id, key.expiry_known, key.expires_at) == ("access_key", ALICE, True, None)
    # A key's ECR rights are its user's across repository and IAM policies, which the credential read
    # does not evaluate; IAM's last use names a service, not an action: neither is claimed.
    assert (key.actions, key.actions_seen, key.actions_seen_source) == ([], {}, "")
    grant = Grant.objects.get(registry=saved)
    assert (grant.principal_id, grant.scope, grant.actions) == (ALICE, "payments/api", ["pull"])
    assert "secret" not in json.dumps(saved.config)


def test_describe_paging_and_last_pull_times_follow_ecrs_next_token() -> None:
    ecr = connector("http://127.0.0.1:9")
    pushed = datetime(2026, 10, 1, 8, 30, tzinfo=UTC)
    with Stubber(ecr._ecr) as stub:
        for names, token in ((["a/one", "a/two"], "t1"), (["b/three"], None)):
            body: dict[str, Any] = {"repositories": [repository(name) for name in names]}
            if token:
                body["nextToken"] = token
            expected = {"registryId": ACCOUNT, "maxResults": 100} | ({"nextToken": "t1"} if not token else {})
            stub.add_response("describe_repositories", body, expected)
        stub.add_response(
            "describe_images",
            {"imageDetails": [image("sha256:" + "a" * 64, ["1"], pushed, PULLED)], "nextToken": "p2"},
        )
        stub.add_response(
            "describe_images",
            {"imageDetails": [image("sha256:" + "b" * 64, ["2", "latest"], pushed, None)]},
            {
                "registryId": ACCOUNT,
                "repositoryName": "a/one",
                "filter": {"tagStatus": "TAGGED"},
                "maxResults": 100,
                "nextToken": "p2",
            },
        )
        assert [r.name for r in ecr.repositories()] == ["a/one", "a/two", "b/three"]
        tags = ecr.tags("a/one")
        stub.assert_no_pending_responses()
    assert [(t.name, t.digest[:8]) for t in tags] == [
        ("1", "sha256:a"),
        ("2", "sha256:b"),
        ("latest", "sha256:b"),
    ]
    assert ecr._times["a/one", "sha256:" + "a" * 64].last_pulled_at == PULLED
    assert ecr._times["a/one", "sha256:" + "b" * 64].last_pulled_at is None


def test_iam_paging_follows_marker_until_not_truncated() -> None:
    ecr = connector("http://127.0.0.1:9", page_size=1)
    created = datetime(2026, 1, 1, tzinfo=UTC)
    with Stubber(ecr._iam) as stub:
        for name, marker in (("alice", "m1"), ("bob", None)):
            page: dict[str, Any] = {"Users": [iam_user(name, created)], "IsTruncated": bool(marker)}
            if marker:
                page["Marker"] = marker
            stub.add_response("list_users", page)
            stub.add_response(
                "list_access_keys",
                {
                    "AccessKeyMetadata": [
                        {"UserName": name, "AccessKeyId": f"AKIA{name.upper():0<16}", "Status": "Active"}
                    ],
                    "IsTruncated": False,
                },
            )
            stub.add_response(
                "get_access_key_last_used",
                {
                    "UserName": name,
                    "AccessKeyLastUsed": {"ServiceName": "ecr", "Region": REGION, "LastUsedDate": PULLED},
                },
            )
        keys = list(ecr.read_credentials())
        stub.assert_no_pending_responses()
    assert [(k.owner.name if k.owner else "", k.last_used_at) for k in keys] == [
        ("alice", PULLED),
        ("bob", PULLED),
    ]
    assert keys[0].last_used_source == "IAM GetAccessKeyLastUsed"


# --- credentials and disabling them ---------------------------------------------------------------------


def test_access_keys_with_last_use_from_iam_and_disabling_is_idempotent(moto: str) -> None:
    iam = client("iam", moto)
    iam.create_user(UserName="alice", Path="/dev/")
    used = iam.create_access_key(UserName="alice")["AccessKey"]
    fresh = iam.create_access_key(UserName="alice")["AccessKey"]
    # A call signed with the key is what makes IAM record its last use (moto does too, §9.2).
    client("ecr", moto, key=used["AccessKeyId"], secret=used["SecretAccessKey"]).describe_repositories()
    ecr = connector(moto)

    keys = {key.id: key for key in ecr.read_credentials()}
    assert set(keys) == {used["AccessKeyId"], fresh["AccessKeyId"]}
    never = keys[fresh["AccessKeyId"]]
    assert (never.kind, never.enabled, never.last_used_at, never.usage_known) == (
        CredentialKind.ACCESS_KEY,
        True,
        None,
        True,
    )
    assert (never.expires_at, never.expiry_known) == (None, True)
    assert never.owner == Principal(kind=PrincipalKind.USER, id=ALICE, name="alice")
    assert keys[used["AccessKeyId"]].last_used_at is not None

    ecr.disable_credential(fresh["AccessKeyId"])
    ecr.disable_credential(fresh["AccessKeyId"])  # again: still fine
    ecr.disable_credential("AKIAGONEGONEGONEGONE")  # deleted already: nothing to do
    statuses = {
        k["AccessKeyId"]: k["Status"] for k in iam.list_access_keys(UserName="alice")["AccessKeyMetadata"]
    }
    assert statuses == {used["AccessKeyId"]: "Active", fresh["AccessKeyId"]: "Inactive"}


# --- grants -------------------------------------------------------------------------------------------


def policy(principal: Any, actions: list[str], sid: str = "", **extra: Any) -> dict[str, Any]:
    statement = {"Effect": "Allow", "Principal": principal, "Action": actions, **extra}
    return {"Version": "2012-10-17", "Statement": [{"Sid": sid, **statement} if sid else statement]}


def test_grants_from_repository_policies_and_iam_groups(moto: str) -> None:
    ecr_api, iam = client("ecr", moto), client("iam", moto)
    ecr_api.create_repository(repositoryName="team/app")
    ecr_api.create_repository(repositoryName="team/nopolicy")
    document = policy({"AWS": [ALICE, CI_ROLE]}, ["ecr:BatchGetImage", "ecr:PutImage"], sid="devs")
    document["Statement"] += [
        {"Sid": "acct", "Effect": "Allow", "Principal": {"AWS": ACCOUNT}, "Action": "ecr:*"},
        {"Sid": "no", "Effect": "Deny", "Principal": "*", "Action": "ecr:BatchDeleteImage"},
        {"Sid": "meta", "Effect": "Allow", "Principal": "*", "Action": ["ecr:DescribeImages"]},
    ]
    ecr_api.set_repository_policy(repositoryName="team/app", policyText=json.dumps(document))
    iam.create_user(UserName="alice", Path="/dev/")
    iam.create_group(GroupName="readers")
    iam.add_user_to_group(GroupName="readers", UserName="alice")
    managed = iam.create_policy(
        PolicyName="ecr-pull",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
                        "Resource": f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/team/*",
                    },
                    {  # another region's repositories are another registry's business
                        "Effect": "Allow",
                        "Action": "ecr:*",
                        "Resource": f"arn:aws:ecr:us-east-2:{ACCOUNT}:repository/*",
                    },
                ],
            }
        ),
    )["Policy"]["Arn"]
    iam.attach_group_policy(GroupName="readers", PolicyArn=managed)
    iam.put_group_policy(
        GroupName="readers",
        PolicyName="push-anything",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": {"Effect": "Allow", "Action": "ecr:PutImage", "Resource": "*"},
            }
        ),
    )
    iam.create_group(GroupName="billing")  # no ECR permissions: no grants

    grants = {(g.principal.id, g.scope, g.source): sorted(g.actions) for g in connector(moto).read_grants()}
    readers = f"arn:aws:iam::{ACCOUNT}:group/readers"
    assert grants == {
        (ALICE, "team/app", "repository policy team/app statement devs"): ["pull", "push"],
        (CI_ROLE, "team/app", "repository policy team/app statement devs"): ["pull", "push"],
        (f"arn:aws:iam::{ACCOUNT}:root", "team/app", "repository policy team/app statement acct"): [
            "delete",
            "pull",
            "push",
        ],
        (readers, "team/**", "IAM group readers policy ecr-pull"): ["pull"],
        (ALICE, "team/**", "member of IAM group readers policy ecr-pull"): ["pull"],
        (readers, "**", "IAM group readers policy push-anything (inline)"): ["push"],
        (ALICE, "**", "member of IAM group readers policy push-anything (inline)"): ["push"],
    }


def test_principal_kinds_follow_the_arn() -> None:
    from registries.connectors.ecr import _principals

    found = _principals({"AWS": [ALICE, CI_ROLE, ACCOUNT, f"arn:aws:sts::{ACCOUNT}:assumed-role/ci/run-1"]})
    assert [(p.kind, p.name) for p in found] == [
        (PrincipalKind.USER, "alice"),
        (PrincipalKind.SERVICE_ACCOUNT, "ci"),
        (PrincipalKind.OTHER, f"account {ACCOUNT}"),
        (PrincipalKind.SERVICE_ACCOUNT, "ci"),
    ]
    assert _principals("*")[0].id == "*"


# --- writes: repository policies ------------------------------------------------------------------------


def change(op: ChangeOp, arn: str, actions: tuple[str, ...], source: str = "") -> GrantChange:
    kind = PrincipalKind.USER if ":user/" in arn else PrincipalKind.SERVICE_ACCOUNT
    return GrantChange(
        op=op, principal=Principal(kind=kind, id=arn), scope="team/app", actions=actions, source=source
    )


def statements(moto: str) -> list[dict[str, Any]]:
    text = client("ecr", moto).get_repository_policy(repositoryName="team/app")["policyText"]
    result: list[dict[str, Any]] = json.loads(text)["Statement"]
    return result


def test_applying_a_plan_edits_only_the_principals_statements(moto: str) -> None:
    ecr_api = client("ecr", moto)
    ecr_api.create_repository(repositoryName="team/app")
    unrelated = {
        "Sid": "scanner",
        "Effect": "Allow",
        "Principal": {"Service": "inspector2.amazonaws.com"},
        "Action": "ecr:BatchGetImage",
    }
    shared = {"Sid": "devs", "Effect": "Allow", "Principal": {"AWS": [ALICE, CI_ROLE]}, "Action": "ecr:*"}
    ecr_api.set_repository_policy(
        repositoryName="team/app",
        policyText=json.dumps({"Version": "2012-10-17", "Statement": [unrelated, shared]}),
    )
    bob = f"arn:aws:iam::{ACCOUNT}:user/bob"
    plan = AccessPlan(
        registry="ecr-eu",
        additions=(change(ChangeOp.ADD, bob, ("pull",)),),
        removals=(
            change(
                ChangeOp.REMOVE, ALICE, ("push", "delete"), source="repository policy team/app statement devs"
            ),
        ),
    )
    ecr = connector(moto)
    assert list(ecr.apply_access_plan(plan)) == list(plan.changes)
    after = statements(moto)
    assert after[0] == unrelated
    assert after[1] == {**shared, "Principal": {"AWS": [CI_ROLE]}}  # the role keeps everything
    assert after[2] == {
        **shared,
        "Principal": {"AWS": ALICE},
        "Action": ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
    }
    assert after[3]["Principal"] == {"AWS": bob}
    assert after[3]["Sid"].startswith("Customs")
    list(ecr.apply_access_plan(plan))  # a re-run changes nothing
    assert statements(moto) == after
    grants = {(g.principal.id, frozenset(g.actions)) for g in ecr.read_grants()}
    assert (ALICE, frozenset({"pull"})) in grants
    assert (bob, frozenset({"pull"})) in grants


def test_removing_the_last_action_deletes_the_policy_and_other_plans_are_refused(moto: str) -> None:
    ecr_api = client("ecr", moto)
    ecr_api.create_repository(repositoryName="team/app")
    ecr_api.set_repository_policy(
        repositoryName="team/app", policyText=json.dumps(policy({"AWS": ALICE}, ["ecr:BatchGetImage"]))
    )
    ecr = connector(moto)
    list(ecr.apply_access_plan(AccessPlan("ecr-eu", removals=(change(ChangeOp.REMOVE, ALICE, ("pull",)),))))
    with pytest.raises(ClientError, match="RepositoryPolicyNotFoundException"):
        statements(moto)
    list(ecr.apply_access_plan(AccessPlan("ecr-eu", removals=(change(ChangeOp.REMOVE, ALICE, ("pull",)),))))

    group = GrantChange(
        op=ChangeOp.ADD,
        principal=Principal(kind=PrincipalKind.GROUP, id="0f1e-entra-object-id", name="Payments"),
        scope="team/app",
        actions=("pull",),
    )
    with pytest.raises(PermanentError, match="name AWS principals"):
        list(ecr.apply_access_plan(AccessPlan("ecr-eu", additions=(group,))))
    via_group = change(
        ChangeOp.REMOVE, ALICE, ("pull",), source="member of IAM group readers policy ecr-pull"
    )
    with pytest.raises(PermanentError, match="IAM group policy"):
        list(ecr.apply_access_plan(AccessPlan("ecr-eu", removals=(via_group,))))


# --- regions, permissions, identity --------------------------------------------------------------------


def test_replication_destinations_come_from_describe_registry(moto: str) -> None:
    # moto accepts one rule only (real ECR takes up to ten); the merging of rules is plain code.
    client("ecr", moto).put_replication_configuration(
        replicationConfiguration={
            "rules": [
                {
                    "destinations": [
                        {"region": "us-east-1", "registryId": ACCOUNT},
                        {"region": "ap-south-1", "registryId": "210987654321"},
                    ],
                    "repositoryFilters": [{"filter": "team/", "filterType": "PREFIX_MATCH"}],
                },
            ]
        }
    )
    assert connector(moto).replication() == [
        ReplicationDestination(
            "ap-south-1", "210987654321", "https://210987654321.dkr.ecr.ap-south-1.amazonaws.com", ("team/",)
        ),
        ReplicationDestination(
            "us-east-1", ACCOUNT, f"https://{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com", ("team/",)
        ),
    ]


def signed_in_as_customs(moto: str, host_url: str) -> EcrConnector:
    """A connector signing with an IAM user's own key, so STS names that user as the caller."""
    key = client("iam", moto).create_access_key(UserName="customs")["AccessKey"]
    built = connectors.build(
        "ecr",
        public(moto, host_url, access_key_id=key["AccessKeyId"]),
        {"secret_access_key": key["SecretAccessKey"]},
    )
    assert isinstance(built, EcrConnector)
    return built


def test_check_permissions_tries_each_read_and_asks_the_policy_simulator_about_the_writes(
    registry: RunningRegistry, moto: str, host: FakeEcrHost, policy_simulator: PolicySimulator
) -> None:
    seed(registry, moto)
    client("iam", moto).create_user(UserName="customs")
    policy_simulator.allowed = {
        "ecr:SetRepositoryPolicy",
        "ecr:DeleteRepositoryPolicy",
        "iam:UpdateAccessKey",
    }
    checks = signed_in_as_customs(moto, host.url).check_permissions()
    assert [c.permission for c in checks] == list(EcrConnector.needs)
    assert all(c.ok and c.tried for c in checks), [c for c in checks if not (c.ok and c.tried)]
    assert [c.required for c in checks] == [True] * 7 + [False, False]  # reads required, writes optional
    assert checks[1].detail == "tried on library/debian"
    customs = f"arn:aws:iam::{ACCOUNT}:user/customs"
    repository = f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/library/debian"
    assert checks[7].detail == f"simulated for {customs} on {repository}"
    assert checks[8].detail == f"simulated for {customs} on {customs}"  # the first user the reads found
    assert [
        (call["PolicySourceArn"], call["ActionNames"], call["ResourceArns"])
        for call in policy_simulator.calls
    ] == [
        (customs, ["ecr:SetRepositoryPolicy", "ecr:DeleteRepositoryPolicy"], [repository]),
        (customs, ["iam:UpdateAccessKey"], [customs]),
    ]


def test_a_write_the_simulator_denies_is_missing_but_optional(
    registry: RunningRegistry, moto: str, host: FakeEcrHost, policy_simulator: PolicySimulator
) -> None:
    seed(registry, moto)
    client("iam", moto).create_user(UserName="customs")
    policy_simulator.allowed = {"ecr:SetRepositoryPolicy"}
    checks = signed_in_as_customs(moto, host.url).check_permissions()
    writes = checks[7:]
    assert [(c.ok, c.tried, c.required, c.missing) for c in writes] == [(False, True, False, True)] * 2
    assert writes[0].detail.endswith(": ecr:DeleteRepositoryPolicy denied")
    assert writes[1].detail.endswith(": iam:UpdateAccessKey denied")
    assert all(c.ok for c in checks[:7])  # a read-only account: everything a sync needs is there


def test_writes_are_not_tried_when_the_policy_simulator_is_refused(
    registry: RunningRegistry, moto: str, host: FakeEcrHost, policy_simulator: PolicySimulator
) -> None:
    seed(registry, moto)
    client("iam", moto).create_user(UserName="customs")
    policy_simulator.refusal = "AccessDenied"
    writes = signed_in_as_customs(moto, host.url).check_permissions()[7:]
    assert [(c.tried, c.required, c.missing) for c in writes] == [(False, False, False)] * 2
    assert all(c.detail.startswith("not tried: IAM's policy simulator did not answer") for c in writes)
    assert "AccessDenied" in writes[0].detail


def test_an_assumed_role_is_simulated_as_itself(moto: str, policy_simulator: PolicySimulator) -> None:
    role = f"arn:aws:iam::{ACCOUNT}:role/customs-reader"
    policy_simulator.allowed = {"iam:UpdateAccessKey"}
    checks = connector(moto, role_arn=role).check_permissions()
    assert {call["PolicySourceArn"] for call in policy_simulator.calls} == {role}
    assert [(c.ok, c.tried) for c in checks[7:]] == [(False, True), (True, True)]
    assert checks[7].detail.startswith(f"simulated for {role} on *")  # no repository yet: every resource


def test_an_assumed_role_signs_the_calls(moto: str) -> None:
    client("ecr", moto).create_repository(repositoryName="team/app")
    ecr = connector(moto, role_arn=f"arn:aws:iam::{ACCOUNT}:role/customs-reader", external_id="customs-1")
    assert [r.name for r in ecr.repositories()] == ["team/app"]
    credentials = ecr._session().get_credentials()
    assert credentials is not None
    assert credentials.access_key.startswith("ASIA")  # issued by STS


def test_wrong_registry_password_is_an_auth_error(registry: RunningRegistry, moto: str) -> None:
    wrong = FakeEcrHost(registry.url, "not-the-token").start()
    try:
        with pytest.raises(AuthError, match="401 from"):
            connector(moto, wrong.url).check()
    finally:
        wrong.stop()


@pytest.mark.parametrize(
    ("code", "status", "error"),
    [
        ("ThrottlingException", 400, RateLimited),
        ("AccessDeniedException", 400, AuthError),
        ("ExpiredTokenException", 400, AuthError),
        ("UnrecognizedClientException", 400, AuthError),
        ("ServerException", 500, Exception),
        ("RepositoryNotFoundException", 400, NotFoundError),
    ],
)
def test_aws_errors_map_onto_the_taxonomy(code: str, status: int, error: type[Exception]) -> None:
    ecr = connector("http://127.0.0.1:9")
    with Stubber(ecr._ecr) as stub:
        stub.add_client_error("describe_repositories", service_error_code=code, http_status_code=status)
        with pytest.raises(error, match=code):
            list(ecr.repositories())


def test_iam_throttling_is_rate_limited_too() -> None:
    ecr = connector("http://127.0.0.1:9")
    with Stubber(ecr._iam) as stub:
        stub.add_client_error("list_users", service_error_code="Throttling", http_status_code=400)
        with pytest.raises(RateLimited):
            list(ecr.read_credentials())


@pytest.mark.parametrize(
    ("values", "problem"),
    [
        ({"access_key_id": None}, "an access key needs both its id and its secret"),
        ({"account_id": None}, "account id and region could not be read"),
        ({"role_arn": "arn:aws:iam::1:user/x"}, "a role ARN looks like"),
        ({"external_id": "x-1"}, "only used when assuming a role"),
    ],
)
def test_config_mistakes_are_named(values: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        connectors.config_for("ecr", public("http://127.0.0.1:9", **values), {"secret_access_key": "s"})


def test_account_and_region_come_from_the_registry_host() -> None:
    config = connectors.config_for(
        "ecr",
        {"url": f"https://{ACCOUNT}.dkr.ecr.ap-southeast-2.amazonaws.com", "role_arn": CI_ROLE},
        {},
    )
    assert (config.aws_account, config.aws_region) == (ACCOUNT, "ap-southeast-2")  # type: ignore[attr-defined]
    assert "secret_access_key" not in config.public()


def test_a_fake_answer_ecr_would_never_send_fails_the_check() -> None:
    with pytest.raises(FakeDrift, match="imageSizeInBytes"):
        ECR_MODEL.validate(
            "DescribeImages",
            {"imageDetails": [{"imageDigest": "sha256:" + "a" * 64, "imageSizeInBytes": "12"}]},
        )


# --- payload builders -------------------------------------------------------------------------------------


def repository(name: str) -> dict[str, Any]:
    return {
        "repositoryArn": f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/{name}",
        "registryId": ACCOUNT,
        "repositoryName": name,
        "repositoryUri": f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/{name}",
        "createdAt": datetime(2026, 1, 1, tzinfo=UTC),
    }


def image(digest: str, tags: list[str], pushed: datetime, pulled: datetime | None) -> dict[str, Any]:
    detail: dict[str, Any] = {
        "registryId": ACCOUNT,
        "repositoryName": "a/one",
        "imageDigest": digest,
        "imageTags": tags,
        "imageSizeInBytes": 1234,
        "imagePushedAt": pushed,
        "imageManifestMediaType": im.OCI_MANIFEST,
    }
    if pulled:
        detail["lastRecordedPullTime"] = pulled
    return detail


def iam_user(name: str, created: datetime) -> dict[str, Any]:
    return {
        "Path": "/",
        "UserName": name,
        "UserId": f"AIDA{name.upper():0<17}",
        "Arn": f"arn:aws:iam::{ACCOUNT}:user/{name}",
        "CreateDate": created,
    }
