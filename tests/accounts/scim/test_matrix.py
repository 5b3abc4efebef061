"""identity.md §8.9, the minimum SCIM test matrix, one test per row (numbered as there)."""

from __future__ import annotations

import pytest
from django.test import Client

from accounts.models import PersonalToken, Source, User
from tests import factories
from tests.accounts.scim.conftest import ENTERPRISE, Scim, connection, error_of, new_user


def create(scim: Scim, user_name: str, **extra: object) -> str:
    reply = scim.post("/Users", new_user(user_name, **extra))
    assert reply.status == 201, reply.body
    return str(reply.body["id"])


def group_of(scim: Scim, *member_ids: str) -> str:
    reply = scim.post(
        "/Groups", {"displayName": factories.unique("Team"), "members": [{"value": m} for m in member_ids]}
    )
    assert reply.status == 201, reply.body
    return str(reply.body["id"])


def member_ids(scim: Scim, group_id: str) -> set[str]:
    return {m["value"] for m in scim.get(f"/Groups/{group_id}").body["members"]}


def test_01_filter_without_match_is_an_empty_list(scim: Scim) -> None:
    reply = scim.get('/Users?filter=userName eq "nobody"')
    assert reply.status == 200
    assert reply.body["totalResults"] == 0
    assert reply.body["Resources"] == []
    assert type(reply.body["totalResults"]) is int
    assert type(reply.body["startIndex"]) is int


def test_02_username_clash_differing_in_case_is_409_uniqueness(scim: Scim) -> None:
    create(scim, "Ada@corp.example")
    reply = scim.post("/Users", new_user("ada@CORP.example"))
    assert reply.status == 409
    assert error_of(reply) == ("409", "uniqueness")
    assert User.objects.filter(username__iexact="ada@corp.example").count() == 1


def _with_personal_token(scim: Scim, user_name: str) -> tuple[str, PersonalToken]:
    user_id = create(scim, user_name)
    token, _ = factories.token(User.objects.get(scim_id=user_id))
    return user_id, token


def _assert_cut_off(user_id: str, token: PersonalToken) -> None:
    user = User.objects.get(scim_id=user_id)
    assert (user.status, user.is_active, user.may_sign_in) == (User.Status.DISABLED, False, False)
    token.refresh_from_db()
    assert token.revoked_at is not None


def test_03_entra_replace_active_string_false_deactivates(scim: Scim) -> None:
    user_id, token = _with_personal_token(scim, "grace@corp.example")
    reply = scim.patch(f"/Users/{user_id}", {"op": "Replace", "path": "active", "value": "False"})
    assert reply.status == 200
    assert reply.body["active"] is False
    _assert_cut_off(user_id, token)


def test_04_okta_no_path_active_false_deactivates(scim: Scim) -> None:
    user_id, token = _with_personal_token(scim, "linus@corp.example")
    reply = scim.patch(f"/Users/{user_id}", {"op": "replace", "value": {"active": False}})
    assert reply.status == 200
    assert reply.body["active"] is False
    _assert_cut_off(user_id, token)


def test_05_okta_put_replaces_the_whole_user(scim: Scim) -> None:
    user_id = create(scim, "barbara@corp.example", displayName="Barbara L", title="Engineer")
    body = new_user("barbara@corp.example", externalId=scim.get(f"/Users/{user_id}").body["externalId"])
    body["id"] = user_id  # Okta echoes the read-only id
    body["name"] = {"givenName": "Babs", "familyName": "Liskov"}
    del body["active"]  # and a missing `active` must not deactivate anyone
    reply = scim.put(f"/Users/{user_id}", body)
    assert reply.status == 200, reply.body
    user = User.objects.get(scim_id=user_id)
    assert (user.first_name, user.last_name) == ("Babs", "Liskov")
    assert user.display_name == ""
    assert "title" not in user.directory_attributes
    assert user.status == User.Status.ACTIVE
    assert reply.body["active"] is True


def test_06_entra_legacy_remove_with_value_list_removes_only_those(scim: Scim) -> None:
    u1, u2, u3 = (create(scim, factories.unique("m") + "@corp.example") for _ in range(3))
    group_id = group_of(scim, u1, u2, u3)
    reply = scim.patch(f"/Groups/{group_id}", {"op": "Remove", "path": "members", "value": [{"value": u1}]})
    assert reply.status == 204
    assert member_ids(scim, group_id) == {u2, u3}


def test_07_remove_by_value_filter_removes_only_that_member(scim: Scim) -> None:
    u1, u2, u3 = (create(scim, factories.unique("m") + "@corp.example") for _ in range(3))
    group_id = group_of(scim, u1, u2, u3)
    reply = scim.patch(f"/Groups/{group_id}", {"op": "remove", "path": f'members[value eq "{u2}"]'})
    assert reply.status == 204
    assert member_ids(scim, group_id) == {u1, u3}


def test_08_remove_without_path_is_400_no_target(scim: Scim) -> None:
    user_id = create(scim, "nopath@corp.example")
    reply = scim.patch(f"/Users/{user_id}", {"op": "remove", "value": {"displayName": "x"}})
    assert reply.status == 400
    assert error_of(reply) == ("400", "noTarget")


def test_09_no_path_replace_with_dotted_and_urn_keys(scim: Scim) -> None:
    user_id = create(scim, "dotted@corp.example")
    reply = scim.patch(
        f"/Users/{user_id}",
        {"op": "replace", "value": {"name.givenName": "Augusta", f"{ENTERPRISE}:employeeNumber": "1815"}},
    )
    assert reply.status == 200, reply.body
    user = User.objects.get(scim_id=user_id)
    assert user.first_name == "Augusta"
    assert user.last_name == "Lovelace"
    assert user.directory_attributes[ENTERPRISE] == {"employeeNumber": "1815"}
    assert reply.body[ENTERPRISE]["employeeNumber"] == "1815"
    assert ENTERPRISE in reply.body["schemas"]


def test_10_okta_rename_with_id_in_value(scim: Scim) -> None:
    group_id = group_of(scim)
    reply = scim.patch(
        f"/Groups/{group_id}", {"op": "replace", "value": {"id": group_id, "displayName": "Renamed"}}
    )
    assert reply.status == 204
    renamed = scim.get(f"/Groups/{group_id}").body
    assert (renamed["id"], renamed["displayName"]) == (group_id, "Renamed")


def test_10b_a_different_id_in_value_is_400_mutability(scim: Scim) -> None:
    group_id = group_of(scim)
    other = "6f1f2f1e-0000-4000-8000-000000000000"
    reply = scim.patch(f"/Groups/{group_id}", {"op": "replace", "value": {"id": other, "displayName": "X"}})
    assert error_of(reply) == ("400", "mutability")
    assert scim.get(f"/Groups/{group_id}").body["displayName"] != "X"


def test_11_patch_is_all_or_nothing(scim: Scim) -> None:
    user_id = create(scim, "atomic@corp.example", displayName="Before")
    reply = scim.patch(
        f"/Users/{user_id}",
        {"op": "replace", "path": "displayName", "value": "After"},
        {"op": "replace", "path": "active", "value": "perhaps"},
    )
    assert reply.status == 400
    assert error_of(reply) == ("400", "invalidValue")
    assert User.objects.get(scim_id=user_id).display_name == "Before"


def test_12_excluded_members_leaves_no_members_key(scim: Scim) -> None:
    group_id = group_of(scim, create(scim, "member@corp.example"))
    reply = scim.get(f"/Groups/{group_id}?excludedAttributes=members")
    assert reply.status == 200
    assert "members" not in reply.body
    assert reply.body["id"] == group_id
    assert "members" in scim.get(f"/Groups/{group_id}").body  # and only because it was asked


def test_13_paging_is_stable_across_pages(scim: Scim) -> None:
    User.objects.bulk_create(
        User(username=f"bulk-{n:03}@corp.example", directory="corp", source=Source.SCIM) for n in range(250)
    )
    pages = [scim.get(f"/Users?startIndex={start}&count=100").body for start in (1, 101, 201)]
    assert [p["itemsPerPage"] for p in pages] == [100, 100, 50]
    assert all(p["totalResults"] == 250 for p in pages)
    assert pages[1]["startIndex"] == 101
    ids = [r["id"] for p in pages for r in p["Resources"]]
    assert len(set(ids)) == 250
    expected = [
        str(u) for u in User.objects.filter(directory="corp").order_by("pk").values_list("scim_id", flat=True)
    ]
    assert ids == expected
    assert [r["id"] for r in scim.get("/Users?startIndex=101&count=100").body["Resources"]] == ids[100:200]


def test_14_unsupported_filter_is_400_invalid_filter(scim: Scim) -> None:
    reply = scim.get('/Users?filter=title co "x" or nickName pr')
    assert reply.status == 400
    assert error_of(reply) == ("400", "invalidFilter")


def test_15_delete_then_post_same_username_is_a_new_person(scim: Scim) -> None:
    old_id, token = _with_personal_token(scim, "reused@corp.example")
    assert scim.delete(f"/Users/{old_id}").status == 204
    assert scim.get(f"/Users/{old_id}").status == 404
    new_id = create(scim, "reused@corp.example")
    assert new_id != old_id
    old = User.objects.get(scim_id=old_id)
    assert old.status == User.Status.DEPARTED
    assert old.username == f"deleted-{old_id}"
    token.refresh_from_db()
    assert token.revoked_at is not None
    assert token.owner_id == old.pk
    assert not PersonalToken.objects.filter(owner__scim_id=new_id).exists()


@pytest.mark.parametrize("secret", ["", "csp_not-a-real-token-at-all", "cst_a-personal-token-shape-xx"])
def test_16_wrong_bearer_token_is_401(scim: Scim, secret: str) -> None:
    create(scim, "secret@corp.example")
    stranger = Scim(client=Client(), secret=secret, token=scim.token)
    reply = stranger.get("/Users")
    assert reply.status == 401
    assert error_of(reply) == ("401", None)
    assert "secret@corp.example" not in str(reply.body)


def test_16_another_connection_sees_none_of_this_directory(scim: Scim, client: Client) -> None:
    user_id = create(scim, "tenant-a@corp.example")
    group_id = group_of(scim, user_id)
    partner = connection(client, directory="partner")
    listed = partner.get("/Users").body
    assert listed["totalResults"] == 0
    assert partner.get('/Users?filter=userName eq "tenant-a@corp.example"').body["totalResults"] == 0
    assert partner.get(f"/Users/{user_id}").status == 404
    assert (
        partner.patch(f"/Users/{user_id}", {"op": "replace", "path": "active", "value": False}).status == 404
    )
    assert partner.delete(f"/Groups/{group_id}").status == 404
    assert partner.get("/Groups").body["totalResults"] == 0
    # Nor can it put this directory's people into its own groups.
    reply = partner.post("/Groups", {"displayName": "Raid", "members": [{"value": user_id}]})
    assert error_of(reply) == ("400", "invalidValue")
    assert User.objects.get(scim_id=user_id).status == User.Status.ACTIVE
