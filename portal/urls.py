from __future__ import annotations

from django.urls import URLPattern, URLResolver, include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from portal import health, views

portal_routes: list[URLPattern | URLResolver] = [
    path("", views.dashboard, name="dashboard"),
    path("findings/", views.finding_list, name="findings"),
    path("findings/<int:finding_id>/", views.finding_detail, name="finding_detail"),
    path("findings/<int:finding_id>/unsuppress/", views.finding_unsuppress, name="finding_unsuppress"),
    path("audit/", views.audit_list, name="audit"),
    path("audit/export.csv", views.audit_export, {"fmt": "csv"}, name="audit_export_csv"),
    path("audit/export.jsonl", views.audit_export, {"fmt": "jsonl"}, name="audit_export_jsonl"),
]

api_routes: list[URLPattern | URLResolver] = [
    path("v1/", include("accounts.api.urls")),
    path("v1/", include("portal.api.urls")),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api:schema"), name="docs"),
]

urlpatterns = [
    path("", include((portal_routes, "portal"))),
    path("", include("accounts.urls")),
    path("", include("registries.urls")),
    path("api/", include((api_routes, "api"))),
    path("accounts/", include("allauth.urls")),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", health.metrics_view, name="metrics"),
]
