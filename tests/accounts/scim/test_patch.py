"""The PATCH engine on plain documents: semantics that the HTTP tests would only show indirectly."""

from __future__ import annotations

from typing import Any

import pytest
from scim2_models import SCIMException

from accounts.scim import patch
from accounts.scim.patch import Operation

ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
GID = "6f1f2f1e-0000-4000-8000-000000000001"


def user(**extra: Any) -> dict[str, Any]:
    return {
        "id": GID,
        "userName": "ada",
        "name": {"givenName": "Ada", "familyName": "Lovelace"},
        "emails": [{"value": "ada@work", "type": "work"}, {"value": "ada@home", "type": "home"}],
        **extra,
    }


def run(doc: dict[str, Any], *ops: tuple[str, str, Any]) -> dict[str, Any]:
    return patch.apply(doc, [Operation(op, path, value) for op, path, value in ops], patch.USER)


def test_the_input_document_is_never_changed() -> None:
    doc = user()
    run(doc, ("replace", "name.givenName", "Augusta"))
    assert doc == user()


def test_replace_of_a_complex_attribute_keeps_unsent_sub_attributes() -> None:
    assert run(user(), ("replace", "name", {"givenName": "Augusta"}))["name"] == {
        "givenName": "Augusta",
        "familyName": "Lovelace",
    }


def test_add_to_a_multi_valued_attribute_appends_without_duplicates() -> None:
    emails = run(user(), ("add", "emails", [{"value": "ADA@work"}, {"value": "ada@other"}]))["emails"]
    assert [e["value"] for e in emails] == ["ada@work", "ada@home", "ada@other"]


def test_replace_of_a_multi_valued_attribute_replaces_the_list() -> None:
    assert run(user(), ("replace", "emails", [{"value": "only"}]))["emails"] == [{"value": "only"}]


def test_filtered_sub_attribute_paths() -> None:
    doc = run(user(), ("replace", 'emails[type eq "home"].value', "new@home"))
    assert [e["value"] for e in doc["emails"]] == ["ada@work", "new@home"]
    doc = run(user(), ("remove", 'emails[type eq "home"]', None))
    assert [e["value"] for e in doc["emails"]] == ["ada@work"]


def test_a_filter_matching_nothing_adds_the_item_it_describes() -> None:
    doc = run(user(emails=[]), ("replace", 'emails[type eq "work"].value', "first@work"))
    assert doc["emails"] == [{"type": "work", "value": "first@work"}]


def test_a_filter_matching_nothing_that_describes_no_item_is_no_target() -> None:
    with pytest.raises(SCIMException) as caught:
        run(user(emails=[]), ("replace", 'emails[value co "x"].type', "work"))
    assert caught.value.scim_type == "noTarget"


def test_attribute_names_are_case_insensitive() -> None:
    doc = run(user(), ("replace", "DISPLAYNAME", "Ada"), ("replace", "Name.GivenName", "Augusta"))
    assert doc["displayName"] == "Ada"
    assert doc["name"]["givenName"] == "Augusta"


def test_whole_extension_object_and_its_attributes() -> None:
    doc = run(user(), ("add", "", {ENTERPRISE: {"department": "R&D", "manager": {"value": "m1"}}}))
    assert doc[ENTERPRISE] == {"department": "R&D", "manager": {"value": "m1"}}
    doc = run(doc, ("remove", f"{ENTERPRISE}:department", None))
    assert doc[ENTERPRISE] == {"manager": {"value": "m1"}}


def test_read_only_and_ignored_keys_in_no_path_values() -> None:
    doc = run(
        user(), ("replace", "", {"id": GID, "meta": {"x": 1}, "schemas": [], "groups": [], "password": "p"})
    )
    assert doc == user()


def test_remove_of_a_whole_attribute() -> None:
    doc = run(user(), ("remove", "emails", None), ("remove", "name", None))
    assert doc["emails"] == []
    assert "name" not in doc


@pytest.mark.parametrize(
    "body",
    [
        [],
        {"schemas": ["urn:wrong"], "Operations": [{"op": "add", "path": "x", "value": 1}]},
        {"Operations": [{"op": "add", "path": 5}]},
        {"Operations": ["add"]},
    ],
)
def test_malformed_patch_messages(body: Any) -> None:
    with pytest.raises(SCIMException) as caught:
        patch.parse_operations(body)
    assert caught.value.scim_type in ("invalidSyntax", "invalidPath")


def test_op_names_and_message_keys_ignore_case() -> None:
    parsed = patch.parse_operations({"operations": [{"OP": "Replace", "Path": "active", "Value": "False"}]})
    assert parsed == [Operation("replace", "active", "False")]
