"""Portal roles: derived from directory-group bindings, strongest wins, nothing for people who left."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts import roles, services
from accounts.models import DirectoryGroup, RoleBinding, User
from accounts.roles import Role
from portal.audit import AuditAction
from portal.errors import RequestRejected
from portal.models import AuditEvent
from tests import factories

pytestmark = pytest.mark.django_db


def fresh(person: User) -> User:
    """The person reloaded: `role` is cached per instance, as it is per request."""
    return User.objects.get(pk=person.pk)


def bound_group(role: Role) -> DirectoryGroup:
    group = factories.group()
    RoleBinding.objects.create(group=group, role=role)
    return group


def test_the_ranks_are_ordered_developer_reviewer_admin() -> None:
    assert roles.at_least(Role.ADMIN, Role.REVIEWER)
    assert roles.at_least(Role.REVIEWER, Role.REVIEWER)
    assert not roles.at_least(Role.REVIEWER, Role.ADMIN)
    assert not roles.at_least(Role.DEVELOPER, Role.REVIEWER)
    assert roles.highest([]) == Role.DEVELOPER
    assert roles.highest(["reviewer", "admin", "developer"]) == Role.ADMIN


def test_someone_without_a_binding_is_a_developer() -> None:
    person = factories.user()
    factories.member(person, factories.group())  # a group with no role bound to it
    assert person.role == Role.DEVELOPER
    assert person.has_role(Role.DEVELOPER)
    assert not person.has_role(Role.REVIEWER)


@pytest.mark.parametrize("role", [Role.REVIEWER, Role.ADMIN])
def test_a_group_binding_gives_its_members_the_role(role: Role) -> None:
    person, bystander = factories.user(), factories.user()
    factories.member(person, bound_group(role))
    assert person.role == role
    assert person.has_role(role)
    assert bystander.role == Role.DEVELOPER


def test_the_strongest_of_several_bindings_wins() -> None:
    person = factories.user()
    factories.member(person, bound_group(Role.REVIEWER))
    assert fresh(person).role == Role.REVIEWER
    factories.member(person, bound_group(Role.ADMIN))
    assert fresh(person).role == Role.ADMIN
    assert fresh(person).has_role(Role.REVIEWER)  # an admin may do what a reviewer may


def test_a_group_bound_to_two_roles_gives_the_stronger() -> None:
    group = bound_group(Role.REVIEWER)
    RoleBinding.objects.create(group=group, role=Role.ADMIN)
    person = factories.user()
    factories.member(person, group)
    assert person.role == Role.ADMIN


def test_a_superuser_is_an_admin_without_any_group() -> None:
    person = factories.user(is_superuser=True)
    assert person.role == Role.ADMIN
    assert person.has_role(Role.ADMIN)


@pytest.mark.parametrize("status", [User.Status.DEPARTED, User.Status.DISABLED])
@pytest.mark.parametrize("superuser", [False, True])
def test_people_who_left_or_were_disabled_hold_no_role(status: str, superuser: bool) -> None:
    person = factories.user(is_superuser=superuser)
    factories.member(person, bound_group(Role.ADMIN))
    assert fresh(person).has_role(Role.ADMIN)
    User.objects.filter(pk=person.pk).update(status=status)
    gone = fresh(person)
    assert gone.role == Role.DEVELOPER
    assert not gone.has_role(Role.ADMIN)
    assert not gone.has_role(Role.REVIEWER)
    assert not gone.has_role(Role.DEVELOPER)  # not even the role everyone signed in holds


def test_the_role_costs_one_query_per_request_however_many_groups() -> None:
    person = factories.user()
    for _ in range(5):
        factories.member(person, bound_group(Role.REVIEWER))
    person = fresh(person)
    with CaptureQueriesContext(connection) as queries:
        assert person.role == Role.REVIEWER
        assert person.has_role(Role.REVIEWER)
        assert not person.has_role(Role.ADMIN)
    assert len(queries) == 1


def test_binding_a_role_is_audited(admin: User) -> None:
    group = factories.group()
    binding = services.bind_role(group, "reviewer", actor=admin)
    assert (binding.group, binding.role, binding.created_by) == (group, Role.REVIEWER, admin)
    event = AuditEvent.objects.get(action=AuditAction.ROLE_BINDING_CREATED)
    assert event.actor_id == admin.pk
    assert (event.target_type, event.target_id) == ("accounts.rolebinding", str(binding.pk))
    assert event.detail == {"group": group.external_id, "role": "reviewer"}


def test_the_system_can_bind_a_role() -> None:
    binding = services.bind_role(factories.group(), Role.ADMIN, actor=None)
    assert binding.created_by is None
    assert AuditEvent.objects.get(action=AuditAction.ROLE_BINDING_CREATED).actor_label == "system"


def test_binding_the_same_role_twice_is_rejected_with_a_message(admin: User) -> None:
    group = factories.group(display_name="Platform SREs")
    services.bind_role(group, Role.ADMIN, actor=admin)
    with pytest.raises(RequestRejected, match="^Platform SREs already holds the Admin role$"):
        services.bind_role(group, Role.ADMIN, actor=admin)
    assert RoleBinding.objects.filter(group=group).count() == 1
    assert AuditEvent.objects.filter(action=AuditAction.ROLE_BINDING_CREATED).count() == 1


def test_an_unknown_role_cannot_be_bound(admin: User) -> None:
    group = factories.group()
    with pytest.raises(ValueError, match="'owner' is not a valid Role"):
        services.bind_role(group, "owner", actor=admin)
    assert not RoleBinding.objects.filter(group=group).exists()


def test_unbinding_is_audited_and_takes_the_role_away(admin: User) -> None:
    group = factories.group()
    person = factories.user()
    factories.member(person, group)
    binding = services.bind_role(group, Role.REVIEWER, actor=admin)
    assert fresh(person).role == Role.REVIEWER
    binding_id = binding.pk
    services.unbind_role(binding, actor=admin)
    assert not RoleBinding.objects.filter(pk=binding_id).exists()
    assert fresh(person).role == Role.DEVELOPER
    event = AuditEvent.objects.get(action=AuditAction.ROLE_BINDING_DELETED)
    assert (event.actor_id, event.target_id) == (admin.pk, str(binding_id))
    assert event.detail == {"group": group.external_id, "role": "reviewer"}


def test_bindings_for_a_user_are_those_of_their_groups() -> None:
    person = factories.user()
    mine, other = bound_group(Role.REVIEWER), bound_group(Role.ADMIN)
    factories.member(person, mine)
    assert list(RoleBinding.objects.for_user(person).values_list("group", flat=True)) == [mine.pk]
    assert other.pk not in RoleBinding.objects.for_user(person).values_list("group", flat=True)
