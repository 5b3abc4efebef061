"""Factory functions with unique names; no JSON fixtures."""

from __future__ import annotations

import hashlib
import itertools
from datetime import timedelta
from typing import Any

from django.utils import timezone

from accounts import services
from accounts.models import (
    DirectoryGroup,
    GroupMembership,
    PersonalToken,
    RobotToken,
    RoleBinding,
    Source,
    User,
)
from accounts.roles import Role
from portal.models import Finding
from registries import services as registry_services
from registries.models import (
    AccessRule,
    Artifact,
    Credential,
    Grant,
    Registry,
    Replica,
    Repository,
    SyncRun,
    Tag,
)

_ids = itertools.count(1)


def unique(prefix: str) -> str:
    return f"{prefix}-{next(_ids)}"


def user(**fields: Any) -> User:
    name = fields.pop("username", None) or unique("person")
    fields.setdefault("source", Source.OIDC)
    fields.setdefault("external_id", unique("oid"))
    fields.setdefault("email", f"{name}@example.test")
    return User.objects.create_user(username=name, **fields)


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


def robot(of: DirectoryGroup | None = None, **fields: Any) -> tuple[RobotToken, str]:
    """A robot token for `of` (a new group by default), made the way admins make them."""
    fields.setdefault("name", unique("robot"))
    issued = services.create_robot_token(of or group(), actor=None, **fields)
    return issued.robot, issued.secret


def finding(**fields: Any) -> Finding:
    fields.setdefault("kind", "audit_chain_broken")
    fields.setdefault("severity", Finding.Severity.HIGH)
    fields.setdefault("key", unique("test:finding"))
    fields.setdefault("summary", "Something needs attention")
    return Finding.objects.create(**fields)


def days_from_now(days: float) -> Any:
    return timezone.now() + timedelta(days=days)


# --- Registries and inventory ---------------------------------------------------------------------

# A loopback port nothing listens on: a connection test against it is refused at once, offline.
CLOSED_ENDPOINT = "http://127.0.0.1:9"


def registry(*, secrets: dict[str, str] | None = None, **fields: Any) -> Registry:

    fields.setdefault("name", unique("registry"))
    fields.setdefault("kind", "distribution")
    fields.setdefault("endpoint", CLOSED_ENDPOINT)
    fields.setdefault("region", "eu-west-1")
    made = Registry(**fields)
    made.set_secrets(secrets or {})
    made.save()
    return made


def replica(of: Registry, **fields: Any) -> Replica:

    fields.setdefault("region", unique("region"))
    fields.setdefault("endpoint", f"https://{unique('replica')}.example.test")
    return Replica.objects.create(registry=of, **fields)


def repository(of: Registry, **fields: Any) -> Repository:

    name = fields.pop("name", None) or f"{unique('team')}/{unique('app')}"
    fields.setdefault("namespace", Repository.namespace_of(name))
    return Repository.objects.create(registry=of, name=name, **fields)


def artifact(of: Repository, **fields: Any) -> Artifact:

    fields.setdefault("digest", "sha256:" + hashlib.sha256(unique("blob").encode()).hexdigest())
    fields.setdefault("media_type", "application/vnd.oci.image.manifest.v1+json")
    fields.setdefault("size", 1234)
    return Artifact.objects.create(repository=of, **fields)


def tag(to: Artifact, **fields: Any) -> Tag:

    fields.setdefault("name", unique("v"))
    return Tag.objects.create(repository=to.repository, artifact=to, **fields)


def sync_run(of: Registry, **fields: Any) -> SyncRun:

    return SyncRun.objects.create(registry=of, **fields)


def access_rule(
    group: DirectoryGroup,
    pattern: str,
    *actions: str,
    registry: Registry | None = None,
    expires_in: timedelta | None = None,
    justification: str = "needed for the test",
) -> AccessRule:
    """A rule saved through the service, as people make them (pull only when no action is named)."""
    request = registry_services.RuleRequest(
        group=group,
        pattern=pattern,
        actions=frozenset(actions or ("pull",)),
        justification=justification,
        registry=registry,
        expires_at=timezone.now() + expires_in if expires_in else None,
    )
    return registry_services.save_access_rule(None, request, actor=None)


def registry_credential(of: Registry, **fields: Any) -> Credential:
    """A registry-native credential row, as a sync that read credentials leaves one."""
    fields.setdefault("native_id", unique("native"))
    fields.setdefault("kind", "robot")
    fields.setdefault("name", unique("cred"))
    return Credential.objects.create(registry=of, **fields)


def grant(of: Registry, **fields: Any) -> Grant:
    """A grant row, as a sync that read grants leaves one."""
    fields.setdefault("principal_kind", "group")
    fields.setdefault("principal_id", unique("principal"))
    fields.setdefault("scope", "team/**")
    fields.setdefault("can_pull", True)
    fields.setdefault("source", "project team")
    return Grant.objects.create(registry=of, **fields)
