"""Access review campaigns: certify, person by person and credential by credential, who may do what
where, and take away what reviewers revoke.

A campaign's scope is a pattern in the access-rule language, the registries it covers (none: all)
and the actions that matter ("everyone who can push to prod/**"). Opening it builds one item per
subject with access in scope, from the same sources as effective access:

- people, through the access rules in force of the groups they belong to, and through grants a
  registry gives them by name;
- Customs robot tokens, through their group's rules;
- registry-native credentials, through the grants the registry lists for the principal they act as
  (a Harbor robot, an ACR token): a credential whose registry says nothing of its repositories is
  not in any campaign's scope.

Each item keeps its evidence as the reviewer saw it. Reviewers certify or revoke, one by one or a
filtered list at once. Closing gives the undecided items the campaign's default, then makes each
revocation a plan of idempotent steps, applied at once by a worker and recorded per item:

- a group's access is revoked (its rule ended, expiry set to now) when everyone the rule reaches is
  revoked: nobody certified that they still need it;
- otherwise a person is taken out of the group where Customs owns the membership (source local);
  a membership the directory sends (SCIM, OIDC, SAML) comes back at its next sync, so the plan
  leaves that to a person and says where;
- a grant a registry gives a person by name is removed through the connector, where it can;
- a Customs robot token is revoked; a registry credential is disabled through its connector.
"""

from __future__ import annotations

import calendar
import enum
import functools
import logging
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Max, Q, QuerySet
from django.urls import reverse
from django.utils import timezone

from accounts import services as account_services
from accounts.models import DirectoryGroup, GroupMembership, PersonalToken, RobotToken, Source, User
from accounts.roles import Role
from accounts.scim.resources import ENTERPRISE_SCHEMA, scim_id
from portal import audit, notify
from portal.audit import AuditAction
from portal.errors import RequestRejected
from registries import offboarding, sync
from registries.connectors.base import (
    Capability,
    PrincipalKind,
)
from registries.connectors.errors import ConnectorError, PermanentError, TransientError
from registries.models import (
    AccessReviewCampaign,
    AccessReviewItem,
    AccessRule,
    Credential,
    Grant,
    Registry,
)
from registries.patterns import InvalidPattern, compile_pattern

logger = logging.getLogger(__name__)

Campaign = AccessReviewCampaign
Item = AccessReviewItem
Decision = AccessReviewCampaign.Decision
ACTIONS = AccessRule.ACTIONS
REMINDER_DAYS = (7, 1)  # reviewers with items left hear from Customs this many days before the due date
MACHINE_PRINCIPALS = (PrincipalKind.ROBOT, PrincipalKind.SERVICE_ACCOUNT)


class CampaignRefused(RequestRejected):
    """A campaign change that cannot be made, with the reason for the person asking."""


# --- scope: does a rule's or grant's pattern reach the campaign's? ----------------------------------------

_ANY_SEGMENTS = "**"  # zero or more whole segments


def patterns_overlap(first: str, second: str) -> bool:
    """Whether some repository name matches both patterns: `**` and `prod/*` do, `team/**` and `prod/**` not.

    A rule on `**` lets its group push to prod/api as surely as a rule on `prod/**` does, so a
    campaign about prod/** must find both, whether or not the inventory holds a matching repository.
    """
    return _segments_overlap(_tokens(first), _tokens(second))


def _tokens(pattern: str) -> tuple[str, ...]:
    segments = compile_pattern(pattern).text.split("/")
    tokens: list[str] = []
    for index, segment in enumerate(segments):
        if segment == "**" and index == len(segments) - 1:
            tokens += ["*", _ANY_SEGMENTS]  # a trailing ** is one segment or more (registries/patterns.py)
        else:
            tokens.append(segment)
    return tuple(tokens)


@functools.cache
def _segments_overlap(first: tuple[str, ...], second: tuple[str, ...]) -> bool:
    if not first or not second:
        return all(token == _ANY_SEGMENTS for token in first + second)
    if first[0] == _ANY_SEGMENTS:
        return _segments_overlap(first[1:], second) or _segments_overlap(first, second[1:])
    if second[0] == _ANY_SEGMENTS:
        return _segments_overlap(first, second[1:]) or _segments_overlap(first[1:], second)
    return _segment_overlap(first[0], second[0]) and _segments_overlap(first[1:], second[1:])


@functools.cache
def _segment_overlap(first: str, second: str) -> bool:
    """Whether two segments with `*` wildcards (within the segment) match a common name."""
    if not first or not second:
        return set(first + second) <= {"*"}
    if first[0] == "*":
        return _segment_overlap(first[1:], second) or _segment_overlap(first, second[1:])
    if second[0] == "*":
        return _segment_overlap(first, second[1:]) or _segment_overlap(first[1:], second)
    return first[0] == second[0] and _segment_overlap(first[1:], second[1:])


@dataclass(frozen=True)
class Scope:
    registry_ids: frozenset[int]  # empty: every registry
    pattern: str
    actions: frozenset[str]

    @classmethod
    def of(cls, campaign: Campaign) -> Scope:
        ids = frozenset(campaign.registries.values_list("pk", flat=True))
        return cls(registry_ids=ids, pattern=campaign.pattern, actions=frozenset(campaign.actions))

    def covers(self, registry_id: int | None) -> bool:
        # A rule for every registry (None) reaches the registries in scope too.
        return registry_id is None or not self.registry_ids or registry_id in self.registry_ids

    def reached(self, registry_id: int | None, pattern: str, actions: Iterable[str]) -> list[str]:
        """The actions in scope that a rule or grant gives; none when it gives none in scope."""
        wanted = [action for action in ACTIONS if action in actions and action in self.actions]
        if not wanted or not self.covers(registry_id):
            return []
        try:
            return wanted if patterns_overlap(pattern, self.pattern) else []
        except InvalidPattern:
            return []  # a rule or grant scope saved with a broken pattern grants nothing

    def granting(self) -> Q:
        """Rows (rules, grants) giving any action in scope, as a filter."""
        found = Q(pk__in=[])
        for action in self.actions:
            found |= Q(**{f"can_{action}": True})
        return found


# --- building the items -------------------------------------------------------------------------------


@dataclass
class Subject:
    """Someone or something with access in scope, and the evidence for it, before it is an item."""

    kind: str
    label: str
    person: User | None = None
    robot: RobotToken | None = None
    credential: Credential | None = None
    rules: list[dict[str, Any]] = field(default_factory=list)
    grants: list[dict[str, Any]] = field(default_factory=list)
    groups: dict[int, DirectoryGroup] = field(default_factory=dict)
    last_used_at: datetime | None = None
    last_used_source: str = ""

    @property
    def actions(self) -> list[str]:
        held = {action for entry in self.rules + self.grants for action in entry["actions"]}
        return [action for action in ACTIONS if action in held]


def subjects_in_scope(scope: Scope, *, now: datetime | None = None) -> list[Subject]:
    """Every person, robot token and registry credential with access in scope, with its evidence."""
    now = now or timezone.now()
    by_group: dict[int, list[tuple[AccessRule, list[str]]]] = {}
    for rule, actions in rules_in_scope(scope, now=now):
        by_group.setdefault(rule.group_id, []).append((rule, actions))
    people = _people(scope, by_group)
    _note_registry_token_use(people)
    return [*people.values(), *_robots(by_group, now), *_credentials(scope)]


def rules_in_scope(scope: Scope, *, now: datetime) -> list[tuple[AccessRule, list[str]]]:
    """The rules in force giving actions in scope, each with those actions."""
    rules = AccessRule.objects.in_force(now=now).filter(scope.granting())
    if scope.registry_ids:
        rules = rules.filter(Q(registry=None) | Q(registry_id__in=scope.registry_ids))
    found = []
    for rule in rules.select_related("group", "registry").order_by("pk"):
        if actions := scope.reached(rule.registry_id, rule.pattern, rule.actions):
            found.append((rule, actions))
    return found


def _people(scope: Scope, by_group: dict[int, list[tuple[AccessRule, list[str]]]]) -> dict[int, Subject]:
    people: dict[int, Subject] = {}
    # Disabled and departed people have no access (registries/effective.py): nothing to review.
    active = Q(user__status=User.Status.ACTIVE, user__is_active=True)
    memberships = GroupMembership.objects.filter(active, group_id__in=by_group).select_related(
        "user", "group__owner"
    )
    for membership in memberships.order_by("user__username", "group__display_name"):
        subject = people.setdefault(membership.user_id, _person(membership.user))
        subject.groups[membership.group_id] = membership.group
        subject.rules += [
            _rule_evidence(rule, actions, membership) for rule, actions in by_group[membership.group_id]
        ]
    for grant, user in _personal_grants(scope):
        if actions := scope.reached(grant.registry_id, grant.scope, grant.actions):
            people.setdefault(user.pk, _person(user)).grants.append(_grant_evidence(grant, actions))
    return people


def _personal_grants(scope: Scope) -> Iterator[tuple[Grant, User]]:
    """Grants to active people: linked by directory id, or by username where the registry's admin
    says its usernames are the directory's (as offboarding finds them)."""
    active = Q(user__status=User.Status.ACTIVE, user__is_active=True)
    by_user = _grants(scope).filter(active, principal_kind=PrincipalKind.USER).select_related("user")
    for grant in by_user:
        assert grant.user is not None  # the filter on the user's status keeps only linked grants
        yield grant, grant.user
    unlinked = list(
        _grants(scope).filter(
            principal_kind=PrincipalKind.USER,
            user=None,
            registry__in=offboarding.registries_linking_usernames(),
        )
    )
    named = {grant.principal_id for grant in unlinked}
    people = {
        user.username: user
        for user in User.objects.filter(username__in=named, status=User.Status.ACTIVE, is_active=True)
    }
    for grant in unlinked:
        if person := people.get(grant.principal_id):
            yield grant, person


def _person(user: User) -> Subject:
    label = f"{user.username} ({user.display_name})" if user.display_name else user.username
    return Subject(kind=Item.Kind.PERSON, label=label, person=user)


def _grants(scope: Scope) -> QuerySet[Grant]:
    grants = Grant.objects.filter(scope.granting()).select_related("registry")
    if scope.registry_ids:
        grants = grants.filter(registry_id__in=scope.registry_ids)
    return grants.order_by("registry__name", "scope", "pk")


def _note_registry_token_use(people: dict[int, Subject]) -> None:
    """Last use: the newest use of any of their Customs registry tokens."""
    tokens = PersonalToken.objects.filter(owner_id__in=people, kind=PersonalToken.Kind.REGISTRY)
    for owner, used in tokens.values("owner").annotate(used=Max("last_used_at")).values_list("owner", "used"):
        if used is not None:
            people[owner].last_used_at, people[owner].last_used_source = used, "Customs registry token"


def _robots(by_group: dict[int, list[tuple[AccessRule, list[str]]]], now: datetime) -> Iterator[Subject]:
    robots = RobotToken.objects.active(now=now).filter(group_id__in=by_group).select_related("group__owner")
    for robot in robots.order_by("name"):
        assert robot.group is not None  # active() keeps only robots with a group
        subject = Subject(
            kind=Item.Kind.ROBOT,
            label=f"{robot.username} (robot of {robot.group})",
            robot=robot,
            groups={robot.group.pk: robot.group},
            last_used_at=robot.last_used_at,
            last_used_source="Customs" if robot.last_used_at else "",
        )
        subject.rules = [_rule_evidence(rule, actions) for rule, actions in by_group[robot.group.pk]]
        yield subject


def _credentials(scope: Scope) -> Iterator[Subject]:
    """Registry credentials reached through the grants listed for the principal they act as."""
    reaching: dict[tuple[int, str, str], list[dict[str, Any]]] = {}
    for grant in _grants(scope).filter(principal_kind__in=MACHINE_PRINCIPALS):
        if actions := scope.reached(grant.registry_id, grant.scope, grant.actions):
            key = (grant.registry_id, grant.principal_kind, grant.principal_id)
            reaching.setdefault(key, []).append(_grant_evidence(grant, actions))
    credentials = (
        Credential.objects.present()
        .filter(enabled=True, owner_kind__in=MACHINE_PRINCIPALS, registry_id__in={key[0] for key in reaching})
        .select_related("registry", "steward", "owner_user", "created_by_user")
        .order_by("registry__name", "name", "pk")
    )
    for credential in credentials:
        assert credential.registry_id is not None
        grants = reaching.get((credential.registry_id, credential.owner_kind, credential.owner_id))
        if grants:
            yield Subject(
                kind=Item.Kind.CREDENTIAL,
                label=f"{credential.get_kind_display()} {credential.name} on {credential.registry}",
                credential=credential,
                grants=grants,
                last_used_at=credential.last_used_at,
                last_used_source=credential.last_used_source if credential.usage_known else "not recorded",
            )


def _rule_evidence(
    rule: AccessRule, actions: list[str], membership: GroupMembership | None = None
) -> dict[str, Any]:
    return {
        "rule": rule.pk,
        "group_pk": rule.group_id,
        "group": rule.group.display_name,
        "group_id": rule.group.external_id,  # the directory's immutable id
        "registry": rule.registry.name if rule.registry else "*",
        "pattern": rule.pattern,
        "actions": actions,
        "expires_at": _iso(rule.expires_at),
        "justification": rule.justification[:500],
        "membership_source": membership.source if membership else "",
        "membership_synced_at": _iso(membership.synced_at) if membership else None,
    }


def _grant_evidence(grant: Grant, actions: list[str]) -> dict[str, Any]:
    # The grant itself, not only its row: a sync between the opening and the close replaces rows.
    return {
        "grant": grant.pk,
        "registry_pk": grant.registry_id,
        "registry": grant.registry.name,
        "principal_kind": grant.principal_kind,
        "principal_id": grant.principal_id,
        "principal_name": grant.principal_name,
        "scope": grant.scope,
        "actions": actions,
        "source": grant.source,
        "observed_at": _iso(grant.observed_at),
    }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


# --- who reviews what ------------------------------------------------------------------------------------


def managers_of(people: Iterable[User]) -> dict[int, User]:
    """Each person's manager, where the directory sent one (SCIM's enterprise extension) and Customs
    knows them: by the SCIM id Customs gave them, else by the directory's own id. User has no
    manager column; this is the one place the attribute is read."""
    wanted: dict[int, tuple[str, str]] = {}
    for person in people:
        if reference := _manager_reference(person):
            wanted[person.pk] = (person.directory, reference)
    ids = {scim for _, reference in wanted.values() if (scim := scim_id(reference))}
    references = {reference for _, reference in wanted.values()}
    candidates = User.objects.filter(Q(scim_id__in=ids) | Q(external_id__in=references))
    by_reference: dict[tuple[str, str], User] = {}
    for candidate in candidates:
        by_reference.setdefault((candidate.directory, candidate.external_id), candidate)
        by_reference[(candidate.directory, str(candidate.scim_id))] = candidate  # ours wins
    return {pk: by_reference[key] for pk, key in wanted.items() if key in by_reference}


def _manager_reference(person: User) -> str:
    extension = person.directory_attributes.get(ENTERPRISE_SCHEMA)
    manager = extension.get("manager") if isinstance(extension, dict) else None
    value = manager.get("value") if isinstance(manager, dict) else manager  # Entra may send a bare id
    return value.strip() if isinstance(value, str) else ""


@dataclass(frozen=True)
class Reviewers:
    people: tuple[User, ...]
    why: str


def reviewers_for(
    campaign: Campaign, subject: Subject, *, named: list[User], managers: dict[int, User]
) -> Reviewers:
    """Who reviews a subject under the campaign's rule; when the rule finds nobody, the named
    reviewers, else the campaign's owner. Nobody reviews their own access."""
    found, why = _by_rule(campaign.reviewer_rule, subject, named, managers)
    chosen = _eligible(found, subject)
    if not chosen and campaign.reviewer_rule != Campaign.ReviewerRule.NAMED:
        chosen, why = _eligible(named, subject), f"named reviewers ({why or 'nobody found'})"
    if not chosen and campaign.owner is not None:
        chosen, why = _eligible([campaign.owner], subject), "the campaign's owner (no other reviewer)"
    return Reviewers(tuple(chosen), why if chosen else "nobody: an admin or the owner decides")


def _by_rule(
    rule: str, subject: Subject, named: list[User], managers: dict[int, User]
) -> tuple[list[User], str]:
    Rule = Campaign.ReviewerRule
    if rule == Rule.NAMED:
        return named, "named reviewers"
    if subject.credential is not None:
        answering = _answers_for(subject.credential)
        if rule == Rule.MANAGER and answering is not None and answering.pk in managers:
            return [managers[answering.pk]], f"manager of {answering.username}, from the directory"
        # A registry credential has no group: who answers for it (its steward or owner) certifies it.
        return ([answering], "who answers for the credential") if answering else ([], "nobody answers for it")
    if rule == Rule.MANAGER and subject.person is not None:
        manager = managers.get(subject.person.pk)
        return ([manager], "manager, from the directory") if manager else ([], "no manager in the directory")
    owners = [group.owner for group in subject.groups.values() if group.owner is not None]
    names = ", ".join(sorted(str(group) for group in subject.groups.values() if group.owner is not None))
    return owners, f"owner of {names}" if owners else "no group owner set"


def _answers_for(credential: Credential) -> User | None:
    return credential.steward or credential.owner_user or credential.created_by_user


def _eligible(people: Iterable[User], subject: Subject) -> list[User]:
    own = subject.person.pk if subject.person is not None else None
    unique = {person.pk: person for person in people if person.may_sign_in and person.pk != own}
    return sorted(unique.values(), key=lambda person: person.username)


# --- creating, opening and repeating campaigns ---------------------------------------------------------


@dataclass(frozen=True)
class CampaignRequest:
    name: str
    pattern: str
    actions: frozenset[str]
    due_at: datetime
    registries: tuple[Registry, ...] = ()
    reviewer_rule: str = Campaign.ReviewerRule.GROUP_OWNER
    reviewers: tuple[User, ...] = ()
    default_decision: str = Decision.CERTIFY
    recurrence: str = Campaign.Recurrence.NONE
    start_at: datetime | None = None  # None: open at once
    description: str = ""


MONTHS = {
    Campaign.Recurrence.MONTHLY: 1,
    Campaign.Recurrence.QUARTERLY: 3,
    Campaign.Recurrence.YEARLY: 12,
}


def after_period(moment: datetime, recurrence: str) -> datetime | None:
    """The next start of a recurring campaign; None for one that runs once."""
    months = MONTHS.get(Campaign.Recurrence(recurrence))
    if months is None:
        return None
    month_index = moment.month - 1 + months
    year, month = moment.year + month_index // 12, month_index % 12 + 1
    # 31 January plus a month is the last day of February, not an error.
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def create_campaign(request: CampaignRequest, *, actor: User | None) -> Campaign:
    """Record a campaign and open it, or schedule its opening (request.start_at)."""
    now = timezone.now()
    _check(request, now)
    with transaction.atomic():
        campaign = Campaign.objects.create(
            name=request.name.strip(),
            description=request.description.strip(),
            pattern=compile_pattern(request.pattern).text,
            actions=[action for action in ACTIONS if action in request.actions],
            reviewer_rule=request.reviewer_rule,
            owner=actor,
            due_at=request.due_at,
            default_decision=request.default_decision,
            recurrence=request.recurrence,
            next_start_at=request.start_at,
        )
        campaign.registries.set(request.registries)
        campaign.reviewers.set(request.reviewers)
        audit.record(actor, AuditAction.ACCESS_REVIEW_CREATED, target=campaign, scope=_scope_detail(campaign))
        if request.start_at is None or request.start_at <= now:
            open_campaign(campaign, actor=actor, now=now)
    return campaign


def _check(request: CampaignRequest, now: datetime) -> None:
    if not request.name.strip():
        raise CampaignRefused("give the campaign a name")
    try:
        compile_pattern(request.pattern)
    except InvalidPattern as exc:
        raise CampaignRefused(f"pattern: {exc}") from None
    if not request.actions or not request.actions <= set(ACTIONS):
        raise CampaignRefused(f"choose actions among {', '.join(ACTIONS)}")
    if request.reviewer_rule == Campaign.ReviewerRule.NAMED and not request.reviewers:
        raise CampaignRefused("name at least one reviewer")
    start = max(request.start_at or now, now)
    if request.due_at <= start:
        raise CampaignRefused("the due date must come after the start")
    following = after_period(start, request.recurrence)
    if following is not None and request.due_at > following:
        raise CampaignRefused("a recurring campaign must be due before its next one starts")


def _scope_detail(campaign: Campaign) -> dict[str, Any]:
    return {
        "pattern": campaign.pattern,
        "actions": campaign.actions,
        "registries": sorted(campaign.registries.values_list("name", flat=True)) or ["*"],
        "reviewer_rule": campaign.reviewer_rule,
        "default_decision": campaign.default_decision,
        "due_at": campaign.due_at,
        "recurrence": campaign.recurrence,
    }


def open_campaign(campaign: Campaign, *, actor: User | None, now: datetime | None = None) -> int:
    """Build the items from effective access now and open the campaign for review. Returns the count."""
    now = now or timezone.now()
    with transaction.atomic():
        locked = Campaign.objects.select_for_update(of=("self",)).select_related("owner").get(pk=campaign.pk)
        if locked.state != Campaign.State.DRAFT:
            raise CampaignRefused(
                f"this campaign is {locked.get_state_display().lower()}: only a draft opens"
            )
        count = _make_items(locked, now)
        locked.state, locked.opened_at = Campaign.State.OPEN, now
        locked.next_start_at = after_period(now, locked.recurrence)
        locked.save(update_fields=["state", "opened_at", "next_start_at"])
        audit.record(
            actor, AuditAction.ACCESS_REVIEW_OPENED, target=locked, items=count, due_at=locked.due_at
        )
    campaign.refresh_from_db()
    return count


def _make_items(campaign: Campaign, now: datetime) -> int:
    subjects = subjects_in_scope(Scope.of(campaign), now=now)
    named = list(campaign.reviewers.all())
    people = [subject.person for subject in subjects if subject.person is not None]
    people += [
        answering
        for subject in subjects
        if subject.credential is not None and (answering := _answers_for(subject.credential))
    ]
    managers = managers_of(people)
    items, chosen = [], []
    for subject in subjects:
        reviewers = reviewers_for(campaign, subject, named=named, managers=managers)
        items.append(_item(campaign, subject, reviewers))
        chosen.append(reviewers.people)
    created = Item.objects.bulk_create(items)
    Through = Item.reviewers.through
    Through._default_manager.bulk_create(
        Through(accessreviewitem_id=item.pk, user_id=person.pk)
        for item, people in zip(created, chosen, strict=True)
        for person in people
    )
    return len(created)


def _item(campaign: Campaign, subject: Subject, reviewers: Reviewers) -> Item:
    return Item(
        campaign=campaign,
        kind=subject.kind,
        person=subject.person,
        robot=subject.robot,
        credential=subject.credential,
        subject=subject.label[:255],
        actions=subject.actions,
        access={"rules": subject.rules, "grants": subject.grants},
        last_used_at=subject.last_used_at,
        last_used_source=subject.last_used_source[:100],
        reviewers_why=reviewers.why[:255],
    )


_DATED = re.compile(r" · \d{4}-\d{2}-\d{2}$")


def start_due_campaigns(now: datetime | None = None) -> list[Campaign]:
    """Open the scheduled drafts whose start has come, and start the next occurrence of each recurring
    campaign whose period has passed. Safe to run from several workers: each start is claimed once."""
    now = now or timezone.now()
    due = Campaign.objects.filter(next_start_at__lte=now).order_by("next_start_at", "pk")
    started = []
    for campaign_id in list(due.values_list("pk", flat=True)):
        if (campaign := _start_due(campaign_id, now)) is not None:
            started.append(campaign)
    return started


def _start_due(campaign_id: int, now: datetime) -> Campaign | None:
    with transaction.atomic():
        claimed = (
            Campaign.objects.select_for_update(skip_locked=True)
            .filter(pk=campaign_id, next_start_at__lte=now)
            .first()
        )
        if claimed is None:
            return None  # another worker has it, or started it already
        if claimed.state == Campaign.State.DRAFT:
            open_campaign(claimed, actor=None, now=now)
            return claimed
        following = _next_occurrence(claimed, now)
        claimed.next_start_at = None  # the new occurrence carries the schedule from here
        claimed.save(update_fields=["next_start_at"])
        open_campaign(following, actor=None, now=now)
        return following


def _next_occurrence(campaign: Campaign, now: datetime) -> Campaign:
    assert campaign.opened_at is not None  # only a campaign that has opened has a next occurrence
    following = Campaign.objects.create(
        name=f"{_DATED.sub('', campaign.name)} · {now:%Y-%m-%d}"[:200],
        description=campaign.description,
        pattern=campaign.pattern,
        actions=campaign.actions,
        reviewer_rule=campaign.reviewer_rule,
        owner=campaign.owner,
        due_at=now + (campaign.due_at - campaign.opened_at),
        default_decision=campaign.default_decision,
        recurrence=campaign.recurrence,
        recurs_from=campaign,
    )
    following.registries.set(campaign.registries.all())
    following.reviewers.set(campaign.reviewers.all())
    audit.record(
        None,
        AuditAction.ACCESS_REVIEW_CREATED,
        target=following,
        recurs_from=campaign.pk,
        scope=_scope_detail(following),
    )
    return following


# --- deciding ----------------------------------------------------------------------------------------------


def may_manage(user: User, campaign: Campaign) -> bool:
    """Open, close and apply: admins, and the reviewer who runs the campaign."""
    return user.has_role(Role.ADMIN) or (campaign.owner_id == user.pk and user.has_role(Role.REVIEWER))


def may_decide(user: User, campaign: Campaign, item: Item, reviewer_ids: set[int]) -> bool:
    """The item's reviewers, the campaign's manager(s); never the person whose access it is."""
    if not user.may_sign_in or item.person_id == user.pk:
        return False
    return user.pk in reviewer_ids or may_manage(user, campaign)


def reviewer_ids(items: Iterable[Item]) -> dict[int, set[int]]:
    """Each item's reviewers' ids, in one query."""
    ids: dict[int, set[int]] = {item.pk: set() for item in items}
    pairs = Item.reviewers.through._default_manager.filter(accessreviewitem_id__in=ids)
    for item_id, user_id in pairs.values_list("accessreviewitem_id", "user_id"):
        ids[item_id].add(user_id)
    return ids


@dataclass(frozen=True)
class Decided:
    decided: int
    skipped: int  # chosen, but not theirs to decide


def decide(
    campaign: Campaign, item_ids: Iterable[int], *, decision: str, comment: str, actor: User
) -> Decided:
    """Certify or revoke the chosen items the actor may decide; the others are counted, not touched.

    A revocation needs a comment: the report says why access went. Decisions can change until the close.
    """
    if decision not in Decision.values:
        raise CampaignRefused("choose certify or revoke")
    if decision == Decision.REVOKE and not comment.strip():
        raise CampaignRefused("say why the access should go: the comment is in the report")
    wanted = set(item_ids)
    with transaction.atomic():
        # Locked so a close cannot slip between reading the state and writing the decisions.
        locked = Campaign.objects.select_for_update().get(pk=campaign.pk)
        if locked.state != Campaign.State.OPEN:
            raise CampaignRefused(
                f"this campaign is {locked.get_state_display().lower()}: decisions are final"
            )
        items = list(locked.items.filter(pk__in=wanted))
        reviewers = reviewer_ids(items)
        allowed = [item for item in items if may_decide(actor, locked, item, reviewers[item.pk])]
        Item.objects.filter(pk__in=[item.pk for item in allowed]).update(
            decision=decision,
            comment=comment.strip(),
            decided_by=actor,
            decided_at=timezone.now(),
            by_default=False,
        )
        if allowed:
            audit.record(
                actor,
                AuditAction.ACCESS_REVIEW_DECIDED,
                target=locked,
                decision=decision,
                comment=comment.strip(),
                items=[item.pk for item in allowed],
                subjects=[item.subject for item in allowed],
            )
    return Decided(decided=len(allowed), skipped=len(wanted) - len(allowed))


# --- closing: the default, then the plan ---------------------------------------------------------------


class Step(enum.StrEnum):
    END_RULE = "end_rule"
    REMOVE_MEMBERSHIP = "remove_membership"
    REMOVE_GRANT = "remove_grant"
    REVOKE_TOKEN = "revoke_token"
    DISABLE_CREDENTIAL = "disable_credential"


class StepState(enum.StrEnum):
    PENDING = "pending"
    DONE = "done"
    FAILED = "failed"
    MANUAL = "manual"  # Customs cannot do it: the step says who can


STEP_LABELS = {
    Step.END_RULE: "End the rule",
    Step.REMOVE_MEMBERSHIP: "Remove from the group",
    Step.REMOVE_GRANT: "Remove the registry's grant",
    Step.REVOKE_TOKEN: "Revoke the robot token",
    Step.DISABLE_CREDENTIAL: "Disable the credential",
}


def _step(key: str, action: Step, subject: str, why: str, *, automated: bool = True) -> dict[str, Any]:
    state = StepState.PENDING if automated else StepState.MANUAL
    return {
        "key": key,
        "action": str(action),
        "subject": subject,
        "why": why,
        "automated": automated,
        "state": str(state),
        "result": "",
        "done_at": None,
    }


def effective_decision(item: Item, campaign: Campaign) -> str:
    return item.decision or campaign.default_decision


def plan(campaign: Campaign, *, now: datetime | None = None) -> dict[int, list[dict[str, Any]]]:
    """What closing now would do, item by item (undecided items taking the default). Reads only."""
    now = now or timezone.now()
    items = list(campaign.items.select_related("person", "robot", "credential__registry"))
    revoked = [item for item in items if effective_decision(item, campaign) == Decision.REVOKE]
    ending = _rules_ending(revoked, now)
    capabilities = _Capabilities()
    return {item.pk: _steps_for(item, ending, capabilities) for item in revoked}


def _rules_ending(revoked: list[Item], now: datetime) -> dict[int, AccessRule]:
    """The rules every subject of which is revoked: nobody certified that the group still needs them.

    Counted against the group as it is now, so someone who joined after the opening (and was never
    reviewed) keeps the rule in force.
    """
    people = {item.person_id for item in revoked if item.person_id is not None}
    robots = {item.robot_id for item in revoked if item.robot_id is not None}
    rule_ids = {entry["rule"] for item in revoked for entry in item.access.get("rules", [])}
    rules = {
        rule.pk: rule
        for rule in AccessRule.objects.in_force(now=now).filter(pk__in=rule_ids).select_related("group")
    }
    groups = {rule.group_id for rule in rules.values()}
    members: dict[int, set[int]] = {group: set() for group in groups}
    active = GroupMembership.objects.filter(
        group_id__in=groups, user__status=User.Status.ACTIVE, user__is_active=True
    )
    for group, user in active.values_list("group_id", "user_id"):
        members[group].add(user)
    machines: dict[int, set[int]] = {group: set() for group in groups}
    for group, robot in (
        RobotToken.objects.active(now=now).filter(group_id__in=groups).values_list("group_id", "pk")
    ):
        if group is not None:
            machines[group].add(robot)
    return {
        pk: rule
        for pk, rule in rules.items()
        if members[rule.group_id] <= people and machines[rule.group_id] <= robots
    }


class _Capabilities:
    """What each registry's connector can do, asked once per plan (asking decrypts its secrets)."""

    def __init__(self) -> None:
        self._known: dict[int, frozenset[Capability]] = {}

    def of(self, registry: Registry) -> frozenset[Capability]:
        if registry.pk not in self._known:
            connector = sync.connector_class_for(registry)
            self._known[registry.pk] = connector.capabilities if connector is not None else frozenset()
        return self._known[registry.pk]


def _steps_for(
    item: Item, ending: dict[int, AccessRule], capabilities: _Capabilities
) -> list[dict[str, Any]]:
    steps = [_end_rule_step(rule) for rule in _item_rules(item, ending)]
    if item.kind == Item.Kind.PERSON:
        steps += _membership_steps(item, ending)
        steps += [_grant_step(grant, capabilities) for grant in item.access.get("grants", [])]
    elif item.kind == Item.Kind.ROBOT:
        steps.append(
            _step(f"robot-{item.robot_id}", Step.REVOKE_TOKEN, item.subject, "revoked in the review")
        )
    elif item.credential is not None and item.credential.registry is not None:
        can = Capability.DISABLE_CREDENTIALS in capabilities.of(item.credential.registry)
        kind = item.credential.registry.kind
        why = "revoked in the review" if can else f"{kind} cannot disable credentials through its API"
        steps.append(
            _step(
                f"credential-{item.credential_id}", Step.DISABLE_CREDENTIAL, item.subject, why, automated=can
            )
        )
    return steps


def _item_rules(item: Item, ending: dict[int, AccessRule]) -> list[AccessRule]:
    ids = dict.fromkeys(entry["rule"] for entry in item.access.get("rules", []))
    return [ending[pk] for pk in ids if pk in ending]


def _end_rule_step(rule: AccessRule) -> dict[str, Any]:
    subject = f"rule #{rule.pk}: {rule.group} may {', '.join(rule.actions)} {rule.pattern}"
    return _step(f"rule-{rule.pk}", Step.END_RULE, subject, "everyone it reaches was revoked")


def _membership_steps(item: Item, ending: dict[int, AccessRule]) -> Iterator[dict[str, Any]]:
    """Out of each group whose rules in scope do not all end, where Customs owns the membership."""
    by_group: dict[int, list[dict[str, Any]]] = {}
    for entry in item.access.get("rules", []):
        by_group.setdefault(entry["group_pk"], []).append(entry)
    for group_pk, entries in by_group.items():
        if all(entry["rule"] in ending for entry in entries):
            continue  # the group's access ends with its rules
        group, source = entries[0]["group"], entries[0]["membership_source"]
        subject = f"{item.subject} in {group}"
        if source == Source.LOCAL:
            yield _step(f"membership-{group_pk}", Step.REMOVE_MEMBERSHIP, subject, "revoked in the review")
            continue
        why = (
            f"the membership comes from the directory ({source}): remove them from {group} there; "
            "Customs cannot change it, and would be given it again at the next sync"
        )
        yield _step(f"membership-{group_pk}", Step.REMOVE_MEMBERSHIP, subject, why, automated=False)


def _grant_step(grant: dict[str, Any], capabilities: _Capabilities) -> dict[str, Any]:
    registry = Registry.objects.filter(pk=grant["registry_pk"]).first()
    can = registry is not None and Capability.WRITE_GRANTS in capabilities.of(registry)
    subject = f"{', '.join(grant['actions'])} on {grant['scope']} in {grant['registry']} ({grant['source']})"
    why = (
        "revoked in the review"
        if can
        else f"{grant['registry']} cannot change grants through Customs: remove it there"
    )
    step = _step(
        f"registry-{grant['registry_pk']}/grant-{grant['grant']}",
        Step.REMOVE_GRANT,
        subject,
        why,
        automated=can,
    )
    step["grant"] = grant
    return step


def close(campaign: Campaign, *, actor: User | None, now: datetime | None = None) -> Campaign:
    """Give undecided items the default, record the plan for every revocation, and hand it to a worker.

    Certified items are settled at once; revoked ones are applied by apply() after this commits.
    """
    now = now or timezone.now()
    with transaction.atomic():
        locked = Campaign.objects.select_for_update().get(pk=campaign.pk)
        if locked.state != Campaign.State.OPEN:
            raise CampaignRefused(
                f"this campaign is {locked.get_state_display().lower()}: only an open one closes"
            )
        defaulted = locked.items.undecided().update(
            decision=locked.default_decision, by_default=True, decided_at=now
        )
        steps = plan(locked, now=now)
        items = list(locked.items.all())
        for item in items:
            if item.decision == Decision.CERTIFY:
                item.outcome, item.applied_at, item.result = Item.Outcome.KEPT, now, "kept"
            else:
                item.steps, item.outcome = steps.get(item.pk, []), Item.Outcome.PENDING
        Item.objects.bulk_update(items, ["outcome", "applied_at", "result", "steps"], batch_size=500)
        locked.state, locked.closed_at, locked.closed_by = Campaign.State.CLOSED, now, actor
        locked.save(update_fields=["state", "closed_at", "closed_by"])
        decisions = Counter(item.decision for item in items)
        audit.record(
            actor,
            AuditAction.ACCESS_REVIEW_CLOSED,
            target=locked,
            defaulted=defaulted,
            default_decision=locked.default_decision,
            certified=decisions[Decision.CERTIFY],
            revoked=decisions[Decision.REVOKE],
        )
        # Imported here: the tasks module imports this one (tasks call domain code, not the reverse).
        from registries import review_tasks

        transaction.on_commit(functools.partial(review_tasks.apply_campaign.delay, locked.pk))
    campaign.refresh_from_db()
    return campaign


# --- applying the plan ------------------------------------------------------------------------------------


def apply(campaign: Campaign) -> Campaign:
    """Carry out every pending step once. Safe to call again: done steps are skipped, and each step
    is idempotent (a membership already gone, a rule already ended, a token already revoked).

    A registry's transient failure leaves its step pending; the others go on, then the first such
    failure is raised for the task's retry. A permanent one fails that step only.
    """
    if campaign.state != Campaign.State.CLOSED:
        return campaign
    retry: TransientError | None = None
    pending = campaign.items.filter(outcome=Item.Outcome.PENDING).order_by("pk")
    for item_id in list(pending.values_list("pk", flat=True)):
        retry = _apply_item(campaign, item_id) or retry
    if not campaign.items.filter(outcome=Item.Outcome.PENDING).exists():
        _finish(campaign)
    if retry is not None:
        raise retry
    return campaign


def _finish(campaign: Campaign) -> None:
    with transaction.atomic():
        won = Campaign.objects.filter(pk=campaign.pk, state=Campaign.State.CLOSED).update(
            state=Campaign.State.APPLIED, applied_at=timezone.now()
        )
        if won:
            outcomes = Counter(campaign.items.values_list("outcome", flat=True))
            audit.record(
                campaign.closed_by,
                AuditAction.ACCESS_REVIEW_APPLIED,
                target=campaign,
                outcomes=dict(outcomes),
            )
    campaign.refresh_from_db()


def _apply_item(campaign: Campaign, item_id: int) -> TransientError | None:
    retry: TransientError | None = None
    with transaction.atomic():
        # Two workers on one campaign (a retry overlapping a redelivery) never run one item twice.
        item = (
            Item.objects.select_for_update(skip_locked=True)
            .filter(pk=item_id, outcome=Item.Outcome.PENDING)
            .first()
        )
        if item is None:
            return None
        now = timezone.now()
        for step in item.steps:
            if step["state"] != StepState.PENDING:
                continue
            try:
                step["result"] = _execute(campaign, item, step, now)[:500]
            except TransientError as exc:
                retry, step["result"] = exc, f"will retry: {exc}"[:500]
            except ConnectorError as exc:
                step["state"], step["result"] = str(StepState.FAILED), str(exc)[:500]
            else:
                step["state"], step["done_at"] = str(StepState.DONE), now.isoformat()
        item.outcome = _outcome(item.steps)
        item.result = (
            "; ".join(f"{STEP_LABELS[Step(s['action'])]}: {s['result'] or s['why']}" for s in item.steps)
            or "nothing left to revoke"
        )
        item.applied_at = now if item.outcome != Item.Outcome.PENDING else None
        item.save(update_fields=["steps", "outcome", "result", "applied_at"])
        if retry is None:
            audit.record(
                campaign.closed_by,
                AuditAction.ACCESS_REVIEW_ITEM_APPLIED,
                target=_target(item),
                campaign=campaign.pk,
                item=item.pk,
                outcome=item.outcome,
                steps=[{"key": s["key"], "state": s["state"], "result": s["result"]} for s in item.steps],
            )
    return retry


def _target(item: Item) -> Any:
    return item.person or item.robot or item.credential or item


def _outcome(steps: list[dict[str, Any]]) -> str:
    states = {step["state"] for step in steps}
    if StepState.PENDING in states:
        return Item.Outcome.PENDING
    if StepState.FAILED in states:
        return Item.Outcome.FAILED
    if StepState.MANUAL in states:
        return Item.Outcome.MANUAL
    return Item.Outcome.REVOKED


def _execute(campaign: Campaign, item: Item, step: dict[str, Any], now: datetime) -> str:
    """Carry out one step; returns what was done. Raises ConnectorError when a registry refuses."""
    kind, _, pk = step["key"].rpartition("-")
    action = Step(step["action"])
    if action == Step.END_RULE:
        reason = f"access review: {campaign.name}"
        return end_rule(int(pk), actor=campaign.closed_by, reason=reason, now=now, campaign=campaign.pk)
    if action == Step.REMOVE_MEMBERSHIP:
        return _remove_membership(item, int(pk))
    if action == Step.REVOKE_TOKEN:
        robot = RobotToken.objects.filter(pk=int(pk)).first()
        if robot is None:
            return "already deleted"
        revoked = account_services.revoke_robot_token(robot, actor=campaign.closed_by)
        return "revoked" if revoked else "already revoked"
    if action == Step.DISABLE_CREDENTIAL:
        credential = Credential.objects.filter(pk=int(pk)).select_related("registry").first()
        if credential is None or credential.gone_at is not None or credential.registry is None:
            return "already gone from the registry"
        return offboarding.disable_credential(credential)
    if action == Step.REMOVE_GRANT:
        grant = step["grant"]
        return offboarding.remove_grant(grant["registry_pk"], grant, reason=f"access review: {campaign.name}")
    raise PermanentError(f"no way to carry out {step['action']} on {step['key']}")


def end_rule(
    rule_id: int, *, actor: User | None, reason: str, now: datetime | None = None, **detail: Any
) -> str:
    """End a rule now (its expiry set to now), audited as any change to a rule is."""
    now = now or timezone.now()
    rule = AccessRule.objects.select_related("group", "registry").filter(pk=rule_id).first()
    if rule is None:
        return "already deleted"
    if rule.expires_at is not None and rule.expires_at <= now:
        return "already ended"
    before = rule.expires_at
    AccessRule.objects.filter(pk=rule.pk).update(expires_at=now, updated_at=now)
    audit.record(
        actor,
        AuditAction.ACCESS_RULE_UPDATED,
        target=rule,
        before={"expires_at": before},
        after={"expires_at": now},
        reason=reason,
        **detail,
    )
    # Drift follows a rule change at once (registries/services.py does the same for edits).
    from registries import tasks

    transaction.on_commit(functools.partial(tasks.check_access_drift.delay, rule.registry_id))
    return "ended"


def _remove_membership(item: Item, group_pk: int) -> str:
    if item.person_id is None:
        return "the person's account was deleted"
    membership = GroupMembership.objects.filter(user_id=item.person_id, group_id=group_pk).first()
    if membership is None:
        return "already gone"
    if membership.source != Source.LOCAL:
        # Planned as Customs' own; the directory has taken it over since.
        raise PermanentError(
            f"the membership now comes from the directory ({membership.source}): remove it there"
        )
    membership.delete()
    return "removed"


# --- reminders ------------------------------------------------------------------------------------------


def reminder_stage(campaign: Campaign, now: datetime) -> int | None:
    """The reminder due now (days before the due date), the most urgent one that has come."""
    left = campaign.due_at - now
    if left <= timedelta(0):
        return None
    stages = [days for days in REMINDER_DAYS if left <= timedelta(days=days)]
    return min(stages) if stages else None


def send_reminders(now: datetime | None = None) -> int:
    """E-mail each reviewer with undecided items in a campaign nearing its due date, once per stage.

    A mail server that refuses leaves nothing recorded: the next run tries again.
    """
    now = now or timezone.now()
    sent = 0
    for campaign in Campaign.objects.filter(state=Campaign.State.OPEN, due_at__gt=now).order_by("due_at"):
        stage = reminder_stage(campaign, now)
        if stage is not None:
            sent += _remind(campaign, stage)
    return sent


def _remind(campaign: Campaign, stage: int) -> int:
    waiting = Counter(
        Item.reviewers.through._default_manager.filter(
            accessreviewitem__campaign=campaign, accessreviewitem__decision=""
        ).values_list("user_id", flat=True)
    )
    sent = 0
    reviewers = User.objects.filter(pk__in=waiting, status=User.Status.ACTIVE, is_active=True).exclude(
        email=""
    )
    for reviewer in reviewers.order_by("pk"):
        context = {
            "campaign": campaign,
            "reviewer": reviewer,
            "count": waiting[reviewer.pk],
            "link": f"{settings.SITE_URL}{reverse('registries:review', args=[campaign.pk])}?mine=1",
            "site_url": settings.SITE_URL,
            "stages": " and ".join(str(days) for days in REMINDER_DAYS),
        }
        try:
            sent += notify.send_email_once(
                f"review:{campaign.pk}:{stage}d:{reviewer.pk}",
                to=reviewer.email,
                subject=f"[Customs] {waiting[reviewer.pk]} access reviews due {campaign.due_at:%Y-%m-%d}",
                template="registries/reviews/reminder_email",
                context=context,
            )
        except notify.DeliveryFailed as failure:
            logger.warning("access review %s: reminder to %s not sent: %s", campaign.pk, reviewer.pk, failure)
    return sent


# --- the report ------------------------------------------------------------------------------------------

REPORT_COLUMNS = (
    "campaign",
    "item",
    "kind",
    "subject",
    "actions",
    "access",
    "last_used_at",
    "last_used_source",
    "reviewers",
    "decision",
    "by_default",
    "comment",
    "decided_by",
    "decided_at",
    "outcome",
    "result",
    "applied_at",
)


def access_summary(item: Item) -> str:
    """The evidence in one line: each rule with the group and membership, each grant with its source."""
    parts = [
        f"{', '.join(e['actions'])} on {e['pattern']} ({e['registry']}) via {e['group']}, rule #{e['rule']}"
        + (f", {e['membership_source']} membership" if e["membership_source"] else "")
        for e in item.access.get("rules", [])
    ]
    parts += [
        f"{', '.join(g['actions'])} on {g['scope']} ({g['registry']}) by {g['source']}"
        for g in item.access.get("grants", [])
    ]
    return "; ".join(parts)


def report_items(campaign: Campaign) -> QuerySet[Item]:
    return campaign.items.select_related("decided_by").prefetch_related("reviewers").order_by("subject", "pk")


def report_rows(campaign: Campaign) -> Iterator[list[Any]]:
    """One row per item, cells as REPORT_COLUMNS names them."""
    for item in report_items(campaign):
        yield [
            campaign.name,
            item.pk,
            item.kind,
            item.subject,
            ",".join(item.actions),
            access_summary(item),
            _iso(item.last_used_at) or "",
            item.last_used_source,
            ",".join(sorted(person.username for person in item.reviewers.all())),
            item.decision,
            "true" if item.by_default else "false",
            item.comment,
            item.decided_by.username if item.decided_by else ("default" if item.by_default else ""),
            _iso(item.decided_at) or "",
            item.outcome,
            item.result,
            _iso(item.applied_at) or "",
        ]


@dataclass(frozen=True)
class Summary:
    items: int
    by_decision: dict[str, int]  # "" (undecided), certify, revoke
    by_default: int
    by_outcome: dict[str, int]

    @property
    def undecided(self) -> int:
        return self.by_decision.get("", 0)


def summary(campaign: Campaign) -> Summary:
    rows = list(campaign.items.values_list("decision", "by_default", "outcome"))
    return Summary(
        items=len(rows),
        by_decision=dict(Counter(decision for decision, _, _ in rows)),
        by_default=sum(1 for _, default, _ in rows if default),
        by_outcome=dict(Counter(outcome for _, _, outcome in rows)),
    )
