"""Credential hygiene: the rules that flag stale, orphaned and risky credentials, and the scan that runs them.

One list holds every credential (`Credential`): what registry syncs read, and Customs' own tokens,
copied in at the start of each scan so both are judged alike. Each rule is a finding kind; a scan
observes which subjects each rule holds for and lets portal/findings.py open, refresh and resolve
the findings to match. Thresholds come from settings (README: credential hygiene); the norms behind
the defaults are in ../shared/docs/base-images-and-tokens.md §C.

Unknown is never read as never: a registry that keeps no usage record gives a credential whose age
counts from its creation, and the finding says so; an expiry the registry does not report is not
"never expires".
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from accounts.models import DirectoryGroup, GroupMembership, PersonalToken, RobotToken, User
from portal import bulkread, findings
from portal.findings import FindingKind, Observation, Severity
from portal.locks import transaction_lock
from registries import connectors
from registries.connectors.base import Capability
from registries.models import AccessRule, Credential, Registry, Repository

CUSTOMS_SCOPE = "customs"  # findings about Customs' own tokens
RULES_SCOPE = "rules"  # findings about access rules

STALE = findings.register(
    FindingKind(
        slug="credential_stale",
        severity=Severity.MEDIUM,
        title="Stale credential",
        explanation="Not used for longer than the stale threshold (CIS: 45 days): disable or delete it. "
        "Where the registry keeps no record of use, its age counts from its creation, and the finding "
        "says so.",
    )
)
ORPHANED = findings.register(
    FindingKind(
        slug="credential_orphaned",
        severity=Severity.HIGH,
        title="Orphaned credential",
        explanation="Its owner left or was disabled in the directory, is unknown to the directory, or "
        "there is no owner at all: nobody answers for it, and it may outlive the person who made it.",
    )
)
NEVER_EXPIRES = findings.register(
    FindingKind(
        slug="credential_never_expires",
        severity=Severity.LOW,
        title="Credential never expires",
        explanation="The registry says it has no expiry: a leaked copy works for ever. Replace it with "
        "one that expires.",
    )
)
EXPIRES_SOON = findings.register(
    FindingKind(
        slug="credential_expires_soon",
        severity=Severity.MEDIUM,
        title="Credential expires soon",
        explanation="It expires within the notice period: whatever uses it will start failing. Its owner "
        "is told at each notice stage.",
    )
)
EXPIRED = findings.register(
    FindingKind(
        slug="credential_expired",
        severity=Severity.MEDIUM,
        title="Expired credential still present",
        explanation="Past its expiry but still held by the registry (Harbor, for one, never removes "
        "expired robots): delete it.",
    )
)
SHARED_ADMIN = findings.register(
    FindingKind(
        slug="credential_shared_admin",
        severity=Severity.HIGH,
        title="Shared admin account enabled",
        explanation="A shared administrator login (the ACR admin user; Harbor's local admin or a Quay "
        "superuser that automation uses) is enabled: "
        "whoever holds the password can do anything, and nobody can tell who did.",
    )
)
OVER_PRIVILEGED = findings.register(
    FindingKind(
        slug="credential_over_privileged",
        severity=Severity.MEDIUM,
        title="Over-privileged credential",
        explanation="It may push or delete, but the registry's usage records show only pulls in the "
        "window: give it pull only.",
    )
)
UNUSED_REPOSITORY = findings.register(
    FindingKind(
        slug="repository_unused",
        severity=Severity.LOW,
        title="Unused repository",
        explanation="Nobody pulled from it or pushed to it for a long time (where the registry reports "
        "pulls): a candidate for clean-up, and access to it is access nobody needs.",
    )
)
RULE_EXPIRED = findings.register(
    FindingKind(
        slug="access_rule_expired",
        severity=Severity.LOW,
        title="Time-bound access rule past its end",
        explanation="The rule no longer grants anything (the token server and reconcile plans ignore it), "
        "but it is still listed: delete it, or renew it with a new justification.",
    )
)
CREDENTIAL_KINDS = (STALE, ORPHANED, NEVER_EXPIRES, EXPIRES_SOON, EXPIRED, SHARED_ADMIN, OVER_PRIVILEGED)


@dataclass(frozen=True)
class Thresholds:
    stale: timedelta
    notice_days: tuple[int, ...]  # descending, e.g. (14, 7, 1)
    over_privileged: timedelta
    unused_pull: timedelta
    unused_push: timedelta

    @classmethod
    def from_settings(cls) -> Thresholds:
        return cls(
            stale=timedelta(days=settings.HYGIENE_STALE_DAYS),
            notice_days=tuple(settings.HYGIENE_EXPIRY_NOTICE_DAYS),
            over_privileged=timedelta(days=settings.HYGIENE_OVERPRIVILEGED_DAYS),
            unused_pull=timedelta(days=settings.HYGIENE_UNUSED_PULL_DAYS),
            unused_push=timedelta(days=settings.HYGIENE_UNUSED_PUSH_DAYS),
        )


# --- the facts a credential rule reads --------------------------------------------------------------


@dataclass(frozen=True)
class Person:
    pk: int
    label: str
    status: str


@dataclass(frozen=True)
class CredentialFacts:
    """One credential and what is known of its owner, read in bulk (no model instances: 100,000 rows)."""

    pk: int
    area: str  # "registry-<pk>" or "customs": the finding's scope
    where: str  # the registry's name, or "Customs"
    kind: str
    name: str
    enabled: bool
    owner_kind: str
    owner_ref: str  # how the registry names the owner (name, else id)
    owner: Person | None
    creator_ref: str
    creator: Person | None
    created_at: datetime | None
    first_seen_at: datetime
    expires_at: datetime | None
    expiry_known: bool
    last_used_at: datetime | None
    usage_known: bool
    last_used_source: str
    observed_at: datetime
    actions: frozenset[str] = frozenset()
    actions_seen: dict[str, str] = field(default_factory=dict)
    actions_seen_source: str = ""
    shared_admin: bool = False
    owner_group_known: bool = False  # owned by a group the directory still has
    steward: Person | None = None  # took it over when its creator left (offboarding)

    @property
    def subject_key(self) -> str:
        return f"{self.area}/credential-{self.pk}"

    @functools.cached_property
    def label(self) -> str:
        return f"{self.where}: {self.kind.replace('_', ' ')} {self.name}"

    @property
    def responsible(self) -> tuple[Person | None, str]:
        """Who answers for it: the owning person, else (robots, service accounts, groups) whoever
        took it over from its creator at an offboarding, else its creator."""
        person, reference, _ = self.answerer
        return person, reference

    @functools.cached_property
    def answerer(self) -> tuple[Person | None, str, str]:
        """`responsible`, and which of the credential's fields names them (evidence for orphaned)."""
        if self.owner_kind == "user" or self.owner is not None:
            return self.owner, self.owner_ref, "owner"
        if self.steward is not None:
            return self.steward, self.steward.label, "steward"
        if self.creator is not None or self.creator_ref:
            return self.creator, self.creator_ref, "created_by"
        return None, self.owner_ref, "owner"


# --- the rules: each a pure function of one credential, the thresholds and the time ----------------------


Rule = Callable[[CredentialFacts, Thresholds, datetime], Observation | None]


def _observation(
    facts: CredentialFacts,
    summary: str,
    detail: dict[str, Any],
    *,
    field: str,
    source: str,
    observed_at: datetime,
    severity: str = "",
) -> Observation:
    """A finding about one credential with its evidence: the `field` the rule read, who reported it
    (`source`: the registry, the log it read, "directory" or "Customs") and when that was read."""
    person, reference = facts.responsible
    evidence = {"field": field, "source": source, "observed_at": observed_at.isoformat()}
    return Observation(
        subject_key=facts.subject_key,
        summary=f"{facts.label}: {summary}",
        subject_type="registries.credential",
        subject_id=str(facts.pk),
        subject_label=facts.label,
        detail={"credential": facts.pk, **detail, **evidence},
        severity=severity,
        owner_id=person.pk if person else None,
        owner_label=person.label if person else reference,
    )


def _days(delta: timedelta) -> int:
    return delta.days


@dataclass(frozen=True)
class _Since:
    at: datetime
    field: str  # which credential field the age counts from
    source: str  # who reported that field
    wording: str  # how the summary says it


def _idle_since(facts: CredentialFacts) -> _Since:
    """Last use where the registry records it; creation when it was never used or the registry cannot
    say; when Customs first saw it when even the creation time is unknown."""
    if facts.usage_known and facts.last_used_at is not None:
        # A connector that cannot name the log it read leaves the source blank: the registry said so.
        source = facts.last_used_source or facts.where
        return _Since(facts.last_used_at, "last_used_at", source, "last used")
    if facts.created_at is not None:
        wording = "never used since it was created" if facts.usage_known else "last use unknown; created"
        return _Since(facts.created_at, "created_at", facts.where, wording)
    wording = "never used; first seen" if facts.usage_known else "last use and creation unknown; first seen"
    return _Since(facts.first_seen_at, "first_seen_at", "Customs", wording)


def stale(facts: CredentialFacts, limits: Thresholds, now: datetime) -> Observation | None:
    """Not used within the threshold (see _idle_since for where the age counts from). At exactly the
    threshold it is stale: "unused for 45 days" includes the 45th."""
    if not facts.enabled:
        return None
    since = _idle_since(facts)
    idle = now - since.at
    if idle < limits.stale:
        return None
    return _observation(
        facts,
        f"{since.wording} {_days(idle)} days ago",
        {
            "value": since.at.isoformat(),
            "usage_known": facts.usage_known,
            "idle_days": _days(idle),
            "threshold_days": _days(limits.stale),
        },
        field=since.field,
        source=since.source,
        observed_at=facts.observed_at,
    )


# The credential field that links each kind of answerer to a person.
_LINK_FIELDS = {"owner": "owner_user", "steward": "steward", "created_by": "created_by_user"}


def orphaned(facts: CredentialFacts, limits: Thresholds, now: datetime) -> Observation | None:
    """Nobody in the directory answers for it. Owners are matched by immutable id at sync time, so a
    renamed owner is the same person and a rehired one (a new identity) does not adopt old keys."""
    if not facts.enabled:
        return None
    person, reference, role = facts.answerer
    if person is not None and person.status == User.Status.ACTIVE:
        return None
    if person is None and facts.owner_group_known:
        return None  # a group's robot: the group answers for it
    link = _LINK_FIELDS[role]
    if person is not None:
        reason = "departed" if person.status == User.Status.DEPARTED else "disabled"
        # The status is the directory's as Customs holds it now, not as it was when the sync ran.
        return _observation(
            facts,
            f"its owner {person.label} is {reason} in the directory",
            {"reason": f"owner_{reason}", "owner": person.label, "owner_status": person.status},
            field=f"{link}.status",
            source="directory",
            observed_at=now,
        )
    # No person: the sync that read the credential found nobody with the directory id it names.
    if reference:
        return _observation(
            facts,
            f"its owner {reference} is unknown to the directory",
            {"reason": "owner_unknown", "owner_reference": reference, "owner_kind": facts.owner_kind},
            field=link,
            source=facts.where,
            observed_at=facts.observed_at,
            severity=Severity.MEDIUM,
        )
    return _observation(
        facts,
        "it has no owner",
        {"reason": "no_owner"},
        field=link,
        source=facts.where,
        observed_at=facts.observed_at,
        severity=Severity.MEDIUM,
    )


def never_expires(facts: CredentialFacts, limits: Thresholds, now: datetime) -> Observation | None:
    if not facts.enabled or not facts.expiry_known or facts.expires_at is not None:
        return None  # an expiry the registry does not report is unknown, not never
    return _observation(
        facts,
        "it never expires",
        {"value": None},
        field="expires_at",
        source=facts.where,
        observed_at=facts.observed_at,
    )


def expires_soon(facts: CredentialFacts, limits: Thresholds, now: datetime) -> Observation | None:
    """Within the notice period; the stage (14, 7, 1 days by default) is the smallest one reached, so
    the owner's notice goes out once at each."""
    if not facts.enabled or facts.expires_at is None or facts.expires_at <= now or not limits.notice_days:
        return None
    left = facts.expires_at - now
    reached = [days for days in limits.notice_days if left <= timedelta(days=days)]
    if not reached:
        return None
    stage = min(reached)
    days_left = left.days + (1 if left % timedelta(days=1) else 0)  # "in 3 days" for 2 days 5 hours
    return _observation(
        facts,
        f"expires in {days_left} day{'s' if days_left != 1 else ''} ({facts.expires_at:%Y-%m-%d %H:%M} UTC)",
        {
            "value": facts.expires_at.isoformat(),
            "expires_at": facts.expires_at.isoformat(),
            "days_left": days_left,
            "stage": stage,
        },
        field="expires_at",
        source=facts.where,
        observed_at=facts.observed_at,
    )


def expired(facts: CredentialFacts, limits: Thresholds, now: datetime) -> Observation | None:
    if facts.expires_at is None or facts.expires_at > now:
        return None
    return _observation(
        facts,
        f"expired {_days(now - facts.expires_at)} days ago but is still present",
        {"value": facts.expires_at.isoformat(), "enabled": facts.enabled},
        field="expires_at",
        source=facts.where,
        observed_at=facts.observed_at,
    )


def shared_admin(facts: CredentialFacts, limits: Thresholds, now: datetime) -> Observation | None:
    if not facts.shared_admin or not facts.enabled:
        return None
    return _observation(
        facts,
        "a shared admin account is enabled",
        # What shows it is in use: enabled (ACR), or automation seen using it (Harbor, Quay).
        {"value": True, "enabled": True, "evidence": facts.last_used_source},
        field="shared_admin",
        source=facts.where,
        observed_at=facts.observed_at,
    )


WRITE_ACTIONS = frozenset({"push", "delete"})


def over_privileged(facts: CredentialFacts, limits: Thresholds, now: datetime) -> Observation | None:
    """Push or delete granted, pulls seen in the window, and no push or delete seen in it. A use at
    exactly the window's start is in it, as a credential unused for exactly 45 days is stale.

    Only where the registry's records say what the credential did (`actions_seen_source`); a
    credential with no recorded use at all is stale, not over-privileged."""
    granted = facts.actions & WRITE_ACTIONS
    if not facts.enabled or not granted or not facts.actions_seen_source:
        return None
    since = now - limits.over_privileged
    seen = {action: _parsed(at) for action, at in facts.actions_seen.items()}
    recent = {action for action, at in seen.items() if at is not None and at >= since}
    if "pull" not in recent or recent & WRITE_ACTIONS:
        return None
    return _observation(
        facts,
        f"may {', '.join(sorted(granted))} but only pulled in {_days(limits.over_privileged)} days",
        {
            "granted": sorted(facts.actions),
            "seen": {action: facts.actions_seen[action] for action in sorted(facts.actions_seen)},
            "window_days": _days(limits.over_privileged),
        },
        field="actions_seen",
        source=facts.actions_seen_source,
        observed_at=facts.observed_at,
    )


def _parsed(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


CREDENTIAL_RULES: dict[FindingKind, Rule] = {
    STALE: stale,
    ORPHANED: orphaned,
    NEVER_EXPIRES: never_expires,
    EXPIRES_SOON: expires_soon,
    EXPIRED: expired,
    SHARED_ADMIN: shared_admin,
    OVER_PRIVILEGED: over_privileged,
}


# --- reading the facts ------------------------------------------------------------------------------

FACT_FIELDS = (
    "pk",
    "registry_id",
    "kind",
    "name",
    "enabled",
    "owner_kind",
    "owner_id",
    "owner_name",
    "owner_user_id",
    "created_by_id",
    "created_by_name",
    "created_by_user_id",
    "steward_id",
    "created_at",
    "first_seen_at",
    "expires_at",
    "expiry_known",
    "last_used_at",
    "usage_known",
    "last_used_source",
    "observed_at",
    "actions",
    "actions_seen",
    "actions_seen_source",
    "shared_admin",
)
CHUNK = 5000


def credential_facts(
    credentials: Iterable[dict[str, Any]], people: dict[int, Person], groups: frozenset[str] = frozenset()
) -> Iterator[CredentialFacts]:
    names = dict(Registry.objects.values_list("pk", "name"))
    for row in credentials:
        registry_id = row["registry_id"]
        yield CredentialFacts(
            pk=row["pk"],
            area=f"registry-{registry_id}" if registry_id else CUSTOMS_SCOPE,
            where=names.get(registry_id, "?") if registry_id else "Customs",
            kind=row["kind"],
            name=row["name"],
            enabled=row["enabled"],
            owner_kind=row["owner_kind"],
            owner_ref=row["owner_name"] or row["owner_id"],
            owner=people.get(row["owner_user_id"]) if row["owner_user_id"] else None,
            creator_ref=row["created_by_name"] or row["created_by_id"],
            creator=people.get(row["created_by_user_id"]) if row["created_by_user_id"] else None,
            created_at=row["created_at"],
            first_seen_at=row["first_seen_at"],
            expires_at=row["expires_at"],
            expiry_known=row["expiry_known"],
            last_used_at=row["last_used_at"],
            usage_known=row["usage_known"],
            last_used_source=row["last_used_source"],
            observed_at=row["observed_at"],
            actions=frozenset(row["actions"] or ()),
            actions_seen=dict(row["actions_seen"] or {}),
            actions_seen_source=row["actions_seen_source"],
            shared_admin=row["shared_admin"],
            owner_group_known=row["owner_kind"] == "group" and row["owner_id"] in groups,
            steward=people.get(row["steward_id"]) if row["steward_id"] else None,
        )


def _people(credentials: Any) -> dict[int, Person]:
    """Every person a credential names, read once: status and name are all the rules need."""
    named = (
        Q(pk__in=credentials.values("owner_user_id"))
        | Q(pk__in=credentials.values("created_by_user_id"))
        | Q(pk__in=credentials.values("steward_id"))
    )
    rows = User.objects.filter(named).values_list("pk", "username", "display_name", "status")
    return {
        pk: Person(pk, display or username, status) for pk, username, display, status in rows.iterator(CHUNK)
    }


# --- Customs' own tokens, listed beside the registries' -----------------------------------------------------


def copy_customs_tokens(now: datetime | None = None) -> int:
    """Bring the Customs rows of the credential list in step with the tokens. Returns how many there are.

    Revoked tokens are kept as gone (when they were revoked), as registry credentials are when they
    disappear; expired ones too, since Customs refuses them and nothing can revive them.
    """
    now = now or timezone.now()
    with transaction.atomic():
        # Two copies at once (the hourly scan's and one a token change queued) would both insert a
        # new token's row, and the second would fail on the unique constraint: they take turns, and
        # the second reads the tokens and rows as the first left them.
        transaction_lock("customs.copy_customs_tokens")
        actions_of_user, actions_of_group = _actions_by_rules(now)
        wanted = {row.native_id: row for row in _personal_rows(actions_of_user, now)}
        wanted.update((row.native_id, row) for row in _robot_rows(actions_of_group, now))
        existing = {
            row.native_id: row
            for row in Credential.objects.filter(registry=None).only("pk", "native_id", "first_seen_at")
        }
        for native_id, row in wanted.items():
            known = existing.pop(native_id, None)
            if known is not None:
                row.pk, row.first_seen_at = known.pk, known.first_seen_at
        Credential.objects.bulk_update(
            [row for row in wanted.values() if row.pk], _CUSTOMS_FIELDS, batch_size=2000
        )
        Credential.objects.bulk_create([row for row in wanted.values() if not row.pk], batch_size=2000)
        # A token row deleted outright (its owner's account removed) is gone from now on.
        Credential.objects.filter(pk__in=[row.pk for row in existing.values()], gone_at=None).update(
            gone_at=now
        )
    return len(wanted)


# The same columns a sync writes: Customs' rows have no sync run, shared admin or usage log (defaults).
_CUSTOMS_FIELDS: list[str] = Credential.SYNCED_FIELDS


def _gone_at(revoked_at: datetime | None, expires_at: datetime, now: datetime) -> datetime | None:
    if revoked_at is not None:
        return revoked_at
    return expires_at if expires_at <= now else None


def _personal_rows(actions_of_user: dict[int, frozenset[str]], now: datetime) -> Iterator[Credential]:
    tokens = PersonalToken.objects.values_list(
        "pk",
        "kind",
        "name",
        "scopes",
        "created_at",
        "expires_at",
        "last_used_at",
        "revoked_at",
        "owner_id",
        "owner__username",
        "owner__display_name",
        "owner__external_id",
    )
    for (
        pk,
        kind,
        name,
        scopes,
        created,
        expires,
        used,
        revoked,
        owner,
        username,
        display,
        external,
    ) in tokens.iterator(CHUNK):
        registry_token = kind == PersonalToken.Kind.REGISTRY
        yield Credential(
            registry=None,
            native_id=f"customs:personal-token:{pk}",
            kind="customs_registry_token" if registry_token else "customs_api_token",
            name=name,
            enabled=_gone_at(revoked, expires, now) is None,
            owner_kind="user",
            owner_id=external or username,
            owner_name=display or username,
            owner_user_id=owner,
            created_by_id=external or username,
            created_by_name=display or username,
            created_by_user_id=owner,
            created_at=created,
            expires_at=expires,
            expiry_known=True,
            last_used_at=used,
            usage_known=True,
            last_used_source="Customs",
            scopes=list(scopes or []),
            # A registry token may do what its owner's groups' rules allow; an API token opens no registry.
            actions=sorted(actions_of_user.get(owner, frozenset())) if registry_token else [],
            observed_at=now,
            first_seen_at=now,
            gone_at=_gone_at(revoked, expires, now),
        )


def _robot_rows(actions_of_group: dict[int, frozenset[str]], now: datetime) -> Iterator[Credential]:
    robots = RobotToken.objects.values_list(
        "pk",
        "name",
        "created_at",
        "expires_at",
        "last_used_at",
        "revoked_at",
        "group_id",
        "group__display_name",
        "group__external_id",
        "created_by_id",
        "created_by__username",
        "created_by__display_name",
        "created_by__external_id",
    )
    for row in robots.iterator(CHUNK):
        pk, name, created, expires, used, revoked, group, group_name, group_ref = row[:9]
        creator, creator_username, creator_display, creator_ref = row[9:]
        yield Credential(
            registry=None,
            native_id=f"customs:robot-token:{pk}",
            kind="customs_robot",
            name=RobotToken.USERNAME_PREFIX + name,
            enabled=_gone_at(revoked, expires, now) is None,
            # Owned by a group; the person who made it answers for it (a group whose directory
            # entry was deleted leaves the robot with no owner at all).
            owner_kind="group" if group else "",
            owner_id=group_ref or "",
            owner_name=group_name or "",
            created_by_id=(creator_ref or creator_username or "") if creator else "",
            created_by_name=(creator_display or creator_username or "") if creator else "",
            created_by_user_id=creator,
            created_at=created,
            expires_at=expires,
            expiry_known=True,
            last_used_at=used,
            usage_known=True,
            last_used_source="Customs",
            scopes=["registry"],
            actions=sorted(actions_of_group.get(group, frozenset())) if group else [],
            observed_at=now,
            first_seen_at=now,
            gone_at=_gone_at(revoked, expires, now),
        )


def _actions_by_rules(now: datetime) -> tuple[dict[int, frozenset[str]], dict[int, frozenset[str]]]:
    """The actions rules in force give each group anywhere, and each person through their groups."""
    by_group: dict[int, set[str]] = {}
    rules = AccessRule.objects.filter(Q(expires_at=None) | Q(expires_at__gt=now)).values_list(
        "group_id", "can_pull", "can_push", "can_delete"
    )
    for group, pull, push, delete in rules.iterator(CHUNK):
        actions = by_group.setdefault(group, set())
        actions.update(
            action for action, allowed in (("pull", pull), ("push", push), ("delete", delete)) if allowed
        )
    by_user: dict[int, set[str]] = {}
    memberships = GroupMembership.objects.filter(group_id__in=list(by_group)).values_list(
        "user_id", "group_id"
    )
    for user, group in memberships.iterator(CHUNK):
        by_user.setdefault(user, set()).update(by_group[group])
    return (
        {user: frozenset(actions) for user, actions in by_user.items()},
        {group: frozenset(actions) for group, actions in by_group.items()},
    )


# --- repositories and rules ----------------------------------------------------------------------------


def _registries_reporting_pulls(registry_id: int | None) -> dict[int, str]:
    """Registries whose connector reports pull times: elsewhere "no pull" would mean "not known"."""
    kinds = {kind for kind, cls in connectors.CONNECTORS.items() if Capability.PULLED_AT in cls.capabilities}
    registries = Registry.objects.filter(kind__in=kinds)
    if registry_id is not None:
        registries = registries.filter(pk=registry_id)
    return dict(registries.values_list("pk", "name"))


def unused_repositories(registry_id: int | None, limits: Thresholds, now: datetime) -> Iterator[Observation]:
    registries = _registries_reporting_pulls(registry_id)
    pulled_before, pushed_before = now - limits.unused_pull, now - limits.unused_push
    # A repository Customs met recently has had no chance to be pulled yet.
    repositories = Repository.objects.filter(
        registry_id__in=list(registries), first_seen__lte=pulled_before
    ).filter(Q(last_pulled_at=None) | Q(last_pulled_at__lte=pulled_before))
    repositories = repositories.filter(
        Q(last_pushed_at__lte=pushed_before) | Q(last_pushed_at=None, first_seen__lte=pushed_before)
    )
    rows = repositories.values_list(
        "pk", "registry_id", "name", "last_pulled_at", "last_pushed_at", "first_seen", "synced_at"
    )
    for pk, registry, name, pulled, pushed, first_seen, synced in rows.iterator(CHUNK):
        label = f"{registries[registry]}: {name}"
        pull_text = f"last pulled {pulled:%Y-%m-%d}" if pulled else "never pulled"
        push_text = f"last pushed {pushed:%Y-%m-%d}" if pushed else f"no push since {first_seen:%Y-%m-%d}"
        yield Observation(
            subject_key=f"registry-{registry}/repository-{pk}",
            summary=f"{label}: {pull_text}, {push_text}",
            subject_type="registries.repository",
            subject_id=str(pk),
            subject_label=label,
            detail={
                "last_pulled_at": pulled.isoformat() if pulled else None,
                "last_pushed_at": pushed.isoformat() if pushed else None,
                "first_seen": first_seen.isoformat(),
                # Without a push on record the push age counts from when Customs first met it.
                "field": "last_pulled_at, last_pushed_at" if pushed else "last_pulled_at, first_seen",
                "source": registries[registry],
                "observed_at": synced.isoformat(),
                "pull_threshold_days": _days(limits.unused_pull),
                "push_threshold_days": _days(limits.unused_push),
            },
        )


def expired_rules(now: datetime) -> Iterator[Observation]:
    rules = AccessRule.objects.filter(expires_at__lte=now).select_related("group", "registry", "created_by")
    for rule in rules.iterator(CHUNK):
        assert rule.expires_at is not None
        yield Observation(
            subject_key=f"{RULES_SCOPE}/rule-{rule.pk}",
            summary=f"Rule #{rule.pk} ({rule.group} may {', '.join(rule.actions)} {rule.pattern}) "
            f"ended {rule.expires_at:%Y-%m-%d}",
            subject_type="registries.accessrule",
            subject_id=str(rule.pk),
            subject_label=f"rule #{rule.pk}",
            detail={
                "field": "expires_at",
                "source": "Customs",  # the rule is Customs' own, read by this scan
                "observed_at": now.isoformat(),
                "value": rule.expires_at.isoformat(),
                "group": rule.group.external_id,
                "registry": rule.registry.name if rule.registry else None,
                "pattern": rule.pattern,
                "justification": rule.justification,
            },
            owner_id=rule.created_by_id,
            owner_label=str(rule.created_by) if rule.created_by else "",
        )


# --- the scan ------------------------------------------------------------------------------------------


@dataclass
class ScanResult:
    credentials: int = 0
    by_kind: dict[str, findings.ReconcileResult] = field(default_factory=dict)

    @property
    def open_by_kind(self) -> dict[str, int]:
        """Findings the scan saw hold, by kind; kinds with none are left out."""
        return findings.open_by_kind(self.by_kind)


Progress = Callable[[str], None]


def scan(
    *, registry: Registry | None = None, now: datetime | None = None, progress: Progress | None = None
) -> ScanResult:
    """Run every hygiene rule and bring the findings in step: over one registry, or the whole estate.

    A whole-estate scan also copies Customs' own tokens in and checks the access rules; a registry's
    scan (after its sync) touches only that registry's findings.
    """
    now = now or timezone.now()
    say = progress or (lambda message: None)
    limits = Thresholds.from_settings()
    result = ScanResult()
    if registry is None:
        say(f"copied {copy_customs_tokens(now)} Customs tokens into the credential list")
    credentials = Credential.objects.present()
    if registry is not None:
        credentials = credentials.filter(registry=registry)
    people = _people(credentials)
    observed: dict[FindingKind, list[Observation]] = {kind: [] for kind in CREDENTIAL_RULES}
    rows = bulkread.rows(credentials.order_by(), FACT_FIELDS)
    groups = frozenset(DirectoryGroup.objects.values_list("external_id", flat=True).iterator(CHUNK))
    for facts in credential_facts(rows, people, groups):
        result.credentials += 1
        for kind, rule in CREDENTIAL_RULES.items():
            observation = rule(facts, limits, now)
            if observation is not None:
                observed[kind].append(observation)
        if result.credentials % 20_000 == 0:
            say(f"checked {result.credentials} credentials")
    say(f"checked {result.credentials} credentials")
    scope = f"registry-{registry.pk}" if registry is not None else ""
    for kind, observations in observed.items():
        result.by_kind[kind.slug] = findings.reconcile(kind, observations, scope=scope, now=now)
        say(f"{kind.title}: {len(observations)} open")
    unused = list(unused_repositories(registry.pk if registry else None, limits, now))
    result.by_kind[UNUSED_REPOSITORY.slug] = findings.reconcile(
        UNUSED_REPOSITORY, unused, scope=scope, now=now
    )
    say(f"{UNUSED_REPOSITORY.title}: {len(unused)} open")
    if registry is None:
        ended = list(expired_rules(now))
        result.by_kind[RULE_EXPIRED.slug] = findings.reconcile(RULE_EXPIRED, ended, now=now)
        say(f"{RULE_EXPIRED.title}: {len(ended)} open")
    return result
