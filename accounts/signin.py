"""From a verified sign-in to a Customs person: who it is, which groups they are in, whether to refuse."""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass
from typing import Any

from allauth.core.exceptions import ImmediateHttpResponse
from allauth.socialaccount.models import SocialLogin
from django.http import HttpRequest
from django.shortcuts import render

from accounts.directory import ClaimState, GroupClaim, GroupsClaimed, sync_sign_in_groups
from accounts.models import Source, User
from accounts.oidc import NONCE_STATE_KEY
from accounts.sso import CustomsSettings, customs_settings

# Entra signals group overage instead of sending groups: JWT "_claim_names", SAML a Graph link.
SAML_GROUPS_LINK = "http://schemas.microsoft.com/claims/groups.link"
_DN_COMMON_NAME = re.compile(r"^CN=([^,]+),", re.IGNORECASE)


@dataclass(frozen=True)
class Identity:
    source: Source
    directory: str
    external_id: str
    display_name: str
    email: str
    groups: GroupsClaimed


def identity_from(sociallogin: SocialLogin) -> Identity:
    """What a verified sign-in says about the person. Only verified data reaches this point."""
    app = sociallogin.provider.app
    config = customs_settings(app.settings)
    data: dict[str, Any] = sociallogin.account.extra_data or {}
    if config.kind == "saml":
        return _saml_identity(sociallogin, config, data)
    claims = {**data.get("id_token", {}), **data.get("userinfo", {})}
    return Identity(
        source=Source.OIDC,
        directory=config.directory,
        external_id=str(sociallogin.account.uid),
        display_name=str(claims.get(config.name_claim) or claims.get("preferred_username") or "")[:255],
        email=str(claims.get(config.email_claim) or "")[:254],
        groups=_oidc_groups(data, config.groups_claim),
    )


def _oidc_groups(data: dict[str, Any], claim: str) -> GroupsClaimed:
    # Userinfo first (identity.md §4.1: conforming providers put requested claims there), then the
    # ID token. Absent is not empty: a provider that sends no claim tells us nothing.
    id_token = data.get("id_token", {})
    for part in (data.get("userinfo", {}), id_token):
        if claim in part:
            return _as_claims(part[claim])
    if claim in id_token.get("_claim_names", {}) or id_token.get("hasgroups"):
        return ClaimState.OVERAGE
    return ClaimState.ABSENT


def _saml_identity(sociallogin: SocialLogin, config: CustomsSettings, data: dict[str, Any]) -> Identity:
    first = {name: values[0] for name, values in data.items() if isinstance(values, list) and values}
    mapping = sociallogin.provider.app.settings.get("attribute_mapping", {})
    if config.groups_claim in data:
        groups: GroupsClaimed = _as_claims(data[config.groups_claim])
    elif SAML_GROUPS_LINK in data:
        groups = ClaimState.OVERAGE
    else:
        groups = ClaimState.ABSENT
    given, family = first.get(mapping.get("first_name", ""), ""), first.get(mapping.get("last_name", ""), "")
    return Identity(
        source=Source.SAML,
        directory=config.directory,
        external_id=str(sociallogin.account.uid),
        display_name=f"{given} {family}".strip()[:255],
        email=str(first.get(mapping.get("email", ""), ""))[:254],
        groups=groups,
    )


def _as_claims(values: Any) -> list[GroupClaim]:
    values = [values] if isinstance(values, str) else list(values or [])
    return [GroupClaim(external_id=str(v), display_name=_short_name(str(v))) for v in values if str(v)]


def _short_name(value: str) -> str:
    # LDAP-style DNs relayed from AD: keep the DN as the id, show the common name.
    match = _DN_COMMON_NAME.match(value)
    return match.group(1) if match else value


def check_nonce(request: HttpRequest, sociallogin: SocialLogin) -> None:
    """The ID token must echo the nonce this browser's login started with (OIDC only)."""
    if customs_settings(sociallogin.provider.app.settings).kind != "oidc":
        return
    expected = str((sociallogin.state or {}).get(NONCE_STATE_KEY) or "")
    received = str(sociallogin.account.extra_data.get("id_token", {}).get("nonce") or "")
    if not expected or not hmac.compare_digest(expected, received):
        raise ImmediateHttpResponse(
            _refusal(request, "The sign-in answer does not belong to this sign-in attempt.")
        )


def user_for(identity: Identity) -> User | None:
    """The person SCIM (or another provider of the same directory) already knows by this id."""
    if not identity.external_id:
        return None
    return User.objects.filter(directory=identity.directory, external_id=identity.external_id).first()


def refuse_if_inactive(request: HttpRequest, user: User) -> None:
    if not user.may_sign_in:
        raise ImmediateHttpResponse(_refusal(request, "This account is disabled in the directory."))


def apply(user: User, identity: Identity) -> None:
    """Bring the person's profile and directory groups up to date with this sign-in."""
    changed = [
        name
        for name, value in (("display_name", identity.display_name), ("email", identity.email))
        if value and getattr(user, name) != value
    ]
    for name in changed:
        setattr(user, name, getattr(identity, name))
    if changed:
        user.save(update_fields=changed)
    sync_sign_in_groups(user, identity.groups, source=identity.source)


def _refusal(request: HttpRequest, reason: str) -> Any:
    return render(request, "account/sso_refused.html", {"reason": reason}, status=403)
