from __future__ import annotations

from django.urls import path
from rest_framework.routers import SimpleRouter

from registries import hygiene_views
from registries.api import base_images, dockerfile_check, evidence, offboarding, views

router = SimpleRouter()
router.register("registries", views.RegistryViewSet, basename="registry")
router.register("sync-runs", views.SyncRunViewSet, basename="sync-run")
router.register("repositories", views.RepositoryViewSet, basename="repository")
router.register("artifacts", views.ArtifactViewSet, basename="artifact")
router.register("tags", views.TagViewSet, basename="tag")
router.register("access-rules", views.AccessRuleViewSet, basename="access-rule")
router.register("registry-credentials", views.CredentialViewSet, basename="registry-credential")
router.register("registry-grants", views.GrantViewSet, basename="registry-grant")
router.register("offboardings", offboarding.OffboardingViewSet, basename="offboarding")
router.register("base-images", base_images.BaseImageViewSet, basename="base-image")

urlpatterns = [
    path("access/user/", views.UserAccessView.as_view(), name="access-user"),
    path("access/who-can/", views.WhoCanView.as_view(), name="access-who-can"),
    path("access/robots-who-can/", views.RobotsWhoCanView.as_view(), name="access-robots-who-can"),
    path("access/groups/<int:group_id>/reach/", views.GroupReachView.as_view(), name="access-group-reach"),
    path("access/me/", views.MyAccessView.as_view(), name="access-me"),
    path("access/report.csv", views.AccessReportView.as_view(), name="access-report"),
    # Beside portal's findings routes, which cannot hold it: the credential ages read registries' rows.
    path("findings/summary/", hygiene_views.FindingSummaryView.as_view(), name="finding-summary"),
    path("evidence/bundle.zip", evidence.EvidenceBundleView.as_view(), name="evidence-bundle"),
    # Before the router: its base-images/<pk>/ routes must not see this one.
    path(
        "base-images/check-dockerfile",
        dockerfile_check.DockerfileCheckView.as_view(),
        name="base-image-check-dockerfile",
    ),
    path("offboarding/plan/", offboarding.OffboardingPlanView.as_view(), name="offboarding-plan"),
    # A file name, as access/report.csv: no trailing slash.
    path(
        "offboardings/<int:pk>/report.csv",
        offboarding.OffboardingReportView.as_view(),
        name="offboarding-report",
    ),
    *router.urls,
]
