from __future__ import annotations

from rest_framework.routers import SimpleRouter

from registries.api import views

router = SimpleRouter()
router.register("registries", views.RegistryViewSet, basename="registry")
router.register("sync-runs", views.SyncRunViewSet, basename="sync-run")
router.register("repositories", views.RepositoryViewSet, basename="repository")
router.register("artifacts", views.ArtifactViewSet, basename="artifact")
router.register("tags", views.TagViewSet, basename="tag")

urlpatterns = router.urls
