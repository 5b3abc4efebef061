"""Fetching inventory for a user: 404 when they cannot see it, 403 when they can see but not change it."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404

from accounts.models import User
from accounts.roles import Role
from registries.models import Artifact, Registry, Replica, Repository


def can_change_registry(user: User, registry: Registry) -> bool:
    # Connecting registries, their credentials and replicas is the admins' job; reviewers only read.
    return user.has_role(Role.ADMIN)


def get_registry_for_user(user: User, registry_id: int, *, write: bool = False) -> Registry:
    registry = get_object_or_404(Registry.objects.visible_to(user), pk=registry_id)
    if write and not can_change_registry(user, registry):
        raise PermissionDenied  # they can already see it, so 403 reveals nothing new
    return registry


def get_replica_for_user(user: User, registry_id: int, replica_id: int, *, write: bool = False) -> Replica:
    registry = get_registry_for_user(user, registry_id, write=write)
    return get_object_or_404(Replica, registry=registry, pk=replica_id)


def get_repository_for_user(user: User, repository_id: int) -> Repository:
    return get_object_or_404(Repository.objects.visible_to(user).select_related("registry"), pk=repository_id)


def get_artifact_for_user(user: User, repository_id: int, digest: str) -> Artifact:
    artifacts = Artifact.objects.visible_to(user).select_related("repository__registry", "index")
    return get_object_or_404(artifacts, repository_id=repository_id, digest=digest)
