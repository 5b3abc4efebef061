from __future__ import annotations

from typing import Any

from allauth.account.adapter import DefaultAccountAdapter
from django.http import HttpRequest


class AccountAdapter(DefaultAccountAdapter):  # type: ignore[misc]
    def is_open_for_signup(self, request: HttpRequest, *args: Any, **kwargs: Any) -> bool:
        # People arrive through the identity provider (and SCIM), never by signing themselves up.
        return False
