"""Changes to registries: every door (pages, API, commands, the demo) goes through these."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts import tokens
from accounts.models import DirectoryGroup, User
from portal import audit
from portal.audit import AuditAction
from portal.errors import RequestRejected
from registries import connectors, tasks
from registries.connectors.base import PermissionCheck, can_check_permissions
from registries.connectors.errors import ConnectorError
from registries.models import AccessRule, PrincipalLink, Registry, Replica, SyncRun
from registries.patterns import InvalidPattern, Pattern, compile_pattern
from registries.sync import connector_for

WEBHOOK_PREFIX = "crw_"


@dataclass(frozen=True)
class ConnectionResult:
    ok: bool
    reason: str
    # One line per permission the connector needs, when it can check them one by one.
    steps: tuple[PermissionCheck, ...] = ()


def save_registry(
    registry: Registry, *, actor: User | None, public: dict[str, Any], secrets: dict[str, str] | None = None
) -> Registry:
    """Create or update a registry after its kind's config class accepts it. Secrets keep their
    stored value when `secrets` leaves them out, so an edit form never has to show them."""
    typed = {k: v for k, v in (secrets or {}).items() if v}
    _check_secrets_follow_endpoint(registry, typed)
    merged_secrets = registry.secrets() | typed
    try:
        config = connectors.config_for(registry.kind, {**public, "url": registry.endpoint}, merged_secrets)
    except ConnectorError as exc:
        raise RequestRejected(str(exc)) from None
    creating = registry.pk is None
    registry.config = {k: v for k, v in config.public().items() if k != "url"}
    registry.set_secrets(config.secrets())
    with transaction.atomic():
        registry.save()
        action = AuditAction.REGISTRY_CREATED if creating else AuditAction.REGISTRY_UPDATED
        audit.record(
            actor,
            action,
            target=registry,
            kind=registry.kind,
            endpoint=registry.endpoint,
            config=registry.config,
            secrets_changed=sorted((secrets or {}).keys()),
        )
    return registry


def _check_secrets_follow_endpoint(registry: Registry, typed: dict[str, str]) -> None:
    """Stored secrets stay with the endpoint they were typed for. Otherwise an admin could point a
    registry at a host of their own and read its password off the wire: secrets are write-only."""
    if registry.pk is None:
        return
    stored_endpoint = Registry.objects.filter(pk=registry.pk).values_list("endpoint", flat=True).first()
    missing = sorted(set(registry.secrets()) - set(typed))
    if stored_endpoint is not None and stored_endpoint != registry.endpoint and missing:
        raise RequestRejected(f"A new endpoint needs the secrets typed again: {', '.join(missing)}.")


def check_connection(registry: Registry) -> ConnectionResult:
    """Ask the registry whether it answers with these settings, in words a person can act on."""
    try:
        connector = connector_for(registry)
        connector.check()
        steps = tuple(connector.check_permissions()) if can_check_permissions(connector) else ()
    except ConnectorError as exc:
        return ConnectionResult(ok=False, reason=str(exc))
    return ConnectionResult(ok=not _missing(steps, required=True), reason=_verdict(steps), steps=steps)


def _missing(steps: Sequence[PermissionCheck], *, required: bool) -> list[PermissionCheck]:
    return [step for step in steps if step.missing and step.required is required]


def _verdict(steps: Sequence[PermissionCheck]) -> str:
    """One line: what is missing for reading, then what only plans and offboarding would miss."""
    required = [step for step in steps if step.required]
    if missing := _missing(steps, required=True):
        return (
            f"the registry answered, but {len(missing)} of {len(required)} required permissions are missing"
        )
    said = "the registry answered with these credentials"
    if optional := _missing(steps, required=False):
        said += f"; {len(optional)} write permissions are missing (plans and offboarding cannot write)"
    if untried := [step for step in steps if not step.tried]:
        said += f"; {len(untried)} write permissions could not be tried without changing anything"
    return said


def rotate_webhook_secret(registry: Registry, *, actor: User | None) -> str:
    """A new secret for the registry's notifications endpoint; shown once, stored as a digest."""
    raw, _, digest = tokens.mint(prefix=WEBHOOK_PREFIX)
    with transaction.atomic():
        Registry.objects.filter(pk=registry.pk).update(webhook_secret_digest=digest)
        registry.webhook_secret_digest = digest
        audit.record(actor, AuditAction.REGISTRY_WEBHOOK_SECRET_ROTATED, target=registry)
    return raw


def delete_registry(registry: Registry, *, actor: User | None) -> None:
    """Remove a registry and, by cascade, its replicas, inventory, runs and events."""
    with transaction.atomic():
        # Recorded first: the target's label must be read while the row still exists.
        audit.record(actor, AuditAction.REGISTRY_DELETED, target=registry, endpoint=registry.endpoint)
        registry.delete()


def request_sync(registry: Registry, *, actor: User | None) -> None:
    """Queue a manual sync. A sync already running makes the queued one return at once."""
    with transaction.atomic():
        audit.record(actor, AuditAction.REGISTRY_SYNC_REQUESTED, target=registry)
        registry_id = registry.pk
        transaction.on_commit(lambda: tasks.sync_registry.delay(registry_id, SyncRun.Trigger.MANUAL))


def save_replica(registry: Registry, *, actor: User | None, region: str, endpoint: str) -> Replica:
    """Add a regional copy of a registry; one replica per region."""
    region, endpoint = region.strip(), endpoint.strip().rstrip("/")
    if not region or not endpoint.startswith(("https://", "http://")):
        raise RequestRejected("a replica needs a region and an endpoint starting with https://")
    if "@" in urlsplit(endpoint).netloc:
        # Replica endpoints are shown to everyone signed in; the registry's credentials are used there.
        raise RequestRejected("a replica endpoint must not carry credentials (user:password@)")
    if region == registry.region or registry.replicas.filter(region=region).exists():
        raise RequestRejected(f"{registry.name} already serves region {region}")
    with transaction.atomic():
        replica = Replica.objects.create(registry=registry, region=region, endpoint=endpoint)
        audit.record(actor, AuditAction.REPLICA_CREATED, target=replica, region=region, endpoint=endpoint)
    return replica


def delete_replica(replica: Replica, *, actor: User | None) -> None:
    """Remove a replica, with the presence rows that said what it holds."""
    with transaction.atomic():
        audit.record(actor, AuditAction.REPLICA_DELETED, target=replica, region=replica.region)
        replica.delete()


# --- access rules -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RuleRequest:
    group: DirectoryGroup
    pattern: str
    actions: frozenset[str]
    justification: str
    registry: Registry | None = None
    expires_at: datetime | None = None


def save_access_rule(rule: AccessRule | None, request: RuleRequest, *, actor: User | None) -> AccessRule:
    """Create (rule None) or change an access rule after checking it; audited with before and after."""
    pattern = _checked_rule(request)
    creating = rule is None
    rule = rule or AccessRule()
    before = _rule_detail(rule) if not creating else {}
    # A rule moved from one registry to another changes what both should grant.
    previous_registry_id = (
        rule.registry_id if not creating else (request.registry.pk if request.registry else None)
    )
    rule.group, rule.registry, rule.pattern = request.group, request.registry, pattern.text
    rule.literal_prefix, rule.regex = pattern.literal_prefix, pattern.anchored
    rule.can_pull, rule.can_push, rule.can_delete = (a in request.actions for a in AccessRule.ACTIONS)
    rule.expires_at, rule.justification = request.expires_at, request.justification.strip()
    rule.updated_at = timezone.now()
    if creating:
        rule.created_by = actor
    with transaction.atomic():
        rule.save()
        action = AuditAction.ACCESS_RULE_CREATED if creating else AuditAction.ACCESS_RULE_UPDATED
        audit.record(actor, action, target=rule, before=before, after=_rule_detail(rule))
        _recheck_drift(rule.registry_id, previous_registry_id)
    return rule


def delete_access_rule(rule: AccessRule, *, actor: User | None) -> None:
    with transaction.atomic():
        audit.record(actor, AuditAction.ACCESS_RULE_DELETED, target=rule, before=_rule_detail(rule))
        _recheck_drift(rule.registry_id)
        rule.delete()


def _recheck_drift(*registry_ids: int | None) -> None:
    """Drift findings follow a rule change at once, not at the next sync. None: every registry."""
    wanted = set(registry_ids) if None not in registry_ids else {None}
    for registry_id in wanted:
        transaction.on_commit(functools.partial(tasks.check_access_drift.delay, registry_id))


def _checked_rule(request: RuleRequest) -> Pattern:
    try:
        pattern = compile_pattern(request.pattern)
    except InvalidPattern as exc:
        raise RequestRejected(f"pattern: {exc}") from None
    if not request.actions or not request.actions <= set(AccessRule.ACTIONS):
        raise RequestRejected(f"choose actions among {', '.join(AccessRule.ACTIONS)}")
    if not request.justification.strip():
        raise RequestRejected("say why this access is needed: the justification is what reviewers read")
    if request.expires_at is not None and request.expires_at <= timezone.now():
        raise RequestRejected("the expiry must be in the future")
    return pattern


def _rule_detail(rule: AccessRule) -> dict[str, Any]:
    return {
        "group": rule.group.external_id if rule.group_id else None,
        "registry": rule.registry.name if rule.registry_id and rule.registry else "*",
        "pattern": rule.pattern,
        "actions": rule.actions,
        "expires_at": rule.expires_at,
        "justification": rule.justification,
    }


# --- principal links: registry principals that stand for directory groups ----------------------------


def link_principal(
    registry: Registry,
    *,
    kind: str,
    principal_id: str,
    group: DirectoryGroup,
    name: str = "",
    actor: User | None,
) -> PrincipalLink:
    """Say that a registry principal (a team, a role) stands for a directory group; audited."""
    if kind not in {value for value, _ in PrincipalLink._meta.get_field("principal_kind").choices or ()}:
        raise RequestRejected(f"unknown principal kind {kind!r}")
    if not principal_id.strip():
        raise RequestRejected("give the principal's id as the registry knows it (e.g. the team's id)")
    try:
        with transaction.atomic():
            link = PrincipalLink.objects.create(
                registry=registry,
                principal_kind=kind,
                principal_id=principal_id.strip(),
                principal_name=name.strip(),
                group=group,
                created_by=actor,
            )
            audit.record(
                actor,
                AuditAction.PRINCIPAL_LINK_CREATED,
                target=link,
                registry=registry.name,
                principal=f"{kind} {principal_id.strip()}",
                group=group.external_id,
            )
    except IntegrityError:
        raise RequestRejected(
            "that principal is already linked, or the group already has a principal on this registry"
        ) from None
    transaction.on_commit(functools.partial(tasks.check_access_drift.delay, registry.pk))
    return link


def unlink_principal(link: PrincipalLink, *, actor: User | None) -> None:
    registry_id = link.registry_id
    with transaction.atomic():
        audit.record(
            actor,
            AuditAction.PRINCIPAL_LINK_DELETED,
            target=link,
            principal=f"{link.principal_kind} {link.principal_id}",
            group=link.group.external_id,
        )
        link.delete()
    transaction.on_commit(functools.partial(tasks.check_access_drift.delay, registry_id))
