"""The one way out to the network: sessions with a timeout, a user agent and the configured proxy.

Connectors, identity-provider calls and webhook deliveries all take a session from here, and tests
patch here. Sessions do not retry: tasks retry TransientError under TRANSIENT_RETRY in portal.celery.
The one exception is a 429 inside `waiting_out_rate_limits()`: a sync reading a registry waits as
long as the registry asks (up to a cap) and sends the same request again, so a paged listing goes on
from the page it was on; nothing else is retried there, and nowhere else is anything retried.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from ipaddress import IPv6Address, ip_address
from typing import Any

import requests
from django.conf import settings
from django.utils import timezone
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


@dataclass(frozen=True)
class RateLimitWaits:
    """How long a caller that can afford to wait waits out a 429 before sending the request again."""

    longest: float  # seconds; a registry asking for more gets its 429 back, for the caller to decide
    attempts: int  # sends per request, the first included
    sleep: Callable[[float], None] = time.sleep


_rate_limit_waits: ContextVar[RateLimitWaits | None] = ContextVar("rate_limit_waits", default=None)


@contextmanager
def waiting_out_rate_limits(waits: RateLimitWaits) -> Iterator[None]:
    """Within the block, this thread's sessions wait out short 429s and send the request again.

    A context variable, not a session option: connectors build their sessions themselves, and only
    a sync (a worker with time to spare) should wait; a page testing a connection should not.
    """
    token = _rate_limit_waits.set(waits)
    try:
        yield
    finally:
        _rate_limit_waits.reset(token)


def retry_after(headers: Mapping[str, str]) -> float | None:
    """How long a 429 asks to wait: Retry-After in either form, or the epoch older Docker Hub sends."""
    if (value := headers.get("Retry-After")) is not None:
        return retry_after_seconds(value)
    epoch = headers.get("X-Retry-After", "").strip()
    return max(0.0, int(epoch) - time.time()) if epoch.isdigit() else None


def retry_after_seconds(value: str | None) -> float | None:
    """Retry-After as seconds, from either form the RFC allows (delta seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (moment - timezone.now()).total_seconds())


class OutboundSession(requests.Session):
    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        # requests has no default timeout; without one a stuck server holds a worker forever.
        kwargs.setdefault("timeout", settings.OUTBOUND_TIMEOUT)
        response = self._send(method, url, *args, **kwargs)
        waits = _rate_limit_waits.get()
        if waits is None:
            return response
        for attempt in range(1, waits.attempts):
            wait = _short_wait(response, waits, attempt)
            if wait is None:
                break
            response.close()  # a streamed 429 would otherwise hold its connection through the wait
            waits.sleep(wait)
            response = self._send(method, url, *args, **kwargs)
        return response

    def _send(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        try:
            return super().request(method, url, *args, **kwargs)
        except (requests.Timeout, requests.ConnectionError) as exc:
            raise TransientError(f"{_where(url)}: {describe_connection_error(exc)}") from exc


def _short_wait(response: requests.Response, waits: RateLimitWaits, attempt: int) -> float | None:
    """Seconds to wait before sending again, or None: not a 429, or a wait longer than the caller's."""
    if response.status_code != 429:
        return None
    asked = retry_after(response.headers)
    wait = asked if asked is not None else 2.0 ** (attempt - 1)  # no hint: 1, 2, 4 s
    return wait if wait <= waits.longest else None


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
