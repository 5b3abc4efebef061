"""PATCH (RFC 7644 §3.5.2) applied to a copy of a SCIM document, with the Entra ID and Okta dialects.

Every operation edits the copy; the caller stores the result only when all of them succeeded, which
makes a PATCH all-or-nothing. Paths are parsed by scim2-models; what they mean for our documents is
decided here. The dialect rules are identity.md §8.7.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from scim2_models import (
    InvalidPathException,
    InvalidSyntaxException,
    InvalidValueException,
    MutabilityException,
    NoTargetException,
)
from scim2_models.path import (
    AttrPath,
    CompareOperator,
    Comparison,
    FilterNode,
    LogicalExpr,
    LogicalOperator,
    Path,
    ValuePath,
)

from accounts.scim import filters, resources
from accounts.scim.resources import Document

OPS = ("add", "replace", "remove")
NAME_PARTS = ("givenName", "familyName", "formatted", "middleName", "honorificPrefix", "honorificSuffix")


@dataclass(frozen=True)
class Operation:
    op: str
    path: str
    value: Any


@dataclass(frozen=True)
class Shape:
    """What PATCH needs to know about a resource type."""

    attributes: tuple[str, ...]
    read_only: frozenset[str]  # besides id, meta and schemas


USER = Shape(resources.USER_ATTRIBUTES, frozenset({"groups"}))
GROUP = Shape(resources.GROUP_ATTRIBUTES, frozenset())
IGNORED = frozenset({"meta", "schemas", "password"})  # never stored; clients send them anyway


def parse_operations(body: Any) -> list[Operation]:
    """The operations of a PatchOp message; op names are matched case-insensitively (Entra: "Replace")."""
    if not isinstance(body, dict):
        raise InvalidSyntaxException(detail="a PatchOp message must be a JSON object")
    body = {key.lower(): value for key, value in body.items()}
    schemas = body.get("schemas", [resources.PATCH_SCHEMA])
    if not isinstance(schemas, list) or resources.PATCH_SCHEMA not in schemas:
        raise InvalidSyntaxException(detail=f"schemas must contain {resources.PATCH_SCHEMA}")
    operations = body.get("operations")
    if not isinstance(operations, list) or not operations:
        raise InvalidSyntaxException(detail="Operations must be a non-empty list")
    return [_operation(item) for item in operations]


def _operation(item: Any) -> Operation:
    if not isinstance(item, dict):
        raise InvalidSyntaxException(detail="each operation must be a JSON object")
    item = {key.lower(): value for key, value in item.items()}
    op = str(item.get("op", "")).lower()
    if op not in OPS:
        raise InvalidSyntaxException(detail=f"unknown op {item.get('op')!r}")
    path = item.get("path") or ""
    if not isinstance(path, str):
        raise InvalidPathException(detail="path must be a string")
    return Operation(op=op, path=path.strip(), value=item.get("value"))


def apply(doc: Document, operations: list[Operation], shape: Shape) -> Document:
    """The document after every operation, in order. Raises on the first failure; `doc` is untouched."""
    result = copy.deepcopy(doc)
    for operation in operations:
        if operation.path:
            _apply_path(
                result, operation.op, _parse_path(operation.path), operation.value, shape, explicit=True
            )
        else:
            _apply_object(result, operation, shape)
    return result


def _apply_object(doc: Document, operation: Operation, shape: Shape) -> None:
    """A no-path add or replace: each key of the value is a path of its own (dotted or URN-qualified)."""
    if operation.op == "remove":
        raise NoTargetException(detail="remove needs a path")
    if not isinstance(operation.value, dict):
        raise InvalidValueException(detail="an operation without a path needs an object value")
    for key, value in operation.value.items():
        urn = resources.extension_urn(key)
        if urn and isinstance(value, dict):
            for name, part in value.items():
                _apply_path(doc, operation.op, _attr(name, urn), part, shape, explicit=False)
        else:
            _apply_path(doc, operation.op, _parse_path(key), value, shape, explicit=False)


def _parse_path(text: str) -> AttrPath | ValuePath:
    if urn := resources.extension_urn(text):
        return AttrPath(urn.rsplit(":", 1)[1], uri=urn.rsplit(":", 1)[0])  # the whole extension object
    node = Path(text).ast  # raises InvalidPathException
    if not isinstance(node, AttrPath | ValuePath):
        raise InvalidPathException(detail=f"unsupported path {text!r}")
    return node


def _attr(name: str, uri: str) -> AttrPath:
    try:
        return AttrPath(name, uri=uri)
    except ValueError as exc:
        raise InvalidPathException(detail=str(exc)) from None


def _apply_path(
    doc: Document, op: str, node: AttrPath | ValuePath, value: Any, shape: Shape, *, explicit: bool
) -> None:
    attr = node.attr_path if isinstance(node, ValuePath) else node
    container, key = _locate(doc, attr, shape)
    if container is doc and _read_only(doc, key, op, value, shape, explicit=explicit):
        return
    if isinstance(node, ValuePath):
        _apply_filtered(container, key, op, node, value)
    elif attr.sub_attr:
        _apply_sub_attribute(container, key, attr.sub_attr, op, value)
    else:
        _apply_attribute(container, key, op, value)


def _locate(doc: Document, attr: AttrPath, shape: Shape) -> tuple[Document, str]:
    """The object holding the attribute, and the attribute's stored name."""
    uri = (attr.uri or "").lower()
    if not uri or uri in (resources.USER_SCHEMA.lower(), resources.GROUP_SCHEMA.lower()):
        return doc, resources.canonical(attr.attr, shape.attributes)
    if urn := resources.extension_urn(f"{attr.uri}:{attr.attr}"):
        return doc, urn
    urn = resources.extension_urn(attr.uri or "")
    if urn is None or shape is not USER:
        raise InvalidPathException(detail=f"unknown schema {attr.uri}")
    extension = doc.get(urn)
    if not isinstance(extension, dict):
        extension = doc[urn] = {}
    return extension, attr.attr


def _read_only(doc: Document, key: str, op: str, value: Any, shape: Shape, *, explicit: bool) -> bool:
    """True when the operation is to be skipped; raises when it tries to change a read-only attribute."""
    if key in IGNORED:
        return True
    if key == "id":
        # Okta's group rename sends the id inside the value (identity.md §8.7 rule 5).
        if op != "remove" and resources.scim_id(value) == resources.scim_id(doc.get("id", "")):
            return True
        raise MutabilityException(detail="id is read-only")
    if key in shape.read_only:
        if explicit:
            raise MutabilityException(detail=f"{key} is read-only")
        return True
    return False


def _apply_attribute(container: Document, key: str, op: str, value: Any) -> None:
    multi = key in resources.MULTI_VALUED
    current = container.get(key)
    if op == "remove":
        if multi and isinstance(value, list) and value:
            # Entra's legacy member removal: Remove, path "members", a value list. Only those go
            # (identity.md §8.7 rule 3); emptying the group here would undo every other assignment.
            gone = {_identity(item) for item in value}
            container[key] = [item for item in current or [] if _identity(item) not in gone]
        elif multi:
            container[key] = []  # emptied, not absent: an absent members list means "leave as is"
        else:
            container.pop(key, None)
        return
    if value is None:
        container.pop(key, None)
    elif multi:
        items = _items(key, value)
        if op == "add":
            present = {_identity(item) for item in current or []}
            items = [*(current or []), *(item for item in items if _identity(item) not in present)]
        container[key] = items
    elif isinstance(current, dict) and isinstance(value, dict):
        current.update(value)  # a complex attribute: sub-attributes not sent stay (RFC 7644 §3.5.2.3)
    elif key == "manager" and isinstance(value, str):
        container[key] = {"value": value}  # Entra sends the manager's id as a bare string
    else:
        container[key] = value


def _apply_sub_attribute(container: Document, key: str, sub: str, op: str, value: Any) -> None:
    if key in resources.MULTI_VALUED:
        raise InvalidPathException(detail=f'{key}.{sub} needs a filter, e.g. {key}[type eq "work"].{sub}')
    current = container.get(key)
    if current is None:
        current = container[key] = {}
    if not isinstance(current, dict):
        raise InvalidPathException(detail=f"{key} has no sub-attributes")
    sub = resources.canonical(sub, NAME_PARTS)
    if op == "remove" or value is None:
        current.pop(sub, None)
    else:
        current[sub] = value


def _apply_filtered(container: Document, key: str, op: str, node: ValuePath, value: Any) -> None:
    if key not in resources.MULTI_VALUED:
        raise InvalidPathException(detail=f"{key} is not multi-valued")
    items: list[dict[str, Any]] = list(container.get(key) or [])
    matched = [item for item in items if filters.item_matches(node.val_filter, item)]
    if op == "remove":
        if node.sub_attr:
            for item in matched:
                item.pop(node.sub_attr, None)
        else:
            items = [item for item in items if item not in matched]
        container[key] = items
        return
    if not matched:
        # Entra sets emails[type eq "work"].value on people who have no work address yet: an eq
        # filter describes the item to create, as its reference SCIM service does.
        matched = [_item_from(node.val_filter)]
        items.append(matched[0])
    for item in matched:
        if node.sub_attr:
            item[node.sub_attr] = value
        elif isinstance(value, dict):
            item.update(value)
        else:
            raise InvalidValueException(detail=f"{key} items are objects")
    container[key] = items


def _item_from(node: FilterNode) -> dict[str, Any]:
    terms = node.terms if isinstance(node, LogicalExpr) and node.op == LogicalOperator.and_ else (node,)
    if not all(isinstance(t, Comparison) and t.op == CompareOperator.eq for t in terms):
        raise NoTargetException(detail="no value matches the filter")
    return {t.attr_path.attr: t.value for t in terms if isinstance(t, Comparison)}


def _items(key: str, value: Any) -> list[dict[str, Any]]:
    items = value if isinstance(value, list) else [value]
    if not all(isinstance(item, dict) for item in items):
        raise InvalidValueException(detail=f"{key} takes objects")
    return items


def _identity(item: Any) -> Any:
    """What makes two items of a multi-valued attribute the same: their value, else all of them."""
    if isinstance(item, dict):
        lowered = {str(k).lower(): v for k, v in item.items()}
        if "value" in lowered:
            return str(lowered["value"]).lower()
        return repr(sorted(lowered.items()))
    return str(item).lower()
