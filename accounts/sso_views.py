"""The identity-provider page for admins: what is configured, whether it answers, where the SP metadata is."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import requests
from allauth.socialaccount.models import SocialAccount
from cryptography import x509
from django.conf import settings
from django.db.models import Count, Max
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from accounts import sso
from accounts.permissions import role_required
from accounts.roles import Role
from portal.http import OutboundError, outbound_session


@dataclass(frozen=True)
class ProviderRow:
    kind: str
    provider_id: str
    slug: str
    name: str
    issuer: str
    directory: str
    groups_claim: str
    endpoint_label: str
    endpoint_url: str
    metadata_url: str
    people: int
    last_sign_in: datetime | None


@require_GET
@role_required(Role.ADMIN)
def identity_providers(request: HttpRequest) -> HttpResponse:
    apps = sso.configured(settings.SOCIALACCOUNT_PROVIDERS)
    usage = {
        row["provider"]: row
        for row in SocialAccount.objects.values("provider").annotate(
            people=Count("id"), last=Max("last_login")
        )
    }
    rows = [_row(request, app, usage.get(app["provider_id"], {})) for app in apps]
    return render(
        request,
        "accounts/identity_providers.html",
        {
            "rows": rows,
            "break_glass": settings.BREAK_GLASS_USERNAMES,
        },
    )


def _row(request: HttpRequest, app: dict[str, Any], usage: dict[str, Any]) -> ProviderRow:
    config = app["settings"]["customs"]
    if app["kind"] == "oidc":
        slug, issuer = app["provider_id"], app["settings"]["server_url"]
        endpoint = reverse("openid_connect_callback", kwargs={"provider_id": slug})
        label, metadata = "Redirect URI to register", ""
    else:
        slug, issuer = app["client_id"], app["settings"]["idp"]["entity_id"]
        endpoint = reverse("saml_acs", kwargs={"organization_slug": slug})
        label = "Assertion consumer service"
        metadata = request.build_absolute_uri(reverse("saml_metadata", kwargs={"organization_slug": slug}))
    return ProviderRow(
        kind=app["kind"],
        provider_id=app["provider_id"],
        slug=slug,
        name=app["name"],
        issuer=issuer,
        directory=config["directory"],
        groups_claim=config["groups_claim"],
        endpoint_label=label,
        endpoint_url=request.build_absolute_uri(endpoint),
        metadata_url=metadata,
        people=usage.get("people", 0),
        last_sign_in=usage.get("last"),
    )


@require_POST
@role_required(Role.ADMIN)
def check_provider(request: HttpRequest, kind: str, slug: str) -> HttpResponse:
    """Ask the provider whether it answers as configured; an htmx fragment with the result."""
    app = _find(kind, slug)
    try:
        ok, detail = _check_oidc(app) if kind == "oidc" else _check_saml(app)
    except (OutboundError, requests.RequestException, ValueError) as exc:
        ok, detail = False, str(exc).split("?", 1)[0][:300]
    return render(request, "accounts/_provider_check.html", {"ok": ok, "detail": detail})


def _find(kind: str, slug: str) -> dict[str, Any]:
    for app in sso.configured(settings.SOCIALACCOUNT_PROVIDERS):
        key = app["provider_id"] if app["kind"] == "oidc" else app["client_id"]
        if app["kind"] == kind and key == slug:
            return app
    raise Http404


def _check_oidc(app: dict[str, Any]) -> tuple[bool, str]:
    session = outbound_session(purpose="oidc check")
    issuer = app["settings"]["server_url"]
    discovery = session.get(f"{issuer}/.well-known/openid-configuration")
    discovery.raise_for_status()
    config = discovery.json()
    if str(config.get("issuer", "")).rstrip("/") != issuer.rstrip("/"):
        return False, f"discovery names issuer {config.get('issuer')!r}, not {issuer!r}"
    keys = session.get(config["jwks_uri"])
    keys.raise_for_status()
    signing = [k for k in keys.json().get("keys", []) if k.get("use", "sig") == "sig"]
    return bool(signing), f"discovery and keys answer; {len(signing)} signing key(s) published"


def _check_saml(app: dict[str, Any]) -> tuple[bool, str]:
    idp = app["settings"]["idp"]
    if "metadata_url" in idp:
        response = outbound_session(purpose="saml check").get(idp["metadata_url"])
        response.raise_for_status()
        if idp["entity_id"] not in response.text:
            return False, "metadata answers but does not name the configured entity id"
        return True, "metadata answers"
    pem = idp["x509cert"]
    if "BEGIN CERTIFICATE" not in pem:
        pem = f"-----BEGIN CERTIFICATE-----\n{pem}\n-----END CERTIFICATE-----"
    certificate = x509.load_pem_x509_certificate(pem.encode())
    expires = certificate.not_valid_after_utc
    days = (expires - datetime.now(tz=expires.tzinfo)).days
    subject = certificate.subject.rfc4514_string()
    return days > 0, f"signing certificate {subject} expires {expires:%Y-%m-%d} ({days} days)"
