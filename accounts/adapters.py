from __future__ import annotations

from typing import Any

from allauth.account.adapter import DefaultAccountAdapter
from django.core.exceptions import ValidationError
from django.http import HttpRequest

from portal import audit
from portal.audit import AuditAction, Target


class AccountAdapter(DefaultAccountAdapter):  # type: ignore[misc]
    def is_open_for_signup(self, request: HttpRequest, *args: Any, **kwargs: Any) -> bool:
        # People arrive through the identity provider (and SCIM), never by signing themselves up.
        return False

    def pre_authenticate(self, request: HttpRequest, **credentials: Any) -> None:
        # Once allauth's rate limit blocks a name, Django's user_login_failed no longer fires; without
        # this a brute-force attempt on the break-glass account would vanish from the trail.
        try:
            super().pre_authenticate(request, **credentials)
        except ValidationError:
            attempted = str(credentials.get("username") or credentials.get("login") or "")[:150]
            audit.record(
                None,
                AuditAction.SIGN_IN_THROTTLED,
                target=Target(type="accounts.user", id="", label=attempted),
            )
            raise
