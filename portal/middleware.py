"""Request id, metrics, and sign-in required everywhere except the few public paths."""

from __future__ import annotations

import time
from collections.abc import Callable

from django.conf import settings
from django.contrib.auth import logout
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse
from django.urls import Resolver404, resolve

from portal import metrics, requestid

Handler = Callable[[HttpRequest], HttpResponse]


class RequestIdMiddleware:
    def __init__(self, get_response: Handler) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request_id = requestid.accept_or_new(request.headers.get("X-Request-ID"))
        requestid.set_current(request_id)
        request.request_id = request_id  # type: ignore[attr-defined]
        response = self.get_response(request)
        response["X-Request-ID"] = request_id
        return response


class MetricsMiddleware:
    def __init__(self, get_response: Handler) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = self.get_response(request)
        metrics.observe_request(request, response, time.perf_counter() - started)
        return response


# Namespaces whose views authenticate bearer tokens themselves (this middleware cannot see them)
# and answer 401 rather than redirect to the sign-in page.
SELF_AUTHENTICATING_NAMESPACES = frozenset({"api", "scim"})


class LoginRequiredMiddleware:
    """Deny by default: a page someone forgot to protect still requires a signed-in user."""

    def __init__(self, get_response: Handler) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = request.user
        if user.is_authenticated and not getattr(user, "may_sign_in", True):
            # Disabled or departed in the directory: a session from before that ends on its next request.
            logout(request)
        if request.user.is_authenticated or self._is_public(request):
            return self.get_response(request)
        return redirect_to_login(request.get_full_path(), settings.LOGIN_URL)

    @staticmethod
    def _is_public(request: HttpRequest) -> bool:
        if request.path.startswith(
            settings.STATIC_URL if settings.STATIC_URL.startswith("/") else "/static/"
        ):
            return True
        try:
            match = resolve(request.path_info)
        except Resolver404:
            return False  # unknown paths: the 404 is shown to signed-in people only
        # Views opt out with Django's @login_not_required (allauth marks its sign-in views so);
        # the API and SCIM authenticate bearer tokens themselves and answer 401, not a redirect.
        return getattr(match.func, "login_required", True) is False or bool(
            SELF_AUTHENTICATING_NAMESPACES & set(match.namespaces)
        )
