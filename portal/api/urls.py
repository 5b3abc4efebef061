from __future__ import annotations

from django.urls import URLPattern, URLResolver, path
from rest_framework.routers import SimpleRouter

from portal.api import views

router = SimpleRouter()
router.register("audit-events", views.AuditEventViewSet, basename="audit-event")
router.register("findings", views.FindingViewSet, basename="finding")

urlpatterns: list[URLPattern | URLResolver] = [
    # A file name, not a collection: no trailing slash, as SIEM collectors are configured with it.
    path("findings/export.jsonl", views.FindingExportView.as_view(), name="finding-export"),
    *router.urls,
]
