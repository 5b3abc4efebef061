"""The admins' SCIM page. Apart from the API's namespace, so the sign-in requirement applies to it."""

from __future__ import annotations

from django.urls import path

from accounts.scim import pages

app_name = "scim_admin"

urlpatterns = [
    path("", pages.scim_page, name="tokens"),
    path("tokens/<int:token_id>/revoke/", pages.token_revoke, name="token_revoke"),
]
