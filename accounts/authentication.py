"""API authentication with personal tokens: `Authorization: Bearer cst_…`."""

from __future__ import annotations

from typing import Any

from rest_framework import authentication, exceptions
from rest_framework.request import Request

from accounts import services
from accounts.models import PersonalToken


class BearerTokenAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[Any, PersonalToken] | None:
        header = authentication.get_authorization_header(request).decode(errors="replace")
        scheme, _, raw = header.partition(" ")
        if scheme.lower() != self.keyword.lower():
            return None  # not ours: let session authentication try
        token = services.authenticate_token(raw.strip(), kind=PersonalToken.Kind.API)
        if token is None:
            raise exceptions.AuthenticationFailed("the token is invalid, expired or revoked")
        return token.owner, token

    def authenticate_header(self, request: Request) -> str:
        # Makes DRF answer 401 (with this challenge) rather than 403 to anonymous API calls.
        return f'{self.keyword} realm="customs"'
