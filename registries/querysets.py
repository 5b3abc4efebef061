"""Inventory querysets: scoping to what a person may see, and the filters the browser and API share.

Registry's own queryset (with the `visible_to` hook) lives in models.py; everything below scopes
through it, so a future per-registry access rule changes one method and every list follows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Self

from django.db import models
from django.db.models import F, Q

if TYPE_CHECKING:
    # Named in the QuerySet[...] strings below, which ruff does not read as uses.
    from registries.models import Artifact, Repository, SyncRun, Tag, WebhookEvent  # noqa: F401


def _visible_registries(user: Any) -> models.QuerySet[Any]:
    # Imported here: models.py imports this module to attach the managers.
    from registries.models import Registry

    return Registry.objects.visible_to(user)


# Sort keys offered by the repository browser and the API, and the order each one means.
# Dates sort newest first with never-pushed/pulled last; every order ends in pk, so pages are stable.
REPOSITORY_ORDERINGS: dict[str, tuple[str, list[Any]]] = {
    "last_pushed": ("Last push", [F("last_pushed_at").desc(nulls_last=True), "-pk"]),
    "last_pulled": ("Last pull", [F("last_pulled_at").desc(nulls_last=True), "-pk"]),
    "size": ("Size", ["-size", "-pk"]),
    "tag_count": ("Tag count", ["-tag_count", "-pk"]),
    "name": ("Name", ["name", "pk"]),
}


class RepositoryQuerySet(models.QuerySet["Repository"]):
    def visible_to(self, user: Any) -> Self:
        # A subquery, not a join: no duplicate rows, and the plan does not depend on the scope.
        return self.filter(registry__in=_visible_registries(user))

    def search(self, text: str) -> Self:
        # icontains is a scan of the name column (no trigram index yet); ~100k short names is
        # tens of milliseconds, and the page query LIMITs to one page.
        return self.filter(name__icontains=text) if text else self

    def in_region(self, region: str) -> Self:
        """Repositories with content in that region: the registry's primary is there, or a replica
        there holds at least one of the repository's artifacts."""
        from registries.models import ArtifactPresence

        # An uncorrelated IN: PostgreSQL hashes the subquery's result once, where a correlated
        # EXISTS under an OR would be probed for every repository row.
        held = ArtifactPresence.objects.filter(replica__region=region).values("artifact__repository_id")
        return self.filter(Q(registry__region=region) | Q(pk__in=held))

    def sorted_by(self, key: str) -> Self:
        ordering = REPOSITORY_ORDERINGS.get(key, REPOSITORY_ORDERINGS["name"])
        return self.order_by(*ordering[1])


class ArtifactQuerySet(models.QuerySet["Artifact"]):
    def visible_to(self, user: Any) -> Self:
        return self.filter(repository__registry__in=_visible_registries(user))

    def top_level(self) -> Self:
        """Images and indexes, not the platform manifests inside an index."""
        return self.filter(index=None)


class TagQuerySet(models.QuerySet["Tag"]):
    def visible_to(self, user: Any) -> Self:
        return self.filter(repository__registry__in=_visible_registries(user))


class SyncRunQuerySet(models.QuerySet["SyncRun"]):
    def visible_to(self, user: Any) -> Self:
        return self.filter(registry__in=_visible_registries(user))

    def running(self) -> Self:
        return self.filter(status="running")


class WebhookEventQuerySet(models.QuerySet["WebhookEvent"]):
    def visible_to(self, user: Any) -> Self:
        return self.filter(registry__in=_visible_registries(user))
