"""Federated sign-in end to end: Chromium, Customs' live server, a real OIDC and a real SAML provider.

Positive flows check that people land signed in with the groups and role their IdP gave. Attacks
are made by the OIDC provider's test modes (its server-to-server answers, which a browser never
sees) and, for SAML, by rewriting the browser's POST to the assertion consumer service.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from contextlib import suppress
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlencode

import pytest
import xmlsec
from allauth.socialaccount.models import SocialAccount
from lxml import etree  # type: ignore[import-untyped]  # no stubs in the venv
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from accounts.models import DirectoryGroup, RoleBinding, Source, User
from accounts.roles import Role
from tests.e2e.harness import OidcIdp, SamlIdp

if TYPE_CHECKING:
    from playwright.sync_api import Page, Route
    from pytest_django.live_server_helper import LiveServer

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("idp_settings")]

DS_NS = "http://www.w3.org/2000/09/xmldsig#"
SAML_NS = "urn:oasis:names:tc:SAML:2.0:assertion"
SAMLP_NS = "urn:oasis:names:tc:SAML:2.0:protocol"
GROUPS = "http://schemas.microsoft.com/ws/2008/06/identity/claims/groups"
PORTAL_ADMINS_DN = "CN=Portal-Admins,OU=Groups,DC=corp,DC=test"


def _start(page: Page, live_server: LiveServer, button: str) -> None:
    page.goto(f"{live_server.url}/accounts/login/")
    page.click(f"button:has-text('Sign in with {button}')")


def sign_in_oidc(page: Page, live_server: LiveServer, login: str) -> None:
    _start(page, live_server, "Local OIDC")
    page.fill("input[name=login]", login)
    page.fill("input[name=password]", "any password: devInteractions checks none")
    page.click("button:has-text('Sign-in')")
    page.click("button:has-text('Continue')")
    page.wait_for_load_state()


def sign_in_saml(page: Page, live_server: LiveServer, login: str, password: str) -> None:
    """Sign in at the SAML IdP and wait for Customs' answer.

    Once in a few hundred CI runs SimpleSAMLphp (a single-threaded `php -S`) has answered the
    login form with its own page instead of the assertion. That is the harness failing before
    Customs is reached, so the sign-in starts over once; a second miss fails with the IdP's words.
    """
    idp_said = _sign_in_saml_once(page, live_server, login, password)
    if idp_said is not None:
        print(f"SAML IdP did not answer with an assertion; signing in again. It said: {idp_said}")
        idp_said = _sign_in_saml_once(page, live_server, login, password)
    assert idp_said is None, f"the SAML IdP never sent an assertion; it said: {idp_said}"


def _sign_in_saml_once(page: Page, live_server: LiveServer, login: str, password: str) -> str | None:
    """None once Customs has answered; else the text of the IdP page the browser was left on."""
    _start(page, live_server, "Local SAML")
    page.fill("input[name=username]", login)
    page.fill("input[name=password]", password)
    page.click("button[type=submit], input[type=submit]")
    # The IdP answers with a page that posts itself to Customs; wait until Customs has answered.
    with suppress(PlaywrightTimeout):
        # Customs' ACS answers with a redirect to .../acs/finish/, which shows the result.
        # Generous: on a loaded CI machine SimpleSAMLphp's answer and its trip through the test's
        # ACS rewrite have taken longer than 25 s. Only a slow run waits this long.
        page.wait_for_url(
            lambda url: url.startswith(live_server.url) and not url.endswith("/acs/"), timeout=60_000
        )
    page.wait_for_load_state()
    if page.url.startswith(live_server.url):
        return None
    return " ".join(page.locator("body").inner_text().split())[:500]


def on_dashboard(page: Page, live_server: LiveServer) -> bool:
    return page.url == f"{live_server.url}/" and page.locator("h1").inner_text() == "Dashboard"


def badge(page: Page) -> str:
    return page.locator(".who .role-badge").inner_text()


# --- OIDC ----------------------------------------------------------------------------------------


def test_oidc_sign_in_lands_with_the_groups_and_role_the_idp_gave(
    page: Page, live_server: LiveServer
) -> None:
    admins = DirectoryGroup.objects.create(external_id="g-admins", display_name="Admins", source=Source.OIDC)
    RoleBinding.objects.create(group=admins, role=Role.ADMIN)
    sign_in_oidc(page, live_server, "alice")
    assert on_dashboard(page, live_server)
    assert badge(page) == "Admin"
    alice = User.objects.get(external_id="alice")
    assert (alice.source, alice.email) == (Source.OIDC, "alice@example.test")
    assert sorted(alice.directory_groups.values_list("external_id", flat=True)) == ["g-admins", "g-staff"]


def test_oidc_sign_in_without_a_bound_group_is_a_developer(page: Page, live_server: LiveServer) -> None:
    sign_in_oidc(page, live_server, "bob")
    assert on_dashboard(page, live_server)
    assert badge(page) == "Developer"
    assert list(
        User.objects.get(external_id="bob").directory_groups.values_list("external_id", flat=True)
    ) == ["g-staff"]


@pytest.mark.parametrize(
    "mode",
    [
        "alg-none",
        "foreign-key",
        "other-issuer",
        "other-audience",
        "wrong-nonce",
        "unsigned-groups",
        "userinfo-other-sub",
    ],
)
def test_oidc_attacks_are_refused_and_create_nothing(
    page: Page, live_server: LiveServer, oidc_idp: OidcIdp, mode: str
) -> None:
    oidc_idp.set_mode(mode)
    sign_in_oidc(page, live_server, "alice")
    assert not on_dashboard(page, live_server), mode
    assert page.url.startswith(live_server.url)
    assert not User.objects.exists(), mode
    assert not SocialAccount.objects.exists()
    assert not DirectoryGroup.objects.exists()


def test_oidc_callback_with_a_state_this_browser_never_started_is_refused(
    page: Page, live_server: LiveServer
) -> None:
    _start(page, live_server, "Local OIDC")  # a real sign-in is pending in this browser
    page.goto(f"{live_server.url}/accounts/oidc/localidp/login/callback/?code=stolen&state=not-ours")
    assert not on_dashboard(page, live_server)
    assert "Third-Party Login Failure" in page.content()
    assert not User.objects.exists()


# --- SAML ----------------------------------------------------------------------------------------


def test_saml_sign_in_lands_with_every_group_value_and_the_role(page: Page, live_server: LiveServer) -> None:
    admins = DirectoryGroup.objects.create(
        external_id=PORTAL_ADMINS_DN, display_name="Portal-Admins", source=Source.SAML
    )
    RoleBinding.objects.create(group=admins, role=Role.ADMIN)
    sign_in_saml(page, live_server, "alice", "alice-pw")
    assert on_dashboard(page, live_server)
    assert badge(page) == "Admin"
    alice = User.objects.get(external_id="alice")
    assert (alice.source, alice.email) == (Source.SAML, "alice.saml@example.test")
    groups = dict(alice.directory_groups.values_list("external_id", "display_name"))
    assert groups == {PORTAL_ADMINS_DN: "Portal-Admins", "CN=Staff,OU=Groups,DC=corp,DC=test": "Staff"}


def test_saml_wrong_password_is_refused_by_the_idp(page: Page, live_server: LiveServer) -> None:
    _start(page, live_server, "Local SAML")
    page.fill("input[name=username]", "alice")
    page.fill("input[name=password]", "not-alices-password")
    page.click("button[type=submit], input[type=submit]")
    page.wait_for_load_state()
    assert page.url.startswith("http://127.0.0.1:8080/")
    assert not User.objects.exists()


def _rewrite_acs(page: Page, saml_idp: SamlIdp, change: Callable[[bytes], bytes]) -> None:
    """Rewrite the SAMLResponse the browser posts to Customs, as an attacker in the browser could."""

    def tamper(route: Route) -> None:
        form = {k: v[0] for k, v in parse_qs(route.request.post_data or "").items()}
        form["SAMLResponse"] = base64.b64encode(change(base64.b64decode(form["SAMLResponse"]))).decode()
        route.continue_(post_data=urlencode(form))

    page.route(saml_idp.acs_url, tamper)


def _edit(xml: bytes, mutate: Callable[[Any], None]) -> bytes:
    root = etree.fromstring(xml)
    mutate(root)
    return bytes(etree.tostring(root))


def _add_admin_group(root: Any) -> None:
    attribute = root.find(f".//{{{SAML_NS}}}Attribute[@Name='{GROUPS}']")
    value = etree.SubElement(attribute, f"{{{SAML_NS}}}AttributeValue")
    value.text = "CN=Domain-Admins,OU=Groups,DC=corp,DC=test"


def _strip_signatures(root: Any) -> None:
    for signature in list(root.iter(f"{{{DS_NS}}}Signature")):
        signature.getparent().remove(signature)


def _resign_assertion(key_pem: str, cert_pem: str) -> Callable[[Any], None]:
    """Sign the (edited) assertion anew; the response-level signature is dropped."""

    def sign(root: Any) -> None:
        _strip_signatures(root)
        assertion = root.find(f"{{{SAML_NS}}}Assertion")
        signature = xmlsec.template.create(
            assertion, xmlsec.constants.TransformExclC14N, xmlsec.constants.TransformRsaSha256, ns="ds"
        )
        assertion.find(f"{{{SAML_NS}}}Issuer").addnext(signature)  # schema: Signature follows Issuer
        reference = xmlsec.template.add_reference(
            signature, xmlsec.constants.TransformSha256, uri="#" + assertion.get("ID")
        )
        xmlsec.template.add_transform(reference, xmlsec.constants.TransformEnveloped)
        xmlsec.template.add_transform(reference, xmlsec.constants.TransformExclC14N)
        xmlsec.template.add_x509_data(xmlsec.template.ensure_key_info(signature))
        xmlsec.tree.add_ids(assertion, ["ID"])
        context = xmlsec.SignatureContext()
        context.key = xmlsec.Key.from_memory(key_pem, xmlsec.constants.KeyDataFormatPem)
        context.key.load_cert_from_memory(cert_pem, xmlsec.constants.KeyDataFormatCertPem)
        context.sign(signature)

    return sign


def _both(*steps: Callable[[Any], None]) -> Callable[[Any], None]:
    def run(root: Any) -> None:
        for step in steps:
            step(root)

    return run


def _other_audience(root: Any) -> None:
    root.find(f".//{{{SAML_NS}}}Audience").text = "https://someone-else.example/sp"


def _expired(root: Any) -> None:
    past = (datetime.now(UTC) - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    for element in root.iter(f"{{{SAML_NS}}}Conditions", f"{{{SAML_NS}}}SubjectConfirmationData"):
        element.set("NotOnOrAfter", past)


SAML_ATTACKS: dict[str, Callable[[SamlIdp], Callable[[Any], None]]] = {
    "an attribute edited, signatures kept": lambda idp: _add_admin_group,
    "every signature removed": lambda idp: _both(_add_admin_group, _strip_signatures),
    "signed by another key": lambda idp: _both(
        _add_admin_group, _resign_assertion(idp.other_key_pem, idp.other_cert_pem)
    ),
    "for another audience (signed by the IdP's key)": lambda idp: _both(
        _other_audience, _resign_assertion(idp.key_pem, idp.cert_pem)
    ),
    "expired (signed by the IdP's key)": lambda idp: _both(
        _expired, _resign_assertion(idp.key_pem, idp.cert_pem)
    ),
}


@pytest.mark.parametrize("attack", sorted(SAML_ATTACKS))
def test_saml_attacks_are_refused_and_create_nothing(
    page: Page, live_server: LiveServer, saml_idp: SamlIdp, attack: str
) -> None:
    mutate = SAML_ATTACKS[attack](saml_idp)
    _rewrite_acs(page, saml_idp, lambda xml: _edit(xml, mutate))
    sign_in_saml(page, live_server, "alice", "alice-pw")
    assert not on_dashboard(page, live_server), attack
    assert "Third-Party Login Failure" in page.content(), attack
    assert not User.objects.exists(), attack
    assert not DirectoryGroup.objects.exists()


def test_a_genuine_saml_response_re_signed_by_the_idps_key_is_accepted(
    page: Page, live_server: LiveServer, saml_idp: SamlIdp
) -> None:
    # The control for the attacks above: the re-signing itself is sound, so they fail for their edit.
    _rewrite_acs(
        page, saml_idp, lambda xml: _edit(xml, _resign_assertion(saml_idp.key_pem, saml_idp.cert_pem))
    )
    sign_in_saml(page, live_server, "bob", "bob-pw")
    assert on_dashboard(page, live_server)


def test_a_replayed_saml_response_is_refused(page: Page, live_server: LiveServer, saml_idp: SamlIdp) -> None:
    captured: list[bytes] = []

    def keep(xml: bytes) -> bytes:
        captured.append(xml)
        return xml

    _rewrite_acs(page, saml_idp, keep)
    sign_in_saml(page, live_server, "bob", "bob-pw")
    assert on_dashboard(page, live_server)
    page.context.clear_cookies()
    User.objects.all().delete()

    # A new sign-in in a fresh session, answered with the response captured from the first one.
    page.unroute(saml_idp.acs_url)
    _rewrite_acs(page, saml_idp, lambda xml: captured[0])
    sign_in_saml(page, live_server, "bob", "bob-pw")
    assert not on_dashboard(page, live_server)
    assert not User.objects.exists()
