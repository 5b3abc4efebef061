"""Query strings for links on list pages: the current filters, minus what the link itself sets."""

from __future__ import annotations

from django.http import HttpRequest


def query_without(request: HttpRequest, *names: str) -> str:
    """The page's query string without the given parameters (e.g. "page"), for links that keep the rest."""
    query = request.GET.copy()
    for name in names:
        query.pop(name, None)
    return query.urlencode()
