"""OpenID Connect sign-in that trusts only verified identity data.

allauth's generic provider decodes the ID token without checking its signature when it came
from the token endpoint, sends no nonce, and never compares userinfo's subject with the token's
(identity.md §3.1). Customs keeps allauth's flow and replaces those steps: a nonce is sent and
stashed with the login state, the ID token's signature is checked against the provider's
published keys with the algorithms pinned, and userinfo is used only for the same subject.
The nonce itself is compared in the social-account adapter, which sees the login state.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

import jwt
import requests
from allauth.socialaccount.helpers import render_authentication_error
from allauth.socialaccount.internal.jwtkit import verify_jti
from allauth.socialaccount.models import SocialApp, SocialLogin, SocialToken
from allauth.socialaccount.providers.oauth2.client import OAuth2Error
from allauth.socialaccount.providers.oauth2.views import OAuth2CallbackView, OAuth2LoginView
from allauth.socialaccount.providers.openid_connect.provider import OpenIDConnectProvider
from allauth.socialaccount.providers.openid_connect.views import OpenIDConnectOAuth2Adapter
from django.contrib.auth.decorators import login_not_required
from django.http import Http404, HttpRequest, HttpResponse

from accounts.sso import ALLOWED_ALGORITHMS, customs_settings
from portal.http import OutboundError, outbound_session

NONCE_STATE_KEY = "oidc_nonce"
# Leeway for clock skew between Customs and the provider when checking exp, iat and nbf.
LEEWAY_SECONDS = 60


class VerifiedOIDCProvider(OpenIDConnectProvider):  # type: ignore[misc]
    """allauth's OIDC provider, plus a nonce bound to the login state."""

    def redirect(
        self, request: HttpRequest, process: str, next_url: str | None = None, data: Any = None, **kwargs: Any
    ) -> HttpResponse:
        nonce = secrets.token_urlsafe(32)
        auth_params = kwargs.pop("auth_params", None) or self.get_auth_params()
        auth_params["nonce"] = nonce
        # Extra keyword arguments end up in the stashed state, which only this browser session holds.
        response: HttpResponse = super().redirect(
            request,
            process,
            next_url,
            data,
            auth_params=auth_params,
            **{NONCE_STATE_KEY: nonce},
            **kwargs,
        )
        return response

    def get_oauth2_adapter(self, request: HttpRequest) -> VerifiedOIDCAdapter:
        return VerifiedOIDCAdapter(request, self.app.provider_id)


class VerifiedOIDCAdapter(OpenIDConnectOAuth2Adapter):  # type: ignore[misc]
    @property
    def openid_config(self) -> dict[str, Any]:
        if not hasattr(self, "_checked_config"):
            config: dict[str, Any] = super().openid_config
            _check_discovery(config, self.get_provider().app)
            self._checked_config = config
        return self._checked_config

    def complete_login(
        self, request: HttpRequest, app: SocialApp, token: SocialToken, **kwargs: Any
    ) -> SocialLogin:
        raw_id_token = kwargs["response"].get("id_token")
        if not raw_id_token:
            raise OAuth2Error("the provider returned no ID token; Customs signs in only with a verified one")
        claims = self.verified_id_token(app, raw_id_token)
        data: dict[str, Any] = {"id_token": claims}
        if app.settings.get("fetch_userinfo", True):
            userinfo = self._fetch_user_info(token.token)
            if userinfo.get("sub") != claims["sub"]:
                # A userinfo answer for someone else must never sign the caller in as them.
                raise OAuth2Error("userinfo describes another subject than the ID token")
            data["userinfo"] = userinfo
        login: SocialLogin = self.get_provider().sociallogin_from_response(request, data)
        return login

    def verified_id_token(self, app: SocialApp, raw: str) -> dict[str, Any]:
        """The ID token's claims, once its signature, issuer, audience and lifetime check out."""
        allowed = [a for a in customs_settings(app.settings).algorithms if a in ALLOWED_ALGORITHMS]
        try:
            header = jwt.get_unverified_header(raw)
        except jwt.PyJWTError as exc:
            raise OAuth2Error("the ID token is not a JWT") from exc
        if header.get("alg") not in allowed:
            raise OAuth2Error(f"ID token algorithm {header.get('alg')!r} is not one of {allowed}")
        key = self._published_key(header)
        try:
            claims: dict[str, Any] = jwt.decode(
                raw,
                key=key,
                algorithms=allowed,
                audience=app.client_id,
                issuer=self.openid_config["issuer"],
                leeway=LEEWAY_SECONDS,
                options={"require": ["iss", "aud", "exp", "iat", "sub"]},
            )
        except jwt.PyJWTError as exc:
            raise OAuth2Error(f"ID token refused: {exc}") from exc
        if (
            isinstance(claims.get("aud"), list)
            and len(claims["aud"]) > 1
            and claims.get("azp") != app.client_id
        ):
            raise OAuth2Error("ID token for several audiences without this client as its authorised party")
        verify_jti(claims)  # a replayed token (same jti) is refused while it is still valid
        return claims

    def _published_key(self, header: dict[str, Any]) -> Any:
        """The provider's published key the token names; never a key carried in the token itself."""
        keys = self._jwks().get("keys", [])
        kid = header.get("kid")
        candidates = [
            k for k in keys if k.get("use", "sig") == "sig" and (kid is None or k.get("kid") == kid)
        ]
        if kid is None and len(candidates) != 1:
            raise OAuth2Error("the ID token names no key and the provider publishes several")
        if not candidates:
            raise OAuth2Error(f"the ID token is signed with key {kid!r}, which the provider does not publish")
        jwk = candidates[0]
        if jwk.get("alg") and jwk["alg"] != header["alg"]:
            raise OAuth2Error(f"key {kid!r} is published for {jwk['alg']}, not {header['alg']}")
        try:
            return jwt.PyJWK.from_json(json.dumps(jwk), algorithm=header["alg"]).key
        except jwt.PyJWTError as exc:
            raise OAuth2Error(f"the provider's key {kid!r} cannot be used: {exc}") from exc

    def _jwks(self) -> dict[str, Any]:
        url = self.openid_config["jwks_uri"]
        try:
            response = outbound_session(purpose="oidc keys").get(url)
            response.raise_for_status()
            keys: dict[str, Any] = response.json()
        except (OutboundError, requests.RequestException, ValueError) as exc:
            raise OAuth2Error(f"the provider's keys could not be read from {url}") from exc
        return keys


def _check_discovery(config: dict[str, Any], app: SocialApp) -> None:
    """Refuse a discovery document for another issuer, or one that sends us to plain HTTP."""
    expected = app.settings["server_url"].split("/.well-known/", 1)[0].rstrip("/")
    if str(config.get("issuer", "")).rstrip("/") != expected:
        raise OAuth2Error(f"the discovery document names issuer {config.get('issuer')!r}, not {expected!r}")
    allow_http = customs_settings(app.settings).allow_http
    for name in ("authorization_endpoint", "token_endpoint", "jwks_uri", "userinfo_endpoint"):
        url = str(config.get(name, ""))
        if name != "userinfo_endpoint" and not url:
            raise OAuth2Error(f"the discovery document has no {name}")
        if url and not (url.startswith("https://") or (allow_http and url.startswith("http://"))):
            raise OAuth2Error(f"the provider's {name} is not https: {url}")


@login_not_required
def login(request: HttpRequest, provider_id: str) -> HttpResponse:
    adapter = VerifiedOIDCAdapter(request, provider_id)
    try:
        view = OAuth2LoginView.adapter_view(adapter)
        return view(request)  # type: ignore[no-any-return]
    except SocialApp.DoesNotExist:
        raise Http404 from None
    except (OAuth2Error, OutboundError, requests.RequestException) as exc:
        # A provider we cannot trust or reach: say so on allauth's error page, not with a 500.
        error_page: HttpResponse = render_authentication_error(request, adapter.get_provider(), exception=exc)
        return error_page


@login_not_required
def callback(request: HttpRequest, provider_id: str) -> HttpResponse:
    adapter = VerifiedOIDCAdapter(request, provider_id)
    try:
        view = OAuth2CallbackView.adapter_view(adapter)
        return view(request)  # type: ignore[no-any-return]
    except SocialApp.DoesNotExist:
        raise Http404 from None
    except OutboundError as exc:
        # allauth catches its own and requests' errors; ours (a provider timing out during the
        # code exchange or the key fetch) must end on the same error page, not a 500.
        error_page: HttpResponse = render_authentication_error(request, adapter.get_provider(), exception=exc)
        return error_page
