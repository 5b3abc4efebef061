from __future__ import annotations

from django.urls import path

from registries.webhooks import views

app_name = "webhooks"

urlpatterns = [path("registries/<int:registry_id>/", views.receive, name="registry")]
