from __future__ import annotations

from dataclasses import dataclass

from django.http import HttpRequest
from django.urls import reverse

from accounts.roles import Role


@dataclass(frozen=True)
class NavItem:
    label: str
    url_name: str
    role: Role
    section: str  # the path (first segments) the item owns, to mark it current; the longest match wins


NAVIGATION = [
    NavItem("Dashboard", "portal:dashboard", Role.DEVELOPER, ""),
    NavItem("Registries", "registries:list", Role.DEVELOPER, "registries"),
    NavItem("Repositories", "registries:repositories", Role.DEVELOPER, "repositories"),
    NavItem("Access", "accounts:access", Role.REVIEWER, "access"),
    NavItem("Rules", "registries:rules", Role.REVIEWER, "access/rules"),
    NavItem("Explorer", "registries:explore", Role.REVIEWER, "access/explore"),
    NavItem("My access", "registries:my_access", Role.DEVELOPER, "access/mine"),
    NavItem("Reviews", "registries:reviews", Role.DEVELOPER, "access/reviews"),
    NavItem("Credentials", "accounts:credentials", Role.REVIEWER, "credentials"),
    NavItem("Offboarding", "registries:offboardings", Role.REVIEWER, "offboarding"),
    NavItem("Base images", "registries:base_images", Role.DEVELOPER, "base-images"),
    NavItem("Findings", "portal:findings", Role.REVIEWER, "findings"),
    NavItem("Posture", "registries:posture", Role.REVIEWER, "posture"),
    NavItem("Audit", "portal:audit", Role.REVIEWER, "audit"),
    NavItem("Evidence", "registries:evidence", Role.REVIEWER, "evidence"),
    NavItem("Settings", "accounts:settings", Role.DEVELOPER, "settings"),
]


def navigation(request: HttpRequest) -> dict[str, object]:
    """The menu a person sees: only the pages their role opens."""
    user = request.user
    if not user.is_authenticated:
        return {"navigation": []}
    path = request.path.strip("/")
    # /access/rules/ is Rules' page, not Access's too: the item owning the longest prefix is current.
    owners = [
        item.section for item in NAVIGATION if path == item.section or path.startswith(item.section + "/")
    ]
    section = max(owners, key=len, default=None)
    items = [
        {"label": item.label, "url": reverse(item.url_name), "current": item.section == section}
        for item in NAVIGATION
        if user.has_role(item.role)
    ]
    return {"navigation": items, "portal_role": user.role}
