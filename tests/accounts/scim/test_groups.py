"""/Groups beyond the matrix and the replays: linking, membership sources, validation, deletion."""

from __future__ import annotations

import contextlib
import threading
from typing import Any
from unittest import mock

import pytest
from django.db import connection as db_connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from accounts.models import DirectoryGroup, GroupMembership, RoleBinding, Source, User
from accounts.roles import Role
from accounts.scim import resources
from portal.models import AuditEvent
from tests import factories
from tests.accounts.scim.conftest import Scim, connection, error_of, new_user


def person(scim: Scim) -> str:
    return str(scim.post("/Users", new_user(factories.unique("p") + "@corp.example")).body["id"])


def test_a_group_sign_ins_created_is_linked_by_external_id(scim: Scim) -> None:
    claimed = factories.group(directory="corp", external_id="grp-oid", display_name="From a claim")
    reply = scim.post("/Groups", {"displayName": "Engineers", "externalId": "grp-oid"})
    assert reply.status == 201
    assert reply.body["id"] == str(claimed.scim_id)
    claimed.refresh_from_db()
    assert claimed.display_name == "Engineers"
    assert DirectoryGroup.objects.filter(external_id="grp-oid").count() == 1


def test_a_duplicate_group_post_is_409(scim: Scim) -> None:
    scim.post("/Groups", {"displayName": "Once", "externalId": "grp-once"})
    assert error_of(scim.post("/Groups", {"displayName": "Twice", "externalId": "grp-once"})) == (
        "409",
        "uniqueness",
    )


def test_scim_takes_over_memberships_a_sign_in_made(scim: Scim) -> None:
    user_id = person(scim)
    group = factories.group(directory="corp", external_id="grp-shared", source=Source.OIDC)
    GroupMembership.objects.create(user=User.objects.get(scim_id=user_id), group=group, source=Source.OIDC)
    scim.post("/Groups", {"displayName": "Shared", "externalId": "grp-shared"})
    scim.patch(f"/Groups/{group.scim_id}", {"op": "add", "path": "members", "value": [{"value": user_id}]})
    membership = GroupMembership.objects.get(group=group)
    assert membership.source == Source.SCIM  # later sign-ins leave it alone


def test_members_must_be_people_of_this_directory(scim: Scim) -> None:
    group_id = scim.post("/Groups", {"displayName": "Strict"}).body["id"]
    for value in ("not-a-uuid", "6f1f2f1e-0000-4000-8000-000000000000"):
        reply = scim.patch(
            f"/Groups/{group_id}", {"op": "add", "path": "members", "value": [{"value": value}]}
        )
        assert error_of(reply) == ("400", "invalidValue")
    assert not GroupMembership.objects.filter(group__scim_id=group_id).exists()


def test_put_replaces_name_and_members(scim: Scim) -> None:
    u1, u2 = person(scim), person(scim)
    group_id = scim.post("/Groups", {"displayName": "Before", "members": [{"value": u1}]}).body["id"]
    reply = scim.put(
        f"/Groups/{group_id}", {"id": group_id, "displayName": "After", "members": [{"value": u2}]}
    )
    assert reply.status == 200
    assert reply.body["displayName"] == "After"
    assert [m["value"] for m in reply.body["members"]] == [u2]


def test_group_filters(scim: Scim) -> None:
    u1 = person(scim)
    a = scim.post("/Groups", {"displayName": "Alpha", "externalId": "g-a", "members": [{"value": u1}]}).body[
        "id"
    ]
    b = scim.post("/Groups", {"displayName": "Beta", "externalId": "g-b"}).body["id"]
    cases = {
        'displayName eq "alpha"': [a],
        'externalId eq "g-b"': [b],
        f'members[value eq "{u1}"]': [a],
        f'members.value eq "{u1}" or displayName eq "Beta"': [a, b],
        f'id eq "{b}"': [b],
    }
    for query, expected in cases.items():
        found = [r["id"] for r in scim.get(f"/Groups?filter={query}").body["Resources"]]
        assert sorted(found) == sorted(expected), query
    assert error_of(scim.get('/Groups?filter=description co "x"')) == ("400", "invalidFilter")


def test_deleted_people_leave_their_groups(scim: Scim) -> None:
    u1, u2 = person(scim), person(scim)
    group_id = scim.post("/Groups", {"displayName": "Team", "members": [{"value": u1}, {"value": u2}]}).body[
        "id"
    ]
    scim.delete(f"/Users/{u1}")
    assert [m["value"] for m in scim.get(f"/Groups/{group_id}").body["members"]] == [u2]


def test_deleting_a_group_is_audited_with_its_role_bindings(scim: Scim) -> None:
    group_id = scim.post("/Groups", {"displayName": "Admins", "externalId": "g-admins"}).body["id"]
    group = DirectoryGroup.objects.get(scim_id=group_id)
    RoleBinding.objects.create(group=group, role=Role.ADMIN)
    assert scim.delete(f"/Groups/{group_id}").status == 204
    event = AuditEvent.objects.get(action="group.delete")
    assert event.detail["role_bindings"] == ["admin"]
    assert event.detail["token"] == scim.token.name
    assert not RoleBinding.objects.filter(group_id=group.pk).exists()


def test_membership_changes_are_audited(scim: Scim) -> None:
    u1 = person(scim)
    group_id = scim.post("/Groups", {"displayName": "Audited"}).body["id"]
    scim.patch(f"/Groups/{group_id}", {"op": "add", "path": "members", "value": [{"value": u1}]})
    scim.patch(f"/Groups/{group_id}", {"op": "remove", "path": "members"})
    events = AuditEvent.objects.filter(action="group.update").order_by("sequence")
    assert [(e.detail["members_added"], e.detail["members_removed"]) for e in events] == [
        ([u1], []),
        ([], [u1]),
    ]


def test_group_list_queries_do_not_grow_with_rows(scim: Scim) -> None:
    def groups(count: int) -> None:
        for _ in range(count):
            scim.post("/Groups", {"displayName": factories.unique("G"), "members": [{"value": person(scim)}]})

    def queries(path: str) -> int:
        with CaptureQueriesContext(db_connection) as captured:
            assert scim.get(path).status == 200
        return len(captured)

    groups(2)
    few, lean = queries("/Groups"), queries("/Groups?excludedAttributes=members")
    groups(10)
    assert queries("/Groups") == few == 6  # token, last-used, count, page, members, the log row
    assert queries("/Groups?excludedAttributes=members") == lean == 5  # members never loaded


@pytest.mark.django_db(transaction=True)
def test_parallel_member_patches_do_not_undo_each_other() -> None:
    """Entra sends membership PATCHes for one group in parallel; each must see the other's result.

    Each PATCH reads the member list, edits it and writes it back. The first to read waits briefly
    for the second to read too: without the row lock both would read the same list, and the later
    write would drop the earlier one's member.
    """
    scim = connection(Client(), directory="corp")
    u1, u2 = person(scim), person(scim)
    group_id = scim.post("/Groups", {"displayName": "Busy"}).body["id"]
    reading, read = threading.Barrier(2, timeout=1), resources.group_document

    def slow_read(group: DirectoryGroup, **kwargs: Any) -> dict[str, Any]:
        doc = read(group, **kwargs)
        with contextlib.suppress(threading.BrokenBarrierError):
            reading.wait()  # the lock keeps the other PATCH from reading: this times out
        return doc

    def add(user_id: str) -> None:
        try:
            Scim(Client(), scim.secret, scim.token).patch(
                f"/Groups/{group_id}", {"op": "add", "path": "members", "value": [{"value": user_id}]}
            )
        finally:
            db_connection.close()

    with mock.patch.object(resources, "group_document", slow_read):
        threads = [threading.Thread(target=add, args=(user_id,)) for user_id in (u1, u2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert {m["value"] for m in scim.get(f"/Groups/{group_id}").body["members"]} == {u1, u2}
