from __future__ import annotations

from allauth.account import views as account_views
from allauth.socialaccount import views as social_views
from django.contrib.auth.decorators import login_not_required
from django.urls import URLPattern, URLResolver, include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from accounts import oidc
from portal import health, views

portal_routes: list[URLPattern | URLResolver] = [
    path("", views.dashboard, name="dashboard"),
    path("findings/", views.finding_list, name="findings"),
    path("findings/<int:finding_id>/", views.finding_detail, name="finding_detail"),
    path("findings/<int:finding_id>/unsuppress/", views.finding_unsuppress, name="finding_unsuppress"),
    path("findings/<int:finding_id>/assign/", views.finding_assign, name="finding_assign"),
    path("audit/", views.audit_list, name="audit"),
    path("audit/export.csv", views.audit_export, {"fmt": "csv"}, name="audit_export_csv"),
    path("audit/export.jsonl", views.audit_export, {"fmt": "jsonl"}, name="audit_export_jsonl"),
]

api_routes: list[URLPattern | URLResolver] = [
    path("v1/", include("accounts.api.urls")),
    path("v1/", include("portal.api.urls")),
    path("v1/", include("registries.api.urls")),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api:schema"), name="docs"),
]

# Only the allauth views Customs uses: sign-in and out. No self sign-up, e-mail management, local
# passwords for SSO people or password reset by e-mail: people come from the directory, each unused
# view would be one more door to guard, and the break-glass admin's password is changed with
# `manage.py changepassword` on the server.
sign_in_routes: list[URLPattern | URLResolver] = [
    path("login/", account_views.login, name="account_login"),
    path("logout/", account_views.logout, name="account_logout"),
    path("inactive/", account_views.account_inactive, name="account_inactive"),
    # OIDC through Customs' verifying adapter (accounts/oidc.py), at allauth's URLs and names.
    path("oidc/<str:provider_id>/login/", oidc.login, name="openid_connect_login"),
    path("oidc/<str:provider_id>/login/callback/", oidc.callback, name="openid_connect_callback"),
    path("", include("allauth.socialaccount.providers.saml.urls")),
    path("3rdparty/login/cancelled/", social_views.login_cancelled, name="socialaccount_login_cancelled"),
    # The error page is where failed sign-ins land, so it must open without a session.
    path(
        "3rdparty/login/error/",
        login_not_required(social_views.login_error),
        name="socialaccount_login_error",
    ),
]

urlpatterns = [
    path("", include((portal_routes, "portal"))),
    path("", include("accounts.urls")),
    path("", include("registries.urls")),
    path("api/", include((api_routes, "api"))),
    path("scim/v2/", include("accounts.scim.urls")),
    path("access/scim/", include("accounts.scim.page_urls")),
    path("accounts/", include(sign_in_routes)),
    path("hooks/", include("registries.webhooks.urls")),
    path("auth/", include("registries.tokenserver.urls")),
    path("admission/", include("registries.admission_views")),  # Kubernetes AdmissionReview v1
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", health.metrics_view, name="metrics"),
]
