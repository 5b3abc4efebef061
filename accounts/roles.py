"""Portal roles, and how a person gets one: by directory-group binding, or as a local superuser."""

from __future__ import annotations

from django.db import models


class Role(models.TextChoices):
    DEVELOPER = "developer", "Developer"
    REVIEWER = "reviewer", "Reviewer"
    ADMIN = "admin", "Admin"


# Higher ranks include everything lower ones may do: a reviewer reads all, an admin also changes.
RANK = {Role.DEVELOPER: 1, Role.REVIEWER: 2, Role.ADMIN: 3}


def at_least(role: str, required: str) -> bool:
    return RANK[Role(role)] >= RANK[Role(required)]


def highest(roles: list[str]) -> Role:
    """The strongest of several roles; a signed-in person with no binding is a developer."""
    return max((Role(r) for r in roles), key=RANK.__getitem__, default=Role.DEVELOPER)
