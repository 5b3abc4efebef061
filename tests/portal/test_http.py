from __future__ import annotations

import socket
from ipaddress import ip_address, ip_network

import pytest
import responses
from django.test import override_settings

from portal import __version__
from portal.env import env_networks
from portal.http import DeniedDestination, TransientError, outbound_session


@responses.activate
def test_sessions_name_customs_and_their_purpose_and_set_a_timeout() -> None:
    responses.get("https://registry.example.test/v2/", status=200)
    with override_settings(OUTBOUND_TIMEOUT=7):
        session = outbound_session(purpose="acr sync")
        session.get("https://registry.example.test/v2/")
    sent = responses.calls[0].request
    assert sent.headers["User-Agent"] == f"Customs/{__version__} (acr sync)"
    assert sent.req_kwargs["timeout"] == 7  # type: ignore[attr-defined]


@responses.activate
def test_an_explicit_timeout_wins_over_the_default() -> None:
    responses.get("https://registry.example.test/v2/", status=200)
    outbound_session(purpose="test").get("https://registry.example.test/v2/", timeout=2)
    assert responses.calls[0].request.req_kwargs["timeout"] == 2  # type: ignore[attr-defined]


def test_configured_proxy_applies_and_the_environment_is_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://stray-proxy.example.test:3128")
    with override_settings(OUTBOUND_PROXIES={"https": "http://corp-proxy.example.test:8080"}):
        session = outbound_session(purpose="test")
    assert session.trust_env is False  # no ~/.netrc credentials, no stray proxy variables
    assert session.proxies == {"https": "http://corp-proxy.example.test:8080"}


def test_a_custom_ca_bundle_is_used_for_verification(tmp_path: object) -> None:
    with override_settings(OUTBOUND_CA_BUNDLE="/etc/customs/corp-ca.pem"):
        assert outbound_session(purpose="test").verify == "/etc/customs/corp-ca.pem"


def test_refused_connection_is_transient_and_says_so() -> None:
    # A port nothing listens on: bind one, note it, close it.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(TransientError, match="connection refused") as raised:
        outbound_session(purpose="test").get(f"http://127.0.0.1:{port}/v2/?token=secret-in-query")
    assert "secret-in-query" not in str(raised.value)  # query strings can carry credentials


def test_a_stalled_server_times_out_as_transient() -> None:
    server = socket.create_server(("127.0.0.1", 0))  # accepts the connection, never answers
    port = server.getsockname()[1]
    with server, pytest.raises(TransientError, match="timed out"):
        outbound_session(purpose="test").get(f"http://127.0.0.1:{port}/", timeout=0.3)


def test_a_denied_network_is_refused_before_anything_is_sent() -> None:
    # Loopback stands in for the metadata service: what counts is the address connected to.
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        with (
            override_settings(OUTBOUND_DENY_NETWORKS=(ip_network("127.0.0.0/8"),)),
            pytest.raises(DeniedDestination, match="127.0.0.1, which CUSTOMS_OUTBOUND_DENY_NETWORKS forbids"),
        ):
            outbound_session(purpose="test").get(f"http://localhost:{port}/latest/meta-data/", timeout=2)
        server.settimeout(0.5)
        connection, _ = server.accept()  # the TCP handshake happened, but the request never left
        with connection:
            connection.settimeout(0.5)
            assert connection.recv(100) == b""


def test_addresses_outside_the_deny_list_are_reached() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        # Nothing answers, so the call times out: it was allowed to try.
        with (
            override_settings(OUTBOUND_DENY_NETWORKS=(ip_network("169.254.0.0/16"),)),
            pytest.raises(TransientError, match="timed out"),
        ):
            outbound_session(purpose="test").get(f"http://127.0.0.1:{port}/", timeout=0.3)


def test_https_connections_are_checked_too() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        with (
            override_settings(OUTBOUND_DENY_NETWORKS=(ip_network("127.0.0.0/8"),)),
            pytest.raises(DeniedDestination),
        ):
            outbound_session(purpose="test").get(f"https://127.0.0.1:{port}/", timeout=2)


def test_the_default_deny_list_covers_the_metadata_services() -> None:
    defaults = env_networks("UNSET_FOR_TEST", [], environ={})
    assert defaults == ()
    from django.conf import settings

    for address in ("169.254.169.254", "100.100.100.200", "fd00:ec2::254"):
        assert any(ip_address(address) in net for net in settings.OUTBOUND_DENY_NETWORKS), address
    assert not any(ip_address("10.1.2.3") in net for net in settings.OUTBOUND_DENY_NETWORKS)
