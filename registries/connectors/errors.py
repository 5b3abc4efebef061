"""The five ways a connector fails. Sync and the tasks decide what happens; connectors only classify."""

from __future__ import annotations

from typing import Any

import requests

from portal.http import OutboundError, PermanentError, TransientError, retry_after, retry_after_seconds

__all__ = [
    "AuthError",
    "ConfigError",
    "ConnectorError",
    "NotFoundError",
    "PermanentError",
    "RateLimited",
    "TransientError",
    "json_body",
    "json_list",
    "json_object",
    "raise_for_status",
    "retry_after_seconds",
]

ConnectorError = OutboundError


class RateLimited(TransientError):
    """429: the registry asked us to slow down, often saying for how long."""


class AuthError(PermanentError):
    """Credentials rejected, expired or missing a scope. No retry: someone must fix the credential."""


class NotFoundError(PermanentError):
    """One repository, tag or manifest is gone upstream."""


class ConfigError(PermanentError):
    """Our stored configuration cannot work (bad URL, unknown option)."""


def raise_for_status(response: requests.Response, *, detail: str | None = None) -> None:
    """Turn an HTTP failure into the taxonomy, naming the URL without its query string.

    `detail` is the vendor's own explanation, for APIs whose error body is not the OCI envelope
    (ARM, Quay); by default it is read from that envelope.
    """
    if response.ok:
        return
    # Drop the query string: pre-signed blob URLs carry credentials there.
    where, code = response.url.split("?", 1)[0], response.status_code
    detail = _registry_error(response) if detail is None else (f": {detail}" if detail else "")
    if code == 429:
        raise RateLimited(f"429 from {where}{detail}", retry_after=retry_after(response.headers))
    if code in (401, 403):
        raise AuthError(f"{code} from {where}{detail}")
    if code == 404:
        raise NotFoundError(f"404 from {where}{detail}")
    if code >= 500 or code == 408:
        raise TransientError(f"{code} from {where}{detail}")
    raise PermanentError(f"{code} from {where}{detail}")


def _registry_error(response: requests.Response) -> str:
    # The OCI error envelope: {"errors": [{"code": ..., "message": ...}]}.
    try:
        errors = response.json().get("errors") or []
    except (ValueError, AttributeError):
        return ""
    if errors and isinstance(errors[0], dict):
        return f": {errors[0].get('code', '')} {errors[0].get('message', '')}".rstrip()
    return ""


def json_object(response: requests.Response) -> dict[str, Any]:
    """The body as a JSON object; anything else is a transient failure (a proxy, a dying connection)."""
    body = json_body(response)
    if not isinstance(body, dict):
        raise TransientError(f"{_where(response)} answered with unexpected JSON")
    return body


def json_list(response: requests.Response) -> list[dict[str, Any]]:
    """The body as a JSON list of objects (Harbor's lists); items that are not objects are dropped."""
    body = json_body(response)
    if not isinstance(body, list):
        raise TransientError(f"{_where(response)} answered with unexpected JSON")
    return [item for item in body if isinstance(item, dict)]


def json_body(response: requests.Response) -> Any:
    """The body as parsed JSON, whatever its shape (the Hub answers some lists as arrays or pages)."""
    try:
        return response.json()
    except ValueError:
        # Truncated or garbled: often a proxy or a dying connection, so worth another try later.
        raise TransientError(f"{_where(response)} answered with malformed JSON") from None


def _where(response: requests.Response) -> str:
    return response.url.split("?", 1)[0]  # the query string may carry credentials
