"""Fetching objects for a user: 404 when they cannot see it, 403 when they can see but not change it."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from django.shortcuts import get_object_or_404

from accounts.models import PersonalToken, User
from accounts.roles import Role


def signed_in_user(request: HttpRequest) -> User:
    """The request's user, for views behind LoginRequiredMiddleware or a role check."""
    assert isinstance(request.user, User), "view reached without a signed-in user"
    return request.user


def get_token_for_user(user: User, token_id: int, *, write: bool = False) -> PersonalToken:
    token = get_object_or_404(PersonalToken.objects.visible_to(user).select_related("owner"), pk=token_id)
    if write and not can_revoke_token(user, token):
        raise PermissionDenied
    return token


def can_revoke_token(user: User, token: PersonalToken) -> bool:
    # Owners revoke their own; admins revoke anyone's (offboarding, a leaked token). Reviewers only read.
    return token.owner_id == user.pk or user.has_role(Role.ADMIN)
