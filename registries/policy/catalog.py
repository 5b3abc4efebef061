"""Judging an image reference against the approved base-image catalog.

The catalog is read once (`Catalog.load()`), then judged in memory: the Dockerfile check, the
admission webhook and lineage all judge many references per request or run. A reference counts as
a catalog entry's when it names the entry's repository or one of its regional mirrors.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from fnmatch import fnmatchcase

from registries.models import BaseImage, BaseImageMirror
from registries.policy.references import Reference, endpoint_host, on_docker_hub


class Verdict(enum.StrEnum):
    APPROVED = "approved"
    DEPRECATED = "deprecated"  # a warning: still compliant, with the replacement to move to
    BANNED = "banned"
    UNAPPROVED = "unapproved"


@dataclass(frozen=True)
class Judgement:
    verdict: Verdict
    message: str
    replacement: str = ""
    entry_id: int | None = None

    @property
    def compliant(self) -> bool:
        return self.verdict in (Verdict.APPROVED, Verdict.DEPRECATED)


@dataclass(frozen=True)
class Entry:
    """A catalog row, detached from the ORM: judging needs no queries."""

    id: int
    name: str
    tags: tuple[str, ...]
    digests: frozenset[str]
    status: str
    replacement: str
    max_age_days: int | None


class Catalog:
    def __init__(self, entries: Iterable[Entry], mirrors: dict[str, int] | None = None) -> None:
        self._by_repository = {entry.name: entry for entry in entries}
        self._by_id = {entry.id: entry for entry in self._by_repository.values()}
        for repository, entry_id in (mirrors or {}).items():
            self._by_repository.setdefault(repository, self._by_id[entry_id])

    @classmethod
    def load(cls) -> Catalog:
        """Every entry and regional mirror, in two queries."""
        entries = [
            Entry(
                id=row.pk,
                name=row.name,
                tags=tuple(row.tags),
                digests=frozenset(row.digests),
                status=row.status,
                replacement=row.replacement,
                max_age_days=row.max_age_days,
            )
            for row in BaseImage.objects.all()
        ]
        mirrors = {
            f"{endpoint_host(mirror.registry.endpoint)}/{mirror.repository}": mirror.base_image_id
            for mirror in BaseImageMirror.objects.select_related("registry")
        }
        return cls(entries, mirrors)

    def entry_for(self, repository: str) -> Entry | None:
        return self._by_repository.get(repository)

    def entry(self, entry_id: int) -> Entry | None:
        return self._by_id.get(entry_id)

    def judge(self, reference: Reference) -> Judgement:
        repository = policy_repository(reference)
        entry = self._by_repository.get(repository)
        if entry is None:
            return Judgement(Verdict.UNAPPROVED, f"{repository} is not in the base-image catalog")
        return _judge_entry(entry, reference)


def policy_repository(reference: Reference) -> str:
    """The repository the catalog knows the reference by: Docker Hub under any of its hosts is
    docker.io, so a banned image cannot pass by naming another of them."""
    return on_docker_hub(reference).repository


def _judge_entry(entry: Entry, reference: Reference) -> Judgement:
    shown = str(reference)
    if entry.status != BaseImage.Status.BANNED and (refusal := _outside_entry(entry, reference)):
        return Judgement(Verdict.UNAPPROVED, f"{shown}: {refusal}", entry.replacement, entry.id)
    return judge_status(entry, shown)


def judge_status(entry: Entry, shown: str) -> Judgement:
    """The entry's status as the judgement of `shown`, tag patterns and pinned digests aside."""
    instead = f"; use {entry.replacement} instead" if entry.replacement else ""
    if entry.status == BaseImage.Status.BANNED:
        return Judgement(Verdict.BANNED, f"{shown} is banned{instead}", entry.replacement, entry.id)
    if entry.status == BaseImage.Status.DEPRECATED:
        return Judgement(Verdict.DEPRECATED, f"{shown} is deprecated{instead}", entry.replacement, entry.id)
    return Judgement(Verdict.APPROVED, f"{shown} is approved", entry_id=entry.id)


def _outside_entry(entry: Entry, reference: Reference) -> str:
    """Why the reference is not one the entry allows, or "" when it is."""
    if reference.digest and entry.digests and reference.digest not in entry.digests:
        return f"digest {reference.digest} is not one of the pinned digests"
    if not entry.tags:
        return ""
    if reference.tag is None:
        # Digest only: allowed when the digest is pinned; tag patterns cannot be checked otherwise.
        if reference.digest and reference.digest in entry.digests:
            return ""
        return f"no tag to check against the allowed tags ({', '.join(entry.tags)})"
    if any(fnmatchcase(reference.tag, pattern) for pattern in entry.tags):
        return ""
    return f"tag {reference.tag} is not allowed (allowed: {', '.join(entry.tags)})"
