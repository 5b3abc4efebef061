"""The base-image finding kinds, and the findings a refresh's decisions call for."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from operator import itemgetter
from typing import Any

from portal import findings
from portal.findings import FindingKind, Observation, Severity
from registries.policy.catalog import Catalog, Verdict
from registries.policy.lineage.base import Decision, Method
from registries.policy.lineage.inventory import RepositoryInfo

# Severities: a banned base is known-bad content (a vulnerable or compromised image someone decided
# nobody may run), so high. An unapproved base and a too-old base are policy breaches with unknown
# or ageing content: medium, like a stale credential. A deprecated base is still allowed and comes
# with its replacement: low, a nudge. An unknown base is missing evidence, not a breach (squashed
# and FROM scratch images are legitimately unknown by layers): info, so it is visible and counted
# without drowning the real breaches.

BASE_BANNED = findings.register(
    FindingKind(
        slug="base_banned",
        severity=Severity.HIGH,
        title="Built on a banned base image",
        explanation="The image's base is a catalog entry marked banned: rebuild it on the replacement.",
    )
)
BASE_UNAPPROVED = findings.register(
    FindingKind(
        slug="base_unapproved",
        severity=Severity.MEDIUM,
        title="Built on an unapproved base image",
        explanation="The image's base is not in the base-image catalog, or is a tag or digest the "
        "catalog entry does not allow.",
    )
)
BASE_TOO_OLD = findings.register(
    FindingKind(
        slug="base_too_old",
        severity=Severity.MEDIUM,
        title="Base image older than its maximum age",
        explanation="The base was built longer ago than its catalog entry allows: rebuild on a current "
        "image of the same base.",
    )
)
BASE_DEPRECATED = findings.register(
    FindingKind(
        slug="base_deprecated",
        severity=Severity.LOW,
        title="Built on a deprecated base image",
        explanation="Still allowed, but the catalog names a replacement to move to.",
    )
)
BASE_UNKNOWN = findings.register(
    FindingKind(
        slug="base_unknown",
        severity=Severity.INFO,
        title="Base image unknown",
        explanation="No base annotation, no provenance, and no catalog image whose layers the image "
        "starts with. Add the OCI base annotations to the build, or add the base to the catalog.",
    )
)
LINEAGE_KINDS = (BASE_BANNED, BASE_UNAPPROVED, BASE_TOO_OLD, BASE_DEPRECATED, BASE_UNKNOWN)
_VERDICT_KINDS = {
    Verdict.BANNED: BASE_BANNED,
    Verdict.UNAPPROVED: BASE_UNAPPROVED,
    Verdict.DEPRECATED: BASE_DEPRECATED,
}


@dataclass(frozen=True, slots=True)
class Subject:
    """What a finding needs to know of the artifact it is about."""

    pk: int
    digest: str
    index_id: int | None
    platform: str
    where: RepositoryInfo

    @property
    def label(self) -> str:
        return f"{self.where.registry_name}: {self.where.path}@{self.digest[:19]}"


Hit = tuple[FindingKind, str, dict[str, Any]]  # kind, summary, evidence


def observe(
    decisions: Mapping[int, Decision], subjects: Mapping[int, Subject], catalog: Catalog, now: datetime
) -> dict[FindingKind, list[Observation]]:
    """The findings the decisions call for, on what tags point at: images, and indexes by platform."""
    platforms: dict[int, list[tuple[str, Decision]]] = defaultdict(list)
    for pk, subject in subjects.items():
        if subject.index_id is not None and pk in decisions:
            platforms[subject.index_id].append((subject.platform, decisions[pk]))
    # Most artifacts share a decision with many others (one per catalog image they are built on), so
    # what a decision calls for is worked out once per distinct decision.
    hits_of: dict[Decision, list[Hit]] = {}

    def hits(decision: Decision) -> list[Hit]:
        if (known := hits_of.get(decision)) is None:
            known = hits_of[decision] = _hits(decision, catalog, now)
        return known

    observed: dict[FindingKind, list[Observation]] = {kind: [] for kind in LINEAGE_KINDS}
    for pk, decision in decisions.items():
        found = subjects.get(pk)
        if found is None or found.index_id is not None:
            continue
        if parts := sorted(platforms.get(pk, []), key=itemgetter(0)):
            for kind, by_platform in _by_kind(parts, hits).items():
                observed[kind].append(_index_observation(kind, found, by_platform))
        else:
            for kind, summary, evidence in hits(decision):
                observed[kind].append(_observation(found, summary, evidence))
    return observed


def _hits(decision: Decision, catalog: Catalog, now: datetime) -> list[Hit]:
    """The kinds of finding a decision calls for, each with its summary and evidence."""
    evidence = _evidence(decision, catalog)
    if decision.method == Method.UNKNOWN:
        reason = decision.notes[-1] if decision.notes else "no signal"
        return [(BASE_UNKNOWN, f"base image unknown ({reason})", evidence)]
    found: list[Hit] = []
    judgement = decision.judgement
    if judgement is not None and (kind := _VERDICT_KINDS.get(judgement.verdict)):
        found.append((kind, judgement.message, evidence))
    entry = catalog.entry(decision.entry_id) if decision.entry_id is not None else None
    if entry is not None and entry.max_age_days is not None and decision.base_created is not None:
        age = now - decision.base_created
        if age > timedelta(days=entry.max_age_days):
            summary = f"its base {decision.reference} is {age.days} days old (at most {entry.max_age_days})"
            found.append(
                (
                    BASE_TOO_OLD,
                    summary,
                    {**evidence, "age_days": age.days, "max_age_days": entry.max_age_days},
                )
            )
    return found


def _by_kind(
    parts: list[tuple[str, Decision]], hits: Callable[[Decision], list[Hit]]
) -> dict[FindingKind, list[tuple[str, str, dict[str, Any]]]]:
    grouped: dict[FindingKind, list[tuple[str, str, dict[str, Any]]]] = defaultdict(list)
    for platform, decision in parts:
        for kind, summary, evidence in hits(decision):
            grouped[kind].append((platform, summary, evidence))
    return grouped


def _observation(subject: Subject, summary: str, evidence: dict[str, Any]) -> Observation:
    label = subject.label
    return Observation(
        subject_key=f"registry-{subject.where.registry_id}/artifact-{subject.pk}",
        summary=f"{label}: {summary}",
        subject_type="registries.artifact",
        subject_id=str(subject.pk),
        subject_label=label,
        detail={"artifact": subject.pk, **evidence},
    )


def _index_observation(
    kind: FindingKind, subject: Subject, by_platform: list[tuple[str, str, dict[str, Any]]]
) -> Observation:
    """One finding per image a tag names, however many platforms it has; each platform's evidence."""
    platform, summary, evidence = by_platform[0]
    said = f"{platform}: {summary}" if len(by_platform) == 1 else f"{len(by_platform)} platforms, {summary}"
    observation = _observation(subject, said, evidence)
    observation.detail["platforms"] = {name: platform_evidence for name, _, platform_evidence in by_platform}
    return observation


def _evidence(decision: Decision, catalog: Catalog) -> dict[str, Any]:
    entry = catalog.entry(decision.entry_id) if decision.entry_id is not None else None
    evidence: dict[str, Any] = {
        "method": decision.method,
        "base_reference": decision.reference or None,
        "base_digest": decision.base_digest or None,
        "base_entry": entry.name if entry else None,
        "matched_layers": decision.matched_layers,
        "base_created": decision.base_created.isoformat() if decision.base_created else None,
        "notes": list(decision.notes),
    }
    if decision.judgement is not None:
        evidence["verdict"] = str(decision.judgement.verdict)
        evidence["replacement"] = decision.judgement.replacement or None
    return evidence
