"""The id of the request (or task) being handled, for log lines and audit events."""

from __future__ import annotations

import re
import uuid
from contextvars import ContextVar

_current: ContextVar[str] = ContextVar("customs_request_id", default="-")

# Accept a caller's id (a proxy's X-Request-ID) only when it cannot smuggle anything into logs.
_ACCEPTABLE = re.compile(r"^[A-Za-z0-9._:-]{8,128}$")


def current() -> str:
    return _current.get()


def set_current(request_id: str) -> None:
    _current.set(request_id)


def new() -> str:
    return uuid.uuid4().hex


def accept_or_new(offered: str | None) -> str:
    """The offered id when it is well-formed, otherwise a fresh one."""
    return offered if offered and _ACCEPTABLE.match(offered) else new()
