"""Regression tests for problems found in the security review of SCIM, sign-in and registries."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from accounts.models import ScimRequest, User
from accounts.scim import services as scim_services
from portal.errors import RequestRejected
from registries import services, sync
from registries.forms import RegistryForm
from registries.models import Registry, SyncRun

pytestmark = pytest.mark.django_db


def _registry(**secrets: str) -> Registry:
    return services.save_registry(
        Registry(name="reviewed", kind="distribution", endpoint="https://registry.example"),
        actor=None,
        public={"username": "bot"} if secrets else {},
        secrets=secrets,
    )


# --- SCIM request log ------------------------------------------------------------------------------


def test_scim_requests_with_a_token_nobody_issued_write_no_log_row(client: Client) -> None:
    # Anyone on the internet can send a made-up bearer token; each one must not cost a table row.
    for n in range(3):
        response = client.get("/scim/v2/Users", HTTP_AUTHORIZATION=f"Bearer csp_{'x' * 40}{n}")
        assert response.status_code == 401
    assert not ScimRequest.objects.exists()


def test_a_scim_request_with_a_long_method_name_is_405_not_a_database_error(client: Client) -> None:
    issued = scim_services.create_token(name="okta", directory_name="default", actor=None)
    response = client.generic("MKCALENDAR", "/scim/v2/Users", HTTP_AUTHORIZATION=f"Bearer {issued.secret}")
    assert response.status_code == 405
    assert ScimRequest.objects.get().method == "MKCALEND"


# --- credentials in endpoint URLs ----------------------------------------------------------------


def test_a_registry_endpoint_with_credentials_in_it_is_refused() -> None:
    # The endpoint is shown to every developer (page, API) and written to the audit trail.
    with pytest.raises(RequestRejected):
        services.save_registry(
            Registry(name="leaky", kind="distribution", endpoint="https://bob:hunter2@registry.example"),
            actor=None,
            public={},
        )


def test_a_replica_endpoint_with_credentials_in_it_is_refused() -> None:
    registry = _registry()
    with pytest.raises(RequestRejected):
        services.save_replica(registry, actor=None, region="eu", endpoint="https://bob:hunter2@eu.example")
    assert not registry.replicas.exists()


# --- stored secrets follow the endpoint they were given for --------------------------------------


def test_a_connection_test_against_another_endpoint_does_not_send_the_stored_password() -> None:
    registry = _registry(password="stored-hunter2")
    data = {"name": "reviewed", "endpoint": "https://elsewhere.example", "config_username": "bot"}
    form = RegistryForm(data, kind="distribution", registry=registry)
    assert form.connection_errors() == []
    assert "password" not in form.transient().secrets()
    same = RegistryForm(data | {"endpoint": registry.endpoint}, kind="distribution", registry=registry)
    assert same.connection_errors() == []
    assert same.transient().secrets() == {"password": "stored-hunter2"}


def test_moving_a_registry_to_another_endpoint_needs_its_secrets_again(admin: User) -> None:
    registry = _registry(password="stored-hunter2")
    registry.endpoint = "https://elsewhere.example"
    with pytest.raises(RequestRejected):
        services.save_registry(registry, actor=admin, public={"username": "bot"})
    assert Registry.objects.get(pk=registry.pk).endpoint == "https://registry.example"
    services.save_registry(registry, actor=admin, public={"username": "bot"}, secrets={"password": "new"})
    assert Registry.objects.get(pk=registry.pk).secrets() == {"password": "new"}


# --- replica syncs ------------------------------------------------------------------------------


def test_a_replica_sync_that_crashes_is_closed_as_failed(monkeypatch: pytest.MonkeyPatch) -> None:
    replica = services.save_replica(_registry(), actor=None, region="eu", endpoint="https://eu.example")

    def crash(*args: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr(sync, "_replica_digests", crash)
    with pytest.raises(RuntimeError):
        sync.sync_replica(replica)
    run = SyncRun.objects.get(replica=replica)
    assert run.status == SyncRun.Status.FAILED  # a run left "running" makes the page poll for ever
    assert run.finished_at is not None
