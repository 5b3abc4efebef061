"""People, directory groups (matched by immutable id), role bindings and personal tokens."""

from __future__ import annotations

import uuid
from datetime import datetime
from functools import cached_property
from typing import Self

from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from accounts import roles
from accounts.roles import Role


class PersonalTokenQuerySet(models.QuerySet["PersonalToken"]):
    def active(self, *, now: datetime | None = None) -> Self:
        """Not revoked and not expired: tokens that still open a door."""
        return self.filter(revoked_at=None, expires_at__gt=now or timezone.now())

    def visible_to(self, user: User) -> Self:
        if user.role in (Role.ADMIN, Role.REVIEWER):
            return self
        return self.filter(owner=user)

    def revoke(self, *, now: datetime | None = None) -> int:
        return self.filter(revoked_at=None).update(revoked_at=now or timezone.now())


class RobotTokenQuerySet(models.QuerySet["RobotToken"]):
    def active(self, *, now: datetime | None = None) -> Self:
        """Not revoked, not expired, and still owned by a group: robots that still open a door."""
        return self.filter(revoked_at=None, expires_at__gt=now or timezone.now(), group__isnull=False)

    def visible_to(self, user: User) -> Self:
        # Robots belong to groups, not people: reviewers and admins see them, nobody else does.
        if user.role in (Role.ADMIN, Role.REVIEWER):
            return self
        return self.none()

    def revoke(self, *, now: datetime | None = None) -> int:
        return self.filter(revoked_at=None).update(revoked_at=now or timezone.now())


class DirectoryGroupQuerySet(models.QuerySet["DirectoryGroup"]):
    def search(self, text: str) -> Self:
        if not text:
            return self
        return self.filter(Q(display_name__icontains=text) | Q(external_id=text))


class RoleBindingQuerySet(models.QuerySet["RoleBinding"]):
    def for_user(self, user: User) -> Self:
        # A subquery, not a join through memberships: one row per binding, no .distinct() needed.
        return self.filter(group__in=user.directory_groups.values("pk"))


class Source(models.TextChoices):
    LOCAL = "local", "Local"
    OIDC = "oidc", "OpenID Connect"
    SAML = "saml", "SAML"
    SCIM = "scim", "SCIM"


class User(AbstractUser):
    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        DISABLED = "disabled", "Disabled"
        DEPARTED = "departed", "Departed"

    class GroupsClaim(models.TextChoices):
        UNKNOWN = "unknown", "Not reported"
        COMPLETE = "complete", "Complete"
        OVERAGE = "overage", "Too many groups for the token"

    # The directory a person comes from (one tenant: its SSO app and its SCIM connection share it),
    # and their immutable id there (Entra object id, Okta user id): names and e-mails change.
    directory = models.CharField(max_length=64, default="default")
    external_id = models.CharField(max_length=255, blank=True, db_index=True)
    # The id SCIM clients see: never reused, unlike usernames.
    scim_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    display_name = models.CharField(max_length=255, blank=True)
    # What the identity provider said about groups at the last sign-in, shown on the profile page.
    groups_claim = models.CharField(max_length=16, choices=GroupsClaim.choices, default=GroupsClaim.UNKNOWN)
    groups_claimed_at = models.DateTimeField(null=True, blank=True)
    # SCIM attributes Customs keeps but does not model (enterprise extension: manager, department, …).
    directory_attributes = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE, db_index=True)
    departed_at = models.DateTimeField(null=True, blank=True)
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.LOCAL)
    directory_groups: models.ManyToManyField[DirectoryGroup, GroupMembership] = models.ManyToManyField(
        "DirectoryGroup", through="GroupMembership", related_name="members", blank=True
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["directory", "external_id"],
                condition=~Q(external_id=""),
                name="user_unique_external_id",
            )
        ]

    def __str__(self) -> str:
        return self.display_name or self.get_username()

    @cached_property
    def role(self) -> Role:
        """The portal role: admin for break-glass superusers, else the strongest bound to a group."""
        if not self.is_authenticated or self.status != self.Status.ACTIVE:
            return Role.DEVELOPER
        if self.is_superuser:
            return Role.ADMIN
        bound = list(RoleBinding.objects.for_user(self).values_list("role", flat=True))
        return roles.highest(bound)

    def has_role(self, required: str) -> bool:
        return self.status == self.Status.ACTIVE and roles.at_least(self.role, required)

    @property
    def may_sign_in(self) -> bool:
        """Active in the directory and in Django; anything else ends the person's sessions."""
        return self.is_active and self.status == self.Status.ACTIVE


class DirectoryGroup(models.Model):
    """A group from the corporate directory. Matched by external_id; the display name is only shown."""

    directory = models.CharField(max_length=64, default="default")
    external_id = models.CharField(max_length=255)
    scim_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    display_name = models.CharField(max_length=255)
    source = models.CharField(max_length=16, choices=Source.choices)
    description = models.TextField(blank=True)
    synced_at = models.DateTimeField(default=timezone.now)
    # Who takes over the group's robots when the person who made them leaves. Set in Customs:
    # directories do not send group owners over SCIM.
    owner = models.ForeignKey(
        "User", null=True, blank=True, on_delete=models.SET_NULL, related_name="owned_groups"
    )

    objects = DirectoryGroupQuerySet.as_manager()

    class Meta:
        ordering = ["display_name"]
        constraints = [
            models.UniqueConstraint(fields=["directory", "external_id"], name="group_unique_external_id")
        ]

    def __str__(self) -> str:
        return self.display_name


class GroupMembership(models.Model):
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="memberships")
    group = models.ForeignKey(DirectoryGroup, on_delete=models.CASCADE, related_name="memberships")
    source = models.CharField(max_length=16, choices=Source.choices)
    synced_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "group"], name="membership_unique")]

    def __str__(self) -> str:
        return f"{self.user} in {self.group}"


class RoleBinding(models.Model):
    """Members of this directory group hold this portal role."""

    group = models.ForeignKey(DirectoryGroup, on_delete=models.CASCADE, related_name="role_bindings")
    role = models.CharField(max_length=16, choices=Role.choices)
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    objects = RoleBindingQuerySet.as_manager()

    class Meta:
        ordering = ["group__display_name", "role"]
        constraints = [models.UniqueConstraint(fields=["group", "role"], name="role_binding_unique")]

    def __str__(self) -> str:
        return f"{self.group} → {self.get_role_display()}"


class PersonalToken(models.Model):
    """A token a person uses for the API or `docker login`. Only its lookup prefix and digest are kept."""

    class Kind(models.TextChoices):
        API = "api", "API"
        REGISTRY = "registry", "Registry"

    # What each kind of token may be scoped to. API tokens read, or read and write; registry
    # tokens log in to registries whose token server is Customs (access comes from access rules).
    SCOPES = {Kind.API: ("read", "write"), Kind.REGISTRY: ("registry",)}

    owner = models.ForeignKey(User, on_delete=models.CASCADE, related_name="personal_tokens")
    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.API)
    scopes = models.JSONField(default=list)
    lookup = models.CharField(max_length=16, unique=True)
    digest = models.CharField(max_length=64)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = PersonalTokenQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["owner", "revoked_at"])]

    def __str__(self) -> str:
        return f"{self.name} ({self.lookup}…)"

    @property
    def state(self) -> str:
        if self.revoked_at:
            return "revoked"
        if self.expires_at <= timezone.now():
            return "expired"
        return "active"

    def allows(self, scope: str) -> bool:
        return scope in self.scopes


class RobotToken(models.Model):
    """A registry token owned by a directory group, for CI and machines. Only its lookup and digest are kept.

    The robot may do exactly what the access rules give its group; when the group is deleted the
    robot keeps its row (hygiene reports need it) but grants nothing and is refused at login.
    """

    # Harbor's convention: registries and their logs see `robot$<name>`, never mistaken for a person.
    USERNAME_PREFIX = "robot$"
    # Lowercase letters and digits, joined by single `-`, `_` or `.`: safe in a Basic username and a shell.
    NAME_PATTERN = r"^[a-z0-9]+(?:[._-][a-z0-9]+)*\Z"

    group = models.ForeignKey(
        DirectoryGroup, null=True, blank=True, on_delete=models.SET_NULL, related_name="robot_tokens"
    )
    # Never reused, even after revocation: `robot$<name>` in a registry's log names one robot forever.
    name = models.CharField(
        max_length=64,
        unique=True,
        validators=[RegexValidator(NAME_PATTERN, "lowercase letters and digits, joined by - _ or .")],
    )
    description = models.TextField(blank=True)
    lookup = models.CharField(max_length=16, unique=True)
    digest = models.CharField(max_length=64)
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    expires_at = models.DateTimeField()
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = RobotTokenQuerySet.as_manager()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.username} ({self.lookup}…)"

    @property
    def username(self) -> str:
        return self.USERNAME_PREFIX + self.name

    @property
    def state(self) -> str:
        if self.revoked_at:
            return "revoked"
        if self.expires_at <= timezone.now():
            return "expired"
        if self.group_id is None:
            return "orphaned"  # its group was deleted in the directory
        return "active"


class ScimToken(models.Model):
    """The bearer token one directory's SCIM provisioning client presents. Stored as a digest."""

    name = models.CharField(max_length=100, unique=True)
    directory = models.CharField(max_length=64, default="default")
    lookup = models.CharField(max_length=16, unique=True)
    digest = models.CharField(max_length=64)
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.lookup}…)"


class ScimRequest(models.Model):
    """One provisioning request and its result, for the SCIM page. Bodies are not kept."""

    token = models.ForeignKey(
        ScimToken, null=True, blank=True, on_delete=models.SET_NULL, related_name="requests"
    )
    at = models.DateTimeField(default=timezone.now, db_index=True)
    method = models.CharField(max_length=8)
    path = models.CharField(max_length=500)
    status = models.PositiveSmallIntegerField()
    summary = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["-at"]

    def __str__(self) -> str:
        return f"{self.method} {self.path} → {self.status}"
