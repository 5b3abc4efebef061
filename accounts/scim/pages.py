"""The SCIM page for admins: provisioning tokens (create, revoke) and the latest requests with results."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.core.validators import RegexValidator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from accounts.access import signed_in_user
from accounts.models import ScimRequest, ScimToken
from accounts.permissions import role_required
from accounts.roles import Role
from accounts.scim import services
from portal.errors import RequestRejected

RECENT_REQUESTS = 50


class ScimTokenForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="The connection it is for, e.g. “Entra production”.")
    directory = forms.CharField(
        max_length=64,
        initial="default",
        validators=[RegexValidator(r"^[A-Za-z0-9_.-]+$", "Letters, digits, dots, dashes and underscores.")],
        help_text="The directory its users and groups belong to; SSO sign-ins of the same tenant use it too.",
    )


@require_http_methods(["GET", "POST"])
@role_required(Role.ADMIN)
def scim_page(request: HttpRequest) -> HttpResponse:
    """Tokens and recent requests; a created token's secret is shown once, in this response only."""
    form = ScimTokenForm(request.POST or None)
    issued = None
    if request.method == "POST" and form.is_valid():
        try:
            issued = services.create_token(
                name=form.cleaned_data["name"],
                directory_name=form.cleaned_data["directory"],
                actor=signed_in_user(request),
            )
        except RequestRejected as exc:
            form.add_error(None, str(exc))
        else:
            form = ScimTokenForm()
    context = {
        "form": form,
        "issued": issued,
        "tokens": ScimToken.objects.select_related("created_by"),
        "requests": ScimRequest.objects.select_related("token")[:RECENT_REQUESTS],
        "base_url": request.build_absolute_uri(reverse("scim:users")).rsplit("/", 1)[0],
    }
    response = render(request, "accounts/scim.html", context)
    if issued is not None:
        # Rendered, not redirected: the secret must never land in a session, URL or cache.
        response["Cache-Control"] = "no-store"
    return response


@require_POST
@role_required(Role.ADMIN)
def token_revoke(request: HttpRequest, token_id: int) -> HttpResponse:
    token = get_object_or_404(ScimToken, pk=token_id)
    if services.revoke_token(token, actor=signed_in_user(request)):
        messages.success(request, f"SCIM token “{token.name}” revoked; its client can no longer provision.")
    return redirect("scim_admin:tokens")
