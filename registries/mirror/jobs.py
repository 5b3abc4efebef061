"""The mirror job: keep each regional mirror of a catalog entry holding every tag the entry allows.

For one entry a run reads the upstream's tag list (every page), keeps the tags its patterns allow
(and, when it pins digests, only tags naming a pinned one), and for each tag:

1. resolves the tag upstream to a digest (a HEAD),
2. looks at what each mirror's tag names, and records present, missing or stale (the upstream tag
   moved on since the mirror got it), so a long copy shows where things stand while it runs,
3. copies that digest into every mirror that lacks it, in one copy_image call, so the upstream is
   read once however many regions there are; then records present, or failed with the reason.

Trouble with one mirror (a region down, a refused password) fails that mirror's tags alone. Trouble
reading the upstream's tag list fails the run, and leaves every state as it was: what the mirrors
hold has not changed. A dry run stops after step 2.

Where a mirror is and who Customs is there comes from its Registry (`registry_endpoint`); the
upstream's credentials from the entry's MirrorSource, else from the connected registry at that
host, else none (`upstream_endpoint`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from fnmatch import fnmatchcase
from typing import Any
from urllib.parse import urljoin

from django.db import IntegrityError, transaction
from django.db.models import OuterRef, Q, Subquery
from django.utils import timezone
from pydantic import SecretStr

from portal import audit
from portal.audit import AuditAction
from portal.http import OutboundError
from registries import connectors, sync
from registries.connectors.acr import AcrConfig
from registries.connectors.distribution import DistributionConfig
from registries.connectors.dockerhub import DockerHubConfig
from registries.connectors.errors import ConfigError, json_object
from registries.connectors.harbor import HarborConfig
from registries.connectors.quay import QuayConfig
from registries.mirror import status
from registries.mirror.client import RepositoryClient
from registries.mirror.copy import DestinationResult, Endpoint, copy_image
from registries.models import BaseImage, BaseImageMirror, MirrorRun, MirrorSource, MirrorState, Registry
from registries.policy.references import DEFAULT_DOMAIN, endpoint_host, parse, registry_host

Progress = Callable[[str], None]

TAGS_PAGE = 1000  # tags/list page size; distribution refuses n > 1000
DOCKER_HUB_REGISTRY = "https://registry-1.docker.io"
# Docker itself talks plain HTTP to these without being told; anything else is HTTPS.
LOOPBACK_HOSTS = ("localhost", "127.", "[::1]")
# Tags a signing tool or the referrers fallback writes (`sha256-<hex>`, cosign's `.sig`/`.att`):
# the copy brings them along with their subject, they are not images of their own.
_REFERRER_TAG = re.compile(r"sha(256|512)-[0-9a-f]{32,}(\.\w+)?")


class AlreadyMirroring(Exception):
    """Another run holds this entry; it covers what this one would do."""


class UnsupportedRegistry(ConfigError):
    """Customs cannot sign in to this kind of registry's /v2/ API for mirroring."""


# --- Who Customs is where: endpoints for connected registries and upstreams ---------------------------


def _secret(value: SecretStr | None) -> str:
    return value.get_secret_value() if value else ""


def _distribution_login(config: DistributionConfig) -> tuple[str, str, str]:
    return config.url, config.username or "", _secret(config.password)


def _harbor_login(config: HarborConfig) -> tuple[str, str, str]:
    return config.url, config.username, _secret(config.password)


def _dockerhub_login(config: DockerHubConfig) -> tuple[str, str, str]:
    return config.registry_url, config.username, _secret(config.token)


def _quay_login(config: QuayConfig) -> tuple[str, str, str]:
    # The robot the connector reads /v2/ with; it needs write on the mirror repositories too.
    return config.registry_url or config.url, config.registry_username, _secret(config.registry_password)


def _acr_login(config: AcrConfig) -> tuple[str, str, str]:
    # ACR's token endpoint takes a service principal (app id and secret) or an ACR token as Basic
    # credentials, which is what `docker login` sends; the copy client does the same.
    if config.service_principal:
        return config.url, config.client_id or "", _secret(config.client_secret)
    return config.url, config.username or "", _secret(config.password)


# By kind: (registry URL, username, password) from the kind's validated config. ECR (a 12-hour
# password from GetAuthorizationToken) and Artifact Registry (project-prefixed paths, a service
# account key) are not here yet: their mirrors fail with UnsupportedRegistry's reason.
REGISTRY_LOGINS: dict[str, Callable[[Any], tuple[str, str, str]]] = {
    "acr": _acr_login,
    "distribution": _distribution_login,
    "dockerhub": _dockerhub_login,
    "harbor": _harbor_login,
    "quay": _quay_login,
}


def registry_endpoint(registry: Registry, repository: str, *, mount_from: Iterable[str] = ()) -> Endpoint:
    """The /v2/ API of a connected registry, for `repository`, signed in as its connector is."""
    login = REGISTRY_LOGINS.get(registry.kind)
    if login is None:
        kind = (
            connectors.CONNECTORS[registry.kind].label
            if registry.kind in connectors.CONNECTORS
            else registry.kind
        )
        raise UnsupportedRegistry(f"{registry.name}: Customs cannot mirror into {kind} registries yet")
    config = sync.registry_config(registry)
    url, username, password = login(config)
    # As the connector reads it: only distribution registries may skip TLS verification.
    verify_tls = config.verify_tls if isinstance(config, DistributionConfig) else True
    return Endpoint(url, repository, username, password, mount_from=tuple(mount_from), verify_tls=verify_tls)


def registry_url(host: str) -> str:
    """The /v2/ URL of a registry a reference names: Docker Hub's, plain HTTP on loopback, else HTTPS."""
    if registry_host(host) == DEFAULT_DOMAIN:
        return DOCKER_HUB_REGISTRY
    return f"http://{host}" if host.startswith(LOOPBACK_HOSTS) else f"https://{host}"


def upstream_endpoint(entry: BaseImage) -> Endpoint:
    """Where the entry is read, and as whom: its own credentials, a connected registry's, or anonymous."""
    reference = parse(entry.name)
    source = MirrorSource.objects.filter(base_image=entry).first()
    url = (source.endpoint if source else "") or registry_url(reference.domain)
    if source and source.username:
        return Endpoint(url, reference.path, source.username, source.password)
    if not (source and source.endpoint) and (connected := _connected_registry(reference.domain)):
        return registry_endpoint(connected, reference.path)
    return Endpoint(url, reference.path)


def _connected_registry(host: str) -> Registry | None:
    """A connected registry serving `host` whose credentials Customs can use, first by name."""
    for registry in Registry.objects.filter(kind__in=REGISTRY_LOGINS).order_by("name"):
        try:
            url = registry_endpoint(registry, "").url
        except ConfigError:
            continue  # a registry whose stored config no longer validates lends no credentials
        if endpoint_host(url) == host.lower():
            return registry
    return None


def save_mirror_source(
    entry: BaseImage, *, actor: Any, endpoint: str = "", username: str = "", password: str | None = None
) -> MirrorSource:
    """Set how an entry is read upstream; `password` None keeps the stored one. Audited, secret left out."""
    source = MirrorSource.objects.filter(base_image=entry).first() or MirrorSource(base_image=entry)
    source.endpoint, source.username = endpoint.strip().rstrip("/"), username.strip()
    if password is not None:
        source.set_password(password)
    source.updated_at = timezone.now()
    with transaction.atomic():
        source.save()
        audit.record(
            actor,
            AuditAction.BASE_IMAGE_UPDATED,
            target=entry,
            mirror_source={"endpoint": source.endpoint, "username": source.username},
            secrets_changed=["password"] if password is not None else [],
        )
    return source


# --- The plan: what a run covers -------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """One mirror of the entry: where it is (or why Customs cannot reach it)."""

    mirror: BaseImageMirror
    region: str
    endpoint: Endpoint | None
    problem: str = ""

    @property
    def name(self) -> str:
        return self.region or self.mirror.registry.name


def targets(entry: BaseImage, *, region: str = "") -> list[Target]:
    """The entry's mirrors (only `region`'s, when given), each with its endpoint or why it has none."""
    mirrors = [
        m for m in entry.mirrors.select_related("registry") if not region or m.serving_region == region
    ]
    chosen = []
    for mirror in mirrors:
        # Other catalog entries mirrored into the same registry often share base layers: mount from them.
        neighbours = BaseImageMirror.objects.filter(registry=mirror.registry).exclude(pk=mirror.pk)
        try:
            endpoint = registry_endpoint(
                mirror.registry, mirror.repository, mount_from=neighbours.values_list("repository", flat=True)
            )
        except ConfigError as exc:
            chosen.append(Target(mirror, mirror.serving_region, None, str(exc)))
            continue
        chosen.append(Target(mirror, mirror.serving_region, endpoint))
    return chosen


def allowed_tags(entry: BaseImage, listed: Iterable[str]) -> list[str]:
    """The listed tags the entry's patterns allow, sorted; none without patterns (see mirror_entry)."""
    return sorted(
        tag
        for tag in set(listed)
        if not _REFERRER_TAG.fullmatch(tag) and any(fnmatchcase(tag, pattern) for pattern in entry.tags)
    )


def upstream_tags(client: RepositoryClient) -> list[str]:
    """Every tag of the repository, following the registry's `Link: <…>; rel="next"` pages."""
    tags: list[str] = []
    url: str | None = client.path(f"tags/list?n={TAGS_PAGE}")
    while url:
        response = client.request("GET", url, expect=(200,))
        with response:
            body = json_object(response)
        tags += [tag for tag in body.get("tags") or [] if isinstance(tag, str)]  # `null` when there are none
        following = response.links.get("next", {}).get("url")
        url = urljoin(client.base_url + "/", following) if following else None
    return tags


# --- Running it ------------------------------------------------------------------------------------


@dataclass
class Outcome:
    """What one entry's run left: its run row (None when another run held the entry) and its failures."""

    entry: BaseImage
    run: MirrorRun | None
    failures: list[str] = field(default_factory=list)  # "python:3.12 in eu-west: connection refused"
    note: str = ""  # why nothing was done, when nothing was


def claim(entry: BaseImage, *, region: str, trigger: str, dry_run: bool) -> MirrorRun:
    """Start a run of the entry, or raise AlreadyMirroring."""
    try:
        with transaction.atomic():
            return MirrorRun.objects.create(base_image=entry, region=region, trigger=trigger, dry_run=dry_run)
    except IntegrityError:
        raise AlreadyMirroring(f"{entry.name} is being mirrored by another run") from None


def free_stuck_runs(*, older_than: timedelta) -> int:
    """Close runs whose worker died mid-way, so their entries can be mirrored again."""
    cutoff = timezone.now() - older_than
    return (
        MirrorRun.objects.running()
        .filter(started_at__lt=cutoff)
        .update(
            status=MirrorRun.Status.FAILED,
            finished_at=timezone.now(),
            error="the worker stopped before finishing",
        )
    )


def mirror_entry(
    entry: BaseImage,
    *,
    region: str = "",
    trigger: str = MirrorRun.Trigger.SCHEDULE,
    dry_run: bool = False,
    progress: Progress | None = None,
) -> Outcome:
    """One run over one entry's mirrors; see the module's docstring. Raises AlreadyMirroring."""
    say = progress or (lambda message: None)
    if entry.status == BaseImage.Status.BANNED:
        return Outcome(entry, None, note="banned: its mirrors are left as they are")
    if not entry.tags:
        # "Any tag" is a policy answer, not a copy list: all of docker.io/library/python is thousands.
        return Outcome(
            entry, None, note="no tag patterns: give the entry patterns to choose what its mirrors keep"
        )
    chosen = targets(entry, region=region)
    if not chosen:
        return Outcome(entry, None, note=f"no mirror{f' in {region}' if region else ''}")
    run = claim(entry, region=region, trigger=trigger, dry_run=dry_run)
    outcome = Outcome(entry, run)
    try:
        _mirror(entry, run, chosen, outcome, say)
    except OutboundError as exc:
        run.error = f"upstream {entry.name}: {exc}"
        outcome.failures.append(run.error)
        say(run.error)
    except BaseException:
        # A bug or a lost database: the run must not read as succeeded. The exception goes on up.
        run.error = "stopped by an unexpected error; the worker's log has it"
        outcome.failures.append(run.error)
        raise
    finally:
        run.status = MirrorRun.Status.FAILED if outcome.failures else MirrorRun.Status.SUCCEEDED
        run.failures = len(outcome.failures)
        run.finished_at = timezone.now()
        run.save()
    return outcome


def _mirror(entry: BaseImage, run: MirrorRun, chosen: list[Target], outcome: Outcome, say: Progress) -> None:
    source = upstream_endpoint(entry)
    upstream = RepositoryClient(source, actions="pull")
    listed = upstream_tags(upstream)
    tags = allowed_tags(entry, listed)
    run.tags_seen = len(tags)
    where = ", ".join(target.name for target in chosen)
    say(
        f"{entry.name}: {len(tags)} of {len(listed)} upstream tags allowed "
        f"({', '.join(entry.tags)}); mirrors: {where}"
    )
    clients = {
        target.mirror.pk: RepositoryClient(target.endpoint, actions="pull")
        for target in chosen
        if target.endpoint
    }
    kept: set[str] = set()
    for tag in tags:
        if _mirror_tag(entry, run, chosen, clients, upstream, tag, outcome, say):
            kept.add(tag)
    # The listing was complete: states of tags no longer upstream (or no longer allowed) go.
    status.forget_other_tags([target.mirror for target in chosen], kept)


def _mirror_tag(
    entry: BaseImage,
    run: MirrorRun,
    chosen: list[Target],
    clients: dict[int, RepositoryClient],
    upstream: RepositoryClient,
    tag: str,
    outcome: Outcome,
    say: Progress,
) -> bool:
    """Bring one tag into every mirror; False when the tag is not one to keep (gone, or not pinned)."""
    # A HEAD, through the client that listed the tags: its token is reused, and Docker Hub does not
    # count a HEAD as a pull.
    digest = upstream.manifest_digest(tag)
    if digest is None:
        say(f"  {tag}: gone upstream since the listing; skipped")
        return False
    if entry.digests and digest not in entry.digests:
        say(f"  {tag}: {digest} is not a pinned digest; not mirrored")
        return False
    needing = _observe(run, chosen, clients, tag, digest, outcome, say)
    if needing and not run.dry_run:
        _copy(entry, run, needing, upstream, tag, digest, outcome, say)
    return True


def _observe(
    run: MirrorRun,
    chosen: list[Target],
    clients: dict[int, RepositoryClient],
    tag: str,
    digest: str,
    outcome: Outcome,
    say: Progress,
) -> list[Target]:
    """Record what each mirror's tag names now; returns the mirrors that need a copy."""
    needing, seen = [], []
    for target in chosen:
        try:
            if target.endpoint is None:
                raise ConfigError(target.problem)
            held = clients[target.mirror.pk].manifest_digest(tag)
        except OutboundError as exc:
            state = status.record_failure(
                target.mirror, tag, upstream_digest=digest, reason=str(exc), run=run
            )
            outcome.failures.append(f"{run.base_image.name}:{tag} in {target.name}: {state.reason}")
            seen.append(f"{target.name} failed ({state.reason})")
            continue
        state = status.observe(target.mirror, tag, upstream_digest=digest, held=held, run=run)
        seen.append(f"{target.name} {state.state}")
        if state.state != MirrorState.State.PRESENT:
            needing.append(target)
    say(f"  {tag} {digest[:19]}: {', '.join(seen)}")
    return needing


def _copy(
    entry: BaseImage,
    run: MirrorRun,
    needing: list[Target],
    upstream: RepositoryClient,
    tag: str,
    digest: str,
    outcome: Outcome,
    say: Progress,
) -> None:
    endpoints = [target.endpoint for target in needing if target.endpoint is not None]
    try:
        # The listing's client, token and all: each tag copied does not sign in upstream again.
        results = copy_image(
            upstream.endpoint,
            digest,
            endpoints,
            tag=tag,
            progress=lambda line: say(f"    {line}"),
            reader=upstream,
        )
    except OutboundError as exc:
        # Upstream trouble with this tag (a blob gone, a broken transfer): every region misses it alike.
        results = [DestinationResult(endpoint, error=f"upstream: {exc}") for endpoint in endpoints]
    for target, result in zip(needing, results, strict=True):
        _count(run, result)
        state = status.record_copy(target.mirror, tag, upstream_digest=digest, result=result, run=run)
        if state.state == MirrorState.State.PRESENT:
            run.copies += 1
            say(f"  {tag} → {target.name}: present ({_sent(result)})")
        else:
            outcome.failures.append(f"{entry.name}:{tag} in {target.name}: {state.reason}")
            say(f"  {tag} → {target.name}: failed: {state.reason}")


def _count(run: MirrorRun, result: DestinationResult) -> None:
    run.blobs_copied += result.blobs_copied
    run.blobs_skipped += result.blobs_skipped
    run.blobs_mounted += result.blobs_mounted
    run.bytes_sent += result.bytes_sent


def _sent(result: DestinationResult) -> str:
    return (
        f"{result.blobs_copied} blobs copied, {result.blobs_skipped} there, {result.blobs_mounted} mounted, "
        f"{result.bytes_sent / 2**20:.1f} MiB sent"
    )


def entries_to_mirror(name: str = "") -> list[BaseImage]:
    """Catalog entries with at least one mirror (only `name`, when given), by name."""
    entries = BaseImage.objects.filter(pk__in=BaseImageMirror.objects.values("base_image")).order_by("name")
    return list(entries.filter(name=name) if name else entries)


def regions() -> list[str]:
    """Every region some mirror serves."""
    pairs = BaseImageMirror.objects.order_by().values_list("region", "registry__region").distinct()
    return sorted({region or fallback for region, fallback in pairs if region or fallback})


def mirror_catalog(
    entries: Iterable[BaseImage],
    *,
    region: str = "",
    trigger: str = MirrorRun.Trigger.SCHEDULE,
    dry_run: bool = False,
    progress: Progress | None = None,
) -> list[Outcome]:
    """Run each entry in turn; an entry another run holds is reported, not waited for."""
    say = progress or (lambda message: None)
    outcomes = []
    for entry in entries:
        try:
            outcome = mirror_entry(entry, region=region, trigger=trigger, dry_run=dry_run, progress=say)
        except AlreadyMirroring as exc:
            outcome = Outcome(entry, None, note=str(exc))
        if outcome.note:
            say(f"{entry.name}: {outcome.note}")
        outcomes.append(outcome)
    return outcomes


def due_entries(*, interval: timedelta) -> list[BaseImage]:
    """Entries with mirrors whose last run started longer than `interval` ago (or never ran), none running."""
    cutoff = timezone.now() - interval
    last = (
        MirrorRun.objects.filter(base_image=OuterRef("pk")).order_by("-started_at").values("started_at")[:1]
    )
    return list(
        BaseImage.objects.filter(pk__in=BaseImageMirror.objects.values("base_image"))
        .exclude(status=BaseImage.Status.BANNED)
        .exclude(pk__in=MirrorRun.objects.running().values("base_image"))
        .annotate(last_started=Subquery(last))
        .filter(Q(last_started=None) | Q(last_started__lt=cutoff))
        .order_by("name")
    )
