"""Identity providers from the environment: OIDC and SAML apps for django-allauth.

Each provider is named in a list variable and configured by variables carrying its id, e.g.
CUSTOMS_OIDC_PROVIDERS=entra and CUSTOMS_OIDC_ENTRA_ISSUER=…; the README lists them all. The
result is allauth's SOCIALACCOUNT_PROVIDERS; what only Customs reads (claim names, the directory,
pinned algorithms) rides along in each app's settings under "customs".
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from portal.env import env_bool, env_list, env_secret, env_str

_ID = re.compile(r"^[a-z][a-z0-9-]{0,39}$")
# Asymmetric algorithms only: an HMAC "signature" would be keyed with our own client secret, and
# "none" is no signature at all.
ALLOWED_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"}
)
ENTRA_GROUPS_ATTRIBUTE = "http://schemas.microsoft.com/ws/2008/06/identity/claims/groups"
ENTRA_OBJECT_ID_ATTRIBUTE = "http://schemas.microsoft.com/identity/claims/objectidentifier"


@dataclass(frozen=True)
class CustomsSettings:
    """What Customs reads about a provider beyond allauth's own keys."""

    kind: str  # "oidc" or "saml"
    directory: str = "default"
    groups_claim: str = "groups"
    email_claim: str = "email"
    name_claim: str = "name"
    algorithms: list[str] = field(default_factory=lambda: ["RS256"])
    allow_http: bool = False


def providers_from_env(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """SOCIALACCOUNT_PROVIDERS for every provider the environment configures."""
    allow_http = env_bool("CUSTOMS_OIDC_ALLOW_HTTP", False, environ=environ)
    oidc = [_oidc_app(pid, environ, allow_http) for pid in _ids("CUSTOMS_OIDC_PROVIDERS", environ)]
    saml = [_saml_app(pid, environ) for pid in _ids("CUSTOMS_SAML_PROVIDERS", environ)]
    providers: dict[str, Any] = {}
    if oidc:
        providers["openid_connect"] = {"OAUTH_PKCE_ENABLED": True, "APPS": oidc}
    if saml:
        providers["saml"] = {"APPS": saml}
    return providers


def _ids(variable: str, environ: Mapping[str, str] | None) -> list[str]:
    ids = env_list(variable, environ=environ)
    for pid in ids:
        if not _ID.match(pid):
            raise ImproperlyConfigured(f"{variable}: {pid!r} is not an id (lowercase letters, digits, '-')")
    if len(set(ids)) != len(ids):
        raise ImproperlyConfigured(f"{variable} names a provider twice")
    return ids


def _prefix(kind: str, pid: str) -> str:
    return f"CUSTOMS_{kind}_{pid.upper().replace('-', '_')}_"


def _required(name: str, environ: Mapping[str, str] | None, *, secret: bool = False) -> str:
    value = env_secret(name, environ=environ) if secret else env_str(name, environ=environ)
    if not value:
        raise ImproperlyConfigured(f"{name} is required")
    return value


def _https(name: str, url: str, *, allow_http: bool) -> str:
    # Identity data over plain HTTP could be rewritten on the way; only the test IdPs may use it.
    if not url.startswith("https://") and not (allow_http and url.startswith("http://")):
        raise ImproperlyConfigured(f"{name}={url!r} must be an https:// URL")
    return url.rstrip("/")


def _oidc_app(pid: str, environ: Mapping[str, str] | None, allow_http: bool) -> dict[str, Any]:
    p = _prefix("OIDC", pid)
    issuer = _https(f"{p}ISSUER", _required(f"{p}ISSUER", environ), allow_http=allow_http)
    algorithms = env_list(f"{p}ALGORITHMS", ["RS256"], environ=environ)
    if unknown := sorted(set(algorithms) - ALLOWED_ALGORITHMS):
        raise ImproperlyConfigured(
            f"{p}ALGORITHMS: {', '.join(unknown)} not allowed; use {sorted(ALLOWED_ALGORITHMS)}"
        )
    customs = CustomsSettings(
        kind="oidc",
        directory=env_str(f"{p}DIRECTORY", "default", environ=environ),
        groups_claim=env_str(f"{p}GROUPS_CLAIM", "groups", environ=environ),
        email_claim=env_str(f"{p}EMAIL_CLAIM", "email", environ=environ),
        name_claim=env_str(f"{p}NAME_CLAIM", "name", environ=environ),
        algorithms=algorithms,
        allow_http=allow_http,
    )
    return {
        "provider_id": pid,
        "name": env_str(f"{p}NAME", pid, environ=environ),
        "client_id": _required(f"{p}CLIENT_ID", environ),
        "secret": _required(f"{p}CLIENT_SECRET", environ, secret=True),
        "settings": {
            "server_url": issuer,
            "token_auth_method": env_str(f"{p}TOKEN_AUTH_METHOD", "client_secret_post", environ=environ),
            "scope": env_list(f"{p}SCOPES", ["openid", "profile", "email"], separator=" ", environ=environ),
            "fetch_userinfo": env_bool(f"{p}FETCH_USERINFO", True, environ=environ),
            "uid_field": env_str(f"{p}UID_CLAIM", "sub", environ=environ),
            "oauth_pkce_enabled": True,
            "customs": asdict(customs),
        },
    }


def _saml_app(pid: str, environ: Mapping[str, str] | None) -> dict[str, Any]:
    p = _prefix("SAML", pid)
    entity_id = _required(f"{p}IDP_ENTITY_ID", environ)
    idp: dict[str, str] = {"entity_id": entity_id}
    if metadata_url := env_str(f"{p}METADATA_URL", environ=environ):
        idp["metadata_url"] = _https(f"{p}METADATA_URL", metadata_url, allow_http=_allow_http(environ))
    else:
        idp["sso_url"] = _required(f"{p}SSO_URL", environ)
        idp["x509cert"] = _required(f"{p}X509CERT", environ, secret=True)
    customs = CustomsSettings(
        kind="saml",
        directory=env_str(f"{p}DIRECTORY", "default", environ=environ),
        groups_claim=env_str(f"{p}GROUPS_ATTRIBUTE", ENTRA_GROUPS_ATTRIBUTE, environ=environ),
    )
    mapping = {
        "uid": env_str(f"{p}UID_ATTRIBUTE", ENTRA_OBJECT_ID_ATTRIBUTE, environ=environ),
        "email": env_str(
            f"{p}EMAIL_ATTRIBUTE",
            "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress",
            environ=environ,
        ),
        "first_name": env_str(
            f"{p}FIRST_NAME_ATTRIBUTE",
            "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/givenname",
            environ=environ,
        ),
        "last_name": env_str(
            f"{p}LAST_NAME_ATTRIBUTE",
            "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/surname",
            environ=environ,
        ),
    }
    return {
        # allauth stores SocialAccount.provider = provider_id; the IdP's entityID keeps it unique.
        "provider_id": entity_id,
        "name": env_str(f"{p}NAME", pid, environ=environ),
        "client_id": pid,  # the slug in /accounts/saml/<slug>/…
        "settings": {
            "attribute_mapping": mapping,
            "idp": idp,
            # Pinned: otherwise the SP entityID follows the request's Host and scheme (identity.md §6.2).
            "sp": {"entity_id": _required(f"{p}SP_ENTITY_ID", environ)},
            "advanced": {
                "strict": True,
                "want_assertion_signed": True,
                "want_message_signed": env_bool(f"{p}WANT_MESSAGE_SIGNED", False, environ=environ),
                "reject_idp_initiated_sso": True,
                "reject_deprecated_algorithm": True,
            },
            "customs": asdict(customs),
        },
    }


def _allow_http(environ: Mapping[str, str] | None) -> bool:
    return env_bool("CUSTOMS_OIDC_ALLOW_HTTP", False, environ=environ)


def customs_settings(app_settings: Mapping[str, Any]) -> CustomsSettings:
    """Customs' part of an allauth app's settings."""
    return CustomsSettings(**app_settings.get("customs", {"kind": "oidc"}))


def configured(providers: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every configured app, OIDC then SAML, with its kind."""
    return [
        {**app, "kind": kind}
        for kind, key in (("oidc", "openid_connect"), ("saml", "saml"))
        for app in providers.get(key, {}).get("APPS", [])
    ]
