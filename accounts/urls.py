from __future__ import annotations

from django.urls import path

from accounts import sso_views, views

app_name = "accounts"

urlpatterns = [
    path("settings/", views.settings_page, name="settings"),
    path("settings/tokens/<int:token_id>/revoke/", views.token_revoke, name="token_revoke"),
    path("settings/identity/", sso_views.identity_providers, name="identity_providers"),
    path("settings/identity/<str:kind>/<str:slug>/check/", sso_views.check_provider, name="idp_check"),
    path("credentials/", views.credential_list, name="credentials"),
    path("access/", views.access_page, name="access"),
    path("access/groups/<int:group_id>/", views.group_detail, name="group_detail"),
    path("access/groups/<int:group_id>/robots/", views.robot_create, name="robot_create"),
    path("access/groups/<int:group_id>/owner/", views.group_owner, name="group_owner"),
    path("access/robots/<int:robot_id>/revoke/", views.robot_revoke, name="robot_revoke"),
    path("access/role-bindings/", views.role_binding_create, name="role_binding_create"),
    path(
        "access/role-bindings/<int:binding_id>/delete/", views.role_binding_delete, name="role_binding_delete"
    ),
]
