"""Who may call what: every view declares the role it needs to read and to write, or nobody may."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponseBase
from rest_framework import permissions
from rest_framework.request import Request

from accounts.models import PersonalToken
from accounts.roles import Role


class RolePermission(permissions.BasePermission):
    """The default for every API view. Views set `read_role` and `write_role`; unset means denied.

    A token narrows its owner's rights further: a read-scoped token never writes.
    """

    message = "your role does not allow this"

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        if not (user and user.is_authenticated):
            return False
        # A view whose every method only reads (a check posted for its answer) sets changes_nothing.
        safe = request.method in permissions.SAFE_METHODS or getattr(view, "changes_nothing", False)
        required = getattr(view, "read_role" if safe else "write_role", None)
        if required is None or not user.has_role(required):
            return False
        token = request.auth
        if isinstance(token, PersonalToken):
            return token.allows("write") or (safe and token.allows("read"))
        return True


View = TypeVar("View", bound=Callable[..., HttpResponseBase])


def role_required(role: Role) -> Callable[[View], View]:
    """Page decorator: signed in (the middleware saw to that) and holding at least `role`."""

    def decorate(view: View) -> View:
        @wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            if not request.user.is_authenticated or not request.user.has_role(role):
                raise PermissionDenied
            return view(request, *args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate
