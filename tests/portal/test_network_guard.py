from __future__ import annotations

import socket

import pytest

from tests.conftest import NetworkBlocked


def test_connecting_beyond_loopback_is_refused_before_any_packet() -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    with pytest.raises(NetworkBlocked, match=r"192\.0\.2\.1"), sock:
        sock.connect(("192.0.2.1", 443))  # TEST-NET-1: documentation range, never routed


def test_connect_ex_is_guarded_too() -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    with pytest.raises(NetworkBlocked), sock:
        sock.connect_ex(("198.51.100.7", 80))


def test_loopback_is_allowed() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    with server, socket.create_connection(("127.0.0.1", port), timeout=2) as client:
        assert client.getpeername() == ("127.0.0.1", port)
