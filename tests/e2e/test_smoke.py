"""The e2e harness works on its own, before any of Customs' sign-in code is involved."""

from __future__ import annotations

import base64
import hashlib
import secrets
import zlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlencode

import jwt
import pytest
import requests
import xmlsec
from django.contrib.auth import get_user_model
from lxml import etree  # type: ignore[import-untyped]  # no stubs in the venv

from tests.e2e.harness import OidcIdp, SamlIdp, public_jwk

if TYPE_CHECKING:
    from playwright.sync_api import Page, Request, Route
    from pytest_django.live_server_helper import LiveServer

DS = "{http://www.w3.org/2000/09/xmldsig#}"
SAML = "{urn:oasis:names:tc:SAML:2.0:assertion}"
GROUPS = "http://schemas.microsoft.com/ws/2008/06/identity/claims/groups"
NONCE = "e2e-nonce"


def test_oidc_idp_publishes_discovery_and_the_fixed_jwks(oidc_idp: OidcIdp) -> None:
    discovery = requests.get(oidc_idp.url("/.well-known/openid-configuration"), timeout=5).json()

    assert discovery["issuer"] == oidc_idp.issuer
    assert "client_secret_post" in discovery["token_endpoint_auth_methods_supported"]
    assert discovery["code_challenge_methods_supported"] == ["S256"]
    assert requests.get(discovery["jwks_uri"], timeout=5).json() == oidc_idp.jwks


def test_oidc_idp_switches_modes_at_run_time(oidc_idp: OidcIdp) -> None:
    for mode in oidc_idp.modes:
        oidc_idp.set_mode(mode)
        assert oidc_idp.mode() == mode

    refused = requests.post(oidc_idp.url("/__test__/mode"), data="no-such-mode", timeout=5)
    assert refused.status_code == 400
    assert refused.json()["modes"] == list(oidc_idp.modes)
    assert oidc_idp.mode() == oidc_idp.modes[-1]


def _verify(idp: OidcIdp, token: str, jwk: dict[str, Any] | None = None) -> dict[str, Any]:
    key = jwt.PyJWK(jwk or idp.jwks["keys"][0])
    claims: dict[str, Any] = jwt.decode(token, key, algorithms=["RS256"], audience=idp.client_id)
    return claims


def _unverified(token: str) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return claims


def _userinfo(idp: OidcIdp, tokens: dict[str, Any]) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    claims: dict[str, Any] = requests.get(idp.url("/me"), headers=headers, timeout=5).json()
    return claims


def _check_normal(idp: OidcIdp, tokens: dict[str, Any]) -> None:
    claims = _verify(idp, tokens["id_token"])
    assert (claims["iss"], claims["sub"], claims["nonce"]) == (idp.issuer, "bob", NONCE)
    assert claims.get("groups") == (None if idp.conform else ["g-staff"])
    assert _userinfo(idp, tokens)["groups"] == ["g-staff"]


def _check_alg_none(idp: OidcIdp, tokens: dict[str, Any]) -> None:
    token = tokens["id_token"]
    assert jwt.get_unverified_header(token) == {"alg": "none"}
    assert token.endswith(".")
    assert _unverified(token)["sub"] == "bob"


def _check_foreign_key(idp: OidcIdp, tokens: dict[str, Any]) -> None:
    token = tokens["id_token"]
    assert jwt.get_unverified_header(token)["kid"] == idp.jwks["keys"][0]["kid"]
    with pytest.raises(jwt.InvalidSignatureError):
        _verify(idp, token)
    assert _verify(idp, token, public_jwk(idp.foreign_jwk))["sub"] == "bob"


def _check_claim(name: str, value: str) -> Callable[[OidcIdp, dict[str, Any]], None]:
    def check(idp: OidcIdp, tokens: dict[str, Any]) -> None:
        # Properly signed with the published key; only the claim is wrong.
        key = jwt.PyJWK(idp.jwks["keys"][0])
        claims = jwt.decode(tokens["id_token"], key, algorithms=["RS256"], options={"verify_aud": False})
        assert claims[name] == value

    return check


def _check_unsigned_groups(idp: OidcIdp, tokens: dict[str, Any]) -> None:
    with pytest.raises(jwt.InvalidSignatureError):
        _verify(idp, tokens["id_token"])
    assert _unverified(tokens["id_token"])["groups"] == ["g-admins"]


def _check_userinfo_other_sub(idp: OidcIdp, tokens: dict[str, Any]) -> None:
    assert _verify(idp, tokens["id_token"])["sub"] == "bob"
    assert _userinfo(idp, tokens)["sub"] == "mallory"


CHECKS: dict[str, Callable[[OidcIdp, dict[str, Any]], None]] = {
    "normal": _check_normal,
    "alg-none": _check_alg_none,
    "foreign-key": _check_foreign_key,
    "other-issuer": _check_claim("iss", "http://127.0.0.1:9999"),
    "other-audience": _check_claim("aud", "someone-else"),
    "wrong-nonce": _check_claim("nonce", "not-the-nonce-you-sent"),
    "unsigned-groups": _check_unsigned_groups,
    "userinfo-other-sub": _check_userinfo_other_sub,
}


@pytest.mark.parametrize("mode", CHECKS)
def test_oidc_idp_answers_as_its_mode_says(oidc_idp: OidcIdp, mode: str) -> None:
    code = oidc_idp.authorization_code("bob", nonce=NONCE)
    oidc_idp.set_mode(mode)

    CHECKS[mode](oidc_idp, oidc_idp.tokens(code))


def test_every_mode_has_a_check(oidc_idp: OidcIdp) -> None:
    assert set(CHECKS) == set(oidc_idp.modes)


def test_saml_idp_metadata_carries_the_generated_cert(saml_idp: SamlIdp) -> None:
    response = requests.get(saml_idp.entity_id, timeout=5)

    assert response.status_code == 200
    metadata = etree.fromstring(response.content)
    assert metadata.get("entityID") == saml_idp.entity_id
    assert {c.text for c in metadata.iter(f"{DS}X509Certificate")} == {saml_idp.cert_base64}
    assert saml_idp.sso_url.encode() in response.content


@pytest.mark.django_db(transaction=True)
def test_chromium_loads_customs_sign_in_page(page: Page, live_server: LiveServer, rp_base: str) -> None:
    assert live_server.url == rp_base

    response = page.goto(f"{live_server.url}/accounts/login/")

    assert response is not None
    assert response.status == 200
    assert page.locator("h1").inner_text() == "Sign in to Customs"
    # The ORM still works in a test body while Playwright's event loop runs in this thread.
    assert get_user_model().objects.count() == 0


def _capture(page: Page, url: str) -> list[Request]:
    """Answer requests to `url` in the browser itself and keep them: nothing reaches Customs.

    Routes see only the first request of a redirect chain, so this catches form POSTs (SAML's
    HTTP-POST binding, OIDC's response_mode=form_post), not a 302/303 to `url`.
    """
    seen: list[Request] = []

    def handle(route: Route) -> None:
        seen.append(route.request)
        route.fulfill(status=200, content_type="text/plain", body="captured by the e2e harness")

    page.route(lambda u: u.startswith(url), handle)
    return seen


def test_oidc_sign_in_at_the_idp_in_chromium(page: Page, oidc_idp: OidcIdp) -> None:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    query = {
        "client_id": oidc_idp.client_id,
        "redirect_uri": oidc_idp.redirect_uri,
        "response_type": "code",
        "response_mode": "form_post",  # a POST to the callback, which page.route can stop
        "scope": "openid profile email groups",
        "state": "e2e-state",
        "nonce": NONCE,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    callbacks = _capture(page, oidc_idp.redirect_uri)
    failed: list[str] = []
    page.on("requestfailed", lambda request: failed.append(request.url))

    page.goto(oidc_idp.url("/auth?" + urlencode(query)))
    page.fill("input[name=login]", "alice")
    page.fill("input[name=password]", "anything")
    page.click("button:has-text('Sign-in')")
    page.click("button:has-text('Continue')")
    page.wait_for_url(oidc_idp.redirect_uri)

    form = parse_qs(callbacks[0].post_data or "")
    assert form["state"] == ["e2e-state"]
    tokens = oidc_idp.tokens(form["code"][0], code_verifier=verifier)
    claims = _verify(oidc_idp, tokens["id_token"])
    assert (claims["sub"], claims["nonce"]) == ("alice", NONCE)
    # The login page's web font was refused at once rather than left to time out.
    assert any(url.startswith("https://fonts.googleapis.com/") for url in failed)


def _authn_request(saml_idp: SamlIdp) -> str:
    """A minimal unsigned AuthnRequest from Customs' SP entityID, deflated for the Redirect binding."""
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    xml = (
        '<samlp:AuthnRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" '
        'xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" '
        f'ID="_e2e{secrets.token_hex(16)}" Version="2.0" IssueInstant="{now}" '
        f'Destination="{saml_idp.sso_url}" AssertionConsumerServiceURL="{saml_idp.acs_url}" '
        'ProtocolBinding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST">'
        f"<saml:Issuer>{saml_idp.sp_entity_id}</saml:Issuer></samlp:AuthnRequest>"
    )
    deflated = zlib.compress(xml.encode())[2:-4]  # raw DEFLATE: no zlib header or checksum
    return base64.b64encode(deflated).decode()


def _verify_signature(signature: Any, cert_pem: str) -> None:
    context = xmlsec.SignatureContext()
    context.key = xmlsec.Key.from_memory(cert_pem, xmlsec.constants.KeyDataFormatCertPem)
    context.verify(signature)


def test_saml_sign_in_at_the_idp_in_chromium(page: Page, saml_idp: SamlIdp) -> None:
    posts = _capture(page, saml_idp.acs_url)

    page.goto(saml_idp.sso_url + "?" + urlencode({"SAMLRequest": _authn_request(saml_idp)}))
    page.fill("input[name=username]", "alice")
    page.fill("input[name=password]", "alice-pw")
    page.click("button[type=submit], input[type=submit]")
    page.wait_for_url(saml_idp.acs_url)

    form = parse_qs(posts[0].post_data or "")
    response = etree.fromstring(base64.b64decode(form["SAMLResponse"][0]))
    assert response.get("Destination") == saml_idp.acs_url
    assert response.findtext(f".//{SAML}Audience") == saml_idp.sp_entity_id
    xmlsec.tree.add_ids(response, ["ID"])
    signatures = list(response.iter(f"{DS}Signature"))
    assert [s.getparent().tag.rsplit("}")[1] for s in signatures] == ["Response", "Assertion"]
    for signature in signatures:
        assert signature.find(f"{DS}SignedInfo/{DS}SignatureMethod").get("Algorithm").endswith("rsa-sha256")
        _verify_signature(signature, saml_idp.cert_pem)
        with pytest.raises(xmlsec.Error):
            _verify_signature(signature, saml_idp.other_cert_pem)
    groups = response.find(f".//{SAML}Attribute[@Name='{GROUPS}']")
    assert [v.text for v in groups.iter(f"{SAML}AttributeValue")] == [
        "CN=Portal-Admins,OU=Groups,DC=corp,DC=test",
        "CN=Staff,OU=Groups,DC=corp,DC=test",
    ]
