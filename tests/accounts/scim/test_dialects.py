"""Replays of the request sequences Entra ID and Okta send, quirks included (identity.md §8.7).

Each sequence is a list of steps run in order through one connection. A step names what it sends,
the status it must get, optionally the id to remember (as {name} in later paths and bodies), and a
check of the reply. The final database state is asserted after each replay.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from accounts.models import DirectoryGroup, GroupMembership, PersonalToken, Source, User
from portal.models import AuditEvent
from tests import factories
from tests.accounts.scim.conftest import ENTERPRISE, GROUP_SCHEMA, PATCH_OP, USER_SCHEMA, Reply, Scim

MS_GROUP_SCHEMA = "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group"
ENTRA_OID = "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef"
ENTRA_GROUP_OID = "8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159"
OKTA_ID = "00ujl29u0le5T6Aj10h7"


@dataclass(frozen=True)
class Step:
    method: str
    path: str
    body: Any = None
    expect: int = 200
    capture: str = ""
    check: Callable[[Reply], bool] = lambda reply: True


def ops(*operations: dict[str, Any]) -> dict[str, Any]:
    return {"schemas": [PATCH_OP], "Operations": list(operations)}


def _fill(value: Any, ids: dict[str, str]) -> Any:
    if isinstance(value, str):
        return value.format_map(ids) if "{" in value else value
    if isinstance(value, list):
        return [_fill(item, ids) for item in value]
    if isinstance(value, dict):
        return {key: _fill(item, ids) for key, item in value.items()}
    return value


def replay(scim: Scim, steps: list[Step], ids: dict[str, str] | None = None) -> dict[str, str]:
    ids = dict(ids or {})
    for number, step in enumerate(steps, 1):
        path = _fill(step.path, ids)
        reply = scim.send(step.method, path, _fill(step.body, ids))
        where = f"step {number}: {step.method} {path}"
        assert reply.status == step.expect, f"{where} → {reply.status} {reply.body}"
        assert step.check(reply), f"{where}: check failed on {reply.body}"
        if step.capture:
            ids[step.capture] = reply.body["id"]
    return ids


def total(n: int) -> Callable[[Reply], bool]:
    return lambda reply: reply.body["totalResults"] == n and isinstance(reply.body["itemsPerPage"], int)


# -------------------------------------------------------------------------------------------- Entra ID

ENTRA_USER_NAME = "Test_User_ab6490ee-1e48-479e-a20b-2d77186b5dd1@contoso.example"

ENTRA_USER_LIFECYCLE = [
    # Connection test and the matching query before a create.
    Step("GET", '/Users?filter=userName eq "Test_User_dfeef4c5-5681-4387-b016-bdf221e82081"', check=total(0)),
    Step("GET", f'/Users?filter=userName eq "{ENTRA_USER_NAME}"', check=total(0)),
    Step(
        "POST",
        "/Users",
        {
            "schemas": [USER_SCHEMA, ENTERPRISE],
            "externalId": ENTRA_OID,
            "userName": ENTRA_USER_NAME,
            "active": True,
            "emails": [{"primary": True, "type": "work", "value": "Test_User_fd0e@contoso.example"}],
            "meta": {"resourceType": "User"},
            "name": {
                "formatted": "givenName familyName",
                "familyName": "familyName",
                "givenName": "givenName",
            },
            "roles": [],
        },
        expect=201,
        capture="user",
        check=lambda r: r.body["externalId"] == ENTRA_OID and r.body["active"] is True,
    ),
    Step("GET", "/Users/{user}", check=lambda r: r.body["userName"] == ENTRA_USER_NAME),
    Step("GET", f'/Users?filter=userName eq "{ENTRA_USER_NAME}"', check=total(1)),
    Step("GET", f'/Users?filter=externalId eq "{ENTRA_OID}"', check=total(1)),
    Step(
        "PATCH",
        "/Users/{user}",
        ops(
            {
                "op": "Replace",
                "path": 'emails[type eq "work"].value',
                "value": "updatedEmail@contoso.example",
            },
            {"op": "Replace", "path": "name.familyName", "value": "updatedFamilyName"},
            {"op": "Add", "path": f"{ENTERPRISE}:department", "value": "Research"},
        ),
        check=lambda r: r.body["emails"][0]["value"] == "updatedEmail@contoso.example",
    ),
    Step(
        "GET", '/Users?filter=emails[type eq "work"].value eq "updatedEmail@contoso.example"', check=total(1)
    ),
    # Unassigned or disabled in Entra: the soft delete, "False" as a string, capitalised op.
    Step(
        "PATCH",
        "/Users/{user}",
        ops({"op": "Replace", "path": "active", "value": "False"}),
        check=lambda r: r.body["active"] is False,
    ),
    Step("GET", "/Users/{user}", check=lambda r: r.body["active"] is False),  # soft-deleted stays readable
    # Thirty days on, the hard delete.
    Step("DELETE", "/Users/{user}", expect=204),
    Step("GET", "/Users/{user}", expect=404),
    Step("GET", f'/Users?filter=userName eq "{ENTRA_USER_NAME}"', check=total(0)),
]


def test_entra_user_lifecycle(scim: Scim) -> None:
    ids = replay(scim, ENTRA_USER_LIFECYCLE)
    user = User.objects.get(scim_id=ids["user"])
    assert (user.status, user.is_active, user.source, user.directory) == (
        User.Status.DEPARTED,
        False,
        Source.SCIM,
        "corp",
    )
    assert user.last_name == "updatedFamilyName"
    assert user.email == "updatedEmail@contoso.example"
    assert user.directory_attributes[ENTERPRISE] == {"department": "Research"}
    assert user.external_id  # kept: registries still name the departed person by it
    assert user.username == f"deleted-{ids['user']}"
    actions = list(
        AuditEvent.objects.filter(target_id=str(user.pk), target_type="accounts.user")
        .order_by("sequence")
        .values_list("action", flat=True)
    )
    assert actions[:2] == ["user.create", "user.update"]
    assert {"user.disable", "user.depart", "user.delete"} <= set(actions)


ENTRA_GROUP_LIFECYCLE = [
    Step(
        "GET",
        '/Groups?excludedAttributes=members&filter=displayName eq "displayName"',
        check=total(0),
    ),
    Step(
        "POST",
        "/Groups",
        {
            "schemas": [GROUP_SCHEMA, MS_GROUP_SCHEMA],
            "externalId": ENTRA_GROUP_OID,
            "displayName": "displayName",
            "meta": {"resourceType": "Group"},
        },
        expect=201,
        capture="group",
        check=lambda r: r.body["externalId"] == ENTRA_GROUP_OID,
    ),
    Step("GET", "/Groups/{group}?excludedAttributes=members", check=lambda r: "members" not in r.body),
    Step(
        "GET",
        '/Groups?excludedAttributes=members&filter=displayName eq "displayName"',
        check=lambda r: r.body["totalResults"] == 1 and "members" not in r.body["Resources"][0],
    ),
    Step(
        "PATCH",
        "/Groups/{group}",
        ops({"op": "Replace", "path": "displayName", "value": "Renamed"}),
        expect=204,
    ),
    Step(
        "PATCH",
        "/Groups/{group}",
        ops(
            {
                "op": "Add",
                "path": "members",
                "value": [{"$ref": None, "value": "{u1}"}, {"$ref": None, "value": "{u2}"}],
            }
        ),
        expect=204,
    ),
    Step(
        "PATCH",
        "/Groups/{group}",
        ops({"op": "Add", "path": "members", "value": [{"$ref": None, "value": "{u3}"}]}),
        expect=204,
    ),
    Step("GET", '/Groups?filter=members[value eq "{u1}"]', check=total(1)),
    # Without the aadOptscim062020 flag: Remove + path members + a value list. Only u1 goes.
    Step(
        "PATCH",
        "/Groups/{group}",
        ops({"op": "Remove", "path": "members", "value": [{"$ref": None, "value": "{u1}"}]}),
        expect=204,
    ),
    Step(
        "GET",
        "/Groups/{group}",
        check=lambda r: len(r.body["members"]) == 2 and r.body["displayName"] == "Renamed",
    ),
]


def _people(scim: Scim, count: int) -> dict[str, str]:
    ids = {}
    for n in range(1, count + 1):
        name = factories.unique("member") + "@contoso.example"
        reply = scim.post(
            "/Users", {"schemas": [USER_SCHEMA], "userName": name, "externalId": name, "active": True}
        )
        ids[f"u{n}"] = reply.body["id"]
    return ids


def test_entra_group_lifecycle(scim: Scim) -> None:
    people = _people(scim, 3)
    ids = replay(scim, ENTRA_GROUP_LIFECYCLE, people)
    group = DirectoryGroup.objects.get(scim_id=ids["group"])
    assert (group.display_name, group.external_id, group.source, group.directory) == (
        "Renamed",
        ENTRA_GROUP_OID,
        Source.SCIM,
        "corp",
    )
    members = GroupMembership.objects.filter(group=group)
    assert {str(m.user.scim_id) for m in members} == {people["u2"], people["u3"]}
    assert {m.source for m in members} == {Source.SCIM}
    replay(
        scim, [Step("DELETE", "/Groups/{group}", expect=204), Step("GET", "/Groups/{group}", expect=404)], ids
    )
    assert not DirectoryGroup.objects.filter(pk=group.pk).exists()
    assert User.objects.filter(scim_id__in=people.values(), status=User.Status.ACTIVE).count() == 3


ENTRA_FLAGGED_UPDATES = [
    # With the aadOptscim062020 flag: lowercase ops, real booleans, one no-path multi-attribute replace.
    Step(
        "PATCH",
        "/Users/{user}",
        ops(
            {
                "op": "replace",
                "value": {
                    "displayName": "Ada King",
                    "name.givenName": "Augusta",
                    "name.familyName": "King",
                    f"{ENTERPRISE}:employeeNumber": "1815",
                    f"{ENTERPRISE}:manager": "boss-id",
                    'emails[type eq "work"].value': "ada.king@contoso.example",
                },
            }
        ),
        check=lambda r: r.body["name"]["givenName"] == "Augusta" and r.body["displayName"] == "Ada King",
    ),
    Step("PATCH", "/Users/{user}", ops({"op": "replace", "path": "active", "value": False})),
    Step("PATCH", "/Users/{user}", ops({"op": "replace", "path": "active", "value": True})),
    Step(
        "PATCH",
        "/Groups/{group}",
        ops({"op": "add", "path": "members", "value": [{"value": "{user}"}]}),
        expect=204,
    ),
    Step("PATCH", "/Groups/{group}", ops({"op": "remove", "path": 'members[value eq "{user}"]'}), expect=204),
]


def test_entra_with_the_2020_flag(scim: Scim) -> None:
    user_id = scim.post(
        "/Users", {"schemas": [USER_SCHEMA], "userName": "ada@contoso.example", "externalId": "oid-ada"}
    ).body["id"]
    token, _ = factories.token(User.objects.get(scim_id=user_id))
    group_id = scim.post("/Groups", {"displayName": "Flagged", "externalId": "oid-flagged"}).body["id"]
    replay(scim, ENTRA_FLAGGED_UPDATES, {"user": user_id, "group": group_id})
    user = User.objects.get(scim_id=user_id)
    assert (user.first_name, user.last_name, user.display_name) == ("Augusta", "King", "Ada King")
    assert user.email == "ada.king@contoso.example"
    assert user.directory_attributes[ENTERPRISE] == {
        "employeeNumber": "1815",
        "manager": {"value": "boss-id"},
    }
    assert user.status == User.Status.ACTIVE
    token.refresh_from_db()
    assert token.revoked_at is not None  # re-enabling does not bring revoked tokens back
    assert not GroupMembership.objects.filter(user=user).exists()


# ------------------------------------------------------------------------------------------------ Okta

OKTA_USER = {
    "schemas": [USER_SCHEMA],
    "userName": "test.user@okta.local",
    "name": {"givenName": "Test", "familyName": "User"},
    "emails": [{"primary": True, "value": "test.user@okta.local", "type": "work"}],
    "displayName": "Test User",
    "locale": "en-US",
    "externalId": OKTA_ID,
    "groups": [],
    "password": "1mz050nq",
    "active": True,
}


def _okta_put(**changes: Any) -> dict[str, Any]:
    body = {**OKTA_USER, "id": "{user}", **changes}
    body.pop("password")
    return body


OKTA_USER_LIFECYCLE = [
    Step("GET", "/Users?startIndex=1&count=2", check=lambda r: r.body["startIndex"] == 1),
    Step("GET", '/Users?filter=userName eq "test.user@okta.local"&startIndex=1&count=100', check=total(0)),
    Step("POST", "/Users", OKTA_USER, expect=201, capture="user", check=lambda r: "password" not in r.body),
    Step("GET", "/Users/{user}", check=lambda r: r.body["locale"] == "en-US" and r.body["groups"] == []),
    # App Integration Wizard apps update with PUT of the whole user; no `active` in this one.
    Step(
        "PUT",
        "/Users/{user}",
        {
            key: value
            for key, value in _okta_put(name={"givenName": "Tess", "familyName": "User"}).items()
            if key != "active"
        },
        check=lambda r: r.body["name"]["givenName"] == "Tess" and r.body["active"] is True,
    ),
    # Deactivate: no path, a value object (OIN apps).
    Step(
        "PATCH",
        "/Users/{user}",
        ops({"op": "replace", "value": {"active": False}}),
        check=lambda r: r.body["active"] is False,
    ),
    Step(
        "PATCH",
        "/Users/{user}",
        ops({"op": "replace", "value": {"active": True}}),
        check=lambda r: r.body["active"] is True,
    ),
    # Deactivate, AIW style: PUT with active false.
    Step(
        "PUT",
        "/Users/{user}",
        _okta_put(active=False, name={"givenName": "Tess", "familyName": "User"}),
        check=lambda r: r.body["active"] is False,
    ),
    Step("GET", '/Users?filter=userName eq "test.user@okta.local"&startIndex=1&count=100', check=total(1)),
]


def test_okta_user_lifecycle(scim: Scim) -> None:
    ids = replay(scim, OKTA_USER_LIFECYCLE)
    user = User.objects.get(scim_id=ids["user"])
    assert (user.external_id, user.first_name, user.status) == (OKTA_ID, "Tess", User.Status.DISABLED)
    assert not user.has_usable_password()  # Okta's pushed password is never stored
    assert "password" not in user.directory_attributes
    assert PersonalToken.objects.filter(owner=user).count() == 0


OKTA_GROUP_LIFECYCLE = [
    Step("GET", "/Groups?startIndex=1&count=100", check=total(0)),
    Step(
        "POST",
        "/Groups",
        {"schemas": [GROUP_SCHEMA], "displayName": "Test SCIMv2", "members": []},
        expect=201,
        capture="group",
        check=lambda r: "externalId" not in r.body and r.body["members"] == [],
    ),
    Step("GET", "/Groups/{group}", check=lambda r: r.body["displayName"] == "Test SCIMv2"),
    Step(
        "PATCH",
        "/Groups/{group}",
        ops({"op": "replace", "value": {"id": "{group}", "displayName": "Another Name"}}),
        expect=204,
    ),
    Step(
        "PATCH",
        "/Groups/{group}",
        ops(
            {"op": "replace", "value": {"id": "{group}", "displayName": "Another Name"}},
            {
                "op": "add",
                "path": "members",
                "value": [{"value": "{u1}", "display": "one"}, {"value": "{u2}", "display": "two"}],
            },
        ),
        expect=204,
    ),
    Step("PATCH", "/Groups/{group}", ops({"op": "remove", "path": 'members[value eq "{u1}"]'}), expect=204),
    Step(
        "PATCH",
        "/Groups/{group}",
        ops(
            {
                "op": "replace",
                "path": "members",
                "value": [{"value": "{u2}", "display": "two"}, {"value": "{u3}", "display": "three"}],
            }
        ),
        expect=204,
    ),
    Step(
        "GET", "/Groups?startIndex=1&count=100", check=lambda r: len(r.body["Resources"][0]["members"]) == 2
    ),
    Step("GET", "/Users/{u3}", check=lambda r: r.body["groups"][0]["display"] == "Another Name"),
]


def test_okta_group_lifecycle(scim: Scim) -> None:
    people = _people(scim, 3)
    ids = replay(scim, OKTA_GROUP_LIFECYCLE, people)
    group = DirectoryGroup.objects.get(scim_id=ids["group"])
    assert group.display_name == "Another Name"
    assert group.external_id == ids["group"]
    assert {str(u) for u in group.members.values_list("scim_id", flat=True)} == {people["u2"], people["u3"]}
    replay(scim, [Step("DELETE", "/Groups/{group}", expect=204)], ids)
    assert not DirectoryGroup.objects.filter(scim_id=ids["group"]).exists()
