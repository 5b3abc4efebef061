from __future__ import annotations

from django.urls import path

from registries.tokenserver import views

app_name = "tokenserver"

urlpatterns = [path("token", views.token, name="token")]
