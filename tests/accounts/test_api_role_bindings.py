"""/api/v1/role-bindings/ and /api/v1/groups/: admins grant and remove portal roles, reviewers read."""

from __future__ import annotations

import warnings

import pytest
from django.core.paginator import UnorderedObjectListWarning
from django.test import Client
from pytest_django import DjangoAssertNumQueries

from accounts.models import RoleBinding, User
from accounts.roles import Role
from portal.audit import AuditAction
from portal.models import AuditEvent
from tests import factories

pytestmark = pytest.mark.django_db

BINDINGS = "/api/v1/role-bindings/"


def test_an_admin_grants_a_role_to_a_group(client: Client, admin: User) -> None:
    group = factories.group(display_name="Security")
    person = factories.user()
    factories.member(person, group)
    client.force_login(admin)
    response = client.post(BINDINGS, {"group": group.pk, "role": "reviewer"}, content_type="application/json")
    assert response.status_code == 201
    body = response.json()
    binding = RoleBinding.objects.get(pk=body["id"])
    assert (binding.group, binding.role, binding.created_by) == (group, Role.REVIEWER, admin)
    assert (body["group"], body["group_name"], body["role"], body["created_by"]) == (
        group.pk,
        "Security",
        "reviewer",
        admin.username,
    )
    event = AuditEvent.objects.get(action=AuditAction.ROLE_BINDING_CREATED, target_id=str(binding.pk))
    assert event.actor_id == admin.pk
    assert User.objects.get(pk=person.pk).role == Role.REVIEWER


def test_granting_a_role_the_group_already_holds_is_a_400(client: Client, admin: User) -> None:
    group = factories.group(display_name="Platform")
    RoleBinding.objects.create(group=group, role=Role.ADMIN)
    client.force_login(admin)
    response = client.post(BINDINGS, {"group": group.pk, "role": "admin"}, content_type="application/json")
    assert response.status_code == 400
    error = response.json()["error"]
    # The service's message, the same the access page shows, not a generic unique-together one.
    assert (error["code"], error["message"]) == ("rejected", "Platform already holds the Admin role")
    assert RoleBinding.objects.filter(group=group).count() == 1
    assert not AuditEvent.objects.filter(action=AuditAction.ROLE_BINDING_CREATED).exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"group": 999999, "role": "admin"}, "group"),
        ({"role": "admin"}, "group"),
        ({"group": "mine", "role": "owner"}, "role"),
        ({"group": "mine"}, "role"),
    ],
)
def test_a_binding_needs_a_real_group_and_role(
    client: Client, admin: User, body: dict[str, object], field: str
) -> None:
    if body.get("group") == "mine":
        body["group"] = factories.group().pk
    client.force_login(admin)
    response = client.post(BINDINGS, body, content_type="application/json")
    assert response.status_code == 400
    assert field in response.json()["error"]["fields"]


def test_an_admin_removes_a_binding(client: Client, admin: User) -> None:
    group = factories.group()
    binding = RoleBinding.objects.create(group=group, role=Role.REVIEWER)
    client.force_login(admin)
    assert client.delete(f"{BINDINGS}{binding.pk}/").status_code == 204
    assert not RoleBinding.objects.filter(pk=binding.pk).exists()
    event = AuditEvent.objects.get(action=AuditAction.ROLE_BINDING_DELETED)
    assert (event.actor_id, event.target_id) == (admin.pk, str(binding.pk))
    assert event.detail == {"group": group.external_id, "role": "reviewer"}


def test_removing_a_missing_binding_is_a_404(client: Client, admin: User) -> None:
    client.force_login(admin)
    response = client.delete(f"{BINDINGS}999999/")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_a_reviewer_reads_bindings_but_changes_none(client: Client, reviewer: User) -> None:
    group = factories.group()
    binding = RoleBinding.objects.create(group=group, role=Role.REVIEWER)
    client.force_login(reviewer)
    listed = client.get(BINDINGS).json()["results"]
    assert binding.pk in [b["id"] for b in listed]
    created = client.post(BINDINGS, {"group": group.pk, "role": "admin"}, content_type="application/json")
    deleted = client.delete(f"{BINDINGS}{binding.pk}/")
    assert created.status_code == deleted.status_code == 403
    assert list(RoleBinding.objects.filter(group=group)) == [
        binding
    ]  # reviewers cannot make themselves admins


def test_an_admins_read_only_token_cannot_grant_roles(client: Client, admin: User) -> None:
    _, secret = factories.token(admin, scopes=["read"])
    group = factories.group()
    response = client.post(
        BINDINGS,
        {"group": group.pk, "role": "admin"},
        content_type="application/json",
        headers={"Authorization": f"Bearer {secret}"},
    )
    assert response.status_code == 403
    assert not RoleBinding.objects.filter(group=group).exists()


def test_bindings_filter_by_role(client: Client, reviewer: User, admin: User) -> None:
    client.force_login(reviewer)
    everything = client.get(BINDINGS).json()["results"]
    admins = client.get(f"{BINDINGS}?role=admin").json()["results"]
    assert {b["role"] for b in everything} == {"admin", "reviewer"}
    assert {b["role"] for b in admins} == {"admin"}


def test_groups_list_their_member_count_and_roles(client: Client, reviewer: User) -> None:
    group = factories.group(display_name="Payments")
    for _ in range(3):
        factories.member(factories.user(), group)
    RoleBinding.objects.create(group=group, role=Role.ADMIN)
    client.force_login(reviewer)
    body = client.get(f"/api/v1/groups/{group.pk}/").json()
    assert (body["display_name"], body["members"], body["roles"]) == ("Payments", 3, ["admin"])
    searched = client.get("/api/v1/groups/?search=paym").json()["results"]
    assert [g["id"] for g in searched] == [group.pk]


def test_groups_are_listed_in_name_order(client: Client, reviewer: User) -> None:
    for name in ("delta", "alpha", "charlie", "bravo"):
        factories.group(display_name=f"zz-{name}")
    client.force_login(reviewer)
    with warnings.catch_warnings():
        # Counting members groups the query, and Django then drops Meta.ordering: pages would shuffle.
        warnings.simplefilter("error", UnorderedObjectListWarning)
        results = client.get("/api/v1/groups/?search=zz-").json()["results"]
    assert [g["display_name"] for g in results] == ["zz-alpha", "zz-bravo", "zz-charlie", "zz-delta"]


def test_the_group_list_query_budget_does_not_grow_with_rows(
    client: Client, reviewer: User, django_assert_num_queries: DjangoAssertNumQueries
) -> None:
    def add_groups(count: int) -> None:
        for _ in range(count):
            group = factories.group()
            factories.member(factories.user(), group)
            RoleBinding.objects.create(group=group, role=Role.REVIEWER)

    client.force_login(reviewer)
    add_groups(2)
    # session, user, role, count, page, role bindings prefetch
    with django_assert_num_queries(6):
        assert client.get("/api/v1/groups/").status_code == 200
    add_groups(20)
    with django_assert_num_queries(6):
        assert client.get("/api/v1/groups/").status_code == 200
