"""SCIM documents for our users and groups, and the fields a client's document asks us to store.

A document is the JSON a client sees. PUT replaces it, PATCH edits a copy of it (patch.py), and both
end here: `user_fields` and `group_fields` read the edited document back into model fields.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from django.db.models import Prefetch, QuerySet
from scim2_models import InvalidValueException, MutabilityException

from accounts.models import DirectoryGroup, GroupMembership, RobotToken, Source, User

USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"
ENTERPRISE_SCHEMA = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
LIST_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
PATCH_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:PatchOp"

Document = dict[str, Any]

# Core User attributes (RFC 7643 §4.1) kept as sent in User.directory_attributes. The ones the model
# has columns for (userName, name, displayName, emails, active) are read separately below.
STORED_USER_ATTRIBUTES = (
    "nickName",
    "profileUrl",
    "title",
    "userType",
    "preferredLanguage",
    "locale",
    "timezone",
    "phoneNumbers",
    "ims",
    "photos",
    "addresses",
    "entitlements",
    # SCIM "roles" are directory labels, never Customs roles: those come from RoleBindings only.
    "roles",
    "x509Certificates",
)
USER_ATTRIBUTES = (
    "id",
    "externalId",
    "meta",
    "schemas",
    "userName",
    "name",
    "displayName",
    "emails",
    "active",
    "password",
    "groups",
    *STORED_USER_ATTRIBUTES,
)
GROUP_ATTRIBUTES = ("id", "externalId", "meta", "schemas", "displayName", "members")
MULTI_VALUED = frozenset(
    {"emails", "phoneNumbers", "ims", "photos", "addresses", "entitlements", "roles", "x509Certificates"}
    | {"groups", "members"}
)
EXTENSIONS = (ENTERPRISE_SCHEMA,)
MAX_NAME = 150  # User.username, first_name and last_name


def canonical(name: str, known: tuple[str, ...]) -> str:
    """The spelling we store for an attribute name: SCIM names are case-insensitive (RFC 7643 §2.1)."""
    lowered = name.lower()
    return next((k for k in known if k.lower() == lowered), name)


def extension_urn(name: str) -> str | None:
    return next((urn for urn in EXTENSIONS if urn.lower() == name.lower()), None)


def scim_id(text: str) -> uuid.UUID | None:
    """A resource id from a URL or a member reference; None when it cannot be one of ours."""
    try:
        return uuid.UUID(str(text))
    except ValueError:
        return None


# ---------------------------------------------------------------------------------------------- reading


def visible_users(directory: str) -> QuerySet[User]:
    """The people a token of this directory sees.

    Departed people are gone from the client's point of view (DELETE made them tombstones). Local
    accounts, the break-glass admin among them, are never handed to a provisioning client to disable.
    """
    return (
        User.objects.filter(directory=directory)
        .exclude(status=User.Status.DEPARTED)
        .exclude(source=Source.LOCAL)
    )


def visible_groups(directory: str) -> QuerySet[DirectoryGroup]:
    return DirectoryGroup.objects.filter(directory=directory)


def with_groups(users: QuerySet[User]) -> QuerySet[User]:
    """Fetch each user's groups in one more query, for a page of documents."""
    return users.prefetch_related(
        Prefetch("memberships", queryset=GroupMembership.objects.select_related("group").order_by("pk"))
    )


def emails_of(user: User) -> list[dict[str, Any]]:
    """The emails as the client sent them; an SSO-only person shows the address their sign-in gave."""
    stored = user.directory_attributes.get("emails")
    if isinstance(stored, list):
        return stored
    return [{"value": user.email, "type": "work", "primary": True}] if user.email else []


def user_document(user: User, *, base: str) -> Document:
    """The SCIM User a client reads back: what it sent, with our columns as the source of truth."""
    stored = user.directory_attributes
    doc: Document = {"schemas": [USER_SCHEMA], "id": str(user.scim_id)}
    if user.external_id:
        doc["externalId"] = user.external_id
    doc["userName"] = user.username
    name = _name_of(user)
    if name:
        doc["name"] = name
    if user.display_name:
        doc["displayName"] = user.display_name
    doc.update({key: stored[key] for key in STORED_USER_ATTRIBUTES if key in stored})
    if emails := emails_of(user):
        doc["emails"] = emails
    doc["active"] = user.status == User.Status.ACTIVE and user.is_active
    doc["groups"] = [
        {
            "value": str(m.group.scim_id),
            "display": m.group.display_name,
            "$ref": f"{base}/Groups/{m.group.scim_id}",
        }
        for m in user.memberships.all()
    ]
    for urn in EXTENSIONS:
        if isinstance(stored.get(urn), dict) and stored[urn]:
            doc["schemas"].append(urn)
            doc[urn] = stored[urn]
    doc["meta"] = _meta("User", f"{base}/Users/{user.scim_id}", user.date_joined.isoformat())
    return doc


def _name_of(user: User) -> dict[str, Any]:
    name = dict(user.directory_attributes.get("name") or {})
    # The columns win: a sign-in may have updated them since the client last wrote.
    for key, column in (("givenName", user.first_name), ("familyName", user.last_name)):
        if column:
            name[key] = column
        else:
            name.pop(key, None)
    return name


def group_document(group: DirectoryGroup, *, base: str, members: bool = True) -> Document:
    doc: Document = {"schemas": [GROUP_SCHEMA], "id": str(group.scim_id)}
    if group.external_id != str(group.scim_id):
        doc["externalId"] = group.external_id
    doc["displayName"] = group.display_name
    if members:
        doc["members"] = [
            {"value": str(m.user.scim_id), "display": str(m.user), "$ref": f"{base}/Users/{m.user.scim_id}"}
            for m in group_members(group)
        ]
    # DirectoryGroup has no creation time; synced_at moves on every change, so it serves as both.
    stamp = group.synced_at.isoformat()
    doc["meta"] = _meta("Group", f"{base}/Groups/{group.scim_id}", stamp, stamp)
    return doc


def with_members(groups: QuerySet[DirectoryGroup]) -> QuerySet[DirectoryGroup]:
    """Fetch each group's members in one more query, for a page of documents."""
    return groups.prefetch_related(Prefetch("memberships", queryset=_member_rows(), to_attr="scim_members"))


def group_members(group: DirectoryGroup) -> list[GroupMembership]:
    prefetched: list[GroupMembership] | None = getattr(group, "scim_members", None)
    return prefetched if prefetched is not None else list(_member_rows().filter(group=group))


def _member_rows() -> QuerySet[GroupMembership]:
    # Departed people are tombstones: listing them would hand the client ids it cannot resolve.
    return (
        GroupMembership.objects.select_related("user")
        .exclude(user__status=User.Status.DEPARTED)
        .order_by("pk")
    )


def _meta(kind: str, location: str, created: str, modified: str | None = None) -> Document:
    # User has no modification time of its own; lastModified repeats the creation time.
    return {
        "resourceType": kind,
        "created": created,
        "lastModified": modified or created,
        "location": location,
    }


def project(doc: Document, *, attributes: list[str], excluded: list[str]) -> Document:
    """Apply ?attributes= and ?excludedAttributes= (top-level names; id and schemas always stay)."""
    keep = {a.split(".")[0].lower() for a in attributes}
    drop = {a.split(".")[0].lower() for a in excluded}
    always = {"id", "schemas"}
    return {
        key: value
        for key, value in doc.items()
        if key.lower() in always or ((not keep or key.lower() in keep) and key.lower() not in drop)
    }


# ---------------------------------------------------------------------------------------------- writing


@dataclass(frozen=True)
class UserFields:
    username: str
    external_id: str | None  # None: the document did not say, keep the stored one (it joins SSO)
    display_name: str
    first_name: str
    last_name: str
    email: str
    attributes: dict[str, Any]
    active: bool | None  # None: not in the document; a missing `active` never deactivates anyone


@dataclass(frozen=True)
class GroupFields:
    display_name: str
    external_id: str | None
    # None: the document did not mention members, so they stay. A PUT from a client that manages
    # members by PATCH alone must not empty the group.
    members: list[uuid.UUID] | None


def user_fields(doc: Document, *, current_id: uuid.UUID | None = None) -> UserFields:
    """Read a User document (POST, PUT, or a patched copy) into the fields we store."""
    doc = _canonical_keys(doc, USER_ATTRIBUTES)
    _check_id(doc, current_id)
    username = _string(doc, "userName", required=True, limit=MAX_NAME)
    if username.lower().startswith(RobotToken.USERNAME_PREFIX):
        # Registries and their logs would take this person for a robot token.
        raise InvalidValueException(detail=f"userName may not start with {RobotToken.USERNAME_PREFIX}")
    name = _complex(doc, "name")
    emails = _multi(doc, "emails")
    attributes: dict[str, Any] = {key: doc[key] for key in STORED_USER_ATTRIBUTES if doc.get(key) is not None}
    if name:
        attributes["name"] = name
    if "emails" in doc:
        attributes["emails"] = emails
    attributes.update(_extensions(doc))
    return UserFields(
        username=username,
        external_id=_string(doc, "externalId", limit=255) if "externalId" in doc else None,
        display_name=_string(doc, "displayName", limit=255),
        first_name=_limited(name.get("givenName"), "name.givenName", MAX_NAME),
        last_name=_limited(name.get("familyName"), "name.familyName", MAX_NAME),
        email=_primary_email(emails),
        attributes=attributes,
        active=as_boolean(doc["active"], "active") if doc.get("active") is not None else None,
    )


def group_fields(doc: Document, *, current_id: uuid.UUID | None = None) -> GroupFields:
    doc = _canonical_keys(doc, GROUP_ATTRIBUTES)
    _check_id(doc, current_id)
    members = None
    if "members" in doc:
        members = [_member_id(m) for m in _multi(doc, "members")]
    return GroupFields(
        display_name=_string(doc, "displayName", required=True, limit=255),
        external_id=_string(doc, "externalId", limit=255) or None,  # a group always keeps one
        members=members,
    )


def as_boolean(value: Any, where: str) -> bool:
    """A SCIM boolean. Entra sends "True"/"False" strings for `active` (identity.md §8.7, rule 2)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise InvalidValueException(detail=f"{where} must be a boolean")


def _canonical_keys(doc: Document, known: tuple[str, ...]) -> Document:
    if not isinstance(doc, dict):
        raise InvalidValueException(detail="the resource must be a JSON object")
    out: Document = {}
    for key, value in doc.items():
        out[extension_urn(key) or canonical(key, known)] = value
    return out


def _check_id(doc: Document, current_id: uuid.UUID | None) -> None:
    # Clients echo the read-only id (Okta puts it in PATCH values and PUT bodies): fine if it matches.
    if "id" in doc and doc["id"] is not None and scim_id(doc["id"]) != current_id:
        raise MutabilityException(detail="id is read-only")


def _string(doc: Document, key: str, *, required: bool = False, limit: int) -> str:
    value = doc.get(key)
    if value is None or value == "":
        if required:
            raise InvalidValueException(detail=f"{key} is required")
        return ""
    if not isinstance(value, str):
        raise InvalidValueException(detail=f"{key} must be a string")
    return _limited(value, key, limit)


def _limited(value: Any, key: str, limit: int) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidValueException(detail=f"{key} must be a string")
    if len(value) > limit:
        raise InvalidValueException(detail=f"{key} is longer than {limit} characters")
    return value


def _complex(doc: Document, key: str) -> dict[str, Any]:
    value = doc.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidValueException(detail=f"{key} must be an object")
    return {canonical(k, ("givenName", "familyName", "formatted", "middleName")): v for k, v in value.items()}


def _multi(doc: Document, key: str) -> list[dict[str, Any]]:
    value = doc.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise InvalidValueException(detail=f"{key} must be a list of objects")
    return [
        {canonical(k, ("value", "type", "primary", "display", "$ref")): v for k, v in item.items()}
        for item in value
    ]


def _extensions(doc: Document) -> dict[str, Any]:
    out = {}
    for urn in EXTENSIONS:
        value = doc.get(urn)
        if value is None:
            continue
        if not isinstance(value, dict):
            raise InvalidValueException(detail=f"{urn} must be an object")
        if value:
            out[urn] = value
    return out


def _primary_email(emails: list[dict[str, Any]]) -> str:
    """The address User.email mirrors: the primary one, else the first work one, else the first."""
    ranked = sorted(emails, key=lambda e: (e.get("primary") is not True, e.get("type") != "work"))
    value = ranked[0].get("value") if ranked else ""
    return _limited(value, "emails.value", 254)


def _member_id(member: dict[str, Any]) -> uuid.UUID:
    found = scim_id(member.get("value", ""))
    if found is None:
        raise InvalidValueException(detail=f"member {member.get('value')!r} is not a user id")
    return found
