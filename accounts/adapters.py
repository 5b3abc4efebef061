from __future__ import annotations

from typing import Any

from allauth.account.adapter import DefaultAccountAdapter
from allauth.socialaccount.adapter import DefaultSocialAccountAdapter, _build_apps_from_settings
from allauth.socialaccount.models import SocialLogin
from allauth.socialaccount.providers.openid_connect.provider import OpenIDConnectProvider
from django.conf import settings
from django.core.exceptions import ValidationError
from django.http import HttpRequest

from accounts import signin
from accounts.oidc import VerifiedOIDCProvider
from portal import audit
from portal.audit import AuditAction, Target
from portal.http import outbound_session


class AccountAdapter(DefaultAccountAdapter):  # type: ignore[misc]
    def is_open_for_signup(self, request: HttpRequest, *args: Any, **kwargs: Any) -> bool:
        # People arrive through the identity provider (and SCIM), never by signing themselves up.
        return False

    def pre_authenticate(self, request: HttpRequest, **credentials: Any) -> None:
        attempted = str(credentials.get("username") or credentials.get("login") or "")[:150]
        if settings.SOCIALACCOUNT_PROVIDERS and attempted not in settings.BREAK_GLASS_USERNAMES:
            # With an identity provider configured, passwords are for the break-glass accounts only.
            audit.record(
                None,
                AuditAction.SIGN_IN_FAILED,
                reason="password sign-in is off",
                target=Target(type="accounts.user", id="", label=attempted),
            )
            raise ValidationError("Sign in through your organisation's identity provider.")
        # Once allauth's rate limit blocks a name, Django's user_login_failed no longer fires; without
        # this a brute-force attempt on the break-glass account would vanish from the trail.
        try:
            super().pre_authenticate(request, **credentials)
        except ValidationError:
            audit.record(
                None,
                AuditAction.SIGN_IN_THROTTLED,
                target=Target(type="accounts.user", id="", label=attempted),
            )
            raise


class SocialAccountAdapter(DefaultSocialAccountAdapter):  # type: ignore[misc]
    """Sign-ins through the identity provider: verified claims in, directory groups out."""

    def get_provider(self, request: HttpRequest, provider: str, client_id: str | None = None) -> Any:
        found = super().get_provider(request, provider, client_id)
        if isinstance(found, OpenIDConnectProvider) and not isinstance(found, VerifiedOIDCProvider):
            return VerifiedOIDCProvider(request, app=found.app)
        return found

    def list_apps(
        self, request: HttpRequest, provider: str | None = None, client_id: str | None = None
    ) -> Any:
        # Only providers from the configuration: allauth's database apps would keep client secrets
        # in clear text, and nobody could review them in a deploy.
        apps = _build_apps_from_settings(provider=provider, client_id=client_id)
        return [app for per_provider in apps.values() for app in per_provider]

    def get_requests_session(self) -> Any:
        return outbound_session(purpose="sign-in")

    def is_open_for_signup(self, request: HttpRequest, sociallogin: SocialLogin) -> bool:
        return True  # whoever the directory lets through may use Customs, as a developer by default

    def pre_social_login(self, request: HttpRequest, sociallogin: SocialLogin) -> None:
        """Every sign-in, before anyone is logged in: check the nonce, link, refuse or sync."""
        super().pre_social_login(request, sociallogin)
        signin.check_nonce(request, sociallogin)
        identity = signin.identity_from(sociallogin)
        # An e-mail address never links accounts; the directory's immutable id does.
        known = sociallogin.user if sociallogin.is_existing else signin.user_for(identity)
        if known is None:
            return  # a new person: populate_user and save_user take over
        signin.refuse_if_inactive(request, known)
        if not sociallogin.is_existing:
            sociallogin.connect(request, known)
        signin.apply(known, identity)

    def populate_user(self, request: HttpRequest, sociallogin: SocialLogin, data: dict[str, Any]) -> Any:
        user = super().populate_user(request, sociallogin, data)
        identity = signin.identity_from(sociallogin)
        user.directory, user.external_id, user.source = (
            identity.directory,
            identity.external_id,
            identity.source,
        )
        user.display_name = identity.display_name
        return user

    def save_user(self, request: HttpRequest, sociallogin: SocialLogin, form: Any = None) -> Any:
        user = super().save_user(request, sociallogin, form)
        signin.apply(user, signin.identity_from(sociallogin))
        return user
