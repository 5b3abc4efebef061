"""What the e2e fixtures hand to tests, and the helpers that start the local identity providers.

tests/e2e/conftest.py builds these; tests import the types from here (never from the conftest).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import jwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.certificates import self_signed

if TYPE_CHECKING:
    from playwright.sync_api import Route

E2E_DIR = Path(__file__).parent
OIDC_DIR = E2E_DIR / "idp" / "oidc"
SSP_DIR = E2E_DIR / "idp" / "ssp"
SSP_WWW = Path("/usr/share/simplesamlphp/www")
LIVESERVER = "127.0.0.1:8001"
OIDC_PORT = 9000
SAML_PORT = 8080
STARTUP_TIMEOUT = 15.0
OIDC_MODES = (
    "normal",
    "alg-none",  # the ID token has alg "none" and no signature
    "foreign-key",  # signed by a key not in the JWKS, under the published kid
    "other-issuer",  # iss http://127.0.0.1:9999, properly signed
    "other-audience",  # aud and azp "someone-else", properly signed
    "wrong-nonce",  # nonce "not-the-nonce-you-sent", properly signed
    "unsigned-groups",  # groups ["g-admins"] added to the payload after signing: a broken signature
    "userinfo-other-sub",  # userinfo answers sub "mallory"; the ID token is untouched
)
# identity.md §7.3: root needs --no-sandbox; the rest keeps Chromium from calling home. The resolver
# rule fails every other host name at once, including on redirects, which routes do not see.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]


def unavailable(reason: str) -> NoReturn:
    """Skip for want of a component; under CI a missing component is a failure, not a skip."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: e2e components must be installed; run .ci/ensure-services)")
    pytest.skip(f"{reason}; run .ci/ensure-services")


def php_lacks(*extensions: str) -> list[str]:
    """The PHP extensions among `extensions` that the php on PATH does not load."""
    code = f"foreach ({json.dumps(list(extensions))} as $e) if (!extension_loaded($e)) echo $e, ' ';"
    done = subprocess.run(["php", "-r", code], capture_output=True, text=True, timeout=10, check=False)
    return done.stdout.split()


def loopback_only(route: Route) -> None:
    """Context route: anything leaving 127.0.0.1 (Google Fonts on devInteractions pages) fails at once."""
    if urlsplit(route.request.url).hostname == "127.0.0.1":
        route.fallback()
    else:
        route.abort()


# ---------------------------------------------------------------- processes


def port_taken(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def log_tail(path: Path, lines: int = 30) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop exactly the process we started."""
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def start(
    name: str, argv: list[str], *, cwd: Path, env: Mapping[str, str], ready: str, log: Path
) -> subprocess.Popen[bytes]:
    """Popen the server, then poll `ready` until it answers 200; fail with its log otherwise."""
    port = urlsplit(ready).port or 80
    if port_taken(port):
        pytest.fail(f"{name}: port {port} is already taken by another process")
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv, cwd=cwd, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT
        )
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if _ready(name, proc, ready, log):
            return proc
        time.sleep(0.05)
    stop(proc)
    pytest.fail(f"{name} did not answer {ready} within {STARTUP_TIMEOUT:.0f} s:\n{log_tail(log)}")


def _ready(name: str, proc: subprocess.Popen[bytes], ready: str, log: Path) -> bool:
    """True once `ready` answers 200; fails at once if the server died or answers with an error."""
    if proc.poll() is not None:
        pytest.fail(f"{name} exited with {proc.returncode}:\n{log_tail(log)}")
    try:
        response = requests.get(ready, timeout=2)
    except requests.ConnectionError:
        return False  # not listening yet
    if response.status_code >= 500:  # up but misconfigured: waiting will not help
        stop(proc)
        pytest.fail(
            f"{name}: {ready} answered {response.status_code}:\n{response.text[-2000:]}\n{log_tail(log)}"
        )
    return response.status_code == 200


# ---------------------------------------------------------------- keys


def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def private_jwk(key: rsa.RSAPrivateKey, kid: str) -> dict[str, Any]:
    jwk: dict[str, Any] = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key))
    jwk.pop("key_ops", None)  # PyJWT adds ["sign"]; oidc-provider would publish it
    return {**jwk, "kid": kid, "alg": "RS256", "use": "sig"}


def public_jwk(jwk: Mapping[str, Any]) -> dict[str, Any]:
    """The public half of an RSA JWK, with the members oidc-provider publishes."""
    return {k: v for k, v in jwk.items() if k in ("kty", "use", "kid", "alg", "e", "n")}


def key_pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def self_signed_pem(key: rsa.RSAPrivateKey, common_name: str) -> str:
    return self_signed(key, common_name).public_bytes(serialization.Encoding.PEM).decode()


# ---------------------------------------------------------------- the IdPs as tests see them


@dataclass(frozen=True)
class OidcIdp:
    """The running oidc-provider: where it is, who Customs is to it, and the keys it signs with."""

    issuer: str  # http://127.0.0.1:9000, also its base URL
    client_id: str  # customs
    client_secret: str  # customs-test-secret
    redirect_uri: str  # {rp_base}/accounts/oidc/localidp/login/callback/
    jwks: dict[str, Any]  # public JWKS, exactly what /jwks serves
    signing_jwk: dict[str, Any]  # private JWK (kid "customs-e2e-1") that signs the ID tokens
    foreign_jwk: dict[str, Any]  # private JWK (kid "customs-e2e-foreign"), never published
    conform: bool  # True: claims only in userinfo (OIDC_CONFORM=1); False: in the ID token too
    log: Path  # the IdP's stdout and stderr
    modes: tuple[str, ...] = OIDC_MODES
    # login -> groups; any other login signs in too (any password), with no groups
    people: dict[str, list[str]] = field(
        default_factory=lambda: {"alice": ["g-admins", "g-staff"], "bob": ["g-staff"]}
    )

    def url(self, path: str) -> str:
        return urljoin(self.issuer + "/", path.lstrip("/"))

    def set_mode(self, mode: str) -> None:
        """Make the IdP answer maliciously from now on; "normal" undoes it (done after every test)."""
        response = requests.post(self.url("/__test__/mode"), data=mode, timeout=5)
        assert response.status_code == 200, response.text

    def mode(self) -> str:
        mode: str = requests.get(self.url("/__test__/mode"), timeout=5).json()["mode"]
        return mode

    def authorization_code(self, login: str, **params: str) -> str:
        """Sign `login` in through devInteractions without a browser; the code for redirect_uri.

        `params` add to or replace the authorization request's (scope, nonce, code_challenge...).
        """
        query = {
            "client_id": self.client_id,
            "redirect_uri": self.redirect_uri,
            "response_type": "code",
            "scope": "openid profile email groups",
            "state": "e2e-state",
            **params,
        }
        with requests.Session() as session:
            location = self.url("/auth?" + urlencode(query))
            for prompt in ("login", "consent"):
                location = self._follow_to_interaction(session, location)
                form = {"prompt": prompt, "login": login, "password": "any"}
                response = session.post(location, data=form, allow_redirects=False, timeout=5)
                location = urljoin(location, response.headers["Location"])
            location = self._follow_to_interaction(session, location)
        codes = parse_qs(urlsplit(location).query).get("code")
        assert location.startswith(self.redirect_uri), location
        assert codes, location
        return codes[0]

    def _follow_to_interaction(self, session: requests.Session, location: str) -> str:
        # Follow the IdP's redirects until one leaves for the client or stops at an interaction page.
        while location.startswith(self.issuer) and "/interaction/" not in location:
            response = session.get(location, allow_redirects=False, timeout=5)
            assert response.is_redirect, f"{location}: {response.status_code} {response.text[:300]}"
            location = urljoin(location, response.headers["Location"])
        return location

    def tokens(self, code: str, **params: str) -> dict[str, Any]:
        """Redeem a code at the token endpoint the way Customs does (client_secret_post)."""
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": self.redirect_uri,
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            **params,
        }
        response = requests.post(self.url("/token"), data=form, timeout=5)
        assert response.status_code == 200, response.text
        tokens: dict[str, Any] = response.json()
        return tokens


@dataclass(frozen=True)
class SamlIdp:
    """The running SimpleSAMLphp IdP, its signing key pair, and an unrelated one for forgeries."""

    base_url: str  # http://127.0.0.1:8080
    entity_id: str  # http://127.0.0.1:8080/saml2/idp/metadata.php, also its metadata URL
    sso_url: str  # http://127.0.0.1:8080/saml2/idp/SSOService.php (HTTP-Redirect binding)
    cert_pem: str  # the IdP's signing certificate, PEM, as in its metadata
    key_pem: str  # the IdP's private key, PEM (PKCS#8)
    other_cert_pem: str  # a self-signed certificate nobody trusts, PEM
    other_key_pem: str  # its private key, PEM (PKCS#8)
    sp_entity_id: str  # {rp_base}/accounts/saml/localsaml/metadata/
    acs_url: str  # {rp_base}/accounts/saml/localsaml/acs/
    log_dir: Path  # server.log (php -S) and simplesamlphp.log
    users: dict[str, str] = field(default_factory=lambda: {"alice": "alice-pw", "bob": "bob-pw"})

    @property
    def cert_base64(self) -> str:
        """The certificate's base64 body without PEM armour, as in metadata and signatures."""
        return "".join(line for line in self.cert_pem.splitlines() if "-----" not in line)


def idp_environ(oidc: OidcIdp, saml: SamlIdp) -> dict[str, str]:
    """The CUSTOMS_* variables that point Customs at the two local IdPs."""
    return {
        "CUSTOMS_OIDC_PROVIDERS": "localidp",
        "CUSTOMS_OIDC_LOCALIDP_ISSUER": oidc.issuer,
        "CUSTOMS_OIDC_LOCALIDP_CLIENT_ID": oidc.client_id,
        "CUSTOMS_OIDC_LOCALIDP_CLIENT_SECRET": oidc.client_secret,
        "CUSTOMS_OIDC_LOCALIDP_NAME": "Local OIDC",
        "CUSTOMS_OIDC_LOCALIDP_SCOPES": "openid profile email groups",
        "CUSTOMS_OIDC_LOCALIDP_GROUPS_CLAIM": "groups",
        "CUSTOMS_OIDC_ALLOW_HTTP": "true",  # tests only: the local IdPs speak plain http
        "CUSTOMS_SAML_PROVIDERS": "localsaml",
        "CUSTOMS_SAML_LOCALSAML_NAME": "Local SAML",
        "CUSTOMS_SAML_LOCALSAML_IDP_ENTITY_ID": saml.entity_id,
        "CUSTOMS_SAML_LOCALSAML_SSO_URL": saml.sso_url,
        "CUSTOMS_SAML_LOCALSAML_X509CERT": saml.cert_pem,
        "CUSTOMS_SAML_LOCALSAML_SP_ENTITY_ID": saml.sp_entity_id,
        "CUSTOMS_SAML_LOCALSAML_UID_ATTRIBUTE": "uid",
        "CUSTOMS_SAML_LOCALSAML_EMAIL_ATTRIBUTE": "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress",
        "CUSTOMS_SAML_LOCALSAML_GROUPS_ATTRIBUTE": "http://schemas.microsoft.com/ws/2008/06/identity/claims/groups",
    }
