"""The one way out to the network: sessions with a timeout, a user agent and the configured proxy.

Connectors, identity-provider calls and webhook deliveries all take a session from here, and tests
patch here. Sessions do not retry: tasks retry TransientError under TRANSIENT_RETRY in portal.celery.
"""

from __future__ import annotations

import socket
from ipaddress import IPv6Address, ip_address
from typing import Any

import requests
from django.conf import settings
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool


class OutboundError(Exception):
    """A call to another system failed. Subclasses say whether trying again can help."""


class TransientError(OutboundError):
    """Timeouts, refused connections, 429 and 5xx: worth retrying later."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentError(OutboundError):
    """The other side refused and will keep refusing until someone changes something."""


class DeniedDestination(PermanentError):
    """The address connected to is in CUSTOMS_OUTBOUND_DENY_NETWORKS (e.g. a cloud metadata service)."""


def _refuse_denied_peer(sock: socket.socket, host: str) -> None:
    # The address actually connected to, not what a name resolved to earlier: a name that resolves
    # to a public address for a check and to 169.254.169.254 for the request gets nowhere.
    peer = ip_address(sock.getpeername()[0].split("%", 1)[0])
    if isinstance(peer, IPv6Address) and peer.ipv4_mapped:
        peer = peer.ipv4_mapped
    if any(peer in network for network in settings.OUTBOUND_DENY_NETWORKS):
        sock.close()
        raise DeniedDestination(
            f"{host} connects to {peer}, which CUSTOMS_OUTBOUND_DENY_NETWORKS forbids "
            "(a cloud metadata or link-local address)"
        )


class _GuardedHTTPConnection(HTTPConnection):
    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        _refuse_denied_peer(sock, self.host)
        return sock


class _GuardedHTTPSConnection(HTTPSConnection):
    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        _refuse_denied_peer(sock, self.host)
        return sock


class _GuardedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _GuardedHTTPConnection


class _GuardedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _GuardedHTTPSConnection


class _GuardedAdapter(HTTPAdapter):
    """Connections whose peer address is checked against the deny list before a byte is sent."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _GuardedHTTPPool, "https": _GuardedHTTPSPool}
        self.poolmanager.key_fn_by_scheme = dict(self.poolmanager.key_fn_by_scheme)


class OutboundSession(requests.Session):
    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        # requests has no default timeout; without one a stuck server holds a worker forever.
        kwargs.setdefault("timeout", settings.OUTBOUND_TIMEOUT)
        try:
            return super().request(method, url, *args, **kwargs)
        except (requests.Timeout, requests.ConnectionError) as exc:
            raise TransientError(f"{_where(url)}: {describe_connection_error(exc)}") from exc


def outbound_session(*, purpose: str) -> OutboundSession:
    """A session for one purpose ("acr sync", "oidc discovery"), named in the User-Agent."""
    from portal import __version__

    session = OutboundSession()
    session.mount("http://", _GuardedAdapter())
    session.mount("https://", _GuardedAdapter())
    session.headers["User-Agent"] = f"Customs/{__version__} ({purpose})"
    # trust_env off: no ~/.netrc credentials or stray proxy variables; only our settings apply.
    session.trust_env = False
    session.proxies.update(settings.OUTBOUND_PROXIES)
    if settings.OUTBOUND_CA_BUNDLE:
        session.verify = settings.OUTBOUND_CA_BUNDLE
    return session


def describe_connection_error(exc: requests.RequestException) -> str:
    """A short reason a person can act on: TLS, DNS, refused or timed out."""
    text = str(exc)
    if isinstance(exc, requests.exceptions.SSLError):
        return "TLS handshake failed (certificate not trusted or wrong host name)"
    if isinstance(exc, requests.Timeout):
        return "timed out"
    if "Name or service not known" in text or "getaddrinfo failed" in text or "NameResolutionError" in text:
        return "host name could not be resolved (DNS)"
    if "Connection refused" in text:
        return "connection refused"
    return "connection failed"


def _where(url: str | bytes) -> str:
    # Drop the query string: pre-signed URLs carry credentials there.
    text = url.decode() if isinstance(url, bytes) else url
    return text.split("?", 1)[0]
