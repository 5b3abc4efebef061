"""The SCIM 2.0 API at /scim/v2/ (RFC 7644): bearer-token only, CSRF-exempt, SCIM errors throughout."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from scim2_models import (
    InvalidSyntaxException,
    InvalidValueException,
    NotFoundException,
    NotImplementedException,
    SCIMException,
)

from accounts.models import DirectoryGroup, ScimToken, User
from accounts.scim import auth, discovery, filters, patch, resources, services
from accounts.scim.resources import Document

MEDIA_TYPE = "application/scim+json"


class MethodNotAllowed(SCIMException):
    status = 405
    _default_detail = "method not allowed here"


@dataclass(frozen=True)
class Call:
    request: HttpRequest
    token: ScimToken
    base: str  # absolute URL of /scim/v2, for meta.location and $ref


@dataclass(frozen=True)
class Reply:
    status: int
    body: Document | None
    summary: str
    location: str = ""


Handler = Callable[..., Reply]


def _serve(request: HttpRequest, handlers: dict[str, Handler], **kwargs: Any) -> HttpResponse:
    """Authenticate, dispatch by method, turn SCIM exceptions into error bodies, and log the request."""
    token: ScimToken | None = None
    try:
        token = auth.authenticate(request)
        handler = handlers.get(request.method or "")
        if handler is None:
            raise MethodNotAllowed(detail=f"{request.method} is not allowed here")
        reply = handler(Call(request, token, _base(request)), **kwargs)
    except SCIMException as exc:
        error = exc.to_error().model_dump()
        reply = Reply(exc.status, error, f"{exc.scim_type or 'error'}: {exc.detail}")
    if token is not None:
        auth.touch(token)
    if token is not None or auth.names_issued_token(request):
        # Requests without one of our tokens are internet noise; they would push real ones off the page.
        auth.log_request(token, request, reply.status, reply.summary)
    return _response(reply)


def _response(reply: Reply) -> HttpResponse:
    if reply.body is None:
        response = HttpResponse(status=reply.status)
    else:
        response = HttpResponse(json.dumps(reply.body), status=reply.status, content_type=MEDIA_TYPE)
    if reply.location:
        response["Location"] = reply.location
    if reply.status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="SCIM"'
    return response


def _base(request: HttpRequest) -> str:
    return request.build_absolute_uri(reverse("scim:users")).rsplit("/", 1)[0]


def _json(request: HttpRequest) -> Any:
    # application/scim+json and application/json alike: Okta sends the latter.
    try:
        return json.loads(request.body or b"null")
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise InvalidSyntaxException(detail="the body is not JSON") from None


def _projection(request: HttpRequest) -> tuple[list[str], list[str]]:
    def names(param: str) -> list[str]:
        return [name.strip() for name in request.GET.get(param, "").split(",") if name.strip()]

    return names("attributes"), names("excludedAttributes")


def _wants(request: HttpRequest, attribute: str) -> bool:
    keep, drop = _projection(request)
    lowered = attribute.lower()
    return lowered not in {d.lower() for d in drop} and (not keep or lowered in {k.lower() for k in keep})


def _shown(call: Call, doc: Document) -> Document:
    keep, drop = _projection(call.request)
    return resources.project(doc, attributes=keep, excluded=drop)


def _paging(request: HttpRequest) -> tuple[int, int]:
    """startIndex (1-based; below 1 means 1) and count (negative means 0), capped at maxResults."""
    try:
        start = int(request.GET.get("startIndex", "1"))
        count = int(request.GET.get("count", str(discovery.MAX_RESULTS)))
    except ValueError:
        raise InvalidValueException(detail="startIndex and count must be integers") from None
    return max(start, 1), min(max(count, 0), discovery.MAX_RESULTS)


def _list(call: Call, rows: Any, render: Callable[[Any], list[Document]], kind: str) -> Reply:
    start, count = _paging(call.request)
    total = rows.count()
    page = render(rows[start - 1 : start - 1 + count]) if count else []
    body = {
        "schemas": [resources.LIST_SCHEMA],
        "totalResults": total,  # integers, never strings: Okta rejects strings
        "startIndex": start,
        "itemsPerPage": len(page),
        "Resources": [_shown(call, doc) for doc in page],
    }
    return Reply(200, body, f"listed {kind}: {len(page)} of {total}")


# ------------------------------------------------------------------------------------------------ users


def _user(call: Call, resource_id: str) -> User:
    found = resources.scim_id(resource_id)
    user = resources.visible_users(call.token.directory).filter(scim_id=found).first() if found else None
    if user is None:
        raise NotFoundException(detail="no such user")
    return user


def _user_reply(call: Call, user: User, status: int, summary: str) -> Reply:
    user = resources.with_groups(User.objects.filter(pk=user.pk)).get()
    doc = resources.user_document(user, base=call.base)
    location = doc["meta"]["location"] if status == 201 else ""
    return Reply(status, _shown(call, doc), summary, location)


def list_users(call: Call) -> Reply:
    users = resources.visible_users(call.token.directory)
    if text := call.request.GET.get("filter"):
        users = users.filter(filters.user_query(filters.parse(text), users))
    return _list(
        call,
        users.order_by("pk"),  # the primary key: a stable order across pages
        lambda page: [resources.user_document(u, base=call.base) for u in resources.with_groups(page)],
        "Users",
    )


def create_user(call: Call) -> Reply:
    user = services.create_user(call.token, resources.user_fields(_json(call.request)))
    return _user_reply(call, user, 201, f"created user {user.scim_id}")


def get_user(call: Call, resource_id: str) -> Reply:
    user = _user(call, resource_id)
    return _user_reply(call, user, 200, f"read user {user.scim_id}")


def replace_user(call: Call, resource_id: str) -> Reply:
    user = _user(call, resource_id)
    fields = resources.user_fields(_json(call.request), current_id=user.scim_id)
    services.update_user(call.token, user, fields)
    return _user_reply(call, user, 200, f"replaced user {user.scim_id}")


def patch_user(call: Call, resource_id: str) -> Reply:
    user = _user(call, resource_id)
    operations = patch.parse_operations(_json(call.request))

    def edit(current: User) -> resources.UserFields:
        doc = patch.apply(resources.user_document(current, base=call.base), operations, patch.USER)
        return resources.user_fields(doc, current_id=current.scim_id)

    services.patch_user(call.token, user, edit)
    return _user_reply(call, user, 200, f"patched user {user.scim_id}: {len(operations)} operations")


def delete_user(call: Call, resource_id: str) -> Reply:
    user = _user(call, resource_id)
    services.delete_user(call.token, user)
    return Reply(204, None, f"deleted user {user.scim_id}")


# ----------------------------------------------------------------------------------------------- groups


def _group(call: Call, resource_id: str) -> DirectoryGroup:
    found = resources.scim_id(resource_id)
    group = resources.visible_groups(call.token.directory).filter(scim_id=found).first() if found else None
    if group is None:
        raise NotFoundException(detail="no such group")
    return group


def _group_reply(call: Call, group: DirectoryGroup, status: int, summary: str) -> Reply:
    doc = resources.group_document(group, base=call.base, members=_wants(call.request, "members"))
    location = doc["meta"]["location"] if status == 201 else ""
    return Reply(status, _shown(call, doc), summary, location)


def list_groups(call: Call) -> Reply:
    groups = resources.visible_groups(call.token.directory)
    if text := call.request.GET.get("filter"):
        groups = groups.filter(filters.group_query(filters.parse(text)))
    members = _wants(call.request, "members")
    # Entra asks with excludedAttributes=members: a big group's member list is then never loaded.
    return _list(
        call,
        groups.order_by("pk"),
        lambda page: [
            resources.group_document(g, base=call.base, members=members)
            for g in (resources.with_members(page) if members else page)
        ],
        "Groups",
    )


def create_group(call: Call) -> Reply:
    group = services.create_group(call.token, resources.group_fields(_json(call.request)))
    return _group_reply(call, group, 201, f"created group {group.scim_id}")


def get_group(call: Call, resource_id: str) -> Reply:
    group = _group(call, resource_id)
    return _group_reply(call, group, 200, f"read group {group.scim_id}")


def replace_group(call: Call, resource_id: str) -> Reply:
    group = _group(call, resource_id)
    fields = resources.group_fields(_json(call.request), current_id=group.scim_id)
    services.update_group(call.token, group, fields)
    return _group_reply(call, group, 200, f"replaced group {group.scim_id}")


def patch_group(call: Call, resource_id: str) -> Reply:
    group = _group(call, resource_id)
    operations = patch.parse_operations(_json(call.request))

    def edit(current: DirectoryGroup) -> resources.GroupFields:
        doc = patch.apply(resources.group_document(current, base=call.base), operations, patch.GROUP)
        return resources.group_fields(doc, current_id=current.scim_id)

    services.patch_group(call.token, group, edit)
    # 204: Entra expects it after a rename, Okta accepts it, and no member list goes back over the wire.
    return Reply(204, None, f"patched group {group.scim_id}: {len(operations)} operations")


def delete_group(call: Call, resource_id: str) -> Reply:
    group = _group(call, resource_id)
    services.delete_group(call.token, group)
    return Reply(204, None, f"deleted group {group.scim_id}")


# -------------------------------------------------------------------------------------------- discovery


def _discovery_list(call: Call, docs: list[Document], kind: str) -> Reply:
    body = {
        "schemas": [resources.LIST_SCHEMA],
        "totalResults": len(docs),
        "startIndex": 1,
        "itemsPerPage": len(docs),
        "Resources": docs,
    }
    return Reply(200, body, f"listed {kind}")


def _discovery_item(docs: list[Document], wanted: str, kind: str) -> Reply:
    doc = next((d for d in docs if str(d["id"]).lower() == wanted.lower()), None)
    if doc is None:
        raise NotFoundException(detail=f"no such {kind}")
    return Reply(200, doc, f"read {kind} {doc['id']}")


def _not_implemented(call: Call) -> Reply:
    raise NotImplementedException(detail="not supported; see ServiceProviderConfig")


# ----------------------------------------------------------------------------------------------- routes


@csrf_exempt
def users(request: HttpRequest) -> HttpResponse:
    return _serve(request, {"GET": list_users, "POST": create_user})


@csrf_exempt
def user(request: HttpRequest, resource_id: str) -> HttpResponse:
    handlers = {"GET": get_user, "PUT": replace_user, "PATCH": patch_user, "DELETE": delete_user}
    return _serve(request, handlers, resource_id=resource_id)


@csrf_exempt
def groups(request: HttpRequest) -> HttpResponse:
    return _serve(request, {"GET": list_groups, "POST": create_group})


@csrf_exempt
def group(request: HttpRequest, resource_id: str) -> HttpResponse:
    handlers = {"GET": get_group, "PUT": replace_group, "PATCH": patch_group, "DELETE": delete_group}
    return _serve(request, handlers, resource_id=resource_id)


@csrf_exempt
def service_provider_config(request: HttpRequest) -> HttpResponse:
    return _serve(
        request,
        {"GET": lambda call: Reply(200, discovery.service_provider_config(call.base), "read config")},
    )


@csrf_exempt
def resource_types(request: HttpRequest) -> HttpResponse:
    return _serve(
        request,
        {"GET": lambda call: _discovery_list(call, discovery.resource_types(call.base), "ResourceTypes")},
    )


@csrf_exempt
def resource_type(request: HttpRequest, name: str) -> HttpResponse:
    return _serve(
        request,
        {"GET": lambda call: _discovery_item(discovery.resource_types(call.base), name, "ResourceType")},
    )


@csrf_exempt
def schemas(request: HttpRequest) -> HttpResponse:
    return _serve(
        request, {"GET": lambda call: _discovery_list(call, discovery.schemas(call.base), "Schemas")}
    )


@csrf_exempt
def schema(request: HttpRequest, urn: str) -> HttpResponse:
    return _serve(request, {"GET": lambda call: _discovery_item(discovery.schemas(call.base), urn, "Schema")})


@csrf_exempt
def not_implemented(request: HttpRequest) -> HttpResponse:
    """/Bulk, /.search and /Me: advertised as unsupported, answered 501 (identity.md §8.1)."""
    every = ("GET", "POST", "PUT", "PATCH", "DELETE")
    return _serve(request, dict.fromkeys(every, _not_implemented))
