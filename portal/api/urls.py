from __future__ import annotations

from rest_framework.routers import SimpleRouter

from portal.api import views

router = SimpleRouter()
router.register("audit-events", views.AuditEventViewSet, basename="audit-event")
router.register("findings", views.FindingViewSet, basename="finding")

urlpatterns = router.urls
