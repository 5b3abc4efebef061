"""Posture checks across registries: each registry's own security settings, judged, scored and charted.

A connector that declares Capability.POSTURE reads the vendor's settings at sync and judges each
check per subject (registries/connectors/base.py PostureFact); sync stores the facts. Customs adds
what only it knows: which credentials never expire (hygiene's list) and which registries it is the
token server of. Evaluating a registry then makes the findings match its failing facts (one kind per
check, scoped to the registry) and records the day's score, so the posture page can chart it.

The score is the share of passing subjects per check, weighted by the check's severity: a public
repository among a hundred costs little, anonymous pull on the whole registry costs its full weight.
Checks nothing is known about (only "unknown" facts) are left out rather than counted as failing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from portal import findings
from portal.findings import FindingKind, Observation, Severity
from registries import hygiene
from registries.connectors import base
from registries.connectors.base import PostureCheck, PostureState
from registries.models import Credential, PostureFact, PostureSnapshot, Registry, SyncRun
from registries.patterns import InvalidPattern, Pattern, compile_pattern

# Checks whose failing subjects are credentials that hygiene already judges one by one: posture
# scores them and links to hygiene's findings rather than opening a second finding for one cause.
HYGIENE_KINDS: dict[PostureCheck, FindingKind] = {
    PostureCheck.NO_EXPIRY: hygiene.NEVER_EXPIRES,
    PostureCheck.ACR_ADMIN_USER: hygiene.SHARED_ADMIN,
}
WEIGHTS = {
    Severity.CRITICAL: 8,
    Severity.HIGH: 4,
    Severity.MEDIUM: 2,
    Severity.LOW: 1,
    Severity.INFO: 0,
}
SAMPLE = 3  # passing subjects named in the evidence of the row that stands for all of them

KINDS: dict[PostureCheck, FindingKind] = {
    PostureCheck.ANONYMOUS_PULL: findings.register(
        FindingKind(
            slug="posture_anonymous_pull",
            severity=Severity.HIGH,
            title="Anonymous pull enabled",
            explanation="Anyone who reaches the registry may pull every repository without signing in: "
            "images often carry internal code, configuration and the occasional secret.",
        )
    ),
    PostureCheck.PUBLIC_REPOSITORY: findings.register(
        FindingKind(
            slug="posture_public_repository",
            severity=Severity.MEDIUM,
            title="Public repository",
            explanation="Anyone may pull this repository (or project) without signing in. Often meant "
            "(open-source images): then suppress the finding with the reason; otherwise make it private.",
        )
    ),
    PostureCheck.SSO_NOT_ENFORCED: findings.register(
        FindingKind(
            slug="posture_sso_not_enforced",
            severity=Severity.HIGH,
            title="SSO not enforced by the registry",
            explanation="People can sign in to the registry with passwords it keeps itself, where the "
            "registry could sign them in through the directory: those accounts outlive a departure "
            "unless someone remembers them.",
        )
    ),
    PostureCheck.ADMIN_ACCOUNT: findings.register(
        FindingKind(
            slug="posture_admin_account",
            severity=Severity.HIGH,
            title="Admin or root account in use",
            explanation="A do-anything account (a cloud account's root user, a registry's local admin) "
            "is used or holds keys: whoever has it can change everything, and its use names nobody.",
        )
    ),
    PostureCheck.TAG_MUTABLE: findings.register(
        FindingKind(
            slug="posture_tag_mutable",
            severity=Severity.MEDIUM,
            title="Production tags can be moved",
            explanation="A repository matching the production pattern lets a tag be pushed again: what "
            "a deployment pulls by tag can change under it without a change anyone reviewed.",
        )
    ),
    PostureCheck.SCAN_ON_PUSH_OFF: findings.register(
        FindingKind(
            slug="posture_scan_on_push_off",
            severity=Severity.MEDIUM,
            title="Scan on push off",
            explanation="Images pushed here are not scanned for known vulnerabilities as they arrive: "
            "nothing opens a door by itself, but a vulnerable image goes unnoticed until someone looks.",
        )
    ),
    PostureCheck.MEMBERS_WITHOUT_SSO: findings.register(
        FindingKind(
            slug="posture_members_without_sso",
            severity=Severity.MEDIUM,
            title="Organisation member without SSO",
            explanation="A member of the registry's organisation signs in without the organisation's "
            "SSO (Docker Hub flags them as guests): the directory does not control that account.",
        )
    ),
}
# The order checks are listed in on the pages: the whole registry first, then its parts.
ORDER = list(PostureCheck)


def kind_of(check: str) -> FindingKind:
    """The finding kind a failing check stands for: posture's own, or hygiene's."""
    key = PostureCheck(check)
    return KINDS.get(key) or HYGIENE_KINDS[key]


def findings_url(slug: str, registry_id: int) -> str:
    """The findings list filtered to one kind in one registry."""
    return f"{reverse('portal:findings')}?kind={slug}&scope=registry-{registry_id}"


# --- which repositories are production ------------------------------------------------------------


def production_patterns() -> list[Pattern]:
    """POSTURE_PRODUCTION_REPOSITORIES as patterns (the access-rule language: `prod/**`, `*/release`)."""
    texts = settings.POSTURE_PRODUCTION_REPOSITORIES
    try:
        return [compile_pattern(text) for text in texts if text.strip()]
    except InvalidPattern as exc:
        raise ImproperlyConfigured(f"POSTURE_PRODUCTION_REPOSITORIES: {exc}") from None


def production_repositories(names: Iterable[str]) -> list[str]:
    patterns = production_patterns()
    return sorted(name for name in names if any(p.matches(name) for p in patterns))


# --- storing what a registry said ------------------------------------------------------------------


def store_facts(registry: Registry, run: SyncRun | None, facts: Sequence[base.PostureFact]) -> int:
    """Replace the registry's own facts with a complete read. Returns how many rows it took."""
    now = timezone.now()
    judged = [_as_customs_sees_it(registry, fact) for fact in facts]
    rows = _rows(registry, judged, source=PostureFact.Source.REGISTRY, now=now, run=run)
    with transaction.atomic():
        PostureFact.objects.filter(registry=registry, source=PostureFact.Source.REGISTRY).delete()
        PostureFact.objects.bulk_create(rows, batch_size=1000)
    return len(rows)


def _as_customs_sees_it(registry: Registry, fact: base.PostureFact) -> base.PostureFact:
    """A registry behind Customs' token server signs people in through Customs, hence the directory:
    the connector only sees a token realm, Customs knows whose it is."""
    if (
        fact.check == PostureCheck.SSO_NOT_ENFORCED
        and fact.state == PostureState.UNKNOWN
        and registry.token_service
    ):
        evidence = (
            f"Customs is this registry's token server (service {registry.token_service}): people sign "
            "in with Customs registry tokens, tied to their directory account"
        )
        return base.PostureFact(fact.check, PostureState.OK, evidence, fact.subject, fact.evidence_url)
    return fact


def _rows(
    registry: Registry,
    facts: Sequence[base.PostureFact],
    *,
    source: str,
    now: datetime,
    run: SyncRun | None = None,
) -> list[PostureFact]:
    """One row per failing or unknown subject; the passing subjects of a check as one counted row."""
    rows: list[PostureFact] = []
    passing: dict[str, list[base.PostureFact]] = {}
    for fact in facts:
        if fact.state == PostureState.OK and fact.subject:
            passing.setdefault(fact.check, []).append(fact)
            continue
        rows.append(_row(registry, fact.check, fact.state, fact.evidence, fact.subject, fact.evidence_url))
    for check, passed in passing.items():
        if len(passed) == 1:
            only = passed[0]
            rows.append(
                _row(registry, check, PostureState.OK, only.evidence, only.subject, only.evidence_url)
            )
            continue
        names = ", ".join(sorted(f.subject for f in passed)[:SAMPLE])
        evidence = f"{len(passed)} pass, e.g. {names}" + ("…" if len(passed) > SAMPLE else "")
        rows.append(_row(registry, check, PostureState.OK, evidence, "", "", count=len(passed)))
    for row in rows:
        row.source, row.observed_at, row.run = source, now, run
    return rows


def _row(
    registry: Registry, check: str, state: str, evidence: str, subject: str, url: str, *, count: int = 1
) -> PostureFact:
    return PostureFact(
        registry=registry,
        check_name=check,
        state=state,
        subject=subject[:500],
        evidence=evidence[:1000],
        evidence_url=url[:1000],
        count=count,
    )


# --- what Customs knows itself ----------------------------------------------------------------------


def customs_rows(registry: Registry, now: datetime) -> list[PostureFact]:
    """Credentials without expiry, counted from the credential list (hygiene judges each one)."""
    held = Credential.objects.present().filter(registry=registry, enabled=True)
    never_expiring = held.filter(expiry_known=True, expires_at=None)
    never = never_expiring.count()
    expiring = held.exclude(expires_at=None).count()
    unknown = held.filter(expiry_known=False, expires_at=None).count()
    credentials_url = f"{reverse('registries:credentials')}?registry={registry.pk}&gone=false"
    check, rows = PostureCheck.NO_EXPIRY, []
    if never:
        names = never_expiring.order_by("name").values_list("name", flat=True)[:SAMPLE]
        shown = ", ".join(names) + ("…" if never > SAMPLE else "")
        evidence = f"{never} enabled credentials never expire: {shown}"
        rows.append(
            _row(
                registry,
                check,
                PostureState.FAILING,
                evidence,
                "",
                findings_url(hygiene.NEVER_EXPIRES.slug, registry.pk),
                count=never,
            )
        )
    if expiring:
        evidence = f"{expiring} enabled credentials expire"
        rows.append(_row(registry, check, PostureState.OK, evidence, "", credentials_url, count=expiring))
    if unknown:
        evidence = f"{unknown} enabled credentials whose expiry the registry does not report"
        url = f"{credentials_url}&expires=unknown"
        rows.append(_row(registry, check, PostureState.UNKNOWN, evidence, "", url, count=unknown))
    for row in rows:
        row.source, row.observed_at = PostureFact.Source.CUSTOMS, now
    return rows


# --- evaluation: findings and the day's score -------------------------------------------------------


@dataclass
class Tally:
    ok: int = 0
    failing: int = 0
    unknown: int = 0

    @property
    def known(self) -> int:
        return self.ok + self.failing

    @property
    def share(self) -> float | None:
        """The share of known subjects that pass; None when nothing is known."""
        return self.ok / self.known if self.known else None

    @property
    def percent(self) -> int | None:
        share = self.share
        return None if share is None else round(100 * share)

    def add(self, state: str, count: int) -> None:
        setattr(self, state, getattr(self, state) + count)


def tallies(facts: Iterable[PostureFact]) -> dict[str, Tally]:
    """Subjects per check and state, checks in page order."""
    found: dict[str, Tally] = {}
    for fact in facts:
        found.setdefault(fact.check_name, Tally()).add(fact.state, fact.count)
    return {check.value: found[check.value] for check in ORDER if check.value in found}


def score(by_check: dict[str, Tally]) -> int | None:
    """0-100: each known check's passing share, weighted by its severity; None when nothing is known."""
    weighted = total = 0.0
    for check, tally in by_check.items():
        share = tally.share
        if share is None:
            continue
        weight = WEIGHTS.get(Severity(kind_of(check).severity), 1)
        weighted, total = weighted + weight * share, total + weight
    return round(100 * weighted / total) if total else None


@dataclass
class Evaluation:
    score: int | None
    tallies: dict[str, Tally]
    by_kind: dict[str, findings.ReconcileResult] = field(default_factory=dict)


def evaluate(registry: Registry, *, now: datetime | None = None) -> Evaluation:
    """Refresh Customs' own facts, make the findings match the failing facts, record today's score."""
    now = now or timezone.now()
    own = customs_rows(registry, now)
    with transaction.atomic():
        PostureFact.objects.filter(registry=registry, source=PostureFact.Source.CUSTOMS).delete()
        PostureFact.objects.bulk_create(own)
    facts = list(PostureFact.objects.filter(registry=registry))
    result = Evaluation(score=None, tallies=tallies(facts))
    scope = f"registry-{registry.pk}"
    for check, kind in KINDS.items():
        failing = [f for f in facts if f.check_name == check and f.state == PostureState.FAILING]
        observations = [_observation(registry, fact) for fact in failing]
        result.by_kind[kind.slug] = findings.reconcile(kind, observations, scope=scope, now=now)
    result.score = score(result.tallies)
    record_snapshot(registry, result.tallies, result.score, day=timezone.localdate(now), now=now)
    return result


def evaluate_all(*, now: datetime | None = None) -> dict[str, int | None]:
    """Every registry, e.g. daily, so the chart has a point per day even for a registry not synced."""
    return {registry.name: evaluate(registry, now=now).score for registry in Registry.objects.all()}


def finding_subject_key(registry: Registry | int, subject: str) -> str:
    pk = registry if isinstance(registry, int) else registry.pk
    return f"registry-{pk}/{subject or 'registry'}"


def _observation(registry: Registry, fact: PostureFact) -> Observation:
    where = f"{registry.name}: {fact.subject}" if fact.subject else registry.name
    return Observation(
        subject_key=finding_subject_key(registry, fact.subject),
        summary=f"{where}: {fact.evidence}",
        subject_type="registries.registry",
        subject_id=str(registry.pk),
        subject_label=where,
        detail={
            "check": fact.check_name,
            "subject": fact.subject,
            "evidence": fact.evidence,
            "evidence_url": fact.evidence_url,
            "source": fact.source,
            "observed_at": fact.observed_at.isoformat(),
        },
    )


def record_snapshot(
    registry: Registry, by_check: dict[str, Tally], value: int | None, *, day: date, now: datetime
) -> PostureSnapshot:
    snapshot, _ = PostureSnapshot.objects.update_or_create(
        registry=registry,
        day=day,
        defaults={
            "score": value,
            "passing": sum(t.ok for t in by_check.values()),
            "failing": sum(t.failing for t in by_check.values()),
            "unknown": sum(t.unknown for t in by_check.values()),
            "checks": {
                check: {"ok": t.ok, "failing": t.failing, "unknown": t.unknown, "score": t.percent}
                for check, t in by_check.items()
            },
            "taken_at": now,
        },
    )
    return snapshot
