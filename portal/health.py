"""Liveness, readiness and Prometheus metrics for load balancers, orchestrators and scrapers."""

from __future__ import annotations

import hmac

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.db import DatabaseError, connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from kombu.exceptions import OperationalError
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from accounts.roles import Role
from portal import metrics
from portal.celery import app as celery_app


@login_not_required
@never_cache
@require_GET
def healthz(request: HttpRequest) -> HttpResponse:
    """Alive: the process answers. Checks nothing else, so a database outage does not restart pods."""
    return JsonResponse({"status": "ok"})


@login_not_required
@never_cache
@require_GET
def readyz(request: HttpRequest) -> HttpResponse:
    """Ready: the database and the task broker both answer."""
    checks = {"database": _database_ok(), "broker": _broker_ok()}
    ready = all(checks.values())
    body = {
        "status": "ok" if ready else "unavailable",
        "checks": {k: "ok" if v else "down" for k, v in checks.items()},
    }
    return JsonResponse(body, status=200 if ready else 503)


def _database_ok() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return True
    except DatabaseError:
        return False


def _broker_ok() -> bool:
    try:
        with celery_app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
        return True
    except (OperationalError, OSError):
        return False


@login_not_required
@never_cache
@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    """Prometheus text format, for a scraper holding CUSTOMS_METRICS_TOKEN or a signed-in reviewer."""
    if request.user.is_authenticated and not request.user.has_role(Role.REVIEWER) and not _has_token(request):
        return HttpResponse("metrics are for reviewers and scrapers\n", status=403, content_type="text/plain")
    if not _may_read_metrics(request):
        response = HttpResponse(
            "metrics need a bearer token or a reviewer session\n", status=401, content_type="text/plain"
        )
        response["WWW-Authenticate"] = 'Bearer realm="customs-metrics"'
        return response
    return HttpResponse(generate_latest(metrics.exposition_registry()), content_type=CONTENT_TYPE_LATEST)


def _may_read_metrics(request: HttpRequest) -> bool:
    if request.user.is_authenticated and request.user.has_role(Role.REVIEWER):
        return True
    return _has_token(request)


def _has_token(request: HttpRequest) -> bool:
    scheme, _, offered = request.headers.get("Authorization", "").partition(" ")
    expected = settings.METRICS_TOKEN
    return bool(expected) and scheme.lower() == "bearer" and hmac.compare_digest(offered.strip(), expected)
