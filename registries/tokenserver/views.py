"""GET and OAuth2 POST on /auth/token: authenticate with a Customs registry or robot token, answer a JWT."""

from __future__ import annotations

import base64
import binascii
import time
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse, JsonResponse, QueryDict
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from registries.models import Registry
from registries.tokenserver import issue
from registries.tokenserver.scopes import Scope, parse_scopes

REALM = "Customs registry tokens"


class Refusal(Exception):
    """Ends the request with a registry-style error body."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@csrf_exempt  # called by registry clients, never a browser; no cookies are read
@login_not_required  # it authenticates each request itself, from the Basic header or the form
@require_http_methods(["GET", "POST"])
def token(request: HttpRequest) -> HttpResponse:
    form = request.POST if request.method == "POST" else request.GET
    try:
        registry = _registry(form.get("service", ""))
        if request.method == "POST":
            return _oauth(request.POST, registry)
        return _get(request, registry)
    except Refusal as refusal:
        return _error(refusal)


def _get(request: HttpRequest, registry: Registry) -> HttpResponse:
    credentials = _basic(request)
    account = request.GET.get("account", "")
    if credentials and account and account != credentials[0]:
        # docker_auth's answer too: the client's idea of who it is disagrees with what it sent.
        raise Refusal(400, "DENIED", "account does not match the Basic user")
    principal = _authenticate(registry, *credentials) if credentials else None
    offline = request.GET.get("offline_token") == "true" and credentials is not None
    refresh = credentials[1] if offline and credentials else None
    return _answer(principal, registry, parse_scopes(request.GET.getlist("scope")), refresh=refresh)


def _oauth(form: QueryDict, registry: Registry) -> HttpResponse:
    if not form.get("client_id"):
        raise Refusal(400, "UNSUPPORTED", "client_id is required")
    grant_type = form.get("grant_type")
    if grant_type == "password":
        secret = form.get("password", "")
        offline = form.get("access_type") == "offline"
    elif grant_type == "refresh_token":
        secret, offline = form.get("refresh_token", ""), True
    else:
        raise Refusal(400, "UNSUPPORTED", "grant_type must be password or refresh_token")
    principal = _authenticate(
        registry, form.get("username", ""), secret, require_username=grant_type == "password"
    )
    scopes = parse_scopes([form.get("scope", "")])
    return _answer(principal, registry, scopes, refresh=secret if offline else None, oauth=True)


def _answer(
    principal: issue.Principal | None,
    registry: Registry,
    scopes: list[Scope],
    *,
    refresh: str | None,
    oauth: bool = False,
) -> HttpResponse:
    try:
        issued = issue.issue(principal, registry, scopes)
    except issue.NoSigningKey:
        raise Refusal(503, "UNAVAILABLE", "the token server has no signing key yet") from None
    body: dict[str, Any] = {
        "token": issued.token,
        "access_token": issued.token,
        "expires_in": settings.REGISTRY_TOKEN_LIFETIME_SECONDS,
        "issued_at": datetime.fromtimestamp(issued.issued_at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    if oauth:
        body["scope"] = " ".join(str(_granted_scope(g)) for g in issued.granted if g.actions)
    if refresh and principal is not None:
        # The refresh token is the registry or robot token itself: it already expires, is revocable,
        # and dies with its owner's departure or its group, which is all a refresh token must do (B3).
        body["refresh_token"] = refresh
    return JsonResponse(body, headers={"Cache-Control": "no-store"})


def _granted_scope(granted: issue.ScopeGrant) -> Scope:
    return Scope(granted.asked.type, granted.asked.name, granted.actions)


# Every token request names its service; which registry that is changes only when an admin edits a
# registry, so each process remembers it briefly instead of asking the database every time.
SERVICE_CACHE_SECONDS = 30.0
_services: dict[str, tuple[Registry, float]] = {}


def _registry(service: str) -> Registry:
    known = _services.get(service)
    if known is not None and time.monotonic() - known[1] < SERVICE_CACHE_SECONDS:
        return known[0]
    registry = Registry.objects.filter(token_service=service).first() if service else None
    if registry is None:
        raise Refusal(400, "UNSUPPORTED", f"unknown service {service[:100]!r}")
    _services[service] = (registry, time.monotonic())
    return registry


def forget_services() -> None:
    """Drop this process's service → registry memory (when registries change here, and in tests)."""
    _services.clear()


def _basic(request: HttpRequest) -> tuple[str, str] | None:
    """(username, secret) from HTTP Basic; None when the client sent no Authorization at all."""
    header = request.headers.get("Authorization", "")
    if not header:
        return None
    scheme, _, encoded = header.partition(" ")
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        decoded = ""
    username, separator, secret = decoded.partition(":")
    if scheme.lower() != "basic" or not separator:
        return ("", "")  # present but unusable: a failed login, not an anonymous one
    return username, secret


def _authenticate(
    registry: Registry, username: str, secret: str, *, require_username: bool = True
) -> issue.Principal:
    """The token's person or robot, or a 401.

    The username must be the token's (the owner's, or `robot$<name>`), so a leaked name means nothing.
    """
    principal = issue.authenticate(secret)
    if principal is None or (username != principal.subject and (require_username or username)):
        issue.refuse_credentials(registry, username=username)
        raise Refusal(401, "UNAUTHORIZED", "invalid username or registry token")
    return principal


def _error(refusal: Refusal) -> HttpResponse:
    body = {"errors": [{"code": refusal.code, "message": refusal.message, "detail": None}]}
    response = JsonResponse(body, status=refusal.status)
    if refusal.status == 401:
        response["WWW-Authenticate"] = f'Basic realm="{REALM}"'
    return response
