"""Factory functions with unique names; no JSON fixtures."""

from __future__ import annotations

import itertools
from datetime import timedelta
from typing import Any

from django.utils import timezone

from accounts import services
from accounts.models import DirectoryGroup, GroupMembership, PersonalToken, RoleBinding, Source, User
from accounts.roles import Role
from portal.models import Finding

_ids = itertools.count(1)


def unique(prefix: str) -> str:
    return f"{prefix}-{next(_ids)}"


def user(**fields: Any) -> User:
    name = fields.pop("username", None) or unique("person")
    fields.setdefault("source", Source.OIDC)
    fields.setdefault("external_id", unique("oid"))
    return User.objects.create_user(username=name, email=f"{name}@example.test", **fields)


def group(**fields: Any) -> DirectoryGroup:
    fields.setdefault("external_id", unique("00000000-group"))
    fields.setdefault("display_name", unique("Team"))
    fields.setdefault("source", Source.OIDC)
    return DirectoryGroup.objects.create(**fields)


def member(person: User, of: DirectoryGroup) -> GroupMembership:
    return GroupMembership.objects.create(user=person, group=of, source=of.source)


def user_with_role(role: Role) -> User:
    person = user(username=unique(str(role)))
    if role != Role.DEVELOPER:
        team = group(display_name=unique(f"{role}s"))
        RoleBinding.objects.create(group=team, role=role)
        member(person, team)
    return person


def token(owner: User, **fields: Any) -> tuple[PersonalToken, str]:
    fields.setdefault("name", unique("token"))
    issued = services.create_token(owner, actor=owner, **fields)
    return issued.token, issued.secret


def finding(**fields: Any) -> Finding:
    fields.setdefault("kind", "audit_chain_broken")
    fields.setdefault("severity", Finding.Severity.HIGH)
    fields.setdefault("key", unique("test:finding"))
    fields.setdefault("summary", "Something needs attention")
    return Finding.objects.create(**fields)


def days_from_now(days: float) -> Any:
    return timezone.now() + timedelta(days=days)
