"""Demo people, directory groups and access rules, so the access pages have something to explain.

Idempotent like the rest of the demo: groups and people are matched by their directory ids, and
a rule is only added when its group has none with the same pattern.
"""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from accounts.models import DirectoryGroup, GroupMembership, Source, User
from registries import services
from registries.models import AccessRule, Registry

DIRECTORY = "demo"

# group id → (display name, members)
GROUPS = {
    "grp-platform": ("Platform engineering", ["ana.platform", "bo.platform"]),
    "grp-payments": ("Payments developers", ["chen.payments", "dara.payments", "bo.platform"]),
    "grp-web": ("Web developers", ["eli.web", "fay.web"]),
    "grp-contractors": ("Contractors (Acme Consulting)", ["gus.contractor"]),
}

# group id → (pattern, actions, days until expiry or None, justification)
RULES = [
    ("grp-platform", "library/**", {"pull", "push"}, None, "Platform maintains the base images."),
    ("grp-payments", "payments/**", {"pull", "push"}, None, "Payments ship their own services."),
    ("grp-payments", "library/**", {"pull"}, None, "Services build on the approved base images."),
    ("grp-web", "web/*", {"pull", "push"}, None, "The web team owns the shop front end."),
    ("grp-web", "library/**", {"pull"}, None, "Services build on the approved base images."),
    ("grp-contractors", "payments/api", {"pull"}, 10, "Acme audits the payments API until mid-December."),
]


def seed(registry: Registry) -> int:
    """Create what is missing; returns the number of rules added."""
    groups = {external_id: _group(external_id, name) for external_id, (name, _members) in GROUPS.items()}
    for external_id, (_name, members) in GROUPS.items():
        for username in members:
            GroupMembership.objects.get_or_create(
                user=_person(username), group=groups[external_id], defaults={"source": Source.SCIM}
            )
    added = 0
    for external_id, pattern, actions, days, why in RULES:
        group = groups[external_id]
        if AccessRule.objects.filter(group=group, pattern=pattern).exists():
            continue
        request = services.RuleRequest(
            group=group,
            pattern=pattern,
            actions=frozenset(actions),
            justification=why,
            registry=registry if days else None,
            expires_at=timezone.now() + timedelta(days=days) if days else None,
        )
        services.save_access_rule(None, request, actor=None)
        added += 1
    return added


def _group(external_id: str, name: str) -> DirectoryGroup:
    group, _ = DirectoryGroup.objects.get_or_create(
        directory=DIRECTORY,
        external_id=external_id,
        defaults={"display_name": name, "source": Source.SCIM},
    )
    return group


def _person(username: str) -> User:
    first, _, team = username.partition(".")
    person, _ = User.objects.get_or_create(
        username=f"{username}@demo.example",
        defaults={
            "directory": DIRECTORY,
            "external_id": f"demo-{username}",
            "source": Source.SCIM,
            "display_name": f"{first.capitalize()} {team.capitalize()}",
            "first_name": first.capitalize(),
            "last_name": team.capitalize(),
            "email": f"{username}@demo.example",
        },
    )
    return person
