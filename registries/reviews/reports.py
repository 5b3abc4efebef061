"""The report: one row per item (CSV, PDF and the page), the evidence in one line, and the counts."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from django.db.models import QuerySet

from registries.reviews.base import Campaign, Item, iso_or_none

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
            iso_or_none(item.last_used_at) or "",
            item.last_used_source,
            ",".join(sorted(person.username for person in item.reviewers.all())),
            item.decision,
            "true" if item.by_default else "false",
            item.comment,
            item.decided_by.username if item.decided_by else ("default" if item.by_default else ""),
            iso_or_none(item.decided_at) or "",
            item.outcome,
            item.result,
            iso_or_none(item.applied_at) or "",
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
