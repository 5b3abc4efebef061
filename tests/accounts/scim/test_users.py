"""/Users beyond the matrix: linking SSO people, filters, projection, validation, audit, query budget."""

from __future__ import annotations

from typing import Any

import pytest
from allauth.usersessions.models import UserSession
from django.db import connection as db_connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from accounts.models import Source, User
from portal.models import AuditEvent
from tests import factories
from tests.accounts.scim.conftest import ENTERPRISE, Scim, error_of, new_user


def create(scim: Scim, user_name: str, **extra: object) -> dict[str, Any]:
    reply = scim.post("/Users", new_user(user_name, **extra))
    assert reply.status == 201, reply.body
    body: dict[str, Any] = reply.body
    return body


def test_create_returns_the_resource_with_location_and_meta(scim: Scim) -> None:
    reply = scim.post("/Users", new_user("new@corp.example", externalId="oid-new"))
    assert reply.status == 201
    assert reply.headers["Content-Type"].startswith("application/scim+json")
    assert reply.headers["Location"] == reply.body["meta"]["location"]
    assert reply.body["meta"]["location"].endswith(f"/scim/v2/Users/{reply.body['id']}")
    assert reply.body["meta"]["resourceType"] == "User"
    user = User.objects.get(scim_id=reply.body["id"])
    assert (user.directory, user.source, user.external_id, user.email) == (
        "corp",
        Source.SCIM,
        "oid-new",
        "new@corp.example",
    )


def test_a_person_sso_created_first_is_linked_by_external_id(scim: Scim) -> None:
    person = factories.user(username="sso.first@corp.example", directory="corp", external_id="oid-sso")
    reply = scim.post("/Users", new_user("sso.first@corp.example", externalId="oid-sso"))
    assert reply.status == 201
    assert reply.body["id"] == str(person.scim_id)
    assert User.objects.filter(external_id="oid-sso").count() == 1
    # A second POST for the now-provisioned person is a duplicate.
    again = scim.post("/Users", new_user("other.name@corp.example", externalId="oid-sso"))
    assert error_of(again) == ("409", "uniqueness")


def test_the_same_external_id_in_another_directory_is_another_person(scim: Scim, other_scim: Scim) -> None:
    first = create(scim, "one@corp.example", externalId="00u-same")
    second = create(other_scim, "one@partner.example", externalId="00u-same")
    assert first["id"] != second["id"]


def test_username_taken_in_another_directory_is_409_without_details(scim: Scim, other_scim: Scim) -> None:
    create(other_scim, "shared@example.test")
    reply = scim.post("/Users", new_user("Shared@example.test"))
    assert error_of(reply) == ("409", "uniqueness")
    assert "partner" not in reply.body["detail"]


def test_local_accounts_are_invisible_and_untouchable(scim: Scim) -> None:
    local = factories.user(username="breakglass", directory="corp", source=Source.LOCAL, is_superuser=True)
    assert scim.get('/Users?filter=userName eq "breakglass"').body["totalResults"] == 0
    assert (
        scim.patch(f"/Users/{local.scim_id}", {"op": "replace", "path": "active", "value": False}).status
        == 404
    )
    local.refresh_from_db()
    assert local.status == User.Status.ACTIVE


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ('userName eq "ALICE@corp.example"', ["alice"]),
        ('externalId eq "oid-alice"', ["alice"]),
        ('externalId eq "OID-ALICE"', []),  # externalId is caseExact
        ('displayName eq "Bob B"', ["bob"]),
        ('emails[type eq "work"].value eq "bob@corp.example"', ["bob"]),
        ('emails[type eq "home"].value eq "bob@corp.example"', []),
        ('emails.value eq "Alice@Corp.Example"', ["alice"]),
        ('userName sw "alice" or userName sw "bob"', ["alice", "bob"]),
        ('userName sw "a" and externalId eq "oid-alice"', ["alice"]),
        ('not (userName eq "alice@corp.example")', ["bob"]),
        ("active eq false", ["bob"]),
        ('name.givenName eq "Ada"', ["alice", "bob"]),
        ("displayName pr", ["bob"]),
        ('USERNAME EQ "bob@corp.example"', ["bob"]),  # attribute names and operators ignore case
    ],
)
def test_filters(scim: Scim, query: str, expected: list[str]) -> None:
    ids = {
        "alice": create(scim, "alice@corp.example", externalId="oid-alice")["id"],
        "bob": create(scim, "bob@corp.example", externalId="oid-bob", displayName="Bob B", active=False)[
            "id"
        ],
    }
    reply = scim.get(f"/Users?filter={query}")
    assert reply.status == 200, reply.body
    assert sorted(r["id"] for r in reply.body["Resources"]) == sorted(ids[name] for name in expected)


@pytest.mark.parametrize(
    "query", ['userName gt "a"', "userName eq", 'meta.created eq "x"', f'{ENTERPRISE}:employeeNumber eq "1"']
)
def test_unsupported_or_broken_filters_are_400_invalid_filter(scim: Scim, query: str) -> None:
    assert error_of(scim.get(f"/Users?filter={query}")) == ("400", "invalidFilter")


def test_paging_edges(scim: Scim) -> None:
    for n in range(3):
        create(scim, f"page{n}@corp.example")
    assert scim.get("/Users?startIndex=0&count=2").body["startIndex"] == 1
    empty = scim.get("/Users?count=-5").body
    assert (empty["totalResults"], empty["itemsPerPage"], empty["Resources"]) == (3, 0, [])
    assert scim.get("/Users?startIndex=50").body["Resources"] == []
    assert error_of(scim.get("/Users?count=ten")) == ("400", "invalidValue")


def test_attributes_and_excluded_attributes(scim: Scim) -> None:
    user_id = create(scim, "proj@corp.example")["id"]
    only = scim.get(f"/Users/{user_id}?attributes=userName").body
    assert set(only) == {"schemas", "id", "userName"}
    without = scim.get(f"/Users/{user_id}?excludedAttributes=emails,groups").body
    assert "emails" not in without
    assert "groups" not in without
    assert "userName" in without


def test_application_json_is_accepted_and_junk_is_400(scim: Scim) -> None:
    reply = scim.send("POST", "/Users", new_user("json@corp.example"), media="application/json")
    assert reply.status == 201
    raw = scim.client.post(
        "/scim/v2/Users",
        data="{nope",
        content_type="application/scim+json",
        HTTP_AUTHORIZATION=f"Bearer {scim.secret}",
    )
    assert raw.status_code == 400
    assert raw.json()["scimType"] == "invalidSyntax"


@pytest.mark.parametrize(
    ("body", "scim_type"),
    [
        ({"userName": ""}, "invalidValue"),
        ({"userName": 12}, "invalidValue"),
        ({"userName": "x" * 151}, "invalidValue"),
        ({"userName": "a@corp.example", "active": "maybe"}, "invalidValue"),
        ({"userName": "a@corp.example", "emails": "a@corp.example"}, "invalidValue"),
        ({"userName": "a@corp.example", "id": "6f1f2f1e-0000-4000-8000-000000000000"}, "mutability"),
    ],
)
def test_invalid_users_are_rejected(scim: Scim, body: dict[str, Any], scim_type: str) -> None:
    assert error_of(scim.post("/Users", body)) == ("400", scim_type)
    assert not User.objects.filter(directory="corp").exists()


def test_patch_paths_that_make_no_sense_are_400(scim: Scim) -> None:
    user_id = create(scim, "paths@corp.example")["id"]
    cases: list[tuple[dict[str, Any], str]] = [
        ({"op": "replace", "path": "emails.value", "value": "x"}, "invalidPath"),
        ({"op": "replace", "path": "urn:example:custom:1.0:User:thing", "value": "x"}, "invalidPath"),
        ({"op": "replace", "path": "not a path", "value": "x"}, "invalidPath"),
        ({"op": "add", "path": "groups", "value": [{"value": "x"}]}, "mutability"),
        ({"op": "move", "path": "displayName", "value": "x"}, "invalidSyntax"),
    ]
    for operation, scim_type in cases:
        assert error_of(scim.patch(f"/Users/{user_id}", operation)) == ("400", scim_type), operation
    assert error_of(scim.send("PATCH", f"/Users/{user_id}", {"Operations": []})) == ("400", "invalidSyntax")


def test_deactivation_revokes_tokens_and_ends_sessions(scim: Scim, client: Client) -> None:
    user_id = create(scim, "sessions@corp.example")["id"]
    person = User.objects.get(scim_id=user_id)
    api_token, secret = factories.token(person)
    client.force_login(person)
    UserSession.objects.create(user=person, ip="127.0.0.1", session_key=client.session.session_key)
    scim.patch(f"/Users/{user_id}", {"op": "Replace", "path": "active", "value": "False"})
    api_token.refresh_from_db()
    assert api_token.revoked_at is not None
    assert not UserSession.objects.filter(user=person).exists()
    assert client.get("/settings/").status_code == 302  # the old session is gone
    event = AuditEvent.objects.filter(action="user.disable", target_id=str(person.pk)).get()
    assert event.actor_label == "system"
    assert event.detail["tokens_revoked"] == 1
    assert scim.token.name in event.detail["reason"]


def test_reactivation_restores_sign_in_but_not_tokens(scim: Scim) -> None:
    user_id = create(scim, "back@corp.example")["id"]
    api_token, _ = factories.token(User.objects.get(scim_id=user_id))
    scim.patch(f"/Users/{user_id}", {"op": "replace", "path": "active", "value": False})
    scim.patch(f"/Users/{user_id}", {"op": "replace", "path": "active", "value": True})
    person = User.objects.get(scim_id=user_id)
    assert person.may_sign_in
    api_token.refresh_from_db()
    assert api_token.revoked_at is not None


def test_every_change_is_audited_with_the_token_name(scim: Scim) -> None:
    user_id = create(scim, "audited@corp.example")["id"]
    scim.patch(f"/Users/{user_id}", {"op": "replace", "path": "displayName", "value": "Audited"})
    scim.patch(f"/Users/{user_id}", {"op": "replace", "path": "displayName", "value": "Audited"})  # no change
    scim.delete(f"/Users/{user_id}")
    events = AuditEvent.objects.filter(detail__via="scim").order_by("sequence")
    assert [e.action for e in events] == ["user.create", "user.update", "user.delete"]
    assert all(e.detail["token"] == scim.token.name and e.actor_id is None for e in events)
    assert events[1].detail["changed"] == ["display_name"]
    assert events[2].detail["username"] == "audited@corp.example"


def test_list_queries_do_not_grow_with_rows(scim: Scim) -> None:
    group = scim.post("/Groups", {"displayName": "Everyone"}).body["id"]

    def people(count: int) -> None:
        ids = [create(scim, factories.unique("q") + "@corp.example")["id"] for _ in range(count)]
        scim.patch(f"/Groups/{group}", {"op": "add", "path": "members", "value": [{"value": i} for i in ids]})

    def queries() -> int:
        with CaptureQueriesContext(db_connection) as captured:
            assert scim.get("/Users").status == 200
        return len(captured)

    people(2)
    few = queries()
    people(20)
    assert queries() == few == 6  # token, last-used, count, page, their groups, the log row


def test_a_username_that_would_pass_for_a_robot_token_is_refused(scim: Scim) -> None:
    reply = scim.post("/Users", new_user("Robot$ci@corp.example"))
    assert error_of(reply) == ("400", "invalidValue")
    assert "robot$" in reply.body["detail"]
    assert not User.objects.filter(username__iexact="robot$ci@corp.example").exists()
