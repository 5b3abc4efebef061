"""Access drift: the access rules against the grants a registry actually holds, and the plan between them.

Both sides are laid over the registry's inventory: a rule gives its group its actions on every
inventoried repository its pattern matches, and a grant gives its principal its actions on every
inventoried repository its scope (a pattern too, see registries/connectors/base.py) matches. Then:

- *access without a rule*: a grant gives a principal an action on a repository that no rule in force
  gives it. A grant to a group counts that group's rules; a grant to a person the directory knows
  counts the rules of their groups (none once they are disabled or departed); robots, service
  accounts and principals nobody could map have no rules, so all their access is reported.
- *rule not reflected*: a rule's group is not granted (as a group) an action on a repository the
  rule's pattern matches.

A grant whose scope matches nothing in the inventory (an empty Harbor project, a policy on a deleted
repository) still gives access to what may be pushed there, so it is compared by its scope: covered
when a rule of the principal names the same scope (for a wildcard) or matches it (for one name).
A rule matching nothing in the inventory asks nothing of the registry yet.

Registries behind Customs' token server have no drift by construction: every token carries exactly
what the rules allow. Registries whose connector cannot read grants have nothing to compare.
"""

from __future__ import annotations

import bisect
import enum
import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from django.db import transaction

from accounts.models import DirectoryGroup, GroupMembership, User
from portal import audit, findings
from portal.audit import AuditAction
from portal.errors import RequestRejected

# sync calls reconcile_findings after a run that read grants, and this module uses its connector_for:
# both import the other as a module and look names up at call time, so either may load first.
from registries import connectors, sync
from registries.connectors.base import (
    ACTIONS,
    AccessPlan,
    ChangeOp,
    GrantChange,
    Principal,
    PrincipalKind,
    can_read_grants,
    can_write_grants,
)
from registries.connectors.errors import ConnectorError
from registries.models import AccessRule, Grant, PrincipalLink, Registry, Repository, SyncRun
from registries.patterns import InvalidPattern, Pattern, compile_pattern

EVIDENCE_REPOSITORIES = 20  # repositories named in a finding; the count says how many more


class Status(enum.StrEnum):
    COMPARED = "compared"
    BY_CONSTRUCTION = "by_construction"  # Customs is the registry's token server
    NOT_READABLE = "not_readable"  # the connector cannot read grants
    NOT_READ_YET = "not_read_yet"  # it can, but no sync has read them yet


class _ByAction:
    """Drift found per action: by_action maps each action to the repositories concerned."""

    by_action: dict[str, tuple[str, ...]]

    @property
    def actions(self) -> tuple[str, ...]:
        return tuple(a for a in ACTIONS if a in self.by_action)

    @property
    def repositories(self) -> tuple[str, ...]:
        return tuple(sorted({name for names in self.by_action.values() for name in names}))


@dataclass(frozen=True)
class UnruledAccess(_ByAction):
    """A grant's actions that no rule gives its principal; by action, the repositories concerned."""

    grant: Grant
    by_action: dict[str, tuple[str, ...]]  # an empty tuple: the scope matches nothing inventoried


@dataclass(frozen=True)
class UnreflectedRule(_ByAction):
    """A rule's actions its group is not granted; by action, the repositories where it lacks them."""

    rule: AccessRule
    by_action: dict[str, tuple[str, ...]]


@dataclass(frozen=True)
class Drift:
    registry: Registry
    status: Status
    observed_by: SyncRun | None = None  # the sync whose read the grants come from
    rules: int = 0
    grants: int = 0
    unruled: tuple[UnruledAccess, ...] = ()
    unreflected: tuple[UnreflectedRule, ...] = ()
    plan: AccessPlan = field(default_factory=lambda: AccessPlan(registry=""))

    @property
    def compared(self) -> bool:
        return self.status == Status.COMPARED


# --- what the registry and the rules say --------------------------------------------------------------


class _Inventory:
    """The registry's repository names, and which of them a pattern matches (each pattern once)."""

    def __init__(self, names: Iterable[str]) -> None:
        self.names = sorted(names)
        self._matched: dict[str, frozenset[str]] = {}

    def matching(self, pattern: Pattern) -> frozenset[str]:
        if pattern.text not in self._matched:
            # Only names starting with the literal prefix can match: bisect to them, test those.
            start = bisect.bisect_left(self.names, pattern.literal_prefix)
            found = []
            for name in self.names[start:]:
                if not name.startswith(pattern.literal_prefix):
                    break
                if pattern.matches(name):
                    found.append(name)
            self._matched[pattern.text] = frozenset(found)
        return self._matched[pattern.text]


@dataclass
class _Rules:
    """Per group and action: what the rules in force give, and through which rules."""

    rules: list[AccessRule]
    gives: dict[tuple[int, str], set[str]] = field(default_factory=lambda: defaultdict(set))
    patterns: dict[tuple[int, str], list[Pattern]] = field(default_factory=lambda: defaultdict(list))
    why: dict[tuple[int, str], list[AccessRule]] = field(default_factory=lambda: defaultdict(list))


def status_of(registry: Registry) -> tuple[Status, SyncRun | None]:
    """Whether there is anything to compare for this registry, and the sync that last read its grants."""
    if registry.token_service:
        return Status.BY_CONSTRUCTION, None
    if not can_read_grants(sync.connector_class_for(registry)):
        return Status.NOT_READABLE, None
    run = (
        SyncRun.objects.filter(registry=registry, replica=None, grants_seen__isnull=False)
        .order_by("-started_at")
        .first()
    )
    return (Status.COMPARED, run) if run else (Status.NOT_READ_YET, None)


def compute(registry: Registry) -> Drift:
    """The registry's drift and the plan that would close it, from the stored grants and rules."""
    status, run = status_of(registry)
    if status != Status.COMPARED:
        return Drift(registry=registry, status=status, plan=AccessPlan(registry=registry.name))
    inventory = _Inventory(Repository.objects.filter(registry=registry).values_list("name", flat=True))
    rules = _rules(registry, inventory)
    grants = list(Grant.objects.filter(registry=registry).select_related("group", "user").order_by("pk"))
    groups_of = _groups_of_people(grants)
    unruled = [u for g in grants if (u := _unruled(g, inventory, rules, groups_of)) is not None]
    unreflected = _unreflected(rules, _granted_to_groups(grants, inventory), inventory)
    return Drift(
        registry=registry,
        status=status,
        observed_by=run,
        rules=len(rules.rules),
        grants=len(grants),
        unruled=tuple(unruled),
        unreflected=tuple(unreflected),
        plan=_plan(registry, grants, unruled, rules, inventory),
    )


def _rules(registry: Registry, inventory: _Inventory) -> _Rules:
    in_force = AccessRule.objects.in_force().for_registry(registry).select_related("group").order_by("pk")
    rules = _Rules(rules=[])
    for rule in in_force:
        try:
            pattern = compile_pattern(rule.pattern)
        except InvalidPattern:
            continue  # saved around the services with a broken pattern: it grants nothing anywhere
        rules.rules.append(rule)
        for action in rule.actions:
            rules.gives[rule.group_id, action] |= inventory.matching(pattern)
            rules.patterns[rule.group_id, action].append(pattern)
            rules.why[rule.group_id, action].append(rule)
    return rules


def _groups_of_people(grants: list[Grant]) -> dict[int, list[int]]:
    """For each person a grant names, their groups; nobody's once they may no longer sign in."""
    people = {g.user_id for g in grants if g.user_id}
    if not people:
        return {}
    groups: dict[int, list[int]] = defaultdict(list)
    active = GroupMembership.objects.filter(
        user_id__in=people, user__is_active=True, user__status=User.Status.ACTIVE
    )
    for user_id, group_id in active.values_list("user_id", "group_id"):
        groups[user_id].append(group_id)
    return groups


def _groups_behind(grant: Grant, groups_of: dict[int, list[int]]) -> list[int]:
    if grant.group_id:
        return [grant.group_id]
    if grant.user_id:
        return groups_of.get(grant.user_id, [])
    return []  # robots, service accounts, unmapped principals: no rule can name them


def _unruled(
    grant: Grant, inventory: _Inventory, rules: _Rules, groups_of: dict[int, list[int]]
) -> UnruledAccess | None:
    scope = compile_pattern(grant.scope)
    reached = inventory.matching(scope)
    groups = _groups_behind(grant, groups_of)
    by_action: dict[str, tuple[str, ...]] = {}
    for action in grant.actions:
        if reached:
            allowed: set[str] = set()
            for group in groups:
                allowed |= rules.gives.get((group, action), set())
            if extra := reached - allowed:
                by_action[action] = tuple(sorted(extra))
        elif not _scope_covered(scope, [p for g in groups for p in rules.patterns.get((g, action), [])]):
            by_action[action] = ()
    return UnruledAccess(grant=grant, by_action=by_action) if by_action else None


def _scope_covered(scope: Pattern, patterns: list[Pattern]) -> bool:
    """For a grant reaching nothing inventoried: does a rule name the same scope (or match its one name)?"""
    if scope.is_exact:
        return any(p.matches(scope.text) for p in patterns)
    return any(p.text == scope.text for p in patterns)


def _granted_to_groups(grants: Iterable[Grant], inventory: _Inventory) -> dict[tuple[int, str], set[str]]:
    granted: dict[tuple[int, str], set[str]] = defaultdict(set)
    for grant in grants:
        if grant.group_id:
            for action in grant.actions:
                granted[grant.group_id, action] |= inventory.matching(compile_pattern(grant.scope))
    return granted


def _unreflected(
    rules: _Rules, granted: dict[tuple[int, str], set[str]], inventory: _Inventory
) -> list[UnreflectedRule]:
    found = []
    for rule in rules.rules:
        wanted = inventory.matching(compile_pattern(rule.pattern))
        by_action = {}
        for action in rule.actions:
            if missing := wanted - granted.get((rule.group_id, action), set()):
                by_action[action] = tuple(sorted(missing))
        if by_action:
            found.append(UnreflectedRule(rule=rule, by_action=by_action))
    return found


# --- the reconcile plan ----------------------------------------------------------------------------


def _plan(
    registry: Registry,
    grants: list[Grant],
    unruled: list[UnruledAccess],
    rules: _Rules,
    inventory: _Inventory,
) -> AccessPlan:
    """Take every unruled action away from its grant, then add back, per repository, what rules give
    that the remaining group grants do not: after both, the registry grants exactly the rules."""
    removals = tuple(
        GrantChange(
            op=ChangeOp.REMOVE,
            principal=_grant_principal(u.grant),
            scope=u.grant.scope,
            actions=u.actions,
            source=u.grant.source,
            reason=f"no rule gives {u.grant.principal_name or u.grant.principal_id} "
            f"{', '.join(u.actions)} {_where(u)}",
        )
        for u in unruled
    )
    taken = {u.grant.pk: set(u.actions) for u in unruled}
    remaining: dict[tuple[int, str], set[str]] = defaultdict(set)
    for grant in grants:
        if grant.group_id:
            for action in set(grant.actions) - taken.get(grant.pk, set()):
                remaining[grant.group_id, action] |= inventory.matching(compile_pattern(grant.scope))
    return AccessPlan(
        registry=registry.name, additions=_additions(registry, rules, remaining), removals=removals
    )


def _grant_principal(grant: Grant) -> Principal:
    # The grant's own principal, as the registry names it: removal works on the native object.
    return Principal(
        kind=PrincipalKind(grant.principal_kind), id=grant.principal_id, name=grant.principal_name
    )


def _where(unruled: UnruledAccess) -> str:
    repositories = unruled.repositories
    if not repositories:
        return f"on {unruled.grant.scope} (no inventoried repository yet)"
    shown = ", ".join(repositories[:3]) + (
        f" and {len(repositories) - 3} more" if len(repositories) > 3 else ""
    )
    return f"on {shown}"


def _group_principal(group: DirectoryGroup, link: PrincipalLink | None) -> Principal:
    """Whom to give a group's access: the registry principal an admin linked it to, if any."""
    if link is not None:
        return Principal(
            kind=PrincipalKind(link.principal_kind),
            id=link.principal_id,
            name=link.principal_name or group.display_name,
            directory_id=group.external_id,
        )
    return Principal(
        kind=PrincipalKind.GROUP,
        id=group.external_id,
        name=group.display_name,
        directory_id=group.external_id,
    )


def _additions(
    registry: Registry, rules: _Rules, remaining: dict[tuple[int, str], set[str]]
) -> tuple[GrantChange, ...]:
    wanted: dict[tuple[int, str], set[str]] = defaultdict(set)  # (group, repository) → actions
    for (group_id, action), names in rules.gives.items():
        for name in names - remaining.get((group_id, action), set()):
            wanted[group_id, name].add(action)
    groups = {rule.group_id: rule.group for rule in rules.rules}
    linked = {link.group_id: link for link in PrincipalLink.objects.filter(registry=registry)}
    additions = []
    for (group_id, name), actions in sorted(
        wanted.items(), key=lambda item: (groups[item[0][0]].display_name, item[0][1])
    ):
        group = groups[group_id]
        why = sorted(
            {
                r.pk: r
                for a in actions
                for r in rules.why[group_id, a]
                if compile_pattern(r.pattern).matches(name)
            }.values(),
            key=lambda r: r.pk,
        )
        additions.append(
            GrantChange(
                op=ChangeOp.ADD,
                principal=_group_principal(group, linked.get(group_id)),
                scope=name,
                actions=tuple(a for a in ACTIONS if a in actions),
                reason="; ".join(f"rule #{r.pk}: {', '.join(r.actions)} on {r.pattern}" for r in why),
            )
        )
    return tuple(additions)


def fingerprint(plan: AccessPlan) -> str:
    """A digest of the plan's content: apply refuses when the plan changed since it was shown."""
    body = json.dumps([change.as_dict() for change in plan.changes], sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()


# --- findings -----------------------------------------------------------------------------------------


def finding_scope(registry: Registry) -> str:
    return f"registry-{registry.pk}"


def reconcile_findings(registry: Registry) -> Drift:
    """Open, refresh and resolve the registry's drift findings to match what compute() sees now."""
    drift = compute(registry)
    scope = finding_scope(registry)
    # Anything but a comparison (token server, no grants to read) observes nothing: stale findings resolve.
    findings.reconcile(
        findings.ACCESS_WITHOUT_RULE, [_unruled_observation(drift, u) for u in drift.unruled], scope=scope
    )
    findings.reconcile(
        findings.RULE_NOT_REFLECTED,
        [_unreflected_observation(drift, u) for u in drift.unreflected],
        scope=scope,
    )
    return drift


def reconcile_all(registries: Iterable[Registry]) -> list[Drift]:
    return [reconcile_findings(registry) for registry in registries]


def _evidence(by_action: dict[str, tuple[str, ...]]) -> dict[str, object]:
    names = sorted({name for names in by_action.values() for name in names})
    return {
        "actions": [a for a in ACTIONS if a in by_action],
        "repositories": names[:EVIDENCE_REPOSITORIES],
        "repository_count": len(names),
    }


def _unruled_observation(drift: Drift, unruled: UnruledAccess) -> findings.Observation:
    grant, registry = unruled.grant, drift.registry
    identity = json.dumps([grant.principal_kind, grant.principal_id, grant.scope, grant.source])
    who = grant.principal_name or grant.principal_id
    return findings.Observation(
        subject_key=f"{finding_scope(registry)}/grant-{hashlib.sha256(identity.encode()).hexdigest()[:24]}",
        summary=f"{registry.name}: {grant.get_principal_kind_display()} {who} may "
        f"{', '.join(unruled.actions)} {_where(unruled)} without a rule ({grant.source})",
        subject_type="registries.registry",
        subject_id=str(registry.pk),
        subject_label=f"{registry.name}: {who}",
        detail={
            "principal": f"{grant.principal_kind} {grant.principal_id}",
            "principal_name": grant.principal_name,
            "mapped_to": str(grant.group or grant.user or "nobody in the directory"),
            "scope": grant.scope,
            "source": grant.source,
            **_evidence(unruled.by_action),
            "observed_at": grant.observed_at.isoformat(),
            "sync_run": grant.run_id,
        },
    )


def _unreflected_observation(drift: Drift, unreflected: UnreflectedRule) -> findings.Observation:
    rule, registry = unreflected.rule, drift.registry
    count = len(unreflected.repositories)
    return findings.Observation(
        subject_key=f"{finding_scope(registry)}/rule-{rule.pk}",
        summary=f"{registry.name}: {rule.group} lacks {', '.join(unreflected.actions)} on {count} "
        f"{'repository' if count == 1 else 'repositories'} rule #{rule.pk} ({rule.pattern}) gives",
        subject_type="registries.accessrule",
        subject_id=str(rule.pk),
        subject_label=f"{registry.name}: rule #{rule.pk}",
        detail={
            "rule": str(rule),
            "group_id": rule.group.external_id,
            "pattern": rule.pattern,
            **_evidence(unreflected.by_action),
            "grants_read_at": drift.observed_by.started_at.isoformat() if drift.observed_by else None,
        },
    )


# --- applying a plan ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ApplyResult:
    planned: int
    applied: tuple[GrantChange, ...]
    error: str = ""

    @property
    def complete(self) -> bool:
        return not self.error


def can_apply(registry: Registry) -> bool:
    """Whether this registry's connector can change grants (asked of its class, without connecting)."""
    return can_write_grants(sync.connector_class_for(registry))


def apply_plan(registry: Registry, *, actor: User | None, expected: str) -> ApplyResult:
    """Apply the registry's reconcile plan through its connector, if it is still the one shown.

    `expected` is the fingerprint of the plan the admin reviewed. The connector's progress is
    audited whatever happens: a failure half-way records what was applied before it.
    """
    drift = compute(registry)
    _check_applicable(registry, drift, expected)
    try:
        connector = sync.connector_for(registry)
    except ConnectorError as exc:
        raise RequestRejected(f"The registry's connector cannot be set up: {exc}") from None
    if not can_write_grants(connector):
        raise RequestRejected(_cannot_write(registry))
    applied: list[GrantChange] = []
    try:
        for change in connector.apply_access_plan(drift.plan):
            applied.append(change)
    except ConnectorError as exc:
        return _record(registry, drift.plan, applied, actor=actor, error=str(exc) or type(exc).__name__)
    except BaseException:
        _record(registry, drift.plan, applied, actor=actor, error="stopped by an internal error; see the log")
        raise
    return _record(registry, drift.plan, applied, actor=actor)


def _check_applicable(registry: Registry, drift: Drift, expected: str) -> None:
    if drift.status == Status.BY_CONSTRUCTION:
        raise RequestRejected(
            "Customs is this registry's token server: its access follows the rules already."
        )
    if drift.status != Status.COMPARED:
        raise RequestRejected("There is no plan: Customs has not read this registry's grants.")
    if expected != fingerprint(drift.plan):
        raise RequestRejected(
            "The plan changed since it was shown (grants, rules or the inventory moved). "
            "Review the new plan, then apply it."
        )
    if not drift.plan:
        raise RequestRejected("Nothing to apply: the registry's grants match the rules.")
    if not can_apply(registry):
        raise RequestRejected(_cannot_write(registry))


def _cannot_write(registry: Registry) -> str:
    connector = connectors.CONNECTORS.get(registry.kind)
    label = connector.label if connector else registry.kind
    return (
        f"The {label} connector cannot change access in a registry. Make these changes in the registry "
        "itself; the next sync reads them back. Nothing was applied."
    )


def _record(
    registry: Registry, plan: AccessPlan, applied: list[GrantChange], *, actor: User | None, error: str = ""
) -> ApplyResult:
    action = AuditAction.REGISTRY_ACCESS_PLAN_FAILED if error else AuditAction.REGISTRY_ACCESS_PLAN_APPLIED
    with transaction.atomic():
        audit.record(
            actor,
            action,
            target=registry,
            plan=[change.as_dict() for change in plan.changes],
            applied=len(applied),
            planned=len(plan.changes),
            error=error[:2000],
        )
        # What the registry holds now is read back by a sync, never assumed from what was asked.
        # Imported here: tasks imports this module, and sync imports both.
        from registries import tasks

        registry_id = registry.pk
        transaction.on_commit(lambda: tasks.sync_registry.delay(registry_id, SyncRun.Trigger.MANUAL))
    return ApplyResult(planned=len(plan.changes), applied=tuple(applied), error=error)
