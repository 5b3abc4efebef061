"""ECR access through the real pipeline, for an IAM role an admin linked to a directory group (moto).

AWS cannot name a directory group in a repository policy: people reach ECR through a role, typically
the one an SSO permission set creates. Linked to the group (registries.models.PrincipalLink), the
role's grants count as the group's in drift, and reconcile plans give the group's access to it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from registries import drift, services, sync
from registries.connectors.base import ChangeOp, PrincipalKind
from registries.models import Grant, Registry, SyncRun
from tests import factories
from tests.fakes.aws import (
    ACCOUNT,
    FakeEcrHost,
    aws_answers_fixture,  # noqa: F401  (autouse: checks every AWS answer in this module)
    client,
    moto_fixture,  # noqa: F401
    moto_server_fixture,  # noqa: F401
    registry_password,
)
from tests.registries.harness import RunningRegistry
from tests.registries.test_ecr import policy, public, seed

# The role IAM Identity Center creates for a "Developers" permission set: a path, and a generated suffix.
SSO_ROLE = (
    f"arn:aws:iam::{ACCOUNT}:role/aws-reserved/sso.amazonaws.com/AWSReservedSSO_Developers_0a1b2c3d4e5f"
)
PULL = ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]


@pytest.fixture
def host(registry: RunningRegistry, moto: str) -> Iterator[FakeEcrHost]:
    fake = FakeEcrHost(registry.url, registry_password(moto)).start()
    yield fake
    fake.stop()


def saved_registry(moto: str, host_url: str) -> Registry:
    values = public(moto, host_url)
    return services.save_registry(
        Registry(name="ecr-eu", kind="ecr", endpoint=values.pop("url")),
        actor=None,
        public=values,
        secrets={"secret_access_key": "testing"},
    )


def repository_statements(moto: str, repository: str) -> list[dict[str, object]]:
    text = client("ecr", moto).get_repository_policy(repositoryName=repository)["policyText"]
    statements: list[dict[str, object]] = json.loads(text)["Statement"]
    return statements


@pytest.mark.django_db
def test_a_role_linked_to_a_directory_group_counts_as_it_and_receives_its_access(
    registry: RunningRegistry, moto: str, host: FakeEcrHost
) -> None:
    seed(registry, moto)  # library/debian and payments/api
    client("ecr", moto).set_repository_policy(
        repositoryName="payments/api",
        policyText=json.dumps(policy({"AWS": SSO_ROLE}, [*PULL, "ecr:PutImage"], sid="developers")),
    )
    saved = saved_registry(moto, host.url)
    developers = factories.group(display_name="Developers")
    factories.access_rule(developers, "payments/api", "pull", "push", registry=saved)
    factories.access_rule(developers, "library/debian", "pull", registry=saved)
    services.link_principal(
        saved, kind="service_account", principal_id=SSO_ROLE, group=developers, name="Developers", actor=None
    )
    assert sync.sync_inventory(saved).status == SyncRun.Status.SUCCEEDED

    # The role's pull and push on payments/api are the group's: its rules allow them, so no drift there.
    grant = Grant.objects.get(registry=saved, principal_id=SSO_ROLE)
    assert (grant.principal_kind, grant.group, grant.scope) == ("service_account", developers, "payments/api")
    result = drift.compute(saved)
    assert not [u for u in result.unruled if u.grant.principal_id == SSO_ROLE]
    # What the rules give beyond that goes to the role: ECR cannot name the group itself.
    [addition] = result.plan.additions
    assert (addition.op, addition.principal.kind, addition.principal.id) == (
        ChangeOp.ADD,
        PrincipalKind.SERVICE_ACCOUNT,
        SSO_ROLE,
    )
    assert (addition.scope, addition.actions) == ("library/debian", ("pull",))
    assert addition.principal.directory_id == developers.external_id

    applied = drift.apply_plan(saved, actor=None, expected=drift.fingerprint(result.plan))

    assert (applied.error, applied.applied) == ("", (addition,))
    [statement] = repository_statements(moto, "library/debian")
    assert statement["Principal"] == {"AWS": SSO_ROLE}
    assert (statement["Effect"], statement["Action"]) == ("Allow", PULL)
    # Read back, the registry now gives the group exactly what its rules say: nothing left to plan.
    assert sync.sync_inventory(saved).status == SyncRun.Status.SUCCEEDED
    after = drift.compute(saved)
    assert (after.plan.additions, after.plan.removals, after.unruled) == ((), (), ())
    assert Grant.objects.get(registry=saved, scope="library/debian").group == developers
