"""SCIM filters (RFC 7644 §3.4.2.2) as Django queries, and the same grammar over one multi-valued item.

scim2-models parses the filter; we walk its syntax tree. Each attribute we can search is listed
below with its column; anything else answers 400 invalidFilter rather than a silently wrong match.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.db.models import Q, QuerySet
from scim2_models import InvalidFilterException
from scim2_models.path import (
    AttrPath,
    CompareOperator,
    Comparison,
    FilterNode,
    LogicalExpr,
    LogicalOperator,
    Not,
    Present,
    ScimFilter,
    ValuePath,
)

from accounts.models import GroupMembership, User
from accounts.scim import resources


@dataclass(frozen=True)
class Column:
    field: str
    case_exact: bool = False


USER_COLUMNS = {
    "username": Column("username"),
    "externalid": Column("external_id", case_exact=True),
    "displayname": Column("display_name"),
    "name.givenname": Column("first_name"),
    "name.familyname": Column("last_name"),
}
GROUP_COLUMNS = {
    "displayname": Column("display_name"),
    "externalid": Column("external_id", case_exact=True),
}
LOOKUPS = {
    CompareOperator.eq: "exact",
    CompareOperator.co: "contains",
    CompareOperator.sw: "startswith",
    CompareOperator.ew: "endswith",
}


def parse(text: str) -> FilterNode:
    """The syntax tree of a filter; 400 invalidFilter when it does not parse."""
    ast = ScimFilter(text).ast  # raises InvalidFilterException with the column of the error
    if ast is None:
        raise InvalidFilterException(detail="empty filter")
    return ast


def user_query(node: FilterNode, users: QuerySet[User]) -> Q:
    """A Q over User for a filter; `users` is the directory's queryset, for the email matching."""
    return _walk(node, lambda leaf: _user_leaf(leaf, users))


def group_query(node: FilterNode) -> Q:
    return _walk(node, _group_leaf)


def _walk(node: FilterNode, leaf: Callable[[FilterNode], Q]) -> Q:
    if isinstance(node, Not):
        return ~_walk(node.expr, leaf)
    if isinstance(node, LogicalExpr):
        parts = [_walk(term, leaf) for term in node.terms]
        combined = parts[0]
        for part in parts[1:]:
            combined = combined & part if node.op == LogicalOperator.and_ else combined | part
        return combined
    return leaf(node)


def _name(attr: AttrPath) -> str:
    # A core-schema URN prefix names the same attribute; an extension's attributes are not searchable.
    if attr.uri and attr.uri.lower() not in (resources.USER_SCHEMA.lower(), resources.GROUP_SCHEMA.lower()):
        raise InvalidFilterException(detail=f"filtering on {attr} is not supported")
    return f"{attr.attr}.{attr.sub_attr}".lower() if attr.sub_attr else attr.attr.lower()


def _user_leaf(node: FilterNode, users: QuerySet[User]) -> Q:
    if isinstance(node, ValuePath) and _name(node.attr_path) == "emails":
        return _email_match(node.val_filter, users)
    if not isinstance(node, Comparison | Present):
        raise InvalidFilterException(detail=f"unsupported filter expression {node}")
    name = _name(node.attr_path)
    if name in ("emails", "emails.value", "emails.type", "emails.primary"):
        sub = AttrPath(name.partition(".")[2] or "value")
        item = Comparison(sub, node.op, node.value) if isinstance(node, Comparison) else Present(sub)
        return _email_match(item, users)
    if name == "active":
        return _active(node)
    if name == "id":
        return _id(node, "scim_id")
    return _column(node, USER_COLUMNS, name)


def _group_leaf(node: FilterNode) -> Q:
    if isinstance(node, ValuePath) and _name(node.attr_path) == "members":
        value = _only_value_eq(node.val_filter)
        return _members_include(value)
    if not isinstance(node, Comparison | Present):
        raise InvalidFilterException(detail=f"unsupported filter expression {node}")
    name = _name(node.attr_path)
    if (
        name in ("members", "members.value")
        and isinstance(node, Comparison)
        and node.op == CompareOperator.eq
    ):
        return _members_include(node.value)
    if name == "id":
        return _id(node, "scim_id")
    return _column(node, GROUP_COLUMNS, name)


def _column(node: Comparison | Present, columns: dict[str, Column], name: str) -> Q:
    column = columns.get(name)
    if column is None:
        raise InvalidFilterException(detail=f"filtering on {node.attr_path} is not supported")
    if isinstance(node, Present):
        return ~Q(**{column.field: ""})
    if not isinstance(node.value, str):
        raise InvalidFilterException(detail=f"{node.attr_path} compares with a string")
    if node.op == CompareOperator.ne:
        return ~_column(Comparison(node.attr_path, CompareOperator.eq, node.value), columns, name)
    lookup = LOOKUPS.get(node.op)
    if lookup is None:
        raise InvalidFilterException(detail=f"operator {node.op} is not supported on {node.attr_path}")
    prefix = "" if column.case_exact else "i"
    return Q(**{f"{column.field}__{prefix}{lookup}": node.value})


def _active(node: Comparison | Present) -> Q:
    active = Q(status=User.Status.ACTIVE, is_active=True)
    if isinstance(node, Present):
        return Q()
    if node.op not in (CompareOperator.eq, CompareOperator.ne) or not isinstance(node.value, bool | str):
        raise InvalidFilterException(detail="active compares with eq or ne and a boolean")
    wanted = resources.as_boolean(node.value, "active") == (node.op == CompareOperator.eq)
    return active if wanted else ~active


def _id(node: Comparison | Present, field: str) -> Q:
    if not isinstance(node, Comparison) or node.op != CompareOperator.eq:
        raise InvalidFilterException(detail="id supports eq only")
    found = resources.scim_id(node.value)
    return Q(**{field: found}) if found else Q(pk__in=[])


def _members_include(value: Any) -> Q:
    found = resources.scim_id(value)
    if found is None:
        return Q(pk__in=[])
    # A subquery rather than a join: an OR with another term must not duplicate groups.
    return Q(pk__in=GroupMembership.objects.filter(user__scim_id=found).values("group"))


def _only_value_eq(node: FilterNode) -> Any:
    if (
        isinstance(node, Comparison)
        and node.op == CompareOperator.eq
        and node.attr_path.attr.lower() == "value"
        and not node.attr_path.sub_attr
    ):
        return node.value
    raise InvalidFilterException(detail='members supports [value eq "…"] only')


def _email_match(item_filter: FilterNode, users: QuerySet[User]) -> Q:
    """People with an email item matching the filter, found in Python over a narrowed candidate set.

    Emails live in a JSON list, and JSON containment queries exist on PostgreSQL only (the local run
    uses SQLite), so the database narrows by substring and this function decides exactly.
    """
    candidates = users
    if (needle := _needle(item_filter)) is not None:
        candidates = candidates.filter(
            Q(directory_attributes__emails__icontains=needle) | Q(email__iexact=needle)
        )
    matching = [
        user.pk
        for user in candidates.only("pk", "email", "directory_attributes")
        if any(item_matches(item_filter, item) for item in resources.emails_of(user))
    ]
    return Q(pk__in=matching)


def _needle(node: FilterNode) -> str | None:
    """A string every matching item must contain: the value of a `value eq` in an and-chain."""
    terms = node.terms if isinstance(node, LogicalExpr) and node.op == LogicalOperator.and_ else (node,)
    for term in terms:
        if (
            isinstance(term, Comparison)
            and term.op == CompareOperator.eq
            and term.attr_path.attr.lower() == "value"
            and isinstance(term.value, str)
        ):
            return term.value
    return None


def item_matches(node: FilterNode, item: dict[str, Any]) -> bool:
    """Whether one item of a multi-valued attribute (an email, a member) satisfies a filter."""
    if isinstance(node, Not):
        return not item_matches(node.expr, item)
    if isinstance(node, LogicalExpr):
        results = (item_matches(term, item) for term in node.terms)
        return all(results) if node.op == LogicalOperator.and_ else any(results)
    if isinstance(node, Present):
        return _item_value(item, node.attr_path) not in (None, "", [], {})
    if isinstance(node, Comparison):
        return _compare(node.op, _item_value(item, node.attr_path), node.value)
    raise InvalidFilterException(detail=f"unsupported filter expression {node}")


def _item_value(item: dict[str, Any], attr: AttrPath) -> Any:
    if attr.sub_attr or attr.uri:
        raise InvalidFilterException(detail=f"{attr} is not a sub-attribute")
    wanted = attr.attr.lower()
    return next((value for key, value in item.items() if key.lower() == wanted), None)


def _compare(op: CompareOperator, actual: Any, expected: Any) -> bool:
    # Emails, their types and member ids are all case-insensitive (caseExact false in RFC 7643).
    if isinstance(actual, str) and isinstance(expected, str):
        actual, expected = actual.lower(), expected.lower()
    if op == CompareOperator.eq:
        return bool(actual == expected)
    if op == CompareOperator.ne:
        return bool(actual != expected)
    if not (isinstance(actual, str) and isinstance(expected, str)):
        return False
    if op == CompareOperator.co:
        return expected in actual
    if op == CompareOperator.sw:
        return actual.startswith(expected)
    if op == CompareOperator.ew:
        return actual.endswith(expected)
    raise InvalidFilterException(detail=f"operator {op} is not supported here")
