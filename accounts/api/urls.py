from __future__ import annotations

from django.urls import path
from rest_framework.routers import SimpleRouter

from accounts.api import views

router = SimpleRouter()
router.register("tokens", views.TokenViewSet, basename="token")
router.register("robot-tokens", views.RobotTokenViewSet, basename="robot-token")
router.register("groups", views.GroupViewSet, basename="group")
router.register("role-bindings", views.RoleBindingViewSet, basename="role-binding")

urlpatterns = [path("me/", views.MeView.as_view(), name="me"), *router.urls]
