"""SCIM 2.0 routes, without trailing slashes: clients append /Users to the base URL as configured."""

from __future__ import annotations

from django.urls import path

from accounts.scim import views

# The namespace makes LoginRequiredMiddleware let these through: they authenticate bearer tokens.
app_name = "scim"

urlpatterns = [
    path("Users", views.users, name="users"),
    path("Users/<str:resource_id>", views.user, name="user"),
    path("Groups", views.groups, name="groups"),
    path("Groups/<str:resource_id>", views.group, name="group"),
    path("ServiceProviderConfig", views.service_provider_config, name="service_provider_config"),
    path("ResourceTypes", views.resource_types, name="resource_types"),
    path("ResourceTypes/<str:name>", views.resource_type, name="resource_type"),
    path("Schemas", views.schemas, name="schemas"),
    path("Schemas/<str:urn>", views.schema, name="schema"),
    path("Bulk", views.not_implemented, name="bulk"),
    path(".search", views.not_implemented, name="search"),
    path("Me", views.not_implemented, name="me"),
]
