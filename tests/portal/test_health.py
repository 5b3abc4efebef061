from __future__ import annotations

from unittest import mock

import pytest
from django.test import Client, override_settings
from kombu.exceptions import OperationalError

from accounts.models import User
from tests import factories

pytestmark = pytest.mark.django_db


def test_healthz_answers_without_touching_the_database(
    client: Client, django_assert_num_queries: object
) -> None:
    with django_assert_num_queries(0):  # type: ignore[operator]
        response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_reports_each_dependency(client: Client) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["checks"] == {"database": "ok", "broker": "ok"}


def test_readyz_is_unavailable_when_the_broker_is_down(client: Client) -> None:
    with mock.patch("portal.health.celery_app.connection_for_write") as connect:
        connect.return_value.__enter__.return_value.ensure_connection.side_effect = OperationalError(
            "refused"
        )
        response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable", "checks": {"database": "ok", "broker": "down"}}


def test_metrics_need_a_token_or_a_reviewer(client: Client) -> None:
    response = client.get("/metrics")
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")


@override_settings(METRICS_TOKEN="scrape-me-0123456789")
def test_a_scraper_with_the_token_reads_prometheus_text(client: Client) -> None:
    factories.finding(severity="critical")
    client.get("/healthz")  # at least one request observed
    response = client.get("/metrics", headers={"Authorization": "Bearer scrape-me-0123456789"})
    body = response.content.decode()
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    assert 'customs_findings_open{severity="critical"} 1.0' in body
    assert 'customs_http_requests_total{method="GET",status="2xx",view="healthz"}' in body
    assert "customs_http_request_duration_seconds_bucket" in body


@override_settings(METRICS_TOKEN="scrape-me-0123456789")
def test_a_wrong_token_is_refused(client: Client) -> None:
    response = client.get("/metrics", headers={"Authorization": "Bearer scrape-me-wrong"})
    assert response.status_code == 401


def test_no_token_configured_means_no_anonymous_scrape(client: Client) -> None:
    response = client.get("/metrics", headers={"Authorization": "Bearer "})
    assert response.status_code == 401


def test_a_signed_in_reviewer_reads_metrics(client: Client, reviewer: User) -> None:
    client.force_login(reviewer)
    assert client.get("/metrics").status_code == 200


def test_multiprocess_mode_merges_every_workers_files(
    monkeypatch: pytest.MonkeyPatch, tmp_path: object, client: Client, reviewer: User
) -> None:
    from portal import metrics

    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    registry = metrics.exposition_registry()
    assert registry is not metrics.REGISTRY
    client.force_login(reviewer)
    body = client.get("/metrics").content.decode()
    assert "customs_findings_open" in body  # the database gauges are still there
