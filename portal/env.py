"""Typed readers for environment variables: loud on bad values, secrets readable from files."""

from __future__ import annotations

import os
from collections.abc import Mapping
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")

# Every helper reads os.environ unless given another mapping (tests, and providers configured per id).
Environ = Mapping[str, str] | None


def _get(environ: Environ, name: str) -> str:
    return (os.environ if environ is None else environ).get(name, "")


def env_str(name: str, default: str = "", *, environ: Environ = None) -> str:
    """The variable's value, or the default when it is unset or empty."""
    return _get(environ, name).strip() or default


def env_bool(name: str, default: bool, *, environ: Environ = None) -> bool:
    raw = _get(environ, name).strip().lower()
    if not raw:
        return default
    if raw not in _TRUE + _FALSE:
        # A typo must not silently mean False (or True).
        raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean; use one of {_TRUE + _FALSE}")
    return raw in _TRUE


def env_int(name: str, default: int, *, minimum: int | None = None, environ: Environ = None) -> int:
    raw = _get(environ, name).strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not an integer") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name}={value} is below the minimum of {minimum}")
    return value


def env_list(
    name: str, default: list[str] | None = None, *, separator: str = ",", environ: Environ = None
) -> list[str]:
    raw = _get(environ, name)
    items = [item.strip() for item in raw.split(separator) if item.strip()]
    return items or list(default or [])


def env_networks(
    name: str, default: list[str], *, environ: Environ = None
) -> tuple[IPv4Network | IPv6Network, ...]:
    """Comma-separated CIDR networks; "none" for an empty list (unset means the default)."""
    items = env_list(name, default, environ=environ)
    if [item.lower() for item in items] == ["none"]:
        return ()
    try:
        return tuple(ip_network(item) for item in items)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name}: {exc}") from None


def env_secret(name: str, default: str = "", *, environ: Environ = None) -> str:
    """Read NAME, or the file named by NAME_FILE (Docker and Kubernetes secrets)."""
    path = _get(environ, f"{name}_FILE").strip()
    if path and _get(environ, name):
        raise ImproperlyConfigured(f"set {name} or {name}_FILE, not both")
    if path:
        try:
            return Path(path).read_text().strip()
        except OSError as exc:
            # An unreadable secret file must stop startup, never fall back to a default.
            raise ImproperlyConfigured(f"{name}_FILE={path!r} cannot be read: {exc.strerror}") from None
    return _get(environ, name).strip() or default


def env_secret_list(name: str, default: list[str] | None = None, *, environ: Environ = None) -> list[str]:
    """A comma-separated list of secrets, from NAME or NAME_FILE."""
    raw = env_secret(name, environ=environ)
    items = [item.strip() for item in raw.replace("\n", ",").split(",") if item.strip()]
    return items or list(default or [])
