"""End-to-end fixtures: two local identity providers, Customs on a live server, and Chromium.

- ``oidc_idp`` (session): oidc-provider on http://127.0.0.1:9000, a ``harness.OidcIdp``.
- ``saml_idp`` (session): SimpleSAMLphp on http://127.0.0.1:8080, a ``harness.SamlIdp``.
- ``idp_settings`` (function): the CUSTOMS_* variables for both, applied to Django's settings.
- ``browser`` (package) and ``page`` (function): Playwright driving Debian's Chromium.
- ``rp_base`` (session): Customs' live server URL, which both IdPs send people back to.

pytest-django's ``live_server`` listens on 127.0.0.1:8001 (set below unless ``--liveserver`` or
DJANGO_LIVE_TEST_SERVER_ADDRESS says otherwise): the IdPs know Customs by that exact URL. Nothing
starts unless a selected test asks for it. A missing component skips, or fails under CI=true.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
from pytest_django import Settings

from tests.e2e import harness
from tests.e2e.harness import OidcIdp, SamlIdp

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page


def pytest_configure(config: pytest.Config) -> None:
    if not config.getoption("liveserver", None) and not os.environ.get("DJANGO_LIVE_TEST_SERVER_ADDRESS"):
        config.option.liveserver = harness.LIVESERVER
    config.addinivalue_line("markers", "e2e: real browser against a live server and local IdPs")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # tryfirst: before pytest's own -m filtering, so `-m "not e2e"` deselects this whole folder.
    for item in items:
        if item.path.is_relative_to(harness.E2E_DIR):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def rp_base(pytestconfig: pytest.Config) -> str:
    """Customs' live server URL as both IdPs know it: http://127.0.0.1:8001."""
    addr = pytestconfig.getoption("liveserver", None) or os.environ.get("DJANGO_LIVE_TEST_SERVER_ADDRESS")
    host, _, port = (addr or harness.LIVESERVER).rpartition(":")
    if not host or not port.isdigit():
        pytest.fail(f"e2e tests need one fixed live server address host:port, not {addr!r}")
    return f"http://{host}:{port}"


@pytest.fixture(scope="session")
def oidc_idp(rp_base: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OidcIdp]:
    if not shutil.which("node"):
        harness.unavailable("node is not installed: the OIDC test IdP needs Node.js 20 or later")
    if not (harness.OIDC_DIR / "node_modules" / "oidc-provider").is_dir():
        harness.unavailable(f"oidc-provider is missing: npm ci --prefix {harness.OIDC_DIR}")
    run = tmp_path_factory.mktemp("oidc-idp")
    signing = harness.private_jwk(harness.rsa_key(), "customs-e2e-1")
    foreign = harness.private_jwk(harness.rsa_key(), "customs-e2e-foreign")
    (run / "jwks.json").write_text(json.dumps({"keys": [signing]}))
    (run / "foreign.json").write_text(json.dumps(foreign))
    conform = os.environ.get("OIDC_CONFORM", "") in ("1", "true")
    env = {
        "OIDC_PORT": str(harness.OIDC_PORT),
        "RP_BASE": rp_base,
        "OIDC_JWKS_FILE": str(run / "jwks.json"),
        "OIDC_FOREIGN_JWK_FILE": str(run / "foreign.json"),
        "OIDC_CONFORM": "1" if conform else "0",
    }
    issuer = f"http://127.0.0.1:{harness.OIDC_PORT}"
    ready = f"{issuer}/.well-known/openid-configuration"
    argv = ["node", "idp.mjs"]
    proc = harness.start("OIDC IdP", argv, cwd=harness.OIDC_DIR, env=env, ready=ready, log=run / "idp.log")
    yield OidcIdp(
        issuer=issuer,
        client_id="customs",
        client_secret="customs-test-secret",
        redirect_uri=f"{rp_base}/accounts/oidc/localidp/login/callback/",
        jwks={"keys": [harness.public_jwk(signing)]},
        signing_jwk=signing,
        foreign_jwk=foreign,
        conform=conform,
        log=run / "idp.log",
    )
    harness.stop(proc)


@pytest.fixture(autouse=True)
def _reset_oidc_mode(request: pytest.FixtureRequest) -> Iterator[None]:
    # Only where the test uses the IdP anyway: the others must not start it just to reset it.
    idp = request.getfixturevalue("oidc_idp") if "oidc_idp" in request.fixturenames else None
    yield
    if isinstance(idp, OidcIdp):
        idp.set_mode("normal")


@pytest.fixture(scope="session")
def saml_idp(rp_base: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SamlIdp]:
    if not shutil.which("php"):
        harness.unavailable("php is not installed: the SAML test IdP needs php-cli, php-xml and php-curl")
    if not harness.SSP_WWW.is_dir():
        harness.unavailable(f"SimpleSAMLphp is not installed ({harness.SSP_WWW} is missing)")
    if missing := harness.php_lacks("dom", "xml", "openssl", "curl", "session"):
        harness.unavailable(f"PHP lacks {', '.join(missing)}: apt-get install php-xml php-curl")
    # Key, certificate, sessions and logs live in a temp dir: nothing generated lands in the tree.
    run = tmp_path_factory.mktemp("saml-idp")
    for sub in ("cert", "log", "data", "run"):
        (run / sub).mkdir()
    key, other = harness.rsa_key(), harness.rsa_key()
    cert_pem, key_pem = harness.self_signed_pem(key, "customs-test-idp"), harness.key_pem(key)
    (run / "cert" / "idp.crt").write_text(cert_pem)
    (run / "cert" / "idp.key").write_text(key_pem)
    base = f"http://127.0.0.1:{harness.SAML_PORT}"
    env = {
        "SIMPLESAMLPHP_CONFIG_DIR": str(harness.SSP_DIR / "config"),
        "SSP_RUNTIME_DIR": str(run),
        "SSP_BASE_URL": f"{base}/",
        "RP_BASE": rp_base,
    }
    argv = ["php", "-S", f"127.0.0.1:{harness.SAML_PORT}", "-t", str(harness.SSP_WWW)]
    ready = f"{base}/saml2/idp/metadata.php"
    log = run / "log" / "server.log"
    proc = harness.start("SAML IdP", argv, cwd=harness.SSP_DIR, env=env, ready=ready, log=log)
    yield SamlIdp(
        base_url=base,
        entity_id=ready,
        sso_url=f"{base}/saml2/idp/SSOService.php",
        cert_pem=cert_pem,
        key_pem=key_pem,
        other_cert_pem=harness.self_signed_pem(other, "customs-test-attacker"),
        other_key_pem=harness.key_pem(other),
        sp_entity_id=f"{rp_base}/accounts/saml/localsaml/metadata/",
        acs_url=f"{rp_base}/accounts/saml/localsaml/acs/",
        log_dir=run / "log",
    )
    harness.stop(proc)


@pytest.fixture
def idp_settings(
    oidc_idp: OidcIdp, saml_idp: SamlIdp, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """The CUSTOMS_* variables for both IdPs, set in os.environ and applied to SOCIALACCOUNT_PROVIDERS."""
    from accounts.sso import providers_from_env  # imported late: Django's settings must be ready

    environ = harness.idp_environ(oidc_idp, saml_idp)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    settings.SOCIALACCOUNT_PROVIDERS = providers_from_env(environ)
    return environ


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    """Chromium through Playwright's sync API, one for this folder's tests.

    Package scope, not session: Playwright's sync API keeps an asyncio loop running in this thread
    until it stops, and Django refuses ORM calls while one runs. Stopping it when the folder is done
    leaves the rest of `make test` alone; DJANGO_ALLOW_ASYNC_UNSAFE is set only meanwhile.
    """
    try:
        # Imported here so that a venv without Playwright skips these tests instead of breaking collection.
        from playwright.sync_api import Error, sync_playwright
    except ImportError:
        harness.unavailable("the playwright package is not installed: make install-dev")
    executable = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium")
    if not executable:
        harness.unavailable(
            "Chromium is not installed: apt-get install chromium (never `playwright install`)"
        )
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        with sync_playwright() as playwright:
            try:
                chromium = playwright.chromium.launch(executable_path=executable, args=harness.CHROMIUM_ARGS)
            except Error as error:
                pytest.fail(f"Chromium at {executable} did not start: {error}")
            yield chromium
            chromium.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A page in a fresh browser context (its own cookies) that reaches nothing but 127.0.0.1."""
    context = browser.new_context()
    context.set_default_timeout(10_000)
    context.route("**/*", harness.loopback_only)
    yield context.new_page()
    context.close()
