from __future__ import annotations

from django.urls import path

from registries import views

app_name = "registries"

urlpatterns = [
    path("registries/", views.registry_list, name="list"),
    path("base-images/", views.base_image_list, name="base_images"),
]
