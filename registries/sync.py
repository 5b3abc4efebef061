"""Inventory sync: read a registry through its connector, then make the inventory match it.

Reading happens with bounded concurrency and is staged in the database as it goes (so memory stays
flat however large the registry); the staged listing is applied in one transaction only once it is
complete. A failure anywhere before that leaves the inventory exactly as it was.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from django.db import connection, transaction
from django.db.models import Max, QuerySet, Sum
from django.utils import timezone

from accounts.models import DirectoryGroup, User
from portal import http
from registries import connectors, drift, posture
from registries.connectors.base import (
    Connector,
    ConnectorConfig,
    Platform,
    PostureFact,
    Principal,
    RemoteArtifact,
    RemoteCredential,
    RemoteGrant,
    RemoteReplication,
    RemoteTag,
    can_read_credentials,
    can_read_grants,
    can_read_posture,
    can_read_replication,
)
from registries.connectors.errors import ConnectorError, PermanentError, RateLimited, TransientError
from registries.models import (
    Artifact,
    ArtifactPresence,
    Credential,
    Grant,
    PrincipalLink,
    Registry,
    Replica,
    ReplicationLink,
    Repository,
    StagedArtifact,
    StagedTag,
    SyncRun,
    Tag,
    WebhookEvent,
)
from registries.patterns import InvalidPattern, compile_pattern

T = TypeVar("T")
BATCH = 50  # repositories read before their observations are written
# How long one request may wait on a registry's Retry-After before the run gives up on it (then
# says how long the registry asked for, and the task may queue the sync again for that moment).
MAX_RETRY_AFTER = 60.0
RATE_LIMIT_ATTEMPTS = 4  # sends of one request, the first included
EMPTY_MARKER = ""  # a staged tag row with this name records that the repository was listed
# The marker's digest when the listing matched the inventory exactly: nothing to apply for it.
UNCHANGED = "unchanged"


class AlreadySyncing(Exception):
    """Another sync holds this registry."""


class Deferred(Exception):
    """The registry asked for a longer wait than a sync spends waiting; the run ended saying when
    it is tried again, which the caller promised to do (`resume_within`)."""

    def __init__(self, run: SyncRun, retry_after: float) -> None:
        super().__init__(run.error)
        self.run, self.retry_after = run, retry_after


@dataclass(frozen=True)
class Observation:
    repository: str
    tags: list[RemoteTag]
    artifacts: list[RemoteArtifact]


Progress = Callable[[SyncRun], None]


def connector_for(registry: Registry) -> Connector:
    return connectors.build(registry.kind, {**registry.config, "url": registry.endpoint}, registry.secrets())


def registry_config(registry: Registry) -> ConnectorConfig:
    """The registry's settings as its kind's config class validates them (public, endpoint, secrets)."""
    return connectors.config_for(
        registry.kind, {**registry.config, "url": registry.endpoint}, registry.secrets()
    )


def connector_class_for(registry: Registry) -> type[Connector] | None:
    """The class that would serve the registry, to ask what it can do without connecting."""
    return connectors.connector_class(
        registry.kind, {**registry.config, "url": registry.endpoint}, registry.secrets()
    )


def claim(registry: Registry, *, trigger: str) -> SyncRun | None:
    # Atomic on SQLite (local run) and PostgreSQL alike; an advisory lock would exist only in production.
    now = timezone.now()
    won = Registry.objects.filter(pk=registry.pk, syncing_since=None).update(
        syncing_since=now, last_sync_started_at=now
    )
    if not won:
        return None
    return SyncRun.objects.create(registry=registry, trigger=trigger)


def release(registry: Registry) -> None:
    Registry.objects.filter(pk=registry.pk).update(syncing_since=None)


def free_stuck_claims(*, older_than: timedelta) -> int:
    """Release registries whose sync worker died mid-run, and close those runs as failed."""
    cutoff = timezone.now() - older_than
    stuck = Registry.objects.filter(syncing_since__lt=cutoff)
    SyncRun.objects.filter(registry__in=stuck, status=SyncRun.Status.RUNNING).update(
        status=SyncRun.Status.FAILED, finished_at=timezone.now(), error="the worker stopped before finishing"
    )
    return stuck.update(syncing_since=None)


def sync_inventory(
    registry: Registry,
    *,
    trigger: str = SyncRun.Trigger.SCHEDULE,
    on_progress: Progress | None = None,
    sleep: Callable[[float], None] | None = None,
    resume_within: float = 0.0,
) -> SyncRun:
    """One complete sync of a registry's inventory. Raises AlreadySyncing if another one runs.

    A 429 asking for at most MAX_RETRY_AFTER seconds is waited out (with `sleep`) and the same
    request sent again, so a listing goes on from its page. A longer one fails the run, saying how
    long the registry asked for; a caller that will queue the sync again after a wait of up to
    `resume_within` seconds gets Deferred, raised once the run is closed. Such a caller also gets
    a TransientError (an outage, a timeout) back once the run is closed, to retry with its back-off.
    """
    run = claim(registry, trigger=trigger)
    if run is None:
        raise AlreadySyncing(f"{registry} is already being synced")
    grants: list[RemoteGrant] | None = None
    retry_after: float | None = None
    transient: TransientError | None = None
    # The longest wait a part beyond the inventory (grants, credentials, ...) was refused with.
    parts_limited: list[float] = []
    waits = _waits(run, registry.name, sleep or time.sleep)
    try:
        connector = connector_for(registry)
        with http.waiting_out_rate_limits(waits):
            _read(registry, connector, run, on_progress or (lambda run: None), waits)
            # Read completely before anything is applied: a failure here leaves inventory, grants,
            # credentials and replication links as they were.
            grants = _read_aspect(run, "grants", lambda: read_grants(connector), parts_limited)
            credentials = _read_aspect(run, "credentials", lambda: read_credentials(connector), parts_limited)
            replication = _read_aspect(run, "replication", lambda: read_replication(connector), parts_limited)
            facts = _read_aspect(run, "posture", lambda: read_posture(connector, run), parts_limited)
        with transaction.atomic():
            apply_listing(registry, run)
            if grants is not None:
                replace_grants(registry, run, grants)
            if credentials is not None:
                apply_credentials(registry, run, credentials)
            if replication is not None:
                replace_replication(registry, run, replication)
            if facts is not None:
                posture.store_facts(registry, run, facts)
        _finish(run, SyncRun.Status.SUCCEEDED)
    except RateLimited as exc:
        retry_after = _asked_wait(exc)
        _finish(
            run, SyncRun.Status.FAILED, error=_rate_limited_error(registry, exc, retry_after, resume_within)
        )
    except TransientError as exc:
        # An outage or a timeout: a caller that comes back (`resume_within`) retries with its
        # back-off, sooner than the next scheduled sync.
        transient = exc
        again = "; Customs tries again shortly" if resume_within else ""
        _finish(run, SyncRun.Status.FAILED, error=f"{exc}{again}")
    except ConnectorError as exc:
        _finish(run, SyncRun.Status.FAILED, error=str(exc))
    except BaseException:
        # A bug, or the worker being stopped: the run must not stay "running" for ever.
        _finish(run, SyncRun.Status.FAILED, error="stopped by an internal error; see the worker log")
        raise
    finally:
        StagedTag.objects.filter(run=run).delete()
        StagedArtifact.objects.filter(run=run).delete()
        release(registry)
    if grants is not None and run.status == SyncRun.Status.SUCCEEDED:
        drift.reconcile_findings(registry)
    if run.status == SyncRun.Status.SUCCEEDED:
        # Also without a posture read: the credentials just applied are counted, and the day's score kept.
        posture.evaluate(registry)
    if on_progress:
        on_progress(run)
    if retry_after is not None and retry_after <= resume_within:
        raise Deferred(run, retry_after)
    if transient is not None and resume_within:
        raise transient  # the run is closed and the registry released
    if parts_limited and run.status == SyncRun.Status.SUCCEEDED and max(parts_limited) <= resume_within:
        # The inventory applied; the parts refused for longer than the waits are read again by the
        # sync the caller queues, rather than at the next scheduled one.
        raise Deferred(run, max(parts_limited))
    return run


def _rate_limited_error(registry: Registry, exc: RateLimited, wait: float, resume_within: float) -> str:
    asked = "it did not say for how long" if exc.retry_after is None else f"it asks to wait {wait:.0f} s"
    text = f"rate limited by {registry.name}: {exc}; {asked}"
    if wait > resume_within:
        return text
    again = timezone.now() + timedelta(seconds=wait)
    return f"{text}; Customs tries again at {again:%Y-%m-%d %H:%M:%S} UTC (in {wait:.0f} s)"


def _waits(run: SyncRun, name: str, sleep: Callable[[float], None]) -> http.RateLimitWaits:
    """Short rate limits are waited out where they happen, the run saying so while it waits."""
    owner = threading.current_thread()

    def wait(seconds: float) -> None:
        note = f"waiting {seconds:.0f} s for {name} (rate limited)"
        waiting = SyncRun.objects.filter(pk=run.pk, status=SyncRun.Status.RUNNING)
        try:
            waiting.update(error=note)
            sleep(seconds)
            waiting.filter(error=note).update(error="")
        finally:
            if threading.current_thread() is not owner:
                connection.close()  # a reading thread has no request cycle to close what it opened

    return http.RateLimitWaits(longest=MAX_RETRY_AFTER, attempts=RATE_LIMIT_ATTEMPTS, sleep=wait)


def _asked_wait(exc: RateLimited) -> float:
    """How long the registry asked for; AWS and some others do not say, and MAX_RETRY_AFTER stands in."""
    return exc.retry_after if exc.retry_after is not None else MAX_RETRY_AFTER


def _read_aspect(run: SyncRun, aspect: str, read: Callable[[], T | None], limited: list[float]) -> T | None:
    """Read one aspect beyond the inventory; on failure say why and keep its previous rows.

    A robot allowed to list repositories but not replication policies must not stop the
    inventory, nor should a registry briefly refusing its audit log. A rate limit longer than the
    session waits out is noted in `limited` (seconds asked for), so the caller can come back.
    """
    try:
        return read()
    except RateLimited as exc:
        wait = _asked_wait(exc)
        limited.append(wait)
        run.not_read[aspect] = f"{exc}; it asks to wait {wait:.0f} s"[:500]
        return None
    except ConnectorError as exc:
        run.not_read[aspect] = str(exc)[:500]
        return None


def _finish(run: SyncRun, status: str, *, error: str = "") -> None:
    run.status, run.finished_at, run.error = status, timezone.now(), error[:2000]
    run.save()


# --- reading -------------------------------------------------------------------------------------


def _read(
    registry: Registry, connector: Connector, run: SyncRun, on_progress: Progress, waits: http.RateLimitWaits
) -> None:
    names = (repository.name for repository in connector.repositories())
    with ThreadPoolExecutor(max_workers=max(1, registry.sync_concurrency)) as pool:
        for batch in _batches(names, BATCH):
            known = _known_digests(registry, batch)
            digests = [known.get(name, set()) for name in batch]
            observe = functools.partial(_observe, connector, waits=waits)
            _stage(run, list(pool.map(observe, batch, digests)), _current_tags(registry, batch))
            on_progress(run)


def _observe(
    connector: Connector, repository: str, known: set[str], *, waits: http.RateLimitWaits
) -> Observation:
    # A context variable does not cross into the pool's threads: each reading thread enters it.
    with http.waiting_out_rate_limits(waits):
        tags = connector.tags(repository)
        new = sorted({tag.digest for tag in tags} - known)
        artifacts = [connector.artifact(repository, digest) for digest in new]
    return Observation(repository=repository, tags=tags, artifacts=artifacts)


def _batches(items: Iterable[T], size: int) -> Iterator[list[T]]:
    iterator = iter(items)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


def _known_digests(registry: Registry, names: list[str]) -> dict[str, set[str]]:
    known: dict[str, set[str]] = {}
    rows = Artifact.objects.filter(repository__registry=registry, repository__name__in=names)
    for name, digest in rows.values_list("repository__name", "digest"):
        known.setdefault(name, set()).add(digest)
    return known


def _current_tags(registry: Registry, names: list[str]) -> dict[str, dict[str, str]]:
    current: dict[str, dict[str, str]] = {}
    rows = Tag.objects.filter(repository__registry=registry, repository__name__in=names)
    for name, tag, digest in rows.values_list("repository__name", "name", "artifact__digest"):
        current.setdefault(name, {})[tag] = digest
    return current


def _unchanged(observation: Observation, current: dict[str, dict[str, str]]) -> bool:
    tags = {tag.name: tag.digest for tag in observation.tags}
    return not observation.artifacts and tags == current.get(observation.repository, {})


def _stage(run: SyncRun, observations: list[Observation], current: dict[str, dict[str, str]]) -> None:
    # A repository that reads exactly as the inventory has it is staged as a marker only: a re-sync of
    # an unchanged registry then writes one row per repository instead of one per tag.
    unchanged = {o.repository for o in observations if _unchanged(o, current)}
    tags = [
        StagedTag(
            run=run,
            repository=o.repository,
            tag=EMPTY_MARKER,
            digest=UNCHANGED if o.repository in unchanged else "",
        )
        for o in observations
    ]
    tags += [
        StagedTag(run=run, repository=o.repository, tag=t.name, digest=t.digest)
        for o in observations
        if o.repository not in unchanged
        for t in o.tags
    ]
    artifacts = [
        StagedArtifact(run=run, repository=o.repository, digest=a.digest, record=to_json(a))
        for o in observations
        for a in o.artifacts
    ]
    StagedTag.objects.bulk_create(tags, batch_size=1000)
    StagedArtifact.objects.bulk_create(artifacts, batch_size=500)
    run.repositories_seen += len(observations)
    run.tags_seen += sum(len(o.tags) for o in observations)
    run.manifests_fetched += sum(1 + len(a.children) for o in observations for a in o.artifacts)
    run.save(update_fields=["repositories_seen", "tags_seen", "manifests_fetched"])


# --- applying ------------------------------------------------------------------------------------


def apply_listing(registry: Registry, run: SyncRun) -> None:
    """Make the inventory match the complete staged listing, in one transaction."""
    with transaction.atomic():
        seen = set(StagedTag.objects.filter(run=run, tag=EMPTY_MARKER).values_list("repository", flat=True))
        existing = dict(Repository.objects.filter(registry=registry).values_list("name", "pk"))
        gone = [pk for name, pk in existing.items() if name not in seen]
        run.repositories_removed = len(gone)
        run.artifacts_removed += Artifact.objects.filter(repository_id__in=gone).count()
        Repository.objects.filter(pk__in=gone).delete()
        new = [
            Repository(registry=registry, name=name, namespace=Repository.namespace_of(name))
            for name in sorted(seen - existing.keys())
        ]
        Repository.objects.bulk_create(new, batch_size=1000)
        run.repositories_added = len(new)
        unchanged = StagedTag.objects.filter(run=run, tag=EMPTY_MARKER, digest=UNCHANGED)
        Repository.objects.filter(registry=registry, name__in=unchanged.values("repository")).update(
            synced_at=timezone.now()
        )
        changed = sorted(seen - set(unchanged.values_list("repository", flat=True)))
        for batch in _batches(changed, BATCH):
            repositories = Repository.objects.filter(registry=registry, name__in=batch)
            for repository in repositories:
                _apply_repository(repository, run)
        run.save()


def _apply_repository(repository: Repository, run: SyncRun) -> None:
    staged = StagedArtifact.objects.filter(run=run, repository=repository.name)
    for row in staged.iterator():
        if not Artifact.objects.filter(repository=repository, digest=row.digest).exists():
            create_artifact(repository, from_json(row.record))
            run.artifacts_added += 1
    wanted = dict(
        StagedTag.objects.filter(run=run, repository=repository.name)
        .exclude(tag=EMPTY_MARKER)
        .values_list("tag", "digest")
    )
    replace_tags(repository, wanted)
    run.artifacts_removed += prune_untagged(repository)
    refresh_totals(repository)


def create_artifact(
    repository: Repository, record: RemoteArtifact, *, pushed_at: datetime | None = None
) -> Artifact:
    """Store one artifact (and, for an index, its platform manifests) in a repository."""
    parent = Artifact.objects.create(
        repository=repository, **_fields(record), pushed_at=record.pushed_at or pushed_at
    )
    for child in record.children:
        Artifact.objects.update_or_create(
            repository=repository, digest=child.digest, defaults={**_fields(child), "index": parent}
        )
    return parent


def _fields(record: RemoteArtifact) -> dict[str, Any]:
    return {
        "digest": record.digest,
        "media_type": record.media_type,
        "size": record.size,
        "platform": str(record.platform) if record.platform else "",
        "config_digest": record.config_digest,
        "layer_digests": list(record.layer_digests),
        "diff_ids": list(record.diff_ids),
        "labels": record.labels,
        "annotations": record.annotations,
        "base_name": record.annotations.get("org.opencontainers.image.base.name", "")[:500],
        "base_digest": record.annotations.get("org.opencontainers.image.base.digest", "")[:100],
        "provenance": dict(record.provenance),
        "created": record.created,
        "last_pulled_at": record.last_pulled_at,
    }


def replace_tags(repository: Repository, wanted: dict[str, str]) -> None:
    """Point the repository's tags exactly at `wanted` (tag → digest)."""
    artifacts = dict(Artifact.objects.filter(repository=repository).values_list("digest", "pk"))
    current = {tag.name: tag for tag in Tag.objects.filter(repository=repository)}
    Tag.objects.filter(repository=repository).exclude(name__in=wanted).delete()
    now = timezone.now()
    moved = []
    for name, digest in wanted.items():
        if digest not in artifacts:
            continue  # the manifest vanished between listing and reading: the next sync sees it again
        tag = current.get(name)
        if tag is None:
            Tag.objects.create(
                repository=repository, name=name, artifact_id=artifacts[digest], updated_at=now
            )
        elif tag.artifact_id != artifacts[digest]:
            tag.artifact_id, tag.updated_at = artifacts[digest], now
            moved.append(tag)
    Tag.objects.bulk_update(moved, ["artifact", "updated_at"])


def prune_untagged(repository: Repository) -> int:
    """Remove artifacts nothing in the listing reaches: no tag points at them or at their index."""
    kept = Artifact.objects.filter(repository=repository, tags__isnull=False)
    orphans = Artifact.objects.filter(repository=repository, index=None).exclude(pk__in=kept.values("pk"))
    count = orphans.count()
    orphans.delete()
    return count


def refresh_totals(repository: Repository) -> None:
    tagged = Artifact.objects.filter(repository=repository, tags__isnull=False).distinct()
    totals = Artifact.objects.filter(pk__in=tagged.values("pk")).aggregate(
        size=Sum("size"), pushed=Max("pushed_at"), created=Max("created"), pulled=Max("last_pulled_at")
    )
    Repository.objects.filter(pk=repository.pk).update(
        tag_count=Tag.objects.filter(repository=repository).count(),
        artifact_count=Artifact.objects.filter(repository=repository, index=None).count(),
        size=totals["size"] or 0,
        last_pushed_at=totals["pushed"] or totals["created"],
        last_pulled_at=totals["pulled"],
        synced_at=timezone.now(),
    )


# --- grants: the access the registry actually gives -----------------------------------------------


def read_grants(connector: Connector) -> list[RemoteGrant] | None:
    """Every grant the connector reports, checked; None when the connector does not read grants."""
    if not can_read_grants(connector):
        return None
    grants = list(connector.read_grants())
    for grant in grants:
        _check_grant(grant)
    return grants


def _check_grant(grant: RemoteGrant) -> None:
    # A connector bug, not a registry problem; refusing the whole read keeps the previous grants.
    try:
        compile_pattern(grant.scope)
    except InvalidPattern as exc:
        raise PermanentError(
            f"the connector reported a grant with an unusable scope {grant.scope!r}: {exc}"
        ) from None
    if not grant.actions or not grant.actions <= set(Grant.ACTIONS):
        raise PermanentError(f"the connector reported a grant with actions {sorted(grant.actions)!r}")


def replace_grants(registry: Registry, run: SyncRun, grants: list[RemoteGrant]) -> None:
    """Replace the registry's grants with a complete read, linking principals the directory knows."""
    principals = [g.principal for g in grants]
    groups = _unique_by_external_id(DirectoryGroup.objects.all(), principals, "group")
    users = _unique_by_external_id(User.objects.all(), principals, "user")
    named = _by_username(registry, principals)
    # An admin's link stands in where the registry cannot name a directory group (a Docker Hub team).
    linked = {
        (kind, native): group_id
        for kind, native, group_id in PrincipalLink.objects.filter(registry=registry).values_list(
            "principal_kind", "principal_id", "group_id"
        )
    }
    now = timezone.now()
    rows = [
        Grant(
            registry=registry,
            principal_kind=g.principal.kind,
            principal_id=g.principal.id[:500],
            principal_name=g.principal.name[:255],
            group_id=(groups.get(g.principal.directory_id) if g.principal.kind == "group" else None)
            or linked.get((str(g.principal.kind), g.principal.id)),
            user_id=(users.get(g.principal.directory_id) or named.get(g.principal.id))
            if g.principal.kind == "user"
            else None,
            scope=g.scope,
            **{f"can_{action}": action in g.actions for action in Grant.ACTIONS},
            source=g.source[:500],
            observed_at=now,
            run=run,
        )
        for g in grants
    ]
    with transaction.atomic():
        Grant.objects.filter(registry=registry).delete()
        Grant.objects.bulk_create(rows, batch_size=1000)
        run.grants_seen = len(rows)
        run.save(update_fields=["grants_seen"])


def _by_username(registry: Registry, principals: Iterable[Principal]) -> dict[str, int]:
    """Registry username → person, where the registry's admin says its usernames are the directory's
    (Quay names people by username only; link_users_by_username). Customs usernames are unique."""
    if not registry.config.get("link_users_by_username"):
        return {}
    wanted = {p.id for p in principals if p.kind == "user" and not p.directory_id}
    return dict(User.objects.filter(username__in=wanted).values_list("username", "pk")) if wanted else {}


def _unique_by_external_id(
    rows: QuerySet[DirectoryGroup] | QuerySet[User], principals: Iterable[Principal], kind: str
) -> dict[str, int]:
    """Directory id → row pk, for ids that name exactly one row (two directories may reuse an id)."""
    wanted = {p.directory_id for p in principals if p.kind == kind and p.directory_id}
    if not wanted:
        return {}
    found: dict[str, list[int]] = {}
    for pk, external_id in rows.filter(external_id__in=wanted).values_list("pk", "external_id"):
        found.setdefault(external_id, []).append(pk)
    return {external_id: pks[0] for external_id, pks in found.items() if len(pks) == 1}


# --- credentials: every secret that opens the registry ---------------------------------------------


def read_credentials(connector: Connector) -> list[RemoteCredential] | None:
    """Every credential the connector reports; None when the connector does not read credentials."""
    if not can_read_credentials(connector):
        return None
    credentials = list(connector.read_credentials())
    ids = [credential.id for credential in credentials]
    if len(set(ids)) != len(ids):
        # A connector bug; refusing the read keeps the previous rows rather than merging two credentials.
        raise PermanentError("the connector reported two credentials with the same id")
    for credential in credentials:
        _check_credential_actions(credential)
    return credentials


def _check_credential_actions(credential: RemoteCredential) -> None:
    # A connector bug too: hygiene compares these words, and a naive time cannot be placed.
    named = credential.actions | set(credential.actions_seen)
    if not named <= set(Credential.ACTIONS):
        raise PermanentError(
            f"the connector reported credential {credential.id!r} with actions {sorted(named)!r}"
        )
    if any(moment.tzinfo is None for moment in credential.actions_seen.values()):
        raise PermanentError(f"the connector reported credential {credential.id!r} used at a naive time")


def apply_credentials(registry: Registry, run: SyncRun, credentials: list[RemoteCredential]) -> None:
    """Update the registry's credentials from a complete read: new ones added, changed ones updated,
    missing ones marked gone (kept, for the reports that must say a key existed and when it went)."""
    principals = [c.owner for c in credentials if c.owner] + [
        c.created_by for c in credentials if c.created_by
    ]
    people = _unique_by_external_id(User.objects.all(), principals, "user")
    now = timezone.now()
    existing = {row.native_id: row for row in Credential.objects.filter(registry=registry)}
    changed: list[Credential] = []
    for credential in credentials:
        row = existing.pop(credential.id, None) or Credential(
            registry=registry, native_id=credential.id[:500]
        )
        _copy_credential(row, credential, people)
        row.observed_at, row.gone_at, row.run = now, None, run
        changed.append(row)
    known = [row for row in changed if row.pk is not None]
    Credential.objects.bulk_update(known, Credential.SYNCED_FIELDS, batch_size=500)
    Credential.objects.bulk_create([row for row in changed if row.pk is None], batch_size=500)
    Credential.objects.filter(pk__in=[row.pk for row in existing.values()], gone_at=None).update(gone_at=now)
    run.credentials_seen = len(credentials)
    run.save(update_fields=["credentials_seen"])


def _copy_credential(row: Credential, credential: RemoteCredential, people: dict[str, int]) -> None:
    owner, creator = credential.owner, credential.created_by
    row.kind, row.name, row.enabled = credential.kind, credential.name[:255], credential.enabled
    row.owner_kind = owner.kind if owner else ""
    row.owner_id, row.owner_name = (owner.id[:500], owner.name[:255]) if owner else ("", "")
    row.owner_user_id = people.get(owner.directory_id) if owner and owner.kind == "user" else None
    row.created_by_id, row.created_by_name = (creator.id[:500], creator.name[:255]) if creator else ("", "")
    row.created_by_user_id = people.get(creator.directory_id) if creator and creator.kind == "user" else None
    row.created_at, row.expires_at, row.expiry_known = (
        credential.created_at,
        credential.expires_at,
        credential.expiry_known,
    )
    row.last_used_at, row.usage_known = credential.last_used_at, credential.usage_known
    row.last_used_source = credential.last_used_source[:100]
    row.scopes, row.shared_admin = list(credential.scopes), credential.shared_admin
    row.actions = sorted(credential.actions)
    row.actions_seen = {
        action: moment.astimezone(UTC).isoformat()
        for action, moment in sorted(credential.actions_seen.items())
    }
    row.actions_seen_source = credential.actions_seen_source[:100]


# --- posture: the registry's own security settings --------------------------------------------------


def read_posture(connector: Connector, run: SyncRun) -> list[PostureFact] | None:
    """Every posture fact the connector reports, tag immutability read for the production repositories
    of this run's listing; None when the connector does not read posture."""
    if not can_read_posture(connector):
        return None
    listed = StagedTag.objects.filter(run=run, tag=EMPTY_MARKER).values_list("repository", flat=True)
    production = posture.production_repositories(listed)
    return list(connector.read_posture(production))


# --- regions and replication: what the registry says it copies where -------------------------------


def read_replication(connector: Connector) -> list[RemoteReplication] | None:
    """Every region and replication link the connector reports; None when it does not read them."""
    if not can_read_replication(connector):
        return None
    links = list(connector.read_replication())
    ids = [link.id for link in links]
    if len(set(ids)) != len(ids):
        # A connector bug; refusing the read keeps the previous rows rather than storing one of two.
        raise PermanentError("the connector reported two replication links with the same id")
    return links


def replace_replication(registry: Registry, run: SyncRun, links: list[RemoteReplication]) -> None:
    """Replace the registry's replication links with a complete read."""
    now = timezone.now()
    rows = [
        ReplicationLink(
            registry=registry,
            native_id=link.id[:500],
            name=link.name[:255],
            kind=link.kind,
            location=link.location[:255],
            url=link.url[:500],
            direction=link.direction,
            enabled=link.enabled,
            status=link.status,
            status_text=link.status_text[:1000],
            last_started_at=link.last_started_at,
            last_finished_at=link.last_finished_at,
            next_run_at=link.next_run_at,
            filters=list(link.filters),
            trigger=link.trigger[:255],
            notes=link.notes[:1000],
            observed_at=now,
            run=run,
        )
        for link in links
    ]
    with transaction.atomic():
        ReplicationLink.objects.filter(registry=registry).delete()
        ReplicationLink.objects.bulk_create(rows, batch_size=1000)
        run.replication_seen = len(rows)
        run.save(update_fields=["replication_seen"])


# --- replicas: which regions hold which artifacts ----------------------------------------------------


def replica_connector(replica: Replica) -> Connector:
    registry = replica.registry
    return connectors.build(registry.kind, {**registry.config, "url": replica.endpoint}, registry.secrets())


def sync_replica(replica: Replica, *, trigger: str = SyncRun.Trigger.SCHEDULE) -> SyncRun:
    """Record which of the registry's artifacts this replica holds (same repository and digest).

    Only digests are read (tag lists and HEADs): the primary's inventory already knows the content.
    Presence is replaced only after the replica's listing is complete.
    """
    run = SyncRun.objects.create(registry=replica.registry, replica=replica, trigger=trigger)
    waits = _waits(run, f"{replica.registry.name} ({replica.region})", time.sleep)
    try:
        with http.waiting_out_rate_limits(waits):
            held = _replica_digests(replica_connector(replica), replica.registry.sync_concurrency, waits)
        run.repositories_seen, run.tags_seen = len(held), sum(len(d) for d in held.values())
        _apply_presence(replica, held)
        _finish(run, SyncRun.Status.SUCCEEDED)
    except ConnectorError as exc:
        _finish(run, SyncRun.Status.FAILED, error=str(exc))
    except BaseException:
        # As in sync_inventory: a run left "running" keeps the registry page polling for ever.
        _finish(run, SyncRun.Status.FAILED, error="stopped by an internal error; see the worker log")
        raise
    return run


def _replica_digests(
    connector: Connector, concurrency: int, waits: http.RateLimitWaits
) -> dict[str, set[str]]:
    names = [repository.name for repository in connector.repositories()]

    def digests(name: str) -> set[str]:
        with http.waiting_out_rate_limits(waits):  # entered in each reading thread, as in _observe
            return {tag.digest for tag in connector.tags(name)}

    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        return dict(zip(names, pool.map(digests, names), strict=True))


def _apply_presence(replica: Replica, held: dict[str, set[str]]) -> None:
    now = timezone.now()
    with transaction.atomic():
        ArtifactPresence.objects.filter(replica=replica).delete()
        present: list[ArtifactPresence] = []
        for batch in _batches(sorted(held), BATCH):
            wanted = {(name, digest) for name in batch for digest in held[name]}
            rows = Artifact.objects.filter(repository__registry=replica.registry, repository__name__in=batch)
            for pk, name, digest, index_digest in rows.values_list(
                "pk", "repository__name", "digest", "index__digest"
            ):
                # A platform manifest is held where its index is: a replica copies indexes whole.
                if (name, digest) in wanted or (index_digest and (name, index_digest) in wanted):
                    present.append(ArtifactPresence(artifact_id=pk, replica=replica, seen_at=now))
        ArtifactPresence.objects.bulk_create(present, batch_size=1000)
        Replica.objects.filter(pk=replica.pk).update(last_sync_at=now)


# --- one event at a time (registry notifications) ---------------------------------------------------


def apply_event(registry: Registry, event: WebhookEvent, connector: Connector | None = None) -> str:
    """Bring the inventory up to date with one notification, without a full sync. Returns what changed."""
    with transaction.atomic():
        if event.action == "push":
            return _apply_push(registry, event, connector or connector_for(registry))
        if event.action == "delete":
            return _apply_delete(registry, event)
        if event.action == "pull":
            pulled = Artifact.objects.filter(
                repository__registry=registry, repository__name=event.repository, digest=event.digest
            )
            pulled.update(last_pulled_at=event.occurred_at or timezone.now())
            Repository.objects.filter(registry=registry, name=event.repository).update(
                last_pulled_at=event.occurred_at or timezone.now()
            )
            return "pull recorded"
    return f"ignored {event.action}"


def _apply_push(registry: Registry, event: WebhookEvent, connector: Connector) -> str:
    repository, _ = Repository.objects.get_or_create(
        registry=registry,
        name=event.repository,
        defaults={"namespace": Repository.namespace_of(event.repository)},
    )
    # Docker Hub and Quay notifications name the tag but not the digest: ask the registry, and keep
    # the answer on the event, so its page shows what the tag named when it arrived.
    digest = event.digest
    if not digest:
        digest = connector.resolve(event.repository, event.tag)
        WebhookEvent.objects.filter(pk=event.pk).update(digest=digest)
    artifact = Artifact.objects.filter(repository=repository, digest=digest).first()
    outcome = "known"
    if artifact is None:
        artifact = create_artifact(
            repository, connector.artifact(event.repository, digest), pushed_at=event.occurred_at
        )
        outcome = "added"
    elif event.tag:
        Artifact.objects.filter(pk=artifact.pk).update(pushed_at=event.occurred_at or timezone.now())
    if event.tag:
        Tag.objects.update_or_create(
            repository=repository,
            name=event.tag,
            defaults={"artifact": artifact, "updated_at": timezone.now()},
        )
    refresh_totals(repository)
    return f"{outcome} {digest[:19]}" + (f" as {event.tag}" if event.tag else "")


def _apply_delete(registry: Registry, event: WebhookEvent) -> str:
    repository = Repository.objects.filter(registry=registry, name=event.repository).first()
    if repository is None:
        return "nothing to delete"
    if event.tag:
        removed, _ = Tag.objects.filter(repository=repository, name=event.tag).delete()
    else:
        removed, _ = Artifact.objects.filter(repository=repository, digest=event.digest).delete()
    refresh_totals(repository)
    return f"removed {removed} rows"


# --- records as JSON, for staging ------------------------------------------------------------------


def to_json(record: RemoteArtifact) -> dict[str, Any]:
    data = dataclasses.asdict(record)
    for key in ("created", "pushed_at", "last_pulled_at"):
        data[key] = data[key].isoformat() if data[key] else None
    data["children"] = [to_json(child) for child in record.children]
    return data


def from_json(data: dict[str, Any]) -> RemoteArtifact:
    values = dict(data)
    for key in ("created", "pushed_at", "last_pulled_at"):
        values[key] = datetime.fromisoformat(values[key]) if values[key] else None
    values["platform"] = Platform(**values["platform"]) if values["platform"] else None
    values["children"] = tuple(from_json(child) for child in values["children"])
    for key in ("layer_digests", "diff_ids"):
        values[key] = tuple(values[key])
    return RemoteArtifact(**values)
