from __future__ import annotations

import json
import logging

import pytest
from django.test import Client

from accounts.models import User
from portal import requestid
from portal.logs import RedactSecretsFilter, RequestIdFilter, redact
from portal.models import AuditEvent
from tests import factories

pytestmark = pytest.mark.django_db


def test_every_response_carries_a_request_id(client: Client) -> None:
    first, second = client.get("/healthz"), client.get("/healthz")
    assert len(first["X-Request-ID"]) == 32
    assert first["X-Request-ID"] != second["X-Request-ID"]


def test_a_well_formed_id_from_the_proxy_is_kept(client: Client) -> None:
    response = client.get("/healthz", headers={"X-Request-ID": "lb-7f3a9c21-0001"})
    assert response["X-Request-ID"] == "lb-7f3a9c21-0001"


@pytest.mark.parametrize("offered", ["short", "has space\ninjected log line", "x" * 300, "<script>"])
def test_a_malformed_id_is_replaced(client: Client, offered: str) -> None:
    response = client.get("/healthz", headers={"X-Request-ID": offered})
    assert response["X-Request-ID"] != offered
    assert len(response["X-Request-ID"]) == 32


def test_audit_events_carry_the_request_id(client: Client, developer: User) -> None:
    client.force_login(developer)
    response = client.post(
        "/settings/",
        {"name": "laptop", "kind": "api", "days": 30},
        headers={"X-Request-ID": "req-audit-000111"},
    )
    assert response.status_code == 200
    event = AuditEvent.objects.get(action="token.create")
    assert event.request_id == "req-audit-000111"


def _record(message: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord("customs.test", logging.INFO, __file__, 1, message, args, None)


def test_log_lines_get_the_current_request_id() -> None:
    requestid.set_current("req-log-424242")
    record = _record("hello")
    RequestIdFilter().filter(record)
    assert record.request_id == "req-log-424242"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "leak",
    [
        "token cst_AbCdEf0123456789xyz was rejected",
        "header Authorization: Bearer eyJhbGciOiJSUzI1NiJ9.payload.sig",
        "GET https://robot:hunter2hunter2@registry.example.test/v2/",
    ],
)
def test_secret_shapes_are_masked_in_log_messages(leak: str) -> None:
    record = _record("%s", leak)
    RedactSecretsFilter().filter(record)
    message = record.getMessage()
    assert "[redacted]" in message
    for secret in ("AbCdEf0123456789xyz", "eyJhbGciOiJSUzI1NiJ9", "hunter2hunter2"):
        assert secret not in message


def test_json_log_format_emits_one_object_per_line() -> None:
    from pythonjsonlogger.json import JsonFormatter

    requestid.set_current("req-json-777777")
    record = _record("token cst_ZZZZZZZZZZZZZZZZ used")
    for log_filter in (RequestIdFilter(), RedactSecretsFilter()):
        log_filter.filter(record)
    formatter = JsonFormatter(
        "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s",
        rename_fields={"levelname": "level", "name": "logger"},
    )
    line = json.loads(formatter.format(record))
    assert line["request_id"] == "req-json-777777"
    assert line["level"] == "INFO"
    assert line["message"] == "token cst_[redacted] used"


def test_redact_leaves_ordinary_text_alone() -> None:
    assert redact("synced 42 repositories from registry-eu") == "synced 42 repositories from registry-eu"


def test_the_token_secret_never_reaches_the_logs(
    client: Client, developer: User, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    _, secret = factories.token(developer, scopes=["read"])
    client.get("/api/v1/me/", headers={"Authorization": f"Bearer {secret}"})
    client.get("/api/v1/me/", headers={"Authorization": f"Bearer {secret}x"})  # a failed attempt logs too
    assert secret not in caplog.text


def test_every_customs_secret_prefix_is_masked() -> None:
    # A new kind of secret gets a prefix constant; this fails until the log filter knows it too.
    from accounts import tokens
    from registries import services

    prefixes = {tokens.PREFIX, tokens.SCIM_PREFIX, tokens.ROBOT_PREFIX, services.WEBHOOK_PREFIX}
    for prefix in prefixes:
        record = _record("%s", f"saw {prefix}AbCdEf0123456789xyz in a header")
        RedactSecretsFilter().filter(record)
        assert record.getMessage() == f"saw {prefix}[redacted] in a header"
