"""Every URL in the URLconf, every role: a declared expectation, or the suite fails."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.utils import timezone

from accounts.models import PersonalToken, RoleBinding, User
from accounts.roles import Role
from accounts.scim import services as scim_services
from portal.models import AuditEvent, Finding
from registries import offboarding, reviews, services
from registries.models import AccessReviewItem, AccessRule, BaseImage, Credential, Grant
from registries.services import RuleRequest, save_access_rule
from tests import factories

ROLES = ("admin", "reviewer", "developer", "outsider", "anonymous")
EVIDENCE_PERIOD = {"start": "2025-03-01", "end": "2025-04-01"}
UPSTREAM_LOGIN = {
    "endpoint": "https://cache.example.test",
    "username": "hubuser",
    "password": "dckr_pat_matrix",
}


@dataclass
class World:
    """One object of each kind the URLs name, owned by the developer where ownership matters."""

    users: dict[str, User | None]
    token: PersonalToken
    finding: Finding
    binding: RoleBinding
    event: AuditEvent


@dataclass(frozen=True)
class Row:
    expect: tuple[int, int, int, int, int]  # admin, reviewer, developer, outsider, anonymous
    method: str = "get"
    kwargs: Callable[[World], dict[str, Any]] = lambda world: {}
    data: Callable[[World], dict[str, Any]] = lambda world: {}
    note: str = field(default="", compare=False)


def _suppress_body(world: World) -> dict[str, Any]:
    return {"until": factories.days_from_now(7).isoformat(), "justification": "accepted for the test"}


def token(w: World) -> dict[str, Any]:
    return {"token_id": w.token.pk}


def api_token(w: World) -> dict[str, Any]:
    return {"pk": w.token.pk}


def finding(w: World) -> dict[str, Any]:
    return {"finding_id": w.finding.pk}


def api_finding(w: World) -> dict[str, Any]:
    return {"pk": w.finding.pk}


def group(w: World) -> dict[str, Any]:
    return {"group_id": w.binding.group_id}


def api_group(w: World) -> dict[str, Any]:
    return {"pk": w.binding.group_id}


def inventory_registry(w: World) -> dict[str, Any]:
    return {"registry_id": factories.registry().pk}


def inventory_api_registry(w: World) -> dict[str, Any]:
    return {"pk": factories.registry().pk}


def principal_link(w: World) -> dict[str, Any]:
    registry = factories.registry()
    link = services.link_principal(
        registry, kind="group", principal_id="team-7", group=w.binding.group, actor=None
    )
    return {"registry_id": registry.pk, "link_id": link.pk}


def inventory_replica(w: World) -> dict[str, Any]:
    replica = factories.replica(factories.registry())
    return {"registry_id": replica.registry_id, "replica_id": replica.pk}


def inventory_repository(w: World) -> dict[str, Any]:
    return {"repository_id": factories.repository(factories.registry()).pk}


def inventory_artifact(w: World) -> dict[str, Any]:
    artifact = factories.artifact(factories.repository(factories.registry()))
    return {"repository_id": artifact.repository_id, "digest": artifact.digest}


def inventory_api(make: Callable[[], Any]) -> Callable[[World], dict[str, Any]]:
    return lambda w: {"pk": make().pk}


def _inventory_tag() -> Any:
    return factories.tag(factories.artifact(factories.repository(factories.registry())))


def access_rule(w: World) -> AccessRule:
    request = RuleRequest(
        group=w.binding.group, pattern="team/**", actions=frozenset({"pull"}), justification="for the matrix"
    )
    return save_access_rule(None, request, actor=None)


def native_credential(w: World) -> dict[str, Any]:
    made = Credential.objects.create(
        registry=factories.registry(), native_id=factories.unique("c"), kind="robot"
    )
    return {"pk": made.pk}


def native_grant(w: World) -> dict[str, Any]:
    made = Grant.objects.create(
        registry=factories.registry(), principal_kind="user", principal_id="u1", scope="**", can_pull=True
    )
    return {"pk": made.pk}


def planned_offboarding(w: World) -> dict[str, Any]:
    """A fresh plan (someone with nothing to take away): confirming and cancelling it both succeed."""
    planned = offboarding.start(factories.user(), actor=None, reason="for the matrix")
    return {"offboarding_id": planned.pk}


def catalog_entry(w: World) -> dict[str, Any]:
    return {"base_image_id": BaseImage.objects.create(name=f"docker.io/library/{factories.unique('img')}").pk}


def catalog_mirror(w: World) -> dict[str, Any]:
    made = BaseImage.objects.create(name=f"docker.io/library/{factories.unique('img')}")
    mirror = made.mirrors.create(registry=factories.registry(), repository="base/image", region="westeurope")
    return {"base_image_id": made.pk, "mirror_id": mirror.pk}


def review_campaign(w: World) -> dict[str, Any]:
    """An open campaign nobody in the cast owns; the developer reviews its one item (named reviewer)."""
    team = factories.group()
    factories.member(factories.user(), team)
    factories.access_rule(team, "matrix/**", "push")
    developer = w.users["developer"]
    assert developer is not None
    request = reviews.CampaignRequest(
        name=factories.unique("matrix review"),
        pattern="matrix/**",
        actions=frozenset({"push"}),
        due_at=timezone.now() + timedelta(days=7),
        reviewer_rule="named",
        reviewers=(developer,),
    )
    return {"campaign_id": reviews.create_campaign(request, actor=None).pk}


def review_decision(w: World) -> dict[str, Any]:
    """Certify the item of the campaign the row's kwargs just made (kwargs are built before data)."""
    item = AccessReviewItem.objects.order_by("-pk").first()
    assert item is not None
    return {"item": [item.pk], "decision": "certify", "comment": ""}


def api_offboarding(w: World) -> dict[str, Any]:
    return {"pk": planned_offboarding(w)["offboarding_id"]}


#                                   admin reviewer developer outsider anonymous
MATRIX: dict[str, Row] = {
    "portal:dashboard": Row((200, 200, 200, 200, 302)),
    "portal:findings": Row((200, 200, 403, 403, 302)),
    "portal:finding_detail": Row((200, 200, 403, 403, 302), kwargs=finding),
    "portal:finding_unsuppress": Row((302, 302, 403, 403, 302), method="post", kwargs=finding),
    "portal:finding_assign": Row(
        (302, 302, 403, 403, 302), method="post", kwargs=finding, data=lambda w: {"assignee": ""}
    ),
    "portal:audit": Row((200, 200, 403, 403, 302)),
    "portal:audit_export_csv": Row((200, 200, 403, 403, 302)),
    "portal:audit_export_jsonl": Row((200, 200, 403, 403, 302)),
    "accounts:settings": Row((200, 200, 200, 200, 302)),
    # Reviewers see every token but revoke none; an outsider cannot see the developer's token at all.
    "accounts:token_revoke": Row((302, 403, 302, 404, 302), method="post", kwargs=token),
    "accounts:credentials": Row((200, 200, 403, 403, 302)),
    "accounts:access": Row((200, 200, 403, 403, 302)),
    "accounts:group_detail": Row((200, 200, 403, 403, 302), kwargs=group),
    # Robot tokens belong to groups: admins make and revoke them, reviewers only read the group page.
    "accounts:robot_create": Row(
        (200, 403, 403, 403, 302),
        method="post",
        kwargs=group,
        data=lambda w: {"name": factories.unique("robot"), "days": 30},
    ),
    "accounts:robot_revoke": Row(
        (302, 403, 403, 403, 302), method="post", kwargs=lambda w: {"robot_id": factories.robot()[0].pk}
    ),
    # Who takes over a group's robots at an offboarding: admins name them.
    "accounts:group_owner": Row(
        (302, 403, 403, 403, 302), method="post", kwargs=group, data=lambda w: {"owner": ""}
    ),
    "accounts:role_binding_create": Row(
        (302, 403, 403, 403, 302),
        method="post",
        data=lambda w: {"group": w.binding.group_id, "role": "admin"},
    ),
    "accounts:role_binding_delete": Row(
        (302, 403, 403, 403, 302), method="post", kwargs=lambda w: {"binding_id": w.binding.pk}
    ),
    "registries:list": Row((200, 200, 200, 200, 302)),
    "registries:base_images": Row((200, 200, 200, 200, 302)),
    # The catalog is for every developer; checking a Dockerfile changes nothing.
    "registries:base_image": Row((200, 200, 200, 200, 302), kwargs=catalog_entry),
    "registries:base_image_check": Row(
        (200, 200, 200, 200, 302),
        method="post",
        data=lambda w: {"dockerfile": "FROM scratch\n", "build_args": ""},
    ),
    # The Kubernetes admission webhook answers the API server's bearer token only (CUSTOMS_ADMISSION_TOKEN);
    # unset, as here, it refuses everyone with 503 rather than run unauthenticated.
    "admission:validate": Row((503, 503, 503, 503, 503), method="post"),
    # Keeping the catalog: admins only (reviewers read it where developers do, on the pages above).
    "registries:base_image_manage": Row((200, 403, 403, 403, 302)),
    "registries:base_image_add": Row((200, 403, 403, 403, 302)),
    "registries:base_image_export": Row((200, 403, 403, 403, 302)),
    "registries:base_image_edit": Row((200, 403, 403, 403, 302), kwargs=catalog_entry),
    "registries:base_image_delete": Row((302, 403, 403, 403, 302), method="post", kwargs=catalog_entry),
    "registries:base_image_mirror_add": Row(
        (302, 403, 403, 403, 302),
        method="post",
        kwargs=catalog_entry,
        data=lambda w: {"registry": factories.registry().pk, "repository": "base/image"},
    ),
    "registries:base_image_mirror_delete": Row(
        (302, 403, 403, 403, 302), method="post", kwargs=catalog_mirror
    ),
    # Where the mirror job reads an entry and as whom: admins only, page and API (PUT-only, the password
    # write-only); tests/registries/test_mirror_upstream_form.py.
    "registries:base_image_upstream": Row(
        (302, 403, 403, 403, 302), method="post", kwargs=catalog_entry, data=lambda w: UPSTREAM_LOGIN
    ),
    # Everyone signed in reads the catalog over the API; writes (admins only) are checked per role in
    # tests/registries/test_base_image_admin.py.
    "api:base-image-list": Row((200, 200, 200, 200, 401)),
    "api:base-image-detail": Row(
        (200, 200, 200, 200, 401), kwargs=lambda w: {"pk": catalog_entry(w)["base_image_id"]}
    ),
    "api:base-image-upstream": Row(
        (200, 403, 403, 403, 401),
        method="put",
        kwargs=lambda w: {"pk": catalog_entry(w)["base_image_id"]},
        data=lambda w: UPSTREAM_LOGIN,
    ),
    "api:base-image-check-dockerfile": Row(
        (200, 200, 200, 200, 401),
        method="post",
        data=lambda w: {"dockerfile": "FROM scratch\n", "build_args": {}},
    ),
    "api:me": Row((200, 200, 200, 200, 401)),
    "api:token-list": Row((200, 200, 200, 200, 401)),
    "api:token-detail": Row((200, 200, 200, 404, 401), kwargs=api_token),
    "api:token-revoke": Row((200, 403, 200, 404, 401), method="post", kwargs=api_token),
    "api:robot-token-list": Row((200, 200, 403, 403, 401)),
    "api:robot-token-detail": Row(
        (200, 200, 403, 403, 401), kwargs=lambda w: {"pk": factories.robot()[0].pk}
    ),
    "api:robot-token-revoke": Row(
        (200, 403, 403, 403, 401), method="post", kwargs=lambda w: {"pk": factories.robot()[0].pk}
    ),
    "api:group-list": Row((200, 200, 403, 403, 401)),
    "api:group-detail": Row((200, 200, 403, 403, 401), kwargs=api_group),
    "api:role-binding-list": Row((200, 200, 403, 403, 401)),
    "api:role-binding-detail": Row(
        (204, 403, 403, 403, 401), method="delete", kwargs=lambda w: {"pk": w.binding.pk}
    ),
    "api:audit-event-list": Row((200, 200, 403, 403, 401)),
    "api:audit-event-detail": Row((200, 200, 403, 403, 401), kwargs=lambda w: {"sequence": w.event.sequence}),
    "api:finding-list": Row((200, 200, 403, 403, 401)),
    "api:finding-detail": Row((200, 200, 403, 403, 401), kwargs=api_finding),
    "api:finding-suppress": Row(
        (200, 200, 403, 403, 401), method="post", data=_suppress_body, kwargs=api_finding
    ),
    "api:finding-unsuppress": Row((200, 200, 403, 403, 401), method="post", kwargs=api_finding),
    "api:finding-assign": Row(
        (200, 200, 403, 403, 401), method="post", kwargs=api_finding, data=lambda w: {"assignee": None}
    ),
    "api:finding-bulk": Row(
        (200, 200, 403, 403, 401), method="post", data=lambda w: {"action": "unassign", "ids": [w.finding.pk]}
    ),
    "api:finding-export": Row((200, 200, 403, 403, 401)),
    "api:finding-summary": Row((200, 200, 403, 403, 401)),
    "api:schema": Row((200, 200, 200, 200, 401)),
    "api:docs": Row((200, 200, 200, 200, 401)),
    # Signed-in people are sent on from the sign-in page; the logout page asks to confirm.
    "account_login": Row((302, 302, 302, 302, 200)),
    "account_logout": Row((200, 200, 200, 200, 302)),
    "account_inactive": Row((200, 200, 200, 200, 200)),
    # Federated sign-in: open to everyone, as a sign-in must be; an unknown provider is a 404 for all.
    "openid_connect_login": Row(
        (404, 404, 404, 404, 404), method="post", kwargs=lambda w: {"provider_id": "nope"}
    ),
    "openid_connect_callback": Row((404, 404, 404, 404, 404), kwargs=lambda w: {"provider_id": "nope"}),
    "saml_login": Row((404, 404, 404, 404, 404), kwargs=lambda w: {"organization_slug": "nope"}),
    "saml_metadata": Row((404, 404, 404, 404, 404), kwargs=lambda w: {"organization_slug": "nope"}),
    "saml_acs": Row((302, 302, 302, 302, 302), method="post", kwargs=lambda w: {"organization_slug": "nope"}),
    "saml_finish_acs": Row((404, 404, 404, 404, 404), kwargs=lambda w: {"organization_slug": "nope"}),
    "saml_sls": Row((404, 404, 404, 404, 404), kwargs=lambda w: {"organization_slug": "nope"}),
    "socialaccount_login_cancelled": Row((200, 200, 200, 200, 200)),
    "socialaccount_login_error": Row((401, 401, 401, 401, 401)),
    "accounts:identity_providers": Row((200, 403, 403, 403, 302)),
    # No provider is configured in this world, so the admin's check finds nothing to check.
    "accounts:idp_check": Row(
        (404, 403, 403, 403, 302), method="post", kwargs=lambda w: {"kind": "oidc", "slug": "nope"}
    ),
    # SCIM answers bearer tokens of a provisioning connection only: a session is no credential there.
    "scim:users": Row((401, 401, 401, 401, 401)),
    "scim:user": Row((401, 401, 401, 401, 401), kwargs=lambda w: {"resource_id": str(w.token.owner.scim_id)}),
    "scim:groups": Row((401, 401, 401, 401, 401)),
    "scim:group": Row(
        (401, 401, 401, 401, 401), kwargs=lambda w: {"resource_id": str(w.binding.group.scim_id)}
    ),
    "scim:service_provider_config": Row((401, 401, 401, 401, 401)),
    "scim:resource_types": Row((401, 401, 401, 401, 401)),
    "scim:resource_type": Row((401, 401, 401, 401, 401), kwargs=lambda w: {"name": "User"}),
    "scim:schemas": Row((401, 401, 401, 401, 401)),
    "scim:schema": Row(
        (401, 401, 401, 401, 401), kwargs=lambda w: {"urn": "urn:ietf:params:scim:schemas:core:2.0:User"}
    ),
    "scim:bulk": Row((401, 401, 401, 401, 401), method="post"),
    "scim:search": Row((401, 401, 401, 401, 401), method="post"),
    "scim:me": Row((401, 401, 401, 401, 401)),
    "scim_admin:tokens": Row((200, 403, 403, 403, 302)),
    "scim_admin:token_revoke": Row(
        (302, 403, 403, 403, 302),
        method="post",
        kwargs=lambda w: {
            "token_id": scim_services.create_token(
                name=factories.unique("scim"), directory_name="default", actor=None
            ).token.pk
        },
    ),
    # Registry notifications authenticate with the registry's own secret, never a session.
    "webhooks:registry": Row(
        (404, 404, 404, 404, 404), method="post", kwargs=lambda w: {"registry_id": 999_999}
    ),
    # The registry token server authenticates each request itself; without a known service it is a 400.
    "tokenserver:token": Row((400, 400, 400, 400, 400)),
    # Certificates only (public keys): the same bundle every registry behind Customs must trust.
    "registries:token_bundle": Row((200, 200, 200, 200, 302)),
    "healthz": Row((200, 200, 200, 200, 200)),
    "readyz": Row((200, 200, 200, 200, 200)),
    "metrics": Row((200, 200, 403, 403, 401)),
    # Registries and their inventory: everyone signed in reads, admins change (all registries are visible).
    "registries:add": Row((200, 403, 403, 403, 302)),
    "registries:check_new": Row(
        (200, 403, 403, 403, 302),
        method="post",
        data=lambda w: {"kind": "distribution", "endpoint": factories.CLOSED_ENDPOINT},
    ),
    "registries:detail": Row((200, 200, 200, 200, 302), kwargs=inventory_registry),
    "registries:edit": Row((200, 403, 403, 403, 302), kwargs=inventory_registry),
    "registries:delete": Row((302, 403, 403, 403, 302), method="post", kwargs=inventory_registry),
    "registries:check": Row((200, 403, 403, 403, 302), method="post", kwargs=inventory_registry),
    "registries:sync": Row((302, 403, 403, 403, 302), method="post", kwargs=inventory_registry),
    "registries:runs": Row((200, 200, 200, 200, 302), kwargs=inventory_registry),
    # The drift plan is a dry run for reviewers and admins; applying is an admin's (here: no plan, a message).
    "registries:reconcile": Row((200, 200, 403, 403, 302), kwargs=inventory_registry),
    "registries:reconcile_apply": Row((302, 403, 403, 403, 302), method="post", kwargs=inventory_registry),
    "registries:principal_link_add": Row(
        (302, 403, 403, 403, 302),
        method="post",
        kwargs=inventory_registry,
        data=lambda w: {
            "principal_kind": "group",
            "principal_id": "team-1",
            "group": w.binding.group.external_id,
        },
    ),
    "registries:principal_link_delete": Row((302, 403, 403, 403, 302), method="post", kwargs=principal_link),
    "registries:rotate_webhook_secret": Row(
        (200, 403, 403, 403, 302), method="post", kwargs=inventory_registry
    ),
    "registries:replica_add": Row(
        (302, 403, 403, 403, 302),
        method="post",
        kwargs=inventory_registry,
        data=lambda w: {"region": "us-east-1", "endpoint": "https://us.example.test"},
    ),
    "registries:replica_delete": Row((302, 403, 403, 403, 302), method="post", kwargs=inventory_replica),
    "registries:repositories": Row((200, 200, 200, 200, 302)),
    "registries:repository": Row((200, 200, 200, 200, 302), kwargs=inventory_repository),
    "registries:artifact": Row((200, 200, 200, 200, 302), kwargs=inventory_artifact),
    "api:registry-list": Row((200, 200, 200, 200, 401)),
    "api:registry-detail": Row((200, 200, 200, 200, 401), kwargs=inventory_api_registry),
    "api:registry-test-connection": Row(
        (200, 403, 403, 403, 401), method="post", kwargs=inventory_api_registry
    ),
    "api:registry-sync": Row((202, 403, 403, 403, 401), method="post", kwargs=inventory_api_registry),
    "api:registry-replication": Row((200, 200, 200, 200, 401), kwargs=inventory_api_registry),
    "api:sync-run-list": Row((200, 200, 200, 200, 401)),
    "api:sync-run-detail": Row(
        (200, 200, 200, 200, 401), kwargs=inventory_api(lambda: factories.sync_run(factories.registry()))
    ),
    "api:repository-list": Row((200, 200, 200, 200, 401)),
    "api:repository-detail": Row(
        (200, 200, 200, 200, 401), kwargs=inventory_api(lambda: factories.repository(factories.registry()))
    ),
    "api:artifact-list": Row((200, 200, 200, 200, 401)),
    "api:artifact-detail": Row(
        (200, 200, 200, 200, 401),
        kwargs=inventory_api(lambda: factories.artifact(factories.repository(factories.registry()))),
    ),
    "api:tag-list": Row((200, 200, 200, 200, 401)),
    "api:tag-detail": Row((200, 200, 200, 200, 401), kwargs=inventory_api(_inventory_tag)),
    # Access rules: reviewers read and ask the explorer, admins change rules; everyone sees their own access.
    "registries:rules": Row((200, 200, 403, 403, 302)),
    "registries:rule_add": Row((200, 403, 403, 403, 302)),
    "registries:rule_preview": Row(
        (200, 403, 403, 403, 302),
        method="post",
        data=lambda w: {"group": w.binding.group_id, "pattern": "team/**", "actions": ["pull"]},
    ),
    "registries:rule_detail": Row((200, 200, 403, 403, 302), kwargs=lambda w: {"rule_id": access_rule(w).pk}),
    "registries:rule_edit": Row((200, 403, 403, 403, 302), kwargs=lambda w: {"rule_id": access_rule(w).pk}),
    "registries:rule_delete": Row(
        (302, 403, 403, 403, 302), method="post", kwargs=lambda w: {"rule_id": access_rule(w).pk}
    ),
    "registries:explore": Row((200, 200, 403, 403, 302)),
    "registries:my_access": Row((200, 200, 200, 200, 302)),
    "registries:access_report": Row((200, 200, 403, 403, 302)),
    "api:access-rule-list": Row((200, 200, 403, 403, 401)),
    "api:access-rule-detail": Row((200, 200, 403, 403, 401), kwargs=lambda w: {"pk": access_rule(w).pk}),
    "api:access-user": Row((200, 200, 403, 403, 401), data=lambda w: {"user": w.token.owner.username}),
    "api:access-who-can": Row(
        (200, 200, 403, 403, 401),
        data=lambda w: {"registry": factories.registry().pk, "repository": "team/app", "action": "push"},
    ),
    "api:access-robots-who-can": Row(
        (200, 200, 403, 403, 401),
        data=lambda w: {"registry": factories.registry().pk, "repository": "team/app", "action": "pull"},
    ),
    "api:access-group-reach": Row((200, 200, 403, 403, 401), kwargs=group),
    "api:access-me": Row((200, 200, 200, 200, 401)),
    "api:access-report": Row((200, 200, 403, 403, 401)),
    # Registry-native credentials and grants name other people's keys: reviewers and admins only.
    "registries:credentials": Row((200, 200, 403, 403, 302)),
    "registries:credentials_export_csv": Row((200, 200, 403, 403, 302)),
    "registries:credentials_export_json": Row((200, 200, 403, 403, 302)),
    "api:registry-credential-export": Row((200, 200, 403, 403, 401)),
    "registries:findings_dashboard": Row((200, 200, 403, 403, 302)),
    "api:registry-credential-list": Row((200, 200, 403, 403, 401)),
    "api:registry-credential-detail": Row((200, 200, 403, 403, 401), kwargs=native_credential),
    "api:registry-grant-list": Row((200, 200, 403, 403, 401)),
    "api:registry-grant-detail": Row((200, 200, 403, 403, 401), kwargs=native_grant),
    # Offboarding API: reviewers read plans, offboardings and reports; only admins start, confirm and cancel.
    # (POST to api:offboarding-list, starting one, is checked per role in test_offboarding_api.py.)
    "api:offboarding-plan": Row((200, 200, 403, 403, 401), data=lambda w: {"person": w.token.owner_id}),
    "api:offboarding-list": Row((200, 200, 403, 403, 401)),
    "api:offboarding-detail": Row((200, 200, 403, 403, 401), kwargs=api_offboarding),
    "api:offboarding-confirm": Row((200, 403, 403, 403, 401), method="post", kwargs=api_offboarding),
    "api:offboarding-cancel": Row((200, 403, 403, 403, 401), method="post", kwargs=api_offboarding),
    "api:offboarding-report": Row((200, 200, 403, 403, 401), kwargs=api_offboarding),
    # Evidence for auditors: reviewers and admins; each download is audited (test_evidence.py).
    "registries:evidence": Row((200, 200, 403, 403, 302)),
    # Posture: the registries' own security settings, for reviewers and admins.
    "registries:posture": Row((200, 200, 403, 403, 302)),
    "registries:registry_posture": Row((200, 200, 403, 403, 302), kwargs=inventory_registry),
    "registries:evidence_bundle": Row((200, 200, 403, 403, 302), data=lambda w: EVIDENCE_PERIOD),
    "api:evidence-bundle": Row((200, 200, 403, 403, 401), data=lambda w: EVIDENCE_PERIOD),
    # Access reviews: reviewers and admins see every campaign; people asked to review items see those
    # campaigns (their items only), others get 404. Owner and admins open, close and apply.
    "registries:reviews": Row((200, 200, 200, 200, 302)),
    "registries:review_add": Row((200, 200, 403, 403, 302)),
    "registries:my_reviews": Row((200, 200, 200, 200, 302)),
    "registries:review": Row((200, 200, 200, 404, 302), kwargs=review_campaign),
    "registries:review_open": Row((302, 403, 403, 404, 302), method="post", kwargs=review_campaign),
    "registries:review_decide": Row(
        (302, 403, 302, 404, 302), method="post", kwargs=review_campaign, data=review_decision
    ),
    "registries:review_close": Row((200, 403, 403, 404, 302), kwargs=review_campaign),
    "registries:review_apply": Row((302, 403, 403, 404, 302), method="post", kwargs=review_campaign),
    "registries:review_report": Row((200, 200, 403, 404, 302), kwargs=review_campaign),
    "registries:review_report_csv": Row((200, 200, 403, 404, 302), kwargs=review_campaign),
    "registries:review_report_pdf": Row((200, 200, 403, 404, 302), kwargs=review_campaign),
    # Offboarding: admins search people, start, confirm and cancel; reviewers audit, so they read the
    # history, a person's plan (as the API lets them), each offboarding with its progress, and the report.
    "registries:offboardings": Row((200, 200, 403, 403, 302)),
    "registries:offboarding_plan": Row(
        (200, 200, 403, 403, 302), kwargs=lambda w: {"user_id": factories.user().pk}
    ),
    "registries:offboarding": Row((200, 200, 403, 403, 302), kwargs=planned_offboarding),
    "registries:offboarding_progress": Row((200, 200, 403, 403, 302), kwargs=planned_offboarding),
    "registries:offboarding_confirm": Row(
        (302, 403, 403, 403, 302), method="post", kwargs=planned_offboarding
    ),
    "registries:offboarding_cancel": Row(
        (302, 403, 403, 403, 302), method="post", kwargs=planned_offboarding
    ),
    "registries:offboarding_report": Row((200, 200, 403, 403, 302), kwargs=planned_offboarding),
    "registries:offboarding_report_csv": Row((200, 200, 403, 403, 302), kwargs=planned_offboarding),
}


def _named_patterns(patterns: list[URLPattern | URLResolver], namespace: str = "") -> Iterator[str]:
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            inner = f"{namespace}{pattern.namespace}:" if pattern.namespace else namespace
            yield from _named_patterns(pattern.url_patterns, inner)
        else:
            yield f"{namespace}{pattern.name}" if pattern.name else f"<unnamed {pattern.pattern}>"


def test_every_url_has_a_declared_expectation() -> None:
    declared = set(MATRIX)
    actual = set(_named_patterns(get_resolver().url_patterns))
    assert not actual - declared, f"URLs without a row in MATRIX: {sorted(actual - declared)}"
    assert not declared - actual, f"MATRIX rows for URLs that no longer exist: {sorted(declared - actual)}"


@pytest.fixture
def world(cast: dict[str, User | None]) -> World:
    users = dict(cast) | {"outsider": factories.user_with_role(Role.DEVELOPER)}
    developer = cast["developer"]
    assert developer is not None
    token, _ = factories.token(developer)
    extra_group = factories.group()
    binding = RoleBinding.objects.create(group=extra_group, role=Role.REVIEWER)
    event = AuditEvent.objects.order_by("sequence").first()
    assert event is not None  # creating the token recorded one
    return World(users=users, token=token, finding=factories.finding(), binding=binding, event=event)


@pytest.mark.parametrize("who", ROLES)
@pytest.mark.parametrize("name", sorted(MATRIX))
def test_role_gets_the_declared_status(name: str, who: str, world: World, client: Client) -> None:
    row = MATRIX[name]
    user = world.users[who]
    if user is not None:
        client.force_login(user)
    url = reverse(name, kwargs=row.kwargs(world))
    send = getattr(client, row.method)
    if name.startswith("api:"):
        response = send(url, data=row.data(world), content_type="application/json")
    else:
        response = send(url, data=row.data(world))
    expected = row.expect[ROLES.index(who)]
    assert response.status_code == expected, f"{who} {row.method.upper()} {url}: {response.status_code}"
