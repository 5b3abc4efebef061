"""Registry pages. The inventory and the base-image catalog fill these in their own issues."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET


@require_GET
def registry_list(request: HttpRequest) -> HttpResponse:
    return render(request, "registries/list.html")


@require_GET
def base_image_list(request: HttpRequest) -> HttpResponse:
    return render(request, "registries/base_images.html")
